// BlockQueue: asynchronous requests on a BlockBackend, run by a small pool of
// I/O threads so a vCPU thread can keep several requests in flight.
//
//   auto q = std::make_unique<BlockQueue>(backend, 4);
//   q->read(buf, 4096, off, [](int r) { /* on an I/O thread: complete the request */ });
//   q->flush([](int r) { ... });   // a barrier, see below
//
// Ordering: read/write/discard/write_zeroes may run concurrently and complete
// in any order. flush() is a barrier: it starts only after every request
// submitted before it has completed, and requests submitted after it start
// only once it has completed. So a flush's callback means every earlier write
// is on stable storage. Callbacks run on I/O threads (never on the submitter)
// and must not block for long; they may submit more requests. Buffers must
// stay valid until the callback. The destructor drains everything.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "block/block.h"

namespace vireo::block {

class BlockQueue {
public:
  using Callback = std::function<void(int result)>;  // 0 or -errno
  BlockQueue(std::shared_ptr<BlockBackend> backend, unsigned threads = 4);
  ~BlockQueue();
  BlockQueue(const BlockQueue&) = delete;
  BlockQueue& operator=(const BlockQueue&) = delete;

  void read(void* buf, uint64_t len, uint64_t off, Callback cb);
  void write(const void* buf, uint64_t len, uint64_t off, Callback cb);
  void discard(uint64_t off, uint64_t len, Callback cb);
  void write_zeroes(uint64_t off, uint64_t len, Callback cb);
  void flush(Callback cb);
  // Blocks until every submitted request has completed (callbacks returned).
  void drain();
  size_t in_flight() const;  // submitted and not yet completed
  BlockBackend* backend() const { return be_.get(); }

private:
  enum class Op { Read, Write, Discard, WriteZeroes, Flush };
  struct Req {
    Op op;
    void* buf;
    uint64_t len, off;
    Callback cb;
  };
  void submit(Req r);
  void worker();
  std::shared_ptr<BlockBackend> be_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Req> queue_;
  size_t running_ = 0;
  bool barrier_running_ = false;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace vireo::block
