// Kernel boot on the PC board (issue 9): --kernel with firmware gives the same
// PC as a firmware boot. SeaBIOS runs POST, boots Vireo's option ROM, which
// has Vireo load the kernel with the firmware's E820 map and enters it.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <thread>

#include "kvm_helpers.h"
#include "devices/vga/vga.h"
#include "machine/pc_board.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";

void require_seabios() {
  if (access(kBios, R_OK) != 0 || access(kVgaBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
}

MachineConfig pc_kernel(const std::string& kernel, uint64_t mem_mib) {
  MachineConfig c;
  c.bios = kBios;
  c.vga_bios = kVgaBios;
  c.kernel = kernel;
  c.mem_bytes = mem_mib << 20;
  return c;
}

// A scratch raw disk image, removed at the end of the test.
struct TempDisk {
  std::string path;
  explicit TempDisk(size_t mib) {
    char t[] = "/tmp/vireo-kboot-XXXXXX";
    int fd = mkstemp(t);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, off_t(mib) << 20) == 0);
    close(fd);
    path = t;
  }
  ~TempDisk() { unlink(path.c_str()); }
};

bool wait_screen(PcBoard& b, Run& r, const std::string& needle, int seconds, std::string* screen = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string t = b.screen_text();
    if (screen) *screen = t;
    if (t.find(needle) != std::string::npos) return true;
    {
      std::lock_guard g(r.mu);
      if (r.done) return false;
    }
    b.poll(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}
}  // namespace

TEST(multiboot_kernel_on_the_pc_shows_on_vga_and_sees_the_disk) {
  require_kvm();
  require_seabios();
  TempDisk disk(16);
  MachineConfig c = pc_kernel(guest("vgabanner.bin"), 64);
  c.disks.push_back({disk.path, "raw", false, false, false, false});
  Machine m(c);
  CHECK_EQ(m.boot_result().info.format, std::string("multiboot-aout"));
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("disk: ", 120));
  CHECK(r.wait_output("\r\n", 5));
  std::string screen;
  CHECK(wait_screen(*b, r, "disk: VIREO HARDDISK", 10, &screen));
  CHECK(screen.find("Vireo multiboot guest on the PC board") != std::string::npos);
  CHECK(r.serial.find("magic 2badb002") != std::string::npos);
  CHECK(r.serial.find("disk: VIREO HARDDISK") != std::string::npos);
  auto png = b->screenshot_png();
  CHECK(png.size() > 100);
  CHECK_EQ(png[1], uint8_t('P'));
  CHECK(m.state() == RunState::Running);
  m.stop();
}
