// QEMU-compatible "std-vga" PCI function (1234:1111, class 0x030000) around
// the VgaDevice core.
//
// BAR0: 16 MiB prefetchable linear framebuffer = VgaDevice::vram(). The board
//       maps it as a KVM memory slot whenever on_lfb_mapped reports an
//       address, with dirty logging on, and passes the dirty log to poll().
//       The bus handler behind BAR0 (VgaDevice::lfb()) only serves accesses
//       while no slot is installed.
// BAR2: 4 KiB MMIO: EDID at 0x000, VGA ports 0x3c0-0x3df mirrored at 0x400,
//       Bochs dispi registers at 0x500 (16-bit, index * 2), QEMU extension
//       registers at 0x600.
// ROM:  the VGA BIOS image (vgabios-stdvga.bin) given to the constructor.
// The fixed legacy resources are not BARs; the board registers them itself:
//   PIO 0x3b0 len 0x30  -> vga()->legacy_ports()
//   PIO 0x1ce len 3     -> vga()->dispi_ports()
//   MMIO 0xa0000 len 0x20000 -> vga()->legacy_memory()
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "devices/pci/pci.h"
#include "devices/vga/vga.h"

namespace vireo::vga {

class StdVgaPci : public pci::PciFunction {
public:
  static constexpr uint16_t kVendor = 0x1234, kDevice = 0x1111;
  static constexpr uint64_t kMmioBarSize = 4096;

  // `vga_bios`: contents of vgabios-stdvga.bin (may be empty: no ROM BAR).
  explicit StdVgaPci(std::vector<uint8_t> vga_bios, size_t vram_size = VgaDevice::kDefaultVramSize);

  const std::shared_ptr<VgaDevice>& vga() const { return vga_; }

  // Called (under the PCI config lock) when BAR0 is mapped at `gpa` or
  // unmapped (mapped == false). The board installs/removes the KVM slot here.
  std::function<void(uint64_t gpa, bool mapped)> on_lfb_mapped;

  void bar_mapped(int bar, uint64_t addr, bool mapped) override;
  void reset() override;

private:
  std::shared_ptr<VgaDevice> vga_;
};

}  // namespace vireo::vga
