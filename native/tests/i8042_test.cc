#include "devices/legacy/i8042.h"

#include <vector>

#include "check.h"

using namespace vireo;

namespace {

struct Rig {
  int irq1_edges = 0, irq12_edges = 0;
  int resets = 0;
  std::vector<bool> a20;
  I8042 k{IrqLine([this](bool l) { irq1_edges += l; }), IrqLine([this](bool l) { irq12_edges += l; }),
          I8042::Callbacks{[this] { resets++; }, [this](bool on) { a20.push_back(on); }}};
  // Read everything currently available, with the status bit 5 of each byte.
  std::vector<uint8_t> drain(std::vector<bool>* aux = nullptr) {
    std::vector<uint8_t> out;
    for (int i = 0; i < 100 && (k.read_status() & I8042::kStOutFull); i++) {
      if (aux) aux->push_back(k.read_status() & I8042::kStAuxData);
      out.push_back(k.read_data());
    }
    return out;
  }
  void cmd(uint8_t c) { k.write_command(c); }
  void data(uint8_t d) { k.write_data(d); }
  void aux(uint8_t d) {
    k.write_command(0xd4);
    k.write_data(d);
  }
};

using Bytes = std::vector<uint8_t>;

}  // namespace

TEST(self_test_and_interface_tests) {
  Rig r;
  r.cmd(0xaa);
  CHECK_EQ(r.drain(), Bytes{0x55});
  CHECK(r.k.read_status() & I8042::kStSystem);
  r.cmd(0xab);
  CHECK_EQ(r.drain(), Bytes{0x00});
  r.cmd(0xa9);
  CHECK_EQ(r.drain(), Bytes{0x00});
}

TEST(command_byte_read_write) {
  Rig r;
  r.cmd(0x60);
  CHECK(r.k.read_status() & I8042::kStCmd);
  r.data(0x41);
  CHECK(!(r.k.read_status() & I8042::kStCmd));
  r.cmd(0x20);
  CHECK_EQ(r.drain(), Bytes{0x41});
  r.cmd(0xad);  // disable keyboard
  r.cmd(0x20);
  CHECK_EQ(r.drain(), Bytes{0x51});
  r.cmd(0xae);
  r.cmd(0xa7);  // disable aux
  r.cmd(0x20);
  CHECK_EQ(r.drain(), Bytes{0x61});
  r.cmd(0xa8);
  r.cmd(0x20);
  CHECK_EQ(r.drain(), Bytes{0x41});
  // Internal RAM round-trips.
  r.cmd(0x65);
  r.data(0x9c);
  r.cmd(0x25);
  CHECK_EQ(r.drain(), Bytes{0x9c});
}

TEST(output_port_a20_and_reset) {
  Rig r;
  r.cmd(0xd0);
  auto op = r.drain();
  CHECK_EQ(op.size(), size_t(1));
  CHECK(op[0] & I8042::kOutA20);
  r.cmd(0xd1);
  r.data(0x01);  // A20 off, reset deasserted
  CHECK_EQ(r.a20.size(), size_t(1));
  CHECK(!r.a20[0]);
  CHECK_EQ(r.resets, 0);
  r.cmd(0xd1);
  r.data(0x03);
  CHECK(r.a20.back());
  r.cmd(0xd1);
  r.data(0x02);  // bit 0 clear: CPU reset
  CHECK_EQ(r.resets, 1);
  r.cmd(0xfe);
  CHECK_EQ(r.resets, 2);
  r.cmd(0xff);  // pulses nothing
  CHECK_EQ(r.resets, 2);
}

TEST(keyboard_reset_and_id_translated) {
  Rig r;
  r.data(0xff);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xaa}));
  r.data(0xf2);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xab, 0x41}));  // 0x83 through translation
  r.cmd(0x60);
  r.data(0x01);  // translation off
  r.data(0xf2);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xab, 0x83}));
}

TEST(keyboard_scancode_set_and_leds) {
  Rig r;
  r.cmd(0x60);
  r.data(0x01);  // no translation
  r.data(0xf0);
  r.data(0x00);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfa, 0x02}));
  r.data(0xf0);
  r.data(0x01);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfa}));
  r.k.key("KeyA", true);
  CHECK_EQ(r.drain(), Bytes{0x1e});  // set 1 generated natively
  r.data(0xf0);
  r.data(0x07);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfe}));  // invalid set
  r.data(0xed);
  r.data(0x07);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfa}));
  CHECK_EQ(r.k.snapshot().kbd_leds, 7);
  r.data(0xf3);
  r.data(0x20);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfa}));
  r.data(0xee);
  CHECK_EQ(r.drain(), Bytes{0xee});
  r.data(0x12);  // unknown
  CHECK_EQ(r.drain(), Bytes{0xfe});
}

TEST(keyboard_get_set_translated_reply) {
  Rig r;  // translation on by default
  r.data(0xf0);
  r.data(0x00);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfa, 0x41}));
}

TEST(key_set2_raw_and_translated) {
  Rig r;
  r.cmd(0x60);
  r.data(0x01);
  r.k.key("KeyA", true);
  r.k.key("KeyA", false);
  CHECK_EQ(r.drain(), (Bytes{0x1c, 0xf0, 0x1c}));
  r.k.key("ArrowUp", true);
  r.k.key("ArrowUp", false);
  CHECK_EQ(r.drain(), (Bytes{0xe0, 0x75, 0xe0, 0xf0, 0x75}));
  r.cmd(0x60);
  r.data(0x41);  // translate
  r.k.key("KeyA", true);
  r.k.key("KeyA", false);
  r.k.key("ArrowUp", true);
  r.k.key("ArrowUp", false);
  r.k.key("F7", true);
  r.k.key("Enter", false);
  CHECK_EQ(r.drain(), (Bytes{0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8, 0x41, 0x9c}));
  CHECK(!r.k.key("NoSuchKey", true));
}

TEST(translation_matches_set1_for_every_key) {
  // For every key, translating its set-2 sequence must give its set-1 sequence.
  const char* codes[] = {"Escape", "Digit1", "Minus", "Backspace", "Tab", "KeyQ", "KeyZ", "Enter", "ControlLeft",
                         "ShiftRight", "Space", "CapsLock", "F1", "F10", "F11", "F12", "NumLock", "Numpad0",
                         "NumpadDecimal", "NumpadMultiply", "Backquote", "Quote", "Slash", "NumpadEnter",
                         "ControlRight", "AltRight", "Insert", "Delete", "Home", "End", "PageUp", "PageDown",
                         "MetaLeft", "MetaRight", "ContextMenu", "NumpadDivide", "ArrowLeft", "ArrowRight",
                         "ArrowDown", "IntlBackslash", "PrintScreen"};
  for (const char* c : codes) {
    for (bool down : {true, false}) {
      auto s2 = I8042::scancodes(c, down, 2);
      auto s1 = I8042::scancodes(c, down, 1);
      Bytes t;
      bool rel = false;
      for (uint8_t b : s2) {
        if (b == 0xf0) {
          rel = true;
          continue;
        }
        uint8_t x = I8042::translate(b);
        if (rel) x |= 0x80;
        rel = false;
        t.push_back(x);
      }
      if (t != s1) {
        std::printf("mismatch for %s %d\n", c, int(down));
      }
      CHECK(t == s1);
    }
  }
}

TEST(scanning_disabled_drops_keys) {
  Rig r;
  r.data(0xf5);
  CHECK_EQ(r.drain(), Bytes{0xfa});
  r.k.key("KeyB", true);
  CHECK(r.drain().empty());
  r.data(0xf4);
  CHECK_EQ(r.drain(), Bytes{0xfa});
  r.k.key("KeyB", true);
  CHECK_EQ(r.drain(), Bytes{0x30});
}

// A guest slower than the typist: more keys than the keyboard's 64-byte
// buffer holds all arrive, in order, as the guest reads; a keyboard reset
// forgets what was still waiting, as a real one does.
TEST(keys_beyond_the_buffer_wait_on_the_host) {
  Rig r;
  const char* word[] = {"KeyH", "KeyE", "KeyL", "KeyL", "KeyO"};
  Bytes want;
  for (int i = 0; i < 40; i++) {  // 40 x (make + break) = 80 bytes set 1, 120 raw set 2
    const char* k = word[i % 5];
    r.k.key(k, true);
    r.k.key(k, false);
    Bytes mk = I8042::scancodes(k, true, 1), br = I8042::scancodes(k, false, 1);
    want.insert(want.end(), mk.begin(), mk.end());
    want.insert(want.end(), br.begin(), br.end());
  }
  CHECK(r.k.backlog() > 64);
  Bytes got;
  for (int i = 0; i < 1000 && (r.k.read_status() & I8042::kStOutFull); i++) got.push_back(r.k.read_data());
  CHECK_EQ(got, want);
  CHECK_EQ(r.k.backlog(), size_t(0));

  for (int i = 0; i < 100; i++) r.k.key("KeyA", true);
  CHECK(r.k.backlog() > 64);
  r.data(0xff);  // keyboard reset: the byte already in the output buffer, then ACK, BAT OK and nothing older
  CHECK_EQ(r.drain(), (Bytes{0x1e, 0xfa, 0xaa}));
  CHECK_EQ(r.k.backlog(), size_t(0));
}

TEST(kbd_port_disabled_holds_data) {
  Rig r;
  r.cmd(0xad);
  r.k.key("KeyA", true);
  CHECK(!(r.k.read_status() & I8042::kStOutFull));
  r.cmd(0xae);
  CHECK_EQ(r.drain(), Bytes{0x1e});
}

TEST(irq1_raised_per_byte_only_when_enabled) {
  Rig r;
  r.k.key("KeyA", true);  // CTR default has KBD_INT
  CHECK_EQ(r.irq1_edges, 1);
  r.drain();
  r.cmd(0x60);
  r.data(0x44);  // no KBD_INT
  int before = r.irq1_edges;
  r.k.key("KeyA", false);
  CHECK_EQ(r.irq1_edges, before);
  CHECK(r.k.read_status() & I8042::kStOutFull);
  r.drain();
  r.cmd(0x60);
  r.data(0x45);
  r.k.key("Enter", true);
  r.k.key("Enter", false);  // 2 bytes (translated): two edges as each is read
  r.drain();
  CHECK_EQ(r.irq1_edges, before + 2);
}

TEST(combo_ctrl_alt_del) {
  Rig r;
  CHECK(r.k.combo("ctrl-alt-del"));
  CHECK_EQ(r.drain(), (Bytes{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}));
  CHECK(r.k.combo("ctrl-alt-f2"));
  CHECK_EQ(r.drain(), (Bytes{0x1d, 0x38, 0x3c, 0xbc, 0xb8, 0x9d}));
  CHECK(r.k.combo("ctrl-alt-backspace"));
  CHECK_EQ(r.drain().size(), size_t(6));
  CHECK(r.k.combo("ctrl-alt-f12"));
  CHECK_EQ(r.drain()[2], 0x58);
  CHECK(!r.k.combo("ctrl-alt-bogus"));
  CHECK(r.drain().empty());
}

TEST(mouse_reset_id_and_status) {
  Rig r;
  r.aux(0xff);
  std::vector<bool> aux;
  CHECK_EQ(r.drain(&aux), (Bytes{0xfa, 0xaa, 0x00}));
  CHECK(aux[0] && aux[1] && aux[2]);
  r.aux(0xf2);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0x00}));
  r.aux(0xe8);
  r.aux(0x03);
  r.aux(0xf3);
  r.aux(40);
  r.aux(0xe7);
  r.aux(0xe9);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x10, 0x03, 40}));
}

TEST(mouse_stream_packets_and_irq12) {
  Rig r;
  r.cmd(0x60);
  r.data(0x47);  // KBD_INT | AUX_INT | SYS | XLATE
  r.aux(0xf4);
  CHECK_EQ(r.drain(), Bytes{0xfa});
  int e = r.irq12_edges;
  r.k.mouse(5, 3, 0, 1);  // right 5, down 3, left button
  std::vector<bool> aux;
  CHECK_EQ(r.drain(&aux), (Bytes{0x09 | 0x20, 5, uint8_t(-3)}));
  CHECK(aux[0]);
  CHECK(r.irq12_edges > e);
  // A large move splits into packets, none over the 9-bit range.
  r.k.mouse(-600, 0, 0, 0);
  auto b = r.drain();
  CHECK_EQ(b.size(), size_t(9));
  CHECK_EQ(b[0], 0x18);
  CHECK_EQ(b[1], 0x00);  // -256
  // Disabled reporting: no packets.
  r.aux(0xf5);
  r.drain();
  r.k.mouse(1, 1, 0, 0);
  CHECK(r.drain().empty());
}

TEST(mouse_intellimouse_magic_sequence) {
  Rig r;
  for (uint8_t rate : {200, 100, 80}) {
    r.aux(0xf3);
    r.aux(rate);
  }
  r.aux(0xf2);
  auto b = r.drain();
  CHECK_EQ(b.back(), 3);
  r.aux(0xf4);
  r.drain();
  r.k.mouse(0, 0, 2, 0);
  b = r.drain();
  CHECK_EQ(b.size(), size_t(4));
  CHECK_EQ(b[3], 2);
  r.k.mouse(0, 0, -1, 0);
  b = r.drain();
  CHECK_EQ(b[3], 0xff);
  // A wrong sequence does not change the ID.
  r.aux(0xff);
  r.drain();
  for (uint8_t rate : {200, 80, 100}) {
    r.aux(0xf3);
    r.aux(rate);
  }
  r.aux(0xf2);
  CHECK_EQ(r.drain().back(), 0);
}

TEST(aux_disabled_in_ctr_holds_mouse_data) {
  Rig r;
  r.cmd(0xa7);
  r.aux(0xf2);  // reply queued but port disabled
  CHECK(!(r.k.read_status() & I8042::kStOutFull));
  r.cmd(0xa8);
  CHECK_EQ(r.drain(), (Bytes{0xfa, 0x00}));
}

TEST(bus_adapters_route_ports) {
  Rig r;
  auto d = r.k.data_port();
  auto c = r.k.command_port();
  uint8_t v = 0xaa;
  c->write(0, {&v, 1});
  c->read(0, {&v, 1});
  CHECK(v & I8042::kStOutFull);
  d->read(0, {&v, 1});
  CHECK_EQ(v, 0x55);
}

// A guest that never reads its input (issue 14, bad input) while the host sends
// 10,000 key events and 100,000 mouse moves: the keyboard keeps its 64-byte
// buffer plus kHostKeyCap waiting keys and drops the newest beyond that,
// counted, as an overrun PC keyboard does; mouse motion adds up (saturating)
// instead of queueing packets. When the guest reads at last, the keys it gets
// are the oldest, in order, and new input flows again.
TEST(a_guest_that_never_reads_keeps_bounded_queues) {
  Rig r;
  r.cmd(0x60);
  r.data(0x47);  // KBD_INT | AUX_INT | SYS | XLATE
  r.aux(0xf4);   // mouse: stream mode on
  CHECK_EQ(r.drain(), Bytes{0xfa});
  const int kKeys = 10000, kMoves = 100000;
  for (int i = 0; i < kKeys; i++) r.k.key("KeyA", (i & 1) == 0);
  for (int i = 0; i < kMoves; i++) r.k.mouse(1, 1, 0, 0);
  const size_t bound = 1 + 3 * I8042::Fifo::kCap + I8042::kHostKeyCap;
  CHECK(r.k.backlog() <= bound);
  CHECK(r.k.dropped_keys() > 0);
  auto st = r.k.snapshot();
  CHECK(st.aux_q.count <= I8042::Fifo::kCap);
  CHECK(st.aux_dx <= 65536 && st.aux_dy <= 65536);
  std::printf("  backlog %zu (bound %zu), %llu keys dropped, %d mouse bytes queued, %d px of motion held\n",
              r.k.backlog(), bound, (unsigned long long)r.k.dropped_keys(), int(st.aux_q.count), int(st.aux_dx));
  // The guest reads everything: key bytes (set 1 through the translation:
  // make 0x1e, break 0x9e) alternate from the first key on; mouse packets carry
  // the motion, never more than was moved.
  int keys = 0;
  long dx = 0;
  bool in_order = true;
  std::vector<uint8_t> pkt;
  for (int i = 0; i < 100000 && (r.k.read_status() & I8042::kStOutFull); i++) {
    bool aux = r.k.read_status() & I8042::kStAuxData;
    uint8_t b = r.k.read_data();
    if (aux) {
      pkt.push_back(b);
      if (pkt.size() == 3) {
        dx += (pkt[0] & 0x10) ? int(pkt[1]) - 256 : int(pkt[1]);
        pkt.clear();
      }
    } else {
      in_order = in_order && b == ((keys & 1) ? 0x9e : 0x1e);
      keys++;
    }
  }
  CHECK(in_order);
  CHECK_EQ(uint64_t(keys) + r.k.dropped_keys(), uint64_t(kKeys));
  CHECK(size_t(keys) >= I8042::kHostKeyCap);
  CHECK(dx > 0 && dx <= kMoves);
  CHECK_EQ(r.k.backlog(), size_t(0));
  // Input flows again at once.
  r.k.key("KeyB", true);
  CHECK_EQ(r.drain(), Bytes{0x30});
  r.k.mouse(5, 0, 0, 0);
  auto more = r.drain();
  CHECK(more.size() >= 3);
}
