// Minimal PNG encoder for screenshots: 8-bit RGB, no interlace, filter 0.
// Input is the display surface format (BGRX, 4 bytes per pixel).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vireo::vga {

// `stride` is the distance in bytes between rows of `bgrx` (0 = width * 4).
std::vector<uint8_t> encode_png_bgrx(const uint8_t* bgrx, uint32_t width, uint32_t height, size_t stride = 0);

// CRC-32 (ISO 3309, as used by PNG chunks); exposed for tests.
uint32_t png_crc32(const uint8_t* data, size_t len, uint32_t crc = 0);

}  // namespace vireo::vga
