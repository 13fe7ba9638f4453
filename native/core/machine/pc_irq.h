// The PC's interrupt routing: which in-kernel interrupt controller input each
// KVM GSI (the number KVM_IRQ_LINE takes; Vireo raises ISA IRQ n on GSI n,
// and KVM's in-kernel PIT raises GSI 0) reaches. PcBoard installs exactly
// this table with KVM_SET_GSI_ROUTING, and the MADT's interrupt source
// overrides are derived from it (machine/acpi.cc), so the two cannot drift.
//
// Shape (as on real PIIX3 boards and QEMU's "pc" with an in-kernel irqchip):
//   GSI 0-7 (but 2) -> master 8259 pin n; GSI 8-15 -> slave 8259 pin n-8
//   (GSI 2 is the cascade: nothing raises it);
//   GSI 0 -> IOAPIC pin 2 (the PIT's output is wired to IOAPIC input 2,
//   which the MADT reports as "ISA IRQ 0 -> GSI 2"); GSI 1, 3..23 -> IOAPIC
//   pin n. No route for GSI 2.
// Pure data: no KVM here (unit-tested without a vCPU).
#pragma once
#include <cstdint>
#include <vector>

namespace vireo::pcirq {

// KVM_IRQCHIP_PIC_MASTER / _PIC_SLAVE / _IOAPIC (linux/kvm.h).
enum class Chip : uint32_t { PicMaster = 0, PicSlave = 1, IoApic = 2 };

struct Route {
  uint32_t gsi;
  Chip chip;
  uint32_t pin;
};

constexpr uint32_t kIsaIrqs = 16;      // ISA IRQ 0-15 (two 8259s)
constexpr uint32_t kIoApicPins = 24;   // KVM_IOAPIC_NUM_PINS: the in-kernel 82093AA model
constexpr uint32_t kCascadeIrq = 2;    // master 8259 input 2 is the slave's INTR
constexpr uint32_t kPitGsi = 0;        // KVM's in-kernel PIT raises GSI 0 (kvm_pit_timer: irq 0)
constexpr uint32_t kPitIoApicPin = 2;  // PC/AT with APIC: the 8254's OUT0 reaches IOAPIC input 2

// The table PcBoard installs.
std::vector<Route> pc_routes();

// The IOAPIC pin `gsi` is routed to in `routes`, or -1 when it reaches none.
int ioapic_pin(const std::vector<Route>& routes, uint32_t gsi);

}  // namespace vireo::pcirq
