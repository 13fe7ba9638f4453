// The PC board's chipset in a real Machine under /dev/kvm (SeaBIOS running):
// every chipset device is registered for saved state, so a save never names
// one of them among the devices that cannot save yet; once every device of
// the board saves, the state loads into a new Machine that runs on.
#include <unistd.h>

#include <set>
#include <sstream>
#include <thread>

#include "kvm_helpers.h"
#include "machine/state.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";

// Bus names of the chipset's port handlers and the state names it registers.
const std::set<std::string> kChipsetBusNames = {
    "pci-config", "port92", "acpi-gpe0", "apm", "piix4-pm", "piix4-smbus", "i8042-data", "i8042-cmd", "rtc", "post",
    "fw_cfg", "dma1", "dma-page", "dma-page-high", "dma2", "delay-ed", "fpu", "gameport", "lpt2", "com4", "lpt1",
    "lpt3", "com3", "fdc", "fdc-dir", "acpi-pcihp", "acpi-cpuhp", "pci", "i8042", "piix3", "misc-ports"};
}  // namespace

TEST(pc_chipset_is_registered_and_never_refuses_a_save) {
  require_kvm();
  if (access(kBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
  MachineConfig c;
  c.bios = kBios;
  c.mem_bytes = 64 << 20;
  std::string path = "/tmp/vireo_kvm_state_board_" + std::to_string(getpid());
  std::string msg;
  {
    Machine m(c);
    std::string devices;
    for (auto& [k, v] : m.state_config().items)
      if (k == "devices") devices = "," + v + ",";
    for (const char* n : {"pci", "i8042", "rtc", "piix3", "piix4-pm", "fw_cfg", "post", "misc-ports"})
      CHECK(devices.find(std::string(",") + n + ",") != std::string::npos);
    Run r;
    r.attach(m);
    m.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // SeaBIOS is programming the chipset
    m.pause();
    CHECK(m.state() == RunState::Paused);
    try {
      m.save_state(path);
    } catch (const MachineError& e) {
      msg = e.what();
    }
    m.stop();
  }
  if (!msg.empty()) {
    const std::string head = "these devices cannot save theirs yet: ";
    size_t at = msg.find(head);
    CHECK(at != std::string::npos);
    std::printf("  (the PC still refuses to save, for: %s)\n", msg.c_str() + at + head.size());
    std::stringstream list(msg.substr(at + head.size()));
    std::string name;
    while (std::getline(list, name, ',')) {
      while (!name.empty() && name.front() == ' ') name.erase(name.begin());
      if (kChipsetBusNames.count(name)) {
        std::fprintf(stderr, "chipset device '%s' cannot save\n", name.c_str());
        CHECK(false);
      }
    }
    return;
  }
  // Everything saved: the state loads into a new Machine, which runs on.
  Machine m2(c);
  m2.load_state(path);
  std::remove(path.c_str());
  Run r2;
  r2.attach(m2);
  m2.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(m2.state() == RunState::Running);
  m2.stop();
}
