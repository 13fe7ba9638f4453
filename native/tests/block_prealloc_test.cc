// Preallocation (`vireo-img create -o preallocation=`, `resize --preallocation=`)
// against qemu-img on the same inputs (qemu-img/qemu-io are test peers only;
// cases needing them skip without): metadata-preallocated qcow2 images check
// clean, read zeros, map every guest cluster and are laid out as qemu-img lays
// them out (`qemu-img map` output equal, offsets included, where the refcount
// table does not have to grow); falloc / full reserve or write the data;
// refusals (raw metadata, a backing file without extended L2, bad values,
// shrinking) name the reason and leave nothing behind; ENOSPC removes a new
// image and leaves a resized one at its old size.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <regex>

#include "block/blocktest_util.h"
#include "block/img_tool_util.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;
using namespace imgtool;

static uint64_t disk_usage(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) ? 0 : uint64_t(st.st_blocks) * 512;
}
static bool exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }

// `qemu-img check --output json`: allocated and total clusters.
static std::pair<uint64_t, uint64_t> qemu_alloc(const std::string& img) {
  std::string j;
  CHECK_EQ(sh("qemu-img check --output json " + q(img), &j), 0);
  return {json_num(j, "allocated-clusters"), json_num(j, "total-clusters")};
}

static std::string qemu_map(const std::string& img) {
  std::string o;
  if (sh("qemu-img map --output=json " + q(img), &o)) throw vireo_test::Failure{"qemu-img map " + img + ": " + o};
  return o;
}

// qemu-img map's extents without host offsets, adjacent ones with the same
// flags merged: what the guest sees, wherever the clusters lie in the file.
static std::string map_shape(const std::string& json, bool with_zero = true) {
  static const std::regex ext(R"(\{ "start": (\d+), "length": (\d+), "depth": (\d+), "present": (\w+), "zero": (\w+), "data": (\w+))");
  std::string out, last_flags;
  uint64_t start = 0, len = 0;
  for (std::sregex_iterator it(json.begin(), json.end(), ext), end; it != end; ++it) {
    std::string flags = (*it)[3].str() + "," + (*it)[4].str() + "," + (with_zero ? (*it)[5].str() + "," : "") + (*it)[6].str();
    uint64_t s = std::stoull((*it)[1].str()), l = std::stoull((*it)[2].str());
    if (len && flags == last_flags && s == start + len) {
      len += l;
      continue;
    }
    if (len) out += std::to_string(start) + "+" + std::to_string(len) + ":" + last_flags + "\n";
    start = s, len = l, last_flags = flags;
  }
  if (len) out += std::to_string(start) + "+" + std::to_string(len) + ":" + last_flags + "\n";
  return out;
}

// The first line where two maps differ, for a failure message that fits.
static std::string first_diff(const std::string& a, const std::string& b) {
  size_t i = 0, line = 1;
  while (i < a.size() && i < b.size() && a[i] == b[i]) line += a[i++] == '\n';
  auto at = [&](const std::string& s) {
    size_t st = s.rfind('\n', i ? i - 1 : 0);
    st = st == std::string::npos || i == 0 ? 0 : st + 1;
    return s.substr(st, s.find('\n', st) - st);
  };
  return "line " + std::to_string(line) + ":\n  " + at(a) + "\nvs\n  " + at(b);
}

// qemu-io reads [off, off+len) as `pat` (a byte), or the failure is reported.
static void qemu_reads(const std::string& img, uint64_t off, uint64_t len, int pat) {
  std::string o;
  int rc = sh("qemu-io -c 'read -P " + std::to_string(pat) + " " + std::to_string(off) + " " + std::to_string(len) +
                  "' " + q(img),
              &o);
  if (rc || o.find("Pattern verification failed") != std::string::npos || o.find("read ") == std::string::npos)
    throw vireo_test::Failure{img + ": read -P " + std::to_string(pat) + " " + std::to_string(off) + "+" +
                              std::to_string(len) + ": " + o};
}

static uint64_t mib(uint64_t n) { return n << 20; }

TEST(prealloc_help_names_the_option) {
  std::string V = vireo_img(), o;
  CHECK_EQ(sh(V + " create --help", &o), 0);
  CHECK(o.find("preallocation=off|metadata|falloc|full") != std::string::npos);
  CHECK_EQ(sh(V + " resize --help", &o), 0);
  CHECK(o.find("--preallocation=off|metadata|falloc|full") != std::string::npos);
}

// The same -o to both tools: same layout (map equal, offsets included), same file size,
// every guest cluster allocated, clean, zeros.
TEST(prealloc_metadata_qcow2_maps_like_qemu_img) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  struct Case { const char* opts; uint64_t size; };
  const Case cases[] = {
      {"preallocation=metadata", mib(1536)},                                   // 64 KiB clusters, 3 L2 tables
      {"cluster_size=4k,preallocation=metadata", mib(20)},                      // 10 L2 tables, runs across refcount blocks
      {"compat=0.10,preallocation=metadata,cluster_size=512", mib(3)},          // v2, 512-byte clusters
      {"extended_l2=on,cluster_size=16k,preallocation=metadata", mib(20)},      // subclusters left unallocated
      {"preallocation=metadata,extended_l2=on", mib(20) + 3 * 512},             // a partial last cluster
      {"preallocation=metadata", mib(20) + 7168},                               // the same without subclusters
      {"cluster_size=16k,extended_l2=on,preallocation=metadata", mib(20) + 7168},
  };
  for (const Case& c : cases) {
    std::string a = d / "v.qcow2", b = d / "q.qcow2", o, sz = std::to_string(c.size);
    ::unlink(a.c_str()), ::unlink(b.c_str());
    CHECK_EQ(sh(V + " create -f qcow2 -o " + c.opts + " " + q(a) + " " + sz, &o), 0);
    CHECK(o.find(" preallocation=metadata") != std::string::npos);  // the Formatting line says so
    CHECK_EQ(sh("qemu-img create -q -f qcow2 -o " + std::string(c.opts) + " " + q(b) + " " + sz, &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(sh(V + " check -q " + q(a), &o), 0);
    std::string ma = qemu_map(a), mb = qemu_map(b);
    if (ma != mb) throw vireo_test::Failure{std::string(c.opts) + ": map differs from qemu-img's:\n" + first_diff(ma, mb)};
    CHECK_EQ(file_size(a), file_size(b));
    auto [alloc, total] = qemu_alloc(a);
    CHECK_EQ(alloc, total);  // every guest cluster has a host cluster
    CHECK(total > 0);
    CHECK(alloc == qemu_alloc(b).first);
    CHECK(disk_usage(a) < c.size / 4);  // the data clusters are holes
    if (c.size <= mib(32)) {
      qemu_reads(a, 0, c.size, 0);
    } else {  // 1.5 GiB: the start, each L2 table's edges, the end
      for (uint64_t off : {uint64_t(0), mib(511), mib(512), mib(1023), mib(1024), c.size - mib(1)})
        qemu_reads(a, off, mib(1), 0);
    }
  }
}

// 512-byte clusters past 8 MiB: the refcount table grows during the
// preallocation. Vireo places the new table right after the data run that
// needs it, qemu-img elsewhere, so the host offsets differ, and with them
// which ranges share a file system block with metadata ("zero" in the map).
TEST(prealloc_metadata_qcow2_growing_refcount_table) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "v.qcow2", b = d / "q.qcow2", o;
  CHECK_EQ(sh(V + " create -q -f qcow2 -o cluster_size=512,preallocation=metadata " + q(a) + " 20M", &o), 0);
  CHECK_EQ(sh("qemu-img create -q -f qcow2 -o cluster_size=512,preallocation=metadata " + q(b) + " 20M", &o), 0);
  qemu_check_clean(a);
  std::string sa = map_shape(qemu_map(a), false), sb = map_shape(qemu_map(b), false);
  if (sa != sb) throw vireo_test::Failure{"map shape differs: " + first_diff(sa, sb)};
  CHECK_EQ(sa, std::string("0+20971520:0,true,true\n"));  // all present, all data (allocated)
  auto [alloc, total] = qemu_alloc(a);
  CHECK_EQ(alloc, total);
  CHECK(file_size(a) <= file_size(b));
  qemu_reads(a, 0, mib(20), 0);
}

// Writes into a metadata-preallocated image take no new clusters.
TEST(prealloc_metadata_qcow2_writes_go_in_place) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  for (const char* opts : {"preallocation=metadata", "preallocation=metadata,extended_l2=on"}) {
    std::string a = d / "v.qcow2", o;
    ::unlink(a.c_str());
    CHECK_EQ(sh(V + " create -q -f qcow2 -o " + std::string(opts) + " " + q(a) + " 8M", &o), 0);
    uint64_t size_before = file_size(a);
    {
      OpenOptions oo;
      std::string err;
      auto w = open_block(a, oo, &err);
      CHECK(w != nullptr);
      std::vector<uint8_t> buf(3000, 0x5a);
      for (uint64_t off : {uint64_t(0), uint64_t(65536 + 100), uint64_t(5 << 20) - 7, uint64_t(8 << 20) - 3000})
        CHECK_EQ(w->pwrite(buf.data(), buf.size(), off), 0);
      CHECK_EQ(w->flush(), 0);
      std::vector<uint8_t> back(3000);
      CHECK_EQ(w->pread(back.data(), back.size(), 65536 + 100), 0);
      CHECK(back == buf);
      CHECK_EQ(w->pread(back.data(), back.size(), 65536 + 3100), 0);
      CHECK(back == std::vector<uint8_t>(3000, 0));
    }
    CHECK_EQ(file_size(a), size_before);  // in place: the file did not grow
    qemu_check_clean(a);
    auto [alloc, total] = qemu_alloc(a);
    CHECK_EQ(alloc, total);
    qemu_reads(a, 65536 + 100, 3000, 0x5a);
    qemu_reads(a, 65536 + 3100, 1 << 20, 0);
  }
}

TEST(prealloc_falloc_full_qcow2) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  for (const char* mode : {"falloc", "full"})
    for (const char* more : {"", "cluster_size=4k,", "extended_l2=on,"}) {
      std::string opts = std::string(more) + "preallocation=" + mode;
      std::string a = d / "v.qcow2", b = d / "q.qcow2", o;
      ::unlink(a.c_str()), ::unlink(b.c_str());
      CHECK_EQ(sh(V + " create -q -f qcow2 -o " + opts + " " + q(a) + " 20M", &o), 0);
      CHECK_EQ(sh("qemu-img create -q -f qcow2 -o " + opts + " " + q(b) + " 20M", &o), 0);
      qemu_check_clean(a);
      auto [alloc, total] = qemu_alloc(a);
      CHECK_EQ(alloc, total);
      if (disk_usage(a) < mib(20)) throw vireo_test::Failure{opts + ": only " + std::to_string(disk_usage(a)) + " bytes on disk"};
      qemu_reads(a, 0, mib(20), 0);
      // What the guest sees per range equals qemu-img's (where its data lies may differ:
      // qemu-img puts all data in one run and the L2 tables after it).
      std::string sa = map_shape(qemu_map(a)), sb = map_shape(qemu_map(b));
      if (sa != sb) throw vireo_test::Failure{opts + ": map shape differs: " + first_diff(sa, sb)};
    }
}

TEST(prealloc_raw_create) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string o;
  for (const char* mode : {"falloc", "full"}) {
    std::string a = d / (std::string("v-") + mode + ".raw"), b = d / (std::string("q-") + mode + ".raw");
    CHECK_EQ(sh(V + " create -f raw -o preallocation=" + std::string(mode) + " " + q(a) + " 20M", &o), 0);
    CHECK(o.find(std::string("preallocation=") + mode) != std::string::npos);
    CHECK_EQ(sh("qemu-img create -q -f raw -o preallocation=" + std::string(mode) + " " + q(b) + " 20M", &o), 0);
    CHECK_EQ(file_size(a), mib(20));
    CHECK(disk_usage(a) >= mib(20));
    CHECK_EQ(sh("cmp -n 20971520 " + q(a) + " /dev/zero", &o), 0);
    if (std::string(mode) == "full") CHECK_EQ(qemu_map(a), qemu_map(b));  // all data, not zero
  }
  // metadata is a qcow2 mode: refused as qemu-img refuses it, and no file is left
  // (qemu-img leaves an empty one).
  std::string m = d / "m.raw";
  CHECK_EQ(sh(V + " create -f raw -o preallocation=metadata " + q(m) + " 1M", &o), 1);
  CHECK(o.find("Unsupported preallocation mode: metadata") != std::string::npos);
  CHECK(!exists(m));
  CHECK_EQ(sh("qemu-img create -q -f raw -o preallocation=metadata " + q(d / "qm.raw") + " 1M", &o), 1);
  // Unknown values: qemu-img's words, for both formats.
  for (const char* fmt : {"raw", "qcow2"}) {
    std::string x = d / (std::string("x.") + fmt);
    CHECK_EQ(sh(V + " create -f " + std::string(fmt) + " -o preallocation=bogus " + q(x) + " 1M", &o), 1);
    CHECK(o.find("Parameter 'preallocation' does not accept value 'bogus'") != std::string::npos);
    CHECK(!exists(x));
  }
}

TEST(prealloc_backing_file_needs_extended_l2) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string base = d / "base.raw", o;
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(base) + " 4M && qemu-io -f raw -c 'write -P 5 0 4M' " + q(base) +
              " >/dev/null", &o), 0);
  std::string a = d / "a.qcow2";
  CHECK_EQ(sh(V + " create -f qcow2 -b base.raw -F raw -o preallocation=metadata " + q(a), &o), 1);
  CHECK(o.find("Backing file and preallocation can only be used at the same time if extended_l2 is on") !=
        std::string::npos);
  CHECK(!exists(a));
  CHECK_EQ(sh("qemu-img create -q -f qcow2 -b base.raw -F raw -o preallocation=metadata " + q(d / "qa.qcow2"), &o), 1);
  // With extended L2: every cluster allocated, its subclusters not, so the backing file shows.
  for (const char* mode : {"metadata", "full"}) {
    std::string v = d / (std::string("v-") + mode + ".qcow2"), w = d / (std::string("q-") + mode + ".qcow2");
    std::string opts = std::string("extended_l2=on,preallocation=") + mode;
    CHECK_EQ(sh(V + " create -q -f qcow2 -b base.raw -F raw -o " + opts + " " + q(v), &o), 0);
    CHECK_EQ(sh("qemu-img create -q -f qcow2 -b base.raw -F raw -o " + opts + " " + q(w), &o), 0);
    qemu_check_clean(v);
    qemu_reads(v, 0, mib(4), 5);
    auto [alloc, total] = qemu_alloc(v);
    CHECK_EQ(alloc, total);
    if (std::string(mode) == "metadata") CHECK_EQ(qemu_map(v), qemu_map(w));
    else CHECK(disk_usage(v) >= mib(4));
    // A write into one subcluster keeps the backing bytes around it.
    CHECK_EQ(sh("qemu-io -c 'write -P 9 70000 100' " + q(v) + " >/dev/null", &o), 0);
    qemu_reads(v, 70000, 100, 9);
    qemu_reads(v, 65536, 70000 - 65536, 5);
    qemu_check_clean(v);
  }
}

TEST(prealloc_convert_refuses) {
  std::string V = vireo_img();
  TmpDir d;
  std::string src = d / "s.raw", out = d / "o.qcow2", o;
  std::string err;
  CHECK_EQ(create_raw(src, mib(1), &err), 0);
  CHECK_EQ(sh(V + " convert -O qcow2 -o preallocation=full " + q(src) + " " + q(out), &o), 1);
  CHECK(o.find("preallocat") != std::string::npos);
  CHECK(!exists(out));
}

// resize --preallocation=MODE on qcow2: both tools from the same image; same data,
// clean, every cluster allocated; metadata: the same map.
TEST(prealloc_resize_qcow2_like_qemu_img) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  for (const char* mode : {"metadata", "falloc", "full"}) {
    std::string a = d / "v.qcow2", b = d / "q.qcow2", o;
    ::unlink(a.c_str()), ::unlink(b.c_str());
    for (const std::string& x : {a, b})  // made alike (a copy by cp can be sparser than qemu-io left it)
      CHECK_EQ(sh("qemu-img create -q -f qcow2 " + q(x) + " 1M && qemu-io -c 'write -P 7 0 100k' " + q(x) + " >/dev/null", &o), 0);
    uint64_t used = disk_usage(a);
    std::string arg = std::string(mode) == "full" ? " --preallocation full " : std::string(" --preallocation=") + mode + " ";
    CHECK_EQ(sh(V + " resize" + arg + q(a) + " 5M", &o), 0);
    CHECK_EQ(sh("qemu-img resize -q --preallocation=" + std::string(mode) + " " + q(b) + " 5M", &o), 0);
    // (maps first: on ext4 reading a hole can make SEEK_DATA report it as data)
    if (std::string(mode) == "metadata") CHECK_EQ(qemu_map(a), qemu_map(b));
    else CHECK(disk_usage(a) >= used + mib(4));
    qemu_check_clean(a);
    CHECK_EQ(sh("qemu-img compare " + q(a) + " " + q(b), &o), 0);
    qemu_reads(a, 0, 100 << 10, 7);
    qemu_reads(a, 100 << 10, mib(5) - (100 << 10), 0);
    // The old range had 2 clusters allocated; the new one all of its 64.
    CHECK_EQ(qemu_alloc(a).first, qemu_alloc(b).first);
    CHECK_EQ(qemu_alloc(a).first, uint64_t(2 + 64));
  }
  // Over a larger backing file, from a size inside a cluster: the cluster's
  // backing bytes are kept, the new range reads zeros (qemu-img keeps the new
  // clusters as allocated zero clusters, Vireo as plain ones over holes).
  std::string base = d / "base.raw", o;
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(base) + " 4M && qemu-io -f raw -c 'write -P 5 0 4M' " + q(base) +
              " >/dev/null", &o), 0);
  for (const char* ext : {"off", "on"}) {
    std::string a = d / "ov.qcow2", b = d / "oq.qcow2";
    ::unlink(a.c_str()), ::unlink(b.c_str());
    for (const std::string& x : {a, b})
      CHECK_EQ(sh("qemu-img create -q -f qcow2 -o extended_l2=" + std::string(ext) + " -b base.raw -F raw " + q(x) +
                  " 1024512 && qemu-io -c 'write -P 6 0 64k' " + q(x) + " >/dev/null", &o), 0);
    CHECK_EQ(sh(V + " resize --preallocation=metadata " + q(a) + " 3M", &o), 0);
    CHECK_EQ(sh("qemu-img resize -q --preallocation=metadata " + q(b) + " 3M", &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(sh("qemu-img compare " + q(a) + " " + q(b), &o), 0);
    qemu_reads(a, 0, 65536, 6);
    qemu_reads(a, 65536, 1024512 - 65536, 5);
    qemu_reads(a, 1024512, mib(3) - 1024512, 0);
    CHECK_EQ(qemu_alloc(a).first, qemu_alloc(b).first);
  }
  // Refused, image untouched: an unknown mode, preallocation while shrinking.
  std::string a = d / "v.qcow2", before = md5(a);
  CHECK_EQ(sh(V + " resize --preallocation=bogus " + q(a) + " +1M", &o), 1);
  CHECK(o.find("Invalid preallocation mode 'bogus'") != std::string::npos);
  CHECK_EQ(sh(V + " resize --shrink --preallocation=full " + q(a) + " 1M", &o), 1);
  CHECK(o.find("Preallocation can only be used for growing images") != std::string::npos);
  CHECK_EQ(md5(a), before);
  // The API says the same.
  {
    Qcow2OpenFlags fl;
    std::vector<std::string> chain;
    std::string err;
    auto qc = Qcow2Backend::open(a, fl, &chain, &err);
    CHECK(qc != nullptr);
    CHECK_EQ(qc->resize(mib(1), &err, Prealloc::Metadata), -EINVAL);
    CHECK(err.find("growing") != std::string::npos);
  }
  CHECK_EQ(md5(a), before);
}

TEST(prealloc_resize_raw_like_qemu_img) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "v.raw", b = d / "q.raw", o;
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(a) + " 1M && qemu-io -f raw -c 'write -P 7 0 1M' " + q(a) +
              " >/dev/null && cp " + q(a) + " " + q(b), &o), 0);
  for (const char* mode : {"falloc", "full"}) {
    uint64_t used = disk_usage(a);
    CHECK_EQ(sh(V + " resize -f raw --preallocation=" + std::string(mode) + " " + q(a) + " +1M", &o), 0);
    CHECK_EQ(sh("qemu-img resize -q -f raw --preallocation=" + std::string(mode) + " " + q(b) + " +1M", &o), 0);
    CHECK_EQ(file_size(a), file_size(b));
    CHECK(disk_usage(a) >= used + mib(1));
  }
  CHECK_EQ(file_size(a), mib(3));
  CHECK_EQ(sh("cmp " + q(a) + " " + q(b), &o), 0);
  qemu_reads(a, 0, mib(1), 7);
  std::string before = md5(a);
  CHECK_EQ(sh(V + " resize -f raw --preallocation=metadata " + q(a) + " +1M", &o), 1);
  CHECK(o.find("Unsupported preallocation mode: metadata") != std::string::npos);
  CHECK_EQ(sh(V + " resize -f raw --shrink --preallocation=falloc " + q(a) + " 1M", &o), 1);
  CHECK(o.find("Preallocation can only be used for growing images") != std::string::npos);
  CHECK_EQ(md5(a), before);
  CHECK_EQ(file_size(a), mib(3));
}

// A preallocation that runs out of space: a new image is removed, a resized one
// keeps its old size and data and stays clean.
TEST(prealloc_enospc_leaves_nothing_half_done) {
  std::string V = vireo_img();
  if (geteuid() != 0) SKIP("needs root to mount a small tmpfs");
  TmpDir m;
  if (::mount("tmpfs", m.path.c_str(), "tmpfs", 0, "size=4m")) SKIP(std::string("cannot mount tmpfs: ") + std::strerror(errno));
  struct Umount {
    std::string p;
    ~Umount() { ::umount2(p.c_str(), MNT_DETACH); }
  } um{m.path};
  std::string o;
  for (const char* args : {"-f qcow2 -o preallocation=full", "-f qcow2 -o preallocation=falloc,cluster_size=4k",
                           "-f raw -o preallocation=full", "-f raw -o preallocation=falloc"}) {
    std::string img = m / "big.img";
    CHECK_EQ(sh(V + " create " + std::string(args) + " " + q(img) + " 8M", &o), 1);
    CHECK(o.find("No space left on device") != std::string::npos);
    CHECK(o.find(img) != std::string::npos);
    CHECK(!exists(img));
  }
  if (!blocktest::have("qemu-io")) return;
  for (const char* fmt : {"qcow2", "raw"}) {
    std::string img = m / (std::string("small.") + fmt);
    CHECK_EQ(sh(V + " create -q -f " + std::string(fmt) + " " + q(img) + " 1M && qemu-io -f " + fmt +
                " -c 'write -P 3 0 1M' " + q(img) + " >/dev/null", &o), 0);
    std::string before = md5(img);
    CHECK_EQ(sh(V + " resize -f " + std::string(fmt) + " --preallocation=full " + q(img) + " 8M", &o), 1);
    CHECK(o.find("No space left on device") != std::string::npos);
    std::string j;
    CHECK_EQ(sh("qemu-img info --output json -f " + std::string(fmt) + " " + q(img), &j), 0);
    CHECK_EQ(json_num(j, "virtual-size"), mib(1));
    if (std::string(fmt) == "qcow2") {
      qemu_check_clean(img);
      CHECK_EQ(qemu_alloc(img).first, uint64_t(16));  // the 1 MiB written; the failed run given back
    } else {
      CHECK_EQ(md5(img), before);
    }
    qemu_reads(img, 0, mib(1), 3);
    ::unlink(img.c_str());
  }
}
