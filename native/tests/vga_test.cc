// std-vga legacy side: registers, memory window write/read modes, text mode
// and mode 13h rendering, poll() change tracking. Driven without a vCPU.
#include <algorithm>
#include <cstring>

#include "check.h"
#include "devices/vga/vga.h"

using namespace vireo;
using namespace vireo::vga;

namespace {

uint32_t px(const Frame& f, uint32_t x, uint32_t y) {
  uint32_t v;
  std::memcpy(&v, f.bgrx.data() + (size_t(y) * f.width + x) * 4, 4);
  return v;
}
uint32_t rgb(uint8_t r, uint8_t g, uint8_t b) { return 0xff000000u | (r << 16) | (g << 8) | b; }

void seq(VgaDevice& d, uint8_t i, uint8_t v) { d.port_write(0x3c4, i); d.port_write(0x3c5, v); }
void gc(VgaDevice& d, uint8_t i, uint8_t v) { d.port_write(0x3ce, i); d.port_write(0x3cf, v); }
void crtc(VgaDevice& d, uint8_t i, uint8_t v) { d.port_write(0x3d4, i); d.port_write(0x3d5, v); }
void ar(VgaDevice& d, uint8_t i, uint8_t v) {
  d.port_read(0x3da);  // reset flip-flop
  d.port_write(0x3c0, i);
  d.port_write(0x3c0, v);
}
void dac(VgaDevice& d, uint8_t i, uint8_t r, uint8_t g, uint8_t b) {
  d.port_write(0x3c8, i);
  d.port_write(0x3c9, r);
  d.port_write(0x3c9, g);
  d.port_write(0x3c9, b);
}
void display_on(VgaDevice& d) {
  d.port_read(0x3da);
  d.port_write(0x3c0, 0x20);
}

// Mode 3 style registers: 80x25, 9x16 cells, B8000, odd/even.
void set_text_mode(VgaDevice& d) {
  d.port_write(0x3c2, 0x67);
  seq(d, 1, 0x00);
  seq(d, 2, 0x03);
  seq(d, 3, 0x00);
  seq(d, 4, 0x02);
  crtc(d, 0x11, 0x00);
  crtc(d, 0x01, 0x4f);
  crtc(d, 0x07, 0x1f);
  crtc(d, 0x09, 0x4f);
  crtc(d, 0x0a, 0x0e);
  crtc(d, 0x0b, 0x0f);
  crtc(d, 0x0c, 0);
  crtc(d, 0x0d, 0);
  crtc(d, 0x0e, 0);
  crtc(d, 0x0f, 0);
  crtc(d, 0x12, 0x8f);
  crtc(d, 0x13, 0x28);
  gc(d, 4, 0x00);
  gc(d, 5, 0x10);
  gc(d, 6, 0x0e);
  gc(d, 8, 0xff);
  for (uint8_t i = 0; i < 16; i++) ar(d, i, i);
  ar(d, 0x10, 0x0c);
  ar(d, 0x12, 0x0f);
  ar(d, 0x14, 0x00);
  display_on(d);
}

// Load `rows` bytes of glyph `ch` into font map 0 of plane 2, then go back to text.
void load_glyph(VgaDevice& d, uint8_t ch, const uint8_t* rows, int n) {
  seq(d, 2, 0x04);
  seq(d, 4, 0x06);
  gc(d, 4, 0x02);
  gc(d, 5, 0x00);
  gc(d, 6, 0x04);
  for (int l = 0; l < n; l++) d.mem_write(uint32_t(ch) * 32 + l, rows[l]);
  seq(d, 2, 0x03);
  seq(d, 4, 0x02);
  gc(d, 4, 0x00);
  gc(d, 5, 0x10);
  gc(d, 6, 0x0e);
}

// Text cell (row, col) at B8000: char then attribute.
void put_cell(VgaDevice& d, int row, int col, uint8_t ch, uint8_t attr) {
  uint32_t off = 0x18000 + (row * 80 + col) * 2;
  d.mem_write(off, ch);
  d.mem_write(off + 1, attr);
}

const uint8_t kGlyph[16] = {0x81, 0x42, 0x24, 0x18, 0x18, 0x24, 0x42, 0x81,
                            0xff, 0x00, 0xf0, 0x0f, 0xaa, 0x55, 0x00, 0x01};

std::shared_ptr<VgaDevice> text_device() {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  set_text_mode(*d);
  dac(*d, 0x00, 0, 0, 0);
  dac(*d, 0x01, 0, 0, 42);   // blue
  dac(*d, 0x0e, 63, 63, 0);  // yellow
  dac(*d, 0x0c, 63, 0, 0);   // red
  load_glyph(*d, 0x41, kGlyph, 16);
  return d;
}

}  // namespace

TEST(dac_palette_write_read_autoincrement) {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  dac(*d, 10, 1, 2, 3);
  dac(*d, 11, 4, 5, 0x7f);  // 6-bit DAC: top bits dropped
  CHECK_EQ(d->port_read(0x3c8), uint8_t(12));
  d->port_write(0x3c7, 10);
  CHECK_EQ(d->port_read(0x3c7), uint8_t(3));
  uint8_t got[6];
  for (auto& g : got) g = d->port_read(0x3c9);
  CHECK_EQ(got[0], uint8_t(1));
  CHECK_EQ(got[2], uint8_t(3));
  CHECK_EQ(got[3], uint8_t(4));
  CHECK_EQ(got[5], uint8_t(0x3f));
}

TEST(attribute_flip_flop_and_crtc_protect) {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  d->port_write(0x3c2, 0x01);  // colour addressing
  d->port_read(0x3da);
  d->port_write(0x3c0, 0x05);
  d->port_write(0x3c0, 0x2a);
  CHECK_EQ(d->port_read(0x3c1), uint8_t(0x2a));
  // A third write is an index again.
  d->port_write(0x3c0, 0x26);
  CHECK_EQ(d->port_read(0x3c0), uint8_t(0x26));
  // Input status toggles retrace bits.
  uint8_t a = d->port_read(0x3da), b = d->port_read(0x3da);
  CHECK((a ^ b) & 0x08);
  // Mono CRTC ports are dead in colour mode.
  d->port_write(0x3b4, 0x0e);
  CHECK_EQ(d->port_read(0x3b5), uint8_t(0xff));
  crtc(*d, 0x11, 0x80);
  crtc(*d, 0x01, 0x55);  // protected
  crtc(*d, 0x0e, 0x12);  // not protected
  d->port_write(0x3d4, 0x01);
  CHECK(d->port_read(0x3d5) != 0x55);
  d->port_write(0x3d4, 0x0e);
  CHECK_EQ(d->port_read(0x3d5), uint8_t(0x12));
}

TEST(word_write_to_index_port_sets_index_and_data) {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  auto ports = d->legacy_ports();
  uint8_t w[2] = {0x02, 0x0f};  // outw(0x3c4, 0x0f02): map mask = 0xf
  ports->write(0x3c4 - 0x3b0, w);
  CHECK_EQ(d->port_read(0x3c4), uint8_t(2));
  CHECK_EQ(d->port_read(0x3c5), uint8_t(0x0f));
}

TEST(text_mode_glyph_attributes_and_nine_dot_column) {
  auto d = text_device();
  put_cell(*d, 1, 2, 0x41, 0x1e);  // yellow on blue
  CHECK(d->mode() == DisplayMode::Text);
  Frame f = d->snapshot(400'000'000);  // cursor phase off
  CHECK_EQ(f.width, 720u);
  CHECK_EQ(f.height, 400u);
  uint32_t yellow = rgb(0xff, 0xff, 0), blue = rgb(0, 0, 0xaa);
  uint32_t x0 = 2 * 9, y0 = 16;
  CHECK_EQ(px(f, x0 + 0, y0 + 0), yellow);  // 0x81: first and last bit set
  CHECK_EQ(px(f, x0 + 1, y0 + 0), blue);
  CHECK_EQ(px(f, x0 + 7, y0 + 0), yellow);
  CHECK_EQ(px(f, x0 + 8, y0 + 0), blue);  // 9th column is background for 0x41
  CHECK_EQ(px(f, x0 + 3, y0 + 3), yellow);  // 0x18
  CHECK_EQ(px(f, x0 + 2, y0 + 3), blue);
  for (uint32_t x = 0; x < 8; x++) CHECK_EQ(px(f, x0 + x, y0 + 8), yellow);  // 0xff row
  CHECK_EQ(px(f, x0 + 4, y0 + 10), blue);  // 0xf0
  CHECK_EQ(px(f, x0 + 4, y0 + 11), yellow);  // 0x0f
  // Cell 0 holds char 0 attr 0 -> black.
  CHECK_EQ(px(f, 0, 0), rgb(0, 0, 0));
}

TEST(text_mode_line_graphics_extends_ninth_column) {
  auto d = text_device();
  load_glyph(*d, 0xc4, kGlyph, 16);
  put_cell(*d, 0, 5, 0xc4, 0x0e);
  Frame f = d->snapshot(400'000'000);
  CHECK_EQ(px(f, 5 * 9 + 8, 0), rgb(0xff, 0xff, 0));  // bit 0 of 0x81 repeated
  ar(*d, 0x10, 0x08);  // line graphics off
  display_on(*d);
  f = d->snapshot(400'000'000);
  CHECK_EQ(px(f, 5 * 9 + 8, 0), rgb(0, 0, 0));
}

TEST(text_mode_cursor_follows_crtc_and_blinks) {
  auto d = text_device();
  put_cell(*d, 2, 3, ' ', 0x0c);  // red fg, black bg
  crtc(*d, 0x0e, 0);
  crtc(*d, 0x0f, 2 * 80 + 3);
  Frame on = d->snapshot(0);
  CHECK_EQ(px(on, 3 * 9 + 4, 2 * 16 + 14), rgb(0xff, 0, 0));
  CHECK_EQ(px(on, 3 * 9 + 4, 2 * 16 + 13), rgb(0, 0, 0));
  Frame off = d->snapshot(300'000'000);
  CHECK_EQ(px(off, 3 * 9 + 4, 2 * 16 + 14), rgb(0, 0, 0));
  crtc(*d, 0x0a, 0x2e);  // cursor disabled
  on = d->snapshot(0);
  CHECK_EQ(px(on, 3 * 9 + 4, 2 * 16 + 14), rgb(0, 0, 0));
}

TEST(text_mode_blink_attribute) {
  auto d = text_device();
  put_cell(*d, 0, 1, 0x41, 0x8e);  // blinking yellow on black
  Frame a = d->snapshot(0);
  Frame b = d->snapshot(600'000'000);
  CHECK_EQ(px(a, 9, 0), rgb(0xff, 0xff, 0));
  CHECK_EQ(px(b, 9, 0), rgb(0, 0, 0));
  // With blink disabled, bit 7 is background intensity instead.
  dac(*d, 0x08, 0, 63, 0);
  ar(*d, 0x10, 0x04);
  display_on(*d);
  Frame c = d->snapshot(600'000'000);
  CHECK_EQ(px(c, 9, 0), rgb(0xff, 0xff, 0));
  CHECK_EQ(px(c, 10, 0), rgb(0, 0xff, 0));
}

TEST(text_mode_blank_when_palette_source_cleared) {
  auto d = text_device();
  put_cell(*d, 0, 0, 0x41, 0x1e);
  d->port_read(0x3da);
  d->port_write(0x3c0, 0x00);
  CHECK(d->mode() == DisplayMode::Blank);
  Frame f = d->snapshot(400'000'000);
  CHECK_EQ(px(f, 0, 0), rgb(0, 0, 0));
}

TEST(poll_idle_returns_nothing_and_cell_change_gives_small_rect) {
  auto d = text_device();
  auto first = d->poll(nullptr, 400'000'000, false);
  CHECK(first.has_value());
  CHECK(first->mode_changed);
  CHECK_EQ(first->rects.size(), size_t(1));
  CHECK_EQ(first->rects[0].r.w, 720u);
  CHECK(!d->poll(nullptr, 400'000'000, false).has_value());
  CHECK(!d->poll(nullptr, 410'000'000, false).has_value());
  put_cell(*d, 3, 10, 0x41, 0x1e);
  auto up = d->poll(nullptr, 420'000'000, false);
  CHECK(up.has_value());
  CHECK(!up->mode_changed);
  CHECK_EQ(up->rects.size(), size_t(1));
  auto& r = up->rects[0].r;
  CHECK(r.x >= 90 && r.x + r.w <= 99);
  CHECK(r.y >= 48 && r.y + r.h <= 64);
  CHECK_EQ(up->rects[0].bgrx.size(), size_t(r.w) * r.h * 4);
  // A register write that changes nothing visible yields nothing.
  crtc(*d, 0x0c, 0);
  CHECK(!d->poll(nullptr, 430'000'000, false).has_value());
  // force_full always answers.
  auto full = d->poll(nullptr, 430'000'000, true);
  CHECK(full.has_value());
  CHECK_EQ(full->rects[0].r.w * full->rects[0].r.h, 720u * 400u);
}

TEST(poll_cursor_blink_is_a_tiny_rect) {
  auto d = text_device();
  crtc(*d, 0x0f, 81);
  put_cell(*d, 1, 1, ' ', 0x0c);
  d->poll(nullptr, 0, false);
  auto up = d->poll(nullptr, 300'000'000, false);  // cursor goes off
  CHECK(up.has_value());
  CHECK_EQ(up->rects.size(), size_t(1));
  CHECK_EQ(up->rects[0].r.y, 16u + 14u);
  CHECK_EQ(up->rects[0].r.h, 2u);
  CHECK(up->rects[0].r.w <= 9u);
}

TEST(planar_write_modes_and_read_modes) {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  seq(*d, 2, 0x0f);
  seq(*d, 4, 0x06);
  gc(*d, 6, 0x05);
  gc(*d, 8, 0xff);
  // Write mode 2: colour 0b0101 -> planes 0 and 2 all ones.
  gc(*d, 5, 0x02);
  d->mem_write(0x10, 0x05);
  CHECK_EQ(d->vram()[0x40 + 0], uint8_t(0xff));
  CHECK_EQ(d->vram()[0x40 + 1], uint8_t(0x00));
  CHECK_EQ(d->vram()[0x40 + 2], uint8_t(0xff));
  // Read mode 0 with read map select 2.
  gc(*d, 5, 0x00);
  gc(*d, 4, 2);
  CHECK_EQ(d->mem_read(0x10), uint8_t(0xff));
  // Read mode 1: compare with colour 5, all planes care -> all bits match.
  gc(*d, 5, 0x08);
  gc(*d, 2, 0x05);
  gc(*d, 7, 0x0f);
  CHECK_EQ(d->mem_read(0x10), uint8_t(0xff));
  gc(*d, 2, 0x04);
  CHECK_EQ(d->mem_read(0x10), uint8_t(0x00));
  // Write mode 0 with set/reset on plane 1 and a bit mask: latches keep masked bits.
  gc(*d, 5, 0x00);
  d->mem_read(0x10);  // load latches
  gc(*d, 0, 0x02);
  gc(*d, 1, 0x02);
  gc(*d, 8, 0x0f);
  d->mem_write(0x10, 0x00);
  CHECK_EQ(d->vram()[0x40 + 0], uint8_t(0xf0));  // data 0 in low nibble, latch in high
  CHECK_EQ(d->vram()[0x40 + 1], uint8_t(0x0f));  // set/reset 1 in low nibble
  // Write mode 1 copies latches.
  gc(*d, 8, 0xff);
  gc(*d, 5, 0x01);
  d->mem_read(0x10);
  d->mem_write(0x20, 0x00);
  CHECK_EQ(d->vram()[0x80 + 1], uint8_t(0x0f));
  // Map mask: only plane 3 written.
  gc(*d, 5, 0x02);
  seq(*d, 2, 0x08);
  d->mem_write(0x30, 0x0f);
  CHECK_EQ(d->vram()[0xc0 + 3], uint8_t(0xff));
  CHECK_EQ(d->vram()[0xc0 + 0], uint8_t(0x00));
  // Outside the 64 KiB window: ignored / reads 0xff.
  d->mem_write(0x18000, 0x12);
  CHECK_EQ(d->mem_read(0x18000), uint8_t(0xff));
}

TEST(mode13h_chain4_pixel) {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  d->port_write(0x3c2, 0x63);
  seq(*d, 1, 0x01);
  seq(*d, 2, 0x0f);
  seq(*d, 4, 0x0e);
  gc(*d, 5, 0x40);
  gc(*d, 6, 0x05);
  crtc(*d, 0x01, 0x4f);
  crtc(*d, 0x07, 0x1f);
  crtc(*d, 0x09, 0x41);
  crtc(*d, 0x12, 0x8f);
  crtc(*d, 0x13, 0x28);
  crtc(*d, 0x14, 0x40);
  ar(*d, 0x10, 0x41);
  display_on(*d);
  dac(*d, 5, 63, 0, 0);
  dac(*d, 6, 0, 0, 63);
  d->mem_write(199 * 320 + 319, 5);
  d->mem_write(10 * 320 + 7, 6);
  CHECK(d->mode() == DisplayMode::Vga256);
  Frame f = d->snapshot(0);
  CHECK_EQ(f.width, 320u);
  CHECK_EQ(f.height, 200u);
  CHECK_EQ(px(f, 319, 199), rgb(0xff, 0, 0));
  CHECK_EQ(px(f, 7, 10), rgb(0, 0, 0xff));
  CHECK_EQ(px(f, 8, 10), rgb(0, 0, 0));
  CHECK_EQ(d->mem_read(10 * 320 + 7), uint8_t(6));
  // Pel mask hides bits of the index.
  d->port_write(0x3c6, 0x04);
  f = d->snapshot(0);
  CHECK_EQ(px(f, 319, 199), rgb(0, 0, 0));  // 5 & 4 = 4, DAC 4 is black
}

TEST(planar16_640x480_pixel) {
  auto d = std::make_shared<VgaDevice>(1 << 20);
  d->port_write(0x3c2, 0xe3);
  seq(*d, 1, 0x01);
  seq(*d, 2, 0x0f);
  seq(*d, 4, 0x06);
  gc(*d, 5, 0x02);  // write mode 2
  gc(*d, 6, 0x05);
  gc(*d, 8, 0x80);  // only the leftmost pixel of the byte
  crtc(*d, 0x01, 0x4f);
  crtc(*d, 0x07, 0x3e);
  crtc(*d, 0x09, 0x40);
  crtc(*d, 0x12, 0xdf);
  crtc(*d, 0x13, 0x28);
  for (uint8_t i = 0; i < 16; i++) ar(*d, i, i);
  ar(*d, 0x10, 0x01);
  ar(*d, 0x12, 0x0f);
  display_on(*d);
  dac(*d, 9, 0, 63, 63);
  d->mem_read(479 * 80 + 10);  // latch
  d->mem_write(479 * 80 + 10, 9);
  CHECK(d->mode() == DisplayMode::Planar16);
  Frame f = d->snapshot(0);
  CHECK_EQ(f.width, 640u);
  CHECK_EQ(f.height, 480u);
  CHECK_EQ(px(f, 80, 479), rgb(0, 0xff, 0xff));
  CHECK_EQ(px(f, 81, 479), rgb(0, 0, 0));
}

#include "devices/vga/std_vga_pci.h"

TEST(std_vga_pci_ids_bars_rom_and_lfb_callback) {
  Bus pio, mmio;
  pci::PciHost host(pio, mmio);
  std::vector<uint8_t> rom(40000, 0);
  rom[0] = 0x55;
  rom[1] = 0xaa;
  auto f = std::make_shared<StdVgaPci>(rom);
  uint64_t lfb_at = 0;
  bool lfb_on = false;
  f->on_lfb_mapped = [&](uint64_t a, bool m) { lfb_at = a; lfb_on = m; };
  host.attach(2, 0, f);
  CHECK_EQ(host.config_read(0, 2, 0, 0x00, 4), 0x11111234u);
  CHECK_EQ(host.config_read(0, 2, 0, 0x08, 4) >> 8, 0x030000u);
  host.config_write(0, 2, 0, 0x10, 4, 0xffffffff);
  CHECK_EQ(host.config_read(0, 2, 0, 0x10, 4), 0xff000008u);  // 16 MiB, prefetchable
  host.config_write(0, 2, 0, 0x18, 4, 0xffffffff);
  CHECK_EQ(host.config_read(0, 2, 0, 0x18, 4), 0xfffff000u);  // 4 KiB
  host.config_write(0, 2, 0, 0x30, 4, 0xfffff800);
  CHECK_EQ(host.config_read(0, 2, 0, 0x30, 4) & 0xfffff800u, 0xffff0000u);  // 64 KiB ROM
  host.config_write(0, 2, 0, 0x10, 4, 0xfd000000);
  host.config_write(0, 2, 0, 0x18, 4, 0xfebf0000);
  host.config_write(0, 2, 0, 0x04, 2, 0x0003);
  CHECK(lfb_on);
  CHECK_EQ(lfb_at, 0xfd000000u);
  uint8_t e[2];
  CHECK(mmio.read(0xfebf0000, e));
  CHECK_EQ(e[1], uint8_t(0xff));  // EDID header
  // Dispi through BAR2, then the LFB fallback handler writes VRAM.
  uint8_t v[2] = {0x40, 0x01};
  mmio.write(0xfebf0500 + 2 * kDispiXres, v);
  CHECK_EQ(f->vga()->dispi_read(kDispiXres), uint16_t(0x140));
  uint8_t px4[4] = {1, 2, 3, 4};
  mmio.write(0xfd000010, px4);
  CHECK_EQ(f->vga()->vram()[0x13], uint8_t(4));
  host.config_write(0, 2, 0, 0x04, 2, 0x0000);
  CHECK(!lfb_on);
}

TEST(text_40x25_doubles_glyphs_and_80x50_uses_8_line_cells) {
  auto d = text_device();
  seq(*d, 1, 0x08);       // dot clock / 2
  crtc(*d, 0x01, 0x27);   // 40 columns
  crtc(*d, 0x13, 0x14);
  put_cell(*d, 0, 1, 0x41, 0x0e);
  Frame f = d->snapshot(400'000'000);
  CHECK_EQ(f.width, 720u);
  CHECK_EQ(f.height, 400u);
  // Glyph column 0 of cell 1 covers pixels 18 and 19; column 1 is background.
  CHECK_EQ(px(f, 18, 0), rgb(0xff, 0xff, 0));
  CHECK_EQ(px(f, 19, 0), rgb(0xff, 0xff, 0));
  CHECK_EQ(px(f, 20, 0), rgb(0, 0, 0));
  seq(*d, 1, 0x00);
  crtc(*d, 0x01, 0x4f);
  crtc(*d, 0x13, 0x28);
  crtc(*d, 0x09, 0x47);   // 8-line cells -> 50 rows in 400 lines
  put_cell(*d, 49, 0, 0x41, 0x0e);
  f = d->snapshot(400'000'000);
  CHECK_EQ(f.height, 400u);
  CHECK_EQ(px(f, 0, 49 * 8), rgb(0xff, 0xff, 0));
  CHECK_EQ(px(f, 1, 49 * 8), rgb(0, 0, 0));
}

TEST(text_screen_returns_characters_in_text_mode_only) {
  auto d = text_device();
  const char* msg = "SeaBIOS";
  for (int i = 0; msg[i]; i++) put_cell(*d, 2, 4 + i, uint8_t(msg[i]), 0x07);
  put_cell(*d, 3, 0, 0xc4, 0x07);
  std::string t = d->text_screen();
  CHECK(t.find("\n\n    SeaBIOS\n-\n") != std::string::npos);
  CHECK_EQ(std::count(t.begin(), t.end(), '\n'), 25);
  d->dispi_write(kDispiEnable, kDispiEnabled);
  CHECK(d->text_screen().empty());
}
