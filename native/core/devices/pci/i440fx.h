// Intel 82441FX (i440FX PMC) host bridge, function 00:00.0. Config space only:
// IDs 8086:1237 with QEMU's subsystem 1af4:1100 (SeaBIOS' qemu_detect keys on
// it), PAM registers 0x59-0x5f (shadow RAM attributes of 0xc0000-0xfffff) and
// SMRAM 0x72, stored and reported. The board maps 0xc0000-0xfffff as RAM
// holding the BIOS from the start, so PAM is storage plus a callback.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "devices/pci/pci.h"

namespace vireo::pci {

class I440fx : public PciFunction {
public:
  static constexpr uint16_t kVendor = 0x8086, kDevice = 0x1237;
  static constexpr int kSlot = 0, kFn = 0;
  static constexpr uint32_t kPam0 = 0x59, kPamCount = 7, kSmram = 0x72;
  // SMRAM bits (82441FX datasheet 3.2.19).
  static constexpr uint8_t kSmramOpen = 0x40, kSmramClose = 0x20, kSmramLock = 0x10, kSmramEnable = 0x08,
                           kSmramBaseSeg = 0x02;  // C_BASE_SEG = 010b: 0xa0000, read-only
  // PAM attribute values (2 bits per region).
  enum PamAttr : uint8_t { kPamPci = 0, kPamReadOnly = 1, kPamWriteOnly = 2, kPamReadWrite = 3 };

  struct PamRegion {
    uint64_t base;
    uint64_t size;
    PamAttr attr;
  };

  struct State {
    static constexpr uint32_t kVersion = 1;
    // PAM and SMRAM live in cfg[] (kPam0.., kSmram); nothing else.
  };

  struct Callbacks {
    std::function<void(const std::vector<PamRegion>&)> pam_changed;  // all 13 regions after any change
    std::function<void(uint8_t smram)> smram_changed;
  };

  explicit I440fx(Callbacks cb = {});

  void config_write(uint32_t offset, int size, uint32_t value) override;
  void reset() override;
  // After a state load (config space is all its state, saved with the
  // host's "pci" section): the SMRAM write mask follows the lock bit, and
  // the PAM / SMRAM callbacks hear the loaded values.
  void config_loaded() override;

  uint8_t pam(int i) const { return cfg[kPam0 + i]; }
  uint8_t smram() const { return cfg[kSmram]; }
  // 0xf0000-0xfffff (PAM0 high nibble), then 0xc0000.. in 16 KiB steps (PAM1..6 low/high nibbles).
  std::vector<PamRegion> pam_regions() const;

private:
  void set_defaults();
  Callbacks cb_;
};

}  // namespace vireo::pci
