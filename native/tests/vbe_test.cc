// Bochs dispi / VBE side of std-vga: ID negotiation, capabilities, mode set
// through the 0x1ce/0x1cf ports and BAR2, VRAM rendering at every depth,
// virtual width and offsets, banked window access, dirty-page tracking.
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

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

// outw(0x1ce, index); outw(0x1cf, value) through the bus adapter.
void dispi_out(IoDevice& p, uint16_t index, uint16_t v) {
  uint8_t a[2] = {uint8_t(index), uint8_t(index >> 8)};
  uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
  p.write(0, a);
  p.write(1, b);
}
uint16_t dispi_in(IoDevice& p, uint16_t index) {
  uint8_t a[2] = {uint8_t(index), uint8_t(index >> 8)};
  p.write(0, a);
  uint8_t b[2];
  p.read(1, b);
  return uint16_t(b[0] | (b[1] << 8));
}

void set_mode(IoDevice& p, uint16_t w, uint16_t h, uint16_t bpp, uint16_t extra = 0) {
  dispi_out(p, kDispiEnable, 0);
  dispi_out(p, kDispiXres, w);
  dispi_out(p, kDispiYres, h);
  dispi_out(p, kDispiBpp, bpp);
  dispi_out(p, kDispiEnable, kDispiEnabled | kDispiLfbEnabled | extra);
}

}  // namespace

TEST(dispi_id_negotiation_and_caps) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  CHECK_EQ(dispi_in(*p, kDispiId), uint16_t(0xB0C5));
  dispi_out(*p, kDispiId, 0xB0C0);
  CHECK_EQ(dispi_in(*p, kDispiId), uint16_t(0xB0C0));
  dispi_out(*p, kDispiId, 0x1234);  // not an interface version: ignored
  CHECK_EQ(dispi_in(*p, kDispiId), uint16_t(0xB0C0));
  dispi_out(*p, kDispiId, 0xB0C4);
  CHECK_EQ(dispi_in(*p, kDispiId), uint16_t(0xB0C4));
  CHECK_EQ(dispi_in(*p, kDispiVideoMemory64k), uint16_t(256));
  dispi_out(*p, kDispiEnable, kDispiGetCaps);
  CHECK_EQ(dispi_in(*p, kDispiXres), kDispiMaxXres);
  CHECK_EQ(dispi_in(*p, kDispiYres), kDispiMaxYres);
  CHECK_EQ(dispi_in(*p, kDispiBpp), uint16_t(32));
  dispi_out(*p, kDispiEnable, 0);
  CHECK_EQ(dispi_in(*p, kDispiXres), uint16_t(640));
  // The 0x1d0 alias of the data port also works.
  uint8_t a[2] = {kDispiBpp, 0};
  p->write(0, a);
  uint8_t b[2];
  p->read(2, b);
  CHECK_EQ(b[0], uint8_t(8));
}

TEST(vbe_32bpp_mode_set_renders_vram) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  std::memset(d->vram(), 0x77, 4096);
  set_mode(*p, 800, 600, 32);
  CHECK(d->mode() == DisplayMode::Vbe);
  CHECK_EQ(d->vram()[0], uint8_t(0));  // cleared on enable
  CHECK_EQ(dispi_in(*p, kDispiVirtWidth), uint16_t(800));
  CHECK_EQ(dispi_in(*p, kDispiVirtHeight), uint16_t((16u << 20) / (800 * 4)));
  uint8_t* v = d->vram() + (10 * 800 + 20) * 4;
  v[0] = 0x11;  // B
  v[1] = 0x22;  // G
  v[2] = 0x33;  // R
  Frame f = d->snapshot(0);
  CHECK_EQ(f.width, 800u);
  CHECK_EQ(f.height, 600u);
  CHECK_EQ(px(f, 20, 10), rgb(0x33, 0x22, 0x11));
  CHECK_EQ(px(f, 21, 10), rgb(0, 0, 0));
}

TEST(vbe_noclearmem_keeps_vram) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  d->vram()[0] = 0x5a;
  set_mode(*p, 640, 480, 32, kDispiNoClearMem);
  CHECK_EQ(d->vram()[0], uint8_t(0x5a));
}

TEST(vbe_24_16_15_and_8bpp) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  set_mode(*p, 640, 480, 24);
  uint8_t* v = d->vram() + (2 * 640 + 3) * 3;
  v[0] = 0x01;
  v[1] = 0x02;
  v[2] = 0x03;
  CHECK_EQ(px(d->snapshot(0), 3, 2), rgb(3, 2, 1));

  set_mode(*p, 640, 480, 16);
  uint16_t c16 = uint16_t((31 << 11) | (0 << 5) | 31);  // magenta
  std::memcpy(d->vram() + (5 * 640 + 6) * 2, &c16, 2);
  c16 = uint16_t(63 << 5);  // full green
  std::memcpy(d->vram() + (5 * 640 + 7) * 2, &c16, 2);
  Frame f = d->snapshot(0);
  CHECK_EQ(px(f, 6, 5), rgb(0xff, 0, 0xff));
  CHECK_EQ(px(f, 7, 5), rgb(0, 0xff, 0));

  set_mode(*p, 640, 480, 15);
  uint16_t c15 = uint16_t(31 << 10);  // red
  std::memcpy(d->vram() + (1 * 640 + 1) * 2, &c15, 2);
  CHECK_EQ(px(d->snapshot(0), 1, 1), rgb(0xff, 0, 0));

  set_mode(*p, 640, 480, 8);
  d->port_write(0x3c8, 200);
  d->port_write(0x3c9, 63);
  d->port_write(0x3c9, 32);
  d->port_write(0x3c9, 0);
  d->vram()[479 * 640 + 639] = 200;
  CHECK_EQ(px(d->snapshot(0), 639, 479), rgb(0xff, 0x82, 0));
  // 8-bit DAC: palette values are used as written.
  dispi_out(*p, kDispiEnable, kDispiEnabled | kDispiLfbEnabled | kDispi8BitDac | kDispiNoClearMem);
  d->port_write(0x3c8, 200);
  d->port_write(0x3c9, 0x80);
  d->port_write(0x3c9, 0x40);
  d->port_write(0x3c9, 0x20);
  CHECK_EQ(px(d->snapshot(0), 639, 479), rgb(0x80, 0x40, 0x20));
}

TEST(vbe_virtual_width_and_offsets) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  set_mode(*p, 640, 480, 32);
  dispi_out(*p, kDispiVirtWidth, 1024);
  dispi_out(*p, kDispiXOffset, 10);
  dispi_out(*p, kDispiYOffset, 5);
  CHECK_EQ(dispi_in(*p, kDispiVirtWidth), uint16_t(1024));
  uint32_t c = 0x00abcdef;
  std::memcpy(d->vram() + (5 * 1024 + 10) * 4, &c, 4);
  std::memcpy(d->vram() + (6 * 1024 + 12) * 4, &c, 4);
  Frame f = d->snapshot(0);
  CHECK_EQ(px(f, 0, 0), rgb(0xab, 0xcd, 0xef));
  CHECK_EQ(px(f, 2, 1), rgb(0xab, 0xcd, 0xef));
  CHECK_EQ(px(f, 1, 0), rgb(0, 0, 0));
}

TEST(vbe_banked_window_access) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  set_mode(*p, 640, 480, 8);
  dispi_out(*p, kDispiBank, 3);
  d->mem_write(0x10, 0x42);
  CHECK_EQ(d->vram()[3 * 0x10000 + 0x10], uint8_t(0x42));
  CHECK_EQ(d->mem_read(0x10), uint8_t(0x42));
  dispi_out(*p, kDispiBank, 0);
  CHECK_EQ(d->mem_read(0x10), uint8_t(0));
}

TEST(vbe_through_bar2_mmio) {
  auto d = std::make_shared<VgaDevice>();
  auto m = d->mmio_regs();
  auto w16 = [&](uint64_t off, uint16_t v) {
    uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
    m->write(off, b);
  };
  w16(0x500 + 2 * kDispiXres, 1024);
  w16(0x500 + 2 * kDispiYres, 768);
  w16(0x500 + 2 * kDispiBpp, 32);
  w16(0x500 + 2 * kDispiEnable, kDispiEnabled | kDispiLfbEnabled);
  uint8_t b[2];
  m->read(0x500 + 2 * kDispiXres, b);
  CHECK_EQ(b[0] | (b[1] << 8), 1024);
  CHECK(d->mode() == DisplayMode::Vbe);
  // EDID header and checksum.
  uint8_t e[128];
  for (int i = 0; i < 128; i++) m->read(i, std::span<uint8_t>(e + i, 1));
  CHECK_EQ(e[0], uint8_t(0));
  CHECK_EQ(e[1], uint8_t(0xff));
  CHECK_EQ(e[7], uint8_t(0));
  uint8_t sum = 0;
  for (uint8_t x : e) sum = uint8_t(sum + x);
  CHECK_EQ(sum, uint8_t(0));
  // Port mirror: DAC write index through 0x408 (= port 0x3c8).
  uint8_t one = 0x33;
  m->write(0x408, std::span<const uint8_t>(&one, 1));
  CHECK_EQ(d->port_read(0x3c8), uint8_t(0x33));
  uint8_t q[4];
  m->read(0x604, q);
  CHECK_EQ(q[0], uint8_t(0x1e));
}

TEST(vbe_poll_dirty_page_gives_one_small_rect) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  set_mode(*p, 1024, 768, 32);
  auto first = d->poll(nullptr, 0, false);
  CHECK(first.has_value());
  CHECK(first->mode_changed);
  CHECK_EQ(first->width, 1024u);
  std::vector<uint64_t> bm((16u << 20) / 4096 / 64, 0);
  CHECK(!d->poll(bm.data(), 1, false).has_value());
  // Nothing changed even though every page is reported dirty: still nothing.
  CHECK(!d->poll(nullptr, 2, false).has_value());
  uint32_t c = 0x00ff0000;
  size_t off = (size_t(300) * 1024 + 100) * 4;
  std::memcpy(d->vram() + off, &c, 4);
  std::memcpy(d->vram() + off + 4, &c, 4);
  bm[(off / 4096) / 64] |= uint64_t(1) << ((off / 4096) % 64);
  auto up = d->poll(bm.data(), 3, false);
  CHECK(up.has_value());
  CHECK(!up->mode_changed);
  CHECK_EQ(up->rects.size(), size_t(1));
  CHECK_EQ(up->rects[0].r.x, 100u);
  CHECK_EQ(up->rects[0].r.y, 300u);
  CHECK_EQ(up->rects[0].r.w, 2u);
  CHECK_EQ(up->rects[0].r.h, 1u);
  uint32_t got;
  std::memcpy(&got, up->rects[0].bgrx.data(), 4);
  CHECK_EQ(got, rgb(0xff, 0, 0));
  // A write whose page is not reported is not seen until it is.
  std::memcpy(d->vram() + 4 * 5, &c, 4);
  std::fill(bm.begin(), bm.end(), 0);
  CHECK(!d->poll(bm.data(), 4, false).has_value());
  auto later = d->poll(nullptr, 5, false);
  CHECK(later.has_value());
  CHECK_EQ(later->rects[0].r.x, 5u);
}

TEST(vbe_poll_sees_banked_window_writes_without_bitmap_bits) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  set_mode(*p, 640, 480, 8);
  d->port_write(0x3c8, 7);
  d->port_write(0x3c9, 63);
  d->port_write(0x3c9, 63);
  d->port_write(0x3c9, 63);
  std::vector<uint64_t> bm((16u << 20) / 4096 / 64, 0);
  d->poll(nullptr, 0, false);
  dispi_out(*p, kDispiBank, 1);  // register write: full compare next time
  d->poll(bm.data(), 0, false);
  d->mem_write(0x20, 7);  // byte 0x10020 = line 102, x 256
  auto up = d->poll(bm.data(), 1, false);
  CHECK(up.has_value());
  CHECK_EQ(up->rects.size(), size_t(1));
  CHECK_EQ(up->rects[0].r.y, 0x10020u / 640);
  CHECK_EQ(up->rects[0].r.x, 0x10020u % 640);
}

TEST(vbe_disable_returns_to_legacy_and_mode_change_reported) {
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  set_mode(*p, 1024, 768, 32);
  d->poll(nullptr, 0, false);
  set_mode(*p, 800, 600, 32);
  auto up = d->poll(nullptr, 0, false);
  CHECK(up.has_value());
  CHECK(up->mode_changed);
  CHECK_EQ(up->width, 800u);
  CHECK_EQ(up->height, 600u);
  dispi_out(*p, kDispiEnable, 0);
  CHECK(d->mode() != DisplayMode::Vbe);
}

// The EDID the guest reads at BAR2 offset 0 (issue 14): a valid EDID 1.4 base
// block whose preferred timing (DTD 1, flagged in byte 24) is 1024x768 at 60 Hz
// with VESA DMT timings, the established and standard timings list the common
// sizes (640x480, 800x600, 1024x768, 1280x1024, 1920x1080, all at 60 Hz), and
// the range limits admit them. Decoded field by field from the EDID 1.4 layout
// (VESA E-EDID section 3), read back the way a guest does, 1, 2 and 4 bytes at a time.
TEST(edid_block_checksum_and_preferred_timing) {
  auto d = std::make_shared<VgaDevice>();
  auto m = d->mmio_regs();
  uint8_t e[128];
  for (int i = 0; i < 128; i++) m->read(i, std::span<uint8_t>(e + i, 1));
  for (int width : {2, 4}) {
    uint8_t again[128];
    for (int i = 0; i < 128; i += width) m->read(i, std::span<uint8_t>(again + i, width));
    CHECK(std::memcmp(e, again, 128) == 0);
  }
  const uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
  CHECK(std::memcmp(e, header, 8) == 0);
  uint8_t sum = 0;
  for (uint8_t x : e) sum = uint8_t(sum + x);
  CHECK_EQ(sum, uint8_t(0));
  CHECK_EQ(e[18], uint8_t(1));  // version 1.4
  CHECK_EQ(e[19], uint8_t(4));
  CHECK(e[20] & 0x80);                 // digital input
  CHECK(e[24] & 0x02);                 // DTD 1 is the preferred timing
  CHECK_EQ(e[126], uint8_t(0));        // no extension blocks
  // Manufacturer ID: three 5-bit letters.
  uint16_t mfg = uint16_t(e[8] << 8 | e[9]);
  std::string id = {char('@' + ((mfg >> 10) & 31)), char('@' + ((mfg >> 5) & 31)), char('@' + (mfg & 31))};
  CHECK_EQ(id, std::string("VRO"));
  // DTD 1: pixel clock in 10 kHz units, active and blanking sizes, sync.
  const uint8_t* t = e + 54;
  uint32_t clock_khz = uint32_t(t[0] | (t[1] << 8)) * 10;
  uint32_t hactive = t[2] | ((t[4] >> 4) << 8), hblank = t[3] | ((t[4] & 0xf) << 8);
  uint32_t vactive = t[5] | ((t[7] >> 4) << 8), vblank = t[6] | ((t[7] & 0xf) << 8);
  uint32_t hso = t[8] | (((t[11] >> 6) & 3) << 8), hsw = t[9] | (((t[11] >> 4) & 3) << 8);
  uint32_t vso = (t[10] >> 4) | (((t[11] >> 2) & 3) << 4), vsw = (t[10] & 0xf) | ((t[11] & 3) << 4);
  CHECK_EQ(clock_khz, 65000u);
  CHECK_EQ(hactive, 1024u);
  CHECK_EQ(vactive, 768u);
  CHECK_EQ(hactive + hblank, 1344u);  // VESA DMT 1024x768@60: htotal 1344, vtotal 806
  CHECK_EQ(vactive + vblank, 806u);
  CHECK_EQ(hso, 24u);
  CHECK_EQ(hsw, 136u);
  CHECK_EQ(vso, 3u);
  CHECK_EQ(vsw, 6u);
  double hz = clock_khz * 1000.0 / ((hactive + hblank) * (vactive + vblank));
  std::printf("  preferred timing %ux%u at %.2f Hz, %.1f MHz\n", hactive, vactive, hz, clock_khz / 1000.0);
  CHECK(hz > 59.9 && hz < 60.1);
  CHECK(!(t[17] & 0x80));  // not interlaced
  // Established timings: 640x480@60 (byte 35 bit 5), 800x600@60 (bit 0), 1024x768@60 (byte 36 bit 3).
  CHECK(e[35] & 0x20);
  CHECK(e[35] & 0x01);
  CHECK(e[36] & 0x08);
  // Standard timings: (byte + 31) * 8 wide, aspect in bits 7:6, refresh - 60 in bits 5:0.
  std::vector<std::pair<uint32_t, uint32_t>> std_modes;
  for (int i = 38; i < 54; i += 2) {
    if (e[i] == 0x01 && e[i + 1] == 0x01) continue;  // unused
    uint32_t w = (e[i] + 31u) * 8;
    uint32_t aspect = e[i + 1] >> 6;
    uint32_t h = aspect == 0 ? w * 10 / 16 : aspect == 1 ? w * 3 / 4 : aspect == 2 ? w * 4 / 5 : w * 9 / 16;
    CHECK_EQ((e[i + 1] & 0x3f) + 60, 60);
    std_modes.push_back({w, h});
  }
  CHECK((std_modes == std::vector<std::pair<uint32_t, uint32_t>>{{1280, 1024}, {1920, 1080}}));
  // Display descriptors: range limits (tag 0xFD) that admit 60 Hz and 65 MHz, and the name.
  bool range = false, name = false;
  for (int o = 72; o < 126; o += 18) {
    const uint8_t* dsc = e + o;
    if (dsc[0] || dsc[1]) continue;  // a second DTD
    if (dsc[3] == 0xfd) {
      range = dsc[5] <= 60 && dsc[6] >= 60 && dsc[9] * 10 >= 65;
    } else if (dsc[3] == 0xfc) {
      name = std::memcmp(dsc + 5, "Vireo\n", 6) == 0;
    }
  }
  CHECK(range);
  CHECK(name);
  // Past the block, up to the port mirror at 0x400, BAR2 reads zeros.
  uint8_t z[4];
  m->read(0x80, z);
  CHECK_EQ(z[0] | z[1] | z[2] | z[3], 0);
  m->read(0x3fc, z);
  CHECK_EQ(z[0] | z[1] | z[2] | z[3], 0);
}

// The VBE mode list a guest gets (issue 14: "a VBE mode list that includes the
// common sizes"). The list is the VGA BIOS's (Debian's SeaBIOS
// vgabios-stdvga.bin): a table of Bochs modes, each {u16 mode; u8 memory
// model; u16 width; u16 height; u8 depth; u8 char width; u8 char height;
// u16 segment 0xA000} with natural alignment (14 bytes), from which the BIOS
// offers the modes that fit the device's GETCAPS maxima and its VRAM. Without
// a vCPU: find the table in the ROM, apply our device's caps and VRAM as read
// through the dispi ports, check the common sizes are offered at 32 bpp, and
// set every offered mode on the device: each shows at exactly its size.
TEST(vbe_mode_list_offers_the_common_sizes_and_each_one_works) {
  const char* rom_path = "/usr/share/seabios/vgabios-stdvga.bin";
  std::ifstream f(rom_path, std::ios::binary);
  if (!f) SKIP(std::string(rom_path) + " is missing (Debian package seabios)");
  std::vector<uint8_t> rom((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  struct Mode {
    uint16_t mode, w, h;
    uint8_t depth;
  };
  auto u16 = [&](size_t o) { return uint16_t(rom[o] | (rom[o + 1] << 8)); };
  auto entry = [&](size_t o, Mode& m) {
    if (o + 14 > rom.size()) return false;
    m = {u16(o), u16(o + 4), u16(o + 6), rom[o + 8]};
    return m.mode >= 0x100 && m.mode <= 0x1ff && u16(o + 12) == 0xa000 && m.w && m.h &&
           (m.depth == 4 || m.depth == 8 || m.depth == 15 || m.depth == 16 || m.depth == 24 || m.depth == 32);
  };
  // The longest run of such entries is the table.
  std::vector<Mode> table;
  for (size_t o = 0; o + 14 <= rom.size(); o++) {
    std::vector<Mode> run;
    Mode m;
    for (size_t p = o; entry(p, m); p += 14) run.push_back(m);
    if (run.size() > table.size()) table = run;
  }
  CHECK(table.size() >= 40);
  auto d = std::make_shared<VgaDevice>();
  auto p = d->dispi_ports();
  dispi_out(*p, kDispiEnable, kDispiGetCaps);
  const uint32_t max_w = dispi_in(*p, kDispiXres), max_h = dispi_in(*p, kDispiYres), max_bpp = dispi_in(*p, kDispiBpp);
  dispi_out(*p, kDispiEnable, 0);
  const uint64_t vram = uint64_t(dispi_in(*p, kDispiVideoMemory64k)) << 16;
  auto line = [](const Mode& m) { return m.depth == 4 ? m.w / 2u : m.w * ((m.depth + 7u) / 8u); };
  std::vector<Mode> offered;
  for (auto& m : table)
    if (m.w <= max_w && m.h <= max_h && m.depth <= max_bpp && uint64_t(line(m)) * m.h <= vram) offered.push_back(m);
  std::set<std::pair<uint32_t, uint32_t>> at32;
  for (auto& m : offered)
    if (m.depth == 32) at32.insert({m.w, m.h});
  std::printf("  %zu modes in the VGA BIOS, %zu offered with %u MiB of VRAM (caps %ux%ux%u); at 32 bpp:", table.size(),
              offered.size(), unsigned(vram >> 20), max_w, max_h, max_bpp);
  for (auto& [w, h] : at32) std::printf(" %ux%u", w, h);
  std::printf("\n");
  for (auto size : {std::pair<uint32_t, uint32_t>{640, 480}, {800, 600}, {1024, 768}, {1280, 720}, {1280, 800}, {1280, 1024},
                    {1440, 900}, {1600, 900}, {1680, 1050}, {1920, 1080}, {1920, 1200}, {2560, 1440}, {2560, 1600}})
    CHECK(at32.count(size));
  bool uhd16 = false;
  for (auto& m : offered) uhd16 = uhd16 || (m.w == 3840 && m.h == 2160 && m.depth == 16);
  CHECK(uhd16);  // 3840x2160 fits 16 MiB at 16 bpp, as on QEMU
  // Every offered mode, set as the BIOS sets it, is drawn at exactly its size.
  for (auto& m : offered) {
    set_mode(*p, m.w, m.h, m.depth);
    auto [w, h] = d->size();
    if (w != m.w || h != m.h) std::printf("  mode 0x%x %ux%ux%u shows as %ux%u\n", m.mode, m.w, m.h, m.depth, w, h);
    CHECK(w == m.w && h == m.h);
  }
}

// A per-VM preferred display size (issue 14, "display size follows the window"):
// the EDID's DTD 1 becomes that size at 60 Hz with CVT reduced-blanking timings
// (checked against the VESA CVT 1.2 figures for 1920x1080 and 1280x800), it can
// change while the guest runs (the next read sees it, checksum valid), and sizes
// a guest could not set (too small, over EDID's 12 bits, beyond VRAM at 32 bpp)
// are refused without changing anything.
TEST(edid_preferred_size_follows_the_setting) {
  auto d = std::make_shared<VgaDevice>();
  auto m = d->mmio_regs();
  auto read_edid = [&] {
    std::array<uint8_t, 128> e{};
    for (int i = 0; i < 128; i += 4) m->read(i, std::span<uint8_t>(e.data() + i, 4));
    uint8_t sum = 0;
    for (uint8_t x : e) sum = uint8_t(sum + x);
    CHECK_EQ(sum, uint8_t(0));
    return e;
  };
  struct Dtd {
    uint32_t clock_khz, htotal, vtotal, hactive, vactive, hso, hsw, vso, vsw;
    uint8_t flags;
    uint32_t hmm, vmm;
  };
  auto dtd = [](const std::array<uint8_t, 128>& e) {
    const uint8_t* t = e.data() + 54;
    Dtd r{};
    r.clock_khz = uint32_t(t[0] | (t[1] << 8)) * 10;
    r.hactive = t[2] | ((t[4] >> 4) << 8);
    r.htotal = r.hactive + (t[3] | ((t[4] & 0xf) << 8));
    r.vactive = t[5] | ((t[7] >> 4) << 8);
    r.vtotal = r.vactive + (t[6] | ((t[7] & 0xf) << 8));
    r.hso = t[8] | (((t[11] >> 6) & 3) << 8);
    r.hsw = t[9] | (((t[11] >> 4) & 3) << 8);
    r.vso = (t[10] >> 4) | (((t[11] >> 2) & 3) << 4);
    r.vsw = (t[10] & 0xf) | ((t[11] & 3) << 4);
    r.flags = t[17];
    r.hmm = t[12] | ((t[14] >> 4) << 8);
    r.vmm = t[13] | ((t[14] & 0xf) << 8);
    return r;
  };
  CHECK((d->preferred_size() == std::pair<uint32_t, uint32_t>{1024, 768}));
  CHECK_EQ(dtd(read_edid()).clock_khz, 65000u);  // the DMT default

  CHECK(d->set_preferred_size(1920, 1080));
  auto e = read_edid();
  auto t = dtd(e);
  // VESA CVT 1.2, 1920x1080 reduced blanking: 138.50 MHz, 2080 x 1111, +hsync -vsync.
  CHECK_EQ(t.hactive, 1920u);
  CHECK_EQ(t.vactive, 1080u);
  CHECK_EQ(t.clock_khz, 138500u);
  CHECK_EQ(t.htotal, 2080u);
  CHECK_EQ(t.vtotal, 1111u);
  CHECK_EQ(t.hso, 48u);
  CHECK_EQ(t.hsw, 32u);
  CHECK_EQ(t.vso, 3u);
  CHECK_EQ(t.vsw, 5u);  // 16:9
  CHECK_EQ(t.flags & 0x1e, 0x1a);  // digital separate, +hsync, -vsync
  double hz = t.clock_khz * 1000.0 / (t.htotal * t.vtotal);
  CHECK(hz > 59.8 && hz < 60.2);
  CHECK_EQ(t.hmm, 508u);  // 96 DPI
  CHECK_EQ(e[21], uint8_t(51));
  CHECK(e[24] & 0x02);
  CHECK(e[72 + 9] * 10000u >= t.clock_khz);  // range limits admit it

  CHECK(d->set_preferred_size(1280, 800));
  t = dtd(read_edid());
  CHECK_EQ(t.clock_khz, 71000u);  // CVT-RB 1280x800: 71.00 MHz, 1440 x 823, 16:10 sync 6
  CHECK_EQ(t.htotal, 1440u);
  CHECK_EQ(t.vtotal, 823u);
  CHECK_EQ(t.vsw, 6u);

  // An odd window size (a console window dragged to 1533x901): still a valid 60 Hz timing.
  CHECK(d->set_preferred_size(1533, 901));
  t = dtd(read_edid());
  CHECK_EQ(t.hactive, 1533u);
  CHECK_EQ(t.vactive, 901u);
  CHECK_EQ(t.vsw, 10u);
  hz = t.clock_khz * 1000.0 / (t.htotal * t.vtotal);
  CHECK(hz > 59.8 && hz < 60.2);

  // Refused: nothing changes.
  auto before = read_edid();
  CHECK(!d->set_preferred_size(320, 200));
  CHECK(!d->set_preferred_size(4096, 1000));
  CHECK(!d->set_preferred_size(0, 0));
  CHECK(!d->set_preferred_size(2560, 1640));  // 16.8 MB at 32 bpp: over 16 MiB of VRAM
  CHECK(d->set_preferred_size(2560, 1600));   // 16.4 MB: fits
  CHECK(!d->set_preferred_size(65535, 65535));
  CHECK((d->preferred_size() == std::pair<uint32_t, uint32_t>{2560, 1600}));
  CHECK(std::memcmp(before.data(), read_edid().data(), 128) != 0);
  // 4K at 60 Hz needs more than the default 340 MHz: the range limit grows with it.
  auto big = std::make_shared<VgaDevice>(64u << 20);
  CHECK(big->set_preferred_size(3840, 2160));
  std::array<uint8_t, 128> e4{};
  auto m4 = big->mmio_regs();
  for (int i = 0; i < 128; i++) m4->read(i, std::span<uint8_t>(e4.data() + i, 1));
  auto t4 = dtd(e4);
  CHECK_EQ(t4.clock_khz, 533250u);  // CVT-RB 3840x2160: 533.25 MHz
  CHECK(e4[72 + 9] * 10000u >= t4.clock_khz);
}
