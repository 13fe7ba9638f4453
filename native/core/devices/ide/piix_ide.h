// PIIX3 IDE controller, PCI function 8086:7010, class 0x010180 (legacy-mode
// primary and secondary channels, bus-master capable).
//
// The channels decode the fixed ISA ranges, not BARs; the board registers:
//   PIO 0x1f0 len 8 -> channel(0)->cmd_block()   PIO 0x3f6 len 1 -> channel(0)->ctl_block()
//   PIO 0x170 len 8 -> channel(1)->cmd_block()   PIO 0x376 len 1 -> channel(1)->ctl_block()
// and passes the IRQ 14 / IRQ 15 lines to the constructor. BAR4 is the
// 16-byte bus-master block (channel 0 at +0, channel 1 at +8), mapped by PCI.
#pragma once
#include <array>
#include <memory>

#include "devices/ide/ide.h"
#include "devices/pci/pci.h"

namespace vireo::ide {

class PiixIde : public pci::PciFunction {
public:
  PiixIde(const GuestMemory* mem, IrqLine irq14, IrqLine irq15);

  const std::shared_ptr<IdeChannel>& channel(int i) const { return ch_[i & 1]; }
  // The BAR4 handler (also usable directly in tests): offset 0-15.
  const std::shared_ptr<IoDevice>& bmdma() const { return bm_; }

  void reset() override;

private:
  std::array<std::shared_ptr<IdeChannel>, 2> ch_;
  std::shared_ptr<IoDevice> bm_;
};

}  // namespace vireo::ide
