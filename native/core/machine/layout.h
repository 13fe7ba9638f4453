// The PC memory map and every fixed port / interrupt number of the board, as
// named constants with where each number comes from.
#pragma once
#include <cstdint>

namespace vireo::layout {

// ---- Memory ----
constexpr uint64_t kLowMemTop = 0x9fc00;         // conventional memory usable below the EBDA (639 KiB)
constexpr uint64_t kVgaWindow = 0xa0000;         // legacy VGA memory window 0xa0000-0xbffff
constexpr uint64_t kVgaWindowSize = 0x20000;
constexpr uint64_t kOptionRomBase = 0xc0000;     // option ROMs 0xc0000-0xdffff, BIOS 0xe0000-0xfffff
constexpr uint64_t kBiosShadowTop = 0x100000;
constexpr uint64_t kHighMemBase = 0x100000;      // 1 MiB: where protected-mode kernels load
constexpr uint64_t kPciHoleStart = 0xc0000000;   // RAM below 4 GiB ends here; 3-4 GiB is for PCI BARs, LAPIC, IOAPIC, BIOS
constexpr uint64_t k4GiB = 0x100000000ull;       // RAM beyond kPciHoleStart continues here
constexpr uint64_t kIoApicBase = 0xfec00000;     // in-kernel IOAPIC (KVM default)
constexpr uint64_t kLapicBase = 0xfee00000;      // in-kernel LAPIC (architectural default)
constexpr uint64_t kTssAddr = 0xfffbd000;        // KVM_SET_TSS_ADDR: three pages VT-x needs for real mode
constexpr uint64_t kPciMmioBase = 0xe0000000;    // where the board's BAR allocator would start (SeaBIOS allocates itself)

// Boot data area for direct kernel boot (all inside conventional memory).
constexpr uint64_t kBootGdt = 0x500;             // flat GDT: 0x10 code, 0x18 data (Linux __BOOT_CS/__BOOT_DS)
constexpr uint64_t kPvhStartInfo = 0x6000;
constexpr uint64_t kZeroPage = 0x7000;           // Linux boot_params
constexpr uint64_t kMultibootInfo = 0x9000;
constexpr uint64_t kCmdline = 0x20000;           // kernel command line (up to 64 KiB)
constexpr uint64_t kCmdlineMax = 0x10000;
// Kernel boot on the PC board (see machine/kernel_boot.h): the option ROM's
// parameter block (E820 map in, entry state out), and where a bzImage's 16-bit
// setup code goes (its heap and stack run to kCmdline).
constexpr uint64_t kKernelBootParams = 0x8000;   // 0x8000-0x8fff, below kMultibootInfo
constexpr uint64_t kLinuxSetup = 0x10000;

// ---- Port I/O ----
constexpr uint16_t kCom1Port = 0x3f8, kCom2Port = 0x2f8;  // IBM PC AT serial ports
constexpr uint8_t kCom1Irq = 4, kCom2Irq = 3;
constexpr uint16_t kDebugconPort = 0x402;  // SeaBIOS/QEMU debug console; reads return 0xe9
constexpr uint16_t kDebugExitPort = 0xf4;  // QEMU isa-debug-exit default iobase; guest writes v => exit (v<<1)|1
constexpr uint16_t kPitSpeakerPort = 0x61; // KVM_PIT_SPEAKER_DUMMY leaves port 0x61 to userspace
constexpr uint16_t kKernelBootPort = 0x5f0; // Vireo's kernel-boot option ROM asks for the kernel here (32-bit write)

}  // namespace vireo::layout
