// Whole-image convert (block/convert.h, vireo-img convert): only allocated data
// is read, zero clusters and holes stay unwritten, backing chains flatten, outputs
// pass qemu-img check / compare, and a failed or killed convert leaves nothing
// under the target's name. qemu-img cases skip (with the reason) without it.
#include <linux/magic.h>
#include <sys/vfs.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#ifdef VIREO_HAVE_URING
#include <liburing.h>
#endif

#include "block/blocktest_util.h"
#include "block/img_tool_util.h"
#include "block/convert.h"
#include "block/image.h"
#include "block/lock.h"
#include "block/qcow2.h"
#include "block/raw.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;
using namespace imgtool;

static std::vector<std::string> ls(const std::string& dir) {
  std::vector<std::string> v;
  DIR* d = opendir(dir.c_str());
  if (!d) return v;
  while (dirent* e = readdir(d))
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) v.push_back(e->d_name);
  closedir(d);
  return v;
}

// A raw file of `mib` MiB with data in the 64 KiB blocks whose index is in `blocks`.
static void make_raw(const std::string& path, uint64_t mib, const std::vector<uint64_t>& blocks) {
  std::string err;
  CHECK_EQ(create_raw(path, mib << 20, &err), 0);
  auto b = RawBackend::open(path, false, &err);
  CHECK(b != nullptr);
  for (uint64_t i : blocks) {
    auto data = blocktest::pattern(64 << 10, uint32_t(i + 1));
    CHECK_EQ(b->pwrite(data.data(), data.size(), i << 16), 0);
  }
}

static std::unique_ptr<BlockBackend> open_ro(const std::string& p) {
  OpenOptions o;
  o.read_only = true;
  std::string err;
  auto b = open_block(p, o, &err);
  if (!b) throw vireo_test::Failure{"open " + p + ": " + err};
  return b;
}

TEST(convert_raw_reads_only_allocated_extents) {
  TmpDir d;
  std::vector<uint64_t> blocks = {0, 1, 7, 100, 101, 102, 500, 1023};
  make_raw(d / "src.raw", 64, blocks);
  auto in = open_ro(d / "src.raw");
  // block_status: data at block 7, a hole right after it up to block 100
  uint64_t n = 0;
  CHECK_EQ(in->block_status(7 << 16, (64 << 20) - (7 << 16), &n), BlockBackend::kData);
  CHECK(n >= (64 << 10));
  CHECK_EQ(in->block_status(8 << 16, (64 << 20) - (8 << 16), &n), BlockBackend::kZero);
  CHECK_EQ(n, uint64_t(92) << 16);
  // 0: read/write path, 1: default (reflink where the file system has it), 2: copy_file_range, 3: buffered writes
  for (int mode : {0, 1, 2, 3}) {
    bool range = mode == 1 || mode == 2;
    std::string out = d / ("o" + std::to_string(mode) + ".raw");
    ConvertOptions o;
    o.allow_copy_range = range;
    o.copy_file_range = mode == 2;
    o.direct_io = mode != 3;
    ConvertStats st;
    std::string err;
    CHECK_EQ(convert_image(*in, out, o, &err, &st), 0);
    if (mode == 2) CHECK(st.used_copy_range);  // copied by the kernel (or cloned)
    if (mode == 3) CHECK_EQ(st.direct_bytes, uint64_t(0));
    CHECK_EQ(st.data_bytes, uint64_t(blocks.size()) << 16);  // holes never read
    CHECK(blocktest::slurp(out) == blocktest::slurp(d / "src.raw"));
    struct stat s {};
    CHECK_EQ(::stat(out.c_str(), &s), 0);
    CHECK(uint64_t(s.st_blocks) * 512 <= (uint64_t(blocks.size()) << 16) + (1 << 20));  // still sparse
    if (!range) CHECK(!st.used_copy_range);
  }
  // nothing but the outputs and the source in the directory (no temporaries)
  CHECK_EQ(ls(d.path).size(), size_t(5));
}

TEST(convert_qcow2_walks_l2_zero_clusters_stay_zero) {
  need_qemu();
  TmpDir d;
  std::string src = d / "src.qcow2";
  CHECK_EQ(sh("qemu-img create -q -f qcow2 " + q(src) + " 64M"), 0);
  CHECK_EQ(sh("qemu-io -c 'write -P 5 1M 3M' -c 'write -z 2M 512k' -c 'write -z 20M 4M' -c 'write -P 9 40M 64k' " +
              q(src) + " >/dev/null"), 0);
  auto in = open_ro(src);
  uint64_t n = 0;
  CHECK_EQ(in->block_status(1 << 20, 1 << 20, &n), BlockBackend::kData);
  CHECK_EQ(n, uint64_t(1) << 20);
  CHECK_EQ(in->block_status(2 << 20, 64 << 10, &n), BlockBackend::kZero);  // a zero cluster
  CHECK_EQ(in->block_status(20 << 20, 8 << 20, &n), BlockBackend::kZero);  // zero clusters then holes
  CHECK_EQ(n, uint64_t(8) << 20);
  for (const char* fmt : {"qcow2", "raw"}) {
    std::string out = d / (std::string("o.") + fmt);
    ConvertOptions o;
    o.format = fmt;
    ConvertStats st;
    std::string err;
    CHECK_EQ(convert_image(*in, out, o, &err, &st), 0);
    CHECK_EQ(st.data_bytes, (uint64_t(3) << 20) - (512 << 10) + (64 << 10));  // data clusters only
    std::string msg;
    if (sh("qemu-img compare -q -f qcow2 -F " + std::string(fmt) + " " + q(src) + " " + q(out), &msg))
      throw vireo_test::Failure{std::string("compare ") + fmt + ": " + msg};
    if (std::string(fmt) == "qcow2") {
      if (sh("qemu-img check " + q(out), &msg)) throw vireo_test::Failure{"check: " + msg};
      // the zero areas took no clusters: 3 MiB - 512 KiB + 64 KiB of data, plus metadata
      struct stat s {};
      CHECK_EQ(::stat(out.c_str(), &s), 0);
      CHECK(uint64_t(s.st_size) < (uint64_t(3) << 20) + (1 << 20));
    }
  }
}

TEST(convert_backing_chain_to_standalone) {
  need_qemu();
  TmpDir d;
  std::string base = d / "base.qcow2", top = d / "top.qcow2";
  CHECK_EQ(sh("qemu-img create -q -f qcow2 " + q(base) + " 32M"), 0);
  CHECK_EQ(sh("qemu-io -c 'write -P 1 0 8M' -c 'write -P 2 16M 1M' " + q(base) + " >/dev/null"), 0);
  CHECK_EQ(sh("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 " + q(top) + " 48M"), 0);
  CHECK_EQ(sh("qemu-io -c 'write -P 3 1M 1M' -c 'write -z 4M 1M' -c 'write -P 4 40M 64k' " + q(top) + " >/dev/null"), 0);
  auto in = open_ro(top);
  uint64_t n = 0;
  CHECK_EQ(in->block_status(4 << 20, 1 << 20, &n), BlockBackend::kZero);      // zero over base data
  CHECK_EQ(in->block_status(6 << 20, 1 << 20, &n), BlockBackend::kData);      // from the base
  CHECK_EQ(in->block_status(36 << 20, 1 << 20, &n), BlockBackend::kZero);     // past the base's end
  for (const char* fmt : {"qcow2", "raw"}) {
    std::string out = d / (std::string("flat.") + fmt);
    ConvertOptions o;
    o.format = fmt;
    std::string err, msg;
    CHECK_EQ(convert_image(*in, out, o, &err), 0);
    if (sh("qemu-img compare -q -f qcow2 -F " + std::string(fmt) + " " + q(top) + " " + q(out), &msg))
      throw vireo_test::Failure{std::string("compare ") + fmt + ": " + msg};
    CHECK_EQ(sh("qemu-img info " + q(out) + " | grep -q 'backing file'"), 1);  // standalone
    if (std::string(fmt) == "qcow2" && sh("qemu-img check " + q(out), &msg))
      throw vireo_test::Failure{"check: " + msg};
  }
}

TEST(convert_enospc_removes_partial_and_names_target) {
  if (geteuid() != 0) SKIP("needs root to mount a small tmpfs");
  TmpDir d, m;
  if (::mount("tmpfs", m.path.c_str(), "tmpfs", 0, "size=4m")) SKIP(std::string("cannot mount tmpfs: ") + std::strerror(errno));
  struct Umount {
    std::string p;
    ~Umount() { ::umount2(p.c_str(), MNT_DETACH); }
  } um{m.path};
  std::vector<uint64_t> blocks;
  for (uint64_t i = 0; i < 160; i++) blocks.push_back(i * 2);  // 10 MiB of data in 20 MiB
  make_raw(d / "src.raw", 32, blocks);
  auto before = blocktest::slurp(d / "src.raw");
  for (const char* fmt : {"raw", "qcow2"}) {
    std::string out = m / (std::string("big.") + fmt);
    auto in = open_ro(d / "src.raw");
    ConvertOptions o;
    o.format = fmt;
    std::string err;
    int r = convert_image(*in, out, o, &err);
    CHECK_EQ(r, -ENOSPC);
    CHECK(err.find(out) != std::string::npos);
    CHECK(err.find("No space left on device") != std::string::npos);
    CHECK_EQ(ls(m.path).size(), size_t(0));  // neither the target nor a temporary
  }
  CHECK(blocktest::slurp(d / "src.raw") == before);
}

static bool direct_io_here(const std::string& dir, std::string* why);

// The same on a small ext4 (loop mount), where raw targets go out with O_DIRECT
// through io_uring: the ENOSPC comes back in a completion while other writes are
// queued; convert must end with the error, not wait on writes it never submitted.
TEST(convert_direct_io_enospc_on_ext4) {
  if (geteuid() != 0) SKIP("needs root to loop-mount an ext4 image");
  if (!blocktest::have("mkfs.ext4")) SKIP("mkfs.ext4 not installed (e2fsprogs)");
  TmpDir d, m;
  std::string fs_img = d / "fs.img";
  if (std::system(("truncate -s 16M '" + fs_img + "' && mkfs.ext4 -q -F '" + fs_img + "' >/dev/null 2>&1").c_str()))
    SKIP("mkfs.ext4 failed");
  if (std::system(("mount -o loop '" + fs_img + "' '" + m.path + "' >/dev/null 2>&1").c_str()))
    SKIP("cannot loop-mount an ext4 image here");
  struct Umount {
    std::string p;
    ~Umount() { ::umount2(p.c_str(), MNT_DETACH); }
  } um{m.path};
  std::string why;
  if (!direct_io_here(m.path, &why)) SKIP("no direct I/O here: " + why);
  std::vector<uint64_t> blocks;
  for (uint64_t i = 0; i < 480; i++) blocks.push_back(i);  // 30 MiB of data
  make_raw(d / "src.raw", 32, blocks);
  for (int round = 0; round < 6; round++) {  // raw targets, then qcow2 ones (their new clusters go direct)
    const bool qcow = round >= 3;
    std::string out = m / (qcow ? "big.qcow2" : "big.raw");
    auto in = open_ro(d / "src.raw");
    ConvertOptions o;
    o.format = qcow ? "qcow2" : "raw";
    o.cluster_bits = round == 5 ? 12 : 16;
    o.direct_io = true;
    std::string err;
    int r = convert_image(*in, out, o, &err);
    CHECK_EQ(r, -ENOSPC);
    CHECK(err.find("No space left on device") != std::string::npos);
    auto left = ls(m.path);
    left.erase(std::remove(left.begin(), left.end(), std::string("lost+found")), left.end());
    CHECK_EQ(left.size(), size_t(0));  // neither the target nor a temporary
  }
}

TEST(convert_refuses_a_target_in_use) {
  TmpDir d;
  make_raw(d / "src.raw", 4, {1});
  make_raw(d / "busy.raw", 4, {2});
  std::string err;
  auto held = RawBackend::open(d / "busy.raw", false, &err);  // a VM writing it
  CHECK(held != nullptr);
  auto before = blocktest::slurp(d / "busy.raw");
  auto in = open_ro(d / "src.raw");
  ConvertOptions o;
  CHECK(convert_image(*in, d / "busy.raw", o, &err) != 0);
  CHECK(err.find(kLockConflictPhrase) != std::string::npos);
  CHECK(blocktest::slurp(d / "busy.raw") == before);
  held.reset();
  CHECK_EQ(convert_image(*in, d / "busy.raw", o, &err), 0);  // free again: replaced
  CHECK(blocktest::slurp(d / "busy.raw") == blocktest::slurp(d / "src.raw"));
}

TEST(convert_kill9_leaves_no_target_and_next_convert_sweeps) {
  std::string V = vireo_img();
  if (access(V.c_str(), X_OK)) SKIP("vireo-img not built next to this test");
  TmpDir d, out;
  std::vector<uint64_t> blocks;
  for (uint64_t i = 0; i < 4096; i++) blocks.push_back(i);  // 256 MiB of data
  make_raw(d / "src.raw", 256, blocks);
  std::string target = out / "t.qcow2";
  bool killed_mid = false;
  for (int round = 0; round < 5 && !killed_mid; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      int nul = open("/dev/null", O_WRONLY);
      dup2(nul, 1), dup2(nul, 2);
      execl(V.c_str(), V.c_str(), "convert", "-O", "qcow2", (d / "src.raw").c_str(), target.c_str(), (char*)nullptr);
      _exit(127);
    }
    // kill it as soon as its temporary holds some data
    for (int i = 0; i < 20000; i++) {
      bool big = false;
      for (auto& f : ls(out.path)) {
        struct stat s {};
        if (f.find(kConvertTempMarker) != std::string::npos && ::stat((out / f).c_str(), &s) == 0 &&
            s.st_size > (1 << 20))
          big = true;
      }
      if (big) break;
      usleep(100);
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    killed_mid = WIFSIGNALED(st);
    if (!killed_mid) ::unlink(target.c_str());  // it finished first: try again
  }
  if (!killed_mid) SKIP("the convert always finished before it could be killed");
  struct stat s {};
  CHECK(::stat(target.c_str(), &s) != 0);  // nothing under the target's name
  auto left = ls(out.path);
  CHECK_EQ(left.size(), size_t(1));
  CHECK(left[0].find(kConvertTempMarker) != std::string::npos);
  // the next convert into that directory sweeps it
  std::string msg;
  CHECK_EQ(sh(q(V) + " convert -O raw " + q(d / "src.raw") + " " + q(out / "u.raw"), &msg), 0);
  left = ls(out.path);
  CHECK_EQ(left.size(), size_t(1));
  CHECK_EQ(left[0], std::string("u.raw"));
}

TEST(convert_progress_and_signal_cleanup) {
  std::string V = vireo_img();
  if (access(V.c_str(), X_OK)) SKIP("vireo-img not built next to this test");
  TmpDir d;
  make_raw(d / "src.raw", 8, {0, 5, 100});
  std::string out;
  CHECK_EQ(sh(q(V) + " convert -p -O qcow2 " + q(d / "src.raw") + " " + q(d / "o.qcow2"), &out), 0);
  CHECK(out.find("(100.00/100%)") != std::string::npos);
  CHECK(out.find("(0.00/100%)") != std::string::npos);
  // a cancel flag (what SIGINT/SIGTERM set) stops it and removes the temporary
  std::atomic<bool> cancel{true};
  auto in = open_ro(d / "src.raw");
  ConvertOptions o;
  o.cancel = &cancel;
  std::string err;
  CHECK_EQ(convert_image(*in, d / "c.raw", o, &err), -ECANCELED);
  CHECK(err.find("cancelled") != std::string::npos);
  CHECK_EQ(ls(d.path).size(), size_t(2));  // src.raw, o.qcow2
}

TEST(convert_qemu_compressed_and_extended_l2_exactly) {
  need_qemu();
  TmpDir d;
  std::string raw = d / "data.raw";
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(raw) + " 16M"), 0);
  CHECK_EQ(sh("qemu-io -f raw -c 'write -P 7 0 3M' -c 'write -P 0 5M 1M' -c 'write -P 9 9M 100k' " + q(raw) + " >/dev/null"), 0);
  std::vector<std::string> srcs = {d / "z.qcow2", d / "x.qcow2"};
  CHECK_EQ(sh("qemu-img convert -c -O qcow2 " + q(raw) + " " + q(srcs[0])), 0);
  CHECK_EQ(sh("qemu-img convert -O qcow2 -o extended_l2=on,cluster_size=128k " + q(raw) + " " + q(srcs[1])), 0);
  CHECK_EQ(sh("qemu-io -c 'write -P 3 12M 8k' -c 'write -z 1M 4k' " + q(srcs[1]) + " >/dev/null"), 0);  // subclusters
  for (auto& src : srcs) {
    auto in = open_ro(src);
    for (const char* fmt : {"raw", "qcow2"}) {
      std::string out = src + ".out." + fmt, err, msg;
      ConvertOptions o;
      o.format = fmt;
      CHECK_EQ(convert_image(*in, out, o, &err), 0);
      if (sh("qemu-img compare -q " + q(src) + " " + q(out), &msg))
        throw vireo_test::Failure{src + " -> " + fmt + ": " + msg};
      if (std::string(fmt) == "qcow2" && sh("qemu-img check " + q(out), &msg)) throw vireo_test::Failure{"check: " + msg};
    }
  }
}

// -t unsafe (qemu-img convert's default cache mode): the same exact copies
// (raw and qcow2 targets, qcow2 source with compressed clusters), qcow2 output
// clean, and not one fsync/fdatasync/sync_file_range in the process (strace),
// where the default (durable) makes at least one; a bad mode is refused by name.
TEST(convert_cache_unsafe_writes_exact_copies_without_syncs) {
  need_qemu();
  std::string V = vireo_img();
  TmpDir d;
  std::string raw = d / "data.raw", qc = d / "data.qcow2", out;
  CHECK_EQ(sh("qemu-img create -q -f raw " + q(raw) + " 24M && qemu-io -f raw -c 'write -P 7 0 3M' -c 'write -P 9 9M 100k'"
              " -c 'write -P 4 20M 4M' " + q(raw) + " >/dev/null && qemu-img convert -c -O qcow2 " + q(raw) + " " + q(qc)), 0);
  const bool strace = blocktest::have("strace");
  if (!strace) std::printf("  (strace not installed: the no-sync part is not checked)\n");
  for (const std::string& src : {raw, qc})
    for (const char* fmt : {"raw", "qcow2"}) {
      std::string dst = d / (std::string("out.") + fmt), msg;
      std::string cmd = q(V) + " convert -t unsafe -O " + fmt + " " + q(src) + " " + q(dst);
      // LeakSanitizer cannot run under ptrace: a sanitizer build's vireo-img aborts at exit under strace.
      if (strace) cmd = "ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=fsync,fdatasync,sync_file_range,syncfs,sync -o " + q(d / "trace") + " " + cmd;
      CHECK_EQ(sh(cmd, &out), 0);
      if (sh("qemu-img compare -q " + q(src) + " " + q(dst), &msg)) throw vireo_test::Failure{src + " -> " + fmt + ": " + msg};
      if (std::string(fmt) == "qcow2") qemu_check_clean(dst);
      if (strace) {
        CHECK_EQ(sh("grep -c -E 'sync' " + q(d / "trace"), &msg), 1);  // grep: no line
        CHECK_EQ(msg, std::string("0\n"));
        // The default is durable: the same convert syncs.
        CHECK_EQ(sh("ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=fdatasync,fsync -o " + q(d / "trace2") + " " + q(V) + " convert -O " + fmt + " " +
                    q(src) + " " + q(dst) + " && grep -c sync " + q(d / "trace2"), &msg), 0);
        CHECK(std::stoi(msg) >= 1);
      }
    }
  CHECK_EQ(sh(q(V) + " convert -t sometimes " + q(raw) + " " + q(d / "x.raw"), &out), 1);
  CHECK(out.find("Invalid cache option: sometimes") != std::string::npos);
  CHECK_EQ(sh("ls " + q(d / "x.raw") + " 2>/dev/null"), 2);
}

// Whether this host lets convert write with O_DIRECT through io_uring in `dir`.
static bool direct_io_here(const std::string& dir, std::string* why) {
#ifdef VIREO_HAVE_URING
  std::string f = dir + "/probe";
  int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_DIRECT, 0644);
  ::unlink(f.c_str());
  if (fd < 0) return *why = std::string("O_DIRECT: ") + std::strerror(errno), false;
  struct statfs sf;
  bool ram = ::fstatfs(fd, &sf) == 0 && (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
  ::close(fd);
  if (ram) return *why = "a tmpfs/ramfs directory (convert writes buffered there)", false;
  io_uring ring;
  int r = io_uring_queue_init(4, &ring, 0);
  if (r < 0) return *why = std::string("io_uring: ") + std::strerror(-r), false;
  io_uring_queue_exit(&ring);
  return true;
#else
  *why = "built without liburing";
  return false;
#endif
}

// 40 MiB + 1000 bytes: 3 MiB runs that batches split (one at +4 KiB), an
// unaligned 9000-byte end, holes between.
constexpr uint64_t kOddSize = (40ULL << 20) + 1000;
// Whether `dir` takes O_DIRECT writes through io_uring; says so when it does not.
static bool direct_io_or_note(const std::string& dir) {
  std::string why;
  if (direct_io_here(dir, &why)) return true;
  std::printf("note: no O_DIRECT/io_uring here (%s): only the buffered path is checked\n", why.c_str());
  return false;
}

static void make_odd_raw(const std::string& path) {
  std::string err;
  CHECK_EQ(create_raw(path, kOddSize, &err), 0);
  auto b = RawBackend::open(path, false, &err);
  CHECK(b != nullptr);
  for (uint64_t off : {uint64_t(0), uint64_t(3) << 20, (uint64_t(7) << 20) + 4096, uint64_t(20) << 20}) {
    auto p = blocktest::pattern(3 << 20, uint32_t(off >> 12) + 1);
    CHECK_EQ(b->pwrite(p.data(), p.size(), off), 0);
  }
  auto tail = blocktest::pattern(9000, 77);
  CHECK_EQ(b->pwrite(tail.data(), tail.size(), kOddSize - tail.size()), 0);
}

// Raw targets go to the disk with O_DIRECT (io_uring): a raw source with an
// odd size (its last extent ends off any 4 KiB boundary) and a qcow2 source
// with 512-byte clusters (extents at 512-byte offsets in the batch buffers):
// the aligned parts go direct, the rest buffered, and the copy is exact, with
// and without direct I/O, holes kept.
TEST(convert_raw_target_direct_io_exact_at_odd_offsets) {
  TmpDir d;
  const bool direct = direct_io_or_note(d.path);
  const uint64_t size = kOddSize;
  std::string src = d / "odd.raw", err;
  make_odd_raw(src);
  auto in = open_ro(src);
  for (bool dio : {true, false}) {
    std::string out = d / (dio ? "d.raw" : "b.raw");
    ConvertOptions o;
    o.allow_copy_range = false;
    o.direct_io = dio;
    ConvertStats st;
    CHECK_EQ(convert_image(*in, out, o, &err, &st), 0);
    CHECK(blocktest::slurp(out) == blocktest::slurp(src));
    struct stat s {};
    CHECK_EQ(::stat(out.c_str(), &s), 0);
    CHECK_EQ(uint64_t(s.st_size), size);
    CHECK(uint64_t(s.st_blocks) * 512 < (uint64_t(14) << 20));  // 12 MiB + the tail: still sparse
    if (dio && direct) {
      CHECK(st.direct_bytes >= (uint64_t(12) << 20) - (64 << 10));  // all but the odd end went direct
      CHECK(st.direct_bytes < st.written_bytes);                    // the odd end did not
    }
    if (!dio) CHECK_EQ(st.direct_bytes, uint64_t(0));
  }
  if (!blocktest::have("qemu-img")) SKIP("qemu-img not installed: the 512-byte-cluster case needs it");
  std::string q512 = d / "c512.qcow2";
  CHECK_EQ(sh("qemu-img convert -q -O qcow2 -o cluster_size=512 " + q(src) + " " + q(q512)), 0);
  auto qin = open_ro(q512);
  for (bool dio : {true, false}) {
    std::string out = d / (dio ? "qd.raw" : "qb.raw");
    ConvertOptions o;
    o.direct_io = dio;
    ConvertStats st;
    CHECK_EQ(convert_image(*qin, out, o, &err, &st), 0);
    auto got = blocktest::slurp(out), want = blocktest::slurp(src);
    want.resize(qin->size(), 0);  // qcow2 sizes are whole sectors: qemu-img rounded the odd size up
    CHECK(got == want);
    if (dio && direct) CHECK(st.direct_bytes > 0);
  }
}

// qcow2 targets: the new clusters' data goes O_DIRECT (set_new_data_sink),
// the metadata buffered. The odd raw above (3 MiB runs split across batches,
// one at +4 KiB, an unaligned end) converted with 4 KiB, 64 KiB, 2 MiB and
// extended-L2 clusters: qemu-img finds each clean and equal to the source, we
// read it back byte-exact, most of it went direct; 2 MiB clusters (larger than
// a 1 MiB batch: every write is part of a cluster), 512-byte clusters and -t
// unsafe stay buffered.
TEST(convert_qcow2_target_direct_io_exact_and_clean) {
  need_qemu();
  TmpDir d;
  const bool direct = direct_io_or_note(d.path);
  const uint64_t size = kOddSize;
  std::string src = d / "odd.raw", err;
  make_odd_raw(src);
  auto in = open_ro(src);
  auto want = blocktest::slurp(src);
  struct Case {
    int bits, version;
    bool ext, dio, durable;
    uint64_t min_direct;  // when the host has O_DIRECT and io_uring
    bool compress = false;
  };
  const Case cases[] = {
      // 64 KiB: all but the two clusters the run at +4 KiB fills in part and the odd end (a batch
      // never ends inside a cluster: without that, 120 KiB more went buffered).
      {12, 3, false, true, true, uint64_t(12) << 20}, {16, 3, false, true, true, (uint64_t(12) << 20) - (128 << 10)},
      {21, 3, false, true, true, 0},  {16, 3, true, true, true, (uint64_t(12) << 20) - (128 << 10)},
      {16, 2, false, true, true, (uint64_t(12) << 20) - (128 << 10)}, {9, 2, false, true, true, 0},
      {16, 3, false, false, true, 0},                 {16, 3, false, true, false, 0},
      // -c: the odd end's cluster staged and padded to the target's whole sectors (it failed with
      // EINVAL once the qcow2 size was rounded up past the source's end)
      {16, 3, false, true, true, 0, true},            {12, 3, false, true, false, 0, true},
  };
  int n = 0;
  for (const auto& c : cases) {
    std::string out = d / ("o" + std::to_string(n++) + ".qcow2");
    ConvertOptions o;
    o.format = "qcow2";
    o.cluster_bits = c.bits;
    o.version = c.version;
    o.extended_l2 = c.ext;
    o.direct_io = c.dio;
    o.durable = c.durable;
    o.compress = c.compress;
    ConvertStats st;
    CHECK_EQ(convert_image(*in, out, o, &err, &st), 0);
    if (c.compress) CHECK(st.compressed_clusters > 0);
    std::printf("  %d-bit clusters%s%s%s%s: %llu of %llu bytes direct\n", c.bits, c.ext ? " ext-l2" : "",
                c.dio ? "" : " no-dio", c.durable ? "" : " unsafe", c.compress ? " -c" : "", (unsigned long long)st.direct_bytes,
                (unsigned long long)st.written_bytes);
    CHECK_EQ(sh("qemu-img check -q " + q(out)), 0);
    CHECK_EQ(sh("qemu-img compare -q -f raw -F qcow2 " + q(src) + " " + q(out)), 0);
    auto back = open_ro(out);
    std::vector<uint8_t> got(back->size());
    CHECK_EQ(back->pread(got.data(), got.size(), 0), 0);
    got.resize(size);
    CHECK(got == want);
    if (direct && c.min_direct) CHECK(st.direct_bytes >= c.min_direct);
    if (!c.min_direct) CHECK_EQ(st.direct_bytes, uint64_t(0));
    CHECK(st.direct_bytes <= st.written_bytes);
  }
}

// pread_ranges / pwrite_ranges on qcow2 (convert's batches): ranges packed in
// one buffer read what pread reads, whatever lies between them (clusters
// adjacent in the file and in memory merged, a zero cluster, a compressed
// cluster, an unallocated gap, parts of clusters); written into a fresh image
// they read back the same and qemu-img finds it clean and equal.
TEST(qcow2_ranges_read_and_write_like_single_requests) {
  need_qemu();
  TmpDir d;
  std::string src = d / "r.qcow2", comp = d / "c.qcow2";
  CHECK_EQ(sh("qemu-img create -q -f qcow2 " + q(src) + " 16M"), 0);
  CHECK_EQ(sh("qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 1M 192k' -c 'write -z 2M 64k' -c 'write -P 3 3M 64k'"
              " -c 'write -P 4 5M 100k' " + q(src) + " >/dev/null"), 0);
  auto in = open_ro(src);
  struct R {
    uint64_t off, len;
  };
  const std::vector<R> rs = {{0, 128 << 10},   {(1 << 20), 192 << 10}, {(2 << 20) - 4096, 72 << 10},
                             {3 << 20, 64 << 10}, {(5 << 20) + 1000, 90000}, {8 << 20, 64 << 10}};
  uint64_t total = 0;
  for (auto& r : rs) total += r.len;
  std::vector<uint8_t> a(total), b(total);
  std::vector<IoRange> v;
  uint64_t pos = 0;
  for (auto& r : rs) {
    v.push_back(IoRange{a.data() + pos, r.off, r.len});
    CHECK_EQ(in->pread(b.data() + pos, r.len, r.off), 0);
    pos += r.len;
  }
  CHECK_EQ(in->pread_ranges(v.data(), v.size()), 0);
  CHECK(a == b);
  // out of range: refused, nothing read
  IoRange bad{a.data(), 16 << 20, 1};
  CHECK_EQ(in->pread_ranges(&bad, 1), -EIO);

  // writes: the same ranges into a fresh image and a raw shadow
  std::string out = d / "w.qcow2", shadow = d / "w.raw", err;
  CHECK_EQ(create_qcow2(out, 16 << 20, 16, "", "", 3, &err), 0);
  CHECK_EQ(create_raw(shadow, 16 << 20, &err), 0);
  {
    OpenOptions oo;
    oo.format = "qcow2";
    auto w = open_block(out, oo, &err);
    CHECK(w != nullptr);
    auto sh_ = RawBackend::open(shadow, false, &err);
    CHECK(sh_ != nullptr);
    CHECK_EQ(w->pwrite_ranges(v.data(), v.size()), 0);
    for (auto& x : v) CHECK_EQ(sh_->pwrite(x.buf, x.len, x.off), 0);
    // again over the now allocated clusters (in place), shifted by 512 bytes
    std::vector<IoRange> v2 = v;
    for (auto& x : v2) x.off = x.off + 512 + x.len <= (16 << 20) ? x.off + 512 : x.off;
    CHECK_EQ(w->pwrite_ranges(v2.data(), v2.size()), 0);
    for (auto& x : v2) CHECK_EQ(sh_->pwrite(x.buf, x.len, x.off), 0);
    CHECK_EQ(w->flush(), 0);
  }
  std::string msg;
  if (sh("qemu-img check -q " + q(out), &msg)) throw vireo_test::Failure{"check: " + msg};
  if (sh("qemu-img compare -q -f qcow2 -F raw " + q(out) + " " + q(shadow), &msg))
    throw vireo_test::Failure{"compare: " + msg};
  // a compressed source: ranges over compressed clusters read like pread
  CHECK_EQ(sh("qemu-img convert -q -c -O qcow2 " + q(src) + " " + q(comp)), 0);
  auto cin = open_ro(comp);
  std::fill(a.begin(), a.end(), 0xee);
  CHECK_EQ(cin->pread_ranges(v.data(), v.size()), 0);
  CHECK(a == b);
}
