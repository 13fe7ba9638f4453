#include "devices/pci/piix3.h"

#include <string>

#include "machine/state.h"

namespace vireo::pci {

namespace {

// Byte-wide port handlers that forward to the bridge.
class FnPort : public IoDevice {
public:
  using Rd = std::function<uint8_t(uint64_t)>;
  using Wr = std::function<void(uint64_t, uint8_t)>;
  FnPort(Rd r, Wr w) : r_(std::move(r)), w_(std::move(w)) {}
  StateKind state_kind() const override { return StateKind::None; }  // the registers are the bridge's (section "piix3")
  void read(uint64_t off, std::span<uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) d[i] = r_(off + i);
  }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) w_(off + i, d[i]);
  }

private:
  Rd r_;
  Wr w_;
};

// PIIX3 datasheet (82371SB) power-on defaults for the registers SeaBIOS,
// Linux and Windows look at.
void set_defaults(PciFunction& f) {
  f.cfg_set(kCommand, 2, kCmdIo | kCmdMem | kCmdMaster);
  f.cfg_set(kStatus, 2, 0x0200);  // DEVSEL medium
  f.cfg[0x4c] = 0x4d;             // ISA I/O recovery timer
  f.cfg[0x4e] = 0x03;             // X-bus chip select (BIOS, keyboard controller)
  f.cfg[0x4f] = 0x00;
  for (int i = 0; i < 4; i++) f.cfg[Piix3::kPirqBase + i] = Piix3::kPirqDisable;
  f.cfg[0x69] = 0x02;  // top of memory
  f.cfg[0x6a] = 0x00;
  f.cfg[0x6b] = 0x00;
  f.cfg[0x70] = 0x80;  // motherboard IRQ 0 disabled
  f.cfg[0x76] = 0x0c;  // motherboard DMA routing disabled
  f.cfg[0x77] = 0x0c;
  f.cfg[0x78] = 0x02;  // programmable chip select
  f.cfg[0x79] = 0x00;
  f.cfg[0x80] = 0x00;  // APIC base
  f.cfg[0x82] = 0x00;  // deterministic latency
  f.cfg[0xa0] = 0x08;  // SMI control
  for (int i = 0xa2; i <= 0xa7; i++) f.cfg[i] = 0;
  f.cfg[0xa8] = 0x0f;
  for (int i = 0xaa; i <= 0xae; i++) f.cfg[i] = 0;
}

}  // namespace

Piix3::Piix3(PciHost& host, Callbacks cb) : cb_(std::move(cb)) {
  name = "piix3";
  set_ids(kVendor, kDevice, 0x060100 /* bridge, ISA */, 0x00);
  cfg[kHeaderType] = 0x80;  // multi-function (IDE, USB, PM behind it)
  // Device-specific space is writable, as on QEMU; PIRQ bytes keep bits 6:4 zero.
  for (int i = 0x40; i < 0x100; i++) wmask[i] = 0xff;
  for (int i = 0; i < 4; i++) wmask[kPirqBase + i] = 0x8f;
  set_defaults(*this);

  elcr_dev_ = std::make_shared<FnPort>(
      [this](uint64_t off) -> uint8_t {
        std::lock_guard g(cfg_mu_);
        return off < 2 ? s.elcr[off] : 0xff;
      },
      [this](uint64_t off, uint8_t v) {
        if (off < 2) write_elcr(int(off), v);
      });
  // 0xcf8..0xcfb non-dword accesses: only 0xcf9 (offset 1) is the RCR.
  rcr_dev_ = std::make_shared<FnPort>(
      [this](uint64_t off) -> uint8_t {
        std::lock_guard g(cfg_mu_);
        return off == 1 ? s.rcr : 0xff;
      },
      [this](uint64_t off, uint8_t v) {
        if (off == 1) write_rcr(v);
      });
  port92_dev_ = std::make_shared<FnPort>(
      [this](uint64_t off) -> uint8_t {
        std::lock_guard g(cfg_mu_);
        return off == 0 ? s.port92 : 0xff;
      },
      [this](uint64_t off, uint8_t v) {
        if (off == 0) write_92(v);
      });

  host.route_intx = [this](int slot, int pin, bool level) { intx(slot, pin, level); };
  host.cf8_other = rcr_dev_;
}

void Piix3::config_write(uint32_t offset, int size, uint32_t value) {
  std::lock_guard g(cfg_mu_);
  PciFunction::config_write(offset, size, value);
  if (offset < kPirqBase + 4 && offset + size > kPirqBase) recompute();
}

void Piix3::reset() {
  std::lock_guard g(cfg_mu_);
  set_defaults(*this);
  s.rcr = 0;
  s.port92 &= 0x02;  // fast-reset bit clears; A20 keeps its state
  write_elcr(0, 0);
  write_elcr(1, 0);
  recompute();
}

int Piix3::pirq_irq(int pirq) const {
  uint8_t r = cfg[kPirqBase + (pirq & 3)];
  if (r & kPirqDisable) return -1;
  int irq = r & 0x0f;
  // IRQ 0, 1, 2, 8, 13 are reserved routing targets on the PIIX3.
  if (irq < 3 || irq == 8 || irq == 13) return -1;
  return irq;
}

void Piix3::intx(int slot, int pin, bool level) {
  if (slot < 0 || slot > 31 || pin < 1 || pin > 4) return;
  std::lock_guard g(cfg_mu_);
  uint32_t bit = 1u << slot;
  if (level) {
    s.pin_levels[pin - 1] |= bit;
  } else {
    s.pin_levels[pin - 1] &= ~bit;
  }
  recompute();
}

void Piix3::external_irq(int irq, int source, bool level) {
  if (irq < 0 || irq > 15 || source < 0 || source > 31) return;
  std::lock_guard g(cfg_mu_);
  if (level) {
    s.ext_levels[irq] |= 1u << source;
  } else {
    s.ext_levels[irq] &= ~(1u << source);
  }
  recompute();
}

void Piix3::recompute() {
  bool pirq_level[4] = {false, false, false, false};
  for (int pin = 1; pin <= 4; pin++) {
    uint32_t m = s.pin_levels[pin - 1];
    for (int slot = 0; m && slot < 32; slot++) {
      if (m & (1u << slot)) pirq_level[pirq_of(slot, pin)] = true;
    }
  }
  uint16_t levels = 0;
  for (int irq = 0; irq < 16; irq++) {
    if (s.ext_levels[irq]) levels |= uint16_t(1u << irq);
  }
  for (int p = 0; p < 4; p++) {
    int irq = pirq_irq(p);
    if (irq >= 0 && pirq_level[p]) levels |= uint16_t(1u << irq);
  }
  uint16_t changed = levels ^ s.isa_levels;
  s.isa_levels = levels;
  if (!cb_.set_isa_irq) return;
  for (int irq = 0; irq < 16; irq++) {
    if (changed & (1u << irq)) cb_.set_isa_irq(irq, levels & (1u << irq));
  }
}

void Piix3::write_elcr(int which, uint8_t v) {
  uint16_t before, after;
  {
    std::lock_guard g(cfg_mu_);
    before = elcr();
    s.elcr[which] = v & (which ? kElcrMask2 : kElcrMask1);
    after = elcr();
  }
  if (before != after && cb_.elcr_changed) cb_.elcr_changed(after);
}

void Piix3::write_rcr(uint8_t v) {
  {
    std::lock_guard g(cfg_mu_);
    s.rcr = v & 0x02;  // SRST (hard reset) is kept; RCPU self-clears
  }
  if ((v & 0x04) && cb_.reset) cb_.reset();
}

void Piix3::write_92(uint8_t v) {
  bool a20_changed, do_reset;
  {
    std::lock_guard g(cfg_mu_);
    uint8_t old = s.port92;
    s.port92 = v & 0x03;
    a20_changed = (old ^ v) & 0x02;
    do_reset = (v & 0x01) && !(old & 0x01);
  }
  if (a20_changed && cb_.set_a20) cb_.set_a20(v & 0x02);
  if (do_reset && cb_.reset) cb_.reset();
}

uint16_t Piix3::elcr() const {
  std::lock_guard g(cfg_mu_);
  return uint16_t(s.elcr[0] | s.elcr[1] << 8);
}

void Piix3::save(state::StateWriter& w) const {
  std::lock_guard g(cfg_mu_);
  w.u8(s.elcr[0]);
  w.u8(s.elcr[1]);
  w.u8(s.rcr);
  w.u8(s.port92);
  for (uint32_t v : s.pin_levels) w.u32(v);
  for (uint32_t v : s.ext_levels) w.u32(v);
}

void Piix3::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  n.elcr[0] = r.u8();
  n.elcr[1] = r.u8();
  n.rcr = r.u8();
  n.port92 = r.u8();
  for (uint32_t& v : n.pin_levels) v = r.u32();
  for (uint32_t& v : n.ext_levels) v = r.u32();
  r.finish();
  if ((n.elcr[0] & ~kElcrMask1) || (n.elcr[1] & ~kElcrMask2)) r.fail("ELCR marks an always-edge IRQ level-triggered");
  if (n.rcr & ~0x02) r.fail("reset control register out of range");
  if (n.port92 & ~0x03) r.fail("port 0x92 out of range");
  uint16_t before, after;
  {
    std::lock_guard g(cfg_mu_);
    before = uint16_t(s.elcr[0] | s.elcr[1] << 8);
    n.isa_levels = s.isa_levels;  // what the interrupt controller has now; recompute drives the difference
    s = n;
    after = uint16_t(s.elcr[0] | s.elcr[1] << 8);
    recompute();
  }
  if (before != after && cb_.elcr_changed) cb_.elcr_changed(after);
}

void Piix3::config_loaded() {
  std::lock_guard g(cfg_mu_);
  recompute();  // PIRQ routing may differ
}

Piix3::State Piix3::snapshot() const {
  std::lock_guard g(cfg_mu_);
  return s;
}

}  // namespace vireo::pci
