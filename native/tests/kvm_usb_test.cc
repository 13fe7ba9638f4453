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
#include "machine/pc_board.h"

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
