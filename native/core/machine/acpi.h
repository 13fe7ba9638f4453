// ACPI tables for the i440FX/PIIX3 PC, built by Vireo and handed to SeaBIOS
// through fw_cfg the way QEMU does it (SeaBIOS src/fw/paravirt.c runs
// "etc/table-loader", then finds the RSDP in the F-segment and skips its
// own legacy tables):
//   etc/acpi/tables  FACS, DSDT (dsdt.asl, compiled by iasl at build time),
//                    SSDT (one Processor object per vCPU), FADT, MADT, RSDT, XSDT
//   etc/acpi/rsdp    the ACPI 2.0 RSDP
//   etc/table-loader 128-byte commands (SeaBIOS src/fw/romfile_loader.h):
//                    ALLOCATE each blob, ADD_POINTER to turn the blob offsets
//                    stored in pointer fields into guest addresses,
//                    ADD_CHECKSUM for every table once its pointers are set.
// build() is a pure function of the Config: tested without KVM (acpi_test).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "machine/pci_windows.h"

namespace vireo {
class FwCfg;
}

namespace vireo::acpi {

// fw_cfg file names (QEMU hw/acpi/utils.h ACPI_BUILD_*_FILE).
constexpr const char* kTablesFile = "etc/acpi/tables";
constexpr const char* kRsdpFile = "etc/acpi/rsdp";
constexpr const char* kLoaderFile = "etc/table-loader";

// Linker/loader command format (SeaBIOS src/fw/romfile_loader.h).
constexpr size_t kLoaderEntrySize = 128;
constexpr size_t kLoaderFileSz = 56;  // file name field, NUL-terminated
enum LoaderCommand : uint32_t { kCmdAllocate = 1, kCmdAddPointer = 2, kCmdAddChecksum = 3, kCmdWritePointer = 4 };
enum LoaderZone : uint8_t { kZoneHigh = 1, kZoneFseg = 2 };
constexpr uint32_t kTablesAlign = 64;  // the FACS, first in the blob, must be 64-byte aligned (ACPI 5.2.10)
constexpr uint32_t kRsdpAlign = 16;    // the RSDP is found by a 16-byte-step scan of 0xe0000-0xfffff

// ISA IRQs the PCI interrupt links offer (the DSDT's LNKA-D _PRS: what
// SeaBIOS' PIIX setup assigns and QEMU's pc offers). Each is level,
// active-high on the IOAPIC, and the MADT says so.
constexpr uint8_t kPciLinkIrqs[] = {5, 10, 11};

// MADT entry types and flags (ACPI 6.4 5.2.12).
constexpr uint8_t kMadtLapic = 0, kMadtIoApic = 1, kMadtIso = 2, kMadtLapicNmi = 4;
constexpr uint32_t kMadtPcatCompat = 1;      // dual 8259s present
constexpr uint32_t kLapicEnabled = 1;
constexpr uint16_t kIsoConforming = 0;       // bus-default polarity/trigger (ISA: edge, active high)
constexpr uint16_t kIsoLevelHigh = 0x000d;   // polarity 01 active high | trigger 11 level
constexpr uint8_t kIoApicId = 0;             // KVM's in-kernel IOAPIC resets its ID register to 0
constexpr uint8_t kLint1 = 1;                // LAPIC LINT1 carries NMI (PC/AT virtual-wire)

struct Config {
  int cpus = 1;  // vCPU n has APIC ID n (KVM_CREATE_VCPU id) and ACPI processor ID n; at most 255
  // The host bridge's memory windows, written into \_SB.PCI0._CRS
  // (PcBoard passes pci_windows() of the machine's RAM and CPUID).
  PciWindows pci = pci_windows(128ull << 20, 0, pciwin::kDefaultPhysBits);
};

struct Tables {
  std::vector<uint8_t> tables;  // etc/acpi/tables
  std::vector<uint8_t> rsdp;    // etc/acpi/rsdp
  std::vector<uint8_t> loader;  // etc/table-loader
};

Tables build(const Config& c);

// The DSDT as iasl compiled it from acpi/dsdt.asl.
std::span<const uint8_t> dsdt_aml();

// That DSDT with \_SB.PCI0._CRS's 32-bit window minimum/length and 64-bit
// window minimum/maximum/length set to `w`, checksum updated. Throws
// std::invalid_argument for windows a descriptor cannot hold (empty, or the
// 32-bit one past 4 GiB).
std::vector<uint8_t> dsdt(const PciWindows& w);

// Adds the three files to fw_cfg.
void install(FwCfg& fw, const Tables& t);

}  // namespace vireo::acpi
