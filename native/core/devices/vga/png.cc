#include "devices/vga/png.h"

#include <algorithm>
#include <array>
#include <cstring>

#ifdef VIREO_HAVE_ZLIB
#include <zlib.h>
#endif

namespace vireo::vga {

namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> t = [] {
    std::array<uint32_t, 256> r{};
    for (uint32_t n = 0; n < 256; n++) {
      uint32_t c = n;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      r[n] = c;
    }
    return r;
  }();
  return t;
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(uint8_t(v >> 24));
  out.push_back(uint8_t(v >> 16));
  out.push_back(uint8_t(v >> 8));
  out.push_back(uint8_t(v));
}

void chunk(std::vector<uint8_t>& out, const char type[4], const uint8_t* data, size_t len) {
  put_be32(out, uint32_t(len));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  if (len) out.insert(out.end(), data, data + len);
  put_be32(out, png_crc32(out.data() + start, len + 4));
}

// zlib stream of `raw`: deflate when zlib is available, else stored blocks.
std::vector<uint8_t> zlib_wrap(const std::vector<uint8_t>& raw) {
#ifdef VIREO_HAVE_ZLIB
  uLongf cap = compressBound(uLong(raw.size()));
  std::vector<uint8_t> z(cap);
  if (compress2(z.data(), &cap, raw.data(), uLong(raw.size()), 6) == Z_OK) {
    z.resize(cap);
    return z;
  }
#endif
  std::vector<uint8_t> out = {0x78, 0x01};
  size_t pos = 0;
  do {
    size_t n = std::min<size_t>(raw.size() - pos, 65535);
    bool last = pos + n == raw.size();
    out.push_back(last ? 1 : 0);
    out.push_back(uint8_t(n));
    out.push_back(uint8_t(n >> 8));
    out.push_back(uint8_t(~n));
    out.push_back(uint8_t(~n >> 8));
    out.insert(out.end(), raw.begin() + pos, raw.begin() + pos + n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(out, (b << 16) | a);
  return out;
}

}  // namespace

uint32_t png_crc32(const uint8_t* data, size_t len, uint32_t crc) {
  auto& t = crc_table();
  uint32_t c = ~crc;
  for (size_t i = 0; i < len; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return ~c;
}

std::vector<uint8_t> encode_png_bgrx(const uint8_t* bgrx, uint32_t width, uint32_t height, size_t stride) {
  if (stride == 0) stride = size_t(width) * 4;
  std::vector<uint8_t> raw;
  raw.reserve((size_t(width) * 3 + 1) * height);
  for (uint32_t y = 0; y < height; y++) {
    raw.push_back(0);  // filter: none
    const uint8_t* row = bgrx + y * stride;
    for (uint32_t x = 0; x < width; x++) {
      raw.push_back(row[4 * x + 2]);
      raw.push_back(row[4 * x + 1]);
      raw.push_back(row[4 * x + 0]);
    }
  }
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t ihdr[13] = {};
  for (int i = 0; i < 4; i++) {
    ihdr[i] = uint8_t(width >> (24 - 8 * i));
    ihdr[4 + i] = uint8_t(height >> (24 - 8 * i));
  }
  ihdr[8] = 8;  // bit depth
  ihdr[9] = 2;  // colour type: truecolour RGB
  chunk(out, "IHDR", ihdr, sizeof ihdr);
  std::vector<uint8_t> z = zlib_wrap(raw);
  chunk(out, "IDAT", z.data(), z.size());
  chunk(out, "IEND", nullptr, 0);
  return out;
}

}  // namespace vireo::vga
