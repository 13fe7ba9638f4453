// vireo-display-bench: the std-vga display path without a vCPU (bench/engine).
//
// Sets 1024x768x32 with the linear framebuffer through the Bochs dispi
// registers, then
//   1. busy: repaints the whole visible frame in VRAM (as a guest would through
//      the LFB), marks its pages in a KVM-style dirty bitmap and calls poll();
//      the consumer copies every rectangle into its own framebuffer. Counts
//      frames delivered per second and the bytes per frame.
//   2. idle: polls at 60 Hz with an empty dirty bitmap for --idle-s seconds and
//      counts the frames delivered (should be 0) and the CPU time spent.
// Prints one JSON line.
//
//   vireo-display-bench [--busy-s 3] [--idle-s 5] [--width 1024 --height 768]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "devices/vga/vga.h"

using namespace vireo::vga;

namespace {

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

double cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  double busy_s = 3, idle_s = 5;
  uint32_t W = 1024, H = 768;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--busy-s") busy_s = std::atof(argv[i + 1]);
    else if (a == "--idle-s") idle_s = std::atof(argv[i + 1]);
    else if (a == "--width") W = uint32_t(std::atoi(argv[i + 1]));
    else if (a == "--height") H = uint32_t(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: vireo-display-bench [--busy-s S] [--idle-s S] [--width W --height H]\n");
      return 1;
    }
  }

  auto vga = std::make_shared<VgaDevice>();
  vga->dispi_write(kDispiXres, uint16_t(W));
  vga->dispi_write(kDispiYres, uint16_t(H));
  vga->dispi_write(kDispiBpp, 32);
  vga->dispi_write(kDispiEnable, kDispiEnabled | kDispiLfbEnabled);

  const size_t pages = vga->vram_size() / VgaDevice::kPageSize;
  std::vector<uint64_t> dirty((pages + 63) / 64, 0), clean(dirty.size(), 0);
  const size_t fb_bytes = size_t(W) * H * 4;
  const size_t fb_pages = (fb_bytes + VgaDevice::kPageSize - 1) / VgaDevice::kPageSize;
  for (size_t p = 0; p < fb_pages; p++) dirty[p / 64] |= uint64_t(1) << (p % 64);

  // The consumer's copy of the screen (what a canvas would hold).
  std::vector<uint8_t> screen(fb_bytes);
  auto consume = [&](const FrameUpdate& up) {
    size_t bytes = 0;
    for (const auto& dr : up.rects) {
      for (uint32_t y = 0; y < dr.r.h; y++)
        std::memcpy(screen.data() + (size_t(dr.r.y + y) * up.width + dr.r.x) * 4, dr.bgrx.data() + size_t(y) * dr.r.w * 4,
                    size_t(dr.r.w) * 4);
      bytes += dr.bgrx.size();
    }
    return bytes;
  };

  // The mode change itself (first full frame) is not counted.
  if (auto up = vga->poll(nullptr, now_ns(), false)) consume(*up);

  // 1. Busy: every frame changes every pixel.
  uint32_t* fb = reinterpret_cast<uint32_t*>(vga->vram());
  uint64_t frames = 0, bytes = 0, full_frames = 0;
  double write_ns = 0, poll_ns = 0;
  const uint64_t t0 = now_ns();
  const double c0 = cpu_s();
  uint64_t end = t0 + uint64_t(busy_s * 1e9);
  uint32_t color = 0x00102030;
  while (now_ns() < end) {
    uint64_t a = now_ns();
    color = color * 1664525u + 1013904223u;  // a new colour each frame
    uint32_t c = color & 0x00ffffff;
    for (size_t i = 0; i < size_t(W) * H; i++) fb[i] = c ^ uint32_t(i & 0xff);
    uint64_t b = now_ns();
    auto up = vga->poll(dirty.data(), b, false);
    if (up) {
      size_t n = consume(*up);
      bytes += n;
      frames++;
      if (n == fb_bytes) full_frames++;
    }
    uint64_t e = now_ns();
    write_ns += double(b - a);
    poll_ns += double(e - b);
  }
  const double busy_wall = double(now_ns() - t0) / 1e9;
  const double busy_cpu = cpu_s() - c0;

  // 2. Idle: 60 Hz polls with nothing written.
  uint64_t idle_frames = 0, idle_polls = 0;
  const double c1 = cpu_s();
  const uint64_t t1 = now_ns();
  uint64_t next = t1;
  const uint64_t period = 1'000'000'000ull / 60;
  while (now_ns() < t1 + uint64_t(idle_s * 1e9)) {
    next += period;
    auto up = vga->poll(clean.data(), now_ns(), false);
    idle_polls++;
    if (up) {
      idle_frames++;
      consume(*up);
    }
    std::this_thread::sleep_until(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(next)));
  }
  const double idle_wall = double(now_ns() - t1) / 1e9;
  const double idle_cpu = cpu_s() - c1;

  std::printf(
      "{\"width\":%u,\"height\":%u,\"bpp\":32,\"busy_s\":%.3f,\"frames\":%llu,\"full_frames\":%llu,\"fps\":%.1f,"
      "\"bytes_per_frame\":%.0f,\"mb_per_s\":%.1f,\"vram_write_ms_per_frame\":%.3f,\"poll_consume_ms_per_frame\":%.3f,"
      "\"display_path_max_fps\":%.1f,\"busy_cpu_s\":%.3f,\"idle_s\":%.3f,\"idle_polls\":%llu,\"idle_frames\":%llu,"
      "\"idle_cpu_ms\":%.1f}\n",
      W, H, busy_wall, (unsigned long long)frames, (unsigned long long)full_frames, double(frames) / busy_wall,
      frames ? double(bytes) / double(frames) : 0.0, double(bytes) / busy_wall / 1e6, frames ? write_ns / double(frames) / 1e6 : 0.0,
      frames ? poll_ns / double(frames) / 1e6 : 0.0, poll_ns > 0 ? double(frames) / (poll_ns / 1e9) : 0.0, busy_cpu, idle_wall,
      (unsigned long long)idle_polls, (unsigned long long)idle_frames, idle_cpu * 1e3);
  return 0;
}
