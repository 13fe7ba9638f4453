// qcow2 unit tests: our own reader/writer against a raw shadow copy, metadata
// growth, zero clusters, backing chains, snapshots, bad input. No qemu needed.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>
#include <random>

#include "block/blocktest_util.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "check.h"

using namespace vireo::block;
using blocktest::TmpDir;

static std::unique_ptr<BlockBackend> open_rw(const std::string& p, std::string* err = nullptr) {
  std::string e;
  auto b = open_block(p, OpenOptions{}, err ? err : &e);
  return b;
}

static CheckResult check_file(const std::string& p) {
  Qcow2OpenFlags f;
  f.read_only = true;
  f.no_backing = true;
  f.force_share = true;  // some tests check an image they still hold open (flushed)
  std::vector<std::string> chain;
  std::string err;
  auto q = Qcow2Backend::open(p, f, &chain, &err);
  if (!q) {
    CheckResult r;
    r.completed = false;
    r.messages.push_back(err);
    return r;
  }
  return q->check(false);
}

static bool same(BlockBackend* b, const std::vector<uint8_t>& shadow) {
  std::vector<uint8_t> got(shadow.size());
  if (b->pread(got.data(), got.size(), 0)) return false;
  return got == shadow;
}

TEST(qcow2_create_write_reopen_v2_v3) {
  TmpDir d;
  for (int version : {2, 3}) {
    for (int cbits : {9, 12, 16}) {
      std::string p = d / ("img" + std::to_string(version) + "_" + std::to_string(cbits));
      std::string err;
      CHECK_EQ(create_qcow2(p, 4 << 20, cbits, "", "", version, &err), 0);
      std::vector<uint8_t> shadow(4 << 20, 0);
      {
        auto b = open_rw(p);
        CHECK(b);
        CHECK_EQ(b->format(), std::string("qcow2"));
        CHECK_EQ(b->size(), uint64_t(4 << 20));
        // unaligned, cluster-crossing, and whole-cluster writes
        uint64_t offs[] = {0, 1000, 65536 - 3, (1 << 20) + 77, (4 << 20) - 5000};
        uint32_t seed = 1;
        for (uint64_t o : offs) {
          auto data = blocktest::pattern(5000, seed++);
          CHECK_EQ(b->pwrite(data.data(), data.size(), o), 0);
          std::memcpy(&shadow[o], data.data(), data.size());
        }
        CHECK(same(b.get(), shadow));
        CHECK_EQ(b->flush(), 0);
      }
      auto b = open_rw(p);
      CHECK(same(b.get(), shadow));
      auto res = check_file(p);
      CHECK(res.completed);
      CHECK_EQ(res.corruptions, uint64_t(0));
      CHECK_EQ(res.leaks, uint64_t(0));
    }
  }
}

TEST(qcow2_refcount_table_and_l1_growth) {
  TmpDir d;
  std::string p = d / "small.qcow2";
  // 512-byte clusters: a refcount block covers 256 clusters (128 KiB) and the
  // one-cluster refcount table 64 blocks (8 MiB), so 10 MiB of data grows it.
  CHECK_EQ(create_qcow2(p, 1 << 20, 9, "", "", 3, nullptr), 0);
  std::string err;
  auto b = open_rw(p, &err);
  CHECK(b);
  auto* q = dynamic_cast<Qcow2Backend*>(b.get());
  CHECK(q);
  CHECK_EQ(q->resize(12 << 20), 0);  // L1: 32 KiB per L2 table -> grows from 32 to 384 entries
  CHECK_EQ(b->size(), uint64_t(12 << 20));
  std::vector<uint8_t> shadow(12 << 20, 0);
  auto data = blocktest::pattern(10 << 20, 7);
  CHECK_EQ(b->pwrite(data.data(), data.size(), 1 << 20), 0);
  std::memcpy(&shadow[1 << 20], data.data(), data.size());
  CHECK_EQ(b->flush(), 0);
  CHECK(same(b.get(), shadow));
  b.reset();
  b = open_rw(p);
  CHECK(same(b.get(), shadow));
  auto res = check_file(p);
  CHECK_EQ(res.corruptions, uint64_t(0));
  CHECK_EQ(res.leaks, uint64_t(0));
  // the header now points at a bigger refcount table than the one cluster we created
  auto raw = blocktest::slurp(p);
  uint32_t rt_clusters = (raw[56] << 24) | (raw[57] << 16) | (raw[58] << 8) | raw[59];
  CHECK(rt_clusters > 1);
}

TEST(qcow2_zero_clusters_and_discard) {
  TmpDir d;
  std::string base = d / "base.raw", top = d / "top.qcow2";
  CHECK_EQ(create_raw(base, 1 << 20, nullptr), 0);
  {
    auto b = open_rw(base);
    auto fill = blocktest::pattern(1 << 20, 3);
    CHECK_EQ(b->pwrite(fill.data(), fill.size(), 0), 0);
  }
  CHECK_EQ(create_qcow2(top, 0, 16, "base.raw", "raw", 3, nullptr), 0);
  auto b = open_rw(top);
  CHECK(b);
  CHECK_EQ(b->size(), uint64_t(1 << 20));
  std::vector<uint8_t> shadow = blocktest::slurp(base);
  // zeroes over a backing file must hide it (v3 zero flag)
  CHECK_EQ(b->write_zeroes(65536, 131072), 0);
  std::memset(&shadow[65536], 0, 131072);
  // partial-cluster zeroes write real zeros
  CHECK_EQ(b->write_zeroes(300000, 1000), 0);
  std::memset(&shadow[300000], 0, 1000);
  auto data = blocktest::pattern(65536, 9);
  CHECK_EQ(b->pwrite(data.data(), data.size(), 6 * 65536), 0);
  std::memcpy(&shadow[6 * 65536], data.data(), 65536);
  CHECK_EQ(b->discard(6 * 65536, 65536), 0);  // discard over backing: reads zero
  std::memset(&shadow[6 * 65536], 0, 65536);
  CHECK(same(b.get(), shadow));
  CHECK_EQ(b->flush(), 0);
  b.reset();
  b = open_rw(top);
  CHECK(same(b.get(), shadow));
  auto res = check_file(top);
  CHECK_EQ(res.corruptions + res.leaks, uint64_t(0));
  // the base is untouched
  auto fill = blocktest::pattern(1 << 20, 3);
  CHECK(blocktest::slurp(base) == fill);
}

TEST(qcow2_backing_chain_depth3_relative) {
  TmpDir d;
  std::string sub = d / "sub";
  mkdir(sub.c_str(), 0755);
  CHECK_EQ(create_raw(d / "base.raw", 2 << 20, nullptr), 0);
  std::vector<uint8_t> shadow(2 << 20, 0);
  auto w = [&](const std::string& p, uint64_t off, uint32_t seed, size_t n) {
    auto b = open_rw(p);
    CHECK(b);
    auto data = blocktest::pattern(n, seed);
    CHECK_EQ(b->pwrite(data.data(), n, off), 0);
    std::memcpy(&shadow[off], data.data(), n);
  };
  w(d / "base.raw", 0, 1, 2 << 20);
  CHECK_EQ(create_qcow2(d / "mid.qcow2", 0, 16, "base.raw", "raw", 3, nullptr), 0);
  w(d / "mid.qcow2", 100000, 2, 70000);
  // relative to the overlay's directory: sub/top.qcow2 -> ../mid.qcow2
  CHECK_EQ(create_qcow2(sub + "/top.qcow2", 0, 16, "../mid.qcow2", "qcow2", 2, nullptr), 0);
  w(sub + "/top.qcow2", 150000, 3, 1000);
  w(sub + "/top.qcow2", (2 << 20) - 10, 4, 10);
  auto b = open_rw(sub + "/top.qcow2");
  CHECK(b);
  CHECK(same(b.get(), shadow));
}

TEST(qcow2_missing_backing_and_loop_are_clear_errors) {
  TmpDir d;
  CHECK_EQ(create_raw(d / "x.raw", 1 << 20, nullptr), 0);
  CHECK_EQ(create_qcow2(d / "b.qcow2", 0, 16, "x.raw", "raw", 3, nullptr), 0);
  CHECK_EQ(create_qcow2(d / "a.qcow2", 0, 16, "b.qcow2", "qcow2", 3, nullptr), 0);
  unlink((d / "x.raw").c_str());
  std::string err;
  CHECK(!open_rw(d / "a.qcow2", &err));
  CHECK(err.find("b.qcow2") != std::string::npos);
  CHECK(err.find("x.raw") != std::string::npos);
  CHECK(err.find("No such file") != std::string::npos);
  // loop: b -> a -> b
  CHECK_EQ(create_raw(d / "x.raw", 1 << 20, nullptr), 0);
  CHECK_EQ(create_qcow2(d / "b.qcow2", 1 << 20, 16, "a.qcow2", "qcow2", 3, nullptr), 0);
  auto before = blocktest::slurp(d / "a.qcow2");
  err.clear();
  CHECK(!open_rw(d / "a.qcow2", &err));
  CHECK(err.find("loop") != std::string::npos);
  CHECK(blocktest::slurp(d / "a.qcow2") == before);
  // missing image itself
  err.clear();
  CHECK(!open_rw(d / "nope.qcow2", &err));
  CHECK(err.find("nope.qcow2") != std::string::npos);
}

TEST(qcow2_snapshots_create_apply_delete) {
  TmpDir d;
  std::string p = d / "s.qcow2";
  CHECK_EQ(create_qcow2(p, 2 << 20, 16, "", "", 3, nullptr), 0);
  auto b = open_rw(p);
  auto* s = as_snapshots(b.get());
  CHECK(s);
  std::vector<uint8_t> v1(2 << 20, 0);
  auto a = blocktest::pattern(300000, 11);
  CHECK_EQ(b->pwrite(a.data(), a.size(), 1000), 0);
  std::memcpy(&v1[1000], a.data(), a.size());
  std::string err;
  CHECK_EQ(s->snapshot_create("one", &err), 0);
  CHECK(s->snapshot_create("one", &err) != 0);  // duplicate name
  auto v2 = v1;
  auto c = blocktest::pattern(200000, 12);
  CHECK_EQ(b->pwrite(c.data(), c.size(), 100000), 0);
  std::memcpy(&v2[100000], c.data(), c.size());
  CHECK_EQ(b->write_zeroes(0, 65536), 0);
  std::memset(&v2[0], 0, 65536);
  CHECK_EQ(s->snapshot_create("two", &err), 0);
  CHECK(same(b.get(), v2));
  auto l = s->snapshots();
  CHECK_EQ(l.size(), size_t(2));
  CHECK_EQ(l[0].name, std::string("one"));
  CHECK_EQ(l[1].id, std::string("2"));
  CHECK_EQ(check_file(p).corruptions, uint64_t(0));
  CHECK_EQ(s->snapshot_apply("one", &err), 0);
  CHECK(same(b.get(), v1));
  CHECK_EQ(s->snapshot_apply("2", &err), 0);  // by id
  CHECK(same(b.get(), v2));
  CHECK(s->snapshot_apply("nope", &err) != 0);
  CHECK(err.find("nope") != std::string::npos);
  CHECK_EQ(s->snapshot_delete("one", &err), 0);
  CHECK_EQ(s->snapshot_delete("two", &err), 0);
  CHECK(same(b.get(), v2));
  CHECK_EQ(b->flush(), 0);
  auto res = check_file(p);
  CHECK_EQ(res.corruptions, uint64_t(0));
  CHECK_EQ(res.leaks, uint64_t(0));
  // after deleting every snapshot, writes go in place again (refcounts back to 1)
  auto before = res.image_end_offset;
  CHECK_EQ(b->pwrite(c.data(), c.size(), 100000), 0);
  CHECK_EQ(b->flush(), 0);
  CHECK_EQ(check_file(p).image_end_offset, before);
}

// Snapshots have an ID ("1", "2"...) and a name. A name that is another
// snapshot's ID is refused (qemu-img takes a number as an ID first, so it
// would address the other one), new IDs skip numbers used as names, and a
// key that is one snapshot's name and another's ID is ambiguous unless looked
// up by name (the app's names win).
TEST(qcow2_snapshot_names_vs_ids) {
  TmpDir d;
  std::string p = d / "n.qcow2";
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, nullptr), 0);
  auto b = open_rw(p);
  auto* s = as_snapshots(b.get());
  std::string err;
  CHECK_EQ(s->snapshot_create("base", &err), 0);  // ID 1
  CHECK_EQ(s->snapshot_create("1", &err), -EEXIST);
  CHECK(err.find("'1' is the ID of snapshot 'base'") != std::string::npos);
  CHECK_EQ(s->snapshot_create("2", &err), 0);  // would be ID 2: that is its own name, so 3
  auto l = s->snapshots();
  CHECK_EQ(l.size(), size_t(2));
  CHECK_EQ(l[1].name, std::string("2"));
  CHECK_EQ(l[1].id, std::string("3"));
  CHECK_EQ(s->snapshot_create("x", &err), 0);  // 4
  CHECK_EQ(s->snapshots()[2].id, std::string("4"));
  CHECK_EQ(s->snapshot_create("3", &err), -EEXIST);  // the ID of '2'
  CHECK(err.find("snapshot '2'") != std::string::npos);
  // "2" is a name only: found by name with or without by_name.
  CHECK_EQ(s->snapshot_apply("2", &err), 0);
  CHECK_EQ(s->snapshot_apply("2", &err, true), 0);
  CHECK_EQ(s->snapshot_apply("4", &err), 0);        // an ID: 'x'
  CHECK_EQ(s->snapshot_apply("4", &err, true), -ENOENT);  // not a name
  CHECK(err.find("'4' not found") != std::string::npos);
  CHECK_EQ(s->snapshot_delete("base", &err, true), 0);
  CHECK_EQ(b->flush(), 0);
  CHECK_EQ(check_file(p).corruptions, uint64_t(0));
}

TEST(qcow2_random_io_matches_shadow) {
  TmpDir d;
  for (int version : {2, 3}) {
    std::string base = d / "b.qcow2", p = d / "r.qcow2";
    const uint64_t size = 8 << 20;
    CHECK_EQ(create_qcow2(base, size, 16, "", "", 3, nullptr), 0);
    std::vector<uint8_t> shadow(size, 0);
    {
      auto b = open_rw(base);
      auto data = blocktest::pattern(3 << 20, 5);
      CHECK_EQ(b->pwrite(data.data(), data.size(), 2 << 20), 0);
      std::memcpy(&shadow[2 << 20], data.data(), data.size());
    }
    CHECK_EQ(create_qcow2(p, 0, 13, "b.qcow2", "qcow2", version, nullptr), 0);
    std::mt19937_64 rng(42 + version);
    auto b = open_rw(p);
    CHECK(b);
    for (int i = 0; i < 1500; i++) {
      uint64_t off = rng() % size, len = 1 + rng() % 40000;
      if (off + len > size) len = size - off;
      int op = rng() % 20;
      if (op < 9) {
        auto data = blocktest::pattern(len, uint32_t(i));
        CHECK_EQ(b->pwrite(data.data(), len, off), 0);
        std::memcpy(&shadow[off], data.data(), len);
      } else if (op < 15) {
        std::vector<uint8_t> got(len);
        CHECK_EQ(b->pread(got.data(), len, off), 0);
        CHECK(std::memcmp(got.data(), &shadow[off], len) == 0);
      } else if (op < 17) {
        CHECK_EQ(b->write_zeroes(off, len), 0);
        std::memset(&shadow[off], 0, len);
      } else if (op < 18) {
        CHECK_EQ(b->flush(), 0);
      } else if (op < 19 && version == 3) {
        // discard: whole clusters read back as zeros (v3 over a backing file)
        uint64_t cs = 8192, a = (off + cs - 1) / cs * cs, e = (off + len) / cs * cs;
        CHECK_EQ(b->discard(off, len), 0);
        if (e > a) std::memset(&shadow[a], 0, e - a);
      } else {
        b.reset();
        b = open_rw(p);
        CHECK(b);
      }
    }
    CHECK(same(b.get(), shadow));
    b.reset();
    auto res = check_file(p);
    CHECK(res.completed);
    CHECK_EQ(res.corruptions, uint64_t(0));
    CHECK_EQ(res.leaks, uint64_t(0));
  }
}

TEST(qcow2_temporary_overlay_keeps_base_unchanged) {
  TmpDir d;
  std::string p = d / "disk.qcow2", tmp = d / "tmp";
  mkdir(tmp.c_str(), 0700);
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, nullptr), 0);
  auto before = blocktest::slurp(p);
  setenv("TMPDIR", tmp.c_str(), 1);
  OpenOptions o;
  o.snapshot = true;
  std::string err;
  auto b = open_block(p, o, &err);
  unsetenv("TMPDIR");
  CHECK(b);
  CHECK(!b->read_only());
  auto data = blocktest::pattern(100000, 1);
  CHECK_EQ(b->pwrite(data.data(), data.size(), 500), 0);
  std::vector<uint8_t> got(100000);
  CHECK_EQ(b->pread(got.data(), got.size(), 500), 0);
  CHECK(got == data);
  CHECK_EQ(b->flush(), 0);
  CHECK_EQ(blocktest::sh("ls -A '" + tmp + "' | wc -l"), 0);
  std::string out;
  blocktest::sh("ls -A '" + tmp + "'", &out);
  CHECK(out.empty());  // the overlay file was unlinked after open
  b.reset();
  CHECK(blocktest::slurp(p) == before);
}

TEST(qcow2_read_only_open_refuses_writes) {
  TmpDir d;
  std::string p = d / "ro.qcow2";
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, nullptr), 0);
  auto before = blocktest::slurp(p);
  OpenOptions o;
  o.read_only = true;
  auto b = open_block(p, o, nullptr);
  CHECK(b && b->read_only());
  uint8_t x[512] = {1};
  CHECK_EQ(b->pwrite(x, 512, 0), -EROFS);
  CHECK_EQ(b->discard(0, 65536), -EROFS);
  b.reset();
  CHECK(blocktest::slurp(p) == before);
}

// Each bad image must fail to open with a message naming the file and the
// problem, and must not be modified.
static void expect_bad(const std::string& p, const char* what, bool read_only = false) {
  auto before = blocktest::slurp(p);
  OpenOptions o;
  o.read_only = read_only;
  std::string err;
  auto b = open_block(p, o, &err);
  if (b) throw vireo_test::Failure{std::string("opened a bad image: ") + what};
  if (err.find(p) == std::string::npos || err.find(what) == std::string::npos)
    throw vireo_test::Failure{"error '" + err + "' lacks '" + what + "' or the file name"};
  CHECK(blocktest::slurp(p) == before);
}

TEST(qcow2_bad_input_is_a_clean_error) {
  TmpDir d;
  std::string good = d / "good.qcow2";
  CHECK_EQ(create_qcow2(good, 16 << 20, 16, "", "", 3, nullptr), 0);
  auto img = blocktest::slurp(good);
  auto copy = [&](const std::string& name, size_t n) {
    FILE* f = std::fopen((d / name).c_str(), "wb");
    std::fwrite(img.data(), 1, std::min(n, img.size()), f);
    std::fclose(f);
    return d / name;
  };
  std::string p = copy("trunc.qcow2", 50);
  expect_bad(p, "truncated");
  p = copy("trunc2.qcow2", 70000);  // header fine, L1 and refcounts missing
  expect_bad(p, "outside the file");
  p = copy("magic.qcow2", img.size());
  blocktest::poke(p, 0, "QFI\x00", 4);
  {
    OpenOptions o;
    o.format = "qcow2";
    std::string err;
    CHECK(!open_block(p, o, &err));
    CHECK(err.find("bad magic") != std::string::npos);
  }
  p = copy("hugel1.qcow2", img.size());
  blocktest::poke_be32(p, 36, 0x7fffffff);
  expect_bad(p, "L1 table too large");
  p = copy("rt.qcow2", img.size());
  blocktest::poke_be64(p, 48, 1ULL << 40);
  expect_bad(p, "refcount table offset");
  p = copy("feature.qcow2", img.size());
  blocktest::poke_be64(p, 72, 1ULL << 20);
  expect_bad(p, "unsupported qcow2 feature");
  p = copy("version.qcow2", img.size());
  blocktest::poke_be32(p, 4, 4);
  expect_bad(p, "version 4");
  p = copy("cluster.qcow2", img.size());
  blocktest::poke_be32(p, 20, 30);
  expect_bad(p, "cluster");
  // corrupt bit: refused writable with a clear message, fine read-only
  p = copy("corrupt.qcow2", img.size());
  blocktest::poke_be64(p, 72, 2);
  expect_bad(p, "marked corrupt");
  OpenOptions o;
  o.read_only = true;
  CHECK(open_block(p, o, nullptr));
}

TEST(qcow2_dirty_bit_rebuilds_refcounts) {
  TmpDir d;
  std::string p = d / "dirty.qcow2";
  CHECK_EQ(create_qcow2(p, 4 << 20, 16, "", "", 3, nullptr), 0);
  auto data = blocktest::pattern(1 << 20, 8);
  {
    auto b = open_rw(p);
    CHECK_EQ(b->pwrite(data.data(), data.size(), 65536), 0);
  }
  // Simulate lazy refcounts after a crash: dirty bit set, refcount block wiped
  // except the first entries (header, tables).
  auto img = blocktest::slurp(p);
  std::vector<uint8_t> zeros(60000, 0);
  blocktest::poke(p, 2 * 65536 + 8, zeros.data(), zeros.size());
  blocktest::poke_be64(p, 72, 1);
  CHECK(check_file(p).corruptions > 0);
  {
    auto b = open_rw(p);
    CHECK(b);
    std::vector<uint8_t> got(data.size());
    CHECK_EQ(b->pread(got.data(), got.size(), 65536), 0);
    CHECK(got == data);
  }
  auto res = check_file(p);
  CHECK_EQ(res.corruptions, uint64_t(0));
  CHECK_EQ(res.leaks, uint64_t(0));
  auto now = blocktest::slurp(p);
  CHECK_EQ(now[79] & 1, 0);  // dirty bit cleared
}

TEST(qcow2_check_repairs_leaks) {
  TmpDir d;
  std::string p = d / "leak.qcow2";
  CHECK_EQ(create_qcow2(p, 4 << 20, 16, "", "", 3, nullptr), 0);
  // mark cluster 20 as used although nothing references it
  CHECK_EQ(truncate(p.c_str(), 2 << 20), 0);
  blocktest::poke(p, 2 * 65536 + 40, "\x00\x01", 2);
  auto res = check_file(p);
  CHECK_EQ(res.leaks, uint64_t(1));
  CHECK_EQ(res.corruptions, uint64_t(0));
  Qcow2OpenFlags f;
  f.no_backing = true;
  f.allow_corrupt = true;
  f.no_repair = true;
  std::vector<std::string> chain;
  std::string err;
  auto q = Qcow2Backend::open(p, f, &chain, &err);
  CHECK(q);
  auto r2 = q->check(true);
  CHECK_EQ(r2.leaks_fixed, uint64_t(1));
  q.reset();
  res = check_file(p);
  CHECK_EQ(res.leaks + res.corruptions, uint64_t(0));
}

// Parallel requests (issue 16): reads of data clusters and writes into clusters
// the image owns alone run outside the metadata lock, side by side. A cluster a
// discard frees is reused or punched only once no read or write aimed at it is
// in flight (qcow2.h, data_mu_): otherwise a read racing a discard could return
// another guest offset's data. Two readers check every word they read, one
// writer rewrites the even clusters in place, one thread discards two of 8 odd
// clusters, flushes (their host clusters become free) and rewrites them in the
// other order (each takes the host cluster the other had), while reads linger
// 2 ms between lookup and pread (a test hook). Without the wait for data I/O in
// flight this test fails within its 2 s. Every word is (cluster index << 32 | generation): a read
// may see zeros (a discard) or mixed generations of its own cluster (racing
// writes), never another cluster's index.
TEST(qcow2_parallel_requests_never_see_another_clusters_data) {
  TmpDir d;
  std::string p = d / "par.qcow2";
  const uint64_t cs = 4096, n = 1024;
  CHECK_EQ(create_qcow2(p, n * cs, 12, "", "", 3, nullptr), 0);
  auto b = open_rw(p);
  CHECK(b);
  auto fill = [&](uint64_t c, uint32_t gen) { return std::vector<uint64_t>(cs / 8, (c << 32) | gen); };
  for (uint64_t c = 0; c < n; c++) {
    auto v = fill(c, 0);
    CHECK_EQ(b->pwrite(v.data(), cs, c * cs), 0);
  }
  CHECK_EQ(b->flush(), 0);
  // Reads linger 2 ms between their lookup and their pread: long enough for a
  // discard, a flush and a reuse of the cluster to fit in, were nothing to stop them.
  Qcow2Backend::test_data_read_delay_us = 2000;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, errors{0}, reads{0}, writes{0}, churns{0};
  // The churn works on 8 odd clusters; readers read those half the time.
  auto churned = [](uint64_t k) { return 2 * (k % 8) + 1; };
  auto reader = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> got(cs / 8);
    while (!stop) {
      uint64_t c = rng() % 2 ? churned(rng()) : rng() % n;
      if (b->pread(got.data(), cs, c * cs)) errors++;
      for (uint64_t w : got)
        if (w && (w >> 32) != c) bad++;
      reads++;
    }
  };
  auto writer = [&] {
    std::mt19937_64 rng(7);
    for (uint32_t gen = 1; !stop; gen++) {
      uint64_t c = (rng() % (n / 2)) * 2;
      auto v = fill(c, gen);
      if (b->pwrite(v.data(), cs, c * cs)) errors++;
      writes++;
    }
  };
  // Two clusters discarded, a flush (their host clusters become free), then
  // rewritten in the other order: each gets the host cluster the other had.
  auto churn = [&] {
    std::mt19937_64 rng(9);
    for (uint32_t gen = 1; !stop; gen++) {
      uint64_t k = rng(), c1 = churned(k), c2 = churned(k + 1 + rng() % 7);
      if (b->discard(c1 * cs, cs) || b->discard(c2 * cs, cs) || b->flush()) errors++;
      auto v2 = fill(c2, gen), v1 = fill(c1, gen);
      if (b->pwrite(v2.data(), cs, c2 * cs) || b->pwrite(v1.data(), cs, c1 * cs)) errors++;
      churns++;
    }
  };
  std::vector<std::thread> ts;
  ts.emplace_back(reader, 1);
  ts.emplace_back(reader, 2);
  ts.emplace_back(writer);
  ts.emplace_back(churn);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  stop = true;
  for (auto& t : ts) t.join();
  Qcow2Backend::test_data_read_delay_us = 0;
  std::printf("  %llu reads, %llu in-place writes, %llu discard+rewrite in 2 s\n", (unsigned long long)reads.load(),
              (unsigned long long)writes.load(), (unsigned long long)churns.load());
  CHECK_EQ(errors.load(), uint64_t(0));
  CHECK_EQ(bad.load(), uint64_t(0));
  CHECK(churns.load() > 8);
  // Every cluster holds a whole generation of its own pattern.
  std::vector<uint64_t> got(cs / 8);
  for (uint64_t c = 0; c < n; c++) {
    CHECK_EQ(b->pread(got.data(), cs, c * cs), 0);
    for (uint64_t w : got) CHECK_EQ(w >> 32, c);
  }
  b.reset();
  auto res = check_file(p);
  CHECK(res.completed);
  CHECK_EQ(res.corruptions, uint64_t(0));
  CHECK_EQ(res.leaks, uint64_t(0));
}
