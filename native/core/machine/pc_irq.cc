#include "machine/pc_irq.h"

namespace vireo::pcirq {

std::vector<Route> pc_routes() {
  std::vector<Route> r;
  for (uint32_t i = 0; i < kIsaIrqs; i++) {
    if (i == kCascadeIrq) continue;
    if (i < 8)
      r.push_back({i, Chip::PicMaster, i});
    else
      r.push_back({i, Chip::PicSlave, i - 8});
  }
  for (uint32_t i = 0; i < kIoApicPins; i++) {
    if (i == kCascadeIrq) continue;
    r.push_back({i, Chip::IoApic, i == kPitGsi ? kPitIoApicPin : i});
  }
  return r;
}

int ioapic_pin(const std::vector<Route>& routes, uint32_t gsi) {
  for (const Route& r : routes)
    if (r.gsi == gsi && r.chip == Chip::IoApic) return int(r.pin);
  return -1;
}

}  // namespace vireo::pcirq
