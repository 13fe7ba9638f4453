#include "devices/legacy/serial.h"

#include "machine/state.h"

namespace vireo::devices {

unsigned Serial16550::rx_trigger() const {
  static constexpr unsigned levels[4] = {1, 4, 8, 14};
  return (s_.fcr & FCR_ENABLE) ? levels[s_.fcr >> 6] : 1;
}

size_t Serial16550::rx_space() const {
  unsigned cap = (s_.fcr & FCR_ENABLE) ? kFifoSize : 1;
  return s_.rx_count >= cap ? 0 : cap - s_.rx_count;
}

bool Serial16550::rx_push(uint8_t b) {
  if (rx_space() == 0) {
    s_.lsr |= LSR_OE;
    return false;
  }
  s_.rx[(s_.rx_head + s_.rx_count) % kFifoSize] = b;
  s_.rx_count++;
  s_.lsr |= LSR_DR;
  return true;
}

uint8_t Serial16550::rx_pop() {
  if (s_.rx_count == 0) return 0;
  uint8_t b = s_.rx[s_.rx_head];
  s_.rx_head = uint8_t((s_.rx_head + 1) % kFifoSize);
  s_.rx_count--;
  if (s_.rx_count == 0) s_.lsr &= ~LSR_DR;
  return b;
}

uint8_t Serial16550::compute_iir() const {
  uint8_t fifo = (s_.fcr & FCR_ENABLE) ? IIR_FIFO : 0;
  if ((s_.ier & IER_RLSI) && (s_.lsr & (LSR_OE | LSR_BI))) return fifo | IIR_RLSI;
  if ((s_.ier & IER_RDI) && s_.rx_count > 0) {
    // Below the trigger level a real UART raises the character-timeout
    // interrupt after four character times of silence; host input arrives in
    // bursts, so the timeout is taken as already elapsed.
    return fifo | (s_.rx_count >= rx_trigger() ? IIR_RDI : IIR_CTI);
  }
  if ((s_.ier & IER_THRI) && s_.thr_interrupt) return fifo | IIR_THRI;
  if ((s_.ier & IER_MSI) && (s_.msr & 0x0f)) return fifo | IIR_MSI;
  return fifo | IIR_NO_INT;
}

void Serial16550::update_irq() {
  bool pending = !(compute_iir() & IIR_NO_INT);
  // On a PC the UART's interrupt reaches the PIC only through the OUT2 gate;
  // in loopback mode the output is disconnected entirely.
  bool level = pending && (s_.mcr & MCR_OUT2) && !(s_.mcr & MCR_LOOP);
  if (level != irq_.level()) irq_.set(level);
}

void Serial16550::set_msr_from_loopback() {
  uint8_t old = s_.msr;
  uint8_t now = 0;
  if (s_.mcr & MCR_LOOP) {
    if (s_.mcr & MCR_RTS) now |= MSR_CTS;
    if (s_.mcr & MCR_DTR) now |= MSR_DSR;
    if (s_.mcr & MCR_OUT1) now |= MSR_RI;
    if (s_.mcr & MCR_OUT2) now |= MSR_DCD;
  } else {
    now = MSR_DCD | MSR_DSR | MSR_CTS;  // a modem that is always there
  }
  uint8_t delta = s_.msr & 0x0f;
  if ((old ^ now) & MSR_CTS) delta |= MSR_DCTS;
  if ((old ^ now) & MSR_DSR) delta |= MSR_DDSR;
  if ((old ^ now) & MSR_DCD) delta |= MSR_DDCD;
  if ((old & MSR_RI) && !(now & MSR_RI)) delta |= MSR_TERI;
  s_.msr = now | delta;
}

void Serial16550::tx(uint8_t b) {
  if (s_.mcr & MCR_LOOP) {
    rx_push(b);
  } else if (out_) {
    out_(b);
  }
  // Transmission is instantaneous: the holding register is empty again.
  s_.lsr |= LSR_THRE | LSR_TEMT;
  s_.thr_interrupt = true;
}

void Serial16550::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard g(mu_);
  uint8_t v = 0xff;
  bool space_opened = false;
  switch (offset & 7) {
    case RBR:
      if (s_.lcr & LCR_DLAB) {
        v = s_.dll;
      } else {
        bool was_full = rx_space() == 0;
        v = rx_pop();
        space_opened = was_full || s_.rx_count == 0;
      }
      break;
    case IER:
      v = (s_.lcr & LCR_DLAB) ? s_.dlm : s_.ier;
      break;
    case IIR:
      v = compute_iir();
      if ((v & 0x0f) == IIR_THRI) s_.thr_interrupt = false;  // reading IIR with THRE as the source clears it
      break;
    case LCR: v = s_.lcr; break;
    case MCR: v = s_.mcr; break;
    case LSR:
      v = s_.lsr;
      s_.lsr &= ~(LSR_OE | LSR_BI);  // error bits clear on read
      break;
    case MSR:
      v = s_.msr;
      s_.msr &= 0xf0;  // delta bits clear on read
      break;
    case SCR: v = s_.scr; break;
  }
  for (auto& b : data) b = 0;
  if (!data.empty()) data[0] = v;
  if (space_opened) refill_from_backlog();
  update_irq();
  if (space_opened && on_rx_space) on_rx_space();
}

void Serial16550::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard g(mu_);
  if (data.empty()) return;
  uint8_t v = data[0];
  switch (offset & 7) {
    case THR:
      if (s_.lcr & LCR_DLAB) {
        s_.dll = v;
      } else {
        s_.thr_interrupt = false;
        tx(v);
      }
      break;
    case IER:
      if (s_.lcr & LCR_DLAB) {
        s_.dlm = v;
      } else {
        uint8_t old = s_.ier;
        s_.ier = v & 0x0f;
        // Enabling the THRE interrupt while the holding register is empty raises it at once.
        if (!(old & IER_THRI) && (s_.ier & IER_THRI) && (s_.lsr & LSR_THRE)) s_.thr_interrupt = true;
      }
      break;
    case FCR: {
      bool was_enabled = s_.fcr & FCR_ENABLE;
      bool enable = v & FCR_ENABLE;
      if (was_enabled != enable || (v & FCR_CLEAR_RX)) {
        s_.rx_head = s_.rx_count = 0;
        s_.lsr &= ~LSR_DR;
      }
      s_.fcr = enable ? (v & 0xc9) : 0;
      break;
    }
    case LCR: s_.lcr = v; break;
    case MCR:
      s_.mcr = v & 0x1f;
      set_msr_from_loopback();
      refill_from_backlog();  // leaving loopback reconnects the wire
      break;
    case LSR: break;  // read-only (factory test only)
    case MSR: break;
    case SCR: s_.scr = v; break;
  }
  update_irq();
}

size_t Serial16550::receive(std::span<const uint8_t> bytes) {
  std::lock_guard g(mu_);
  if (s_.mcr & MCR_LOOP) return 0;  // the receiver is fed from the transmitter in loopback
  size_t n = 0;
  while (n < bytes.size() && rx_space() > 0) rx_push(bytes[n++]);
  if (n) update_irq();
  return n;
}

void Serial16550::refill_from_backlog() {
  if (s_.mcr & MCR_LOOP) return;
  while (!backlog_.empty() && rx_space() > 0) {
    rx_push(backlog_.front());
    backlog_.pop_front();
  }
}

size_t Serial16550::queue_input(std::span<const uint8_t> bytes) {
  std::lock_guard g(mu_);
  backlog_.insert(backlog_.end(), bytes.begin(), bytes.end());
  refill_from_backlog();
  update_irq();
  return backlog_.size();
}

size_t Serial16550::backlog() const {
  std::lock_guard g(mu_);
  return backlog_.size();
}

void Serial16550::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  for (uint8_t b : {s_.ier, s_.lcr, s_.mcr, s_.lsr, s_.msr, s_.scr, s_.fcr, s_.dll, s_.dlm}) w.u8(b);
  w.boolean(s_.thr_interrupt);
  w.bytes(s_.rx, sizeof s_.rx);
  w.u8(s_.rx_head);
  w.u8(s_.rx_count);
  w.u32(uint32_t(backlog_.size()));
  for (uint8_t b : backlog_) w.u8(b);
}

void Serial16550::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  for (uint8_t* b : {&n.ier, &n.lcr, &n.mcr, &n.lsr, &n.msr, &n.scr, &n.fcr, &n.dll, &n.dlm}) *b = r.u8();
  n.thr_interrupt = r.boolean();
  r.bytes(n.rx, sizeof n.rx);
  n.rx_head = r.u8();
  n.rx_count = r.u8();
  if (n.rx_head >= kFifoSize || n.rx_count > kFifoSize) r.fail("receive FIFO position out of range");
  uint32_t backlog = r.u32();
  if (backlog > (64u << 20)) r.fail("input backlog too long");
  auto bytes = r.span(backlog);
  r.finish();
  std::lock_guard g(mu_);
  s_ = n;
  backlog_.assign(bytes.begin(), bytes.end());
  update_irq();
}

}  // namespace vireo::devices
