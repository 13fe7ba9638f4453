// virtio-blk (virtio 1.2, 5.2): one request queue over a BlockBackend.
// Requests run on a BlockQueue (I/O threads), so several are in flight and
// the vCPU thread only parses and submits; completions write the data and
// status into guest memory and interrupt from the I/O thread. FLUSH is a
// BlockQueue barrier, so it completes only after every earlier write.
//
// Data goes through a host bounce buffer per request: guest memory is read
// (writes) when the request is parsed and written (reads) when it completes,
// both under the transport lock, so a device reset drops completions that
// arrive afterwards without touching guest memory.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "block/block.h"
#include "block/queue.h"
#include "devices/virtio/device.h"
#include "devices/virtio/virtio.h"

namespace vireo::virtio {

// 5.2.3 feature bits.
constexpr int kBlkFSizeMax = 1, kBlkFSegMax = 2, kBlkFGeometry = 4, kBlkFRo = 5, kBlkFBlkSize = 6,
              kBlkFFlush = 9, kBlkFTopology = 10, kBlkFConfigWce = 11, kBlkFMq = 12, kBlkFDiscard = 13,
              kBlkFWriteZeroes = 14;
// 5.2.6 request types and status values.
constexpr uint32_t kBlkTIn = 0, kBlkTOut = 1, kBlkTFlush = 4, kBlkTGetId = 8, kBlkTDiscard = 11,
                   kBlkTWriteZeroes = 13;
constexpr uint8_t kBlkSOk = 0, kBlkSIoErr = 1, kBlkSUnsupp = 2;
constexpr uint32_t kBlkIdBytes = 20;
// 5.2.4 struct virtio_blk_config offsets.
constexpr uint32_t kBlkCfgCapacity = 0x00, kBlkCfgSizeMax = 0x08, kBlkCfgSegMax = 0x0c, kBlkCfgBlkSize = 0x14,
                   kBlkCfgNumQueues = 0x22, kBlkCfgMaxDiscardSectors = 0x24, kBlkCfgMaxDiscardSeg = 0x28,
                   kBlkCfgDiscardAlign = 0x2c, kBlkCfgMaxWzSectors = 0x30, kBlkCfgMaxWzSeg = 0x34,
                   kBlkCfgWzMayUnmap = 0x38, kBlkCfgSize = 0x3c;

class VirtioBlk : public VirtioDevice {
public:
  struct Options {
    std::string serial;          // GET_ID answer (up to 20 bytes)
    bool read_only = false;      // also implied by a read-only backend
    uint16_t queue_size = 256;
    unsigned io_threads = 2;
  };
  // Limits announced in the config space (and enforced).
  static constexpr uint32_t kMaxDiscardSectors = 1u << 22, kMaxDiscardSeg = 32;
  static constexpr uint64_t kMaxRequestBytes = 32ull << 20;  // larger IN/OUT requests fail with IOERR
  // Bounce-buffer bytes the device holds for requests in flight. Past it, new
  // chains wait (popped, in order) until completions free room: a guest
  // keeping every descriptor busy with 32 MiB requests costs the host at most
  // this much, not queue size x 32 MiB.
  static constexpr uint64_t kMaxBytesInFlight = 64ull << 20;

  VirtioBlk(std::shared_ptr<block::BlockBackend> disk, Options opt);
  ~VirtioBlk() override;

  uint16_t device_type() const override { return kDeviceBlock; }
  uint64_t device_features() const override;
  uint16_t num_queues() const override { return 1; }
  uint16_t max_queue_size() const override { return opt_.queue_size; }
  uint32_t config_size() const override { return kBlkCfgSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;
  void queue_notify(int q) override;
  void quiesce() override;
  void reset() override;  // transport lock held
  // Saved state: nothing beyond the transport's; refuses while requests are
  // in flight or waiting for room (Machine::pause drains them first).
  void save_device(state::StateWriter& w) const override;

  // Tests: wait until every submitted request has completed.
  void drain() { io_->drain(); }
  size_t in_flight() const { return io_->in_flight(); }
  // Tests: bounce-buffer bytes held, and chains waiting for room (transport lock held).
  uint64_t bytes_in_flight() const { return bytes_in_flight_; }
  size_t deferred() const { return deferred_.size(); }
  uint64_t capacity_sectors() const { return disk_->size() / 512; }

private:
  struct Request;
  void start(int q, SplitQueue::Chain& chain);  // transport lock held
  void finish(std::shared_ptr<Request> r);      // I/O thread: takes the lock
  void complete(Request& r);                    // transport lock held
  void start_deferred();                        // transport lock held

  struct Deferred {
    int q;
    SplitQueue::Chain chain;
  };
  // Chains popped while kMaxBytesInFlight was reached (bounded by the queue
  // size: each head is in flight once). Guarded by the transport lock.
  std::deque<Deferred> deferred_;
  uint64_t bytes_in_flight_ = 0;

  std::shared_ptr<block::BlockBackend> disk_;
  Options opt_;
  std::unique_ptr<block::BlockQueue> io_;
};

}  // namespace vireo::virtio
