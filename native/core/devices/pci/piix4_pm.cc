#include "devices/pci/piix4_pm.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "machine/state.h"

namespace vireo::pci {

namespace {

int64_t default_clock() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Forward : public IoDevice {
public:
  using R = void (Piix4Pm::*)(uint64_t, std::span<uint8_t>);
  using W = void (Piix4Pm::*)(uint64_t, std::span<const uint8_t>);
  Forward(Piix4Pm& p, R r, W w) : p_(p), r_(r), w_(w) {}
  StateKind state_kind() const override { return StateKind::None; }  // the registers are the PM's (section "piix4-pm")
  void read(uint64_t off, std::span<uint8_t> d) override { (p_.*r_)(off, d); }
  void write(uint64_t off, std::span<const uint8_t> d) override { (p_.*w_)(off, d); }

private:
  Piix4Pm& p_;
  R r_;
  W w_;
};

// SMBus host controller placeholder: no devices on the bus. Host status reads
// "idle" and a started transaction ends at once with "device error" (no ACK),
// which is what an empty SMBus looks like to a driver.
class SmbusDummy : public IoDevice {
public:
  uint8_t regs[16]{};
  StateKind state_kind() const override { return StateKind::None; }  // regs are saved with the PM's section
  void read(uint64_t off, std::span<uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) d[i] = off + i < 16 ? regs[off + i] : 0xff;
  }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) {
      uint64_t o = off + i;
      if (o >= 16) continue;
      if (o == 0) {
        regs[0] &= uint8_t(~d[i]);  // host status: write 1 to clear
      } else if (o == 2 && (d[i] & 0x40)) {
        regs[2] = uint8_t(d[i] & ~0x40);
        regs[0] |= 0x04;  // START: DEV_ERR, transaction over
      } else {
        regs[o] = d[i];
      }
    }
  }
};

}  // namespace

Piix4Pm::Piix4Pm(IrqLine sci, Clock mono_ns, Callbacks cb, Options opt)
    : sci_(std::move(sci)), clock_(mono_ns ? std::move(mono_ns) : Clock(&default_clock)), cb_(std::move(cb)), opt_(opt) {
  name = "piix4-pm";
  set_ids(kVendor, kDevice, 0x068000 /* bridge, other */, 0x03);
  set_interrupt_pin(1);
  for (int i = 0x40; i < 0x100; i++) wmask[i] = 0xff;
  // PMBA: 64-byte I/O block, bits 15:6; bit 0 reads 1 (I/O space).
  wmask[kPmba] = 0xc0;
  wmask[kPmba + 1] = 0xff;
  wmask[kPmba + 2] = 0;
  wmask[kPmba + 3] = 0;
  // SMBBA: 16-byte I/O block, bits 15:4; bit 0 reads 1.
  wmask[kSmbba] = 0xf0;
  wmask[kSmbba + 1] = 0xff;
  wmask[kSmbba + 2] = 0;
  wmask[kSmbba + 3] = 0;
  pm_dev_ = std::make_shared<Forward>(*this, &Piix4Pm::pm_read, &Piix4Pm::pm_write);
  gpe_dev_ = std::make_shared<Forward>(*this, &Piix4Pm::gpe_read, &Piix4Pm::gpe_write);
  apm_dev_ = std::make_shared<Forward>(*this, &Piix4Pm::apm_read, &Piix4Pm::apm_write);
  smb_dev_ = std::make_shared<SmbusDummy>();
  set_defaults();
}

void Piix4Pm::set_defaults() {
  cfg_set(kStatus, 2, 0x0280);
  cfg_set(kPmba, 4, 0x00000001);
  cfg_set(kSmbba, 4, 0x00000001);
  cfg[kPmregmisc] = 0;
  cfg[kSmbHstCfg] = 0;
  // DEVACTB: APMC_EN (bit 25) preset: "SMM already initialised", SeaBIOS skips SMM setup.
  cfg_set(kDevactb, 4, 1u << 25);
  // Device resource enables as QEMU presets them; the DSDT reads these for _STA.
  cfg[0x5f] = uint8_t(0x10 | (opt_.lpt ? 0x80 : 0));
  cfg[0x63] = 0x60;
  cfg[0x67] = uint8_t((opt_.com1 ? 0x08 : 0) | (opt_.com2 ? 0x80 : 0));
  s.pm1_sts = s.pm1_en = s.pm1_cnt = 0;
  s.gpe_sts = s.gpe_en = 0;
  s.apm_cnt = s.apm_sts = 0;
  for (auto& r : s.regs) r = 0;
  s.tmr_base_ns = clock_();
  s.tmr_last_msb = 0;
}

void Piix4Pm::config_write(uint32_t offset, int size, uint32_t value) {
  std::lock_guard g(cfg_mu_);
  PciFunction::config_write(offset, size, value);
  remap_io();
}

void Piix4Pm::reset() {
  std::lock_guard g(cfg_mu_);
  set_defaults();
  remap_io();
  update_sci();
}

void Piix4Pm::remap_io() {
  if (!host_) return;
  Bus& pio = host_->pio();
  uint16_t pm_want = (cfg[kPmregmisc] & 1) ? uint16_t(cfg_get(kPmba, 4) & 0xffc0) : 0;
  if (pm_want != s.pm_mapped_at) {
    if (s.pm_mapped_at) pio.remove(s.pm_mapped_at);
    s.pm_mapped_at = 0;
    if (pm_want && pio.insert(pm_dev_, pm_want, kPmLen, "piix4-pm")) s.pm_mapped_at = pm_want;
  }
  uint16_t smb_want = (cfg[kSmbHstCfg] & 1) ? uint16_t(cfg_get(kSmbba, 4) & 0xfff0) : 0;
  if (smb_want != s.smb_mapped_at) {
    if (s.smb_mapped_at) pio.remove(s.smb_mapped_at);
    s.smb_mapped_at = 0;
    if (smb_want && pio.insert(smb_dev_, smb_want, kSmbLen, "piix4-smbus")) s.smb_mapped_at = smb_want;
  }
}

// ---------------------------------------------------------------- SCI and timer

void Piix4Pm::update_sci() {
  bool level = (s.pm1_cnt & kSciEn) &&
               ((s.pm1_sts & s.pm1_en & kSciEvents) != 0 || (s.gpe_sts & s.gpe_en) != 0);
  if (level != sci_.level()) sci_.set(level);
}

uint32_t Piix4Pm::timer_value() {
  std::lock_guard g(cfg_mu_);
  int64_t el = clock_() - s.tmr_base_ns;
  if (el < 0) el = 0;
  return uint32_t((__int128)el * kPmTimerHz / 1'000'000'000) & 0xffffff;
}

void Piix4Pm::update_timer_status(int64_t now) {
  int64_t el = now - s.tmr_base_ns;
  if (el < 0) el = 0;
  uint64_t ticks = uint64_t((__int128)el * kPmTimerHz / 1'000'000'000);
  uint64_t msb = ticks >> 23;  // bit 23 of the 24-bit counter toggles every 2^23 ticks
  if (msb != s.tmr_last_msb) {
    s.tmr_last_msb = msb;
    s.pm1_sts |= kTmrSts;
  }
}

void Piix4Pm::tick() {
  std::lock_guard g(cfg_mu_);
  update_timer_status(clock_());
  update_sci();
}

int64_t Piix4Pm::next_event_ns() {
  std::lock_guard g(cfg_mu_);
  uint64_t next_ticks = (s.tmr_last_msb + 1) << 23;
  return s.tmr_base_ns + int64_t((__int128)next_ticks * 1'000'000'000 / kPmTimerHz) + 1;
}

// ---------------------------------------------------------------- PM block

uint8_t Piix4Pm::pm_byte(uint32_t off, int64_t now) {
  switch (off) {
    case kPm1Sts: return uint8_t(s.pm1_sts);
    case kPm1Sts + 1: return uint8_t(s.pm1_sts >> 8);
    case kPm1En: return uint8_t(s.pm1_en);
    case kPm1En + 1: return uint8_t(s.pm1_en >> 8);
    case kPm1Cnt: return uint8_t(s.pm1_cnt);
    case kPm1Cnt + 1: return uint8_t((s.pm1_cnt & ~kSlpEn) >> 8);  // SLP_EN reads 0
    case kPmTmr:
    case kPmTmr + 1:
    case kPmTmr + 2:
    case kPmTmr + 3: {
      int64_t el = now - s.tmr_base_ns;
      if (el < 0) el = 0;
      uint32_t v = uint32_t((__int128)el * kPmTimerHz / 1'000'000'000) & 0xffffff;
      return uint8_t(v >> (8 * (off - kPmTmr)));
    }
    case 0x14:
    case 0x15:
      return 0;  // P_LVL2 / P_LVL3: reading would enter C2/C3; we report nothing
    default: return off < 64 ? s.regs[off] : 0xff;
  }
}

void Piix4Pm::pm_read(uint64_t off, std::span<uint8_t> d) {
  std::lock_guard g(cfg_mu_);
  int64_t now = clock_();
  update_timer_status(now);
  for (size_t i = 0; i < d.size(); i++) d[i] = pm_byte(uint32_t(off + i), now);
  update_sci();
}

void Piix4Pm::pm_write(uint64_t off, std::span<const uint8_t> d) {
  After after = After::None;
  {
    std::lock_guard g(cfg_mu_);
    update_timer_status(clock_());
    for (size_t i = 0; i < d.size(); i++) {
      uint32_t o = uint32_t(off + i);
      uint8_t v = d[i];
      int sh = 8 * (o & 1);
      switch (o) {
        case kPm1Sts:
        case kPm1Sts + 1:
          s.pm1_sts &= uint16_t(~(uint16_t(v) << sh));
          break;
        case kPm1En:
        case kPm1En + 1:
          s.pm1_en = uint16_t((s.pm1_en & ~(0xff << sh)) | (v << sh));
          s.pm1_en &= kSciEvents;
          break;
        case kPm1Cnt:
        case kPm1Cnt + 1: {
          uint16_t cnt = uint16_t((s.pm1_cnt & ~(0xff << sh)) | (v << sh));
          if (cnt & kSlpEn) {
            int typ = (cnt & kSlpTypMask) >> kSlpTypShift;
            if (typ == kSlpTypS5 || typ == kSlpTypS4) after = After::Poweroff;
            else if (typ == kSlpTypS3) after = After::Suspend;
          }
          // GBL_RLS (bit 2) would raise an SMI to the BIOS: no SMM, so it just doesn't stick.
          s.pm1_cnt = uint16_t(cnt & ~(kSlpEn | 0x0004));
          break;
        }
        case kPmTmr:
        case kPmTmr + 1:
        case kPmTmr + 2:
        case kPmTmr + 3:
          break;  // read-only
        default:
          if (o < 64) s.regs[o] = v;
          break;
      }
    }
    update_sci();
  }
  run(after);
}

// ---------------------------------------------------------------- GPE0 and APM

void Piix4Pm::gpe_read(uint64_t off, std::span<uint8_t> d) {
  std::lock_guard g(cfg_mu_);
  for (size_t i = 0; i < d.size(); i++) {
    uint64_t o = off + i;
    if (o < 2) d[i] = uint8_t(s.gpe_sts >> (8 * o));
    else if (o < 4) d[i] = uint8_t(s.gpe_en >> (8 * (o - 2)));
    else d[i] = 0xff;
  }
}

void Piix4Pm::gpe_write(uint64_t off, std::span<const uint8_t> d) {
  std::lock_guard g(cfg_mu_);
  for (size_t i = 0; i < d.size(); i++) {
    uint64_t o = off + i;
    if (o < 2) {
      s.gpe_sts &= uint16_t(~(uint16_t(d[i]) << (8 * o)));
    } else if (o < 4) {
      int sh = int(8 * (o - 2));
      s.gpe_en = uint16_t((s.gpe_en & ~(0xff << sh)) | (d[i] << sh));
    }
  }
  update_sci();
}

void Piix4Pm::apm_read(uint64_t off, std::span<uint8_t> d) {
  std::lock_guard g(cfg_mu_);
  for (size_t i = 0; i < d.size(); i++) {
    uint64_t o = off + i;
    d[i] = o == 0 ? s.apm_cnt : o == 1 ? s.apm_sts : 0xff;
  }
}

void Piix4Pm::apm_write(uint64_t off, std::span<const uint8_t> d) {
  After after = After::None;
  {
    std::lock_guard g(cfg_mu_);
    for (size_t i = 0; i < d.size(); i++) {
      uint64_t o = off + i;
      if (o == 1) {
        s.apm_sts = d[i];
      } else if (o == 0) {
        s.apm_cnt = d[i];
        // The ACPI enable/disable handshake that SMM firmware would do, done here.
        if (d[i] == kAcpiEnable) s.pm1_cnt |= kSciEn;
        else if (d[i] == kAcpiDisable) s.pm1_cnt &= uint16_t(~kSciEn);
        bool apmc_en = cfg_get(kDevactb, 4) & (1u << 25);
        if (apmc_en && (s.regs[kGlbCtl] & 1) && cb_.smi) after = After::Smi;
      }
    }
    update_sci();
  }
  run(after);
}

// ---------------------------------------------------------------- host events

bool Piix4Pm::press_power_button() {
  std::lock_guard g(cfg_mu_);
  s.pm1_sts |= kPwrBtnSts;
  update_sci();
  return (s.pm1_en & kPwrBtnSts) && (s.pm1_cnt & kSciEn);
}

void Piix4Pm::raise_gpe(int bit) {
  if (bit < 0 || bit > 15) return;
  std::lock_guard g(cfg_mu_);
  s.gpe_sts |= uint16_t(1u << bit);
  update_sci();
}

void Piix4Pm::wake() {
  std::lock_guard g(cfg_mu_);
  s.pm1_sts |= kWakSts;
  update_sci();
}

void Piix4Pm::run(After a) {
  switch (a) {
    case After::Poweroff:
      if (cb_.poweroff) cb_.poweroff();
      break;
    case After::Suspend:
      if (cb_.suspend) cb_.suspend();
      break;
    case After::Smi:
      if (cb_.smi) cb_.smi();
      break;
    case After::None: break;
  }
}

// ---------------------------------------------------------------- saved state

void Piix4Pm::save(state::StateWriter& w) const {
  std::lock_guard g(cfg_mu_);
  w.u16(s.pm1_sts);
  w.u16(s.pm1_en);
  w.u16(s.pm1_cnt);
  w.u16(s.gpe_sts);
  w.u16(s.gpe_en);
  w.u8(s.apm_cnt);
  w.u8(s.apm_sts);
  w.bytes(s.regs, sizeof s.regs);
  int64_t el = clock_() - s.tmr_base_ns;
  w.i64(el < 0 ? 0 : el);  // how long the PM timer has run
  w.u64(s.tmr_last_msb);
  w.bytes(static_cast<const SmbusDummy*>(smb_dev_.get())->regs, 16);
}

void Piix4Pm::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  n.pm1_sts = r.u16();
  n.pm1_en = r.u16();
  n.pm1_cnt = r.u16();
  n.gpe_sts = r.u16();
  n.gpe_en = r.u16();
  n.apm_cnt = r.u8();
  n.apm_sts = r.u8();
  r.bytes(n.regs, sizeof n.regs);
  int64_t elapsed = r.i64();
  n.tmr_last_msb = r.u64();
  uint8_t smb[16];
  r.bytes(smb, sizeof smb);
  r.finish();
  if (n.pm1_en & ~kSciEvents) r.fail("PM1 enable has bits no event uses");
  if (n.pm1_cnt & (kSlpEn | 0x0004)) r.fail("PM1 control has SLP_EN or GBL_RLS set");
  constexpr int64_t kMaxElapsed = int64_t(100) * 365 * 86400 * 1'000'000'000;  // a century
  if (elapsed < 0 || elapsed > kMaxElapsed) r.fail("PM timer time out of range");
  uint64_t ticks = uint64_t((__int128)elapsed * kPmTimerHz / 1'000'000'000);
  if (n.tmr_last_msb > (ticks >> 23)) r.fail("PM timer overflow count ahead of the timer");
  std::lock_guard g(cfg_mu_);
  n.pm_mapped_at = s.pm_mapped_at;  // follows config space (config_loaded)
  n.smb_mapped_at = s.smb_mapped_at;
  n.tmr_base_ns = clock_() - elapsed;
  s = n;
  std::copy(smb, smb + 16, static_cast<SmbusDummy*>(smb_dev_.get())->regs);
  update_sci();
}

void Piix4Pm::config_loaded() {
  std::lock_guard g(cfg_mu_);
  remap_io();
}

Piix4Pm::State Piix4Pm::snapshot() const {
  std::lock_guard g(cfg_mu_);
  return s;
}

}  // namespace vireo::pci
