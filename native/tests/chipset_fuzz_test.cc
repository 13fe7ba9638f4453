// Random port, config-space and host-input traffic against every chipset
// device at once, wired roughly as the board does. Asserts nothing crashes
// (run it under ASan/UBSan for the full value) and that state stays sane.
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "check.h"
#include "devices/fw_cfg.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/misc_ports.h"
#include "devices/pci/i440fx.h"
#include "devices/pci/piix3.h"
#include "devices/pci/piix4_pm.h"

using namespace vireo;
using namespace vireo::pci;

namespace {

struct Regs : IoDevice {
  uint8_t mem[256]{};
  void read(uint64_t off, std::span<uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) d[i] = mem[(off + i) & 0xff];
  }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) mem[(off + i) & 0xff] = d[i];
  }
};

struct Nic : PciFunction {
  Nic() {
    set_ids(0x1af4, 0x1000, 0x020000);
    add_bar(0, 0x20, BarKind::Io, std::make_shared<Regs>());
    add_bar(1, 0x1000, BarKind::Mem32, std::make_shared<Regs>());
    add_bar(4, 0x4000, BarKind::Mem64Prefetch, std::make_shared<Regs>());
    set_rom(std::vector<uint8_t>(4096, 0x55));
    set_interrupt_pin(1);
    add_capability(0x11, 12);
  }
};

struct Board {
  Bus pio, mmio;
  PciHost host{pio, mmio};
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20, 0);
  GuestMemory mem;
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(1'000'000'000);
  bool isa_level[16] = {};
  int resets = 0, poweroffs = 0;
  std::shared_ptr<I440fx> nb;
  std::shared_ptr<Piix3> isa;
  std::shared_ptr<Piix4Pm> pm;
  std::shared_ptr<Nic> nic;
  std::shared_ptr<FwCfg> fw;
  std::shared_ptr<I8042> kbd;
  std::shared_ptr<CmosRtc> rtc;
  std::shared_ptr<MiscPorts> misc;
  std::string debug;

  Board() {
    mem.add_region(0, ram.size(), ram.data());
    nb = std::make_shared<I440fx>();
    isa = std::make_shared<Piix3>(host, Piix3::Callbacks{[this](int irq, bool l) { isa_level[irq] = l; },
                                                          [this] { resets++; }, nullptr, nullptr});
    pm = std::make_shared<Piix4Pm>(IrqLine([this](bool l) { isa->external_irq(9, Piix3::kSrcSci, l); }),
                                   [n = now] { return n->load(); },
                                   Piix4Pm::Callbacks{[this] { poweroffs++; }, nullptr, nullptr});
    nic = std::make_shared<Nic>();
    host.attach(0, 0, nb);
    host.attach(1, 0, isa);
    host.attach(1, 3, pm);
    host.attach(3, 0, nic);
    pio.insert(host.config_port(), 0xcf8, 8, "pci");
    pio.insert(isa->elcr_port(), Piix3::kElcrPort, Piix3::kElcrLen, "elcr");
    pio.insert(isa->port92(), Piix3::kPort92, 1, "port92");
    pio.insert(pm->gpe_port(), Piix4Pm::kGpePort, Piix4Pm::kGpeLen, "gpe");
    pio.insert(pm->apm_port(), Piix4Pm::kApmPort, Piix4Pm::kApmLen, "apm");
    fw = std::make_shared<FwCfg>(&mem);
    fwcfg::SeabiosConfig c;
    c.ram_size = ram.size();
    c.e820 = {{0, 0x9fc00, fwcfg::kE820Ram}};
    c.boot_order = {fwcfg::ide_path(1, 1, 0, 0)};
    fwcfg::configure_seabios(*fw, c);
    pio.insert(fw, FwCfg::kPortBase, FwCfg::kPortLen, "fw_cfg");
    kbd = std::make_shared<I8042>(IrqLine([this](bool l) { isa_level[1] = l; }),
                                  IrqLine([this](bool l) { isa_level[12] = l; }),
                                  I8042::Callbacks{[this] { resets++; }, nullptr});
    pio.insert(kbd->data_port(), I8042::kDataPort, 1, "kbd-data");
    pio.insert(kbd->command_port(), I8042::kCommandPort, 1, "kbd-cmd");
    rtc = std::make_shared<CmosRtc>(IrqLine([this](bool l) { isa_level[8] = l; }), [n = now] { return n->load(); },
                                    int64_t(1700000000) * 1'000'000'000);
    rtc->set_memory(ram.size(), 0);
    pio.insert(rtc, CmosRtc::kPortBase, CmosRtc::kPortLen, "rtc");
    misc = std::make_shared<MiscPorts>([this](uint8_t c) {
      if (debug.size() < 4096) debug += char(c);
    });
    misc->register_all(pio);
  }
};

// Ports worth hitting: every registered range plus the interesting PCI-moved ones.
const uint16_t kHotPorts[] = {0xcf8, 0xcf9, 0xcfc, 0xcfd, 0xcfe, 0xcff, 0x4d0, 0x4d1, 0x92, 0xafe0, 0xafe2,
                              0xb2,  0xb3,  0x510, 0x511, 0x514, 0x518, 0x60,  0x64,  0x70,  0x71,  0x80,
                              0x402, 0xe9,  0x00,  0x0d,  0xc0,  0xda,  0xb000, 0xb004, 0xb008, 0xb100, 0xb102};

}  // namespace

TEST(random_traffic_keeps_devices_sane) {
  Board b;
  std::mt19937_64 rng(0x5eed1234);
  auto pick = [&](uint64_t n) { return uint64_t(rng() % n); };
  const int kOps = 100000;
  int bar_mapped_seen = 0, sci_seen = 0;
  for (int op = 0; op < kOps; op++) {
    int what = int(pick(100));
    int size = 1 << pick(3);
    uint32_t v = uint32_t(rng());
    if (what < 55) {
      uint16_t port = pick(10) < 8 ? kHotPorts[pick(std::size(kHotPorts))] : uint16_t(rng());
      uint8_t buf[4];
      if (pick(2)) {
        b.pio.read(port, {buf, size_t(size)});
      } else {
        // Keep the fw_cfg DMA descriptor inside RAM most of the time.
        if ((port == 0x514 || port == 0x518) && pick(4)) v = uint32_t(pick(b.ram.size() - 16));
        u64_to_span(v, {buf, size_t(size)});
        b.pio.write(port, {buf, size_t(size)});
      }
    } else if (what < 80) {
      // Config cycle to one of the functions (or an empty slot).
      static const int slots[][2] = {{0, 0}, {1, 0}, {1, 3}, {3, 0}, {7, 0}};
      auto& sf = slots[pick(std::size(slots))];
      uint32_t reg = uint32_t(pick(256)) & ~uint32_t(size - 1);
      // Prefer the registers that move things.
      if (pick(2)) {
        static const uint32_t hot[] = {0x04, 0x10, 0x14, 0x20, 0x24, 0x30, 0x40, 0x59, 0x5a, 0x60, 0x61, 0x72, 0x80, 0x90, 0xd2};
        reg = hot[pick(std::size(hot))] & ~uint32_t(size - 1);
      }
      if (pick(3) == 0) {
        b.host.config_read(0, sf[0], sf[1], reg, size);
      } else {
        b.host.config_write(0, sf[0], sf[1], reg, size, v);
      }
    } else if (what < 88) {
      static const char* keys[] = {"KeyA", "Enter", "ArrowUp", "ShiftLeft", "Pause", "PrintScreen", "F12", "Bogus"};
      b.kbd->key(keys[pick(std::size(keys))], pick(2));
      if (pick(50) == 0) b.kbd->combo("ctrl-alt-del");
    } else if (what < 93) {
      b.kbd->mouse(int(pick(2001)) - 1000, int(pick(2001)) - 1000, int(pick(21)) - 10, uint8_t(pick(8)));
    } else if (what < 97) {
      *b.now += int64_t(pick(50'000'000));
      b.rtc->tick();
      b.pm->tick();
    } else if (what < 98) {
      b.pm->press_power_button();
    } else if (what < 99) {
      b.nic->set_intx(pick(2));
    } else if (pick(20) == 0) {
      b.host.reset_all();
    }

    if (op % 997 == 0) {
      // Invariants.
      auto ks = b.kbd->snapshot();
      CHECK(ks.kbd_q.count <= I8042::Fifo::kCap);
      CHECK(ks.aux_q.count <= I8042::Fifo::kCap);
      CHECK(ks.ctrl_q.count <= I8042::Fifo::kCap);
      auto rs = b.rtc->snapshot();
      CHECK(rs.index < 128);
      CHECK(b.pm->timer_value() <= 0xffffffu);
      // The bus never holds overlapping ranges and every BAR marked mapped is on it.
      auto ranges = b.pio.ranges();
      for (size_t i = 1; i < ranges.size(); i++) CHECK(ranges[i - 1].first.base + ranges[i - 1].first.len <= ranges[i].first.base);
      if (b.isa_level[9]) sci_seen++;
      for (int i = 0; i < 7; i++) {
        auto& bar = b.nic->bar(i);
        bar_mapped_seen += bar.mapped;
        if (!bar.mapped || !bar.handler) continue;
        Bus& bus = bar.kind == BarKind::Io ? b.pio : b.mmio;
        CHECK(bus.device_at(bar.mapped_at) == bar.handler);
      }
      // PIIX3's view of the ISA lines matches what it last drove.
      auto ps = b.isa->snapshot();
      for (int irq = 0; irq < 16; irq++) {
        if (irq == 1 || irq == 8 || irq == 12) continue;  // driven directly by the legacy devices here
        CHECK_EQ(bool(ps.isa_levels & (1u << irq)), b.isa_level[irq]);
      }
      // Config mechanism still answers.
      CHECK_EQ(b.host.config_read(0, 0, 0, 0, 4), 0x12378086u);
    }
  }
  // The traffic reached the interesting states (otherwise the test proves little).
  std::printf("    resets=%d poweroffs=%d bar-mapped=%d sci=%d debug=%zu\n", b.resets, b.poweroffs, bar_mapped_seen,
              sci_seen, b.debug.size());
  CHECK(b.resets > 0);
  CHECK(!b.debug.empty());
  CHECK(bar_mapped_seen > 0);
  // The machine still works after the storm: reset and do a clean SeaBIOS-like sequence.
  b.host.reset_all();
  b.kbd->reset();
  b.kbd->write_command(0xaa);
  CHECK(b.kbd->read_status() & I8042::kStOutFull);
  uint8_t r = 0;
  for (int i = 0; i < 200 && r != 0x55; i++) r = b.kbd->read_data();
  CHECK_EQ(r, 0x55);
  uint8_t sel[2] = {0, 0};
  b.fw->write(FwCfg::kOffSelector, sel);
  uint8_t q;
  b.fw->read(FwCfg::kOffData, {&q, 1});
  CHECK_EQ(q, 'Q');
}
