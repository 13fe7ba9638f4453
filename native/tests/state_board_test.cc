// Saved state of the PC board's chipset devices (docs/state.md), without a
// vCPU: each device saves, loads into a freshly built one that then behaves
// as the saved one would (bytes still queued, clocks going on from the saved
// time, BARs mapped where the guest put them, fw_cfg reading on mid-item),
// and bad sections are refused with the device left as it was.
#include "check.h"
#include "bus/bus.h"
#include "devices/fw_cfg.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/misc_ports.h"
#include "devices/pci/i440fx.h"
#include "devices/pci/pci.h"
#include "devices/pci/piix3.h"
#include "devices/pci/piix4_pm.h"
#include "machine/state.h"

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace vireo;

namespace {

std::vector<uint8_t> save(const Stateful& d) {
  state::StateWriter w;
  d.save(w);
  return w.take();
}

void load(Stateful& d, const std::vector<uint8_t>& bytes, const char* name) {
  state::StateReader r(bytes, name, d.state_version());
  d.load(r);
}

// Loading `bytes` (as `version`) into `d` fails with a message containing
// `what`, and `d` saves the same bytes afterwards as before.
void expect_refused(Stateful& d, const std::vector<uint8_t>& bytes, uint32_t version, const char* what) {
  auto before = save(d);
  state::StateReader r(bytes, "dev", version);
  std::string msg;
  try {
    d.load(r);
  } catch (const state::StateError& e) {
    msg = e.what();
  }
  if (msg.find(what) == std::string::npos) {
    std::fprintf(stderr, "got '%s', wanted '%s'\n", msg.c_str(), what);
    CHECK(false);
  }
  CHECK(save(d) == before);
}

// The refusals every section shares: truncated, unknown version, leftover bytes.
void expect_common_refusals(Stateful& d, const std::vector<uint8_t>& good) {
  expect_refused(d, {good.begin(), good.end() - 1}, d.state_version(), "truncated");
  expect_refused(d, good, d.state_version() + 1, "unknown version");
  auto longer = good;
  longer.push_back(0);
  expect_refused(d, longer, d.state_version(), "unread bytes");
}

// ---------------------------------------------------------------- i8042

struct Kbd {
  std::vector<bool> irq1, irq12;
  I8042 dev{IrqLine([this](bool l) { irq1.push_back(l); }), IrqLine([this](bool l) { irq12.push_back(l); })};
};

// Every byte the guest would read, in order, as long as the output buffer fills.
std::vector<uint8_t> drain(I8042& k) {
  std::vector<uint8_t> out;
  while (k.read_status() & I8042::kStOutFull) out.push_back(k.read_data());
  return out;
}

TEST(i8042_round_trip_returns_queued_bytes_and_waiting_keys) {
  Kbd a;
  // Mouse interrupts on, the mouse on, a move queued; then more keys than the
  // keyboard buffer holds.
  a.dev.write_command(0x60);  // write the command byte
  a.dev.write_data(I8042::kCtrKbdInt | I8042::kCtrAuxInt | I8042::kCtrSystem | I8042::kCtrTranslate);
  a.dev.write_command(0xd4);
  a.dev.write_data(0xf4);  // enable streaming (ACK queued)
  a.dev.mouse(5, -3, 0, 1);
  for (int i = 0; i < 40; i++) {
    a.dev.key(i % 2 ? "KeyB" : "KeyA", true);
    a.dev.key(i % 2 ? "KeyB" : "KeyA", false);
  }
  CHECK(a.dev.backlog() > 64);  // some keys wait on the host side
  auto bytes = save(a.dev);
  CHECK(a.dev.state_kind() == Stateful::StateKind::Saved);

  Kbd b;
  load(b.dev, bytes, "i8042");
  CHECK(save(b.dev) == bytes);
  CHECK_EQ(b.dev.backlog(), a.dev.backlog());
  // The mouse's ACK waits in the output buffer: IRQ 12 is up again.
  CHECK(a.dev.read_status() & I8042::kStAuxData);
  CHECK(!b.irq12.empty() && b.irq12.back());
  auto got = drain(b.dev);
  auto want = drain(a.dev);
  CHECK_EQ(got.size(), want.size());
  CHECK(got == want);
  CHECK(got.size() >= 80);  // 80 translated key bytes, the ACK and the mouse packet
  CHECK_EQ(b.dev.backlog(), size_t(0));
}

TEST(i8042_refuses_bad_sections_and_stays_as_it_was) {
  Kbd a;
  a.dev.key("KeyQ", true);
  auto good = save(a.dev);
  Kbd b;
  b.dev.key("KeyZ", true);
  expect_common_refusals(b.dev, good);
  // Offsets: 5 register bytes, xlate flag, 32 RAM bytes, then the controller queue count.
  auto bad_q = good;
  bad_q[5 + 1 + 32] = 65;
  expect_refused(b.dev, bad_q, 1, "at most 64");
  // The keyboard's scancode set follows the two queues (count + u16 each) and kbd_pending.
  size_t ctrl = 5 + 1 + 32;
  size_t kbdq = ctrl + 1 + 2 * good[ctrl];
  size_t set = kbdq + 1 + 2 * good[kbdq] + 1;
  CHECK_EQ(good[set], uint8_t(2));
  auto bad_set = good;
  bad_set[set] = 7;
  expect_refused(b.dev, bad_set, 1, "scancode set 7");
  Kbd ref;
  ref.dev.key("KeyZ", true);
  CHECK(drain(b.dev) == drain(ref.dev));  // still Z's make code
}

// ---------------------------------------------------------------- CMOS RTC

uint8_t cmos_read(CmosRtc& r, uint8_t index) {
  uint8_t i = index, v = 0;
  r.write(0, std::span<const uint8_t>(&i, 1));
  r.read(1, std::span<uint8_t>(&v, 1));
  return v;
}
void cmos_write(CmosRtc& r, uint8_t index, uint8_t v) {
  uint8_t b[2] = {index, v};
  r.write(0, std::span<const uint8_t>(b, 1));
  r.write(1, std::span<const uint8_t>(b + 1, 1));
}

constexpr int64_t kSec = 1'000'000'000;

TEST(rtc_round_trip_time_continues_from_the_saved_time) {
  int64_t ta = 1 * kSec;
  CmosRtc a(IrqLine(), [&] { return ta; }, int64_t(1714564800) * kSec);  // 2024-05-01 12:00:00
  cmos_write(a, 0x40, 0xab);  // NVRAM
  cmos_write(a, CmosRtc::kSecondsAlarm, 0x30);
  ta += 10 * kSec + kSec / 2;
  CHECK_EQ(cmos_read(a, CmosRtc::kSeconds), uint8_t(0x10));
  auto bytes = save(a);

  // Another process, much later on the host, with another wall clock.
  int64_t tb = 777 * kSec;
  std::vector<bool> irq;
  CmosRtc b(IrqLine([&](bool l) { irq.push_back(l); }), [&] { return tb; }, int64_t(946684800) * kSec);  // 2000-01-01
  load(b, bytes, "rtc");
  CHECK(save(b) == bytes);  // same instant relative to the load: same bytes
  CHECK_EQ(cmos_read(b, CmosRtc::kHours), uint8_t(0x12));
  CHECK_EQ(cmos_read(b, CmosRtc::kMinutes), uint8_t(0x00));
  CHECK_EQ(cmos_read(b, CmosRtc::kSeconds), uint8_t(0x10));
  CHECK_EQ(cmos_read(b, CmosRtc::kYear), uint8_t(0x24));
  CHECK_EQ(cmos_read(b, 0x40), uint8_t(0xab));
  CHECK_EQ(cmos_read(b, CmosRtc::kSecondsAlarm), uint8_t(0x30));
  CHECK_EQ(b.wall_ns(), int64_t(1714564810) * kSec + kSec / 2);
  tb += 3 * kSec;  // half a second into 12:00:13
  CHECK_EQ(cmos_read(b, CmosRtc::kSeconds), uint8_t(0x13));
  CHECK_EQ(cmos_read(a, CmosRtc::kSeconds), uint8_t(0x10));  // a's clock did not move
}

TEST(rtc_refuses_bad_sections_and_stays_as_it_was) {
  int64_t t = kSec;
  CmosRtc a(IrqLine(), [&] { return t; }, int64_t(1714564800) * kSec);
  auto good = save(a);
  CmosRtc b(IrqLine(), [&] { return t; }, int64_t(946684800) * kSec);
  cmos_write(b, 0x41, 0x5a);
  expect_common_refusals(b, good);
  auto bad_index = good;
  bad_index[128] = 0x80;
  expect_refused(b, bad_index, 1, "CMOS index");
  auto bad_ns = good;  // cmos, index, nmi, frozen, sec (8), then the nanoseconds
  uint64_t ns = uint64_t(kSec);
  for (int i = 0; i < 8; i++) bad_ns[128 + 3 + 8 + i] = uint8_t(ns >> (8 * i));
  expect_refused(b, bad_ns, 1, "nanoseconds out of range");
  CHECK_EQ(cmos_read(b, 0x41), uint8_t(0x5a));
  CHECK_EQ(cmos_read(b, CmosRtc::kYear), uint8_t(0x00));  // still 2000
}

// ---------------------------------------------------------------- PCI, PIIX3, PIIX4 PM, i440FX

struct NullDev : IoDevice {
  uint8_t v;
  explicit NullDev(uint8_t v) : v(v) {}
  void read(uint64_t, std::span<uint8_t> d) override { std::fill(d.begin(), d.end(), v); }
  void write(uint64_t, std::span<const uint8_t>) override {}
  StateKind state_kind() const override { return StateKind::None; }
};

// A function with a memory BAR, an I/O BAR, a ROM and INTA#.
struct TestFn : pci::PciFunction {
  std::shared_ptr<NullDev> mem = std::make_shared<NullDev>(0x11), io = std::make_shared<NullDev>(0x22);
  explicit TestFn(uint16_t vendor = 0x1234) {
    name = "testfn";
    set_ids(vendor, 0x5678, 0x020000);
    add_bar(0, 0x1000, pci::BarKind::Mem32, mem);
    add_bar(1, 0x20, pci::BarKind::Io, io);
    std::vector<uint8_t> rom(4096, 0);
    rom[0] = 0x55;
    rom[1] = 0xaa;
    set_rom(rom);
    set_interrupt_pin(1);
  }
};

constexpr int kFnSlot = 3;
constexpr uint32_t kBarMem = 0xfebf0000, kRomAddr = 0xfeb80000;
constexpr uint16_t kBarIo = 0xc000;

struct Chipset {
  Bus pio, mmio;
  pci::PciHost host{pio, mmio};
  int64_t now;
  std::array<bool, 16> isa{};
  std::vector<std::pair<uint64_t, bool>> rom_events;
  std::shared_ptr<pci::I440fx> nb = std::make_shared<pci::I440fx>();
  std::shared_ptr<pci::Piix3> p3;
  std::shared_ptr<pci::Piix4Pm> pm;
  std::shared_ptr<TestFn> fn;
  Chipset(int64_t t0, uint16_t vendor = 0x1234) : now(t0) {
    pio.insert(host.config_port(), 0xcf8, 8, "pci-config");
    host.rom_mapped = [this](pci::PciFunction&, uint64_t gpa, uint8_t*, uint64_t, bool m) { rom_events.push_back({gpa, m}); };
    host.attach(0, 0, nb);
    pci::Piix3::Callbacks cb;
    cb.set_isa_irq = [this](int irq, bool l) { isa[irq] = l; };
    p3 = std::make_shared<pci::Piix3>(host, cb);
    host.attach(1, 0, p3);
    pm = std::make_shared<pci::Piix4Pm>(IrqLine([this](bool l) { p3->external_irq(9, pci::Piix3::kSrcSci, l); }),
                                        [this] { return now; }, pci::Piix4Pm::Callbacks{});
    host.attach(1, 3, pm);
    fn = std::make_shared<TestFn>(vendor);
    host.attach(kFnSlot, 0, fn);
  }
  void cfgw(int slot, int f, uint32_t reg, int size, uint32_t v) { host.config_write(0, slot, f, reg, size, v); }
  uint32_t cfgr(int slot, int f, uint32_t reg, int size) { return host.config_read(0, slot, f, reg, size); }
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
  // What a guest (SeaBIOS + an ACPI OS) leaves behind.
  void program() {
    cfgw(kFnSlot, 0, pci::kBar0, 4, kBarMem);
    cfgw(kFnSlot, 0, pci::kBar0 + 4, 4, kBarIo);
    cfgw(kFnSlot, 0, pci::kRomBar, 4, kRomAddr | 1);
    cfgw(kFnSlot, 0, pci::kCommand, 2, pci::kCmdIo | pci::kCmdMem | pci::kCmdMaster);
    cfgw(1, 0, pci::Piix3::kPirqBase + 2, 1, 11);  // PIRQC (slot 3 INTA) -> IRQ 11
    cfgw(1, 3, pci::Piix4Pm::kPmba, 4, 0x601);
    cfgw(1, 3, pci::Piix4Pm::kPmregmisc, 1, 1);
    uint8_t en = pci::Piix4Pm::kAcpiEnable;
    pm->apm_write(0, {&en, 1});
    out(0x600 + pci::Piix4Pm::kPm1En, 2, pci::Piix4Pm::kPwrBtnSts);
    nb->config_write(pci::I440fx::kSmram, 1, pci::I440fx::kSmramLock | pci::I440fx::kSmramEnable);
    cfgw(0, 0, pci::I440fx::kPam0 + 1, 1, 0x33);
    fn->set_intx(true);
    pm->press_power_button();
    out(0xcf8, 4, 0x80000000u | (kFnSlot << 11) | pci::kBar0);  // a guest mid config cycle
  }
  std::vector<std::vector<uint8_t>> save_all() { return {save(*host.config_port()), save(*p3), save(*pm)}; }
  void load_all(const std::vector<std::vector<uint8_t>>& s) {
    load(*host.config_port(), s[0], "pci");  // the Machine's order: "pci" first
    load(*p3, s[1], "piix3");
    load(*pm, s[2], "piix4-pm");
  }
};

TEST(pci_round_trip_maps_bars_rom_pm_block_and_routes_interrupts) {
  Chipset a(5 * kSec);
  a.program();
  CHECK(a.isa[11] && a.isa[9]);
  a.now += 2 * kSec;
  uint32_t timer = a.pm->timer_value();
  auto s = a.save_all();

  Chipset b(1000 * kSec);
  CHECK(!b.mmio.device_at(kBarMem));
  b.load_all(s);
  CHECK(b.save_all() == s);
  // BARs where the guest put them, with the function's handlers.
  CHECK(b.mmio.device_at(kBarMem) == b.fn->mem);
  CHECK(b.pio.device_at(kBarIo) == b.fn->io);
  CHECK(b.fn->bar(0).mapped && b.fn->bar(0).mapped_at == kBarMem);
  CHECK(b.rom_events.size() == 1 && b.rom_events[0] == std::make_pair(uint64_t(kRomAddr), true));
  CHECK_EQ(b.cfgr(kFnSlot, 0, pci::kBar0, 4), kBarMem);
  // The config cycle the guest was in goes on: 0xcfc reads that BAR.
  CHECK_EQ(b.in(0xcf8, 4), 0x80000000u | (kFnSlot << 11) | pci::kBar0);
  CHECK_EQ(b.in(0xcfc, 4), kBarMem);
  // INTA# through PIRQC to IRQ 11 and the SCI to IRQ 9 are driven again.
  CHECK(b.isa[11]);
  CHECK(b.isa[9]);
  CHECK_EQ(b.p3->pirq_irq(2), 11);
  // The PM block is at 0x600 with the pressed button; its timer goes on.
  CHECK(b.pio.device_at(0x600) != nullptr);
  CHECK(b.in(0x600 + pci::Piix4Pm::kPm1Sts, 2) & pci::Piix4Pm::kPwrBtnSts);
  CHECK_EQ(b.pm->timer_value(), timer);
  b.now += kSec;
  CHECK_EQ(b.pm->timer_value(), (timer + uint32_t(pci::Piix4Pm::kPmTimerHz)) & 0xffffff);
  // The SCI clears when the guest acknowledges the button.
  b.out(0x600 + pci::Piix4Pm::kPm1Sts, 2, pci::Piix4Pm::kPwrBtnSts);
  CHECK(!b.isa[9]);
  // i440FX: PAM as programmed, SMRAM still locked (D_OPEN cannot be set).
  CHECK_EQ(b.nb->pam(1), uint8_t(0x33));
  b.nb->config_write(pci::I440fx::kSmram, 1, pci::I440fx::kSmramOpen | pci::I440fx::kSmramEnable);
  CHECK(!(b.nb->smram() & pci::I440fx::kSmramOpen));
  CHECK(b.nb->smram() & pci::I440fx::kSmramLock);
  Chipset c(0);  // unlocked, for contrast
  c.nb->config_write(pci::I440fx::kSmram, 1, pci::I440fx::kSmramOpen);
  CHECK(c.nb->smram() & pci::I440fx::kSmramOpen);
  // The function lowering INTx reaches the PIC through the loaded routing.
  b.fn->set_intx(false);
  CHECK(!b.isa[11]);
}

TEST(pci_round_trip_moves_bars_of_a_used_machine) {
  Chipset a(kSec);
  a.program();
  auto s = a.save_all();
  Chipset b(kSec);
  b.cfgw(kFnSlot, 0, pci::kBar0, 4, 0xfe000000);
  b.cfgw(kFnSlot, 0, pci::kCommand, 2, pci::kCmdMem);
  CHECK(b.mmio.device_at(0xfe000000) == b.fn->mem);
  b.load_all(s);
  CHECK(!b.mmio.device_at(0xfe000000));
  CHECK(b.mmio.device_at(kBarMem) == b.fn->mem);
}

TEST(pci_refuses_another_device_or_bad_sections_and_changes_nothing) {
  Chipset a(kSec);
  a.program();
  auto s = a.save_all();
  Chipset b(kSec, 0x4321);  // a different device in slot 3
  auto& port = *b.host.config_port();
  expect_refused(port, s[0], 1, "03.0 (testfn) is a different device");
  CHECK(!b.mmio.device_at(kBarMem));
  CHECK_EQ(b.in(0xcf8, 4), 0u);
  Chipset c(kSec);
  auto& cport = *c.host.config_port();
  expect_common_refusals(cport, s[0]);
  auto bad_addr = s[0];
  bad_addr[3] = 0x7f;  // reserved bits 30:24
  expect_refused(cport, bad_addr, 1, "reserved bits");
  auto bad_count = s[0];
  bad_count[4] += 1;
  expect_refused(cport, bad_count, 1, "PCI functions, this machine has");
  // A BAR of another kind (I/O where the function has memory).
  auto bad_bar = s[0];
  size_t fn_at = 8;
  while (bad_bar[fn_at] != kFnSlot * 8) fn_at += 1 + 256 + 1;
  bad_bar[fn_at + 1 + pci::kBar0] |= 1;
  expect_refused(cport, bad_bar, 1, "other BARs");
  CHECK(!c.mmio.device_at(kBarMem));

  // PIIX3 and PM sections.
  expect_common_refusals(*c.p3, s[1]);
  auto bad_elcr = s[1];
  bad_elcr[0] = 0x01;  // IRQ 0 level-triggered
  expect_refused(*c.p3, bad_elcr, 1, "ELCR");
  expect_common_refusals(*c.pm, s[2]);
  auto bad_cnt = s[2];
  bad_cnt[5] |= 0x20;  // PM1_CNT high byte: SLP_EN
  expect_refused(*c.pm, bad_cnt, 1, "SLP_EN");
  CHECK(!c.isa[9] && !c.isa[11]);
}

// ---------------------------------------------------------------- fw_cfg, misc ports

void fw_select(FwCfg& f, uint16_t key) {
  uint8_t b[2] = {uint8_t(key), uint8_t(key >> 8)};
  f.write(FwCfg::kOffSelector, {b, 2});
}
uint8_t fw_byte(FwCfg& f) {
  uint8_t v = 0;
  f.read(FwCfg::kOffData, {&v, 1});
  return v;
}
std::vector<uint8_t> counting(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = uint8_t(i * 7 + 1);
  return v;
}

TEST(fw_cfg_round_trip_goes_on_reading_the_same_item) {
  FwCfg a(nullptr);
  uint16_t key = a.add_file("etc/vireo-test", counting(100));
  a.add_file("etc/other", counting(10));
  fw_select(a, key);
  for (int i = 0; i < 37; i++) fw_byte(a);
  auto bytes = save(a);
  FwCfg b(nullptr);  // built from the same configuration
  b.add_file("etc/vireo-test", counting(100));
  b.add_file("etc/other", counting(10));
  load(b, bytes, "fw_cfg");
  CHECK(save(b) == bytes);
  auto want = counting(100);
  for (int i = 37; i < 100; i++) CHECK_EQ(fw_byte(b), want[i]);
  CHECK_EQ(fw_byte(b), uint8_t(0));  // past the end
}

TEST(fw_cfg_refuses_an_item_of_another_size_and_bad_sections) {
  FwCfg a(nullptr);
  uint16_t key = a.add_file("etc/vireo-test", counting(100));
  fw_select(a, key);
  fw_byte(a);
  auto good = save(a);
  FwCfg b(nullptr);
  b.add_file("etc/vireo-test", counting(50));
  fw_select(b, FwCfg::kSignature);
  expect_refused(b, good, 1, "is 100 bytes in the state file and 50 bytes on this machine");
  CHECK_EQ(fw_byte(b), uint8_t('Q'));  // still on the signature, at its start
  FwCfg c(nullptr);
  c.add_file("etc/vireo-test", counting(100));
  expect_common_refusals(c, good);
  auto bad_sel = good;
  bad_sel[1] |= 0x40;  // the write flag
  expect_refused(c, bad_sel, 1, "write bit");
}

TEST(misc_ports_round_trip_keeps_the_post_code) {
  Bus pio;
  MiscPorts a;
  a.register_all(pio);
  uint8_t code = 0x42;
  pio.write(0x80, {&code, 1});
  auto bytes = save(a);
  MiscPorts b;
  Bus pio2;
  b.register_all(pio2);
  load(b, bytes, "misc-ports");
  CHECK(save(b) == bytes);
  uint8_t v = 0;
  pio2.read(0x80, {&v, 1});
  CHECK_EQ(v, uint8_t(0x42));
  CHECK(pio2.device_at(0x80)->state_kind() == Stateful::StateKind::None);  // saved by MiscPorts
  expect_common_refusals(b, bytes);
}

}  // namespace
