// qcow2 images with extended L2 entries (subclusters; incompatible feature
// bit 4, qemu-img's extended_l2=on) written by Vireo: created by vireo-img /
// create_qcow2 and by qemu-img, written through Qcow2Backend at odd offsets,
// then judged by qemu-img check / compare / map; qemu's extended-L2 images
// (data, zero subclusters, a backing file) converted by vireo-img; bad
// options and invalid bitmaps refused. Each case that needs qemu-img skips
// with the reason where it is missing.
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "block/blocktest_util.h"
#include "block/convert.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;

namespace {

void need_qemu() {
  if (!blocktest::have("qemu-img") || !blocktest::have("qemu-io"))
    SKIP("qemu-img/qemu-io not installed (Debian package qemu-utils)");
}

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string vireo_img() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string p(self, n > 0 ? n : 0);
  return p.substr(0, p.rfind('/') + 1) + "vireo-img";
}

std::string need_vireo_img() {
  std::string v = vireo_img();
  if (access(v.c_str(), X_OK)) SKIP("vireo-img not built next to this test");
  return v;
}

uint64_t be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

uint64_t file_be(const std::string& path, uint64_t off, int n) {
  uint8_t b[8] = {};
  int fd = open(path.c_str(), O_RDONLY);
  ssize_t r = pread(fd, b, n, off);
  close(fd);
  return r == n ? be(b, n) : ~0ULL;
}

constexpr uint64_t kOffMask = 0x00fffffffffffe00ULL, kCopied = 1ULL << 63;

// The extended L2 entry (first word, bitmap) of guest offset `off`, read from the file.
struct Ext {
  uint64_t e = 0, bm = 0;
  uint32_t alloc() const { return uint32_t(bm); }
  uint32_t zero() const { return uint32_t(bm >> 32); }
};
Ext l2_of(const std::string& img, uint64_t off) {
  uint32_t cb = uint32_t(file_be(img, 20, 4));
  uint64_t l1_off = file_be(img, 40, 8);
  uint32_t l2_bits = cb - 4;  // 16-byte entries
  uint64_t l1i = off >> (cb + l2_bits);
  uint64_t l2 = file_be(img, l1_off + 8 * l1i, 8) & kOffMask;
  if (!l2) return {};
  uint64_t idx = (off >> cb) & ((1ULL << l2_bits) - 1);
  return {file_be(img, l2 + 16 * idx, 8), file_be(img, l2 + 16 * idx + 8, 8)};
}

void save(const std::string& path, const std::vector<uint8_t>& v) {
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(v.data(), 1, v.size(), f);
  std::fclose(f);
}

void expect_clean(const std::string& img, const std::string& what) {
  std::string out;
  int rc = sh("qemu-img check " + q(img), &out);
  if (rc) throw vireo_test::Failure{what + ": qemu-img check exit " + std::to_string(rc) + ":\n" + out};
}

void expect_equal(const std::string& img, const std::vector<uint8_t>& shadow, const TmpDir& d, const std::string& what) {
  save(d / "shadow.raw", shadow);
  std::string out;
  if (sh("qemu-img compare -f qcow2 -F raw " + q(img) + " " + q(d / "shadow.raw"), &out))
    throw vireo_test::Failure{what + ": qemu-img compare: " + out};
}

// Our read of `img` equals qemu-img's raw conversion of it.
void expect_reads_like_qemu(const std::string& img, const TmpDir& d, const std::string& what) {
  std::string out, ref = d / "ref.raw";
  if (sh("qemu-img convert -O raw " + q(img) + " " + q(ref), &out)) throw vireo_test::Failure{what + ": " + out};
  auto want = blocktest::slurp(ref);
  OpenOptions o;
  o.read_only = true;
  std::string err;
  auto b = open_block(img, o, &err);
  if (!b) throw vireo_test::Failure{what + ": open: " + err};
  std::vector<uint8_t> got(want.size());
  CHECK_EQ(b->pread(got.data(), got.size(), 0), 0);
  if (got != want) throw vireo_test::Failure{what + ": our read differs from qemu-img's"};
}

// Bytes qemu-img map reports as data ("data": true) in the top image.
uint64_t mapped_data(const std::string& img) {
  std::string out;
  if (sh("qemu-img map --output=json " + q(img) +
             " | python3 -c 'import json,sys; print(sum(e[\"length\"] for e in json.load(sys.stdin) if e[\"data\"] and e[\"depth\"]==0))'",
         &out))
    throw vireo_test::Failure{"qemu-img map: " + out};
  return std::stoull(out);
}

std::unique_ptr<BlockBackend> open_rw(const std::string& img) {
  std::string err;
  auto b = open_block(img, OpenOptions{}, &err);
  if (!b) throw vireo_test::Failure{"open " + img + ": " + err};
  return b;
}

void put(BlockBackend* b, std::vector<uint8_t>& shadow, uint64_t off, uint64_t len, uint32_t seed) {
  auto data = blocktest::pattern(len, seed);
  CHECK_EQ(b->pwrite(data.data(), len, off), 0);
  std::memcpy(&shadow[off], data.data(), len);
}
void zero(BlockBackend* b, std::vector<uint8_t>& shadow, uint64_t off, uint64_t len) {
  CHECK_EQ(b->write_zeroes(off, len), 0);
  std::memset(&shadow[off], 0, len);
}

}  // namespace

TEST(extl2_create_like_qemu_img) {
  need_qemu();
  std::string V = need_vireo_img();
  TmpDir d;
  std::string out;
  for (const char* cs : {"16k", "64k", "2M", ""}) {
    std::string ours = d / "ours.qcow2", theirs = d / "theirs.qcow2";
    std::string opt = std::string("extended_l2=on") + (*cs ? std::string(",cluster_size=") + cs : "");
    CHECK_EQ(sh(q(V) + " create -f qcow2 -o " + opt + " " + q(ours) + " 100M", &out), 0);
    CHECK(out.find("extended_l2=on") != std::string::npos);
    CHECK_EQ(sh("qemu-img create -q -f qcow2 -o " + opt + " " + q(theirs) + " 100M"), 0);
    expect_clean(ours, opt);
    CHECK_EQ(sh("qemu-img info --output=json " + q(ours), &out), 0);
    if (out.find("\"extended-l2\": true") == std::string::npos) throw vireo_test::Failure{opt + ": " + out};
    CHECK_EQ(file_be(ours, 72, 8), uint64_t(16));                   // incompatible features: bit 4 only
    CHECK_EQ(file_be(ours, 4, 4), uint64_t(3));                     // v3
    CHECK_EQ(file_be(ours, 20, 4), file_be(theirs, 20, 4));         // cluster size (64 KiB by default, as qemu-img 7.2)
    CHECK_EQ(file_be(ours, 36, 4), file_be(theirs, 36, 4));         // L1 entries: 128-bit L2 entries halve an L2 table's reach
    CHECK_EQ(sh(q(V) + " info " + q(ours), &out), 0);
    CHECK(out.find("extended l2: true") != std::string::npos);
  }
  // without the option: no feature bit
  CHECK_EQ(sh(q(V) + " create -q -f qcow2 " + q(d / "plain.qcow2") + " 1M"), 0);
  CHECK_EQ(file_be(d / "plain.qcow2", 72, 8), uint64_t(0));
  CHECK_EQ(sh(q(V) + " create -q -f qcow2 -o extended_l2=off " + q(d / "off.qcow2") + " 1M"), 0);
  CHECK_EQ(file_be(d / "off.qcow2", 72, 8), uint64_t(0));
  // over a backing file; and through the API
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(d / "base.raw") + " 3M"), 0);
  CHECK_EQ(sh("cd " + q(d.path) + " && " + q(V) + " create -q -f qcow2 -b base.raw -F raw -o extended_l2=on top.qcow2"), 0);
  CHECK_EQ(sh("qemu-img info " + q(d / "top.qcow2"), &out), 0);
  CHECK(out.find("extended l2: true") != std::string::npos);
  CHECK(out.find("backing file: base.raw") != std::string::npos);
  CHECK_EQ(create_qcow2(d / "api.qcow2", 5 << 20, 15, "", "", 3, nullptr, true), 0);
  std::vector<std::string> chain;
  std::string err;
  auto img = Qcow2Backend::open(d / "api.qcow2", Qcow2OpenFlags{}, &chain, &err);
  CHECK(img);
  CHECK(img->info().extended_l2);
  CHECK(!img->read_only());
  img.reset();
  expect_clean(d / "api.qcow2", "api");
}

TEST(extl2_bad_options_refused_like_qemu_img) {
  need_qemu();
  std::string V = need_vireo_img();
  TmpDir d;
  std::string out;
  struct Bad { const char* opts; const char* says; };
  const Bad bad[] = {
      {"extended_l2=on,compat=0.10", "only supported with compat=1.1"},
      {"compat=0.10,extended_l2=on,cluster_size=64k", "only supported with compat=1.1"},
      {"extended_l2=on,cluster_size=8k", "at least 16384 bytes (cluster_size=8192)"},
      {"extended_l2=on,cluster_size=512", "at least 16384 bytes (cluster_size=512)"},
      {"extended_l2=maybe", "Parameter 'extended_l2' expects 'on' or 'off'"},
  };
  for (auto& b : bad) {
    std::string img = d / "x.qcow2";
    CHECK(sh("qemu-img create -q -f qcow2 -o " + std::string(b.opts) + " " + q(img) + " 1M") != 0);  // qemu refuses too
    unlink(img.c_str());
    CHECK_EQ(sh(q(V) + " create -f qcow2 -o " + b.opts + " " + q(img) + " 1M", &out), 1);
    if (out.find(b.says) == std::string::npos) throw vireo_test::Failure{std::string(b.opts) + ": " + out};
    CHECK(access(img.c_str(), F_OK) != 0);  // nothing created
    // convert: refused before anything is written
    CHECK_EQ(sh("qemu-img create -q -f raw " + q(d / "src.raw") + " 1M"), 0);
    CHECK_EQ(sh(q(V) + " convert -O qcow2 -o " + b.opts + " " + q(d / "src.raw") + " " + q(img), &out), 1);
    if (out.find(b.says) == std::string::npos) throw vireo_test::Failure{std::string("convert ") + b.opts + ": " + out};
    CHECK_EQ(sh("ls -A " + q(d.path), &out), 0);
    CHECK_EQ(out, std::string("src.raw\n"));  // no target, no temporary
  }
  CHECK_EQ(sh(q(V) + " create -f raw -o extended_l2=on " + q(d / "r.raw") + " 1M", &out), 1);
  CHECK(out.find("qcow2 option") != std::string::npos);
  CHECK_EQ(sh(q(V) + " convert -O raw -o extended_l2=on " + q(d / "src.raw") + " " + q(d / "r.raw"), &out), 1);
  CHECK(out.find("qcow2 option") != std::string::npos);
  CHECK(access((d / "r.raw").c_str(), F_OK) != 0);
  // the API says the same
  std::string err;
  CHECK_EQ(create_qcow2(d / "a.qcow2", 1 << 20, 13, "", "", 3, &err, true), -EINVAL);
  CHECK(err.find("16384") != std::string::npos);
  CHECK_EQ(create_qcow2(d / "a.qcow2", 1 << 20, 16, "", "", 2, &err, true), -EINVAL);
  CHECK(err.find("compat=0.10") != std::string::npos);
  CHECK(access((d / "a.qcow2").c_str(), F_OK) != 0);
  auto src = open_block(d / "src.raw", OpenOptions{"raw", true}, &err);
  CHECK(src);
  ConvertOptions co;
  co.format = "qcow2";
  co.extended_l2 = true;
  co.cluster_bits = 12;
  CHECK_EQ(convert_image(*src, d / "c.qcow2", co, &err), -EINVAL);
  CHECK(err.find("c.qcow2") != std::string::npos && err.find("16384") != std::string::npos);
  // an image claiming extended L2 with 4 KiB clusters does not open
  CHECK_EQ(create_qcow2(d / "small.qcow2", 1 << 20, 12, "", "", 3, nullptr), 0);
  blocktest::poke_be64(d / "small.qcow2", 72, 16);
  CHECK(!open_block(d / "small.qcow2", OpenOptions{}, &err));
  CHECK(err.find("small.qcow2") != std::string::npos && err.find("at least 16 KiB") != std::string::npos);
}

// Allocation at subcluster granularity: the bits Vireo leaves in the L2
// entries, step by step (64 KiB clusters: 2 KiB subclusters), no backing file.
TEST(extl2_subcluster_bits_as_qemu_sets_them) {
  need_qemu();
  TmpDir d;
  const uint64_t C = 65536, S = C / 32;
  std::string img = d / "b.qcow2";
  CHECK_EQ(create_qcow2(img, 16 * C, 16, "", "", 3, nullptr, true), 0);
  std::vector<uint8_t> shadow(16 * C, 0);
  auto step = [&](auto fn) {
    auto b = open_rw(img);
    fn(b.get());
    CHECK_EQ(b->flush(), 0);
  };
  // one byte: one subcluster allocated, in a new cluster
  step([&](BlockBackend* b) { put(b, shadow, 3 * C + 5 * S + 7, 1, 1); });
  Ext x = l2_of(img, 3 * C);
  CHECK_EQ(x.bm, uint64_t(1) << 5);
  CHECK((x.e & kCopied) && (x.e & kOffMask));
  const uint64_t host = x.e & kOffMask;
  // across subclusters 5-6, in place; the byte written before stays
  step([&](BlockBackend* b) { put(b, shadow, 3 * C + 5 * S + 1000, 3000, 2); });
  x = l2_of(img, 3 * C);
  CHECK_EQ(x.bm, uint64_t(0x60));
  CHECK_EQ(x.e & kOffMask, host);
  // zeroes over whole subclusters 10-11 and over part of 5: zero bits for 10-11 only
  step([&](BlockBackend* b) {
    zero(b, shadow, 3 * C + 10 * S, 2 * S);
    zero(b, shadow, 3 * C + 5 * S + 100, 50);
  });
  x = l2_of(img, 3 * C);
  CHECK_EQ(x.alloc(), 0x60u);
  CHECK_EQ(x.zero(), 0xc00u);
  // writing into a zero subcluster clears its zero bit; a subcluster-aligned
  // discard of an allocated one sets it
  step([&](BlockBackend* b) {
    put(b, shadow, 3 * C + 11 * S + 3, 10, 3);
    CHECK_EQ(b->discard(3 * C + 6 * S, S), 0);
    std::memset(&shadow[3 * C + 6 * S], 0, S);
    CHECK_EQ(b->discard(3 * C + 5 * S + 1, 100), 0);  // part of a subcluster: left as it is
  });
  x = l2_of(img, 3 * C);
  CHECK_EQ(x.alloc(), 0x820u);
  CHECK_EQ(x.zero(), 0x440u);
  // a whole cluster written: every subcluster allocated
  step([&](BlockBackend* b) { put(b, shadow, 7 * C, C, 4); });
  CHECK_EQ(l2_of(img, 7 * C).bm, uint64_t(0xffffffff));
  // a write across two clusters: the tail of one, the head of the next
  step([&](BlockBackend* b) { put(b, shadow, 9 * C - 3 * S - 11, 4 * S + 22, 5); });
  CHECK_EQ(l2_of(img, 8 * C).bm, uint64_t(0xf0000000));
  CHECK_EQ(l2_of(img, 9 * C).bm, uint64_t(0x3));
  expect_clean(img, "bits");
  expect_equal(img, shadow, d, "bits");
  // qemu sees exactly the allocated subclusters as data
  CHECK_EQ(mapped_data(img), uint64_t(2 * S + C + 4 * S + 2 * S));
  // a whole cluster zeroed (no backing file): unallocated again, its cluster freed
  step([&](BlockBackend* b) { zero(b, shadow, 3 * C, C); });
  x = l2_of(img, 3 * C);
  CHECK_EQ(x.e, uint64_t(0));
  CHECK_EQ(x.bm, uint64_t(0));
  // the last allocated subcluster of a cluster zeroed: the cluster is freed, zero bits kept
  step([&](BlockBackend* b) {
    zero(b, shadow, 9 * C, 2 * S);
  });
  x = l2_of(img, 9 * C);
  CHECK_EQ(x.e, uint64_t(0));
  CHECK_EQ(x.bm, uint64_t(0x3) << 32);
  expect_clean(img, "bits after zeroing");
  expect_equal(img, shadow, d, "bits after zeroing");
  // qemu writes on top and we read what qemu reads
  CHECK_EQ(sh("qemu-io -c 'write -P 0x61 200000 5000' -c 'write -z 900000 1' " + q(img) + " >/dev/null"), 0);
  expect_reads_like_qemu(img, d, "bits + qemu-io");
}

// Odd-offset writes, zeroes and discards through Vireo on extended-L2
// images made by Vireo and by qemu-img (16 KiB, 64 KiB, 2 MiB clusters), with
// a reopen in the middle: qemu-img check clean, qemu-img compare equal to a
// raw shadow; then qemu writes and we read the same as qemu.
TEST(extl2_odd_writes_pass_qemu_check_and_compare) {
  need_qemu();
  TmpDir d;
  struct V { int cbits; bool by_qemu; };
  for (V v : {V{14, false}, V{16, false}, V{21, false}, V{14, true}, V{16, true}, V{21, true}}) {
    const uint64_t C = 1ULL << v.cbits, S = C / 32, size = std::max<uint64_t>(8 << 20, 6 * C) + 3 * 512;
    std::string what = std::string(v.by_qemu ? "qemu-img" : "vireo") + " image, cluster " + std::to_string(C);
    std::string img = d / "w.qcow2";
    unlink(img.c_str());
    if (v.by_qemu)
      CHECK_EQ(sh("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=" + std::to_string(C) + " " + q(img) + " " +
                  std::to_string(size)), 0);
    else
      CHECK_EQ(create_qcow2(img, size, v.cbits, "", "", 3, nullptr, true), 0);
    std::vector<uint8_t> shadow(size, 0);
    std::mt19937_64 rng(v.cbits * 2 + v.by_qemu);
    uint32_t seed = 100;
    for (int pass = 0; pass < 2; pass++) {
      auto b = open_rw(img);
      // fixed shapes first: inside one subcluster, across subclusters and
      // clusters, whole clusters, the image's last bytes
      put(b.get(), shadow, S + 1, 1, seed++);
      put(b.get(), shadow, 2 * S - 7, 14, seed++);
      put(b.get(), shadow, C - S / 2, C + S, seed++);
      put(b.get(), shadow, 2 * C, 2 * C, seed++);
      put(b.get(), shadow, size - 700, 700, seed++);
      zero(b.get(), shadow, 2 * C + S + 3, 3 * S);
      for (int i = 0; i < 120; i++) {
        uint64_t off = rng() % size, len = 1 + rng() % (rng() % 4 ? 3 * S : 3 * C);
        len = std::min(len, size - off);
        switch (rng() % 6) {
          case 0: zero(b.get(), shadow, off, len); break;
          case 1: {  // discard: whole subclusters read as zeros, parts are left alone
            // (the image's last, partial subcluster counts as whole)
            uint64_t a = (off + S - 1) / S * S, e = off + len == size ? size : (off + len) / S * S;
            CHECK_EQ(b->discard(off, len), 0);
            if (a < e) std::memset(&shadow[a], 0, e - a);
            break;
          }
          default: put(b.get(), shadow, off, len, seed++);
        }
      }
      if (pass == 0) CHECK_EQ(b->flush(), 0);
      std::vector<uint8_t> got(size);
      CHECK_EQ(b->pread(got.data(), size, 0), 0);
      if (got != shadow) throw vireo_test::Failure{what + ": our own read differs, pass " + std::to_string(pass)};
    }
    expect_clean(img, what);
    expect_equal(img, shadow, d, what);
    CHECK_EQ(sh(q(vireo_img()) + " check " + q(img) + " >/dev/null"), 0);
    CHECK_EQ(sh("qemu-io -c 'write -P 0x3c 1000 3000' -c 'write -z " + std::to_string(3 * C + 2 * S) + " " + std::to_string(S) +
                "' -c 'discard " + std::to_string(4 * C) + " " + std::to_string(C) + "' " + q(img) + " >/dev/null"), 0);
    expect_reads_like_qemu(img, d, what + " + qemu-io");
    {  // and we write once more over qemu's changes
      auto b = open_rw(img);
      auto data = blocktest::pattern(5 * S + 3, 7);
      CHECK_EQ(b->pwrite(data.data(), data.size(), 3 * C + S + 1), 0);
    }
    expect_clean(img, what + " after qemu-io and us");
  }
}

// Internal snapshots share clusters: a write into a shared cluster copies
// its allocated subclusters to a new one; applying the snapshot brings the
// old data back; qemu-img agrees throughout.
TEST(extl2_snapshots_copy_subclusters) {
  need_qemu();
  TmpDir d;
  const uint64_t C = 65536, S = C / 32, size = 4 << 20;
  std::string img = d / "s.qcow2";
  CHECK_EQ(create_qcow2(img, size, 16, "", "", 3, nullptr, true), 0);
  std::vector<uint8_t> shadow(size, 0);
  std::vector<uint8_t> at_snap;
  {
    auto b = open_rw(img);
    put(b.get(), shadow, 5 * S + 9, 2 * S, 1);  // subclusters 5-7 of cluster 0
    zero(b.get(), shadow, 20 * S, 2 * S);       // zero bits 20, 21
    put(b.get(), shadow, C, C, 2);
    std::string err;
    CHECK_EQ(as_snapshots(b.get())->snapshot_create("before", &err), 0);
    at_snap = shadow;
    put(b.get(), shadow, 30 * S + 5, 10, 3);       // cluster 0 is shared: a new cluster
    put(b.get(), shadow, C + 3 * S + 1, 100, 4);   // cluster 1 too
  }
  Ext x = l2_of(img, 0);
  CHECK_EQ(x.alloc(), 0x400000e0u);
  CHECK_EQ(x.zero(), 0x300000u);
  expect_clean(img, "after snapshot writes");
  expect_equal(img, shadow, d, "after snapshot writes");
  CHECK_EQ(sh("qemu-img snapshot -l " + q(img) + " | grep -q before"), 0);
  {
    auto b = open_rw(img);
    std::string err;
    CHECK_EQ(as_snapshots(b.get())->snapshot_apply("before", &err), 0);
  }
  expect_clean(img, "applied");
  expect_equal(img, at_snap, d, "applied");
  {
    auto b = open_rw(img);
    std::string err;
    CHECK_EQ(as_snapshots(b.get())->snapshot_delete("before", &err), 0);
    put(b.get(), at_snap, 3, 5, 5);  // in place again (refcount 1)
  }
  expect_clean(img, "deleted");
  expect_equal(img, at_snap, d, "deleted");
}

// Over a backing file: unallocated subclusters read the backing file, a
// partly written one keeps the backing bytes around the new ones, zeroes
// and discards hide the backing file (zero bits).
TEST(extl2_backing_file_shows_through_unallocated_subclusters) {
  need_qemu();
  TmpDir d;
  const uint64_t size = 6 << 20;
  auto base = blocktest::pattern(size, 42);
  save(d / "base.raw", base);
  for (bool by_qemu : {false, true}) {
    std::string img = d / "top.qcow2";
    unlink(img.c_str());
    const uint64_t C = by_qemu ? 32768 : 65536, S = C / 32;
    std::string what = by_qemu ? "qemu-img overlay" : "vireo overlay";
    if (by_qemu)
      CHECK_EQ(sh("cd " + q(d.path) + " && qemu-img create -q -f qcow2 -b base.raw -F raw -o extended_l2=on,cluster_size=32k top.qcow2"), 0);
    else
      CHECK_EQ(create_qcow2(img, 0, 16, "base.raw", "raw", 3, nullptr, true), 0);
    std::vector<uint8_t> shadow = base;
    {
      auto b = open_rw(img);
      put(b.get(), shadow, 2 * C + 4 * S + 100, 10, 1);     // one subcluster; the rest of it from the base
      put(b.get(), shadow, 2 * C + 9 * S - 5, 20, 2);       // in place, across 8-9, both partly
      zero(b.get(), shadow, 2 * C + 12 * S, 3 * S);         // zero bits
      zero(b.get(), shadow, 2 * C + 16 * S + 1, 10);        // part of a subcluster: written zeros
      zero(b.get(), shadow, 4 * C, C);                      // a whole cluster: all zero bits
      CHECK_EQ(b->discard(5 * C + S, 2 * S), 0);            // discard over a backing file reads zeros
      std::memset(&shadow[5 * C + S], 0, 2 * S);
      put(b.get(), shadow, 7 * C - 1, 2, 3);
      std::vector<uint8_t> got(size);
      CHECK_EQ(b->pread(got.data(), size, 0), 0);
      if (got != shadow) throw vireo_test::Failure{what + ": our own read differs"};
    }
    Ext x = l2_of(img, 2 * C);
    CHECK_EQ(x.alloc(), 0x10310u);  // 4, 8, 9, 16
    CHECK_EQ(x.zero(), 0x7000u);    // 12-14
    x = l2_of(img, 4 * C);
    CHECK_EQ(x.e, uint64_t(0));
    CHECK_EQ(x.bm, uint64_t(0xffffffff) << 32);
    CHECK_EQ(l2_of(img, 5 * C).bm, uint64_t(0x6) << 32);
    expect_clean(img, what);
    expect_equal(img, shadow, d, what);
    expect_reads_like_qemu(img, d, what);
    // flattened by vireo-img convert: the same data, no backing file
    std::string flat = d / "flat.qcow2", out;
    CHECK_EQ(sh(q(vireo_img()) + " convert -O qcow2 -o extended_l2=on " + q(img) + " " + q(flat), &out), 0);
    expect_equal(flat, shadow, d, what + " flattened");
    CHECK_EQ(sh("qemu-img info " + q(flat), &out), 0);
    CHECK(out.find("backing") == std::string::npos);
  }
}

// qemu-made extended-L2 images (data, zero subclusters, discards, a backing
// file) convert exactly with vireo-img, to raw, plain qcow2, extended-L2
// qcow2 and compressed extended-L2 qcow2; the extended-L2 copy allocates no
// more than qemu-img's own conversion.
TEST(extl2_qemu_images_convert_exactly) {
  need_qemu();
  std::string V = need_vireo_img();
  TmpDir d;
  std::string out;
  std::string setup =
      "cd " + q(d.path) + " && qemu-img create -q -f raw base.raw 8M && qemu-io -f raw -c 'write -P 0x11 0 8M' base.raw >/dev/null"
      " && qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k solo.qcow2 8M"
      " && qemu-img create -q -f qcow2 -o extended_l2=on -b base.raw -F raw over.qcow2"
      " && for f in solo.qcow2 over.qcow2; do qemu-io -c 'write -P 0x22 4k 4k' -c 'write -P 0x33 130k 9k' -c 'write -z 200k 16k'"
      " -c 'write -P 0x44 1M 1M' -c 'write -z 1M 8k' -c 'write -z 3M 128k' -c 'discard 1536k 64k' -c 'write -P 0x55 7M 3k' $f >/dev/null || exit 1; done";
  if (sh(setup, &out)) throw vireo_test::Failure{out};
  for (const char* src : {"solo.qcow2", "over.qcow2"}) {
    std::string s = d / src;
    expect_reads_like_qemu(s, d, src);
    struct T { const char* name; const char* args; };
    for (T t : {T{"o.raw", "-O raw"}, T{"o.qcow2", "-O qcow2"}, T{"x.qcow2", "-O qcow2 -o extended_l2=on"},
                T{"x16.qcow2", "-O qcow2 -o extended_l2=on,cluster_size=16k"}, T{"xc.qcow2", "-c -O qcow2 -o extended_l2=on"}}) {
      std::string o = d / t.name;
      if (sh(q(V) + " convert " + t.args + " " + q(s) + " " + q(o), &out))
        throw vireo_test::Failure{std::string(src) + " " + t.args + ": " + out};
      if (sh("qemu-img compare " + q(s) + " " + q(o), &out))
        throw vireo_test::Failure{std::string(src) + " " + t.args + ": qemu-img compare: " + out};
      if (std::string(t.name) != "o.raw") expect_clean(o, std::string(src) + " " + t.args);
    }
    CHECK_EQ(sh("qemu-img info " + q(d / "x.qcow2") + " | grep -q 'extended l2: true'"), 0);
    CHECK_EQ(sh("qemu-img check " + q(d / "xc.qcow2") + " | grep -q 'compressed clusters'"), 0);
    CHECK_EQ(sh("qemu-img convert -O qcow2 -o extended_l2=on " + q(s) + " " + q(d / "q.qcow2")), 0);
    uint64_t ours = mapped_data(d / "x.qcow2"), theirs = mapped_data(d / "q.qcow2");
    std::printf("  (%s: extended-L2 copy maps %llu data bytes, qemu-img's %llu)\n", src, (unsigned long long)ours,
                (unsigned long long)theirs);
    CHECK(ours <= theirs);
  }
}

// Invalid extended L2 entries (as QEMU calls them) are refused with EIO and
// the image marked corrupt; check reports them.
TEST(extl2_invalid_bitmaps_refused) {
  TmpDir d;
  const uint64_t C = 65536;
  for (int kind = 0; kind < 2; kind++) {
    std::string img = d / "bad.qcow2";
    unlink(img.c_str());
    CHECK_EQ(create_qcow2(img, 1 << 20, 16, "", "", 3, nullptr, true), 0);
    {
      auto b = open_rw(img);
      auto data = blocktest::pattern(100, 1);
      CHECK_EQ(b->pwrite(data.data(), 100, C), 0);  // cluster 1, subcluster 0
    }
    uint32_t cb = uint32_t(file_be(img, 20, 4));
    uint64_t l2 = file_be(img, file_be(img, 40, 8), 8) & kOffMask;
    CHECK_EQ(cb, 16u);
    if (kind == 0) blocktest::poke_be64(img, l2 + 16 + 8, 0x0000000100000001ULL);  // allocated and zero
    else blocktest::poke_be64(img, l2 + 16 * 3 + 8, 0x1);                         // allocated without a host cluster
    uint64_t at = kind == 0 ? C : 3 * C;
    {
      auto b = open_rw(img);
      std::vector<uint8_t> buf(100);
      CHECK_EQ(b->pread(buf.data(), 100, at), -EIO);
      CHECK_EQ(b->pwrite(buf.data(), 100, at), -EIO);  // refused: the image is now marked corrupt
      CHECK(dynamic_cast<Qcow2Backend*>(b.get())->found_corrupt());
    }
    CHECK(file_be(img, 72, 8) & 2);  // the corrupt bit
    std::string err;
    CHECK(!open_block(img, OpenOptions{}, &err));
    CHECK(err.find("corrupt") != std::string::npos);
    Qcow2OpenFlags f;
    f.read_only = true;
    f.allow_corrupt = true;
    std::vector<std::string> chain;
    auto qb = Qcow2Backend::open(img, f, &chain, &err);
    CHECK(qb);
    auto res = qb->check(false);
    CHECK(res.corruptions >= 1);
    if (blocktest::have("qemu-img")) CHECK_EQ(sh("qemu-img check " + q(img) + " >/dev/null"), 2);
  }
}

// Shrinking and growing an extended-L2 image: qemu-img check clean, the same
// data as qemu-img resize --shrink, zeros past the cut once grown again.
TEST(extl2_resize) {
  need_qemu();
  std::string V = need_vireo_img();
  TmpDir d;
  std::string img = d / "r.qcow2", ref = d / "ref.qcow2";
  CHECK_EQ(create_qcow2(img, 8 << 20, 15, "", "", 3, nullptr, true), 0);
  std::vector<uint8_t> shadow(8 << 20, 0);
  {
    auto b = open_rw(img);
    put(b.get(), shadow, 0, 8 << 20, 9);
    zero(b.get(), shadow, 1 << 20, 100000);
  }
  CHECK_EQ(sh("cp " + q(img) + " " + q(ref)), 0);
  const uint64_t cut = 1024512;  // 1000.5 KiB: inside a 1 KiB subcluster
  CHECK_EQ(sh(q(V) + " resize --shrink " + q(img) + " " + std::to_string(cut)), 0);
  CHECK_EQ(sh("qemu-img resize -q --shrink " + q(ref) + " " + std::to_string(cut)), 0);
  expect_clean(img, "shrunk");
  CHECK_EQ(sh("qemu-img compare " + q(img) + " " + q(ref)), 0);
  // grown again: zeros past the cut (qemu-img 7.2 shows the old bytes of the
  // cut subclusters there; Vireo zeroed them when it shrank, as without subclusters)
  CHECK_EQ(sh(q(V) + " resize " + q(img) + " 3M"), 0);
  expect_clean(img, "grown");
  shadow.resize(cut);
  shadow.resize(3 << 20, 0);
  expect_equal(img, shadow, d, "grown");
}
