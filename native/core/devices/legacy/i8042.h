// Intel 8042 PS/2 controller with an AT keyboard and a PS/2 (IntelliMouse)
// mouse behind it. Ports: data 0x60, status/command 0x64. Register
// data_port() on the PIO bus at kDataPort (len 1) and command_port() at
// kCommandPort (len 1).
//
// Keyboard: scancode set 2 (set 1 and 3 selectable), translated to set 1 by
// the controller when command-byte bit 6 is set (the PC default).
// Mouse: standard 3-byte packets; the 200,100,80 sample-rate sequence turns it
// into an IntelliMouse (ID 3, 4-byte packets with wheel), 200,200,80 after
// that into an IntelliMouse Explorer (ID 4).
//
// Threading: guest port accesses and the host input API (key, combo, mouse)
// may come from different threads; every entry point takes the device mutex.
// IRQ lines are driven with that mutex held (they must not call back into
// this device); the reset and A20 callbacks run after it is released.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus/device.h"
#include "devices/irq.h"

namespace vireo {

class I8042 : public Stateful {
public:
  static constexpr uint16_t kDataPort = 0x60;     // IBM PC/AT: 8042 data
  static constexpr uint16_t kCommandPort = 0x64;  // IBM PC/AT: 8042 status (read) / command (write)
  static constexpr int kKbdIrq = 1, kAuxIrq = 12;

  // Status register bits.
  static constexpr uint8_t kStOutFull = 0x01, kStInFull = 0x02, kStSystem = 0x04, kStCmd = 0x08,
                           kStUnlocked = 0x10, kStAuxData = 0x20, kStTimeout = 0x40, kStParity = 0x80;
  // Command byte ("CTR") bits.
  static constexpr uint8_t kCtrKbdInt = 0x01, kCtrAuxInt = 0x02, kCtrSystem = 0x04, kCtrKbdDisable = 0x10,
                           kCtrAuxDisable = 0x20, kCtrTranslate = 0x40;
  // Output port bits.
  static constexpr uint8_t kOutReset = 0x01 /* 0 = assert CPU reset */, kOutA20 = 0x02, kOutKbdFull = 0x10,
                           kOutAuxFull = 0x20;

  struct Fifo {
    static constexpr int kCap = 64;
    uint16_t buf[kCap]{};  // byte | kFromAux for controller-queue entries
    uint8_t head = 0, count = 0;
    bool push(uint16_t v);
    uint16_t pop();
    int space() const { return kCap - count; }
    void clear() { head = count = 0; }
  };
  static constexpr uint16_t kFromAux = 0x100;

  struct State {
    static constexpr uint32_t kVersion = 1;
    // controller
    uint8_t status = kStUnlocked;
    uint8_t ctr = kCtrKbdInt | kCtrSystem | kCtrTranslate;
    uint8_t outport = kOutReset | kOutA20;
    uint8_t pending_cmd = 0;  // controller command waiting for its data byte, 0 = none
    uint8_t out = 0;          // output buffer (valid when status & kStOutFull)
    bool xlate_release = false;  // saw set-2 0xF0 while translating: next byte gets bit 7
    uint8_t ram[32]{};           // 8042 internal RAM 0x01..0x1f (0x00 is the CTR)
    Fifo ctrl_q;                 // controller responses (and 0xD2/0xD3 echoes)
    // keyboard
    Fifo kbd_q;
    uint8_t kbd_pending = 0;  // keyboard command waiting for a parameter
    uint8_t kbd_set = 2;
    bool kbd_scan = true;
    uint8_t kbd_leds = 0;
    uint8_t kbd_typematic = 0x2b;
    uint8_t kbd_last = 0;  // for 0xFE resend
    // mouse
    Fifo aux_q;
    uint8_t aux_pending = 0;
    bool aux_stream_enabled = false;
    bool aux_remote = false;
    bool aux_wrap = false;
    bool aux_scaling21 = false;
    uint8_t aux_rate = 100;
    uint8_t aux_resolution = 2;
    uint8_t aux_id = 0;       // 0 standard, 3 IntelliMouse, 4 Explorer
    uint8_t aux_rates[3]{};   // last three sample rates (magic sequence detection)
    uint8_t aux_buttons = 0;  // bit0 left, bit1 right, bit2 middle
    uint8_t aux_last = 0;
    int32_t aux_dx = 0, aux_dy = 0, aux_dz = 0;  // unreported motion
  };

  struct Callbacks {
    std::function<void()> reset;          // 0xFE pulse or output-port bit 0 cleared
    std::function<void(bool)> set_a20;    // output-port bit 1 changed
  };

  I8042(IrqLine irq1, IrqLine irq12, Callbacks cb = {});

  // Port adapters for the bus (offset is ignored; each is one byte).
  std::shared_ptr<IoDevice> data_port();
  std::shared_ptr<IoDevice> command_port();

  // Direct port access (what the adapters call).
  uint8_t read_data();
  uint8_t read_status();
  void write_data(uint8_t v);
  void write_command(uint8_t v);

  // ---- host input ----
  // DOM KeyboardEvent.code ("KeyA", "Enter", "ArrowLeft", "NumpadAdd"...). False if unknown.
  // When the keyboard's buffer is full (a guest slower than the typist, or a
  // paste), the key waits in a host-side queue of up to kHostKeyCap keys and
  // moves into the buffer as the guest reads; nothing is dropped short of that.
  // Past that (a guest that never reads its keyboard while the host types
  // thousands of keys) the newest key is dropped, as a PC keyboard whose
  // buffer overran loses the keys typed after, and counted in dropped_keys().
  // Mouse motion never queues beyond the 64-byte buffer: it adds up
  // (saturating at +-65536) and goes out as packets when there is room.
  bool key(const std::string& dom_code, bool down);
  static constexpr size_t kHostKeyCap = 4096;
  // Keys dropped because kHostKeyCap keys were already waiting (since power-on).
  uint64_t dropped_keys() const;
  // "ctrl-alt-del", "ctrl-alt-f1".."ctrl-alt-f12", "ctrl-alt-backspace" and any
  // dash-joined list of ctrl/alt/shift/meta + one key: press in order, release in reverse.
  bool combo(const std::string& name);
  // dx right-positive, dy down-positive (screen / DOM movement), dz wheel
  // (DOM deltaY sign: positive = scroll down); buttons bit0 left, bit1 right, bit2 middle.
  void mouse(int dx, int dy, int dz, uint8_t buttons);

  void reset();
  // Bytes and keys the guest has not read yet: output buffer, controller,
  // keyboard and mouse queues, and keys waiting on the host side.
  size_t backlog() const;
  State snapshot() const;
  void restore(const State& st);

  // Saved state (section "i8042"): the controller, keyboard and mouse
  // registers, the three queues in order and the host keys still waiting
  // for room; the IRQ lines are driven again from the loaded state. The two
  // port adapters have no state of their own.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

  // Scancodes for a DOM code in set 1 or 2 (make or break), empty if unknown. For tests and tools.
  static std::vector<uint8_t> scancodes(const std::string& dom_code, bool down, int set);
  // The controller's set-2 to set-1 translation of one byte (no 0xF0 handling).
  static uint8_t translate(uint8_t set2);

private:
  struct Deferred {
    bool reset = false;
    int a20 = -1;
  };
  void pump();
  void refill_keys();
  void update_irq();
  void kbd_write(uint8_t v);
  void aux_write(uint8_t v, Deferred& d);
  void kbd_queue(uint8_t v);
  void aux_queue(uint8_t v);
  void kbd_reset_defaults();
  void aux_reset_defaults();
  void set_outport(uint8_t v, Deferred& d);
  void push_aux_packets();
  void run(const Deferred& d);

  IrqLine irq1_, irq12_;
  Callbacks cb_;
  mutable std::mutex mu_;
  State s;
  struct HostKey {
    std::string code;
    bool down;
  };
  std::deque<HostKey> host_keys_;  // keys waiting for room in s.kbd_q
  uint64_t dropped_keys_ = 0;      // not saved: a diagnostic counter
  std::shared_ptr<IoDevice> data_port_, cmd_port_;
};

}  // namespace vireo
