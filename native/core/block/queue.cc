#include "block/queue.h"

#include "sandbox/confine.h"

namespace vireo::block {

BlockQueue::BlockQueue(std::shared_ptr<BlockBackend> backend, unsigned threads)
    : be_(std::move(backend)) {
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; i++) threads_.emplace_back([this] { worker(); });
}

BlockQueue::~BlockQueue() {
  drain();
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void BlockQueue::submit(Req r) {
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(r));
  }
  cv_.notify_one();
}

void BlockQueue::read(void* buf, uint64_t len, uint64_t off, Callback cb) {
  submit({Op::Read, buf, len, off, std::move(cb)});
}
void BlockQueue::write(const void* buf, uint64_t len, uint64_t off, Callback cb) {
  submit({Op::Write, const_cast<void*>(buf), len, off, std::move(cb)});
}
void BlockQueue::discard(uint64_t off, uint64_t len, Callback cb) {
  submit({Op::Discard, nullptr, len, off, std::move(cb)});
}
void BlockQueue::write_zeroes(uint64_t off, uint64_t len, Callback cb) {
  submit({Op::WriteZeroes, nullptr, len, off, std::move(cb)});
}
void BlockQueue::flush(Callback cb) { submit({Op::Flush, nullptr, 0, 0, std::move(cb)}); }

void BlockQueue::worker() {
  sandbox::confine_device_thread("a block I/O thread");  // runs guest requests (sandbox/confine.h)
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    // The head may start unless a barrier is running, or it is a barrier and
    // earlier requests are still running.
    cv_.wait(lk, [&] {
      if (stop_) return true;
      if (queue_.empty() || barrier_running_) return false;
      return queue_.front().op != Op::Flush || running_ == 0;
    });
    if (stop_ && queue_.empty()) return;
    if (queue_.empty() || barrier_running_) continue;
    Req r = std::move(queue_.front());
    queue_.pop_front();
    running_++;
    if (r.op == Op::Flush) barrier_running_ = true;
    lk.unlock();
    cv_.notify_one();  // another worker may take the next request
    int res = 0;
    switch (r.op) {
      case Op::Read: res = be_->pread(r.buf, r.len, r.off); break;
      case Op::Write: res = be_->pwrite(r.buf, r.len, r.off); break;
      case Op::Discard: res = be_->discard(r.off, r.len); break;
      case Op::WriteZeroes: res = be_->write_zeroes(r.off, r.len); break;
      case Op::Flush: res = be_->flush(); break;
    }
    if (r.cb) r.cb(res);
    lk.lock();
    running_--;
    if (r.op == Op::Flush) barrier_running_ = false;
    cv_.notify_all();
    if (running_ == 0 && queue_.empty()) idle_cv_.notify_all();
  }
}

void BlockQueue::drain() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return running_ == 0 && queue_.empty(); });
}

size_t BlockQueue::in_flight() const {
  std::lock_guard<std::mutex> g(mu_);
  return running_ + queue_.size();
}

}  // namespace vireo::block
