// libFuzzer target: fw_cfg's selector/data ports and its DMA interface
// (descriptors read from a fuzzed 64 KiB guest RAM: select, read, skip,
// write into writable files, chained transfers), over the items SeaBIOS gets
// on a real boot plus a writable file.
// Input: u16 n + n bytes of RAM image, then ops (u8 opcode + operands).
#include <cstring>

#include "devices/fw_cfg.h"
#include "fuzz_input.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {
void put_be(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = uint8_t(v >> (8 * (n - 1 - i)));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  std::vector<uint8_t> ram(64 << 10, 0);
  GuestMemory mem;
  mem.add_region(0, ram.size(), ram.data());
  auto img = in.bytes(in.u16());
  std::memcpy(ram.data(), img.data(), img.size());
  FwCfg fw(&mem);
  fwcfg::SeabiosConfig c;
  c.ram_size = 64 << 20;
  c.e820 = {{0, 0x9fc00, fwcfg::kE820Ram}, {0x100000, (64 << 20) - 0x100000, fwcfg::kE820Ram}};
  c.boot_order = {fwcfg::ide_path(1, 1, 0, 0)};
  fwcfg::configure_seabios(fw, c);
  fw.add_file("etc/fuzz-rw", std::vector<uint8_t>(100, 0), true);
  fw.add_file("etc/empty", {});
  for (int ops = 0; !in.empty() && ops < 8192; ops++) {
    uint8_t op = in.u8();
    uint8_t b[8];
    switch (op % 7) {
      case 0: {  // select
        uint16_t key = in.u16();
        b[0] = uint8_t(key), b[1] = uint8_t(key >> 8);
        fw.write(FwCfg::kOffSelector, {b, 2});
        break;
      }
      case 1: {  // data reads
        int n = 1 + in.u8();
        size_t s = std::min(in.size(), 8);
        for (int k = 0; k < n; k++) fw.read(FwCfg::kOffData, {b, s});
        break;
      }
      case 2: {  // any register, any width
        uint64_t off = in.u8() % FwCfg::kPortLen;
        size_t s = size_t(in.size());
        uint64_t v = in.u64();
        std::memcpy(b, &v, 8);
        if (op & 0x80) fw.write(off, {b, s});
        else fw.read(off, {b, s});
        break;
      }
      case 3: {  // a DMA descriptor in RAM
        uint16_t at = in.u16() % (ram.size() - 16);
        put_be(&ram[at], in.u32(), 4);      // control
        put_be(&ram[at + 4], in.u32(), 4);  // length
        put_be(&ram[at + 8], in.u32(), 8);  // address: mostly in (or just past) RAM
        break;
      }
      case 4: {  // start DMA with one 64-bit big-endian write
        put_be(b, in.u16() | (op & 0x80 ? uint64_t(in.u32()) << 32 : 0), 8);
        fw.write(FwCfg::kOffDmaHigh, {b, 8});
        break;
      }
      case 5: {  // start DMA with the high then the low half
        put_be(b, in.u32(), 4);
        if (op & 0x80) fw.write(FwCfg::kOffDmaHigh, {b, 4});
        put_be(b, in.u16(), 4);
        fw.write(FwCfg::kOffDmaLow, {b, 4});
        break;
      }
      default: {  // RAM poke
        uint16_t off = in.u16();
        auto p = in.bytes(in.u8());
        std::memcpy(ram.data() + off, p.data(), std::min<size_t>(p.size(), ram.size() - off));
        break;
      }
    }
  }
  return 0;
}
