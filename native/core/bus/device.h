// The one handler shape for port I/O and MMIO. A device sees an offset into the
// range it was registered at and a byte span; it never sees an absolute address.
#pragma once
#include <cstdint>
#include <span>

namespace vireo {

class IoDevice {
public:
  virtual ~IoDevice() = default;
  // Fill `data` (1, 2, 4 or 8 bytes, little-endian) with the value at `offset`.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  // Store `data` at `offset`.
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

// Little-endian helpers for devices that think in integers.
inline uint64_t span_to_u64(std::span<const uint8_t> d) {
  uint64_t v = 0;
  for (size_t i = 0; i < d.size() && i < 8; i++) v |= uint64_t(d[i]) << (8 * i);
  return v;
}
inline void u64_to_span(uint64_t v, std::span<uint8_t> d) {
  for (size_t i = 0; i < d.size() && i < 8; i++) d[i] = uint8_t(v >> (8 * i));
}

}  // namespace vireo
