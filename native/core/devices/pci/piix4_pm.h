// Intel 82371AB (PIIX4) function 3: power management, shaped after what
// SeaBIOS 1.16 (Debian 12) expects when it builds its own ACPI tables
// (src/fw/acpi.c piix4_fadt_setup + acpi-dsdt.dsl + ssdt-misc.dsl):
//   FADT SCI_INT 9, SMI_CMD 0xb2, ACPI_ENABLE 0xf1, ACPI_DISABLE 0xf0,
//   PM1a_EVT_BLK = PMBA (0xb000), PM1a_CNT_BLK = PMBA+4, PM_TMR_BLK = PMBA+8
//   (24-bit, no TMR_VAL_EXT), GPE0_BLK = 0xafe0 length 4,
//   \_S3 SLP_TYP 1, \_S4 SLP_TYP 2, \_S5 SLP_TYP 0.
// SeaBIOS programs PMBA (0x40) = 0xb000|1, PMREGMISC (0x80) = 1, SMBus base
// (0x90) = 0xb100|1, SMBHSTCFG (0xd2) = 9, interrupt line 9 -- or PMBA 0x600
// and SMBus 0x700 when fw_cfg has etc/table-loader, as on Vireo's PC, whose
// own FADT (machine/acpi.cc) says so. The device decodes wherever PMBA points.
//
// I/O the board registers itself: gpe_port() at kGpePort (len 4) and
// apm_port() at kApmPort (len 2). The PM block (64 bytes) and the SMBus
// block (16 bytes, a dummy) are mapped on the host's PIO bus by this device
// when the guest enables them, like BARs.
//
// SMM is not modelled: DEVACTB.APMC_EN reads as already set, which is how
// QEMU tells SeaBIOS to skip its SMM relocation (piix4_apmc_smm_setup).
//
// The SCI is an IrqLine (level, active high); on an i440FX board wire it into
// Piix3::external_irq(9, Piix3::kSrcSci, level) so it shares IRQ 9 correctly.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "bus/device.h"
#include "devices/irq.h"
#include "devices/pci/pci.h"

namespace vireo::pci {

class Piix4Pm : public PciFunction, public Stateful {
public:
  static constexpr uint16_t kVendor = 0x8086, kDevice = 0x7113;
  static constexpr int kSlot = 1, kFn = 3;
  static constexpr int kSciIrq = 9;               // SeaBIOS PIIX_PM_INTRRUPT
  static constexpr uint16_t kDefaultPmBase = 0xb000;  // SeaBIOS PORT_ACPI_PM_BASE
  // Where SeaBIOS puts PMBA instead when fw_cfg has etc/table-loader (src/fw/
  // paravirt.c qemu_platform_setup "Moving pm_base to 0x600"), i.e. on a
  // board whose ACPI tables come from the VMM, as Vireo's PC does.
  static constexpr uint16_t kLoaderPmBase = 0x0600;
  static constexpr uint16_t kGpePort = 0xafe0, kGpeLen = 4;  // SeaBIOS PIIX_GPE0_BLK
  static constexpr uint16_t kApmPort = 0xb2, kApmLen = 2;    // APM control (SMI_CMD) + status
  static constexpr uint16_t kPmLen = 64, kSmbLen = 16;
  static constexpr uint8_t kAcpiEnable = 0xf1, kAcpiDisable = 0xf0;
  static constexpr int64_t kPmTimerHz = 3579545;

  // Config registers.
  static constexpr uint32_t kPmba = 0x40, kDevactb = 0x58, kPmregmisc = 0x80, kSmbba = 0x90, kSmbHstCfg = 0xd2;
  // PM I/O block offsets.
  static constexpr uint32_t kPm1Sts = 0x00, kPm1En = 0x02, kPm1Cnt = 0x04, kPmTmr = 0x08, kGlbCtl = 0x28;
  // PM1 status / enable bits.
  static constexpr uint16_t kTmrSts = 1 << 0, kBmSts = 1 << 4, kGblSts = 1 << 5, kPwrBtnSts = 1 << 8,
                            kRtcSts = 1 << 10, kWakSts = 1 << 15;
  static constexpr uint16_t kSciEvents = kTmrSts | kGblSts | kPwrBtnSts | kRtcSts;
  // PM1 control bits.
  static constexpr uint16_t kSciEn = 1 << 0, kSlpTypShift = 10, kSlpTypMask = 7 << 10, kSlpEn = 1 << 13;
  static constexpr int kSlpTypS3 = 1, kSlpTypS4 = 2, kSlpTypS5 = 0;  // SeaBIOS ssdt-misc.dsl

  struct State {
    static constexpr uint32_t kVersion = 1;
    uint16_t pm1_sts = 0;
    uint16_t pm1_en = 0;
    uint16_t pm1_cnt = 0;
    uint16_t gpe_sts = 0;
    uint16_t gpe_en = 0;
    uint8_t apm_cnt = 0;
    uint8_t apm_sts = 0;
    uint8_t regs[64]{};          // other PM block registers, stored as written
    int64_t tmr_base_ns = 0;     // monotonic instant where the PM timer read 0
    uint64_t tmr_last_msb = 0;   // timer ticks >> 23 last seen (for TMR_STS)
    uint16_t pm_mapped_at = 0;   // 0 = not mapped
    uint16_t smb_mapped_at = 0;
  };

  struct Callbacks {
    std::function<void()> poweroff;  // SLP_EN with S5 (or S4) SLP_TYP
    std::function<void()> suspend;   // SLP_EN with S3 SLP_TYP (ignored if unset)
    std::function<void()> smi;       // APM write with APMC_EN and GLBCTL.SMI_EN (SMM not modelled)
  };
  using Clock = std::function<int64_t()>;  // monotonic nanoseconds

  struct Options {
    bool com1 = true;  // DSDT COM1 _STA (config 0x67 bit 3)
    bool com2 = false;
    bool lpt = false;  // DSDT LPT _STA (config 0x5f bit 7)
  };

  Piix4Pm(IrqLine sci, Clock mono_ns, Callbacks cb, Options opt);
  Piix4Pm(IrqLine sci, Clock mono_ns, Callbacks cb) : Piix4Pm(std::move(sci), std::move(mono_ns), std::move(cb), Options{}) {}

  void config_write(uint32_t offset, int size, uint32_t value) override;
  void reset() override;

  std::shared_ptr<IoDevice> gpe_port() { return gpe_dev_; }
  std::shared_ptr<IoDevice> apm_port() { return apm_dev_; }
  std::shared_ptr<IoDevice> pm_block() { return pm_dev_; }  // what gets mapped at PMBA

  // Host events. Returns whether the guest has enabled the event (PWRBTN_EN and SCI_EN).
  bool press_power_button();
  void raise_gpe(int bit);
  void wake();  // resume from S3: sets WAK_STS

  // Evaluate the PM timer overflow (TMR_STS); the board may call it at next_event_ns().
  void tick();
  int64_t next_event_ns();
  uint32_t timer_value();  // 24-bit PM timer now

  // Port-level access (what the IoDevices call); offsets are within each block.
  void pm_read(uint64_t off, std::span<uint8_t> d);
  void pm_write(uint64_t off, std::span<const uint8_t> d);
  void gpe_read(uint64_t off, std::span<uint8_t> d);
  void gpe_write(uint64_t off, std::span<const uint8_t> d);
  void apm_read(uint64_t off, std::span<uint8_t> d);
  void apm_write(uint64_t off, std::span<const uint8_t> d);

  State snapshot() const;

  // Saved state (section "piix4-pm"): PM1 status/enable/control, GPE0,
  // APM, the other PM block bytes, the SMBus placeholder's registers and the
  // PM timer as the time it had run (rebased to the load instant, so the
  // guest's timer goes on from where it was). Where the PM and SMBus blocks
  // are mapped follows config space ("pci" section, config_loaded); after a
  // load the SCI is driven from the loaded registers. SLP_EN is not latched
  // (a write with S5 powers off at once), so no sleep request is pending.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;
  void config_loaded() override;

private:
  enum class After { None, Poweroff, Suspend, Smi };
  void set_defaults();
  void update_sci();
  void update_timer_status(int64_t now);
  void remap_io();
  uint8_t pm_byte(uint32_t off, int64_t now);
  void run(After a);

  State s;
  IrqLine sci_;
  Clock clock_;
  Callbacks cb_;
  Options opt_;
  std::shared_ptr<IoDevice> pm_dev_, gpe_dev_, apm_dev_, smb_dev_;
};

}  // namespace vireo::pci
