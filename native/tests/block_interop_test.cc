// Interop with QEMU's tools: images we write pass `qemu-img check` and
// `qemu-img compare`; images qemu-img/qemu-io write read back exactly here.
// Each case skips (with the reason) when qemu-img is missing.
#include <limits.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "block/blocktest_util.h"
#include "block/img_tool_util.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;
using namespace imgtool;

// Our read of `img` equals qemu-img's raw conversion of it.
static void expect_reads_like_qemu(const std::string& img, const TmpDir& d) {
  std::string out;
  std::string ref = d / "ref.raw";
  int rc = sh("qemu-img convert -O raw " + q(img) + " " + q(ref), &out);
  if (rc) throw vireo_test::Failure{"qemu-img convert failed: " + out};
  auto want = blocktest::slurp(ref);
  OpenOptions o;
  o.read_only = true;
  std::string err;
  auto b = open_block(img, o, &err);
  if (!b) throw vireo_test::Failure{"open failed: " + err};
  CHECK_EQ(b->size(), uint64_t(want.size()));
  std::vector<uint8_t> got(want.size());
  CHECK_EQ(b->pread(got.data(), got.size(), 0), 0);
  for (size_t i = 0; i < got.size(); i++)
    if (got[i] != want[i])
      throw vireo_test::Failure{img + ": byte " + std::to_string(i) + " differs from qemu-img's view"};
}

static void expect_qemu_check_clean(const std::string& img) {
  std::string out;
  int rc = sh("qemu-img check " + q(img), &out);
  if (rc != 0) throw vireo_test::Failure{"qemu-img check " + img + " exit " + std::to_string(rc) + ":\n" + out};
}

static void write_random(BlockBackend* b, std::vector<uint8_t>& shadow, uint32_t seed, int n) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < n; i++) {
    uint64_t off = rng() % shadow.size(), len = 1 + rng() % 100000;
    if (off + len > shadow.size()) len = shadow.size() - off;
    if (rng() % 5 == 0) {
      CHECK_EQ(b->write_zeroes(off, len), 0);
      std::memset(&shadow[off], 0, len);
    } else {
      auto data = blocktest::pattern(len, seed * 1000 + i);
      CHECK_EQ(b->pwrite(data.data(), len, off), 0);
      std::memcpy(&shadow[off], data.data(), len);
    }
  }
}

TEST(interop_our_images_pass_qemu_check_and_compare) {
  need_qemu();
  TmpDir d;
  for (int version : {2, 3})
    for (int cbits : {9, 16, 20}) {
      std::string img = d / "ours.qcow2", shadow_path = d / "shadow.raw";
      CHECK_EQ(create_qcow2(img, 24 << 20, cbits, "", "", version, nullptr), 0);
      std::vector<uint8_t> shadow(24 << 20, 0);
      {
        auto b = open_block(img, OpenOptions{}, nullptr);
        CHECK(b);
        write_random(b.get(), shadow, cbits + version, 60);
        CHECK_EQ(b->flush(), 0);
        // a snapshot, more writes, a deleted snapshot: refcounts must balance
        auto* s = as_snapshots(b.get());
        std::string err;
        CHECK_EQ(s->snapshot_create("keep", &err), 0);
        CHECK_EQ(s->snapshot_create("drop", &err), 0);
        write_random(b.get(), shadow, 99 + cbits, 30);
        CHECK_EQ(s->snapshot_delete("drop", &err), 0);
      }
      FILE* f = std::fopen(shadow_path.c_str(), "wb");
      std::fwrite(shadow.data(), 1, shadow.size(), f);
      std::fclose(f);
      expect_qemu_check_clean(img);
      std::string out;
      int rc = sh("qemu-img compare -f qcow2 -F raw " + q(img) + " " + q(shadow_path), &out);
      if (rc) throw vireo_test::Failure{"qemu-img compare (v" + std::to_string(version) + ", cluster_bits " + std::to_string(cbits) + "): " + out};
      rc = sh("qemu-img snapshot -l " + q(img), &out);
      CHECK_EQ(rc, 0);
      CHECK(out.find("keep") != std::string::npos);
      CHECK(out.find("drop") == std::string::npos);
    }
}

TEST(interop_our_backing_chain_passes_qemu) {
  need_qemu();
  TmpDir d;
  CHECK_EQ(sh("qemu-img create -f raw " + q(d / "base.raw") + " 8M && qemu-io -f raw -c 'write -P 0x5a 0 8M' " + q(d / "base.raw")), 0);
  CHECK_EQ(create_qcow2(d / "top.qcow2", 0, 16, "base.raw", "raw", 3, nullptr), 0);
  {
    auto b = open_block(d / "top.qcow2", OpenOptions{}, nullptr);
    CHECK(b);
    auto data = blocktest::pattern(100000, 3);
    CHECK_EQ(b->pwrite(data.data(), data.size(), 777777), 0);
    CHECK_EQ(b->write_zeroes(2 << 20, 1 << 20), 0);
  }
  expect_qemu_check_clean(d / "top.qcow2");
  std::string out;
  CHECK_EQ(sh("qemu-img info " + q(d / "top.qcow2"), &out), 0);
  CHECK(out.find("backing file: base.raw") != std::string::npos);
  CHECK(out.find("backing file format: raw") != std::string::npos);
  CHECK_EQ(sh("qemu-io -c 'read -P 0 2M 1M' -c 'read -P 0x5a 4M 1M' " + q(d / "top.qcow2") + " | grep -c 'read '", &out), 0);
  CHECK(out.find("Pattern verification failed") == std::string::npos);
  expect_reads_like_qemu(d / "top.qcow2", d);
}

TEST(interop_qemu_images_read_back_v2_v3_refcount_widths) {
  need_qemu();
  TmpDir d;
  const char* variants[] = {
      "compat=0.10", "compat=1.1", "compat=1.1,cluster_size=4096", "compat=1.1,refcount_bits=1",
      "compat=1.1,refcount_bits=8", "compat=1.1,refcount_bits=64", "compat=0.10,cluster_size=2M"};
  for (const char* v : variants) {
    std::string img = d / "q.qcow2";
    std::string cmd = "qemu-img create -q -f qcow2 -o " + std::string(v) + " " + q(img) + " 16M && qemu-io -f qcow2"
                      " -c 'write -P 0x11 0 100k' -c 'write -P 0x22 3M 2M' -c 'write -z 3M 64k' -c 'write -P 0x33 15M 1M'"
                      " -c 'discard 15M 64k' " + q(img) + " >/dev/null";
    std::string out;
    if (sh(cmd, &out)) throw vireo_test::Failure{std::string(v) + ": " + out};
    expect_reads_like_qemu(img, d);
    // and write through our code on qemu's image: still clean for qemu
    if (std::string(v).find("refcount_bits=1") == std::string::npos) {
      auto b = open_block(img, OpenOptions{}, nullptr);
      CHECK(b);
      auto data = blocktest::pattern(200000, 4);
      CHECK_EQ(b->pwrite(data.data(), data.size(), 5 << 20), 0);
      CHECK_EQ(b->pwrite(data.data(), data.size(), 50000), 0);
      b.reset();
      expect_qemu_check_clean(img);
      expect_reads_like_qemu(img, d);
    }
  }
}

TEST(interop_qemu_backing_chain_depth3) {
  need_qemu();
  TmpDir d;
  std::string out;
  std::string cmd =
      "cd " + q(d.path) + " && qemu-img create -q -f raw base.raw 4M && qemu-io -f raw -c 'write -P 1 0 4M' base.raw >/dev/null"
      " && qemu-img create -q -f qcow2 -o compat=0.10 -b base.raw -F raw l1.qcow2 && qemu-io -c 'write -P 2 1M 1M' l1.qcow2 >/dev/null"
      " && qemu-img create -q -f qcow2 -b l1.qcow2 -F qcow2 l2.qcow2 && qemu-io -c 'write -P 3 1536k 100k' -c 'write -z 0 64k' l2.qcow2 >/dev/null"
      " && mkdir sub && qemu-img create -q -f qcow2 -b ../l2.qcow2 -F qcow2 sub/l3.qcow2 && qemu-io -c 'write -P 4 3M 4k' sub/l3.qcow2 >/dev/null";
  if (sh(cmd, &out)) throw vireo_test::Failure{out};
  expect_reads_like_qemu(d / "sub/l3.qcow2", d);
}

TEST(interop_qemu_compressed_zlib_and_zstd) {
  need_qemu();
  TmpDir d;
  std::string out;
  // text-like data compresses; random data is stored uncompressed by qemu
  std::string src = d / "src.raw";
  if (sh("cd " + q(d.path) + " && qemu-img create -q -f raw src.raw 6M && qemu-io -f raw -c 'write -P 0x41 0 2M'"
         " -c 'write -P 0x42 3M 512k' src.raw >/dev/null && head -c 1M /dev/urandom | dd of=src.raw bs=1M seek=4 conv=notrunc status=none"
         " && seq 1 200000 | dd of=src.raw bs=1k seek=5200 conv=notrunc status=none", &out))
    throw vireo_test::Failure{out};
  for (std::string opts : {"", "-o compression_type=zstd", "-o compat=0.10", "-o cluster_size=4096"}) {
    std::string img = d / "c.qcow2";
    if (sh("qemu-img convert -c -O qcow2 " + opts + " " + q(src) + " " + q(img), &out))
      throw vireo_test::Failure{"convert -c " + opts + ": " + out};
    CHECK_EQ(sh("qemu-img check " + q(img) + " | grep -q 'compressed clusters' && qemu-img check " + q(img) + " | grep -v ' 0.00% compressed'", &out), 0);
    expect_reads_like_qemu(img, d);
    auto want = blocktest::slurp(src);
    auto b = open_block(img, OpenOptions{}, nullptr);
    CHECK(b);
    // overwrite inside compressed clusters: COW out of the compressed data
    auto data = blocktest::pattern(3000, 1);
    CHECK_EQ(b->pwrite(data.data(), data.size(), 100000), 0);
    std::memcpy(&want[100000], data.data(), data.size());
    CHECK_EQ(b->discard(0, 1 << 20), 0);
    std::memset(&want[0], 0, 1 << 20);
    std::vector<uint8_t> got(want.size());
    CHECK_EQ(b->pread(got.data(), got.size(), 0), 0);
    CHECK(got == want);
    b.reset();
    expect_qemu_check_clean(img);
  }
}

TEST(interop_qemu_internal_snapshots_and_extended_l2) {
  need_qemu();
  TmpDir d;
  std::string img = d / "s.qcow2", out;
  if (sh("cd " + q(d.path) + " && qemu-img create -q -f qcow2 s.qcow2 8M && qemu-io -c 'write -P 7 0 1M' s.qcow2 >/dev/null"
         " && qemu-img snapshot -c first s.qcow2 && qemu-io -c 'write -P 8 512k 1M' s.qcow2 >/dev/null"
         " && qemu-img snapshot -c second s.qcow2 && qemu-io -c 'write -P 9 0 64k' s.qcow2 >/dev/null", &out))
    throw vireo_test::Failure{out};
  expect_reads_like_qemu(img, d);
  {
    auto b = open_block(img, OpenOptions{}, nullptr);
    auto* s = as_snapshots(b.get());
    auto list = s->snapshots();
    CHECK_EQ(list.size(), size_t(2));
    CHECK_EQ(list[1].name, std::string("second"));
    std::string err;
    CHECK_EQ(s->snapshot_apply("first", &err), 0);
    std::vector<uint8_t> got(2 << 20);
    CHECK_EQ(b->pread(got.data(), got.size(), 0), 0);
    for (size_t i = 0; i < got.size(); i++)
      if (got[i] != (i < (1 << 20) ? 7 : 0)) throw vireo_test::Failure{"snapshot 'first' content wrong at " + std::to_string(i)};
    CHECK_EQ(s->snapshot_delete("second", &err), 0);
  }
  expect_qemu_check_clean(img);
  CHECK_EQ(sh("qemu-img snapshot -l " + q(img) + " | grep -c first"), 0);
  // qemu applies our snapshots too
  {
    auto b = open_block(img, OpenOptions{}, nullptr);
    std::string err;
    CHECK_EQ(as_snapshots(b.get())->snapshot_create("ours", &err), 0);
    auto z = std::vector<uint8_t>(65536, 0xee);
    CHECK_EQ(b->pwrite(z.data(), z.size(), 0), 0);
  }
  CHECK_EQ(sh("qemu-img snapshot -a ours " + q(img) + " && qemu-io -c 'read -P 7 0 64k' " + q(img) + " | grep -q 'read 65536'"), 0);
  expect_qemu_check_clean(img);

  // extended L2 entries (subclusters): read, and written (more in block_extl2_test)
  std::string x = d / "x.qcow2";
  if (sh("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k " + q(x) + " 4M && qemu-io"
         " -c 'write -P 1 4k 4k' -c 'write -P 2 200k 8k' -c 'write -z 300k 16k' " + q(x) + " >/dev/null", &out))
    throw vireo_test::Failure{out};
  expect_reads_like_qemu(x, d);
  std::string err;
  {
    auto b = open_block(x, OpenOptions{}, &err);
    CHECK(b);
    auto data = blocktest::pattern(5000, 8);
    CHECK_EQ(b->pwrite(data.data(), data.size(), 300 * 1024 + 777), 0);
  }
  expect_qemu_check_clean(x);
  expect_reads_like_qemu(x, d);
}

TEST(interop_vireo_img_commands) {
  need_qemu();
  std::string V = vireo_img();
  if (access(V.c_str(), X_OK)) SKIP("vireo-img not built next to this test");
  TmpDir d;
  std::string out;
  CHECK_EQ(sh(q(V) + " create -q -f qcow2 " + q(d / "a.qcow2") + " 32M"), 0);
  CHECK_EQ(sh("qemu-io -c 'write -P 3 1M 5M' " + q(d / "a.qcow2") + " >/dev/null"), 0);
  CHECK_EQ(sh(q(V) + " check " + q(d / "a.qcow2"), &out), 0);
  CHECK(out.find("No errors were found") != std::string::npos);
  CHECK_EQ(sh(q(V) + " info --output json " + q(d / "a.qcow2"), &out), 0);
  CHECK(out.find("\"virtual-size\": 33554432") != std::string::npos);
  CHECK_EQ(sh(q(V) + " info --output=json " + q(d / "a.qcow2") + " > " + q(d / "i.json") +
              " && python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j[\"format\"]==\"qcow2\"' " + q(d / "i.json")), 0);
  CHECK_EQ(sh(q(V) + " convert -O raw " + q(d / "a.qcow2") + " " + q(d / "a.raw")), 0);
  CHECK_EQ(sh("qemu-img compare " + q(d / "a.qcow2") + " " + q(d / "a.raw")), 0);
  CHECK_EQ(sh(q(V) + " convert -O qcow2 -o compat=0.10 " + q(d / "a.raw") + " " + q(d / "b.qcow2")), 0);
  CHECK_EQ(sh("qemu-img check -q " + q(d / "b.qcow2") + " && qemu-img compare " + q(d / "b.qcow2") + " " + q(d / "a.raw")), 0);
  CHECK_EQ(sh(q(V) + " create -q -f qcow2 -b a.qcow2 -F qcow2 " + q(d / "c.qcow2")), 0);
  CHECK_EQ(sh("qemu-img compare " + q(d / "c.qcow2") + " " + q(d / "a.raw")), 0);
  CHECK_EQ(sh(q(V) + " snapshot -c s1 " + q(d / "b.qcow2") + " && " + q(V) + " snapshot -l " + q(d / "b.qcow2"), &out), 0);
  CHECK(out.find("s1") != std::string::npos);
  CHECK_EQ(sh("qemu-img snapshot -l " + q(d / "b.qcow2") + " | grep -q s1"), 0);
  CHECK_EQ(sh(q(V) + " snapshot -d s1 " + q(d / "b.qcow2") + " && qemu-img check -q " + q(d / "b.qcow2")), 0);
  CHECK(sh(q(V) + " snapshot -a nope " + q(d / "b.qcow2"), &out) != 0);
  CHECK(out.find("nope") != std::string::npos);
  // exit codes: 3 leaks, 2 corruption, like qemu-img check
  std::string leak = d / "leak.qcow2";
  CHECK_EQ(sh(q(V) + " create -q -f qcow2 " + q(leak) + " 1M"), 0);
  CHECK_EQ(truncate(leak.c_str(), 1 << 20), 0);
  blocktest::poke(leak, 2 * 65536 + 8, "\x00\x01", 2);  // cluster 4: refcount 1, unreferenced
  CHECK_EQ(sh("qemu-img check " + q(leak) + " >/dev/null"), 3);
  CHECK_EQ(sh(q(V) + " check " + q(leak), &out), 3);
  CHECK(out.find("1 leaked clusters") != std::string::npos);
  CHECK_EQ(sh(q(V) + " check -r leaks " + q(leak) + " >/dev/null && qemu-img check " + q(leak) + " >/dev/null"), 0);
  std::string bad = d / "bad.qcow2";
  CHECK_EQ(sh(q(V) + " create -q -f qcow2 " + q(bad) + " 1M && qemu-io -c 'write 0 64k' " + q(bad) + " >/dev/null"), 0);
  blocktest::poke(bad, 2 * 65536 + 8, "\x00\x00", 2);  // the data cluster's refcount -> 0
  CHECK_EQ(sh("qemu-img check " + q(bad) + " >/dev/null"), 2);
  CHECK_EQ(sh(q(V) + " check " + q(bad), &out), 2);
  CHECK(out.find("errors were found") != std::string::npos);
  CHECK_EQ(sh(q(V) + " check -r all " + q(bad) + " >/dev/null; qemu-img check " + q(bad) + " >/dev/null"), 0);
  CHECK_EQ(sh(q(V) + " check " + q(d / "a.raw")), 63);
  CHECK_EQ(sh(q(V) + " info " + q(d / "missing.qcow2"), &out), 1);
  CHECK(out.find("missing.qcow2") != std::string::npos);
  // resize grows and qemu agrees
  CHECK_EQ(sh(q(V) + " resize " + q(d / "b.qcow2") + " +992M >/dev/null && qemu-img info " + q(d / "b.qcow2") + " | grep -q '1 GiB'"), 0);
  CHECK_EQ(sh("qemu-img check -q " + q(d / "b.qcow2")), 0);
}

// qemu-img makes "2" the name of snapshot ID 1 and then an ID 2 ('x'): for
// vireo-img "2" is ambiguous (named both ways in the error, nothing changes);
// --by-name picks the snapshot named "2", as the app does, and qemu-img agrees
// with the result. A name that is an ID is refused on create.
TEST(interop_snapshot_name_that_is_another_id) {
  need_qemu();
  std::string V = vireo_img();
  if (access(V.c_str(), X_OK)) SKIP("vireo-img not built next to this test");
  TmpDir d;
  std::string img = d / "a.qcow2", out;
  if (sh("cd " + q(d.path) + " && qemu-img create -q -f qcow2 a.qcow2 4M && qemu-io -c 'write -P 1 0 64k' a.qcow2 >/dev/null"
         " && qemu-img snapshot -c 2 a.qcow2 && qemu-io -c 'write -P 2 0 64k' a.qcow2 >/dev/null"
         " && qemu-img snapshot -c x a.qcow2 && qemu-io -c 'write -P 3 0 64k' a.qcow2 >/dev/null", &out))
    throw vireo_test::Failure{out};
  CHECK(sh(q(V) + " snapshot -a 2 " + q(img), &out) != 0);
  CHECK(out.find("'2' is ambiguous: it is the name of snapshot ID 1 and the ID of snapshot 'x'") != std::string::npos);
  CHECK_EQ(sh("qemu-io -c 'read -P 3 0 64k' " + q(img), &out), 0);  // unchanged
  CHECK(out.find("Pattern verification failed") == std::string::npos);
  CHECK_EQ(sh(q(V) + " snapshot --by-name -a 2 " + q(img), &out), 0);
  CHECK_EQ(sh("qemu-io -c 'read -P 1 0 64k' " + q(img), &out), 0);
  CHECK(out.find("Pattern verification failed") == std::string::npos);
  CHECK(sh(q(V) + " snapshot -c 1 " + q(img), &out) != 0);
  CHECK(out.find("'1' is the ID of snapshot '2'") != std::string::npos);
  CHECK_EQ(sh(q(V) + " snapshot --by-name -d 2 " + q(img), &out), 0);
  CHECK_EQ(sh("qemu-img snapshot -l " + q(img), &out), 0);
  CHECK(out.find(" x ") != std::string::npos);
  CHECK(out.find("1         2 ") == std::string::npos);
  expect_qemu_check_clean(img);
}
