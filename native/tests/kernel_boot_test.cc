// The PC board's kernel boot without KVM: the option ROM image as SeaBIOS
// checks it, and the port handler's loading step over a parameter block with
// a firmware E820 map (what the ROM writes), for each entry mode.
#include "machine/kernel_boot.h"

#include <cstring>
#include <vector>

#include "check.h"
#include "machine/layout.h"

using namespace vireo;
using namespace vireo::boot;

namespace {
struct Ram {
  std::vector<uint8_t> buf;
  GuestMemory mem;
  explicit Ram(uint64_t size) : buf(size) { mem.add_region(0, size, buf.data()); }
  uint32_t u32(uint64_t a) const { uint32_t v; std::memcpy(&v, buf.data() + a, 4); return v; }
  uint16_t u16(uint64_t a) const { uint16_t v; std::memcpy(&v, buf.data() + a, 2); return v; }
};
void w16(std::vector<uint8_t>& b, size_t o, uint16_t v) { std::memcpy(&b[o], &v, 2); }
void w32(std::vector<uint8_t>& b, size_t o, uint32_t v) { std::memcpy(&b[o], &v, 4); }

constexpr uint64_t kMem = 64 << 20;
constexpr uint64_t kFwTop = kMem - (1 << 20);  // the firmware keeps the last MiB below the top of RAM

// What SeaBIOS reports for a 64 MiB PC, as the ROM stores it at `params`.
void write_request(Ram& ram, uint64_t params) {
  const E820Entry map[] = {
      {0, 0x9fc00, 1}, {0x9fc00, 0x400, 2}, {0xf0000, 0x10000, 2}, {0x100000, kFwTop - 0x100000, 1}, {kFwTop, kMem - kFwTop, 2}};
  std::memcpy(&ram.buf[params], "VKB1", 4);
  uint32_t n = 5;
  std::memcpy(&ram.buf[params + 4], &n, 4);
  for (uint32_t i = 0; i < n; i++) {
    uint8_t* e = &ram.buf[params + 0x40 + i * 20];
    std::memcpy(e, &map[i].addr, 8);
    std::memcpy(e + 8, &map[i].size, 8);
    std::memcpy(e + 16, &map[i].type, 4);
  }
}

std::vector<uint8_t> fake_bzimage(size_t payload) {
  std::vector<uint8_t> k(5 * 512 + payload, 0);
  k[0x1f1] = 4;
  w16(k, 0x1fe, 0xAA55);
  k[0x201] = 0x66;
  std::memcpy(&k[0x202], "HdrS", 4);
  w16(k, 0x206, 0x020f);
  k[0x211] = 0x01;
  w32(k, 0x214, 0x100000);
  w32(k, 0x22c, 0x7fffffff);
  w32(k, 0x238, 2047);
  k[0x400] = 0x5a;  // somewhere in the setup code
  return k;
}

std::vector<uint8_t> aout_multiboot(uint32_t load_addr) {
  std::vector<uint8_t> k(0x400, 0x90);
  w32(k, 0x20, 0x1BADB002);
  w32(k, 0x24, 0x00010000);
  w32(k, 0x28, uint32_t(-(0x1BADB002 + 0x00010000)));
  w32(k, 0x2c, load_addr + 0x20);
  w32(k, 0x30, load_addr);
  w32(k, 0x34, 0);
  w32(k, 0x38, 0);
  w32(k, 0x3c, load_addr + 0x40);
  return k;
}
}  // namespace

TEST(option_rom_is_what_seabios_accepts) {
  CHECK(kKernelBootRomSize > 0x40);  // built with nasm
  auto rom = KernelBoot::option_rom();
  CHECK_EQ(rom.size() % 512, size_t(0));
  CHECK_EQ(size_t(rom[2]) * 512, rom.size());
  CHECK_EQ(rom[0], uint8_t(0x55));
  CHECK_EQ(rom[1], uint8_t(0xaa));
  uint8_t sum = 0;
  for (uint8_t b : rom) sum = uint8_t(sum + b);
  CHECK_EQ(sum, uint8_t(0));
  size_t pnp = rom[0x1a] | rom[0x1b] << 8;
  CHECK(pnp > 0 && pnp + 32 <= rom.size());
  CHECK_EQ(std::memcmp(&rom[pnp], "$PnP", 4), 0);
  uint8_t psum = 0;
  for (size_t i = 0; i < size_t(rom[pnp + 5]) * 16; i++) psum = uint8_t(psum + rom[pnp + i]);
  CHECK_EQ(psum, uint8_t(0));
  CHECK((rom[pnp + 0x1a] | rom[pnp + 0x1b] << 8) != 0);  // a boot entry (BEV)
}

TEST(bzimage_through_the_rom_enters_its_16_bit_setup) {
  Ram ram(kMem);
  write_request(ram, layout::kKernelBootParams);
  std::vector<uint8_t> initrd(3 << 20, 0xcd);
  auto r = load_from_rom_request(ram.mem, layout::kKernelBootParams, ram_layout(kMem), fake_bzimage(8192), initrd,
                                 "console=tty0", ImageOptions{});
  CHECK(r.cpu.mode == CpuInit::Mode::Real);
  const uint64_t p = layout::kKernelBootParams, s = layout::kLinuxSetup;
  CHECK_EQ(ram.u32(p), KernelBoot::kModeReal);
  CHECK_EQ(ram.u16(p + 4), uint16_t(0x1020));  // CS: setup segment + 0x20
  CHECK_EQ(ram.u16(p + 6), uint16_t(0));
  CHECK_EQ(ram.u16(p + 8), uint16_t(0x1000));  // DS = SS
  CHECK_EQ(ram.u16(p + 0xa), uint16_t(0xfff0));
  // The setup sectors are where the segment says, header patched in place.
  CHECK_EQ(ram.u16(s + 0x1fe), uint16_t(0xAA55));
  CHECK_EQ(std::memcmp(&ram.buf[s + 0x202], "HdrS", 4), 0);
  CHECK_EQ(ram.buf[s + 0x400], uint8_t(0x5a));
  CHECK_EQ(ram.buf[s + 0x210], uint8_t(0xff));            // type_of_loader
  CHECK_EQ(ram.buf[s + 0x211] & 0x81, 0x81);              // LOADED_HIGH | CAN_USE_HEAP
  CHECK_EQ(ram.u16(s + 0x224), uint16_t(0xfe00));          // heap_end_ptr
  CHECK_EQ(ram.u32(s + 0x228), uint32_t(layout::kCmdline));
  CHECK_EQ(ram.u32(s + 0x214), uint32_t(0x100000));        // code32_start left as the kernel has it
  CHECK_EQ(std::string((char*)&ram.buf[layout::kCmdline]), std::string("console=tty0"));
  // The initrd ends below what the firmware keeps, not at the end of RAM.
  uint32_t rd = ram.u32(s + 0x218), rds = ram.u32(s + 0x21c);
  CHECK_EQ(rds, uint32_t(3 << 20));
  CHECK(rd + rds <= kFwTop);
  CHECK(rd + rds > kFwTop - 8192);
  CHECK_EQ(ram.buf[rd], uint8_t(0xcd));
}

TEST(multiboot_through_the_rom_gets_protected_mode_and_the_firmware_map) {
  Ram ram(kMem);
  write_request(ram, layout::kKernelBootParams);
  auto r = load_from_rom_request(ram.mem, layout::kKernelBootParams, ram_layout(kMem), aout_multiboot(0x200000), {}, "x=1",
                                 ImageOptions{});
  const uint64_t p = layout::kKernelBootParams;
  CHECK_EQ(ram.u32(p), KernelBoot::kModeProtected);
  CHECK_EQ(ram.u32(p + 4), uint32_t(0x200040));     // EIP
  CHECK_EQ(ram.u32(p + 8), uint32_t(0x2BADB002));   // EAX
  uint32_t mbi = ram.u32(p + 0xc);                  // EBX
  CHECK_EQ(uint64_t(mbi), r.info.info_addr);
  CHECK_EQ(ram.u16(p + 0x20), uint16_t(31));        // GDTR: Vireo's flat GDT
  CHECK_EQ(ram.u32(p + 0x22), uint32_t(layout::kBootGdt));
  CHECK_EQ(ram.u32(mbi + 8), uint32_t((kFwTop - 0x100000) / 1024));  // mem_upper from the firmware's map
  CHECK_EQ(ram.u32(mbi + 44), uint32_t(5 * 24));                     // its five entries
}

TEST(kernel_in_memory_the_firmware_keeps_is_refused) {
  Ram ram(kMem);
  write_request(ram, layout::kKernelBootParams);
  try {
    ImageOptions o;
    o.name = "kernel '/tmp/low.bin'";
    load_from_rom_request(ram.mem, layout::kKernelBootParams, ram_layout(kMem), aout_multiboot(0xf0000), {}, "", o);
    CHECK(false);
  } catch (BootError& e) {
    std::string w = e.what();
    CHECK(w.find("/tmp/low.bin") != std::string::npos);
    CHECK(w.find("E820") != std::string::npos);
  }
  // A request without the ROM's magic is refused too.
  ram.buf[layout::kKernelBootParams] = 'X';
  try {
    load_from_rom_request(ram.mem, layout::kKernelBootParams, ram_layout(kMem), aout_multiboot(0x200000), {}, "", {});
    CHECK(false);
  } catch (BootError& e) {
    CHECK(std::string(e.what()).find("parameter block") != std::string::npos);
  }
}
