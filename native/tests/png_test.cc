// PNG screenshot encoder: signature, IHDR, chunk CRCs, and the IDAT stream
// inflated back to the expected filter bytes and RGB pixels.
#include <cstring>

#include "check.h"
#include "devices/vga/png.h"
#include "devices/vga/vga.h"

#ifdef VIREO_HAVE_ZLIB
#include <zlib.h>
#endif

using namespace vireo::vga;

namespace {

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }

struct Chunk {
  std::string type;
  std::vector<uint8_t> data;
};

// Split a PNG into chunks, checking every CRC.
std::vector<Chunk> parse(const std::vector<uint8_t>& png) {
  std::vector<Chunk> out;
  size_t pos = 8;
  while (pos + 12 <= png.size()) {
    uint32_t len = be32(&png[pos]);
    CHECK(pos + 12 + len <= png.size());
    Chunk c;
    c.type.assign(reinterpret_cast<const char*>(&png[pos + 4]), 4);
    c.data.assign(png.begin() + pos + 8, png.begin() + pos + 8 + len);
    CHECK_EQ(be32(&png[pos + 8 + len]), png_crc32(&png[pos + 4], len + 4));
    out.push_back(std::move(c));
    pos += 12 + len;
  }
  CHECK_EQ(pos, png.size());
  return out;
}

std::vector<uint8_t> inflate_all(const std::vector<uint8_t>& z, size_t expect) {
#ifdef VIREO_HAVE_ZLIB
  std::vector<uint8_t> out(expect + 16);
  uLongf n = uLongf(out.size());
  CHECK_EQ(uncompress(out.data(), &n, z.data(), uLong(z.size())), Z_OK);
  out.resize(n);
  return out;
#else
  SKIP("built without zlib");
#endif
}

}  // namespace

TEST(crc32_known_value) {
  const char* s = "123456789";
  CHECK_EQ(png_crc32(reinterpret_cast<const uint8_t*>(s), 9), 0xcbf43926u);
}

TEST(png_signature_ihdr_and_pixels) {
  // 3x2 BGRX: red, green, blue / white, black, grey.
  const uint8_t img[] = {0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 0,
                         255, 255, 255, 0, 0, 0, 0, 0, 128, 128, 128, 0};
  auto png = encode_png_bgrx(img, 3, 2);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  CHECK(png.size() > 8 && std::memcmp(png.data(), sig, 8) == 0);
  auto chunks = parse(png);
  CHECK_EQ(chunks.size(), size_t(3));
  CHECK_EQ(chunks[0].type, std::string("IHDR"));
  CHECK_EQ(chunks[0].data.size(), size_t(13));
  CHECK_EQ(be32(&chunks[0].data[0]), 3u);
  CHECK_EQ(be32(&chunks[0].data[4]), 2u);
  CHECK_EQ(chunks[0].data[8], uint8_t(8));
  CHECK_EQ(chunks[0].data[9], uint8_t(2));
  CHECK_EQ(chunks[0].data[12], uint8_t(0));
  CHECK_EQ(chunks[1].type, std::string("IDAT"));
  CHECK_EQ(chunks[2].type, std::string("IEND"));
  auto raw = inflate_all(chunks[1].data, 2 * (1 + 9));
  const uint8_t want[] = {0, 255, 0, 0, 0, 255, 0, 0, 0, 255,
                          0, 255, 255, 255, 0, 0, 0, 128, 128, 128};
  CHECK_EQ(raw.size(), sizeof want);
  CHECK(std::memcmp(raw.data(), want, sizeof want) == 0);
}

TEST(png_screenshot_of_vbe_frame) {
  auto d = std::make_shared<VgaDevice>();
  d->dispi_write(kDispiXres, 64);
  d->dispi_write(kDispiYres, 48);
  d->dispi_write(kDispiBpp, 32);
  d->dispi_write(kDispiEnable, kDispiEnabled | kDispiLfbEnabled);
  uint32_t c = 0x00102030;
  std::memcpy(d->vram() + (47 * 64 + 63) * 4, &c, 4);
  auto png = d->screenshot_png(0);
  auto chunks = parse(png);
  CHECK_EQ(be32(&chunks[0].data[0]), 64u);
  CHECK_EQ(be32(&chunks[0].data[4]), 48u);
  auto raw = inflate_all(chunks[1].data, 48 * (1 + 64 * 3));
  CHECK_EQ(raw.size(), size_t(48 * (1 + 64 * 3)));
  const uint8_t* last = &raw[47 * (1 + 64 * 3) + 1 + 63 * 3];
  CHECK_EQ(last[0], uint8_t(0x10));
  CHECK_EQ(last[1], uint8_t(0x20));
  CHECK_EQ(last[2], uint8_t(0x30));
}
