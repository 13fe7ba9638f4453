// 16550A UART (National Semiconductor PC16550D data sheet). A pure state
// machine: output bytes go to an injected sink, the interrupt line is an
// injected IrqLine, host input arrives through receive(). COM1 is at 0x3f8 /
// IRQ 4 and COM2 at 0x2f8 / IRQ 3 (wired in machine/pc_layout.h).
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "bus/device.h"
#include "devices/irq.h"

namespace vireo::devices {

class Serial16550 : public IoDevice {
public:
  static constexpr int kFifoSize = 16;
  // Register offsets.
  static constexpr uint8_t RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4,
                           LSR = 5, MSR = 6, SCR = 7;
  // Bits.
  static constexpr uint8_t IER_RDI = 1, IER_THRI = 2, IER_RLSI = 4, IER_MSI = 8;
  static constexpr uint8_t IIR_NO_INT = 0x01, IIR_MSI = 0x00, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_RLSI = 0x06,
                           IIR_CTI = 0x0c, IIR_FIFO = 0xc0;
  static constexpr uint8_t FCR_ENABLE = 1, FCR_CLEAR_RX = 2, FCR_CLEAR_TX = 4;
  static constexpr uint8_t LCR_DLAB = 0x80;
  static constexpr uint8_t MCR_DTR = 1, MCR_RTS = 2, MCR_OUT1 = 4, MCR_OUT2 = 8, MCR_LOOP = 16;
  static constexpr uint8_t LSR_DR = 1, LSR_OE = 2, LSR_BI = 0x10, LSR_THRE = 0x20, LSR_TEMT = 0x40;
  static constexpr uint8_t MSR_DCTS = 1, MSR_DDSR = 2, MSR_TERI = 4, MSR_DDCD = 8, MSR_CTS = 0x10, MSR_DSR = 0x20,
                           MSR_RI = 0x40, MSR_DCD = 0x80;

  struct State {
    static constexpr uint32_t kVersion = 1;
    uint8_t ier = 0, lcr = 0, mcr = 0, lsr = LSR_THRE | LSR_TEMT, msr = MSR_DCD | MSR_DSR | MSR_CTS, scr = 0;
    uint8_t fcr = 0, dll = 0x0c, dlm = 0;  // 9600 baud
    bool thr_interrupt = false;            // THRE interrupt pending (cleared by IIR read or THR write)
    uint8_t rx[kFifoSize] = {};
    uint8_t rx_head = 0, rx_count = 0;
  };

  Serial16550(IrqLine irq, std::function<void(uint8_t)> out) : irq_(std::move(irq)), out_(std::move(out)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host → guest. Accepts as many bytes as fit in the receive buffer (the
  // FIFO, or one byte when FIFOs are off) and returns that count; the caller
  // keeps the rest and retries when `on_rx_space` fires.
  size_t receive(std::span<const uint8_t> bytes);
  // Fired (inside a guest read of RBR) when receive buffer space opens.
  std::function<void()> on_rx_space;
  // Host input with no loss: bytes that do not fit now wait on "the wire"
  // (a backlog inside the device, under its lock) and move into the FIFO as
  // the guest reads. Returns the backlog length after queuing.
  size_t queue_input(std::span<const uint8_t> bytes);
  size_t backlog() const;

  const State& state() const { return s_; }
  // Saved state (machine/state.h): the registers, the receive FIFO, the
  // interrupt latch and the host input still on "the wire".
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;
  size_t rx_space() const;

private:
  void update_irq();
  void refill_from_backlog();
  uint8_t compute_iir() const;
  bool rx_push(uint8_t b);
  uint8_t rx_pop();
  void tx(uint8_t b);
  void set_msr_from_loopback();
  unsigned rx_trigger() const;

  // Guest port access (vCPU threads) and host input (another thread) meet
  // here; recursive because on_rx_space may feed receive() from inside read().
  mutable std::recursive_mutex mu_;
  State s_;
  std::deque<uint8_t> backlog_;
  IrqLine irq_;
  std::function<void(uint8_t)> out_;
};

}  // namespace vireo::devices
