// Random writes and reads to every I/O port and to the board's MMIO ranges of
// a real PC board (no vCPU running): nothing may crash the host, and the
// machine must still boot SeaBIOS afterwards.
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "devices/vga/vga.h"
#include "kvm_helpers.h"
#include "machine/pc_board.h"

using namespace vireo;

TEST(random_port_and_mmio_traffic_then_firmware_still_boots) {
  require_kvm();
  if (access("/usr/share/seabios/bios.bin", R_OK) != 0) SKIP("SeaBIOS is missing (Debian package seabios)");
  MachineConfig c;
  c.bios = "/usr/share/seabios/bios.bin";
  c.vga_bios = "/usr/share/seabios/vgabios-stdvga.bin";
  c.mem_bytes = 64 << 20;
  Machine m(c);
  std::mt19937_64 rng(20261123);
  const int sizes[] = {1, 2, 4};
  // Ports whose side effects reset the machine are part of the test too:
  // they must only request a reset, never crash.
  for (int i = 0; i < 300000; i++) {
    uint64_t r = rng();
    int size = sizes[r % 3];
    uint8_t buf[8];
    for (auto& b : buf) b = uint8_t(rng());
    if ((r >> 8) % 4 == 0) {
      // MMIO: the VGA window, the PCI hole where BARs may land, IOAPIC/LAPIC excluded (in-kernel).
      uint64_t ranges[][2] = {{0xa0000, 0x20000}, {0xe0000000, 0x1e000000}};
      auto& rg = ranges[(r >> 16) % 2];
      uint64_t addr = rg[0] + (rng() % rg[1]);
      if ((r >> 20) & 1) m.mmio().write(addr, {buf, size_t(size)});
      else m.mmio().read(addr, {buf, size_t(size)});
    } else {
      uint16_t port = uint16_t(rng());
      if (port == 0xf4) continue;  // isa-debug-exit: ends the machine by design (tested in kvm_boot_test)
      if ((r >> 20) & 1) m.pio().write(port, {buf, size_t(size)});
      else m.pio().read(port, {buf, size_t(size)});
    }
  }
  // Still a working machine? (The fuzz may have requested a stop: then it ends at once, also fine.)
  Run run;
  run.attach(m);
  m.start();
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool banner = false;
  while (std::chrono::steady_clock::now() < deadline && !banner) {
    banner = b->screen_text().find("SeaBIOS") != std::string::npos;
    {
      std::lock_guard g(run.mu);
      if (run.done) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  m.stop();
  CHECK_EQ(m.stop_info().kind, std::string("stopped"));
  CHECK(banner);
}
