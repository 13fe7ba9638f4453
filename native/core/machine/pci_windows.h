// The PC host bridge's memory windows: the guest-physical ranges where
// firmware and the OS may place PCI memory BARs. One pure function decides
// them from the RAM layout and the guest's physical address width; the DSDT's
// \_SB.PCI0._CRS (machine/acpi.cc), fw_cfg "etc/reserved-memory-end"
// (PcBoard) and the tests all take them from here. docs/acpi.md, "PCI
// windows", has the reasoning and the comparison with QEMU's pc.
//
//   32-bit window  [mem32_base, 0xfec00000): what SeaBIOS's i440FX setup
//                  allocates from (src/fw/pciinit.c: 0x80000000 when RAM
//                  below 4 GiB is at most 2 GiB, else 0xc0000000), up to the
//                  IOAPIC / LAPIC / firmware area.
//   64-bit window  [mem64_base, mem64_end): from the end of RAM above 4 GiB
//                  rounded up to 1 GiB (where SeaBIOS 1.16.2 and QEMU's pc
//                  start it) to the top of the guest's physical address
//                  space, at most 2^46 (where SeaBIOS 1.16.3+ places 64-bit
//                  BARs: top-down from min(2^phys_bits, 2^46)).
// Vireo's tables are built before the firmware runs, so unlike QEMU's they
// cannot follow where SeaBIOS put the BARs: the window covers every place
// either SeaBIOS release may use. RAM never overlaps it (the KVM memslots
// end at 4 GiB + RAM above 4 GiB), so a BAR there exits to the MMIO bus.
#pragma once
#include <cstdint>

namespace vireo {

struct PciWindows {
  uint64_t mem32_base = 0, mem32_end = 0;  // [base, end)
  uint64_t mem64_base = 0, mem64_end = 0;  // [base, end)
};

namespace pciwin {
constexpr uint64_t kMem32End = 0xfec00000;           // layout.h kIoApicBase: IOAPIC, LAPIC, BIOS above
constexpr uint64_t kMem32BaseSmall = 0x80000000;     // SeaBIOS i440fx_mem_addr_setup: RAM below 4 GiB <= 2 GiB
constexpr uint64_t kMem32BaseLarge = 0xc0000000;     // ... <= 3 GiB (Vireo's limit, layout.h kPciHoleStart)
constexpr uint64_t kMem64Align = 1ull << 30;         // QEMU pc_pci_hole64_start, SeaBIOS "1G hugepage"
constexpr int kMem64TopBits = 46;                    // SeaBIOS 1.16.3 pci_mem64_top cap (old Linux virtio-pci)
constexpr int kDefaultPhysBits = 36;                 // no CPUID leaf 0x80000008 (SDM: 36 with PAE)
// fw_cfg file, u64 little-endian: the lowest address SeaBIOS gives 64-bit
// BARs it moves above 4 GiB (QEMU writes it after hotpluggable memory);
// PcBoard writes mem64_base.
constexpr const char* kReservedMemoryEndFile = "etc/reserved-memory-end";
}  // namespace pciwin

// Throws std::invalid_argument naming the numbers when the RAM below 4 GiB
// passes the 32-bit window's start, phys_bits is outside 32..64, or RAM
// reaches the top of the physical address space (no room for the window).
PciWindows pci_windows(uint64_t ram_below_4g, uint64_t ram_above_4g, int phys_bits);

}  // namespace vireo
