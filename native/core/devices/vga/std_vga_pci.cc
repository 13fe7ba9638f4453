#include "devices/vga/std_vga_pci.h"

namespace vireo::vga {

StdVgaPci::StdVgaPci(std::vector<uint8_t> vga_bios, size_t vram_size)
    : vga_(std::make_shared<VgaDevice>(vram_size)) {
  name = "std-vga";
  // Revision 2 and subsystem 1af4:1100 are what QEMU presents; guests' bochs
  // drivers key on 1234:1111 only.
  set_ids(kVendor, kDevice, 0x030000, 0x02, 0x1af4, 0x1100);
  // VRAM size must be a power of two for the BAR; round up (the tail is never backed).
  add_bar(0, vga_->vram_size(), pci::BarKind::Mem32Prefetch, vga_->lfb());
  add_bar(2, kMmioBarSize, pci::BarKind::Mem32, vga_->mmio_regs());
  if (!vga_bios.empty()) set_rom(std::move(vga_bios));
}

void StdVgaPci::bar_mapped(int bar, uint64_t addr, bool mapped) {
  if (bar == 0 && on_lfb_mapped) on_lfb_mapped(addr, mapped);
}

void StdVgaPci::reset() { vga_->reset(); }

}  // namespace vireo::vga
