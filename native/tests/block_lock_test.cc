// Image locks (block/lock.h): two processes (fork), one process twice,
// backing files shared by readers, vireo-img and its -U, and QEMU's own
// qemu-img / qemu-system-x86_64 on the other side (skipped without them).
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "block/blocktest_util.h"
#include "block/image.h"
#include "block/lock.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string tool_path(const char* name) {  // built next to this test
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string p(self, n > 0 ? size_t(n) : 0);
  return p.substr(0, p.rfind('/') + 1) + name;
}

bool conflict(const std::string& err, const std::string& path) {
  return err.find(kLockConflictPhrase) != std::string::npos && err.find(path) != std::string::npos;
}

// A child process that opens `path` (read-only or not) and holds it until
// killed. The constructor returns once the image is open.
struct Holder {
  pid_t pid = -1;
  bool ok = false;
  Holder(const std::string& path, bool read_only, const std::string& fmt = "qcow2") {
    int p[2];
    if (pipe(p)) return;
    pid = fork();
    if (pid == 0) {
      close(p[0]);
      OpenOptions o;
      o.format = fmt;
      o.read_only = read_only;
      std::string err;
      auto b = open_block(path, o, &err);
      char c = b ? 'y' : 'n';
      if (write(p[1], &c, 1) != 1) _exit(2);
      if (!b) {
        std::fprintf(stderr, "holder: %s\n", err.c_str());
        _exit(1);
      }
      for (;;) pause();
    }
    close(p[1]);
    char c = 0;
    ok = read(p[0], &c, 1) == 1 && c == 'y';
    close(p[0]);
  }
  void release() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~Holder() { release(); }
};

std::unique_ptr<BlockBackend> open_img(const std::string& p, bool ro, std::string* err, bool force = false) {
  OpenOptions o;
  o.format = "qcow2";
  o.read_only = ro;
  o.force_share = force;
  return open_block(p, o, err);
}

}  // namespace

TEST(writer_in_another_process_refuses_writers_and_readers) {
  TmpDir d;
  std::string p = d / "a.qcow2", err;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  Holder h(p, false);
  CHECK(h.ok);
  CHECK(!open_img(p, false, &err));
  CHECK(conflict(err, p));
  CHECK(err.find("open for writing") != std::string::npos);
  CHECK(!open_img(p, true, &err));
  CHECK(conflict(err, p));
  // force-share reads anyway, and only reads
  CHECK(open_img(p, true, &err, true));
  CHECK(!open_img(p, false, &err, true));
  CHECK(err.find("read-only") != std::string::npos);
  // raw too
  std::string r = d / "b.raw";
  CHECK_EQ(create_raw(r, 1 << 20, &err), 0);
  Holder hr(r, false, "raw");
  CHECK(hr.ok);
  CHECK(!open_block(r, OpenOptions{"raw"}, &err));
  CHECK(conflict(err, r));
  // The writer gone, the image opens again (its locks died with it).
  h.release();
  CHECK(open_img(p, false, &err));
}

TEST(readers_share_and_keep_writers_out) {
  TmpDir d;
  std::string p = d / "a.qcow2", err;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  Holder h(p, true);
  CHECK(h.ok);
  CHECK(open_img(p, true, &err));  // a second reader
  CHECK(!open_img(p, false, &err));
  CHECK(conflict(err, p));
  CHECK(err.find("does not allow 'write'") != std::string::npos);
}

TEST(two_opens_in_one_process_conflict) {
  TmpDir d;
  std::string p = d / "a.qcow2", err;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  auto a = open_img(p, false, &err);
  CHECK(a);
  CHECK(!open_img(p, false, &err));  // OFD locks: per open, not per process
  CHECK(conflict(err, p));
  a.reset();
  CHECK(open_img(p, false, &err));
}

TEST(backing_files_are_shared_read_only) {
  TmpDir d;
  std::string base = d / "base.qcow2", o1 = d / "o1.qcow2", o2 = d / "o2.qcow2", err;
  CHECK_EQ(create_qcow2(base, 1 << 20, 16, "", "", 3, &err), 0);
  CHECK_EQ(create_qcow2(o1, 0, 16, base, "qcow2", 3, &err), 0);
  CHECK_EQ(create_qcow2(o2, 0, 16, base, "qcow2", 3, &err), 0);
  Holder h(o1, false);
  CHECK(h.ok);
  auto b2 = open_img(o2, false, &err);  // a second clone of the same base runs
  CHECK(b2);
  CHECK(!open_img(base, false, &err));  // nobody writes the base under them
  CHECK(conflict(err, base));
  CHECK(open_img(base, true, &err));
  // create over an image in use is refused and leaves it as it was
  auto before = blocktest::slurp(o1);
  CHECK(create_qcow2(o1, 1 << 20, 16, "", "", 3, &err) != 0);
  CHECK(conflict(err, o1));
  CHECK(create_raw(o1, 1 << 20, &err) != 0);
  CHECK(blocktest::slurp(o1) == before);
}

TEST(snapshot_overlay_reads_a_base_others_read) {
  TmpDir d;
  std::string p = d / "a.qcow2", err;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  Holder h(p, true);
  CHECK(h.ok);
  OpenOptions o;
  o.format = "qcow2";
  o.snapshot = true;  // throwaway overlay: the base is only read
  auto b = open_block(p, o, &err);
  CHECK(b);
  uint8_t x[512] = {1};
  CHECK_EQ(b->pwrite(x, 512, 0), 0);
}

TEST(vireo_img_honours_locks_and_force_share) {
  std::string tool = tool_path("vireo-img");
  if (access(tool.c_str(), X_OK)) throw vireo_test::Skip{"vireo-img is not built next to this test"};
  TmpDir d;
  std::string p = d / "a.qcow2", err, out;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  Holder h(p, false);
  CHECK(h.ok);
  CHECK_EQ(sh(q(tool) + " info " + q(p), &out), 1);
  CHECK(out.find(kLockConflictPhrase) != std::string::npos);
  CHECK_EQ(sh(q(tool) + " info -U " + q(p), &out), 0);
  CHECK(out.find("file format: qcow2") != std::string::npos);
  CHECK_EQ(sh(q(tool) + " check --force-share " + q(p), &out), 0);
  CHECK_EQ(sh(q(tool) + " check -U -r all " + q(p), &out), 1);  // -U never writes
  CHECK(out.find("only for reading") != std::string::npos);
  CHECK_EQ(sh(q(tool) + " resize " + q(p) + " 2M", &out), 1);
  CHECK(out.find(kLockConflictPhrase) != std::string::npos);
  CHECK_EQ(sh(q(tool) + " create -f qcow2 " + q(p) + " 4M", &out), 1);
  h.release();
  CHECK_EQ(sh(q(tool) + " info " + q(p), &out), 0);
  CHECK(out.find("1 MiB") != std::string::npos);  // neither resized nor re-created
}

TEST(qemu_img_sees_our_locks_and_we_see_its) {
  if (!blocktest::have("qemu-img")) throw vireo_test::Skip{"qemu-img is not installed"};
  TmpDir d;
  std::string p = d / "a.qcow2", err, out;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  {
    auto w = open_img(p, false, &err);
    CHECK(w);
    CHECK(sh("qemu-img info " + q(p), &out) != 0);
    CHECK(out.find("lock") != std::string::npos);  // "Failed to get shared "write" lock"
    CHECK_EQ(sh("qemu-img info -U " + q(p), &out), 0);
  }
  {
    auto r = open_img(p, true, &err);
    CHECK(r);
    CHECK_EQ(sh("qemu-img info " + q(p), &out), 0);  // readers share
    CHECK(sh("qemu-img resize " + q(p) + " 2M", &out) != 0);
    CHECK(out.find("lock") != std::string::npos);
  }
}

TEST(qemu_system_holding_the_image_keeps_us_out) {
  const char* qemu = "qemu-system-x86_64";
  if (!blocktest::have(qemu)) throw vireo_test::Skip{"qemu-system-x86_64 is not installed"};
  TmpDir d;
  std::string p = d / "a.qcow2", err;
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, "", "", 3, &err), 0);
  pid_t pid = fork();
  if (pid == 0) {
    std::string drive = "file=" + p + ",format=qcow2,if=none,id=d0";
    execlp(qemu, qemu, "-accel", "tcg", "-S", "-display", "none", "-nodefaults", "-monitor", "none", "-drive",
           drive.c_str(), "-device", "virtio-blk-pci,drive=d0", (char*)nullptr);
    _exit(127);
  }
  // QEMU opens its drives before the machine is created; wait for its write
  // byte (101) without taking a lock ourselves (that would make QEMU fail).
  bool locked = false;
  int fd = open(p.c_str(), O_RDONLY);
  for (int i = 0; i < 300 && !locked && fd >= 0; i++) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) break;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 101;
    fl.l_len = 1;
    locked = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (fd >= 0) close(fd);
  bool r_refused = !open_img(p, true, &err) && conflict(err, p);
  bool w_refused = !open_img(p, false, &err) && conflict(err, p);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  CHECK(locked);
  CHECK(r_refused);
  CHECK(w_refused);
  CHECK(open_img(p, false, &err));  // QEMU gone: ours again
}
