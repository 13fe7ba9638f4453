// PCI: the function base class every PCI device derives from, and the host
// side (config mechanism 1 at 0xcf8/0xcfc, BAR mapping onto the PIO and MMIO
// buses, INTx routing). Device models (std-vga, PIIX IDE, virtio-pci...)
// only use PciFunction; the board owns the PciHost.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus/bus.h"
#include "bus/device.h"

namespace vireo::pci {

// Standard config-space offsets (PCI Local Bus Spec 3.0, 6.1).
constexpr uint32_t kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06,
                   kRevision = 0x08, kClassProg = 0x09, kHeaderType = 0x0e, kBar0 = 0x10,
                   kSubsysVendor = 0x2c, kSubsysId = 0x2e, kRomBar = 0x30, kCapPtr = 0x34,
                   kIntLine = 0x3c, kIntPin = 0x3d;
constexpr uint16_t kCmdIo = 1 << 0, kCmdMem = 1 << 1, kCmdMaster = 1 << 2, kCmdIntxDisable = 1 << 10;
constexpr uint16_t kStatusCapList = 1 << 4, kStatusIntx = 1 << 3;

enum class BarKind { Io, Mem32, Mem64, Mem32Prefetch, Mem64Prefetch };

class PciHost;

class PciFunction {
public:
  // Sets the type-0 header defaults: write masks for Command, cache line,
  // latency timer, interrupt line; write-1-to-clear Status error bits.
  PciFunction();
  virtual ~PciFunction() = default;

  // Config-space access, offset within this function's 256-byte space.
  // Defaults implement the type-0 header: read-only IDs, write masks, BAR
  // sizing (write all-ones, read back ~(size-1)), command-register decode
  // enable/disable mapping the BARs, interrupt line/pin, capability list.
  virtual uint32_t config_read(uint32_t offset, int size);
  virtual void config_write(uint32_t offset, int size, uint32_t value);

  // Called after a BAR was mapped at `addr` (or unmapped: addr == 0 and mapped == false).
  virtual void bar_mapped(int bar, uint64_t addr, bool mapped) {}
  // Guest reset of the whole machine.
  virtual void reset() {}
  // A saved state replaced config space (PciHost::load_state): re-apply what
  // config space decides beyond the standard BARs (PIRQ routing, I/O blocks
  // at device-specific base registers, write masks that depend on a lock
  // bit). Called without the config lock, before the BARs are re-mapped.
  virtual void config_loaded() {}

  // ---- set-up helpers for derived classes (call in the constructor) ----
  void set_ids(uint16_t vendor, uint16_t device, uint32_t class_code /*24-bit: class<<16|sub<<8|prog*/,
               uint8_t revision = 0, uint16_t subsys_vendor = 0x1af4, uint16_t subsys_id = 0x1100);
  // BAR `index` (0..5; a 64-bit BAR takes index and index+1) of `size` bytes
  // (power of two; I/O >= 4, memory >= 16), handled by `handler` at offsets
  // relative to the BAR base.
  void add_bar(int index, uint64_t size, BarKind kind, std::shared_ptr<IoDevice> handler);
  // Expansion ROM BAR (offset 0x30) with its image. Reads through the ROM BAR
  // return the image; where the host installs PciHost::rom_mapped, the image
  // is also offered as memory each time the BAR is decoded (see there).
  void set_rom(std::vector<uint8_t> image);
  void set_interrupt_pin(uint8_t pin /*1 = INTA..4 = INTD, 0 = none*/);
  // Append a capability with `len` bytes (including the 2-byte header); returns its offset.
  uint8_t add_capability(uint8_t cap_id, uint8_t len);

  // Raise/lower this function's INTx line (honours Command.INTx-disable and sets Status.INTx).
  void set_intx(bool level);
  // Bus-master enabled? (DMA engines must check before touching guest memory.)
  bool bus_master() const;

  // Raw config bytes and per-byte writable masks; derived classes may poke these.
  std::array<uint8_t, 256> cfg{};
  std::array<uint8_t, 256> wmask{};
  std::array<uint8_t, 256> w1cmask{};  // write-1-to-clear bits (e.g. status)

  uint32_t cfg_get(uint32_t off, int size) const;
  void cfg_set(uint32_t off, int size, uint32_t v);

  struct BarInfo {
    uint64_t size = 0;
    BarKind kind = BarKind::Mem32;
    std::shared_ptr<IoDevice> handler;
    uint64_t mapped_at = 0;
    bool mapped = false;
    bool upper_half = false;  // this index is the high dword of the 64-bit BAR below it
  };
  const BarInfo& bar(int i) const { return bars_[i]; }
  uint64_t bar_address(int i) const;  // as programmed in config space

  // Back to power-on config state (Command 0, BARs unprogrammed, INTx low,
  // interrupt line 0); called by PciHost::reset_all before reset().
  void reset_config();
  // Current INTx input level as set by the device (before INTx-disable).
  bool intx_level() const { return intx_level_; }
  int devfn() const { return devfn_; }

  std::string name = "pci";

protected:
  friend class PciHost;
  PciHost* host_ = nullptr;
  int devfn_ = -1;
  std::array<BarInfo, 7> bars_{};  // 6 = expansion ROM
  std::vector<uint8_t> rom_;
  // The image zero-padded to the ROM BAR size, page-aligned, for rom_mapped.
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, FreeDeleter> rom_mem_;
  bool rom_backed_ = false;  // rom_mapped was last told "mapped"
  uint8_t last_cap_ = 0;
  uint8_t next_cap_off_ = 0x40;
  bool intx_level_ = false;     // device's request
  bool intx_asserted_ = false;  // what was last sent to route_intx
  // Guards cfg and BAR state: config accesses (from the 0xcf8 port) and
  // set_intx (from a BAR handler on another vCPU) may race. Recursive so
  // derived overrides may call the base and bar_mapped may call set_intx.
  mutable std::recursive_mutex cfg_mu_;
  void update_mappings();
  void update_intx();
  void map_bar(int i, bool want, uint64_t addr);
};

// The host bridge side: config mechanism #1 and BAR placement onto buses.
class PciHost {
public:
  PciHost(Bus& pio, Bus& mmio) : pio_(pio), mmio_(mmio) {}
  // Attach at device `slot` (0..31), function `fn` (0..7).
  void attach(int slot, int fn, std::shared_ptr<PciFunction> f);
  std::shared_ptr<PciFunction> function(int slot, int fn) const;

  // The 0xcf8..0xcff port handler; register it on the PIO bus at 0xcf8, len 8.
  std::shared_ptr<IoDevice> config_port();

  // INTx routing: called with (slot, pin 1..4, level). The board installs the
  // PIIX3 PIRQ router here; the i440FX swizzle (QEMU, SeaBIOS' DSDT _PRT) is
  // PIRQ = (slot - 1 + pin - 1) & 3 -> PIRQA..D, so slot 1 INTA is PIRQA.
  std::function<void(int slot, int pin, bool level)> route_intx;

  // Expansion ROM BARs backed by memory, as QEMU backs them with a ROM
  // region: called (under the function's config lock) when `f`'s ROM BAR
  // starts decoding at `gpa` (Command.Memory and the ROM enable bit set) with
  // the image zero-padded to the BAR's `size` at page-aligned `host`, and
  // again with mapped == false (same gpa) when it stops: BAR moved or
  // disabled, memory decoding off, reset. The board maps it as a read-only
  // KVM memory slot so firmware copying the ROM (SeaBIOS: the VGA BIOS) reads
  // memory instead of making an exit per access. The bus handler stays
  // registered behind it (writes, and every access while no slot is there).
  // Only for BARs whose address and size are multiples of kRomPage (a 2 KiB
  // ROM BAR is served by the bus handler alone).
  static constexpr uint64_t kRomPage = 4096;
  std::function<void(PciFunction& f, uint64_t gpa, uint8_t* host, uint64_t size, bool mapped)> rom_mapped;

  // Accesses at 0xcf8..0xcfb that are not a dword at 0xcf8 (the address
  // register) are forwarded here with offset 0..3 (offset 1 = port 0xcf9, the
  // PIIX3 reset control register). Unset: reads all-ones, writes ignored.
  std::shared_ptr<IoDevice> cf8_other;

  // Mechanism #1 in code form (what the port handler does), for tests and the board.
  uint32_t config_read(int bus, int slot, int fn, uint32_t reg, int size);
  void config_write(int bus, int slot, int fn, uint32_t reg, int size, uint32_t value);

  void reset_all();

  // Saved state (docs/state.md, section "pci", version kStateVersion): the
  // config-address register, then every attached function's 256 config
  // bytes and INTx level. load_state checks the whole section first (the same
  // functions, each with the same IDs, class, header type and BAR kinds),
  // then replaces config space and re-maps BARs, ROM BARs and whatever
  // config_loaded() re-applies, as after a guest's config write. The
  // config port (config_port()) saves and loads through these.
  static constexpr uint32_t kStateVersion = 1;
  void save_state(state::StateWriter& w) const;
  void load_state(state::StateReader& r);

  Bus& pio() { return pio_; }
  Bus& mmio() { return mmio_; }

private:
  Bus& pio_;
  Bus& mmio_;
  std::array<std::shared_ptr<PciFunction>, 256> fns_{};
  std::shared_ptr<IoDevice> config_port_;
  mutable std::mutex fns_mu_;
};

}  // namespace vireo::pci
