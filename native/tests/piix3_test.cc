#include "devices/pci/piix3.h"

#include <map>
#include <memory>
#include <vector>

#include "check.h"

using namespace vireo;
using namespace vireo::pci;

namespace {

struct IntxFn : PciFunction {
  explicit IntxFn(uint8_t pin) { set_interrupt_pin(pin); }
};

struct Rig {
  Bus pio, mmio;
  PciHost host{pio, mmio};
  std::map<int, bool> irq;
  std::vector<std::pair<int, bool>> log;
  int resets = 0;
  std::vector<uint16_t> elcrs;
  std::vector<bool> a20;
  std::shared_ptr<Piix3> isa;
  Rig() {
    Piix3::Callbacks cb;
    cb.set_isa_irq = [this](int i, bool l) {
      irq[i] = l;
      log.push_back({i, l});
    };
    cb.reset = [this] { resets++; };
    cb.elcr_changed = [this](uint16_t e) { elcrs.push_back(e); };
    cb.set_a20 = [this](bool on) { a20.push_back(on); };
    isa = std::make_shared<Piix3>(host, cb);
    host.attach(Piix3::kSlot, Piix3::kFn, isa);
    pio.insert(host.config_port(), 0xcf8, 8, "pci-cfg");
    pio.insert(isa->elcr_port(), Piix3::kElcrPort, Piix3::kElcrLen, "elcr");
    pio.insert(isa->port92(), Piix3::kPort92, 1, "port92");
  }
  void outb(uint16_t port, uint8_t v) { pio.write(port, {&v, 1}); }
  uint8_t inb(uint16_t port) {
    uint8_t v;
    pio.read(port, {&v, 1});
    return v;
  }
  void route(int pirq, uint8_t v) { host.config_write(0, 1, 0, 0x60 + pirq, 1, v); }
};

}  // namespace

TEST(ids_class_and_multifunction) {
  Rig r;
  CHECK_EQ(r.host.config_read(0, 1, 0, 0, 4), 0x70008086u);
  CHECK_EQ(r.host.config_read(0, 1, 0, 0x0a, 2), 0x0601u);
  CHECK_EQ(r.host.config_read(0, 1, 0, 0x0e, 1), 0x80u);
  CHECK_EQ(r.host.config_read(0, 1, 0, 0x60, 4), 0x80808080u);
}

TEST(swizzle_matches_seabios) {
  // SeaBIOS piix_pci_slot_get_irq: pci_irqs[(pin - 1 + slot - 1) & 3].
  CHECK_EQ(Piix3::pirq_of(1, 1), 0);
  CHECK_EQ(Piix3::pirq_of(0, 1), 3);
  CHECK_EQ(Piix3::pirq_of(2, 1), 1);
  CHECK_EQ(Piix3::pirq_of(3, 2), 3);
  CHECK_EQ(Piix3::pirq_of(5, 4), 3);
  CHECK_EQ(Piix3::pirq_of(4, 3), 1);
}

TEST(pirq_routing_drives_isa_irq) {
  Rig r;
  auto dev = std::make_shared<IntxFn>(1);
  r.host.attach(3, 0, dev);  // slot 3 INTA -> PIRQC
  dev->set_intx(true);
  CHECK(r.log.empty());  // PIRQC disabled
  r.route(2, 11);
  CHECK(r.irq[11]);
  dev->set_intx(false);
  CHECK(!r.irq[11]);
  dev->set_intx(true);
  // Re-routing moves the level.
  r.route(2, 10);
  CHECK(!r.irq[11]);
  CHECK(r.irq[10]);
  r.route(2, 0x80 | 10);
  CHECK(!r.irq[10]);
  // Reserved targets are not used.
  r.route(2, 2);
  CHECK(!r.irq[2]);
}

TEST(level_sharing_across_devices) {
  Rig r;
  auto a = std::make_shared<IntxFn>(1);  // slot 2 INTA -> PIRQB
  auto b = std::make_shared<IntxFn>(4);  // slot 3 INTD -> PIRQB
  r.host.attach(2, 0, a);
  r.host.attach(3, 0, b);
  r.route(1, 10);
  a->set_intx(true);
  b->set_intx(true);
  CHECK(r.irq[10]);
  a->set_intx(false);
  CHECK(r.irq[10]);  // b still asserts
  b->set_intx(false);
  CHECK(!r.irq[10]);
  // Two PIRQs on the same IRQ share too.
  r.route(0, 10);
  auto c = std::make_shared<IntxFn>(1);  // slot 1 fn 2 INTA -> PIRQA
  r.host.attach(1, 2, c);
  c->set_intx(true);
  a->set_intx(true);
  c->set_intx(false);
  CHECK(r.irq[10]);
  a->set_intx(false);
  CHECK(!r.irq[10]);
  // External sources OR in.
  r.isa->external_irq(10, Piix3::kSrcSci, true);
  CHECK(r.irq[10]);
  a->set_intx(true);
  a->set_intx(false);
  CHECK(r.irq[10]);
  r.isa->external_irq(10, Piix3::kSrcSci, false);
  CHECK(!r.irq[10]);
}

TEST(elcr_ports_mask_and_callback) {
  Rig r;
  r.outb(0x4d0, 0xff);
  r.outb(0x4d1, 0xff);
  CHECK_EQ(r.inb(0x4d0), 0xf8);
  CHECK_EQ(r.inb(0x4d1), 0xde);
  CHECK_EQ(r.elcrs.size(), size_t(2));
  CHECK_EQ(r.elcrs.back(), uint16_t(0xdef8));
  r.outb(0x4d1, 0xde);  // unchanged: no callback
  CHECK_EQ(r.elcrs.size(), size_t(2));
}

TEST(reset_control_register_cf9) {
  Rig r;
  r.outb(0xcf9, 0x02);
  CHECK_EQ(r.resets, 0);
  CHECK_EQ(r.inb(0xcf9), 0x02);
  r.outb(0xcf9, 0x06);
  CHECK_EQ(r.resets, 1);
  CHECK_EQ(r.inb(0xcf9) & 0x04, 0);
  // Mechanism #1 still works alongside.
  uint8_t a[4] = {0x00, 0x08, 0x00, 0x80};  // 0x80000800: slot 1 fn 0 reg 0
  r.pio.write(0xcf8, a);
  uint8_t d[4];
  r.pio.read(0xcfc, d);
  CHECK_EQ(d[0], 0x86);
}

TEST(port92_a20_and_fast_reset) {
  Rig r;
  CHECK_EQ(r.inb(0x92), 0x02);
  r.outb(0x92, 0x00);
  CHECK_EQ(r.a20.size(), size_t(1));
  CHECK(!r.a20[0]);
  r.outb(0x92, 0x03);
  CHECK(r.a20.back());
  CHECK_EQ(r.resets, 1);
  r.outb(0x92, 0x03);  // no new 0->1 edge
  CHECK_EQ(r.resets, 1);
}

TEST(reset_restores_defaults) {
  Rig r;
  r.route(0, 11);
  r.outb(0x4d1, 0x08);
  r.host.reset_all();
  CHECK_EQ(r.host.config_read(0, 1, 0, 0x60, 1), 0x80u);
  CHECK_EQ(r.inb(0x4d1), 0x00);
  CHECK_EQ(r.host.config_read(0, 1, 0, 4, 2), 0x07u);
}
