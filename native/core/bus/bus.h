// A bus dispatches accesses by address range to IoDevices. Used for both the
// PIO space (16-bit ports) and the MMIO space (guest-physical addresses).
//
// Thread safety: lookups take a shared lock on the range map; each registered
// range has its own mutex held during the device call, so a device never runs
// on two vCPU threads at once. A device may insert/remove ranges from inside
// its own handler (a PCI BAR remap) because the map lock is not held then.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "bus/device.h"

namespace vireo {

class Bus {
public:
  struct Range {
    uint64_t base;
    uint64_t len;
  };

  // Register `dev` for [base, base+len). Fails (returns false) on overlap or len==0.
  // The same device may be registered at several ranges; they share one lock.
  bool insert(std::shared_ptr<IoDevice> dev, uint64_t base, uint64_t len, std::string name = {});
  // Remove the range starting exactly at `base`. Returns false if none.
  bool remove(uint64_t base);
  // Dispatch. Returns false when no device claims `addr` (reads then return all-ones).
  bool read(uint64_t addr, std::span<uint8_t> data);
  bool write(uint64_t addr, std::span<const uint8_t> data);

  // For diagnostics and tests.
  std::vector<std::pair<Range, std::string>> ranges() const;
  std::shared_ptr<IoDevice> device_at(uint64_t addr) const;

private:
  struct Entry {
    uint64_t len;
    std::shared_ptr<IoDevice> dev;
    std::shared_ptr<std::mutex> lock;
    std::string name;
  };
  bool find(uint64_t addr, uint64_t& base, Entry& out) const;
  std::map<uint64_t, Entry> map_;
  std::map<const IoDevice*, std::weak_ptr<std::mutex>> locks_;
  mutable std::shared_mutex mu_;
};

}  // namespace vireo
