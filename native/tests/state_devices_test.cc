// Per-device saved state (Stateful::save/load), without a vCPU: save -> load
// into a fresh device -> save gives the same bytes, and the device goes on
// behaving as the saved one would.
#include "check.h"
#include "devices/legacy/serial.h"
#include "machine/state.h"

#include <vector>

using namespace vireo;
using vireo::devices::Serial16550;

namespace {

void out(Serial16550& s, uint8_t off, uint8_t v) { s.write(off, std::span<const uint8_t>(&v, 1)); }
uint8_t in(Serial16550& s, uint8_t off) {
  uint8_t v = 0;
  s.read(off, std::span<uint8_t>(&v, 1));
  return v;
}

std::vector<uint8_t> save(const Stateful& d) {
  state::StateWriter w;
  d.save(w);
  return w.take();
}

}  // namespace

TEST(serial_round_trip_keeps_divisor_and_pending_bytes) {
  std::vector<uint8_t> sent_a, sent_b;
  Serial16550 a(IrqLine(), [&](uint8_t b) { sent_a.push_back(b); });
  out(a, Serial16550::LCR, 0x80);  // DLAB
  out(a, Serial16550::DLL, 0x01);  // 115200 baud
  out(a, Serial16550::DLM, 0x00);
  out(a, Serial16550::LCR, 0x03);  // 8N1
  out(a, Serial16550::FCR, 0xc7);  // FIFO on, trigger 14
  out(a, Serial16550::IER, 0x01);
  out(a, Serial16550::SCR, 0x5a);
  const uint8_t input[] = {'a', 'b', 'c'};
  a.queue_input(input);
  // 20 more than the FIFO holds: the rest waits in the backlog.
  std::vector<uint8_t> many(20, 'z');
  a.queue_input(many);
  auto bytes = save(a);
  CHECK(a.state_kind() == Stateful::StateKind::Saved);

  Serial16550 b(IrqLine(), [&](uint8_t x) { sent_b.push_back(x); });
  state::StateReader r(bytes, "com1", a.state_version());
  b.load(r);
  CHECK(save(b) == bytes);
  // Behaviour: the divisor, the scratch register, the pending bytes in order.
  out(b, Serial16550::LCR, 0x83);
  CHECK_EQ(in(b, Serial16550::DLL), uint8_t(0x01));
  out(b, Serial16550::LCR, 0x03);
  CHECK_EQ(in(b, Serial16550::SCR), uint8_t(0x5a));
  CHECK(in(b, Serial16550::LSR) & Serial16550::LSR_DR);
  CHECK_EQ(in(b, Serial16550::RBR), uint8_t('a'));
  CHECK_EQ(in(b, Serial16550::RBR), uint8_t('b'));
  CHECK_EQ(in(b, Serial16550::RBR), uint8_t('c'));
  size_t zs = 0;
  while (in(b, Serial16550::LSR) & Serial16550::LSR_DR) zs += in(b, Serial16550::RBR) == 'z';
  CHECK_EQ(zs, size_t(20));
  out(b, Serial16550::THR, 'x');
  CHECK(sent_b == std::vector<uint8_t>{'x'});
}

TEST(serial_refuses_bad_sections_and_stays_as_it_was) {
  Serial16550 a(IrqLine(), [](uint8_t) {});
  out(a, Serial16550::SCR, 0x42);
  auto good = save(a);
  Serial16550 b(IrqLine(), [](uint8_t) {});
  out(b, Serial16550::SCR, 0x11);
  auto expect_error = [&](std::vector<uint8_t> bytes, uint32_t version, const char* what) {
    state::StateReader r(bytes, "com1", version);
    std::string msg;
    try {
      b.load(r);
    } catch (const state::StateError& e) {
      msg = e.what();
    }
    if (msg.find(what) == std::string::npos) {
      std::fprintf(stderr, "got '%s', wanted '%s'\n", msg.c_str(), what);
      CHECK(false);
    }
    CHECK_EQ(in(b, Serial16550::SCR), uint8_t(0x11));  // untouched
  };
  expect_error({good.begin(), good.end() - 1}, 1, "truncated");
  expect_error(good, 2, "unknown version");
  auto longer = good;
  longer.push_back(0);
  expect_error(longer, 1, "unread bytes");
  auto bad_fifo = good;
  bad_fifo[9 + 1 + 16] = 16;  // rx_head past the FIFO
  expect_error(bad_fifo, 1, "out of range");
}
