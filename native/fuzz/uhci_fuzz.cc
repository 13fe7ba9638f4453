// libFuzzer target: the PIIX3 UHCI controller with the HID tablet on port 1,
// driven as a guest driver would (no vCPU): register accesses, a schedule the
// input writes into guest RAM (frame list, queue heads, transfer descriptors,
// data buffers), frames run by hand and by the clock, host pointer events.
//
// Input: u16 n + n bytes copied to RAM at 0, then ops until the input ends:
//   0 reg_write(u8 offset % 32, size 1/2/4, u32)   1 reg_read(u8 offset % 32, size)
//   2 poke RAM: u32 addr, u8 len, bytes           3 a TD at u32 addr: link, ctrl/status, token, buffer (4 × u32)
//   4 a QH at u32 addr: head link, element link     5 run one frame
//   6 advance the clock by u16 × 16 µs and run what is due   7 host pointer: x, y (u16), buttons, wheel (s8)
#include <cstring>
#include <memory>
#include <vector>

#include "devices/usb/hid_tablet.h"
#include "devices/usb/uhci.h"
#include "fuzz_input.h"
#include "machine/guest_memory.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {
constexpr uint64_t kRam = 256 << 10;

void put32(std::vector<uint8_t>& ram, uint32_t a, uint32_t v) {
  for (int i = 0; i < 4; i++) ram[(a + i) % kRam] = uint8_t(v >> (8 * i));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  std::vector<uint8_t> ram(kRam, 0);
  GuestMemory mem;
  mem.add_region(0, kRam, ram.data());
  int64_t now = 1'000'000'000;
  auto clock = [&now] { return now; };
  auto hc = std::make_shared<usb::Uhci>(&mem, clock);
  auto tab = std::make_shared<usb::HidTablet>(clock);
  hc->attach(0, tab);
  auto image = in.bytes(in.u16());
  std::memcpy(ram.data(), image.data(), std::min(image.size(), ram.size()));
  for (int ops = 0; !in.empty() && ops < 4096; ops++) {
    switch (in.u8() % 8) {
      case 0: {
        uint32_t off = in.u8() % usb::Uhci::kIoSize;
        int sz = 1 << (in.u8() % 3);
        hc->reg_write(off, sz, in.u32());
        break;
      }
      case 1: {
        uint32_t off = in.u8() % usb::Uhci::kIoSize;
        (void)hc->reg_read(off, 1 << (in.u8() % 3));
        break;
      }
      case 2: {
        uint32_t a = in.u32();
        auto b = in.bytes(in.u8());
        for (size_t i = 0; i < b.size(); i++) ram[(a + i) % kRam] = b[i];
        break;
      }
      case 3: {
        uint32_t a = in.u32() & ~15u;
        for (int i = 0; i < 4; i++) put32(ram, a + 4 * i, in.u32());
        break;
      }
      case 4: {
        uint32_t a = in.u32() & ~15u;
        put32(ram, a, in.u32());
        put32(ram, a + 4, in.u32());
        break;
      }
      case 5:
        hc->run_frame();
        break;
      case 6:
        now += int64_t(in.u16()) * 16'000;
        (void)hc->run_due(now);
        break;
      default: {
        int x = in.u16(), y = in.u16();
        uint8_t buttons = in.u8();
        int wheel = int8_t(in.u8());
        tab->pointer(x, y, buttons, wheel);
        break;
      }
    }
  }
  return 0;
}
