// Intel 82371SB (PIIX3) function 0: the PCI-to-ISA bridge. What it models:
//  - config space 8086:7000, class 0601, multi-function header;
//  - PIRQ route control 0x60-0x63 (bit 7 = disabled, bits 3:0 = ISA IRQ):
//    installs PciHost::route_intx, maps slot/pin to PIRQA-D by the i440FX
//    swizzle and drives set_isa_irq(irq, level) with the OR of every source
//    on that IRQ (PCI INTx sharing, plus external sources such as the ACPI SCI);
//  - ELCR at 0x4d0/0x4d1 (elcr_port()); note KVM's in-kernel PIC claims these
//    ports itself, so register it only with a userspace PIC;
//  - reset control register 0xcf9 (installed as PciHost::cf8_other): a write
//    with bit 2 set requests a reset;
//  - System Control Port A 0x92 (port92()): bit 0 fast reset, bit 1 A20.
// Callbacks run synchronously from the guest's port write; `reset` should
// only request a reset (set a flag, kick the vCPUs), never tear the board down inline.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "bus/device.h"
#include "devices/pci/pci.h"

namespace vireo::pci {

class Piix3 : public PciFunction, public Stateful {
public:
  static constexpr uint16_t kVendor = 0x8086, kDevice = 0x7000;
  static constexpr int kSlot = 1, kFn = 0;  // QEMU pc/i440fx layout: 00:01.0
  static constexpr uint32_t kPirqBase = 0x60;  // PIRQRC[A..D]
  static constexpr uint8_t kPirqDisable = 0x80;
  static constexpr uint16_t kElcrPort = 0x4d0, kElcrLen = 2;
  static constexpr uint16_t kRcrPort = 0xcf9;
  static constexpr uint16_t kPort92 = 0x92;
  static constexpr uint8_t kElcrMask1 = 0xf8;  // IRQ 0, 1, 2 are always edge
  static constexpr uint8_t kElcrMask2 = 0xde;  // IRQ 8, 13 are always edge
  // External ISA interrupt sources (bit numbers for external_irq); the board may add more below 32.
  static constexpr int kSrcSci = 0;

  struct State {
    static constexpr uint32_t kVersion = 1;
    uint8_t elcr[2] = {0, 0};
    uint8_t rcr = 0;
    uint8_t port92 = 0x02;  // A20 on
    uint32_t pin_levels[4] = {0, 0, 0, 0};  // [pin-1] bit slot: INTx asserted
    uint32_t ext_levels[16] = {};           // per ISA IRQ: bitmask of external sources
    uint16_t isa_levels = 0;                // what was last sent to set_isa_irq (bit per IRQ)
  };

  struct Callbacks {
    std::function<void(int irq, bool level)> set_isa_irq;
    std::function<void()> reset;
    std::function<void(uint16_t elcr /*bit per IRQ*/)> elcr_changed;
    std::function<void(bool)> set_a20;
  };

  // Installs route_intx and cf8_other on `host`; the board still attaches it at kSlot/kFn.
  Piix3(PciHost& host, Callbacks cb);

  void config_write(uint32_t offset, int size, uint32_t value) override;
  void reset() override;

  std::shared_ptr<IoDevice> elcr_port() { return elcr_dev_; }
  std::shared_ptr<IoDevice> port92() { return port92_dev_; }

  // An ISA-level interrupt source outside PCI (e.g. the PIIX4 SCI on IRQ 9):
  // ORed with the PCI INTx routed to the same IRQ.
  void external_irq(int irq, int source, bool level);

  // The PCI INTx entry point (what route_intx calls).
  void intx(int slot, int pin, bool level);
  // The ISA IRQ a PIRQ (0..3 = A..D) routes to, or -1 when disabled.
  int pirq_irq(int pirq) const;
  static int pirq_of(int slot, int pin) { return (slot + pin - 2) & 3; }

  uint16_t elcr() const;
  State snapshot() const;

  // Saved state (section "piix3"): ELCR, RCR, port 0x92 and the interrupt
  // inputs (PCI INTx per pin and slot, external sources per IRQ). Config
  // space (PIRQ routing) is in the host's "pci" section; after either loads
  // the ISA lines are driven again from the loaded inputs. The port handlers
  // (0x92, 0xcf9, ELCR) have no state of their own.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;
  void config_loaded() override;

private:
  void recompute();
  void write_elcr(int which, uint8_t v);
  void write_rcr(uint8_t v);
  void write_92(uint8_t v);

  Callbacks cb_;
  State s;
  std::shared_ptr<IoDevice> elcr_dev_, rcr_dev_, port92_dev_;
};

}  // namespace vireo::pci
