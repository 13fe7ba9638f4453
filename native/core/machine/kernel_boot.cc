#include "machine/kernel_boot.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "kvm/kvm.h"
#include "machine/layout.h"
#include "machine/machine.h"

namespace vireo {

namespace {
constexpr uint32_t kParamsMagic = 0x31424b56;  // "VKB1" as the ROM stores it
constexpr uint32_t kMaxE820 = 128;
constexpr uint64_t kE820Offset = 0x40;

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

// Anonymous memory shaped like a PC board's RAM (a hole for the VGA window),
// for the trial load; pages are only touched where something is written.
struct Scratch {
  uint8_t* base = nullptr;
  uint64_t size = 0;
  GuestMemory mem;
  explicit Scratch(const boot::RamLayout& r) {
    size = r.low_end + r.high_size;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw MachineError("cannot reserve memory to check the kernel");
    base = static_cast<uint8_t*>(p);
    mem.add_region(0, layout::kVgaWindow, base);
    mem.add_region(layout::kOptionRomBase, r.low_end - layout::kOptionRomBase, base + layout::kOptionRomBase);
    if (r.high_size) mem.add_region(layout::k4GiB, r.high_size, base + r.low_end);
  }
  ~Scratch() { ::munmap(base, size); }
};
}  // namespace

void log_host_kernel_words(const std::string& added) {
  if (added.empty()) return;
  std::fprintf(stderr,
               "[vireo] kvm_pvm host: added to the Linux command line: %s (boot-time self-tests and return-thunk "
               "mitigations that this host, which emulates guest kernel code, would spend minutes on; "
               "VIREO_PVM_KERNEL_WORDS=none leaves the command line as given; docs/linux-guest.md)\n",
               added.c_str());
}

std::vector<uint8_t> finish_option_rom(std::vector<uint8_t> rom) {
  if (rom.size() < 0x20) throw MachineError("option ROM image is too small");
  size_t blocks = (rom.size() + 1 + 511) / 512;  // at least one byte left for the checksum
  if (blocks > 255) throw MachineError("option ROM image is larger than 127 KiB");
  rom.resize(blocks * 512, 0);
  rom[2] = uint8_t(blocks);
  size_t pnp = size_t(rom[0x1a]) | size_t(rom[0x1b]) << 8;
  if (pnp && pnp + 32 <= rom.size() && std::memcmp(&rom[pnp], "$PnP", 4) == 0) {
    size_t len = size_t(rom[pnp + 5]) * 16;
    if (len && pnp + len <= rom.size()) {
      rom[pnp + 9] = 0;
      uint8_t sum = 0;
      for (size_t i = 0; i < len; i++) sum = uint8_t(sum + rom[pnp + i]);
      rom[pnp + 9] = uint8_t(-sum);
    }
  }
  rom.back() = 0;
  uint8_t sum = 0;
  for (uint8_t b : rom) sum = uint8_t(sum + b);
  rom.back() = uint8_t(-sum);
  return rom;
}

boot::BootResult load_from_rom_request(const GuestMemory& mem, uint64_t params, const boot::RamLayout& ram,
                                       const std::vector<uint8_t>& kernel, const std::vector<uint8_t>& initrd,
                                       const std::string& cmdline, boot::ImageOptions names) {
  uint8_t hdr[8];
  if (!mem.read(params, hdr, sizeof hdr) || le32(hdr) != kParamsMagic)
    throw boot::BootError("the kernel-boot option ROM's parameter block at " + std::to_string(params) + " is not valid");
  uint32_t n = std::min(le32(hdr + 4), kMaxE820);
  std::vector<boot::E820Entry> e820;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t e[20];
    if (!mem.read(params + kE820Offset + i * 20, e, sizeof e)) throw boot::BootError("the E820 map is outside guest RAM");
    boot::E820Entry x{};
    std::memcpy(&x.addr, e, 8);
    std::memcpy(&x.size, e + 8, 8);
    std::memcpy(&x.type, e + 16, 4);
    if (x.size) e820.push_back(x);
  }
  if (e820.empty()) throw boot::BootError("the firmware reported no memory map (INT 15h E820)");
  names.firmware_e820 = &e820;
  boot::BootResult r = boot::load_kernel_image(mem, ram, kernel, initrd, cmdline, names);

  // The entry state, where the ROM reads it (see kboot.asm).
  uint8_t out[0x28] = {};
  auto set16 = [&](int o, uint16_t v) { std::memcpy(out + o, &v, 2); };
  auto set32 = [&](int o, uint32_t v) { std::memcpy(out + o, &v, 4); };
  if (r.cpu.mode == boot::CpuInit::Mode::Real) {
    set32(0, KernelBoot::kModeReal);
    set16(4, r.cpu.real_cs);
    set16(6, uint16_t(r.cpu.rip));
    set16(8, r.cpu.real_ds);
    set16(0xa, uint16_t(r.cpu.rsp));
  } else {
    set32(0, KernelBoot::kModeProtected);
    set32(4, uint32_t(r.cpu.rip));
    set32(8, r.cpu.eax);
    set32(0xc, r.cpu.ebx);
    set32(0x10, r.cpu.esi);
    set32(0x14, uint32_t(r.cpu.rsp));
    set16(0x20, 4 * 8 - 1);  // GDTR: write_boot_gdt's four descriptors
    set32(0x22, uint32_t(layout::kBootGdt));
  }
  if (!mem.write(params, out, sizeof out)) throw boot::BootError("the kernel-boot parameter block is outside guest RAM");
  return r;
}

KernelBoot::KernelBoot(Machine& m) : m_(m) {
  const MachineConfig& cfg = m.config();
  kernel_ = boot::read_file(cfg.kernel, "kernel");
  if (!cfg.initrd.empty()) initrd_ = boot::read_file(cfg.initrd, "initrd");
  std::string added;
  cmdline_ = boot::host_kernel_cmdline(kernel_, cfg.append, kvm::host_is_pvm(), &added);
  log_host_kernel_words(added);
  names_.name = "kernel '" + cfg.kernel + "'";
  if (!cfg.initrd.empty()) names_.initrd_name = "initrd '" + cfg.initrd + "'";
  ram_ = boot::ram_layout(cfg.mem_bytes);
  if (kKernelBootRomSize == 0)
    throw MachineError("this Vireo was built without nasm, so it has no kernel-boot option ROM: a kernel cannot boot on the PC board");
  // Trial load with the map a PC of this size reports (SeaBIOS reserves a
  // little more at the top of RAM; the real load uses its actual map).
  Scratch s(ram_);
  auto map = boot::e820_map(ram_);
  boot::ImageOptions o = names_;
  o.firmware_e820 = &map;
  planned_ = boot::load_kernel_image(s.mem, ram_, kernel_, initrd_, cmdline_, o);
}

std::vector<uint8_t> KernelBoot::option_rom() {
  if (kKernelBootRomSize == 0) throw MachineError("Vireo was built without nasm: no kernel-boot option ROM");
  return finish_option_rom(std::vector<uint8_t>(kKernelBootRom, kKernelBootRom + kKernelBootRomSize));
}

void KernelBoot::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void KernelBoot::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.size() != 4) return;
  uint64_t params = span_to_u64(data);
  try {
    planned_ = load_from_rom_request(m_.memory(), params, ram_, kernel_, initrd_, cmdline_, names_);
  } catch (const std::exception& e) {
    uint32_t failed = 0;
    m_.memory().write(params, &failed, 4);  // the ROM halts; the machine stops with the reason
    StopInfo info;
    info.kind = "error";
    info.message = std::string("kernel boot failed: ") + e.what();
    m_.request_stop(info, RunState::Crashed);
  }
}

}  // namespace vireo
