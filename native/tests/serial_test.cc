#include "devices/legacy/serial.h"

#include <string>
#include <vector>

#include "check.h"

using namespace vireo;
using namespace vireo::devices;
using S = Serial16550;

namespace {
struct Rig {
  std::vector<bool> irq_history;
  std::string out;
  S uart{IrqLine([this](bool l) { irq_history.push_back(l); }), [this](uint8_t b) { out.push_back(char(b)); }};
  uint8_t rd(uint8_t reg) {
    uint8_t v;
    uart.read(reg, {&v, 1});
    return v;
  }
  void wr(uint8_t reg, uint8_t v) { uart.write(reg, {&v, 1}); }
  bool irq() const { return !irq_history.empty() && irq_history.back(); }
};
}  // namespace

TEST(transmit_goes_to_sink_and_lsr_says_empty) {
  Rig r;
  CHECK(r.rd(S::LSR) & S::LSR_THRE);
  r.wr(S::THR, 'h');
  r.wr(S::THR, 'i');
  CHECK_EQ(r.out, std::string("hi"));
  CHECK_EQ(r.rd(S::LSR) & (S::LSR_THRE | S::LSR_TEMT), S::LSR_THRE | S::LSR_TEMT);
}

TEST(divisor_latch_and_scratch) {
  Rig r;
  r.wr(S::LCR, 0x83);
  r.wr(S::DLL, 0x01);
  r.wr(S::DLM, 0x00);
  CHECK_EQ(r.rd(S::DLL), uint8_t(1));
  CHECK_EQ(r.rd(S::DLM), uint8_t(0));
  r.wr(S::LCR, 0x03);
  CHECK_EQ(r.rd(S::LCR), uint8_t(0x03));
  r.wr(S::THR, 'x');  // with DLAB clear this transmits, not sets DLL
  CHECK_EQ(r.out, std::string("x"));
  r.wr(S::SCR, 0x5a);
  CHECK_EQ(r.rd(S::SCR), uint8_t(0x5a));
}

TEST(receive_sets_dr_and_raises_rdi_through_out2) {
  Rig r;
  r.wr(S::IER, S::IER_RDI);
  const uint8_t in[] = {'a', 'b'};
  CHECK_EQ(r.uart.receive(in), size_t(1));  // FIFO off: one-byte holding register
  CHECK(!r.irq());                          // OUT2 not set: the interrupt is gated off
  r.wr(S::MCR, S::MCR_OUT2);
  CHECK(r.irq());
  CHECK_EQ(r.rd(S::IIR) & 0x0f, S::IIR_RDI);  // FIFO off: trigger level 1 reached => RDI
  CHECK(r.rd(S::LSR) & S::LSR_DR);
  CHECK_EQ(r.rd(S::RBR), uint8_t('a'));
  CHECK(!(r.rd(S::LSR) & S::LSR_DR));
  CHECK(!r.irq());
}

TEST(fifo_holds_16_then_overruns_and_trigger_levels) {
  Rig r;
  r.wr(S::FCR, 0xc7);  // enable, clear, trigger 14
  CHECK_EQ(r.rd(S::IIR) & 0xc0, 0xc0);
  r.wr(S::MCR, S::MCR_OUT2);
  r.wr(S::IER, S::IER_RDI | S::IER_RLSI);
  std::vector<uint8_t> in(20);
  for (int i = 0; i < 20; i++) in[i] = uint8_t('A' + i);
  CHECK_EQ(r.uart.receive(std::span<const uint8_t>(in.data(), 10)), size_t(10));
  CHECK_EQ(r.rd(S::IIR) & 0x0f, S::IIR_CTI);  // below trigger: character timeout
  CHECK_EQ(r.uart.receive(std::span<const uint8_t>(in.data() + 10, 10)), size_t(6));
  CHECK_EQ(r.rd(S::IIR) & 0x0f, S::IIR_RDI);
  std::string got;
  while (r.rd(S::LSR) & S::LSR_DR) got.push_back(char(r.rd(S::RBR)));
  CHECK_EQ(got, std::string("ABCDEFGHIJKLMNOP"));
  CHECK_EQ(r.rd(S::IIR) & 0x0f, S::IIR_NO_INT);
}

TEST(rx_space_callback_fires_when_fifo_drains) {
  Rig r;
  int calls = 0;
  r.uart.on_rx_space = [&] { calls++; };
  const uint8_t b = 'z';
  r.uart.receive({&b, 1});
  CHECK_EQ(r.uart.rx_space(), size_t(0));
  r.rd(S::RBR);
  CHECK_EQ(calls, 1);
  CHECK_EQ(r.uart.rx_space(), size_t(1));
}

TEST(thre_interrupt_on_enable_cleared_by_iir_read) {
  Rig r;
  r.wr(S::MCR, S::MCR_OUT2);
  r.wr(S::IER, S::IER_THRI);
  CHECK(r.irq());
  CHECK_EQ(r.rd(S::IIR) & 0x0f, S::IIR_THRI);
  CHECK(!r.irq());
  CHECK_EQ(r.rd(S::IIR) & 0x0f, S::IIR_NO_INT);
  r.wr(S::THR, '!');  // transmitting empties the register again: interrupt again
  CHECK(r.irq());
}

TEST(loopback_routes_tx_to_rx_and_mcr_to_msr) {
  Rig r;
  r.wr(S::MCR, S::MCR_LOOP | S::MCR_RTS | S::MCR_OUT1);
  uint8_t msr = r.rd(S::MSR);
  CHECK(msr & S::MSR_CTS);
  CHECK(msr & S::MSR_RI);
  CHECK(!(msr & S::MSR_DSR));
  CHECK(!(msr & S::MSR_DCD));
  r.wr(S::THR, 0x42);
  CHECK(r.out.empty());
  CHECK(r.rd(S::LSR) & S::LSR_DR);
  CHECK_EQ(r.rd(S::RBR), uint8_t(0x42));
  const uint8_t b = 1;
  CHECK_EQ(r.uart.receive({&b, 1}), size_t(0));  // host input is disconnected in loopback
  r.wr(S::MCR, 0);
  msr = r.rd(S::MSR);
  CHECK(msr & S::MSR_DCD);
  CHECK(msr & S::MSR_DDCD);      // DCD changed
  CHECK(!(r.rd(S::MSR) & 0x0f));  // deltas cleared on read
}

TEST(overrun_sets_oe_and_rls_interrupt) {
  Rig r;
  r.wr(S::MCR, S::MCR_OUT2);
  r.wr(S::IER, S::IER_RLSI);
  const uint8_t b[2] = {1, 2};
  r.uart.receive(b);  // second byte does not fit: caller keeps it, no overrun
  CHECK(!(r.rd(S::LSR) & S::LSR_OE));
  // A loopback write into a full holding register overruns.
  r.wr(S::MCR, S::MCR_LOOP | S::MCR_OUT2);
  r.wr(S::THR, 3);
  uint8_t lsr = r.rd(S::LSR);
  CHECK(lsr & S::LSR_OE);
  CHECK(!(r.rd(S::LSR) & S::LSR_OE));
}

TEST(queued_input_is_never_lost) {
  Rig r;
  r.wr(S::FCR, 0x01);
  std::string msg(1000, 0);
  for (size_t i = 0; i < msg.size(); i++) msg[i] = char('a' + i % 26);
  CHECK_EQ(r.uart.queue_input(std::span<const uint8_t>((const uint8_t*)msg.data(), msg.size())), size_t(1000 - 16));
  std::string got;
  while (r.rd(S::LSR) & S::LSR_DR) got.push_back(char(r.rd(S::RBR)));
  CHECK_EQ(got, msg);
  CHECK_EQ(r.uart.backlog(), size_t(0));
  CHECK(!(r.rd(S::LSR) & S::LSR_OE));
}
