// CountingBackend: a BlockBackend that counts the guest's disk traffic on its
// way to the real backend, for the per-disk numbers of Machine/PcBoard
// (addon machine.perfStats(), the Performance tab). The board puts one in
// front of every disk and CD-ROM, so IDE (PIO, DMA, ATAPI) and virtio-blk
// requests are counted in one place: a read or write counts once it
// succeeded; ops are backend requests (a device may split a guest command).
// Counters are atomics: I/O threads and vCPU threads bump them, any thread
// reads them.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "block/block.h"

namespace vireo::block {

struct IoCounters {
  std::atomic<uint64_t> read_bytes{0}, read_ops{0}, write_bytes{0}, write_ops{0}, flush_ops{0};
};

class CountingBackend : public BlockBackend {
public:
  CountingBackend(std::shared_ptr<BlockBackend> inner, std::shared_ptr<IoCounters> c)
      : in_(std::move(inner)), c_(std::move(c)) {}
  uint64_t size() const override { return in_->size(); }
  bool read_only() const override { return in_->read_only(); }
  int pread(void* buf, uint64_t len, uint64_t off) override {
    int r = in_->pread(buf, len, off);
    if (r == 0) {
      c_->read_bytes.fetch_add(len, std::memory_order_relaxed);
      c_->read_ops.fetch_add(1, std::memory_order_relaxed);
    }
    return r;
  }
  int pwrite(const void* buf, uint64_t len, uint64_t off) override {
    int r = in_->pwrite(buf, len, off);
    if (r == 0) count_write(len);
    return r;
  }
  int flush() override {
    int r = in_->flush();
    if (r == 0) c_->flush_ops.fetch_add(1, std::memory_order_relaxed);
    return r;
  }
  int discard(uint64_t off, uint64_t len) override { return in_->discard(off, len); }
  int write_zeroes(uint64_t off, uint64_t len) override {
    int r = in_->write_zeroes(off, len);
    if (r == 0) count_write(len);
    return r;
  }
  std::string format() const override { return in_->format(); }
  int block_status(uint64_t off, uint64_t len, uint64_t* n) override { return in_->block_status(off, len, n); }
  BlockBackend* inner() const { return in_.get(); }
  const std::shared_ptr<IoCounters>& counters() const { return c_; }

private:
  void count_write(uint64_t len) {
    c_->write_bytes.fetch_add(len, std::memory_order_relaxed);
    c_->write_ops.fetch_add(1, std::memory_order_relaxed);
  }
  std::shared_ptr<BlockBackend> in_;
  std::shared_ptr<IoCounters> c_;
};

}  // namespace vireo::block
