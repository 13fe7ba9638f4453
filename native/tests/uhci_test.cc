// The PIIX3 UHCI and the HID tablet without a vCPU: a driver's sequence
// poked through the controller's I/O registers and a schedule built in guest
// memory (frame list -> QH -> TDs), as Linux's uhci-hcd and usbhid drive it.
#include "devices/usb/hid_tablet.h"
#include "devices/usb/uhci.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <memory>
#include <vector>

#include "check.h"

using namespace vireo;
using namespace vireo::usb;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint16_t kIoBase = 0xc000;
constexpr uint32_t kFrameList = 0x10000, kQh = 0x20000, kTds = 0x21000, kBufs = 0x30000;
constexpr uint8_t kSetup = 0x2d, kIn = 0x69, kOut = 0xe1;

struct Rig {
  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory mem;
  Bus pio, mmio;
  pci::PciHost host{pio, mmio};
  int64_t now = 1'000'000'000;
  std::shared_ptr<Uhci> hc;
  std::shared_ptr<HidTablet> tab;
  bool irq = false;
  int irq_raises = 0;

  // real_time: the devices read the steady clock instead of `now`.
  explicit Rig(bool real_time = false) {
    mem.add_region(0, kRamSize, ram.data());
    host.route_intx = [this](int slot, int pin, bool level) {
      CHECK_EQ(slot, Uhci::kSlot);
      CHECK_EQ(pin, 4);  // INTD
      if (level && !irq) irq_raises++;
      irq = level;
    };
    std::function<int64_t()> clock = [this] { return now; };
    if (real_time) {
      clock = [] {
        return int64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
      };
    }
    hc = std::make_shared<Uhci>(&mem, clock);
    tab = std::make_shared<HidTablet>(clock);
    hc->attach(0, tab);
    host.attach(Uhci::kSlot, Uhci::kFn, hc);
    cfgw(pci::kBar0 + 4 * Uhci::kBar, 4, kIoBase);
    cfgw(pci::kCommand, 2, pci::kCmdIo | pci::kCmdMaster);
  }
  uint32_t cfgr(uint32_t reg, int size) { return host.config_read(0, Uhci::kSlot, Uhci::kFn, reg, size); }
  void cfgw(uint32_t reg, int size, uint32_t v) { host.config_write(0, Uhci::kSlot, Uhci::kFn, reg, size, v); }
  void outw(uint32_t off, uint16_t v) {
    uint8_t b[2];
    u64_to_span(v, b);
    pio.write(kIoBase + off, b);
  }
  void outl(uint32_t off, uint32_t v) {
    uint8_t b[4];
    u64_to_span(v, b);
    pio.write(kIoBase + off, b);
  }
  void outb(uint32_t off, uint8_t v) { pio.write(kIoBase + off, {&v, 1}); }
  uint16_t inw(uint32_t off) {
    uint8_t b[2];
    pio.read(kIoBase + off, b);
    return uint16_t(span_to_u64(b));
  }
  uint32_t inl(uint32_t off) {
    uint8_t b[4];
    pio.read(kIoBase + off, b);
    return uint32_t(span_to_u64(b));
  }
  uint32_t rd32(uint32_t a) {
    uint32_t v;
    std::memcpy(&v, &ram[a], 4);
    return v;
  }
  void wr32(uint32_t a, uint32_t v) { std::memcpy(&ram[a], &v, 4); }

  // What uhci-hcd does at start: reset, frame list of one QH everywhere, run.
  void start() {
    outw(Uhci::kUsbCmd, Uhci::kCmdHcReset);
    CHECK_EQ(inw(Uhci::kUsbCmd) & Uhci::kCmdHcReset, 0);
    for (uint32_t i = 0; i < 1024; i++) wr32(kFrameList + 4 * i, kQh | Uhci::kLinkQh);
    wr32(kQh, Uhci::kLinkT);
    wr32(kQh + 4, Uhci::kLinkT);
    outl(Uhci::kFlBaseAdd, kFrameList);
    outw(Uhci::kFrNum, 0);
    outw(Uhci::kUsbIntr, Uhci::kIntrTimeoutCrc | Uhci::kIntrResume | Uhci::kIntrIoc | Uhci::kIntrShort);
    outw(Uhci::kUsbCmd, Uhci::kCmdRs | Uhci::kCmdCf | Uhci::kCmdMaxP);
    CHECK_EQ(inw(Uhci::kUsbSts) & Uhci::kStsHalted, 0);
  }
  // Port reset then enable, as the root hub driver does.
  void reset_port(uint32_t reg = Uhci::kPortSc1) {
    outw(reg, Uhci::kPortPr);
    CHECK_EQ(inw(reg) & Uhci::kPortPe, 0);
    outw(reg, 0);
    outw(reg, Uhci::kPortPe);
    outw(reg, Uhci::kPortPe | Uhci::kPortCsc | Uhci::kPortPec);
  }
  static uint32_t token(uint8_t pid, uint8_t addr, uint8_t ep, bool toggle, size_t len) {
    uint32_t ml = len ? uint32_t(len - 1) : 0x7ff;
    return pid | uint32_t(addr) << 8 | uint32_t(ep) << 15 | uint32_t(toggle) << 19 | ml << 21;
  }
  // A TD at kTds + 32*i; `next` < 0 ends the queue.
  uint32_t td(int i, int next, uint32_t ctrl, uint32_t tok, uint32_t buf) {
    uint32_t a = kTds + 32 * uint32_t(i);
    wr32(a, next < 0 ? Uhci::kLinkT : (kTds + 32 * uint32_t(next)) | Uhci::kLinkVf);
    wr32(a + 4, ctrl);
    wr32(a + 8, tok);
    wr32(a + 12, buf);
    return a;
  }
  void frames(int n) {
    for (int i = 0; i < n; i++) hc->run_frame();
  }

  struct Result {
    bool stalled = false, timeout = false;
    Bytes data;
  };
  // A control transfer at `addr` the way uhci-hcd queues one: SETUP, IN data
  // packets (short packet detect on), status; all depth first under the QH.
  // A short IN packet stops the queue; the driver then points the QH at the
  // status TD, as uhci-hcd's fixup does.
  Result control(uint8_t addr, Bytes setup, size_t in_len = 0) {
    const uint32_t act = Uhci::kTdActive | 3u << Uhci::kTdCerrShift;
    std::memcpy(&ram[kBufs], setup.data(), 8);
    int n = 0;
    td(n, n + 1, act, token(kSetup, addr, 0, false, 8), kBufs);
    n++;
    bool toggle = true;
    for (size_t off = 0; off < in_len; off += 64) {
      size_t l = std::min<size_t>(64, in_len - off);
      td(n, n + 1, act | Uhci::kTdSpd, token(kIn, addr, 0, toggle, l), kBufs + 0x100 + uint32_t(off));
      toggle = !toggle;
      n++;
    }
    int status = n;
    td(status, -1, act | Uhci::kTdIoc, token(in_len ? kOut : kIn, addr, 0, true, 0), 0);
    wr32(kQh + 4, kTds);
    Result r;
    for (int f = 0; f < 20 && !(rd32(kQh + 4) & Uhci::kLinkT); f++) {
      frames(1);
      if (rd32(kQh + 4) & Uhci::kLinkT) break;
      uint32_t e = rd32(kQh + 4) & Uhci::kLinkAddr;
      uint32_t st = rd32(e + 4);
      if (st & Uhci::kTdActive) continue;
      if (st & Uhci::kTdStalled) r.stalled = true;
      if (st & Uhci::kTdCrcTimeout) r.timeout = true;
      if (r.stalled || r.timeout) break;
      if (e != kTds + 32 * uint32_t(status)) wr32(kQh + 4, kTds + 32 * uint32_t(status));  // short packet fixup
    }
    if (r.stalled || r.timeout) {
      wr32(kQh + 4, Uhci::kLinkT);
      return r;
    }
    CHECK(rd32(kQh + 4) & Uhci::kLinkT);
    for (int i = 1; i < status; i++) {
      uint32_t st = rd32(kTds + 32 * uint32_t(i) + 4);
      if (st & Uhci::kTdActive) break;
      uint32_t al = st & Uhci::kTdActLen;
      size_t got = al == 0x7ff ? 0 : al + 1;
      uint32_t buf = rd32(kTds + 32 * uint32_t(i) + 12);
      r.data.insert(r.data.end(), ram.begin() + buf, ram.begin() + buf + got);
      if (got < 64) break;
    }
    return r;
  }
  Bytes get_descriptor(uint8_t addr, uint8_t type, uint8_t idx, uint16_t len, uint8_t rt = 0x80) {
    auto r = control(addr, {rt, 6, idx, type, 0, 0, uint8_t(len), uint8_t(len >> 8)}, len);
    CHECK(!r.stalled && !r.timeout);
    return r.data;
  }
  // Through SET_CONFIGURATION at address 1.
  void enumerate() {
    start();
    reset_port();
    get_descriptor(0, 1, 0, 64);
    CHECK(!control(0, {0x00, 5, 1, 0, 0, 0, 0, 0}).stalled);  // SET_ADDRESS 1
    CHECK(!control(1, {0x00, 9, 1, 0, 0, 0, 0, 0}).stalled);  // SET_CONFIGURATION 1
  }
  // An interrupt IN TD for endpoint 1 at address 1, the queue under the QH.
  uint32_t poll_td(bool toggle) {
    std::memset(&ram[kBufs + 0x800], 0xee, 16);
    uint32_t a = td(40, -1, Uhci::kTdActive | Uhci::kTdIoc | Uhci::kTdSpd | 3u << Uhci::kTdCerrShift,
                    token(kIn, 1, 1, toggle, 8), kBufs + 0x800);
    wr32(kQh + 4, a);
    return a;
  }
};

}  // namespace

TEST(pci_identity_and_legsup) {
  Rig r;
  CHECK_EQ(r.cfgr(pci::kVendorId, 2), 0x8086u);
  CHECK_EQ(r.cfgr(pci::kDeviceId, 2), 0x7020u);
  CHECK_EQ(r.cfgr(pci::kClassProg, 1), 0x00u);
  CHECK_EQ(r.cfgr(pci::kClassProg + 1, 2), 0x0c03u);
  CHECK_EQ(r.cfgr(pci::kIntPin, 1), 4u);
  CHECK_EQ(r.cfgr(Uhci::kSbrn, 1), 0x10u);
  // BAR4 is 32 bytes of I/O.
  r.cfgw(pci::kCommand, 2, 0);
  r.cfgw(pci::kBar0 + 16, 4, 0xffffffff);
  CHECK_EQ(r.cfgr(pci::kBar0 + 16, 4) & 0xffff, 0xffe1u);
  // USBLEGSUP: 0x2000 after power-on; SeaBIOS writes 0x8f00 (clear the SMI
  // status bits, PIRQ off), Linux writes 0x2000 back.
  CHECK_EQ(r.cfgr(Uhci::kLegSup, 2), 0x2000u);
  r.cfgw(Uhci::kLegSup, 2, 0x8f00);
  CHECK_EQ(r.cfgr(Uhci::kLegSup, 2), 0x0000u);
  r.cfgw(Uhci::kLegSup, 2, 0x20bf);
  CHECK_EQ(r.cfgr(Uhci::kLegSup, 2), 0x20bfu);
  r.host.reset_all();
  CHECK_EQ(r.cfgr(Uhci::kLegSup, 2), 0x2000u);
}

TEST(registers_after_reset) {
  Rig r;
  CHECK_EQ(r.inw(Uhci::kUsbSts), Uhci::kStsHalted);
  CHECK_EQ(r.inw(Uhci::kUsbCmd), 0);
  CHECK_EQ(r.inw(Uhci::kSofMod) & 0xff, 64);
  // Port 1: device connected (full speed: D+ high), change flagged; port 2 empty.
  CHECK_EQ(r.inw(Uhci::kPortSc1), Uhci::kPortCcs | Uhci::kPortCsc | Uhci::kPortAlways1 | Uhci::kPortDPlus);
  CHECK_EQ(r.inw(Uhci::kPortSc2), Uhci::kPortAlways1);
  CHECK_EQ(r.inw(0x14), 0);  // no third port (Linux counts ports by bit 7)
  // CSC is write-1-to-clear; a byte write to the high half leaves it alone.
  r.outb(Uhci::kPortSc1 + 1, 0);
  CHECK(r.inw(Uhci::kPortSc1) & Uhci::kPortCsc);
  r.outw(Uhci::kPortSc1, Uhci::kPortCsc);
  CHECK_EQ(r.inw(Uhci::kPortSc1) & Uhci::kPortCsc, 0);
  // FRNUM and FLBASEADD while halted; FLBASEADD keeps bits 31:12 only.
  r.outw(Uhci::kFrNum, 0x7ff);
  CHECK_EQ(r.inw(Uhci::kFrNum), 0x7ff);
  r.outl(Uhci::kFlBaseAdd, 0x12345fff);
  CHECK_EQ(r.inl(Uhci::kFlBaseAdd), 0x12345000u);
  r.outb(Uhci::kSofMod, 0x40 + 5);
  CHECK_EQ(r.inw(Uhci::kSofMod) & 0xff, 0x45);
  // Running: FRNUM is read-only, HCHalted clear; stopping sets it again.
  r.outl(Uhci::kFlBaseAdd, kFrameList);
  r.outw(Uhci::kUsbCmd, Uhci::kCmdRs);
  CHECK_EQ(r.inw(Uhci::kUsbSts) & Uhci::kStsHalted, 0);
  r.outw(Uhci::kFrNum, 5);
  CHECK_EQ(r.inw(Uhci::kFrNum), 0x7ff);
  r.outw(Uhci::kUsbCmd, 0);
  CHECK_EQ(r.inw(Uhci::kUsbSts), Uhci::kStsHalted);
  // HCRESET clears itself and puts everything back.
  r.outw(Uhci::kUsbCmd, Uhci::kCmdHcReset);
  CHECK_EQ(r.inw(Uhci::kUsbCmd), 0);
  CHECK_EQ(r.inw(Uhci::kFrNum), 0);
  CHECK_EQ(r.inl(Uhci::kFlBaseAdd), 0u);
  CHECK(r.inw(Uhci::kPortSc1) & Uhci::kPortCsc);
  // GRESET holds until cleared.
  r.outw(Uhci::kUsbCmd, Uhci::kCmdGReset);
  CHECK_EQ(r.inw(Uhci::kUsbCmd), Uhci::kCmdGReset);
  r.outw(Uhci::kUsbCmd, 0);
  CHECK_EQ(r.inw(Uhci::kUsbCmd), 0);
}

TEST(port_reset_and_enable) {
  Rig r;
  // Enabling an empty port does nothing.
  r.outw(Uhci::kPortSc2, Uhci::kPortPe);
  CHECK_EQ(r.inw(Uhci::kPortSc2) & Uhci::kPortPe, 0);
  r.outw(Uhci::kPortSc1, Uhci::kPortPe);
  CHECK(r.inw(Uhci::kPortSc1) & Uhci::kPortPe);
  // Reset: port disabled, line in SE0, until software ends it and enables.
  r.outw(Uhci::kPortSc1, Uhci::kPortPr);
  uint16_t v = r.inw(Uhci::kPortSc1);
  CHECK(v & Uhci::kPortPr);
  CHECK_EQ(v & (Uhci::kPortPe | Uhci::kPortDPlus | Uhci::kPortDMinus), 0);
  r.outw(Uhci::kPortSc1, 0);
  r.outw(Uhci::kPortSc1, Uhci::kPortPe);
  v = r.inw(Uhci::kPortSc1);
  CHECK(v & Uhci::kPortPe);
  CHECK(v & Uhci::kPortDPlus);
  CHECK_EQ(v & Uhci::kPortLsda, 0);  // full speed
}

TEST(enumeration_and_tablet_reports) {
  Rig r;
  r.start();
  r.reset_port();
  // GET_DESCRIPTOR(device) at address 0, 64 bytes asked: 18 come back, short.
  Bytes dd = r.get_descriptor(0, 1, 0, 64);
  CHECK_EQ(dd, HidTablet::device_descriptor());
  CHECK_EQ(dd.size(), size_t(18));
  CHECK(r.hc->counters().tds >= 3);
  // Short packet and IOC: USBINT with the interrupt line up; cleared by W1C.
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsUsbInt);
  CHECK(r.irq);
  r.outw(Uhci::kUsbSts, Uhci::kStsUsbInt);
  CHECK(!r.irq);
  CHECK_EQ(r.inw(Uhci::kUsbSts) & Uhci::kStsUsbInt, 0);

  // SET_ADDRESS 7: address 0 stops answering (a time-out), 7 answers.
  CHECK(!r.control(0, {0x00, 5, 7, 0, 0, 0, 0, 0}).stalled);
  CHECK_EQ(r.tab->address(), 7);
  auto gone = r.control(0, {0x80, 6, 0, 1, 0, 0, 18, 0}, 18);
  CHECK(gone.timeout);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsError);
  r.outw(Uhci::kUsbSts, Uhci::kStsError | Uhci::kStsUsbInt);
  CHECK(!r.irq);
  CHECK(!r.control(7, {0x00, 5, 1, 0, 0, 0, 0, 0}).stalled);  // and back to 1 for the rest

  // Configuration descriptor: 9 bytes first, then wTotalLength.
  Bytes c9 = r.get_descriptor(1, 2, 0, 9);
  CHECK_EQ(c9.size(), size_t(9));
  uint16_t total = uint16_t(c9[2] | c9[3] << 8);
  Bytes cfg = r.get_descriptor(1, 2, 0, total);
  CHECK_EQ(cfg, HidTablet::config_descriptor());
  // Strings: language IDs, then the product name in UTF-16LE.
  CHECK_EQ(r.get_descriptor(1, 3, 0, 255), (Bytes{4, 3, 0x09, 0x04}));
  Bytes prod = r.get_descriptor(1, 3, 2, 255);
  CHECK_EQ(prod.size(), size_t(2 + 2 * 16));
  CHECK_EQ(prod[2], 'V');
  // The report descriptor, from the interface, 128 bytes asked (longer than 64: two packets).
  Bytes rep = r.get_descriptor(1, 0x22, 0, 128, 0x81);
  auto want = HidTablet::report_descriptor();
  CHECK_EQ(rep, Bytes(want.begin(), want.end()));
  // Not yet configured: the interrupt endpoint stalls.
  uint32_t t = r.poll_td(false);
  r.frames(1);
  CHECK(r.rd32(t + 4) & Uhci::kTdStalled);
  r.outw(Uhci::kUsbSts, 0x1f);
  CHECK(!r.tab->configured());
  CHECK(!r.control(1, {0x00, 9, 1, 0, 0, 0, 0, 0}).stalled);  // SET_CONFIGURATION 1
  CHECK(r.tab->configured());
  CHECK_EQ(r.control(1, {0x80, 8, 0, 0, 0, 0, 1, 0}, 1).data, Bytes{1});  // GET_CONFIGURATION
  CHECK(!r.control(1, {0x21, 0x0a, 0, 0, 0, 0, 0, 0}).stalled);  // SET_IDLE 0
  CHECK(!r.control(1, {0x21, 0x0b, 1, 0, 0, 0, 0, 0}).stalled);  // SET_PROTOCOL report
  CHECK(!r.tab->active());

  // Interrupt polling: the first poll after configuration reports the pointer
  // (at the origin); then NAK until it moves.
  r.outw(Uhci::kUsbSts, 0x1f);
  CHECK(!r.irq);
  int raises = r.irq_raises;
  t = r.poll_td(false);
  r.frames(1);
  CHECK_EQ(r.rd32(t + 4) & Uhci::kTdActive, 0u);
  CHECK_EQ(r.rd32(t + 4) & Uhci::kTdActLen, 6u);
  CHECK_EQ(Bytes(r.ram.begin() + kBufs + 0x800, r.ram.begin() + kBufs + 0x807), (Bytes{0, 0, 0, 0, 0, 0, 0}));
  CHECK(r.tab->active());
  CHECK_EQ(r.irq_raises, raises + 1);  // IOC
  r.outw(Uhci::kUsbSts, Uhci::kStsUsbInt);
  t = r.poll_td(true);
  r.frames(5);
  uint32_t st = r.rd32(t + 4);
  CHECK(st & Uhci::kTdActive);
  CHECK(st & Uhci::kTdNak);
  CHECK_EQ(r.rd32(kQh + 4), t);  // the queue did not advance
  CHECK(!r.irq);
  // The pointer moves: the next poll returns exactly the latest state
  // (positions coalesce while the buttons stay).
  r.tab->pointer(100, 200, HidTablet::kLeft | HidTablet::kMiddle, 0);
  r.tab->pointer(0x1234, 0x7fff, HidTablet::kLeft | HidTablet::kMiddle, -2, 1);
  r.frames(1);
  st = r.rd32(t + 4);
  CHECK_EQ(st & Uhci::kTdActive, 0u);
  CHECK_EQ(st & Uhci::kTdActLen, 6u);  // 7 bytes
  CHECK_EQ(Bytes(r.ram.begin() + kBufs + 0x800, r.ram.begin() + kBufs + 0x808),
           (Bytes{0x05, 0x34, 0x12, 0xff, 0x7f, 0xfe, 0x01, 0xee}));
  CHECK_EQ(r.rd32(kQh + 4), t);  // short packet (7 of 8 bytes): the queue stops there
  CHECK(r.irq);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsUsbInt);
  // GET_REPORT returns the same state (wheel steps already sent).
  CHECK_EQ(r.control(1, {0xa1, 0x01, 0, 1, 0, 0, 7, 0}, 7).data, (Bytes{0x05, 0x34, 0x12, 0xff, 0x7f, 0, 0}));
  // The tablet stops counting as active a second after the last poll.
  r.now += 2'000'000'000;
  CHECK(!r.tab->active());
}

// A click shorter than the polling interval (press and release between two
// polls, as a fast click or a busy guest gives) is still a press and a
// release: button changes are queued, positions in between coalesce.
TEST(press_and_release_between_polls_are_separate_reports) {
  Rig r;
  r.enumerate();
  r.tab->pointer(10, 20, 0, 0);
  r.tab->pointer(11, 21, 0, 0);                  // coalesces with the move before
  r.tab->pointer(11, 21, HidTablet::kLeft, 0);   // press: the move is a report of its own
  r.tab->pointer(12, 22, HidTablet::kLeft, 1);   // a drag step with a wheel step: merges into the press
  r.tab->pointer(12, 22, 0, 0);                  // release
  CHECK_EQ(r.tab->current_report(), (Bytes{0, 11, 0, 21, 0, 0, 0}));
  std::vector<Bytes> got;
  for (int i = 0; i < 5; i++) {
    uint32_t t = r.poll_td(i & 1);
    r.frames(1);
    if (r.rd32(t + 4) & Uhci::kTdActive) break;
    got.emplace_back(r.ram.begin() + kBufs + 0x800, r.ram.begin() + kBufs + 0x807);
  }
  CHECK_EQ(got.size(), size_t(3));
  CHECK_EQ(got[0], (Bytes{0, 11, 0, 21, 0, 0, 0}));
  CHECK_EQ(got[1], (Bytes{1, 12, 0, 22, 0, 1, 0}));
  CHECK_EQ(got[2], (Bytes{0, 12, 0, 22, 0, 0, 0}));
  // A flood of clicks the guest never takes is bounded: kQueueMax reports, then the latest state.
  for (int i = 0; i < 100; i++) r.tab->pointer(i, i, uint8_t(i & 1), 0);
  int reports = 0;
  Bytes last;
  for (int i = 0; i < 40; i++) {
    uint32_t t = r.poll_td(i & 1);
    r.frames(1);
    if (r.rd32(t + 4) & Uhci::kTdActive) break;
    reports++;
    last.assign(r.ram.begin() + kBufs + 0x800, r.ram.begin() + kBufs + 0x807);
  }
  CHECK_EQ(reports, int(HidTablet::kQueueMax) + 1);
  CHECK_EQ(last, (Bytes{1, 99, 0, 99, 0, 0, 0}));
}

// A guest that configured the tablet and then stops polling it (issue 14, bad
// input) while the host sends 100,000 moves, 2,000 clicks and 100,000 wheel
// steps: the device holds at most kQueueMax reports for button changes (later
// ones merge, counted) and one pending state; the wheel's pending steps are
// bounded. Polling again gives the queued clicks in order, then the latest state.
TEST(a_guest_that_stops_polling_keeps_the_tablet_bounded) {
  Rig r;
  r.enumerate();
  const int kMoves = 100000, kClicks = 2000;
  for (int i = 0; i < kMoves; i++) r.tab->pointer(i % 32768, (i * 7) % 32768, 0, 1, -1);
  for (int i = 0; i < kClicks; i++) r.tab->pointer(100, 200, uint8_t(i & 1 ? 0 : HidTablet::kLeft), 0);
  r.tab->pointer(300, 400, 0, 0);
  CHECK_EQ(r.tab->merged_clicks(), uint64_t(kClicks) - HidTablet::kQueueMax);
  std::printf("  %llu of %d button changes merged, at most %zu reports held\n", (unsigned long long)r.tab->merged_clicks(),
              kClicks, HidTablet::kQueueMax);
  std::vector<Bytes> got;
  for (int i = 0; i < 100; i++) {
    uint32_t t = r.poll_td(i & 1);
    r.frames(1);
    if (r.rd32(t + 4) & Uhci::kTdActive) break;
    got.emplace_back(r.ram.begin() + kBufs + 0x800, r.ram.begin() + kBufs + 0x807);
  }
  // kQueueMax queued states, then the pending state, plus the reports that carry
  // the wheel's remaining steps (1,000 at most, 127 a report).
  CHECK(got.size() >= HidTablet::kQueueMax + 1);
  CHECK(got.size() <= HidTablet::kQueueMax + 1 + 1000 / 127 + 1);
  // The first queued report ends the wheel flood: the last move, +127 steps.
  int x0 = (kMoves - 1) % 32768;
  CHECK_EQ(got[0][1] | (got[0][2] << 8), x0);
  CHECK_EQ(int8_t(got[0][5]), int8_t(127));
  CHECK_EQ(int8_t(got[0][6]), int8_t(-127));
  // Then presses and releases alternate at (100, 200).
  for (size_t i = 1; i < HidTablet::kQueueMax; i++) {
    CHECK_EQ(got[i][0], uint8_t(i & 1 ? HidTablet::kLeft : 0));
    CHECK_EQ(got[i][1] | (got[i][2] << 8), 100);
  }
  CHECK_EQ(got.back()[0], uint8_t(0));
  CHECK_EQ(got.back()[1] | (got.back()[2] << 8), 300);
  CHECK_EQ(got.back()[3] | (got.back()[4] << 8), 400);
  int wheel = 0;
  for (auto& g : got) wheel += int8_t(g[5]);
  CHECK(wheel <= 1000);
  CHECK(wheel > 127);
  // Idle again: nothing more to report.
  uint32_t t = r.poll_td(got.size() & 1);
  r.frames(1);
  CHECK(r.rd32(t + 4) & Uhci::kTdActive);
}

TEST(wheel_steps_carry_over_127) {
  Rig r;
  r.enumerate();
  r.tab->pointer(1, 1, 0, 300);
  std::vector<int8_t> wheel;
  for (int i = 0; i < 4; i++) {
    uint32_t t = r.poll_td(i & 1);
    r.frames(1);
    if (r.rd32(t + 4) & Uhci::kTdActive) break;
    wheel.push_back(int8_t(r.ram[kBufs + 0x800 + 5]));
  }
  CHECK_EQ(wheel, (std::vector<int8_t>{127, 127, 46}));
}

TEST(requests_a_tablet_cannot_do_stall) {
  Rig r;
  r.enumerate();
  // Device qualifier: a full-speed-only device stalls it (USB 2.0 9.6.2).
  auto q = r.control(1, {0x80, 6, 0, 6, 0, 0, 10, 0}, 10);
  CHECK(q.stalled);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsError);
  CHECK(r.irq);  // time-out/CRC interrupt enable covers errors
  r.outw(Uhci::kUsbSts, 0x1f);
  CHECK(r.control(1, {0x00, 9, 2, 0, 0, 0, 0, 0}).stalled);  // no configuration 2
  CHECK(r.control(1, {0xa1, 0x01, 0, 3, 0, 0, 7, 0}, 7).stalled);  // no feature report
  CHECK(r.control(1, {0x80, 6, 9, 3, 0, 0, 255, 0}, 255).stalled);  // no string 9
  // The device still works after stalls.
  CHECK_EQ(r.get_descriptor(1, 1, 0, 18), HidTablet::device_descriptor());
}

TEST(no_device_times_out_after_the_error_count) {
  Rig r;
  r.start();
  r.reset_port();
  uint32_t t = r.td(0, -1, Uhci::kTdActive | Uhci::kTdIoc | 2u << Uhci::kTdCerrShift, Rig::token(kIn, 9, 0, false, 8), kBufs);
  r.wr32(kQh + 4, t);
  r.frames(1);
  CHECK(r.rd32(t + 4) & Uhci::kTdActive);
  CHECK(r.rd32(t + 4) & Uhci::kTdCrcTimeout);
  CHECK(!r.irq);
  r.frames(1);
  CHECK_EQ(r.rd32(t + 4) & (Uhci::kTdActive | Uhci::kTdCerrMask), 0u);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsError);
  CHECK(r.irq);
  // A disabled port hides the device too.
  r.outw(Uhci::kUsbSts, 0x1f);
  r.outw(Uhci::kPortSc1, 0);
  auto x = r.control(0, {0x80, 6, 0, 1, 0, 0, 18, 0}, 18);
  CHECK(x.timeout);
}

TEST(schedule_loops_end_the_frame) {
  Rig r;
  r.start();
  // A QH whose horizontal link is itself, with a NAKing TD under it... no
  // device at 9 either: nothing retires, so the revisit ends the frame.
  r.wr32(kQh, kQh | Uhci::kLinkQh);
  r.td(0, -1, Uhci::kTdActive, Rig::token(kIn, 9, 0, false, 8), kBufs);
  r.wr32(kQh + 4, kTds);
  uint16_t f0 = r.inw(Uhci::kFrNum);
  r.frames(3);
  CHECK_EQ(r.inw(Uhci::kFrNum), uint16_t(f0 + 3));
  CHECK_EQ(r.hc->counters().qh_loops, 3u);
  CHECK_EQ(r.inw(Uhci::kUsbSts) & Uhci::kStsHalted, 0);
  // A TD in the frame list linking to itself: the link budget ends it.
  for (uint32_t i = 0; i < 1024; i++) r.wr32(kFrameList + 4 * i, kTds + 64);
  r.wr32(kTds + 64, kTds + 64);
  r.wr32(kTds + 68, 0);
  r.frames(2);
  CHECK_EQ(r.hc->counters().link_budget, 2u);
  CHECK_EQ(r.inw(Uhci::kFrNum), uint16_t(f0 + 5));
  // Two QHs linking to each other: same as one.
  for (uint32_t i = 0; i < 1024; i++) r.wr32(kFrameList + 4 * i, kQh | Uhci::kLinkQh);
  r.wr32(kQh, (kQh + 16) | Uhci::kLinkQh);
  r.wr32(kQh + 16, kQh | Uhci::kLinkQh);
  r.wr32(kQh + 20, Uhci::kLinkT);
  r.frames(1);
  CHECK_EQ(r.hc->counters().qh_loops, 4u);
}

TEST(links_outside_ram_halt_with_a_host_system_error) {
  Rig r;
  r.start();
  for (uint32_t i = 0; i < 1024; i++) r.wr32(kFrameList + 4 * i, 0xfff00000u | Uhci::kLinkQh);
  r.frames(1);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHse);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHalted);
  CHECK_EQ(r.inw(Uhci::kUsbCmd) & Uhci::kCmdRs, 0);
  CHECK(r.irq);
  CHECK_EQ(r.hc->counters().bad_memory, 1u);
  r.frames(3);  // halted: nothing more
  CHECK_EQ(r.hc->counters().frames, 1u);
  // The frame list itself outside RAM.
  r.outw(Uhci::kUsbSts, 0x1f);
  CHECK(!r.irq);
  r.outl(Uhci::kFlBaseAdd, 0xfffff000u);
  r.outw(Uhci::kUsbCmd, Uhci::kCmdRs);
  r.frames(1);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHse);
  CHECK_EQ(r.hc->counters().bad_memory, 2u);
  // An IN buffer outside RAM.
  r.start();
  r.reset_port();
  r.td(0, -1, Uhci::kTdActive, Rig::token(kSetup, 0, 0, false, 8), 0xffffff00u);
  r.wr32(kQh + 4, kTds);
  r.frames(1);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHse);
  CHECK_EQ(r.hc->counters().bad_memory, 3u);
}

TEST(illegal_length_is_a_process_error) {
  Rig r;
  r.start();
  r.reset_port();
  // MaxLen 0x500 (1281 bytes) is illegal; 0x7ff (null) is not.
  r.td(0, -1, Uhci::kTdActive, kIn | 0x500u << 21, kBufs);
  r.wr32(kQh + 4, kTds);
  r.frames(1);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHcpe);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHalted);
  CHECK(r.irq);
  CHECK_EQ(r.hc->counters().bad_tds, 1u);
  // A PID that is none of SETUP/IN/OUT.
  r.start();
  r.reset_port();
  r.td(0, -1, Uhci::kTdActive, 0x7ffu << 21 | 0xa5, kBufs);
  r.wr32(kQh + 4, kTds);
  r.frames(1);
  CHECK(r.inw(Uhci::kUsbSts) & Uhci::kStsHcpe);
  CHECK_EQ(r.hc->counters().bad_tds, 2u);
}

TEST(frames_coalesce_when_the_timer_is_late) {
  Rig r;
  r.start();
  uint16_t f0 = r.inw(Uhci::kFrNum);
  CHECK_EQ(r.hc->run_due(r.now), 0);  // the first frame ends 1 ms after RS
  r.now += 3 * Uhci::kFrameNs;
  CHECK_EQ(r.hc->run_due(r.now), 3);
  CHECK_EQ(r.inw(Uhci::kFrNum), uint16_t(f0 + 3));
  r.now += 100 * Uhci::kFrameNs;
  CHECK_EQ(r.hc->run_due(r.now), Uhci::kMaxCatchUp);
  CHECK_EQ(r.inw(Uhci::kFrNum), uint16_t(f0 + 103));
  CHECK_EQ(r.hc->counters().frames_skipped, uint64_t(100 - Uhci::kMaxCatchUp));
  // FRNUM wraps at 11 bits.
  r.now += 2000 * Uhci::kFrameNs;
  r.hc->run_due(r.now);
  CHECK_EQ(r.inw(Uhci::kFrNum), uint16_t((f0 + 2103) & 0x7ff));
  // Stopped: no frames.
  r.outw(Uhci::kUsbCmd, 0);
  r.now += 10 * Uhci::kFrameNs;
  CHECK_EQ(r.hc->run_due(r.now), 0);
}

TEST(the_frame_thread_runs_the_schedule) {
  // Real time: while RS is set the controller's own thread runs frames (and
  // the interrupt poll answers without anyone calling run_frame).
  Rig r(true);
  auto& hc = r.hc;
  auto& tab = r.tab;
  r.enumerate();  // the test's own frames, before the thread runs any
  hc->start_thread();
  uint32_t t = r.poll_td(false);
  tab->pointer(5, 6, 0, 0);
  for (int i = 0; i < 200 && (r.rd32(t + 4) & Uhci::kTdActive); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK_EQ(r.rd32(t + 4) & Uhci::kTdActive, 0u);
  CHECK_EQ(r.ram[kBufs + 0x801], 5);
  uint64_t f = hc->counters().frames;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(hc->counters().frames > f + 10);  // about 50: the thread keeps time
  r.outw(Uhci::kUsbCmd, 0);
  f = hc->counters().frames;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_EQ(hc->counters().frames, f);
  hc->stop_thread();
}

TEST(descriptors_follow_the_usb_and_hid_rules) {
  Bytes d = HidTablet::device_descriptor();
  CHECK_EQ(d.size(), size_t(18));
  CHECK_EQ(d[0], 18);
  CHECK_EQ(d[1], 1);
  CHECK(d[7] == 8 || d[7] == 16 || d[7] == 32 || d[7] == 64);  // full-speed ep0 sizes
  CHECK_EQ(d[17], 1);
  Bytes c = HidTablet::config_descriptor();
  CHECK_EQ(size_t(c[2] | c[3] << 8), c.size());
  // Walk the descriptors: lengths add up, one interface with one endpoint.
  int interfaces = 0, endpoints = 0, hids = 0;
  size_t report_len = 0;
  for (size_t o = 0; o < c.size();) {
    CHECK(c[o] >= 2 && o + c[o] <= c.size());
    if (c[o + 1] == 4) {
      interfaces++;
      CHECK_EQ(c[o + 5], 3);  // HID class
      CHECK_EQ(c[o + 4], 1);  // one endpoint
    }
    if (c[o + 1] == 0x21) {
      hids++;
      CHECK_EQ(c[o + 6], 0x22);
      report_len = size_t(c[o + 7] | c[o + 8] << 8);
    }
    if (c[o + 1] == 5) {
      endpoints++;
      CHECK_EQ(c[o + 0], 7);
      CHECK_EQ(c[o + 2], 0x81);
      CHECK_EQ(c[o + 3] & 3, 3);  // interrupt
      CHECK(size_t(c[o + 4]) >= HidTablet::kReportLen);
    }
    o += c[o];
  }
  CHECK_EQ(c[4], interfaces);
  CHECK_EQ(interfaces, 1);
  CHECK_EQ(endpoints, 1);
  CHECK_EQ(hids, 1);
  auto rd = HidTablet::report_descriptor();
  CHECK_EQ(report_len, rd.size());
  // Parse the report descriptor's items (HID 1.11 6.2.2.2): sizes fit,
  // collections balance, and the Input items add up to the report length.
  int depth = 0, max_depth = 0;
  uint32_t size = 0, count = 0, input_bits = 0;
  int32_t lmin = 0, lmax = 0;
  bool xy_abs_range_ok = false;
  uint32_t last_usage = 0;
  for (size_t o = 0; o < rd.size();) {
    uint8_t p = rd[o];
    CHECK(p != 0xfe);  // no long items
    size_t n = (p & 3) == 3 ? 4 : (p & 3);
    CHECK(o + 1 + n <= rd.size());
    uint32_t u = 0;
    for (size_t i = 0; i < n; i++) u |= uint32_t(rd[o + 1 + i]) << (8 * i);
    int32_t sv = n == 1 ? int8_t(u) : n == 2 ? int16_t(u) : int32_t(u);
    switch (p & 0xfc) {
      case 0xa0: depth++; max_depth = std::max(max_depth, depth); break;  // Collection
      case 0xc0: depth--; CHECK(depth >= 0); break;                    // End Collection
      case 0x74: size = u; break;                                       // Report Size
      case 0x94: count = u; break;                                      // Report Count
      case 0x14: lmin = sv; break;                                      // Logical Minimum
      case 0x24: lmax = sv; break;                                      // Logical Maximum
      case 0x08: last_usage = u; break;                                 // Usage
      case 0x80:                                                        // Input
        input_bits += size * count;
        if (last_usage == 0x31 && !(u & 4)) xy_abs_range_ok = lmin == 0 && lmax == HidTablet::kMaxCoord && size == 16;
        break;
      default: break;
    }
    o += 1 + n;
  }
  CHECK_EQ(depth, 0);
  CHECK_EQ(max_depth, 2);
  CHECK_EQ(input_bits, uint32_t(8 * HidTablet::kReportLen));
  CHECK(xy_abs_range_ok);
  // Strings: bLength matches, type 3.
  for (uint8_t i = 0; i <= 3; i++) {
    Bytes s = HidTablet::string_descriptor(i);
    CHECK_EQ(size_t(s[0]), s.size());
    CHECK_EQ(s[1], 3);
  }
  CHECK(HidTablet::string_descriptor(4).empty());
}
