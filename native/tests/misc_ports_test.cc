#include "devices/legacy/misc_ports.h"

#include <string>

#include "check.h"

using namespace vireo;

namespace {
struct Fake : IoDevice {
  void read(uint64_t, std::span<uint8_t> d) override { std::fill(d.begin(), d.end(), 0x11); }
  void write(uint64_t, std::span<const uint8_t>) override {}
};
uint8_t inb(Bus& b, uint16_t p) {
  uint8_t v = 0;
  b.read(p, {&v, 1});
  return v;
}
void outb(Bus& b, uint16_t p, uint8_t v) { b.write(p, {&v, 1}); }
}  // namespace

TEST(ranges_do_not_overlap_each_other) {
  for (auto& a : MiscPorts::kAll) {
    for (auto& b : MiscPorts::kAll) {
      if (&a == &b) continue;
      bool overlap = a.base < b.base + b.len && b.base < a.base + a.len;
      if (overlap) std::printf("overlap %s %s\n", a.name, b.name);
      CHECK(!overlap);
    }
  }
}

TEST(register_all_claims_free_ranges_only) {
  Bus pio;
  auto real = std::make_shared<Fake>();
  pio.insert(real, 0x2f8, 8, "real-com2");
  std::string out;
  MiscPorts m([&](uint8_t c) { out += char(c); });
  auto skipped = m.register_all(pio);
  CHECK_EQ(skipped.size(), size_t(1));
  CHECK_EQ(skipped[0], std::string("com2"));
  CHECK_EQ(inb(pio, 0x2f8), 0x11);  // the real device kept its port
  CHECK_EQ(inb(pio, 0x0d), 0xff);   // DMA
  CHECK_EQ(inb(pio, 0xdf), 0xff);
  CHECK_EQ(inb(pio, 0xae00), 0x00);  // hotplug: no events
  outb(pio, 0x0d, 0);                // DMA master clear: ignored
  CHECK_EQ(m.snapshot().dummy_writes, uint64_t(1));
}

TEST(post_code_recorded) {
  Bus pio;
  MiscPorts m;
  m.register_all(pio);
  outb(pio, 0x80, 0x42);
  outb(pio, 0x80, 0x43);
  CHECK_EQ(m.post_code(), 0x43);
  CHECK_EQ(inb(pio, 0x80), 0x43);
  CHECK_EQ(m.snapshot().post_writes, uint64_t(2));
}

TEST(debugcon_readback_and_output) {
  Bus pio;
  std::string out;
  MiscPorts m([&](uint8_t c) { out += char(c); });
  m.register_all(pio);
  CHECK_EQ(inb(pio, 0x402), 0xe9);  // SeaBIOS qemu_debug_preinit checks this
  for (char c : std::string("SeaBIOS\n")) outb(pio, 0x402, uint8_t(c));
  outb(pio, 0xe9, '!');
  CHECK_EQ(out, std::string("SeaBIOS\n!"));
}
