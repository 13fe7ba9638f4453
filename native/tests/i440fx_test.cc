#include "devices/pci/i440fx.h"

#include <memory>
#include <vector>

#include "check.h"

using namespace vireo;
using namespace vireo::pci;

namespace {
struct Rig {
  Bus pio, mmio;
  PciHost host{pio, mmio};
  int pam_calls = 0;
  std::vector<I440fx::PamRegion> last;
  std::vector<uint8_t> smrams;
  std::shared_ptr<I440fx> nb;
  Rig() {
    I440fx::Callbacks cb;
    cb.pam_changed = [this](const std::vector<I440fx::PamRegion>& r) {
      pam_calls++;
      last = r;
    };
    cb.smram_changed = [this](uint8_t v) { smrams.push_back(v); };
    nb = std::make_shared<I440fx>(cb);
    host.attach(0, 0, nb);
  }
  void wb(uint32_t reg, uint8_t v) { host.config_write(0, 0, 0, reg, 1, v); }
  uint32_t rb(uint32_t reg) { return host.config_read(0, 0, 0, reg, 1); }
};
}  // namespace

TEST(ids_and_qemu_subsystem) {
  Rig r;
  CHECK_EQ(r.host.config_read(0, 0, 0, 0, 4), 0x12378086u);
  CHECK_EQ(r.host.config_read(0, 0, 0, 0x2c, 4), 0x11001af4u);
  CHECK_EQ(r.host.config_read(0, 0, 0, 0x08, 4), 0x06000002u);
  CHECK_EQ(r.rb(0x0e), 0u);
}

TEST(pam_storage_masks_and_callback) {
  Rig r;
  r.wb(0x59, 0xff);
  CHECK_EQ(r.rb(0x59), 0x30u);
  CHECK_EQ(r.pam_calls, 1);
  CHECK_EQ(r.last.size(), size_t(13));
  CHECK_EQ(r.last[0].base, uint64_t(0xf0000));
  CHECK_EQ(int(r.last[0].attr), int(I440fx::kPamReadWrite));
  // SeaBIOS' make_bios_writable: 0x33 in PAM1..6 as one dword + words.
  r.host.config_write(0, 0, 0, 0x5a, 2, 0x3311);
  CHECK_EQ(r.rb(0x5a), 0x11u);
  CHECK_EQ(r.rb(0x5b), 0x33u);
  CHECK_EQ(r.last[1].base, uint64_t(0xc0000));
  CHECK_EQ(int(r.last[1].attr), int(I440fx::kPamReadOnly));
  CHECK_EQ(r.last[3].base, uint64_t(0xc8000));
  CHECK_EQ(int(r.last[4].attr), int(I440fx::kPamReadWrite));
  CHECK_EQ(r.last[12].base, uint64_t(0xec000));
  int calls = r.pam_calls;
  r.wb(0x5b, 0x33);  // no change, no callback
  CHECK_EQ(r.pam_calls, calls);
}

TEST(smram_lock) {
  Rig r;
  CHECK_EQ(r.rb(0x72), 0x02u);
  r.wb(0x72, 0x4a);  // D_OPEN | G_SMRAME
  CHECK_EQ(r.rb(0x72), 0x4au);
  r.wb(0x72, 0x1a);  // lock
  CHECK_EQ(r.rb(0x72), 0x1au);
  r.wb(0x72, 0x42);  // cannot reopen or unlock
  CHECK_EQ(r.rb(0x72) & 0x50, 0x10u);
  CHECK(!r.smrams.empty());
  r.host.reset_all();
  CHECK_EQ(r.rb(0x72), 0x02u);
  r.wb(0x72, 0x4a);
  CHECK_EQ(r.rb(0x72), 0x4au);
}

TEST(reset_clears_pam) {
  Rig r;
  r.wb(0x5f, 0x33);
  r.host.reset_all();
  CHECK_EQ(r.rb(0x5f), 0u);
  CHECK_EQ(int(r.last[12].attr), int(I440fx::kPamPci));
}
