// Seeded random traffic on every std-vga entry point: legacy ports, dispi
// ports, the 0xa0000 window, BAR2 MMIO and the LFB handler, interleaved with
// poll() and snapshots. Nothing may crash or read/write outside VRAM;
// afterwards a clean mode set must still render.
#include <cstring>
#include <random>

#include "check.h"
#include "devices/vga/vga.h"

using namespace vireo;
using namespace vireo::vga;

TEST(fuzz_vga_all_entry_points) {
  auto d = std::make_shared<VgaDevice>(1 << 20);  // small VRAM: exercises the bounds
  auto ports = d->legacy_ports();
  auto dispi = d->dispi_ports();
  auto mem = d->legacy_memory();
  auto mmio = d->mmio_regs();
  auto lfb = d->lfb();
  std::mt19937 rng(12345);
  std::vector<uint64_t> bm((1 << 20) / 4096 / 64 + 1, 0);
  size_t polls = 0;
  for (int i = 0; i < 100000; i++) {
    uint8_t buf[4];
    uint32_t r = rng();
    for (auto& b : buf) b = uint8_t(rng());
    size_t n = size_t(1) << (rng() % 3);
    switch (r % 12) {
      case 0: case 1: ports->write(rng() % 0x30, std::span<const uint8_t>(buf, std::min<size_t>(n, 2))); break;
      case 2: ports->read(rng() % 0x30, std::span<uint8_t>(buf, 1)); break;
      case 3: {
        uint16_t idx = uint16_t(rng() % 12);
        uint8_t ib[2] = {uint8_t(idx), 0};
        dispi->write(0, ib);
        if (rng() & 1) dispi->write(1, std::span<const uint8_t>(buf, 2));
        else dispi->read(1, std::span<uint8_t>(buf, 2));
        break;
      }
      case 4: case 5: mem->write(rng() % 0x20000, std::span<const uint8_t>(buf, n)); break;
      case 6: mem->read(rng() % 0x20000, std::span<uint8_t>(buf, n)); break;
      case 7: mmio->write(rng() % 0x1000, std::span<const uint8_t>(buf, n)); break;
      case 8: mmio->read(rng() % 0x1000, std::span<uint8_t>(buf, n)); break;
      case 9: lfb->write(rng() % (2 << 20), std::span<const uint8_t>(buf, n)); break;
      case 10:
        if (rng() % 50 == 0) {
          for (auto& w : bm) w = (uint64_t(rng()) << 32) | rng();
          d->poll(rng() & 1 ? bm.data() : nullptr, uint64_t(i) * 1000000, rng() % 8 == 0);
          polls++;
        }
        break;
      default:
        // Mode-ish writes so that rendering paths get exercised.
        d->dispi_write(kDispiEnable, 0);
        if (rng() & 1) {
          d->dispi_write(kDispiXres, uint16_t(rng() % 2000));
          d->dispi_write(kDispiYres, uint16_t(rng() % 1500));
          d->dispi_write(kDispiBpp, uint16_t((const uint16_t[]){4, 8, 15, 16, 24, 32, 7}[rng() % 7]));
          d->dispi_write(kDispiEnable, uint16_t(kDispiEnabled | (rng() & 0xa0)));
          d->dispi_write(kDispiVirtWidth, uint16_t(rng()));
          d->dispi_write(kDispiYOffset, uint16_t(rng()));
        }
        break;
    }
  }
  CHECK(polls > 50);
  // Clean mode set afterwards renders a known pixel.
  d->dispi_write(kDispiEnable, 0);
  d->dispi_write(kDispiXres, 320);
  d->dispi_write(kDispiYres, 200);
  d->dispi_write(kDispiBpp, 32);
  d->dispi_write(kDispiEnable, kDispiEnabled | kDispiLfbEnabled);
  uint32_t c = 0x00123456;
  std::memcpy(d->vram(), &c, 4);
  Frame f = d->snapshot(0);
  CHECK_EQ(f.width, 320u);
  uint32_t got;
  std::memcpy(&got, f.bgrx.data(), 4);
  CHECK_EQ(got, 0xff123456u);
}
