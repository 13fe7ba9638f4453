// Seeded random traffic on every IDE port (both channels' command and
// control blocks, the bus-master block) with a disk and a CD attached and
// PRD tables pointing anywhere: nothing may crash, hang or touch memory
// outside guest RAM. Afterwards the devices must still work.
#include <cstring>
#include <random>

#include "check.h"
#include "devices/ide/piix_ide.h"

using namespace vireo;
using namespace vireo::ide;

namespace {

void run_fuzz(uint32_t seed, int ops) {
  std::vector<uint8_t> ram(256 * 1024, 0);
  GuestMemory mem;
  mem.add_region(0, ram.size(), ram.data());
  auto ide = std::make_shared<PiixIde>(&mem, IrqLine(), IrqLine());
  ide->config_write(pci::kCommand, 2, pci::kCmdIo | pci::kCmdMaster);
  auto disk = std::make_shared<block::MemoryBackend>(256 * 1024);
  auto iso = std::make_shared<block::MemoryBackend>(64 * 2048);
  ide->channel(0)->attach_disk(0, disk);
  ide->channel(0)->attach_cdrom(1, iso);
  ide->channel(1)->attach_cdrom(0, iso);
  std::mt19937 rng(seed);
  // Bias towards interesting values: real commands and small counts.
  const uint8_t cmds[] = {0xec, 0xa1, 0xa0, 0x20, 0x24, 0x30, 0x34, 0xc4, 0xc5, 0xc6, 0xc8, 0x25,
                          0xca, 0x35, 0x40, 0xe7, 0xef, 0x91, 0xe5, 0x90, 0x08, 0xf8, 0x27, 0x29};
  const uint8_t scsi[] = {0x00, 0x03, 0x12, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2b, 0x43,
                          0x46, 0x4a, 0x51, 0x5a, 0xa8, 0xbb, 0xbd};
  for (int i = 0; i < ops; i++) {
    auto& ch = *ide->channel(rng() & 1);
    uint32_t kind = rng() % 16;
    uint8_t v = uint8_t(rng());
    switch (kind) {
      case 0: ch.cmd_write(7, cmds[rng() % sizeof cmds], 1); break;
      case 1: ch.cmd_write(1 + rng() % 6, rng() % 3 ? v & 0x0f : v, 1); break;
      case 2: case 3: ch.cmd_write(0, rng(), 1u << (rng() % 3)); break;
      case 4: case 5: ch.cmd_read(0, 1u << (rng() % 3)); break;
      case 6: ch.cmd_read(rng() % 8, 1); break;
      case 7: ch.ctl_write(rng() % 4 ? v & 0x82 : v); break;
      case 8: ch.ctl_read(); break;
      case 9: ch.bm_write(rng() % 8, v); break;
      case 10: ch.bm_read(rng() % 8); break;
      case 11: {  // a plausible PRD entry somewhere in (or beyond) RAM
        uint32_t at = rng() % (ram.size() - 8) & ~7u;
        uint32_t e[2] = {uint32_t(rng() % (rng() & 1 ? 0xffffffffu : uint32_t(ram.size()))), uint32_t(rng())};
        std::memcpy(&ram[at], e, 8);
        break;
      }
      case 12: {  // a whole packet with a real opcode
        ch.cmd_write(7, 0xa0, 1);
        ch.cmd_write(0, scsi[rng() % sizeof scsi] | (rng() & 0xff00), 2);
        for (int k = 0; k < 5; k++) ch.cmd_write(0, rng() & (k == 3 ? 0x00ff : 0x0101), 2);
        break;
      }
      case 13:
        if (rng() % 64 == 0) {
          if (rng() & 1) ch.eject(rng() & 1);
          else ch.change_media(rng() & 1, rng() & 1 ? iso : nullptr);
        }
        break;
      case 14: ide->bmdma()->write(rng() % 16, std::span<const uint8_t>(&v, 1)); break;
      default: ch.cmd_write(6, rng() & 1 ? 0xa0 | (v & 0x5f) : v, 1); break;
    }
  }
  // Still functional: reset, then IDENTIFY the disk.
  auto& ch = *ide->channel(0);
  ch.ctl_write(kCtlSrst);
  ch.ctl_write(0);
  ch.cmd_write(6, 0xa0, 1);
  ch.cmd_write(7, 0xec, 1);
  CHECK_EQ(ch.ctl_read(), uint8_t(0x58));
  CHECK_EQ(ch.cmd_read(0, 2), 0x0040u);
}

}  // namespace

TEST(fuzz_ide_ports_seed_1) { run_fuzz(1, 100000); }
TEST(fuzz_ide_ports_seed_2) { run_fuzz(0xdecafbad, 100000); }
