// vireo-img where data is at stake, against qemu-img on the same inputs
// (qemu-img/qemu-io are test peers only; cases needing them skip without):
// resize refuses to shrink without --shrink and then loses nothing, [+|-]SIZE,
// qcow2 shrink leaves `qemu-img check` clean with the same virtual size and
// data as qemu-img's shrink; v3 images with internal snapshots grow as with
// and shrink as with qemu-img (each snapshot keeps its size and data), any
// resize of a v2 one is refused with the image unchanged;
// convert -c writes compressed clusters qemu-img reads back identically;
// --help / -h on every subcommand.
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <tuple>

#include "block/blocktest_util.h"
#include "block/img_tool_util.h"
#include "block/convert.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "block/raw.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;
using namespace imgtool;

TEST(img_help_on_every_subcommand) {
  std::string V = vireo_img();
  for (const char* cmd : {"create", "info", "check", "convert", "snapshot", "resize", "rebase"})
    for (const char* h : {"--help", "-h"}) {
      std::string o;
      CHECK_EQ(sh(V + " " + cmd + " " + h, &o), 0);
      CHECK(o.find("usage: vireo-img") != std::string::npos);
      CHECK(o.find(std::string("  ") + cmd + " ") != std::string::npos);
    }
  std::string o;
  CHECK_EQ(sh(V + " resize --help", &o), 0);
  CHECK(o.find("--shrink") != std::string::npos);
  CHECK_EQ(sh(V + " convert --help", &o), 0);
  CHECK(o.find("[-c]") != std::string::npos);
  CHECK(sh(V + " frobnicate --help", &o) != 0);
}

// Sizes that are not whole sectors: create rounds them up as qemu-img does
// (QEMU reads a qcow2 header's size in sectors, so an odd one loses its last
// bytes there); info prints sizes as QEMU's size_to_str does (units switch at
// 1000, so 1000 bytes is 0.977 KiB, never "1e+03 B").
TEST(img_create_rounds_sizes_to_sectors_like_qemu_img) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  for (const char* fmt : {"raw", "qcow2"}) {
    std::string ours = d / (std::string("v.") + fmt), theirs = d / (std::string("q.") + fmt), o, qo;
    CHECK_EQ(sh(V + " create -f " + fmt + " " + q(ours) + " 1000", &o), 0);
    CHECK_EQ(sh("qemu-img create -q -f " + std::string(fmt) + " " + q(theirs) + " 1000"), 0);
    CHECK_EQ(qemu_vsize(ours), uint64_t(1024));
    CHECK_EQ(qemu_vsize(ours), qemu_vsize(theirs));
    CHECK_EQ(sh(V + " info " + q(ours), &o), 0);
    CHECK(o.find("virtual size: 1 KiB (1024 bytes)") != std::string::npos);
  }
  // A raw file's own size is shown as it is (qemu-img shows whole sectors).
  std::string raw = d / "odd.raw", o;
  CHECK_EQ(sh("truncate -s 1000 " + q(raw)), 0);
  CHECK_EQ(sh(V + " info -f raw " + q(raw), &o), 0);
  CHECK(o.find("virtual size: 0.977 KiB (1000 bytes)") != std::string::npos);
}

TEST(img_resize_raw_like_qemu_img) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "a.raw", b = d / "b.raw";
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(a) + " 8M && qemu-io -f raw -c 'write -P 7 0 8M' " + q(a) +
              " >/dev/null && cp " + q(a) + " " + q(b)), 0);
  std::string before = md5(a), o;
  // No --shrink: refused with qemu-img's words, nothing lost.
  CHECK_EQ(sh(V + " resize -f raw " + q(a) + " 1M", &o), 1);
  CHECK(o.find("Use the --shrink option to perform a shrink operation.") != std::string::npos);
  CHECK_EQ(sh(V + " resize " + q(a) + " -- -1M", &o), 1);
  CHECK_EQ(sh(V + " resize " + q(a) + " -3M", &o), 1);
  CHECK_EQ(md5(a), before);
  CHECK_EQ(file_size(a), uint64_t(8 << 20));
  // The same steps on both: -3M, +1M, 5M, then 2M (a shrink again).
  for (const char* step : {"--shrink -3M", "+1M", "--shrink 5M", "--shrink 2M", "-- 3M"}) {
    CHECK_EQ(sh(V + " resize -q -f raw " + q(a) + " " + step, &o), 0);
    CHECK_EQ(sh("qemu-img resize -q -f raw " + q(b) + " " + step, &o), 0);
    CHECK_EQ(file_size(a), file_size(b));
  }
  CHECK_EQ(file_size(a), uint64_t(3 << 20));
  CHECK_EQ(sh("qemu-img compare -q -f raw -F raw " + q(a) + " " + q(b)), 0);
  CHECK_EQ(sh("qemu-io -f raw -c 'read -P 7 0 2M' -c 'read -P 0 2M 1M' " + q(a) + " | grep -c '^read'", &o), 0);
  CHECK_EQ(o, std::string("2\n"));
  // Nothing or less than nothing.
  CHECK_EQ(sh(V + " resize --shrink " + q(a) + " -- -3M", &o), 1);
  CHECK(o.find("New image size must be positive") != std::string::npos);
  CHECK_EQ(sh(V + " resize --shrink " + q(a) + " 0", &o), 1);
  CHECK_EQ(sh(V + " resize " + q(a) + " 12Q", &o), 1);
  CHECK_EQ(file_size(a), uint64_t(3 << 20));
}

// qcow2 with `cs` clusters: data in several L2 tables' ranges, shrunk by both
// tools the same way; every result checked against qemu-img.
static void qcow2_shrink_case(const std::string& copts, uint64_t mib, const char* io, const char* sizes[],
                              size_t nsizes) {
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "a.qcow2", b = d / "b.qcow2", o;
  CHECK_EQ(sh(V + " create -q -f qcow2 -o " + copts + " " + q(a) + " " + std::to_string(mib) + "M", &o), 0);
  CHECK_EQ(sh("qemu-io " + std::string(io) + " " + q(a) + " >/dev/null", &o), 0);
  CHECK_EQ(sh("cp " + q(a) + " " + q(b)), 0);
  for (size_t i = 0; i < nsizes; i++) {
    std::string sz = sizes[i];
    CHECK_EQ(sh(V + " resize -q --shrink " + q(a) + " -- " + sz, &o), 0);
    CHECK_EQ(sh("qemu-img resize -q --shrink " + q(b) + " -- " + sz, &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(qemu_vsize(a), qemu_vsize(b));
    // Data below the new size: what qemu-img kept (the image is read by qemu, written by us).
    if (sh("qemu-img compare " + q(a) + " " + q(b), &o) != 0) throw vireo_test::Failure{"compare after " + sz + ": " + o};
    CHECK_EQ(sh(V + " check -q " + q(a), &o), 0);
    // Not bigger on disk than qemu-img's result (plus a cluster of slack for the partly kept one).
    uint64_t cs = json_num([&] { std::string j; sh("qemu-img info --output json " + q(a), &j); return j; }(), "cluster-size");
    if (file_size(a) > file_size(b) + cs)
      throw vireo_test::Failure{"after " + sz + ": " + std::to_string(file_size(a)) + " bytes vs qemu-img's " +
                                std::to_string(file_size(b))};
  }
}

TEST(img_resize_qcow2_shrink_like_qemu_img) {
  need_qemu();
  // 64 KiB clusters (one L2 table covers 512 MiB): clusters freed inside one table.
  const char* s1[] = {"-33M", "20M", "+0", "-1M"};
  qcow2_shrink_case("cluster_size=64k", 64,
                    "-c 'write -P 7 0 20M' -c 'write -P 9 30M 30M' -c 'write -P 3 63M 1M' -c 'write -z 40M 1M'", s1, 4);
  // 4 KiB clusters (one L2 table covers 2 MiB, one refcount block 8 MiB): whole L2 tables and refcount blocks go.
  const char* s2[] = {"-20M", "10M", "3M"};
  qcow2_shrink_case("cluster_size=4k", 40,
                    "-c 'write -P 7 0 4M' -c 'write -P 9 6M 20M' -c 'write -P 3 39M 1M'", s2, 3);
  // v2, 512-byte clusters.
  const char* s3[] = {"-1M", "1536k", "512"};
  qcow2_shrink_case("cluster_size=512,compat=0.10", 4, "-c 'write -P 5 0 4M'", s3, 3);
}

TEST(img_resize_qcow2_regrow_reads_zeros) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "a.qcow2", o;
  CHECK_EQ(sh(V + " create -q -f qcow2 " + q(a) + " 8M && qemu-io -c 'write -P 7 0 8M' " + q(a) + " >/dev/null", &o), 0);
  // 1000.5 KiB: a cluster kept in part; its tail must not come back on growth.
  CHECK_EQ(sh(V + " resize -q --shrink " + q(a) + " 1024512", &o), 0);
  CHECK_EQ(qemu_vsize(a), uint64_t(1024512));
  CHECK_EQ(sh(V + " resize -q " + q(a) + " 8M", &o), 0);
  qemu_check_clean(a);
  CHECK_EQ(qemu_vsize(a), uint64_t(8 << 20));
  CHECK_EQ(sh("qemu-io -c 'read -P 7 0 1024512' -c 'read -P 0 1024512 7364096' " + q(a) + " | grep -c '^read'", &o), 0);
  CHECK_EQ(o, std::string("2\n"));
  // Shrunk overlay over a larger base: the regrown range reads zeros, not the base.
  std::string base = d / "base.qcow2", top = d / "top.qcow2";
  CHECK_EQ(sh("qemu-img create -q -f qcow2 " + q(base) + " 4M && qemu-io -c 'write -P 4 0 4M' " + q(base) +
              " >/dev/null && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 " + q(top), &o), 0);
  CHECK_EQ(sh(V + " resize -q --shrink " + q(top) + " 1M && " + V + " resize -q " + q(top) + " 4M", &o), 0);
  qemu_check_clean(top);
  CHECK_EQ(sh("qemu-io -c 'read -P 4 0 1M' -c 'read -P 0 1M 3M' " + q(top) + " | grep -c '^read'", &o), 0);
  CHECK_EQ(o, std::string("2\n"));
  // Not a multiple of 512: qemu-img's qcow2 refusal.
  CHECK_EQ(sh(V + " resize --shrink " + q(a) + " 1000", &o), 1);
  CHECK(o.find("multiple of 512") != std::string::npos);
}

TEST(img_resize_v2_snapshots_refusals_leave_the_image_unchanged) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "s.qcow2", o;
  CHECK_EQ(sh("qemu-img create -q -f qcow2 -o compat=0.10 " + q(a) + " 4M && qemu-io -c 'write -P 7 0 4M' " + q(a) +
              " >/dev/null && qemu-img snapshot -c snap " + q(a), &o), 0);
  std::string before = md5(a);
  // qemu-img refuses both ways on v2 (no room for each snapshot's size).
  CHECK_EQ(sh(V + " resize --shrink " + q(a) + " 1M", &o), 1);
  CHECK(o.find("Can't resize a v2 image which has snapshots") != std::string::npos);
  CHECK_EQ(sh(V + " resize " + q(a) + " 8M", &o), 1);
  CHECK(o.find("Can't resize a v2 image which has snapshots") != std::string::npos);
  CHECK_EQ(sh("qemu-img resize " + q(a) + " 8M", &o), 1);
  CHECK_EQ(sh("qemu-img resize --shrink " + q(a) + " 1M", &o), 1);
  CHECK_EQ(md5(a), before);
  qemu_check_clean(a);
}

static uint64_t snapshot_disk_size(const std::string& img, const std::string& name) {
  Qcow2OpenFlags fl;
  fl.read_only = true;
  fl.no_backing = true;
  std::vector<std::string> chain;
  std::string err;
  auto qc = Qcow2Backend::open(img, fl, &chain, &err);
  if (!qc) throw vireo_test::Failure{"open " + img + ": " + err};
  for (auto& s : qc->snapshots())
    if (s.name == name) return s.disk_size;
  throw vireo_test::Failure{"no snapshot " + name + " in " + img};
}

// qemu-io reads each (pattern, offset, length) as given.
static void reads(const std::string& img, const std::vector<std::tuple<int, uint64_t, uint64_t>>& v) {
  std::string cmd = "qemu-io", o;
  for (auto [p, off, len] : v)
    cmd += " -c 'read -P " + std::to_string(p) + " " + std::to_string(off) + " " + std::to_string(len) + "'";
  int rc = sh(cmd + " " + q(img), &o);
  if (rc || o.find("Pattern verification failed") != std::string::npos)
    throw vireo_test::Failure{img + ": " + o};
}

// The same qcow2 image made twice (`a` for Vireo, `b` for qemu-img): created
// with `opts` at `size`, written by qemu-io `before`, snapshot s1, written `after`.
static void snapshotted_pair(const std::string& a, const std::string& b, const std::string& opts, const std::string& size,
                             const std::string& before, const std::string& after) {
  for (const std::string& x : {a, b}) {
    ::unlink(x.c_str());
    std::string o;
    CHECK_EQ(sh("qemu-img create -q -f qcow2 -o " + opts + " " + q(x) + " " + size + " && qemu-io " + before + " " + q(x) +
                " >/dev/null && qemu-img snapshot -c s1 " + q(x) + " && qemu-io " + after + " " + q(x) + " >/dev/null", &o), 0);
  }
}

// A v3 image with internal snapshots grows as with qemu-img: the active L1
// table grows, each snapshot keeps its L1 table and size; snapshots taken
// before and after the resize apply with their own data and sizes.
TEST(img_resize_grows_v3_image_with_snapshots) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  // 4 KiB clusters: 2 GiB needs a 2-cluster L1 table (the old one is moved).
  for (const char* opts : {"cluster_size=64k", "cluster_size=4k", "extended_l2=on"}) {
    std::string a = d / "v.qcow2", b = d / "q.qcow2", o;
    snapshotted_pair(a, b, opts, "4M", "-c 'write -P 7 0 4M'", "-c 'write -P 8 1M 1M'");
    CHECK_EQ(sh(V + " resize " + q(a) + " 2G", &o), 0);
    CHECK(o.find("Image resized.") != std::string::npos);
    CHECK_EQ(sh("qemu-img resize -q " + q(b) + " 2G", &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(sh(V + " check -q " + q(a), &o), 0);
    CHECK_EQ(qemu_vsize(a), uint64_t(2) << 30);
    if (sh("qemu-img compare " + q(a) + " " + q(b), &o)) throw vireo_test::Failure{std::string(opts) + ": " + o};
    CHECK_EQ(sh("qemu-img snapshot -l " + q(a) + " | grep -c ' s1 '", &o), 0);
    CHECK_EQ(snapshot_disk_size(a, "s1"), uint64_t(4) << 20);
    // Written past the old end, then a second snapshot at the new size.
    for (const std::string& x : {a, b})
      CHECK_EQ(sh("qemu-io -c 'write -P 9 1536M 1M' " + q(x) + " >/dev/null && qemu-img snapshot -c s2 " + q(x) +
                  " && qemu-io -c 'write -P 10 0 64k' " + q(x) + " >/dev/null", &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(snapshot_disk_size(a, "s2"), uint64_t(2) << 30);
    // qemu-img applies them on our image as on its own (s1 not with 4 KiB
    // clusters: qemu-img takes seconds to cut 512 L2 tables' worth).
    for (const char* sn : {"s1", "s2"}) {
      if (std::string(opts) == "cluster_size=4k" && std::string(sn) == "s1") continue;
      std::string ca = d / "ca.qcow2", cb = d / "cb.qcow2";
      CHECK_EQ(sh("cp " + q(a) + " " + q(ca) + " && cp " + q(b) + " " + q(cb) + " && qemu-img snapshot -a " + sn + " " +
                  q(ca) + " && qemu-img snapshot -a " + sn + " " + q(cb), &o), 0);
      CHECK_EQ(qemu_vsize(ca), qemu_vsize(cb));
      if (sh("qemu-img compare " + q(ca) + " " + q(cb), &o)) throw vireo_test::Failure{std::string(opts) + " " + sn + ": " + o};
      qemu_check_clean(ca);
    }
    // Vireo applies them: s1 back to 4 MiB and its data, s2 to 2 GiB.
    CHECK_EQ(sh(V + " snapshot -a s1 " + q(a), &o), 0);
    CHECK_EQ(qemu_vsize(a), uint64_t(4) << 20);
    reads(a, {{7, 0, 4 << 20}});
    qemu_check_clean(a);
    CHECK_EQ(sh(V + " snapshot -a s2 " + q(a), &o), 0);
    CHECK_EQ(qemu_vsize(a), uint64_t(2) << 30);
    reads(a, {{7, 0, 1 << 20}, {8, 1 << 20, 1 << 20}, {7, 2 << 20, 2 << 20}, {0, 4 << 20, 60 << 20},
              {0, 1535ULL << 20, 1 << 20}, {9, 1536ULL << 20, 1 << 20}, {0, 2047ULL << 20, 1 << 20}});
    qemu_check_clean(a);
    // Grow again with preallocation, snapshots still there; delete one.
    CHECK_EQ(sh(V + " resize --preallocation=metadata " + q(a) + " +8M", &o), 0);
    qemu_check_clean(a);
    reads(a, {{9, 1536ULL << 20, 1 << 20}, {0, 2048ULL << 20, 8 << 20}});
    CHECK_EQ(sh(V + " snapshot -d s1 " + q(a), &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(sh("qemu-img snapshot -l " + q(a) + " | grep -c ' s[12] '", &o), 0);
    CHECK_EQ(o, std::string("1\n"));
    CHECK_EQ(snapshot_disk_size(a, "s2"), uint64_t(2) << 30);
  }
}

// A v3 image with internal snapshots shrinks as with qemu-img 7.2: only the
// active L1's references past the new end go (a partly kept L2 table the
// snapshot shares is copied first), the result matches qemu-img's shrink of
// the same image, and applying a snapshot brings back its size and the data
// past the new end; one taken after the shrink has the small size.
TEST(img_resize_shrinks_v3_image_with_snapshots) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  for (const char* opts : {"cluster_size=64k", "cluster_size=4k", "extended_l2=on"}) {
    std::string a = d / "v.qcow2", b = d / "q.qcow2", o;
    // 4 KiB clusters: 64 MiB spans 32 L2 tables, so whole tables and a partly
    // kept one are both cut.
    snapshotted_pair(a, b, opts, "64M", "-c 'write -P 7 0 8M' -c 'write -P 5 40M 1M' -c 'write -P 6 63M 1M'",
                     "-c 'write -P 8 1M 1M' -c 'write -P 9 41M 512k'");
    CHECK_EQ(sh(V + " resize --shrink " + q(a) + " 41061376", &o), 0);   // 39 MiB + 164 KiB: a partly kept cluster
    CHECK(o.find("Image resized.") != std::string::npos);
    CHECK_EQ(sh("qemu-img resize -q --shrink " + q(b) + " 41061376", &o), 0);
    qemu_check_clean(a);
    CHECK_EQ(sh(V + " check -q " + q(a), &o), 0);
    CHECK_EQ(qemu_vsize(a), uint64_t(41061376));
    if (sh("qemu-img compare " + q(a) + " " + q(b), &o)) throw vireo_test::Failure{std::string(opts) + ": " + o};
    CHECK_EQ(snapshot_disk_size(a, "s1"), uint64_t(64) << 20);
    // The file keeps what s1 holds: not smaller than s1's data.
    struct stat st{};
    CHECK_EQ(::stat(a.c_str(), &st), 0);
    CHECK(uint64_t(st.st_size) >= uint64_t(10) << 20);
    // Grown again, the cut range reads zeros, then a snapshot at that size.
    CHECK_EQ(sh(V + " resize " + q(a) + " 48M && qemu-img snapshot -c s2 " + q(a), &o), 0);
    reads(a, {{7, 0, 1 << 20}, {8, 1 << 20, 1 << 20}, {7, 2 << 20, 6 << 20}, {0, 41061376, 48 * (1 << 20) - 41061376}});
    qemu_check_clean(a);
    // qemu-img applies s1 on our image as on its own shrunk one.
    {
      std::string ca = d / "ca.qcow2", cb = d / "cb.qcow2";
      CHECK_EQ(sh("cp " + q(a) + " " + q(ca) + " && cp " + q(b) + " " + q(cb) + " && qemu-img snapshot -a s1 " + q(ca) +
                  " && qemu-img snapshot -a s1 " + q(cb), &o), 0);
      CHECK_EQ(qemu_vsize(ca), uint64_t(64) << 20);
      if (sh("qemu-img compare " + q(ca) + " " + q(cb), &o)) throw vireo_test::Failure{std::string(opts) + " s1: " + o};
      qemu_check_clean(ca);
    }
    // Vireo applies them: s1 back to 64 MiB with the data past the cut, s2 to 48 MiB.
    CHECK_EQ(sh(V + " snapshot -a s1 " + q(a), &o), 0);
    CHECK_EQ(qemu_vsize(a), uint64_t(64) << 20);
    reads(a, {{7, 0, 8 << 20}, {5, 40 << 20, 1 << 20}, {6, 63 << 20, 1 << 20}, {0, 8 << 20, 32 << 20}});
    qemu_check_clean(a);
    CHECK_EQ(sh(V + " snapshot -a s2 " + q(a), &o), 0);
    CHECK_EQ(qemu_vsize(a), uint64_t(48) << 20);
    reads(a, {{8, 1 << 20, 1 << 20}, {0, 41061376, 48 * (1 << 20) - 41061376}});
    qemu_check_clean(a);
    // Deleting both leaves only the active image's clusters counted.
    CHECK_EQ(sh(V + " snapshot -d s1 " + q(a) + " && " + V + " snapshot -d s2 " + q(a), &o), 0);
    qemu_check_clean(a);
  }
}

// A v3 snapshot entry without its size (qemu-img check: "snapshot table entry
// 0 is incomplete"; its size would read as the image's): growing the image
// first records the size it had.
TEST(img_resize_records_a_missing_snapshot_size) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string a = d / "a.qcow2", o;
  CHECK_EQ(sh("qemu-img create -q -f qcow2 " + q(a) + " 4M && qemu-io -c 'write -P 7 0 4M' " + q(a) +
              " >/dev/null && qemu-img snapshot -c s1 " + q(a), &o), 0);
  // Rewrite the only entry without its extra data.
  auto img = blocktest::slurp(a);
  auto be = [&](uint64_t off, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | img[off + i];
    return v;
  };
  uint64_t so = be(64, 8), extra = be(so + 36, 4), idl = be(so + 12, 2), nl = be(so + 14, 2);
  CHECK(extra >= 16);
  std::vector<uint8_t> e(img.begin() + so, img.begin() + so + 40);
  e[36] = e[37] = e[38] = e[39] = 0;
  e.insert(e.end(), img.begin() + so + 40 + extra, img.begin() + so + 40 + extra + idl + nl);
  e.resize((e.size() + 7) / 8 * 8, 0);
  blocktest::poke(a, so, e.data(), e.size());
  CHECK_EQ(sh("qemu-img check " + q(a), &o), 2);
  CHECK(o.find("incomplete") != std::string::npos);
  CHECK_EQ(sh(V + " resize " + q(a) + " 64M", &o), 0);
  qemu_check_clean(a);  // the entry is whole again
  CHECK_EQ(snapshot_disk_size(a, "s1"), uint64_t(4) << 20);
  CHECK_EQ(sh("qemu-img snapshot -a s1 " + q(a), &o), 0);
  CHECK_EQ(qemu_vsize(a), uint64_t(4) << 20);
  reads(a, {{7, 0, 4 << 20}});
}

// A raw source with compressible, incompressible, zero and unaligned pieces.
static void make_mixed_raw(const std::string& path, uint64_t size) {
  std::string err;
  CHECK_EQ(create_raw(path, size, &err), 0);
  auto b = RawBackend::open(path, false, &err);
  CHECK(b != nullptr);
  std::string text;
  while (text.size() < (3 << 20)) text += "the quick brown fox jumps over the lazy qcow2 cluster " + std::to_string(text.size()) + "\n";
  CHECK_EQ(b->pwrite(text.data(), text.size(), 0), 0);
  auto rnd = blocktest::pattern(2 << 20, 42);  // incompressible, a whole 2 MiB cluster
  CHECK_EQ(b->pwrite(rnd.data(), rnd.size(), 4 << 20), 0);
  // 4 KiB pieces that straddle cluster boundaries with holes between them
  auto small = blocktest::pattern(4096, 7);
  for (uint64_t off : {uint64_t(8 << 20) - 2048, uint64_t(9 << 20) + 4096 * 3, uint64_t(10 << 20) - 4096})
    CHECK_EQ(b->pwrite(small.data(), small.size(), off), 0);
  std::vector<uint8_t> ones(3 << 20, 0x11);
  CHECK_EQ(b->pwrite(ones.data(), ones.size(), 12 << 20), 0);
  // the last, partial cluster
  CHECK_EQ(b->pwrite(small.data(), 1536, size - 1536), 0);
}

TEST(img_convert_compressed_reads_back_in_qemu_img) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  const uint64_t size = (20 << 20) + 3 * 512;  // not a multiple of any cluster size but 512
  std::string src = d / "src.raw", o;
  make_mixed_raw(src, size);
  for (const char* opts : {"cluster_size=64k", "cluster_size=512,compat=0.10", "cluster_size=4k", "cluster_size=2M"}) {
    std::string c = d / "c.qcow2", p = d / "p.qcow2", back = d / "back.raw";
    CHECK_EQ(sh(V + " convert -c -O qcow2 -o " + std::string(opts) + " " + q(src) + " " + q(c), &o), 0);
    CHECK_EQ(sh(V + " convert -O qcow2 -o " + std::string(opts) + " " + q(src) + " " + q(p), &o), 0);
    if (sh("qemu-img compare -f raw " + q(src) + " " + q(c), &o)) throw vireo_test::Failure{std::string(opts) + ": " + o};
    qemu_check_clean(c);
    CHECK_EQ(sh(V + " check -q " + q(c), &o), 0);
    std::string j;
    CHECK_EQ(sh("qemu-img check --output json " + q(c), &j), 0);
    uint64_t zc = json_num(j, "compressed-clusters"), all = json_num(j, "allocated-clusters");
    CHECK(zc > 0);
    CHECK(zc < all);  // the random 2 MiB did not compress: stored as it is
    CHECK(file_size(c) < file_size(p));
    // Vireo's own reader agrees.
    CHECK_EQ(sh(V + " convert -O raw " + q(c) + " " + q(back), &o), 0);
    CHECK_EQ(sh("cmp " + q(src) + " " + q(back), &o), 0);
    // Guest writes over compressed clusters copy them out; still clean.
    CHECK_EQ(sh("qemu-io -c 'write -P 9 64k 4k' " + q(c) + " >/dev/null", &o), 0);
    {
      OpenOptions oo;
      std::string err;
      auto w = open_block(c, oo, &err);
      CHECK(w != nullptr);
      std::vector<uint8_t> buf(4096, 0x5a);
      CHECK_EQ(w->pwrite(buf.data(), buf.size(), 1 << 20), 0);
      CHECK_EQ(w->flush(), 0);
    }
    qemu_check_clean(c);
    CHECK_EQ(sh("qemu-io -c 'read -P 9 64k 4k' -c 'read -P 0x5a 1M 4k' " + q(c) + " | grep -c '^read'", &o), 0);
    CHECK_EQ(o, std::string("2\n"));
  }
  // Same input through qemu-img convert -c: same content.
  std::string mine = d / "mine.qcow2", theirs = d / "theirs.qcow2";
  CHECK_EQ(sh(V + " convert -c -O qcow2 " + q(src) + " " + q(mine), &o), 0);
  CHECK_EQ(sh("qemu-img convert -c -O qcow2 " + q(src) + " " + q(theirs), &o), 0);
  CHECK_EQ(sh("qemu-img compare " + q(mine) + " " + q(theirs), &o), 0);
  // Raw output can't be compressed: refused, nothing written.
  CHECK_EQ(sh(V + " convert -c -O raw " + q(src) + " " + q(d / "x.raw"), &o), 1);
  CHECK(o.find("Compression not supported for this file format") != std::string::npos);
  CHECK(access((d / "x.raw").c_str(), F_OK) != 0);
}

TEST(img_convert_compressed_api_stats) {
  TmpDir d;
  const uint64_t size = 16 << 20;
  std::string src = d / "src.raw";
  make_mixed_raw(src, size);
  std::string err;
  auto in = RawBackend::open(src, true, &err);
  CHECK(in != nullptr);
  ConvertOptions co;
  co.format = "qcow2";
  co.compress = true;
  ConvertStats st;
  CHECK_EQ(convert_image(*in, d / "c.qcow2", co, &err, &st), 0);
  CHECK(st.compressed_clusters > 0);
  CHECK(st.plain_clusters >= 32);  // the random 2 MiB: 32 clusters of 64 KiB
  co.format = "raw";
  CHECK(convert_image(*in, d / "c.raw", co, &err) != 0);
  CHECK(err.find("Compression not supported") != std::string::npos);
  // A compressed write into an allocated cluster is stored plainly, never leaked.
  OpenOptions oo;
  auto w = open_block(d / "c.qcow2", oo, &err);
  CHECK(w != nullptr);
  auto* qc = dynamic_cast<Qcow2Backend*>(w.get());
  CHECK(qc != nullptr);
  std::vector<uint8_t> ones(65536, 1);
  auto z = Qcow2Backend::deflate_cluster(ones.data(), ones.size(), 65536);
  CHECK(!z.empty() && z.size() < 1024);
  CHECK_EQ(qc->write_compressed(ones.data(), ones.size(), 0, z), 0);
  CHECK_EQ(qc->write_compressed(ones.data(), ones.size(), 1 << 20, z), 0);  // was unallocated
  CHECK_EQ(qc->write_compressed(ones.data(), 100, 2 << 20, z), -EINVAL);     // not the whole cluster
  std::vector<uint8_t> rb(65536);
  CHECK_EQ(w->pread(rb.data(), rb.size(), 0), 0);
  CHECK(rb == ones);
  CHECK_EQ(w->pread(rb.data(), rb.size(), 1 << 20), 0);
  CHECK(rb == ones);
  CHECK_EQ(w->flush(), 0);
  CheckResult cr = qc->check(false);
  CHECK_EQ(cr.corruptions, uint64_t(0));
  CHECK_EQ(cr.leaks, uint64_t(0));
}
