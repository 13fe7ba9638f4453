// QEMU's firmware configuration device (fw_cfg), I/O-port flavour, as SeaBIOS
// reads it (src/fw/paravirt.c): selector at 0x510 (16-bit), data at 0x511
// (byte stream), DMA address at 0x514 (high dword, big-endian) and 0x518
// (low dword, big-endian; writing it starts the transfer). Register one
// instance on the PIO bus at kPortBase, length kPortLen.
//
// Items are numbered by a 16-bit key; files (named items) get keys from
// kFileFirst on and are listed in the file directory (key kFileDir).
// Legacy keys hold little-endian integers; the directory is big-endian.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bus/device.h"
#include "machine/guest_memory.h"

namespace vireo {

class FwCfg : public IoDevice {
public:
  // Ports (QEMU hw/nvram/fw_cfg.c, FW_CFG_IO_BASE; SeaBIOS PORT_QEMU_CFG_*).
  static constexpr uint16_t kPortBase = 0x510;
  static constexpr uint16_t kPortLen = 0x0c;  // 0x510..0x51b
  static constexpr uint64_t kOffSelector = 0, kOffData = 1, kOffDmaHigh = 4, kOffDmaLow = 8;

  // Keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h and SeaBIOS QEMU_CFG_*).
  enum Key : uint16_t {
    kSignature = 0x00, kId = 0x01, kUuid = 0x02, kRamSize = 0x03, kNoGraphic = 0x04,
    kNbCpus = 0x05, kMachineId = 0x06, kKernelAddr = 0x07, kKernelSize = 0x08,
    kKernelCmdline = 0x09, kInitrdAddr = 0x0a, kInitrdSize = 0x0b, kBootDevice = 0x0c,
    kNuma = 0x0d, kBootMenu = 0x0e, kMaxCpus = 0x0f, kKernelEntry = 0x10, kKernelData = 0x11,
    kInitrdData = 0x12, kCmdlineAddr = 0x13, kCmdlineSize = 0x14, kCmdlineData = 0x15,
    kSetupAddr = 0x16, kSetupSize = 0x17, kSetupData = 0x18, kFileDir = 0x19,
    kFileFirst = 0x20,
    kArchLocal = 0x8000,
    kAcpiTables = 0x8000, kSmbiosEntries = 0x8001, kIrq0Override = 0x8002, kE820Table = 0x8003,
  };
  static constexpr uint16_t kWriteFlag = 0x4000;  // legacy "write" bit in the selector
  static constexpr uint16_t kKeyMask = 0xbfff;    // key without the write flag
  static constexpr uint32_t kIdTraditional = 1u << 0, kIdDma = 1u << 1;

  // DMA control bits (big-endian in the guest's FWCfgDmaAccess).
  static constexpr uint32_t kDmaError = 0x01, kDmaRead = 0x02, kDmaSkip = 0x04, kDmaSelect = 0x08,
                            kDmaWrite = 0x10;
  // What reading the DMA address register returns: "QEMU CFG", big-endian.
  static constexpr uint64_t kDmaSignature = 0x51454d5520434647ull;
  static constexpr size_t kFileNameMax = 56;  // including NUL

  struct State {
    static constexpr uint32_t kVersion = 1;
    uint16_t selector = 0;   // current key (without the write flag)
    uint32_t offset = 0;     // read position within the current item
    uint64_t dma_addr = 0;   // last programmed DMA descriptor address
  };
  State s;

  // `mem` may be null: then the ID does not advertise DMA and DMA writes are ignored.
  explicit FwCfg(const GuestMemory* mem);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // ---- content (set up by the board before the guest runs) ----
  void set_item(uint16_t key, std::vector<uint8_t> bytes);
  void set_u16(uint16_t key, uint16_t v);
  void set_u32(uint16_t key, uint32_t v);
  void set_u64(uint16_t key, uint64_t v);
  // Add (or replace) a named file; returns its key. `writable` lets the guest write it by DMA.
  uint16_t add_file(const std::string& name, std::vector<uint8_t> bytes, bool writable = false);
  const std::vector<uint8_t>* item(uint16_t key) const;
  const std::vector<uint8_t>* file(const std::string& name) const;
  int file_key(const std::string& name) const;  // -1 if none

  // Run one DMA descriptor at guest-physical `desc_addr` now (what writing 0x518 does).
  void dma_transfer(uint64_t desc_addr);

  // Saved state (section "fw_cfg"): the cursor only -- selector, offset, DMA
  // address, with the selected item's size -- and the contents of items the
  // guest may write. Item contents are rebuilt from the configuration, so a
  // load refuses a state whose selected item has another size here.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

private:
  struct Item {
    std::vector<uint8_t> data;
    bool writable = false;
  };
  void select(uint16_t key);
  void rebuild_dir();
  Item* current();

  const GuestMemory* mem_;
  std::map<uint16_t, Item> items_;
  std::vector<std::pair<std::string, uint16_t>> files_;  // directory order
};

// ---- helpers building the items SeaBIOS reads ----
namespace fwcfg {

constexpr uint32_t kE820Ram = 1, kE820Reserved = 2, kE820Acpi = 3, kE820Nvs = 4;
struct E820Entry {
  uint64_t addr;
  uint64_t len;
  uint32_t type;
};
// "etc/e820": packed little-endian {u64 addr, u64 len, u32 type} (20 bytes each).
std::vector<uint8_t> e820_bytes(const std::vector<E820Entry>& entries);

// Open Firmware device paths as SeaBIOS' boot.c builds and glob-matches them
// on an i440FX board (root bus "/pci@i0cf8", function omitted when 0).
std::string pci_device_path(const std::string& devname, int slot, int fn = 0);
// "/pci@i0cf8/ide@1,1/drive@<channel>/disk@<unit>" (PIIX IDE disk or CD-ROM).
std::string ide_path(int slot, int fn, int channel, int unit);
// "/pci@i0cf8/isa@1/fdc@03f0/floppy@<n>".
std::string floppy_path(int isa_slot, int isa_fn, int drive);
// "bootorder": paths separated by '\n', NUL-terminated (as QEMU writes it).
std::vector<uint8_t> bootorder_bytes(const std::vector<std::string>& paths);

std::vector<uint8_t> le16(uint16_t v);
std::vector<uint8_t> le32(uint32_t v);
std::vector<uint8_t> le64(uint64_t v);

struct SeabiosConfig {
  uint16_t cpus = 1;
  uint16_t max_cpus = 1;
  uint64_t ram_size = 0;                 // total guest RAM in bytes
  std::vector<E820Entry> e820;           // etc/e820 (must be non-empty for a real boot)
  std::vector<std::string> boot_order;   // device paths, first wins; empty: no bootorder file
  bool boot_menu = false;                // false: SeaBIOS shows no "Press ESC" prompt and waits 0 ms
  uint16_t boot_menu_wait_ms = 2500;     // only used when boot_menu is true
  bool nographic = false;                // true: SeaBIOS routes its console to COM1 (sercon)
  bool irq0_override = true;             // in-kernel IOAPIC routes PIT to GSI2
  std::array<uint8_t, 16> uuid{};
  uint32_t boot_fail_wait_ms = 60000;    // "etc/boot-fail-wait": retry delay after no bootable device
};
// Fills every legacy key and file SeaBIOS reads: NB_CPUS, MAX_CPUS, RAM_SIZE,
// UUID, NOGRAPHIC, NUMA (none), BOOT_MENU, IRQ0_OVERRIDE, ACPI_TABLES and
// SMBIOS_ENTRIES (legacy keys, empty; the PC board adds its ACPI tables as
// etc/table-loader files, machine/acpi.h, and SeaBIOS builds SMBIOS), E820_TABLE (no legacy
// reservations), etc/e820, bootorder, etc/show-boot-menu, etc/boot-menu-wait,
// etc/boot-fail-wait.
void configure_seabios(FwCfg& fw, const SeabiosConfig& c);

}  // namespace fwcfg
}  // namespace vireo
