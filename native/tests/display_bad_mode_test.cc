// Absurd display modes from the guest (issue 14, "bad input"): Bochs VBE dispi
// registers set huge, zero, odd and out of order, and legacy VGA CRTC /
// sequencer / graphics registers full of garbage. The display model must
// clamp or refuse, draw only what fits in VRAM, never read outside it, and
// keep its own memory bounded: the screen it renders is at most 4096x4096
// and, in a VBE mode, no bigger than the VRAM that holds it. Driven without a
// vCPU, as the guest would through the 0x1ce/0x1cf ports and BAR2.
#include <sys/resource.h>

#include <cstring>
#include <random>

#include "check.h"
#include "devices/vga/vga.h"

using namespace vireo;
using namespace vireo::vga;

namespace {

void dispi_out(IoDevice& p, uint16_t index, uint16_t v) {
  uint8_t a[2] = {uint8_t(index), uint8_t(index >> 8)};
  uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
  p.write(0, a);
  p.write(1, b);
}

// Under AddressSanitizer freed memory sits in its quarantine: RSS says nothing there.
#if VIREO_ASAN
constexpr bool kRssMeaningful = false;
#else
constexpr bool kRssMeaningful = true;
#endif

long max_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// Everything the display hands out for the current mode agrees with itself and
// stays within the bound: size() == snapshot == a forced full poll, every rect
// inside the screen with exactly w*h*4 bytes.
struct Drawn {
  uint32_t w = 0, h = 0;
};
Drawn check_consistent(VgaDevice& d, uint64_t now) {
  auto [w, h] = d.size();
  CHECK(w >= 1 && w <= 4096);
  CHECK(h >= 1 && h <= 4096);
  Frame f = d.snapshot(now);
  CHECK_EQ(f.width, w);
  CHECK_EQ(f.height, h);
  CHECK_EQ(f.bgrx.size(), size_t(w) * h * 4);
  auto up = d.poll(nullptr, now, true);
  CHECK(up.has_value());
  CHECK_EQ(up->width, w);
  CHECK_EQ(up->height, h);
  size_t bytes = 0;
  for (auto& r : up->rects) {
    CHECK(r.r.x + r.r.w <= w);
    CHECK(r.r.y + r.r.h <= h);
    CHECK_EQ(r.bgrx.size(), size_t(r.r.w) * r.r.h * 4);
    bytes += r.bgrx.size();
  }
  CHECK_EQ(bytes, size_t(w) * h * 4);
  return {w, h};
}

}  // namespace

// The guest asks for more than VRAM can hold: 65535x65535 at 32 bpp on 16 MiB.
// Width and height are clamped to the 4096 maximum the caps report, and the
// screen shows only the rows that VRAM holds (4096 x 1024 at 32 bpp), so the
// model's buffers stay within VRAM's size instead of 4096x4096x4 = 64 MiB each.
TEST(vbe_mode_larger_than_vram_is_cut_to_vram) {
  auto d = std::make_shared<VgaDevice>();  // 16 MiB, as the PC board has
  auto p = d->dispi_ports();
  long rss0 = max_rss_kib();
  dispi_out(*p, kDispiEnable, 0);
  dispi_out(*p, kDispiXres, 0xffff);
  dispi_out(*p, kDispiYres, 0xffff);
  dispi_out(*p, kDispiBpp, 32);
  dispi_out(*p, kDispiEnable, kDispiEnabled | kDispiLfbEnabled);
  CHECK_EQ(d->dispi_read(kDispiXres), uint16_t(4096));
  CHECK_EQ(d->dispi_read(kDispiYres), uint16_t(4096));
  CHECK(d->mode() == DisplayMode::Vbe);
  Drawn s = check_consistent(*d, 0);
  CHECK_EQ(s.w, 4096u);
  CHECK_EQ(s.h, uint32_t(d->vram_size() / (4096 * 4)));  // 1024 rows
  CHECK(size_t(s.w) * s.h * 4 <= d->vram_size());
  // Pixels written at the last byte of VRAM show at the bottom right.
  uint32_t c = 0x00abcdef;
  std::memcpy(d->vram() + d->vram_size() - 4, &c, 4);
  Frame f = d->snapshot(0);
  uint32_t got;
  std::memcpy(&got, f.bgrx.data() + f.bgrx.size() - 4, 4);
  CHECK_EQ(got, 0xffabcdefu);
  // Same at 24 bpp (3 bytes a pixel: 1365 rows of 12 KiB).
  dispi_out(*p, kDispiEnable, 0);
  dispi_out(*p, kDispiBpp, 24);
  dispi_out(*p, kDispiEnable, kDispiEnabled | kDispiLfbEnabled);
  s = check_consistent(*d, 0);
  CHECK_EQ(s.h, uint32_t(d->vram_size() / (4096 * 3)));
  // The high-water mark (VRAM, the model's two screens and the update it hands
  // out, plus this test's snapshots, ~16 MiB each) stays under what 4096x4096
  // frames would take: 64 MiB each, over 300 MiB for the same steps.
  long grown_mib = (max_rss_kib() - rss0) / 1024;
  std::printf("  max RSS grew %ld MiB for 4096-wide modes on 16 MiB of VRAM\n", grown_mib);
  CHECK(grown_mib < 200 || !kRssMeaningful);
}

// Zero, odd and unsupported values, in every order, and virtual width and
// offsets far beyond VRAM: each write is clamped or refused, the frame start
// stays inside VRAM, and every state renders consistently.
TEST(vbe_zero_odd_and_huge_registers_are_clamped) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  // Zero size: nothing to show, a blank 640x480 screen.
  dispi_out(*p, kDispiEnable, 0);
  dispi_out(*p, kDispiXres, 0);
  dispi_out(*p, kDispiYres, 0);
  dispi_out(*p, kDispiBpp, 32);
  dispi_out(*p, kDispiEnable, kDispiEnabled);
  CHECK(d->mode() == DisplayMode::Blank);
  Drawn s = check_consistent(*d, 0);
  CHECK_EQ(s.w, 640u);
  CHECK_EQ(s.h, 480u);
  // Unsupported depths are refused (the previous one stays); 0 means 8.
  for (uint16_t bpp : {1, 2, 7, 9, 12, 31, 33, 64, 0xffff}) {
    dispi_out(*p, kDispiBpp, bpp);
    CHECK_EQ(d->dispi_read(kDispiBpp), uint16_t(32));
  }
  dispi_out(*p, kDispiBpp, 0);
  CHECK_EQ(d->dispi_read(kDispiBpp), uint16_t(8));
  // Odd sizes at every depth, with the virtual width and offsets at their maximum.
  const uint16_t depths[] = {4, 8, 15, 16, 24, 32};
  const uint16_t sizes[][2] = {{1, 1}, {1023, 767}, {1, 4096}, {4096, 1}, {3, 0xffff}, {0xffff, 3}, {799, 601}};
  uint64_t now = 0;
  for (uint16_t bpp : depths) {
    for (auto& sz : sizes) {
      dispi_out(*p, kDispiEnable, 0);
      dispi_out(*p, kDispiXres, sz[0]);
      dispi_out(*p, kDispiYres, sz[1]);
      dispi_out(*p, kDispiBpp, bpp);
      dispi_out(*p, kDispiEnable, kDispiEnabled | kDispiLfbEnabled | kDispiNoClearMem);
      dispi_out(*p, kDispiVirtWidth, 0xffff);
      dispi_out(*p, kDispiXOffset, 0xffff);
      dispi_out(*p, kDispiYOffset, 0xffff);
      VgaState st = d->save();
      CHECK(st.vbe_start < d->vram_size());
      CHECK(st.dispi[kDispiXOffset] + std::min<uint32_t>(st.dispi[kDispiXres], 4096) <= st.dispi[kDispiVirtWidth]);
      CHECK(uint64_t(st.vbe_line_offset) * std::min<uint32_t>(st.dispi[kDispiYres], 4096) <= d->vram_size() ||
            st.dispi[kDispiVirtWidth] == std::min<uint32_t>(st.dispi[kDispiXres], 4096));
      s = check_consistent(*d, now += 1'000'000);
      // The screen never needs more pixels than VRAM holds at this depth.
      CHECK(uint64_t(s.w) * s.h * bpp <= uint64_t(d->vram_size()) * 8 + uint64_t(s.w) * bpp);
      // Offsets back to zero: the frame starts at VRAM's first byte again.
      dispi_out(*p, kDispiXOffset, 0);
      dispi_out(*p, kDispiYOffset, 0);
      CHECK_EQ(d->save().vbe_start, 0u);
      check_consistent(*d, now += 1'000'000);
    }
  }
  // The 16 registers past the last dispi index read 0 and ignore writes.
  for (uint16_t i = kDispiCount; i < kDispiCount + 16; i++) {
    dispi_out(*p, i, 0xffff);
    CHECK_EQ(d->dispi_read(i), uint16_t(0));
  }
}

// The same through BAR2, with 8-byte writes that set four registers at once
// and a write that straddles the end of the dispi block.
TEST(vbe_absurd_values_through_bar2) {
  auto d = std::make_shared<VgaDevice>();
  auto m = d->mmio_regs();
  auto w64 = [&](uint64_t off, uint64_t v) {
    uint8_t b[8];
    std::memcpy(b, &v, 8);
    m->write(off, b);
  };
  // xres, yres, bpp, enable in one 8-byte store.
  w64(0x500 + 2 * kDispiXres, 0xffffull | (0xffffull << 16) | (32ull << 32) | (uint64_t(kDispiEnabled) << 48));
  CHECK(d->mode() == DisplayMode::Vbe);
  Drawn s = check_consistent(*d, 0);
  CHECK(size_t(s.w) * s.h * 4 <= d->vram_size());
  w64(0x500 + 2 * (kDispiCount - 1), ~0ull);  // VIDEO_MEMORY_64K (read-only) and beyond the block
  CHECK_EQ(d->dispi_read(kDispiVideoMemory64k), uint16_t(d->vram_size() >> 16));
  w64(0x500 + 2 * kDispiVirtWidth, ~0ull);  // virt width, virt height (ro), x offset, y offset
  VgaState st = d->save();
  CHECK(st.vbe_start < d->vram_size());
  check_consistent(*d, 0);
}

// Legacy VGA with garbage in the CRTC, sequencer, graphics and attribute
// registers (all ones, all zeros, and 2000 seeded random fillings), in text
// and graphics modes, mono and colour: the geometry is a sane size or a blank
// 640x480, rendering stays inside VRAM (a small 256 KiB VRAM to make that
// bite), and the model's memory stays bounded.
TEST(vga_crtc_garbage_renders_a_bounded_screen) {
  auto d = std::make_shared<VgaDevice>(256 * 1024);
  long rss0 = max_rss_kib();
  auto fill = [&](auto value) {
    d->port_write(0x3c2, uint8_t(value(0x100) | 1));  // colour CRTC at 0x3d4
    for (uint8_t i = 0; i < 8; i++) {
      d->port_write(0x3c4, i);
      d->port_write(0x3c5, uint8_t(value(0x10 + i)));
    }
    for (uint8_t i = 0; i < 16; i++) {
      d->port_write(0x3ce, i);
      d->port_write(0x3cf, uint8_t(value(0x20 + i)));
    }
    d->port_write(0x3d4, 0x11);
    d->port_write(0x3d5, 0);  // unprotect CR00-07
    for (uint8_t i = 0; i < 32; i++) {
      d->port_write(0x3d4, i);
      d->port_write(0x3d5, uint8_t(value(0x40 + i)));
    }
    d->port_read(0x3da);
    for (uint8_t i = 0; i < 0x15; i++) {
      d->port_write(0x3c0, i);
      d->port_write(0x3c0, uint8_t(value(0x60 + i)));
    }
    d->port_write(0x3c0, 0x20);  // display on
  };
  uint64_t now = 0;
  fill([](int) { return 0xff; });
  check_consistent(*d, now += 16'000'000);
  fill([](int) { return 0x00; });
  check_consistent(*d, now += 16'000'000);
  std::mt19937 rng(1414);
  uint64_t pixels = 0;
  int modes[5] = {};
  for (int i = 0; i < 2000; i++) {
    fill([&](int) { return rng() & 0xff; });
    // Put some glyph and plane bytes in through the window too.
    for (int k = 0; k < 64; k++) d->mem_write(rng() % 0x20000, uint8_t(rng()));
    modes[int(d->mode())]++;
    Drawn s = check_consistent(*d, now += 16'000'000);
    pixels += uint64_t(s.w) * s.h;
    (void)d->text_screen();
  }
  std::printf("  modes seen: blank %d, text %d, 256-colour %d, planar %d; %.1f Mpixel drawn\n", modes[0], modes[1],
              modes[2], modes[3], double(pixels) / 1e6);
  CHECK(modes[int(DisplayMode::Text)] > 0);
  CHECK(modes[int(DisplayMode::Vga256)] + modes[int(DisplayMode::Planar16)] > 0);
  long grown_mib = (max_rss_kib() - rss0) / 1024;
  std::printf("  max RSS grew %ld MiB\n", grown_mib);
  CHECK(grown_mib < 200 || !kRssMeaningful);
}
