// libFuzzer target: the PIIX IDE controller's ATA and ATAPI command
// sequences (taskfile writes, PIO data, packets, bus-master DMA with PRD
// tables in a fuzzed 64 KiB guest RAM), a 256 KiB disk on channel 0 unit 0,
// a CD on channel 0 unit 1 and channel 1 unit 0.
// Input: u16 n + n bytes of RAM image, then ops (u8 opcode, see the switch).
#include <cstring>

#include "block/block.h"
#include "devices/ide/piix_ide.h"
#include "fuzz_input.h"

using namespace vireo;
using namespace vireo::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  std::vector<uint8_t> ram(64 << 10, 0);
  GuestMemory mem;
  mem.add_region(0, ram.size(), ram.data());
  auto img = in.bytes(in.u16());
  std::memcpy(ram.data(), img.data(), img.size());
  auto ide = std::make_shared<ide::PiixIde>(&mem, IrqLine(), IrqLine());
  ide->config_write(pci::kCommand, 2, pci::kCmdIo | pci::kCmdMaster);
  auto disk = std::make_shared<block::MemoryBackend>(256 << 10);
  auto iso = std::make_shared<block::MemoryBackend>(64 * 2048);
  ide->channel(0)->attach_disk(0, disk);
  ide->channel(0)->attach_cdrom(1, iso);
  ide->channel(1)->attach_cdrom(0, iso);
  for (int ops = 0; !in.empty() && ops < 8192; ops++) {
    uint8_t op = in.u8();
    auto& ch = *ide->channel(op >> 7);
    switch (op & 0x7f) {
      case 0: ch.cmd_write(in.u8() & 7, in.u8(), 1); break;         // taskfile register
      case 1: ch.cmd_write(0, in.u32(), 1u << (in.u8() % 3)); break; // data port
      case 2: ch.cmd_read(0, 1u << (in.u8() % 3)); break;
      case 3: ch.cmd_read(in.u8() & 7, 1); break;
      case 4: ch.ctl_write(in.u8()); break;
      case 5: ch.ctl_read(); break;
      case 6: ch.bm_write(in.u8() & 7, in.u8()); break;
      case 7: ch.bm_read(in.u8() & 7); break;
      case 8: {  // a 12-byte ATAPI packet through the data port
        for (int k = 0; k < 6; k++) ch.cmd_write(0, in.u16(), 2);
        break;
      }
      case 9: {  // many data-port reads (drain a PIO transfer)
        int n = in.u8() * 4;
        for (int k = 0; k < n; k++) ch.cmd_read(0, 4);
        break;
      }
      case 10: {  // many data-port writes
        int n = in.u8() * 4;
        uint32_t v = in.u32();
        for (int k = 0; k < n; k++) ch.cmd_write(0, v, 4);
        break;
      }
      case 11: {  // RAM poke (PRD tables, buffers)
        uint16_t off = in.u16();
        auto b = in.bytes(in.u8());
        std::memcpy(ram.data() + off, b.data(), std::min<size_t>(b.size(), ram.size() - off));
        break;
      }
      case 12: {
        int u = in.u8() & 1;
        if (in.u8() & 1) ch.eject(u);
        else ch.change_media(u, in.u8() & 1 ? iso : nullptr);
        break;
      }
      case 13: {
        uint8_t v = in.u8();
        ide->bmdma()->write(in.u8() % 16, std::span<const uint8_t>(&v, 1));
        break;
      }
      case 14: ch.restore(ch.save()); break;
      case 15: ide->reset(); break;
      default: break;
    }
  }
  return 0;
}
