// libFuzzer target: std-vga's register files (sequencer, CRTC, graphics
// controller, attribute controller, DAC, Bochs VBE "dispi" registers through
// the ports and the BAR2 MMIO window), the 0xa0000 window in every planar
// mode, the LFB, and rendering (poll / snapshot / text read-back) of whatever
// mode results. 1 MiB of VRAM so that out-of-VRAM geometries are reachable.
// Input: ops (u8 opcode + operands, see the switch).
#include "devices/vga/vga.h"
#include "fuzz_input.h"

using namespace vireo;
using namespace vireo::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  auto d = std::make_shared<vga::VgaDevice>(1 << 20);
  auto ports = d->legacy_ports();
  auto dispi = d->dispi_ports();
  auto win = d->legacy_memory();
  auto mmio = d->mmio_regs();
  auto lfb = d->lfb();
  std::vector<uint64_t> dirty((1 << 20) / 4096 / 64 + 1, ~0ull);
  uint64_t now = 0;
  // Rendering is per pixel and, instrumented, costs ~10 ms for a large mode:
  // two renders per input, and the whole-mode-set op stays within 800x600
  // (op 2 still reaches any geometry, register by register).
  constexpr int kRenders = 2;
  int renders = 0;
  for (int ops = 0; !in.empty() && ops < 4096; ops++) {
    uint8_t op = in.u8() % 12;
    uint8_t b[8];
    switch (op) {
      case 0: d->port_write(uint16_t(0x3b0 + in.u8() % 0x30), in.u8()); break;
      case 1: d->port_read(uint16_t(0x3b0 + in.u8() % 0x30)); break;
      case 2: d->dispi_write(in.u8() % 16, in.u16()); break;
      case 3: d->dispi_read(in.u8() % 16); break;
      case 4: {  // a port write of 2 bytes (index + data in one OUT)
        uint16_t v = in.u16();
        b[0] = uint8_t(v), b[1] = uint8_t(v >> 8);
        ports->write(in.u8() % 0x30, {b, 2});
        break;
      }
      case 5: {
        uint32_t off = in.u32() % 0x20000;
        int s = std::min(in.size(), 4);
        uint64_t v = in.u32();
        for (int i = 0; i < 8; i++) b[i] = uint8_t(v >> (8 * i));
        win->write(off, {b, size_t(s)});
        break;
      }
      case 6: win->read(in.u32() % 0x20000, {b, size_t(std::min(in.size(), 4))}); break;
      case 7: {
        uint16_t off = in.u16() % 0x1000;
        int s = std::min(in.size(), 4);
        uint64_t v = in.u32();
        for (int i = 0; i < 8; i++) b[i] = uint8_t(v >> (8 * i));
        if (in.u8() & 1) mmio->write(off, {b, size_t(s)});
        else mmio->read(off, {b, size_t(s)});
        break;
      }
      case 8: {
        uint32_t off = in.u32() % (2 << 20);  // past VRAM too
        uint64_t v = in.u64();
        for (int i = 0; i < 8; i++) b[i] = uint8_t(v >> (8 * i));
        lfb->write(off, {b, size_t(in.size())});
        break;
      }
      case 9: {  // a whole mode set, as a driver does it
        d->dispi_write(4, 0);
        d->dispi_write(1, in.u16() % 800);
        d->dispi_write(2, in.u16() % 600);
        d->dispi_write(3, in.u8());
        d->dispi_write(6, in.u16());
        d->dispi_write(7, in.u16());
        d->dispi_write(8, in.u16());
        d->dispi_write(9, in.u16());
        d->dispi_write(4, in.u8() | 1);
        break;
      }
      case 10:
        now += uint64_t(in.u8()) * 50'000'000;
        if (renders++ < kRenders) d->poll(in.u8() & 1 ? dirty.data() : nullptr, now, in.u8() & 1);
        break;
      default:
        if (renders++ < kRenders) {
          if (in.u8() & 1) d->snapshot(now);
          else d->text_screen();
        }
        break;
    }
  }
  if (renders == 0) d->snapshot(now);
  return 0;
}
