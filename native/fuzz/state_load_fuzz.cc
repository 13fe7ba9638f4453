// libFuzzer target: the devices' saved-state loaders (docs/state.md) fed a
// damaged state file's section, as `vireo boot --restore` / a managed save
// would after a disk error or a hostile file got past the file checksums
// (a section's own CRC is not a defence against a crafted file).
//
// Input: ops until the input ends, each:
//   u8 device (modulo the list below), u8 mode, u8 version delta, then
//   mode 0: u16 n + n bytes, the whole section;
//   mode 1: the device's own saved section with u8 k XOR patches (u16 pos, u8 x);
//   mode 2: the device's own saved section cut at u16 pos, then u16 n + n bytes appended.
// A load may refuse (StateError) and must then leave the device usable; a load
// it accepts must give a device whose own save loads again into a fresh one
// (an accepted state that cannot be restored again is a bug: trap).
#include <functional>
#include <memory>
#include <vector>

#include "devices/fw_cfg.h"
#include "devices/ide/piix_ide.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/net/e1000.h"
#include "devices/usb/hid_tablet.h"
#include "devices/usb/uhci.h"
#include "devices/vga/vga.h"
#include "fuzz_input.h"
#include "machine/guest_memory.h"
#include "machine/state.h"
#include "net/backend.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {

constexpr uint64_t kRam = 64 << 10;

struct NullBackend : net::NetBackend {
  void start(Receiver) override {}
  void stop() override {}
  bool send(std::span<const uint8_t>) override { return true; }
  std::string kind() const override { return "null"; }
};

struct World {
  std::vector<uint8_t> ram = std::vector<uint8_t>(kRam, 0);
  GuestMemory mem;
  int64_t now = 5'000'000'000;
  World() { mem.add_region(0, kRam, ram.data()); }
};

// A device under test: made fresh for each attempt, with a few reads after a
// load (the paths a guest takes first after a restore).
struct Kind {
  const char* name;
  std::function<std::shared_ptr<Stateful>(World&)> make;
  std::function<void(Stateful&)> poke;
};

std::vector<uint8_t> saved(const Stateful& d) {
  state::StateWriter w;
  d.save(w);
  return w.take();
}

const std::vector<Kind>& kinds() {
  static const std::vector<Kind> k = {
      {"com1", [](World&) { return std::make_shared<devices::Serial16550>(IrqLine(), [](uint8_t) {}); },
       [](Stateful& s) {
         auto& d = static_cast<devices::Serial16550&>(s);
         uint8_t b[1];
         for (uint64_t r = 0; r < 8; r++) d.read(r, b);
         d.write(0, b);
       }},
      {"i8042", [](World&) { return std::make_shared<I8042>(IrqLine(), IrqLine()); },
       [](Stateful& s) {
         auto& d = static_cast<I8042&>(s);
         (void)d.read_status();
         (void)d.read_data();
         d.write_command(0x20);  // read the command byte
         (void)d.read_data();
         (void)d.key("KeyA", true);
       }},
      {"rtc", [](World& w) { return std::make_shared<CmosRtc>(IrqLine(), [&w] { return w.now; }, int64_t(1714564800) * 1'000'000'000); },
       [](Stateful& s) {
         auto& d = static_cast<CmosRtc&>(s);
         uint8_t b[1];
         for (uint8_t i : {0x00, 0x0a, 0x0c, 0x32}) {
           uint8_t idx = i;
           d.write(0, {&idx, 1});
           d.read(1, b);
         }
       }},
      {"vga", [](World&) { return std::make_shared<vga::VgaDevice>(256 * 1024); },  // the smallest VRAM: fast runs
       [](Stateful& s) {
         auto& d = static_cast<vga::VgaDevice&>(s);
         (void)d.screenshot_png(0);
       }},
      {"tablet", [](World& w) { return std::make_shared<usb::HidTablet>([&w] { return w.now; }); }, [](Stateful&) {}},
      {"uhci", [](World& w) { return std::make_shared<usb::Uhci>(&w.mem, [&w] { return w.now; }); },
       [](Stateful& s) {
         auto& d = static_cast<usb::Uhci&>(s);
         for (uint32_t r = 0; r < usb::Uhci::kIoSize; r += 2) (void)d.reg_read(r, 2);
         d.run_frame();
       }},
      {"e1000", [](World& w) { return std::make_shared<e1000::E1000>(std::make_shared<NullBackend>(), &w.mem, e1000::E1000::Options{}); },
       [](Stateful& s) {
         auto& d = static_cast<e1000::E1000&>(s);
         for (uint32_t r : {0x0u, 0x8u, 0xc0u, 0x2808u, 0x3818u, 0x5400u}) (void)d.read_reg(r);
         d.write_reg(0x3818, 1);  // TDT: the ring as loaded is walked
       }},
      {"fw_cfg", [](World& w) { return std::make_shared<FwCfg>(&w.mem); }, [](Stateful&) {}},
  };
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  World w;
  for (int ops = 0; !in.empty() && ops < 8; ops++) {
    const Kind& k = kinds()[in.u8() % kinds().size()];
    const uint8_t mode = in.u8() % 3;
    auto dev = k.make(w);
    const uint32_t version = dev->state_version() + uint32_t(int8_t(in.u8()) / 64);  // mostly the current one
    std::vector<uint8_t> section;
    if (mode == 0) {
      auto b = in.bytes(in.u16());
      section.assign(b.begin(), b.end());
    } else {
      section = saved(*dev);
      if (mode == 1) {
        for (int n = in.u8() % 16; n > 0 && !section.empty(); n--) {
          const size_t pos = in.u16() % section.size();
          section[pos] ^= in.u8();
        }
      } else {
        section.resize(std::min<size_t>(section.size(), in.u16()));
        auto b = in.bytes(in.u16());
        section.insert(section.end(), b.begin(), b.end());
      }
    }
    bool accepted = true;
    try {
      state::StateReader r(section, k.name, version);
      dev->load(r);
    } catch (const state::StateError&) {
      accepted = false;
    }
    k.poke(*dev);
    if (accepted) {
      // What was accepted saves, and that save loads into a fresh device.
      auto again = saved(*dev);
      auto fresh = k.make(w);
      try {
        state::StateReader r(again, k.name, fresh->state_version());
        fresh->load(r);
      } catch (const state::StateError& e) {
        std::fprintf(stderr, "%s: an accepted state saved as one that does not load: %s\n", k.name, e.what());
        __builtin_trap();
      }
      k.poke(*fresh);
    }
  }
  return 0;
}
