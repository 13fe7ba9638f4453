// BlockQueue: several requests in flight, completion callbacks on I/O
// threads, flush as a barrier, errors passed through, qcow2 under concurrency.
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "block/blocktest_util.h"
#include "block/image.h"
#include "block/queue.h"
#include "check.h"

using namespace vireo::block;

// A memory disk that records when each request starts and ends and takes a
// few milliseconds per request, so overlap and ordering can be observed.
class SlowDisk : public MemoryBackend {
public:
  SlowDisk() : MemoryBackend(1 << 20) {}
  struct Ev { char op; uint64_t off; int phase; };
  std::mutex mu;
  std::vector<Ev> log;
  std::atomic<int> cur{0}, peak{0};
  void ev(char op, uint64_t off, int phase) {
    std::lock_guard<std::mutex> g(mu);
    log.push_back({op, off, phase});
  }
  void busy(char op, uint64_t off) {
    ev(op, off, 0);
    int c = ++cur;
    int p = peak.load();
    while (c > p && !peak.compare_exchange_weak(p, c)) {}
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
    --cur;
    ev(op, off, 1);
  }
  int pwrite(const void* b, uint64_t l, uint64_t o) override {
    int r = MemoryBackend::pwrite(b, l, o);
    busy('w', o);
    return r;
  }
  int pread(void* b, uint64_t l, uint64_t o) override {
    busy('r', o);
    return MemoryBackend::pread(b, l, o);
  }
  int flush() override {
    busy('f', 0);
    return MemoryBackend::flush();
  }
};

TEST(queue_requests_overlap_and_complete_off_thread) {
  auto disk = std::make_shared<SlowDisk>();
  BlockQueue q(disk, 4);
  std::atomic<int> done{0}, errors{0}, on_caller{0};
  auto me = std::this_thread::get_id();
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < 8; i++) bufs.push_back(blocktest::pattern(4096, i));
  for (int i = 0; i < 8; i++)
    q.write(bufs[i].data(), 4096, i * 4096, [&](int r) {
      if (r) errors++;
      if (std::this_thread::get_id() == me) on_caller++;
      done++;
    });
  CHECK(q.in_flight() > 0);
  q.drain();
  CHECK_EQ(done.load(), 8);
  CHECK_EQ(errors.load(), 0);
  CHECK_EQ(on_caller.load(), 0);
  CHECK(disk->peak.load() > 1);  // requests really were in flight together
  CHECK_EQ(q.in_flight(), size_t(0));
  for (int i = 0; i < 8; i++) CHECK(std::memcmp(&disk->data[i * 4096], bufs[i].data(), 4096) == 0);
  std::vector<uint8_t> rd(4096);
  int rr = 1;
  q.read(rd.data(), 4096, 3 * 4096, [&](int r) { rr = r; });
  q.drain();
  CHECK_EQ(rr, 0);
  CHECK(rd == bufs[3]);
  int bad = 0;
  q.read(rd.data(), 4096, 2 << 20, [&](int r) { bad = r; });  // past the end
  q.drain();
  CHECK_EQ(bad, -EIO);
}

TEST(queue_flush_is_a_barrier) {
  auto disk = std::make_shared<SlowDisk>();
  BlockQueue q(disk, 4);
  std::vector<uint8_t> b(512, 1);
  for (int i = 0; i < 4; i++) q.write(b.data(), 512, i * 512, nullptr);
  int fr = 1;
  q.flush([&](int r) { fr = r; });
  for (int i = 4; i < 7; i++) q.write(b.data(), 512, i * 512, nullptr);
  q.drain();
  CHECK_EQ(fr, 0);
  CHECK_EQ(disk->flushes, 1);
  // find flush start/end in the log
  size_t fs = 0, fe = 0;
  for (size_t i = 0; i < disk->log.size(); i++)
    if (disk->log[i].op == 'f') (disk->log[i].phase ? fe : fs) = i;
  for (size_t i = 0; i < disk->log.size(); i++) {
    auto& e = disk->log[i];
    if (e.op != 'w') continue;
    if (e.off < 4 * 512 && e.phase == 1) CHECK(i < fs);   // earlier writes ended before flush began
    if (e.off >= 4 * 512 && e.phase == 0) CHECK(i > fe);  // later writes began after it ended
  }
}

TEST(queue_concurrent_qcow2_writes_match_shadow) {
  for (bool ext_l2 : {false, true}) {  // plain and extended L2 entries (12 KiB = 6 subclusters)
    blocktest::TmpDir d;
    std::string p = d / "q.qcow2";
    CHECK_EQ(create_qcow2(p, 16 << 20, 16, "", "", 3, nullptr, ext_l2), 0);
    std::shared_ptr<BlockBackend> disk = open_block(p, OpenOptions{}, nullptr);
    CHECK(disk);
    std::vector<uint8_t> shadow(16 << 20, 0);
    std::vector<std::vector<uint8_t>> bufs;
    std::mt19937_64 rng(5);
    {
      BlockQueue q(disk, 4);
      std::atomic<int> errors{0};
      // non-overlapping 12 KiB writes in random order, many in flight
      std::vector<uint64_t> slots(1300);
      for (size_t i = 0; i < slots.size(); i++) slots[i] = i;
      std::shuffle(slots.begin(), slots.end(), rng);
      for (size_t i = 0; i < slots.size(); i++) bufs.push_back(blocktest::pattern(12288, uint32_t(i)));
      for (size_t i = 0; i < slots.size(); i++) {
        uint64_t off = slots[i] * 12288;
        std::memcpy(&shadow[off], bufs[i].data(), 12288);
        q.write(bufs[i].data(), 12288, off, [&](int r) { errors += r != 0; });
        if (i % 100 == 99) q.flush([&](int r) { errors += r != 0; });
      }
      q.drain();
      CHECK_EQ(errors.load(), 0);
    }
    std::vector<uint8_t> got(shadow.size());
    CHECK_EQ(disk->pread(got.data(), got.size(), 0), 0);
    CHECK(got == shadow);
    disk.reset();
    if (blocktest::have("qemu-img")) CHECK_EQ(blocktest::sh("qemu-img check -q '" + p + "'"), 0);
  }
}
