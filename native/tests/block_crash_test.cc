// Crash consistency: a child process writes to a qcow2 image (flushing every
// few writes and reporting each completed flush through a pipe) and is
// SIGKILLed at a random moment. The image must then pass `qemu-img check`
// (leaks allowed, never corruption), every write before the last completed
// flush must read back, and later writes must read back whole or as zeros.
// Rounds cycle through 4 KiB / 64 KiB clusters, v2 / v3, a backing file and
// (every fourth) extended L2 entries over a backing file.
// VIREO_CRASH_ROUNDS sets the number of rounds (default 4; tests/block/crash-100.sh runs 100).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "block/blocktest_util.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "check.h"

using namespace vireo::block;
using blocktest::TmpDir;

static constexpr uint64_t kSlots = 4096, kSlot = 8192, kLen = 6000, kSkew = 1000;
static uint64_t slot_of(uint64_t i) { return (i * 2654435761ULL) % kSlots; }

[[noreturn]] static void writer(const std::string& img, int fd) {
  auto b = open_block(img, OpenOptions{}, nullptr);
  if (!b) _exit(2);
  for (uint64_t i = 0; i < kSlots; i++) {
    auto data = blocktest::pattern(kLen, uint32_t(i));
    if (b->pwrite(data.data(), kLen, slot_of(i) * kSlot + kSkew)) _exit(3);
    if (i % 8 == 7) {
      if (b->flush()) _exit(4);
      if (write(fd, &i, sizeof i) != sizeof i) _exit(5);
    }
  }
  _exit(0);
}

TEST(crash_sigkill_mid_writes_leaves_consistent_image) {
  int rounds = 4;
  if (const char* e = getenv("VIREO_CRASH_ROUNDS")) rounds = atoi(e);
  bool qemu = blocktest::have("qemu-img");
  std::mt19937 rng(getpid());
  int killed_mid_run = 0;
  for (int round = 0; round < rounds; round++) {
    TmpDir d;
    std::string img = d / "crash.qcow2";
    bool with_backing = round % 2;
    if (with_backing) {
      // every other one with extended L2 entries (16 KiB clusters, 512-byte subclusters)
      bool ext_l2 = round % 4 == 3;
      CHECK_EQ(create_raw(d / "base.raw", kSlots * kSlot, nullptr), 0);
      CHECK_EQ(create_qcow2(img, 0, ext_l2 ? 14 : 12, "base.raw", "raw", 3, nullptr, ext_l2), 0);
    } else {
      CHECK_EQ(create_qcow2(img, kSlots * kSlot, round % 4 == 0 ? 12 : 16, "", "", round % 3 == 2 ? 2 : 3, nullptr), 0);
    }
    int p[2];
    CHECK_EQ(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      writer(img, p[1]);
    }
    close(p[1]);
    usleep(2000 + rng() % 60000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) killed_mid_run++;
    int64_t last = -1;
    uint64_t v;
    while (read(p[0], &v, sizeof v) == sizeof v) last = int64_t(v);
    close(p[0]);
    if (qemu) {
      std::string out;
      int rc = blocktest::sh("qemu-img check '" + img + "'", &out);
      if (rc != 0 && rc != 3)
        throw vireo_test::Failure{"round " + std::to_string(round) + ": qemu-img check exit " + std::to_string(rc) + "\n" + out};
    }
    {
      Qcow2OpenFlags f;
      f.read_only = true;
      f.no_backing = true;
      std::vector<std::string> chain;
      std::string err;
      auto q = Qcow2Backend::open(img, f, &chain, &err);
      CHECK(q);
      auto res = q->check(false);
      CHECK(res.completed);
      CHECK_EQ(res.corruptions, uint64_t(0));
    }
    OpenOptions o;
    o.read_only = true;
    auto b = open_block(img, o, nullptr);
    CHECK(b);
    std::vector<uint8_t> got(kLen), zero(kLen, 0);
    for (uint64_t i = 0; i < kSlots; i++) {
      CHECK_EQ(b->pread(got.data(), kLen, slot_of(i) * kSlot + kSkew), 0);
      auto want = blocktest::pattern(kLen, uint32_t(i));
      if (int64_t(i) <= last) {
        if (got != want) throw vireo_test::Failure{"round " + std::to_string(round) + ": flushed write " + std::to_string(i) + " lost"};
      } else if (got != want && got != zero) {
        throw vireo_test::Failure{"round " + std::to_string(round) + ": unflushed write " + std::to_string(i) + " reads back torn"};
      }
    }
  }
  std::printf("  (%d rounds, %d killed mid-run)\n", rounds, killed_mid_run);
  CHECK(killed_mid_run > 0 || rounds == 0);
}
