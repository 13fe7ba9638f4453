// The byte reader every libFuzzer target parses its input with, and the
// matching writer fuzz_seeds.cc builds seed inputs with. Values are little-
// endian; past the end every read returns 0 (an empty span), so any input is
// a valid program and a short one just stops early.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace vireo::fuzz {

struct Reader {
  const uint8_t* p;
  size_t n;
  Reader(const uint8_t* data, size_t size) : p(data), n(size) {}
  bool empty() const { return n == 0; }
  uint64_t le(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes && n; i++, p++, n--) v |= uint64_t(*p) << (8 * i);
    return v;
  }
  uint8_t u8() { return uint8_t(le(1)); }
  uint16_t u16() { return uint16_t(le(2)); }
  uint32_t u32() { return uint32_t(le(4)); }
  uint64_t u64() { return le(8); }
  // 1, 2, 4 or 8 from two bits.
  int size() { return 1 << (u8() & 3); }
  std::span<const uint8_t> bytes(size_t k) {
    k = std::min(k, n);
    std::span<const uint8_t> s(p, k);
    p += k;
    n -= k;
    return s;
  }
  std::span<const uint8_t> rest() { return bytes(n); }
};

struct Writer {
  std::vector<uint8_t> v;
  Writer& le(uint64_t x, int bytes) {
    for (int i = 0; i < bytes; i++) v.push_back(uint8_t(x >> (8 * i)));
    return *this;
  }
  Writer& u8(uint64_t x) { return le(x, 1); }
  Writer& u16(uint64_t x) { return le(x, 2); }
  Writer& u32(uint64_t x) { return le(x, 4); }
  Writer& u64(uint64_t x) { return le(x, 8); }
  // The encoding Reader::size() decodes.
  Writer& size(int s) { return u8(s == 8 ? 3 : s == 4 ? 2 : s == 2 ? 1 : 0); }
  Writer& bytes(std::span<const uint8_t> b) {
    v.insert(v.end(), b.begin(), b.end());
    return *this;
  }
  Writer& str(const std::string& s) { return bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
};

inline uint64_t bytes_le(std::span<const uint8_t> b) {
  uint64_t v = 0;
  for (size_t i = 0; i < b.size() && i < 8; i++) v |= uint64_t(b[i]) << (8 * i);
  return v;
}

}  // namespace vireo::fuzz
