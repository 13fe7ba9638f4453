// The seam between a virtio device (blk, net...) and its transport (PCI
// here; MMIO could be another). A device implements VirtioDevice; the
// transport implements Transport and hands itself to attach(). The
// transport owns the lock: every VirtioDevice method is called with
// Transport::lock() held, and a device completing work on another thread
// (an I/O thread) takes it before touching its queues.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "bus/device.h"
#include "devices/virtio/queue.h"
#include "machine/guest_memory.h"

namespace vireo::virtio {

class Transport {
public:
  virtual ~Transport() = default;
  virtual std::mutex& lock() = 0;
  virtual const GuestMemory& memory() const = 0;
  virtual SplitQueue& queue(int i) = 0;
  // After push()es on queue `q`: interrupt the driver if the ring asks for it.
  virtual void signal_used(int q) = 0;
  // The device broke down or the driver broke a rule: set DEVICE_NEEDS_RESET
  // and tell the driver with a configuration-change interrupt (2.1.2).
  virtual void set_needs_reset(const std::string& why) = 0;
  // The device changed its configuration space (4.1.4.3: config_generation
  // moves on; 2.5.1 / 4.1.5.3: a configuration-change interrupt).
  virtual void config_changed() = 0;
  // Bumped by every device reset: completions of requests started in an
  // older epoch must not touch guest memory.
  virtual uint64_t epoch() const = 0;
  // DMA allowed? (PCI bus master enable.)
  virtual bool dma_allowed() const = 0;
};

class VirtioDevice {
public:
  virtual ~VirtioDevice() = default;
  virtual uint16_t device_type() const = 0;
  // Everything the device offers, transport bits (VERSION_1, EVENT_IDX...) included.
  virtual uint64_t device_features() const = 0;
  virtual uint16_t num_queues() const = 0;
  virtual uint16_t max_queue_size() const = 0;
  // Device-specific configuration space (5.x.4).
  virtual uint32_t config_size() const = 0;
  virtual void read_config(uint32_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint32_t offset, std::span<const uint8_t> data) {}

  virtual void attach(Transport* t) { transport_ = t; }
  // DRIVER_OK was set with these features negotiated.
  virtual void activate(uint64_t features) { features_ = features; }
  // The driver made buffers available on queue `q`.
  virtual void queue_notify(int q) = 0;
  // Device reset (status 0 or PCI reset): forget in-flight work.
  virtual void reset() { features_ = 0; }
  // Wait until no work started by this device is still running on other
  // threads. Called without the lock, before the transport goes away.
  virtual void quiesce() {}

  // Saved state (machine/state.h): what the device keeps beyond the
  // transport's registers and queues, written into the transport's section.
  // save_device() runs with the transport lock held; it throws
  // state::StateError when the device holds work it cannot save (requests in
  // flight). load_device() reads and checks its part without changing
  // anything and returns what applies it (called with the transport lock
  // held, after activate() when the driver was running).
  virtual void save_device(state::StateWriter&) const {}
  virtual std::function<void()> load_device(state::StateReader&) { return [] {}; }

protected:
  Transport* transport_ = nullptr;
  uint64_t features_ = 0;
};

}  // namespace vireo::virtio
