// SeaBIOS finds the PIIX3 UHCI at 00:01.2 and enumerates the USB tablet on
// its first port, as on QEMU's pc with -device usb-tablet: its debug log
// (port 0x402, VIREO_DEBUGCON=1) names the controller, and the tablet ends up
// at the address SeaBIOS gave it, having been asked for its descriptors.
// SeaBIOS drives only boot keyboards and mice, so it leaves the tablet
// unconfigured and logs no "Initialized USB HUB" line for it (the same as
// under QEMU).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "kvm_helpers.h"
#include "devices/usb/hid_tablet.h"
#include "devices/vga/vga.h"
#include "machine/pc_board.h"
#include "pc_typing.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST(seabios_enumerates_the_usb_tablet) {
  require_kvm();
  if (access(kBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
  MachineConfig c;
  c.bios = kBios;
  if (access(kVgaBios, R_OK) == 0) c.vga_bios = kVgaBios;
  c.mem_bytes = 128ull << 20;
  char path[] = "/tmp/vireo-debugcon-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  std::fflush(stderr);
  int saved = dup(2);
  setenv("VIREO_DEBUGCON", "1", 1);
  dup2(fd, 2);
  std::string log;
  bool found = false;
  int address = -1;
  bool configured = true;
  {
    Machine m(c);
    Run r;
    r.attach(m);
    m.start();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      std::fflush(stderr);
      log = read_file(path);
      if (log.find("No bootable device") != std::string::npos) {
        found = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    auto* b = dynamic_cast<PcBoard*>(m.board());
    CHECK(b && b->tablet());
    address = b->tablet()->address();
    configured = b->tablet()->configured();
    m.stop();
    std::fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unsetenv("VIREO_DEBUGCON");
    log = read_file(path);
    close(fd);
    unlink(path);
  }
  std::istringstream ls(log);
  std::string line;
  while (std::getline(ls, line)) {
    if (line.find("USB") != std::string::npos || line.find("UHCI") != std::string::npos ||
        line.find("usb") != std::string::npos)
      std::printf("  seabios: %s\n", line.c_str());
  }
  std::printf("  tablet: address %d, %s\n", address, configured ? "configured" : "not configured");
  if (!found) std::printf("debug log:\n%s\n", log.c_str());
  CHECK(found);
  size_t uhci = log.find("UHCI init on dev 00:01.2");
  CHECK(uhci != std::string::npos);
  CHECK(log.find("All threads complete", uhci) != std::string::npos);  // USB set-up ended
  CHECK_EQ(address, 1);  // SET_ADDRESS from SeaBIOS, then GET_DESCRIPTOR at 1
  CHECK(!configured);
}

// guests/input.asm, a multiboot kernel with its own polled UHCI driver and
// i8042 reader, booted on the PC (SeaBIOS + Vireo's kernel ROM): it resets
// the controller and the port, enumerates the tablet (device descriptor,
// SET_ADDRESS, configuration, SET_CONFIGURATION), polls its interrupt
// endpoint and prints every report; and prints each line typed on the
// keyboard. What the Machine API injects arrives exactly: positions (pixel
// to 0..32767 as PcBoard::pointer_abs maps the current screen, and raw
// tablet coordinates), buttons, both wheels' signs, and a line of shifted
// and unshifted symbols through the set-1 scancodes the PC gives.
namespace {
// pointer_abs's mapping: pixel 0 is 0, the last pixel 32767, rounded to nearest.
int tablet_coord(int px, uint32_t n) { return int((int64_t(px) * 32767 + (n - 1) / 2) / (n - 1)); }
}  // namespace

TEST(the_input_guest_reports_pointer_wheel_and_typed_lines_exactly) {
  require_kvm();
  if (access(kBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
  MachineConfig c;
  c.bios = kBios;
  if (access(kVgaBios, R_OK) == 0) c.vga_bios = kVgaBios;
  c.mem_bytes = 64ull << 20;
  c.kernel = guest("input.bin");
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b && b->tablet());
  Run r;
  r.attach(m);
  m.start();
  auto t0 = std::chrono::steady_clock::now();
  bool ready = r.wait_output("INPUT ready\r\n", 240);
  if (!ready) {
    m.stop();
    std::printf("serial:\n%s\n", r.serial.c_str());
  }
  CHECK(ready);
  std::printf("        ready after %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  CHECK(r.serial.find("UHCI at 00:01.2 io 0x") != std::string::npos);
  CHECK(r.serial.find("USB device 1209:0001 on port 1\r\n") != std::string::npos);
  CHECK(r.serial.find("configured, interrupt endpoint 0x81\r\n") != std::string::npos);
  CHECK(b->tablet()->configured());
  CHECK_EQ(b->tablet()->address(), 1);
  for (int i = 0; i < 50 && !b->tablet_active(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(b->tablet_active());  // the consoles send absolute positions now

  auto expect_line = [&](const std::string& line) {
    bool ok = r.wait_output(line + "\r\n", 30);
    if (!ok) std::printf("wanted \"%s\"; serial:\n%s\n", line.c_str(), r.serial.c_str());
    CHECK(ok);
  };
  auto ptr = [](int x, int y, int b, int w, int p) {
    return "PTR x=" + std::to_string(x) + " y=" + std::to_string(y) + " b=" + std::to_string(b) +
           " w=" + std::to_string(w) + " p=" + std::to_string(p);
  };
  // Raw tablet coordinates.
  b->tablet()->pointer(12345, 23456, 0, 0);
  expect_line(ptr(12345, 23456, 0, 0, 0));
  b->tablet()->pointer(32767, 0, usb::HidTablet::kLeft | usb::HidTablet::kForward, 0);
  expect_line(ptr(32767, 0, 17, 0, 0));
  // Pixels of the current screen (text mode: 720x400), the corners exact.
  auto f = b->frame();
  std::printf("        screen %ux%u\n", f.width, f.height);
  CHECK(f.width > 1 && f.height > 1);
  struct { int px, py; uint8_t buttons; } clicks[] = {
      {0, 0, 1}, {int(f.width) - 1, int(f.height) - 1, 1}, {int(f.width) / 2, int(f.height) / 3, 2}, {123, 45, 4}};
  for (auto& k : clicks) {
    CHECK(b->pointer_abs(k.px, k.py, k.buttons, 0));
    expect_line(ptr(tablet_coord(k.px, f.width), tablet_coord(k.py, f.height), k.buttons, 0, 0));
    CHECK(b->pointer_abs(k.px, k.py, 0, 0));
    expect_line(ptr(tablet_coord(k.px, f.width), tablet_coord(k.py, f.height), 0, 0, 0));
  }
  CHECK(tablet_coord(int(f.width) - 1, f.width) == 32767);
  // A fast click (move, press, release back to back, as a browser sends them):
  // all three arrive, none merged away.
  for (int i = 0; i < 20; i++) {
    int px = 200 + i, py = 100 + i;
    CHECK(b->pointer_abs(px, py, 0, 0));
    CHECK(b->pointer_abs(px, py, 1, 0));
    CHECK(b->pointer_abs(px, py, 0, 0));
    expect_line(ptr(tablet_coord(px, f.width), tablet_coord(py, f.height), 1, 0, 0) + "\r\n" +
                ptr(tablet_coord(px, f.width), tablet_coord(py, f.height), 0, 0, 0));
  }
  // Off the screen clamps to its edge.
  CHECK(b->pointer_abs(int(f.width) + 50, -7, 0, 0));
  expect_line(ptr(32767, 0, 0, 0, 0));
  // Wheels: + away from the user, - toward; pan + right, - left.
  const int x = tablet_coord(10, f.width), y = tablet_coord(20, f.height);
  CHECK(b->pointer_abs(10, 20, 0, 1));
  expect_line(ptr(x, y, 0, 1, 0));
  CHECK(b->pointer_abs(10, 20, 0, -3));
  expect_line(ptr(x, y, 0, -3, 0));
  CHECK(b->pointer_abs(10, 20, 0, 0, 2));
  expect_line(ptr(x, y, 0, 0, 2));
  CHECK(b->pointer_abs(10, 20, 0, 0, -1));
  expect_line(ptr(x, y, 0, 0, -1));

  // Keyboard: shifted symbols, the unshifted ones, Backspace.
  type_keys(*b, "Hello, World! @#$%^&*()_+{}|:\"<>?~\n");
  expect_line("KEY Hello, World! @#$%^&*()_+{}|:\"<>?~");
  type_keys(*b, "az09 -=[]\\;',./`\n");
  expect_line("KEY az09 -=[]\\;',./`");
  type_keys(*b, "abc\bd\n");
  expect_line("KEY abd");
  bool running = m.state() == RunState::Running;
  m.stop();
  CHECK(running);
  CHECK(r.serial.find("failed") == std::string::npos);
  CHECK(r.serial.find("PTR error") == std::string::npos);
}
