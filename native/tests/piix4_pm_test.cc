#include "devices/pci/piix4_pm.h"

#include <atomic>
#include <memory>

#include "check.h"

using namespace vireo;
using namespace vireo::pci;

namespace {

struct Rig {
  Bus pio, mmio;
  PciHost host{pio, mmio};
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(5'000'000'000);
  bool sci = false;
  int sci_raises = 0, poweroffs = 0, suspends = 0;
  std::shared_ptr<Piix4Pm> pm;
  Rig() {
    Piix4Pm::Callbacks cb;
    cb.poweroff = [this] { poweroffs++; };
    cb.suspend = [this] { suspends++; };
    pm = std::make_shared<Piix4Pm>(IrqLine([this](bool l) {
                                     sci_raises += l && !sci;
                                     sci = l;
                                   }),
                                   [n = now] { return n->load(); }, cb);
    host.attach(Piix4Pm::kSlot, Piix4Pm::kFn, pm);
    pio.insert(pm->gpe_port(), Piix4Pm::kGpePort, Piix4Pm::kGpeLen, "gpe0");
    pio.insert(pm->apm_port(), Piix4Pm::kApmPort, Piix4Pm::kApmLen, "apm");
  }
  // What SeaBIOS' piix4_pm_config_setup does.
  void seabios_setup() {
    host.config_write(0, 1, 3, 0x3c, 1, 9);
    host.config_write(0, 1, 3, 0x40, 4, 0xb000 | 1);
    host.config_write(0, 1, 3, 0x80, 1, 0x01);
    host.config_write(0, 1, 3, 0x90, 4, 0xb100 | 1);
    host.config_write(0, 1, 3, 0xd2, 1, 0x09);
  }
  uint32_t in(uint16_t port, int size) {
    uint8_t b[4] = {};
    pio.read(port, {b, size_t(size)});
    return uint32_t(span_to_u64({b, size_t(size)}));
  }
  void out(uint16_t port, int size, uint32_t v) {
    uint8_t b[4];
    u64_to_span(v, {b, size_t(size)});
    pio.write(port, {b, size_t(size)});
  }
};

}  // namespace

TEST(ids_and_smm_preinitialised) {
  Rig r;
  CHECK_EQ(r.host.config_read(0, 1, 3, 0, 4), 0x71138086u);
  CHECK_EQ(r.host.config_read(0, 1, 3, 0x0a, 2), 0x0680u);
  CHECK(r.host.config_read(0, 1, 3, 0x58, 4) & (1u << 25));  // SeaBIOS skips SMM setup
  CHECK_EQ(r.host.config_read(0, 1, 3, 0x67, 1) & 0x08, 0x08u);  // COM1 present for the DSDT
}

TEST(pmba_maps_pm_block_when_enabled) {
  Rig r;
  r.host.config_write(0, 1, 3, 0x40, 4, 0xffffffff);
  CHECK_EQ(r.host.config_read(0, 1, 3, 0x40, 4), 0xffc1u);
  r.host.config_write(0, 1, 3, 0x40, 4, 0xb001);
  CHECK(r.pio.device_at(0xb000) == nullptr);  // PMIOSE off
  r.seabios_setup();
  CHECK(r.pio.device_at(0xb008) == r.pm->pm_block());
  CHECK(r.pio.device_at(0xb100) != nullptr);  // SMBus dummy
  r.host.config_write(0, 1, 3, 0x40, 4, 0x6001);  // move
  CHECK(r.pio.device_at(0xb000) == nullptr);
  CHECK(r.pio.device_at(0x6000) == r.pm->pm_block());
  r.host.config_write(0, 1, 3, 0x80, 1, 0);
  CHECK(r.pio.device_at(0x6000) == nullptr);
}

TEST(pm_timer_runs_at_3_579545_mhz) {
  Rig r;
  r.seabios_setup();
  uint32_t t0 = r.in(0xb008, 4);
  *r.now += 1'000'000;  // 1 ms
  uint32_t t1 = r.in(0xb008, 4);
  CHECK_EQ((t1 - t0) & 0xffffff, 3579u);
  *r.now += 10'000'000'000;  // 10 s: wraps 24 bits, value stays 24-bit
  CHECK(r.in(0xb008, 4) <= 0xffffffu);
}

TEST(timer_overflow_sets_tmr_sts_and_sci) {
  Rig r;
  r.seabios_setup();
  r.out(0xb2, 1, 0xf1);
  r.out(0xb002, 2, Piix4Pm::kTmrSts);  // TMR_EN
  int64_t due = r.pm->next_event_ns();
  *r.now = due;
  r.pm->tick();
  CHECK(r.in(0xb000, 2) & Piix4Pm::kTmrSts);
  CHECK(r.sci);
  r.out(0xb000, 2, Piix4Pm::kTmrSts);  // W1C
  CHECK(!r.sci);
  CHECK_EQ(r.in(0xb000, 2) & Piix4Pm::kTmrSts, 0u);
}

TEST(acpi_enable_via_smi_cmd) {
  Rig r;
  r.seabios_setup();
  CHECK_EQ(r.in(0xb004, 2) & 1, 0u);
  r.out(0xb2, 1, 0xf1);
  CHECK_EQ(r.in(0xb004, 2) & 1, 1u);
  CHECK_EQ(r.in(0xb2, 1), 0xf1u);
  r.out(0xb2, 1, 0xf0);
  CHECK_EQ(r.in(0xb004, 2) & 1, 0u);
  r.out(0xb3, 1, 0x5a);
  CHECK_EQ(r.in(0xb3, 1), 0x5au);
}

TEST(power_button_raises_sci_when_enabled) {
  Rig r;
  r.seabios_setup();
  CHECK(!r.pm->press_power_button());  // not enabled yet: status only
  CHECK(!r.sci);
  r.out(0xb000, 2, 0xffff);  // clear all
  r.out(0xb2, 1, 0xf1);
  r.out(0xb002, 2, Piix4Pm::kPwrBtnSts);
  CHECK(r.pm->press_power_button());
  CHECK(r.sci);
  CHECK_EQ(r.sci_raises, 1);
  CHECK(r.in(0xb000, 2) & Piix4Pm::kPwrBtnSts);
  r.out(0xb000, 2, Piix4Pm::kPwrBtnSts);
  CHECK(!r.sci);
  // SCI_EN off gates the line.
  r.pm->press_power_button();
  CHECK(r.sci);
  r.out(0xb2, 1, 0xf0);
  CHECK(!r.sci);
}

TEST(slp_en_s5_powers_off_s3_suspends) {
  Rig r;
  r.seabios_setup();
  r.out(0xb2, 1, 0xf1);
  r.out(0xb004, 2, (Piix4Pm::kSlpTypS3 << 10) | 1);  // no SLP_EN yet
  CHECK_EQ(r.poweroffs + r.suspends, 0);
  r.out(0xb004, 2, (Piix4Pm::kSlpTypS3 << 10) | Piix4Pm::kSlpEn | 1);
  CHECK_EQ(r.suspends, 1);
  CHECK_EQ(r.in(0xb004, 2) & Piix4Pm::kSlpEn, 0u);  // SLP_EN reads 0
  r.out(0xb004, 2, (Piix4Pm::kSlpTypS5 << 10) | Piix4Pm::kSlpEn | 1);
  CHECK_EQ(r.poweroffs, 1);
  // Byte write of the high half (as some OSes do) works too.
  r.out(0xb005, 1, uint8_t(((Piix4Pm::kSlpTypS4 << 10) | Piix4Pm::kSlpEn) >> 8));
  CHECK_EQ(r.poweroffs, 2);
}

TEST(gpe0_block_status_enable) {
  Rig r;
  r.out(0xb2, 1, 0xf1);
  r.pm->raise_gpe(2);
  CHECK_EQ(r.in(0xafe0, 2), 0x4u);
  CHECK(!r.sci);
  r.out(0xafe2, 2, 0x4);
  CHECK(r.sci);
  r.out(0xafe0, 1, 0x4);
  CHECK(!r.sci);
  CHECK_EQ(r.in(0xafe0, 4), 0x00040000u);
}

TEST(reset_unmaps_and_clears) {
  Rig r;
  r.seabios_setup();
  r.out(0xb2, 1, 0xf1);
  r.host.reset_all();
  CHECK(r.pio.device_at(0xb000) == nullptr);
  CHECK_EQ(r.pm->snapshot().pm1_cnt, 0);
  CHECK(r.host.config_read(0, 1, 3, 0x58, 4) & (1u << 25));
}
