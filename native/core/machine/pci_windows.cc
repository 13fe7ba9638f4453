#include "machine/pci_windows.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "machine/layout.h"

namespace vireo {

namespace {
std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}
}  // namespace

PciWindows pci_windows(uint64_t ram_below_4g, uint64_t ram_above_4g, int phys_bits) {
  static_assert(pciwin::kMem32End == layout::kIoApicBase);
  static_assert(pciwin::kMem32BaseLarge == layout::kPciHoleStart);
  if (ram_below_4g > layout::kPciHoleStart)
    throw std::invalid_argument("pci windows: RAM below 4 GiB (" + hex(ram_below_4g) + ") passes the PCI hole at " +
                                hex(layout::kPciHoleStart));
  if (phys_bits < 32 || phys_bits > 64)
    throw std::invalid_argument("pci windows: " + std::to_string(phys_bits) + " physical address bits (32..64)");
  PciWindows w;
  w.mem32_base = ram_below_4g <= pciwin::kMem32BaseSmall ? pciwin::kMem32BaseSmall : pciwin::kMem32BaseLarge;
  w.mem32_end = pciwin::kMem32End;
  const uint64_t ram_end = layout::k4GiB + ram_above_4g;
  if (ram_end < ram_above_4g) throw std::invalid_argument("pci windows: RAM above 4 GiB overflows");
  const int top_bits = std::min(phys_bits, pciwin::kMem64TopBits);
  const uint64_t top = 1ull << top_bits;
  const uint64_t base = (ram_end + pciwin::kMem64Align - 1) & ~(pciwin::kMem64Align - 1);
  if (ram_end > top || base >= top)
    throw std::invalid_argument("pci windows: RAM ends at " + hex(ram_end) + ", no room for the 64-bit PCI window below " +
                                hex(top) + " (" + std::to_string(top_bits) + "-bit guest physical addresses)");
  w.mem64_base = base;
  w.mem64_end = top;
  return w;
}

}  // namespace vireo
