#include "devices/pci/i440fx.h"

namespace vireo::pci {

I440fx::I440fx(Callbacks cb) : cb_(std::move(cb)) {
  name = "i440fx";
  set_ids(kVendor, kDevice, 0x060000 /* bridge, host */, 0x02);
  // Device-specific space is writable (as QEMU does); PAM and SMRAM are masked.
  for (int i = 0x40; i < 0x100; i++) wmask[i] = 0xff;
  wmask[kPam0] = 0x30;  // PAM0 only has the 0xf0000 segment (bits 5:4)
  for (uint32_t i = 1; i < kPamCount; i++) wmask[kPam0 + i] = 0x33;
  set_defaults();
}

void I440fx::set_defaults() {
  cfg_set(kCommand, 2, kCmdMem | kCmdMaster);
  cfg_set(kStatus, 2, 0x0280);  // fast back-to-back, DEVSEL medium
  for (uint32_t i = 0; i < kPamCount; i++) cfg[kPam0 + i] = 0;
  cfg[kSmram] = kSmramBaseSeg;
  wmask[kSmram] = kSmramOpen | kSmramClose | kSmramLock | kSmramEnable;
}

void I440fx::config_write(uint32_t offset, int size, uint32_t value) {
  std::vector<PamRegion> regions;
  bool pam_changed = false, smram_changed = false;
  uint8_t smram_now;
  {
    std::lock_guard g(cfg_mu_);
    std::array<uint8_t, kPamCount> old_pam;
    for (uint32_t i = 0; i < kPamCount; i++) old_pam[i] = cfg[kPam0 + i];
    uint8_t old_smram = cfg[kSmram];
    PciFunction::config_write(offset, size, value);
    uint8_t& sm = cfg[kSmram];
    if (sm & kSmramLock) {
      // Locked: D_OPEN clears; only D_CLS stays writable until reset.
      sm = uint8_t(sm & ~kSmramOpen);
      wmask[kSmram] = kSmramClose;
    }
    sm = uint8_t((sm & ~0x07) | kSmramBaseSeg);
    for (uint32_t i = 0; i < kPamCount; i++) pam_changed |= old_pam[i] != cfg[kPam0 + i];
    smram_changed = old_smram != sm;
    smram_now = sm;
    if (pam_changed) regions = pam_regions();
  }
  if (pam_changed && cb_.pam_changed) cb_.pam_changed(regions);
  if (smram_changed && cb_.smram_changed) cb_.smram_changed(smram_now);
}

void I440fx::config_loaded() {
  std::vector<PamRegion> regions;
  uint8_t sm;
  {
    std::lock_guard g(cfg_mu_);
    uint8_t& smram = cfg[kSmram];
    smram = uint8_t((smram & ~0x07) | kSmramBaseSeg);
    wmask[kSmram] = (smram & kSmramLock) ? kSmramClose : uint8_t(kSmramOpen | kSmramClose | kSmramLock | kSmramEnable);
    if (smram & kSmramLock) smram = uint8_t(smram & ~kSmramOpen);
    regions = pam_regions();
    sm = smram;
  }
  if (cb_.pam_changed) cb_.pam_changed(regions);
  if (cb_.smram_changed) cb_.smram_changed(sm);
}

void I440fx::reset() {
  {
    std::lock_guard g(cfg_mu_);
    set_defaults();
  }
  if (cb_.pam_changed) cb_.pam_changed(pam_regions());
  if (cb_.smram_changed) cb_.smram_changed(smram());
}

std::vector<I440fx::PamRegion> I440fx::pam_regions() const {
  std::vector<PamRegion> r;
  r.push_back({0xf0000, 0x10000, PamAttr((cfg[kPam0] >> 4) & 3)});
  for (uint32_t i = 1; i < kPamCount; i++) {
    uint64_t base = 0xc0000 + (i - 1) * 0x8000;
    r.push_back({base, 0x4000, PamAttr(cfg[kPam0 + i] & 3)});
    r.push_back({base + 0x4000, 0x4000, PamAttr((cfg[kPam0 + i] >> 4) & 3)});
  }
  return r;
}

}  // namespace vireo::pci
