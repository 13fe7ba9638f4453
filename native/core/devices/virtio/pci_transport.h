// Virtio over PCI, modern interface only (virtio 1.2, 4.1): vendor 1af4,
// device 0x1040 + type, revision 1. Layout (as QEMU places it, which guest
// drivers and SeaBIOS have met many times):
//   BAR1 (32-bit memory, 4 KiB): MSI-X table at 0, PBA at 0x800
//   BAR4 (64-bit memory, 16 KiB): common cfg 0x0000, ISR 0x1000,
//        device cfg 0x2000, notify 0x3000 (queue q at 0x3000 + 4*q)
// Capabilities: vendor-specific COMMON/ISR/DEVICE/NOTIFY/PCI_CFG, MSI-X.
// Interrupts: MSI-X messages through Hooks::msi when the driver enabled
// MSI-X, else the ISR byte and INTA# (set_intx), cleared by reading ISR.
// Notifications: writes to the notify region, or Hooks::notify_mapped tells
// the board where they are so it can bind an ioeventfd and call notify().
#pragma once
#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/pci/pci.h"
#include "devices/virtio/device.h"
#include "devices/virtio/virtio.h"

namespace vireo::virtio {

class VirtioPci : public pci::PciFunction, public Transport, public Stateful {
public:
  struct Hooks {
    // Send an MSI (address, data). Unset: MSI-X messages are dropped.
    std::function<void(uint64_t addr, uint32_t data)> msi;
    // The notify address of queue `q` became `gpa` (mapped) or went away.
    // Called with the PCI config lock held: must not call back into this object.
    std::function<void(int q, uint64_t gpa, bool mapped)> notify_mapped;
  };

  // BAR4 layout.
  static constexpr uint64_t kCommonOff = 0x0000, kIsrOff = 0x1000, kDeviceOff = 0x2000, kNotifyOff = 0x3000,
                            kRegionLen = 0x1000, kBar4Size = 0x4000;
  static constexpr uint32_t kNotifyMultiplier = 4;
  static constexpr int kMsixBar = 1, kModernBar = 4;
  static constexpr uint64_t kMsixBarSize = 0x1000, kPbaOff = 0x800;
  static constexpr uint32_t kCommonLen = 0x38;  // 4.1.4.3 struct virtio_pci_common_cfg

  VirtioPci(std::shared_ptr<VirtioDevice> dev, const GuestMemory* mem, Hooks hooks);
  ~VirtioPci() override;

  // Transport
  std::mutex& lock() override { return mu_; }
  const GuestMemory& memory() const override { return *mem_; }
  SplitQueue& queue(int i) override { return queues_[size_t(i)]; }
  void signal_used(int q) override;
  void set_needs_reset(const std::string& why) override;
  void config_changed() override;
  uint64_t epoch() const override { return epoch_; }
  bool dma_allowed() const override { return bus_master(); }

  // PciFunction
  uint32_t config_read(uint32_t offset, int size) override;
  void config_write(uint32_t offset, int size, uint32_t value) override;
  void bar_mapped(int bar, uint64_t addr, bool mapped) override;
  void reset() override;

  // The driver kicked queue `q` (from the notify region or an ioeventfd).
  void notify(int q);

  // For tests and diagnostics.
  uint8_t status() const;
  std::string needs_reset_reason() const;
  uint64_t driver_features() const;
  uint16_t num_queues() const { return uint16_t(queues_.size()); }
  uint8_t cap_offset(uint8_t cfg_type) const;  // 0 if absent
  uint8_t msix_cap() const { return msix_cap_; }
  VirtioDevice& device() { return *dev_; }

  // Saved state (machine/state.h, docs/state.md, section `dev:<kind>@<slot>`):
  // the common configuration (feature selects, driver features, status,
  // config vector and generation, queue select), ISR, the MSI-X table and
  // pending bits, every queue's size, enable, vector, ring addresses and
  // last_avail / used / signalled indices, then the device's own part
  // (VirtioDevice::save_device). The PCI config space (BARs, the MSI-X enable
  // bit) is the PCI host's to save. A queue with chains still held by the
  // device cannot be saved (pause drains virtio-blk; virtio-net holds none
  // between calls).
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

  // Saved state of the transport (queues are saved with their own State).
  struct State {
    static constexpr uint32_t kVersion = 1;
    uint32_t device_feature_select = 0, driver_feature_select = 0;
    uint64_t driver_features = 0;
    uint16_t config_msix_vector = kNoVector;
    uint8_t status = 0;
    uint8_t config_generation = 0;
    uint16_t queue_select = 0;
    uint8_t isr = 0;
    struct MsixEntry {
      uint32_t addr_lo = 0, addr_hi = 0, data = 0, ctrl = 1;  // masked at reset
    };
    std::vector<MsixEntry> msix;
    std::vector<bool> pba;
  };

private:
  class ModernBar;
  class MsixBar;
  friend class ModernBar;
  friend class MsixBar;

  void common_read(uint64_t off, std::span<uint8_t> d);
  void common_write(uint64_t off, std::span<const uint8_t> d);
  uint64_t common_field(uint32_t field) const;
  void set_common_field(uint32_t field, uint64_t v);
  void write_status(uint8_t v);
  void device_reset();  // virtio reset (status 0), mu_ held
  void bar4_read(uint64_t off, std::span<uint8_t> d);
  void bar4_write(uint64_t off, std::span<const uint8_t> d);
  void msix_read(uint64_t off, std::span<uint8_t> d);
  void msix_write(uint64_t off, std::span<const uint8_t> d);
  // Interrupt on MSI-X `vector` or (MSI-X off) the ISR bit + INTx. mu_ held.
  void raise(uint16_t vector, uint8_t isr_bit);
  bool msix_enabled(bool* masked = nullptr) const;
  void deliver_pending();  // after an unmask, mu_ held
  uint8_t isr_read_clear();
  void pci_cfg_access(bool write);  // the PCI_CFG capability window

  std::shared_ptr<VirtioDevice> dev_;
  const GuestMemory* mem_;
  Hooks hooks_;
  mutable std::mutex mu_;
  State s_;
  std::vector<SplitQueue> queues_;
  uint64_t epoch_ = 0;
  std::string needs_reset_why_;
  uint8_t caps_[6] = {};  // config offset of each virtio cap type
  uint8_t msix_cap_ = 0;
  uint16_t msix_vectors_ = 0;
};

}  // namespace vireo::virtio
