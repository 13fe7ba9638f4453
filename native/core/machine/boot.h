// Direct kernel boot: multiboot v1 (ELF and a.out kludge), Linux bzImage
// (32-bit boot protocol), PVH ELF (vmlinux), and a flat binary. Each loader
// is a pure function over GuestMemory that returns the initial CPU state, so
// the boot parameters are unit-tested without KVM.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "machine/guest_memory.h"

namespace vireo::boot {

class BootError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct E820Entry {
  uint64_t addr, size;
  uint32_t type;  // 1 RAM, 2 reserved, 3 ACPI, 4 NVS
};

// RAM below the PCI hole (from 0) and above 4 GiB, as laid out by the machine.
struct RamLayout {
  uint64_t low_end;    // RAM is [0, low_end)
  uint64_t high_size;  // RAM is [4 GiB, 4 GiB + high_size)
};
RamLayout ram_layout(uint64_t mem_bytes);
std::vector<E820Entry> e820_map(const RamLayout& r);

struct CpuInit {
  enum class Mode { Real, Protected32 } mode = Mode::Real;
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint16_t real_cs = 0;  // real mode: CS selector (base = selector << 4)
  uint16_t real_ds = 0;  // real mode: DS, ES, FS, GS and SS
  uint32_t eax = 0, ebx = 0, esi = 0;
};

struct KernelInfo {
  std::string format;  // "multiboot-elf", "multiboot-aout", "bzimage", "pvh", "flat"
  uint64_t load_start = 0, load_end = 0;
  uint64_t initrd_addr = 0, initrd_size = 0;
  uint64_t info_addr = 0;  // multiboot info / zero page / PVH start info
};

struct BootResult {
  CpuInit cpu;
  KernelInfo info;
};

struct KernelBootOptions {
  std::string kernel_path;
  std::string initrd_path;
  std::string cmdline;
};

// How load_kernel_image names things in errors, and where it may put them.
struct ImageOptions {
  std::string name = "kernel";         // e.g. "kernel '/boot/vmlinuz'"
  std::string initrd_name = "initrd";  // e.g. "initrd '/boot/initrd.img'"
  // Set when firmware (SeaBIOS) has run first and Vireo's option ROM enters
  // the kernel (a kernel boot on the PC board): the memory map the firmware
  // reported through INT 15h E820. Everything is placed in its RAM (type 1)
  // ranges, boot data carry this map, and a Linux bzImage is entered through
  // its 16-bit real-mode setup code (so the kernel asks the BIOS for memory
  // and video itself) instead of the 32-bit entry.
  const std::vector<E820Entry>* firmware_e820 = nullptr;
};

// Detects the kernel's format and loads it. Throws BootError naming the file
// when it is missing, unreadable, or not a kernel Vireo can boot.
BootResult load_kernel(const GuestMemory& mem, const RamLayout& ram, const KernelBootOptions& o);
// The same, from bytes already read (for tests).
BootResult load_kernel_image(const GuestMemory& mem, const RamLayout& ram, const std::vector<uint8_t>& kernel,
                             const std::vector<uint8_t>& initrd, const std::string& cmdline,
                             const std::string& name = "kernel");
BootResult load_kernel_image(const GuestMemory& mem, const RamLayout& ram, const std::vector<uint8_t>& kernel,
                             const std::vector<uint8_t>& initrd, const std::string& cmdline, const ImageOptions& o);
BootResult load_flat(const GuestMemory& mem, const std::string& path, uint64_t addr);

std::vector<uint8_t> read_file(const std::string& path, const char* what);

// True when the image is a Linux kernel: a bzImage ("HdrS"), or an ELF vmlinux
// whose Xen note XEN_ELFNOTE_GUEST_OS says "linux" (what a PVH-capable
// Linux build carries).
bool is_linux_kernel(const std::vector<uint8_t>& k);

// Kernel words Vireo adds by itself to a Linux command line on kvm_pvm hosts,
// where guest ring-0 code is emulated instruction by instruction
// (docs/linux-guest.md, "Words Vireo adds on kvm_pvm hosts"). Each skips
// work that tests the kernel itself or guards what emulation already rules out:
//   cryptomgr.notests   the crypto API's self-tests (~9 min of emulated ring 0)
//   spec_rstack_overflow=off retbleed=off
//                       the return-thunk mitigations: every kernel `ret` goes
//                       through a thunk so that the CPU's return predictor
//                       cannot be trained; here no guest kernel instruction
//                       reaches the CPU's predictors (each one is emulated), and
//                       the thunks cost ~10-17 % of the boot
// A word the command line already sets (by name, with or without a value) is
// left to the user's value. None on other hosts, for other kernels, or when
// VIREO_PVM_KERNEL_WORDS=none. Returns the words added ("" when none).
std::string pvm_linux_words(const std::vector<uint8_t>& kernel, const std::string& cmdline, bool pvm_host);
// cmdline with those words appended; `added` gets them (for the log line).
std::string host_kernel_cmdline(const std::vector<uint8_t>& kernel, const std::string& cmdline, bool pvm_host,
                                std::string* added = nullptr);

// Writes the flat 32-bit GDT used for protected-mode entry at layout::kBootGdt.
void write_boot_gdt(const GuestMemory& mem);

}  // namespace vireo::boot
