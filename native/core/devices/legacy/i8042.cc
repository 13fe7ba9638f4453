#include "devices/legacy/i8042.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <string>

#include "machine/state.h"

namespace vireo {

namespace {

// One physical key: DOM code, set-1 make code, set-2 make code; `ext` means
// both are preceded by 0xE0. Codes from the IBM PS/2 keyboard technical
// reference scancode tables (set 1 = XT, set 2 = AT).
struct KeyDef {
  const char* code;
  uint8_t set1;
  uint8_t set2;
  bool ext;
};

constexpr KeyDef kKeys[] = {
    {"Escape", 0x01, 0x76, false},       {"Digit1", 0x02, 0x16, false},      {"Digit2", 0x03, 0x1e, false},
    {"Digit3", 0x04, 0x26, false},       {"Digit4", 0x05, 0x25, false},      {"Digit5", 0x06, 0x2e, false},
    {"Digit6", 0x07, 0x36, false},       {"Digit7", 0x08, 0x3d, false},      {"Digit8", 0x09, 0x3e, false},
    {"Digit9", 0x0a, 0x46, false},       {"Digit0", 0x0b, 0x45, false},      {"Minus", 0x0c, 0x4e, false},
    {"Equal", 0x0d, 0x55, false},        {"Backspace", 0x0e, 0x66, false},   {"Tab", 0x0f, 0x0d, false},
    {"KeyQ", 0x10, 0x15, false},         {"KeyW", 0x11, 0x1d, false},        {"KeyE", 0x12, 0x24, false},
    {"KeyR", 0x13, 0x2d, false},         {"KeyT", 0x14, 0x2c, false},        {"KeyY", 0x15, 0x35, false},
    {"KeyU", 0x16, 0x3c, false},         {"KeyI", 0x17, 0x43, false},        {"KeyO", 0x18, 0x44, false},
    {"KeyP", 0x19, 0x4d, false},         {"BracketLeft", 0x1a, 0x54, false}, {"BracketRight", 0x1b, 0x5b, false},
    {"Enter", 0x1c, 0x5a, false},        {"ControlLeft", 0x1d, 0x14, false}, {"KeyA", 0x1e, 0x1c, false},
    {"KeyS", 0x1f, 0x1b, false},         {"KeyD", 0x20, 0x23, false},        {"KeyF", 0x21, 0x2b, false},
    {"KeyG", 0x22, 0x34, false},         {"KeyH", 0x23, 0x33, false},        {"KeyJ", 0x24, 0x3b, false},
    {"KeyK", 0x25, 0x42, false},         {"KeyL", 0x26, 0x4b, false},        {"Semicolon", 0x27, 0x4c, false},
    {"Quote", 0x28, 0x52, false},        {"Backquote", 0x29, 0x0e, false},   {"ShiftLeft", 0x2a, 0x12, false},
    {"Backslash", 0x2b, 0x5d, false},    {"KeyZ", 0x2c, 0x1a, false},        {"KeyX", 0x2d, 0x22, false},
    {"KeyC", 0x2e, 0x21, false},         {"KeyV", 0x2f, 0x2a, false},        {"KeyB", 0x30, 0x32, false},
    {"KeyN", 0x31, 0x31, false},         {"KeyM", 0x32, 0x3a, false},        {"Comma", 0x33, 0x41, false},
    {"Period", 0x34, 0x49, false},       {"Slash", 0x35, 0x4a, false},       {"ShiftRight", 0x36, 0x59, false},
    {"NumpadMultiply", 0x37, 0x7c, false}, {"AltLeft", 0x38, 0x11, false},  {"Space", 0x39, 0x29, false},
    {"CapsLock", 0x3a, 0x58, false},     {"F1", 0x3b, 0x05, false},          {"F2", 0x3c, 0x06, false},
    {"F3", 0x3d, 0x04, false},           {"F4", 0x3e, 0x0c, false},          {"F5", 0x3f, 0x03, false},
    {"F6", 0x40, 0x0b, false},           {"F7", 0x41, 0x83, false},          {"F8", 0x42, 0x0a, false},
    {"F9", 0x43, 0x01, false},           {"F10", 0x44, 0x09, false},         {"NumLock", 0x45, 0x77, false},
    {"ScrollLock", 0x46, 0x7e, false},   {"Numpad7", 0x47, 0x6c, false},     {"Numpad8", 0x48, 0x75, false},
    {"Numpad9", 0x49, 0x7d, false},      {"NumpadSubtract", 0x4a, 0x7b, false}, {"Numpad4", 0x4b, 0x6b, false},
    {"Numpad5", 0x4c, 0x73, false},      {"Numpad6", 0x4d, 0x74, false},     {"NumpadAdd", 0x4e, 0x79, false},
    {"Numpad1", 0x4f, 0x69, false},      {"Numpad2", 0x50, 0x72, false},     {"Numpad3", 0x51, 0x7a, false},
    {"Numpad0", 0x52, 0x70, false},      {"NumpadDecimal", 0x53, 0x71, false}, {"IntlBackslash", 0x56, 0x61, false},
    {"F11", 0x57, 0x78, false},          {"F12", 0x58, 0x07, false},         {"NumpadEqual", 0x59, 0x0f, false},
    {"KanaMode", 0x70, 0x13, false},     {"IntlRo", 0x73, 0x51, false},      {"Convert", 0x79, 0x64, false},
    {"NonConvert", 0x7b, 0x67, false},   {"IntlYen", 0x7d, 0x6a, false},     {"NumpadComma", 0x7e, 0x6d, false},
    // 0xE0-prefixed
    {"NumpadEnter", 0x1c, 0x5a, true},   {"ControlRight", 0x1d, 0x14, true}, {"NumpadDivide", 0x35, 0x4a, true},
    {"AltRight", 0x38, 0x11, true},      {"Home", 0x47, 0x6c, true},         {"ArrowUp", 0x48, 0x75, true},
    {"PageUp", 0x49, 0x7d, true},        {"ArrowLeft", 0x4b, 0x6b, true},    {"ArrowRight", 0x4d, 0x74, true},
    {"End", 0x4f, 0x69, true},           {"ArrowDown", 0x50, 0x72, true},    {"PageDown", 0x51, 0x7a, true},
    {"Insert", 0x52, 0x70, true},        {"Delete", 0x53, 0x71, true},       {"MetaLeft", 0x5b, 0x1f, true},
    {"MetaRight", 0x5c, 0x27, true},     {"ContextMenu", 0x5d, 0x2f, true},  {"Power", 0x5e, 0x37, true},
    {"Sleep", 0x5f, 0x3f, true},         {"WakeUp", 0x63, 0x5e, true},       {"AudioVolumeMute", 0x20, 0x23, true},
    {"AudioVolumeDown", 0x2e, 0x21, true}, {"AudioVolumeUp", 0x30, 0x32, true},
};

const KeyDef* find_key(const std::string& code) {
  for (auto& k : kKeys) {
    if (code == k.code) return &k;
  }
  return nullptr;
}

// Set-2 byte -> set-1 byte, built from the key table (one key per set-2 code
// among the non-prefixed keys). Bytes no key uses pass through, except the
// ones the 8042 translates for protocol reasons: 0x00 (overrun) -> 0xFF and
// the scancode-set numbers 1/2/3 -> 0x43/0x41/0x3F (what Linux expects back
// from "get scancode set" through a translating controller).
std::array<uint8_t, 256> build_xlate() {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; i++) t[i] = uint8_t(i);
  for (auto& k : kKeys) {
    if (!k.ext) t[k.set2] = k.set1;
  }
  // E0-prefixed keys whose set-2 base byte no plain key uses.
  for (auto& k : kKeys) {
    if (k.ext && t[k.set2] == k.set2 && k.set2 < 0x80) t[k.set2] = k.set1;
  }
  t[0x00] = 0xff;
  t[0x02] = 0x41;
  return t;
}
const std::array<uint8_t, 256> kXlate = build_xlate();

// Keyboard command bytes.
enum : uint8_t {
  kKbdSetLeds = 0xed, kKbdEcho = 0xee, kKbdScanSet = 0xf0, kKbdGetId = 0xf2, kKbdTypematic = 0xf3,
  kKbdEnable = 0xf4, kKbdDisable = 0xf5, kKbdDefaults = 0xf6, kKbdResend = 0xfe, kKbdReset = 0xff,
};
// Mouse command bytes.
enum : uint8_t {
  kAuxScale11 = 0xe6, kAuxScale21 = 0xe7, kAuxSetRes = 0xe8, kAuxStatus = 0xe9, kAuxStream = 0xea,
  kAuxReadData = 0xeb, kAuxResetWrap = 0xec, kAuxWrap = 0xee, kAuxRemote = 0xf0, kAuxGetId = 0xf2,
  kAuxSetRate = 0xf3, kAuxEnable = 0xf4, kAuxDisable = 0xf5, kAuxDefaults = 0xf6, kAuxResend = 0xfe,
  kAuxReset = 0xff,
};
constexpr uint8_t kAck = 0xfa, kNak = 0xfe, kBatOk = 0xaa;

class PortAdapter : public IoDevice {
public:
  PortAdapter(I8042& d, bool cmd) : d_(d), cmd_(cmd) {}
  StateKind state_kind() const override { return StateKind::None; }  // the controller's (section "i8042")
  void read(uint64_t, std::span<uint8_t> data) override {
    if (data.empty()) return;
    data[0] = cmd_ ? d_.read_status() : d_.read_data();
    for (size_t i = 1; i < data.size(); i++) data[i] = 0xff;
  }
  void write(uint64_t, std::span<const uint8_t> data) override {
    if (data.empty()) return;
    if (cmd_) {
      d_.write_command(data[0]);
    } else {
      d_.write_data(data[0]);
    }
  }

private:
  I8042& d_;
  bool cmd_;
};

}  // namespace

bool I8042::Fifo::push(uint16_t v) {
  if (count >= kCap) return false;
  buf[(head + count) % kCap] = v;
  count++;
  return true;
}

uint16_t I8042::Fifo::pop() {
  if (!count) return 0;
  uint16_t v = buf[head];
  head = uint8_t((head + 1) % kCap);
  count--;
  return v;
}

I8042::I8042(IrqLine irq1, IrqLine irq12, Callbacks cb)
    : irq1_(std::move(irq1)), irq12_(std::move(irq12)), cb_(std::move(cb)) {
  data_port_ = std::make_shared<PortAdapter>(*this, false);
  cmd_port_ = std::make_shared<PortAdapter>(*this, true);
}

std::shared_ptr<IoDevice> I8042::data_port() { return data_port_; }
std::shared_ptr<IoDevice> I8042::command_port() { return cmd_port_; }

uint8_t I8042::translate(uint8_t set2) { return kXlate[set2]; }

std::vector<uint8_t> I8042::scancodes(const std::string& code, bool down, int set) {
  std::vector<uint8_t> out;
  if (code == "Pause") {
    // Make only; no break code exists.
    if (!down) return out;
    if (set == 1) return {0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5};
    return {0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77};
  }
  if (code == "PrintScreen") {
    if (set == 1) return down ? std::vector<uint8_t>{0xe0, 0x2a, 0xe0, 0x37} : std::vector<uint8_t>{0xe0, 0xb7, 0xe0, 0xaa};
    return down ? std::vector<uint8_t>{0xe0, 0x12, 0xe0, 0x7c} : std::vector<uint8_t>{0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12};
  }
  const KeyDef* k = find_key(code);
  if (!k) return out;
  if (k->ext) out.push_back(0xe0);
  if (set == 1) {
    out.push_back(down ? k->set1 : uint8_t(k->set1 | 0x80));
  } else {
    if (!down) out.push_back(0xf0);
    out.push_back(k->set2);
  }
  return out;
}

// ---------------------------------------------------------------- controller

void I8042::update_irq() {
  bool kbd = false, aux = false;
  if (s.status & kStOutFull) {
    if (s.status & kStAuxData) {
      aux = s.ctr & kCtrAuxInt;
    } else {
      kbd = s.ctr & kCtrKbdInt;
    }
  }
  if (irq1_.level() != kbd) irq1_.set(kbd);
  if (irq12_.level() != aux) irq12_.set(aux);
}

// Move keys waiting on the host side into the keyboard's buffer while they fit.
void I8042::refill_keys() {
  while (!host_keys_.empty()) {
    if (!s.kbd_scan) {  // a keyboard that is not scanning reports nothing
      host_keys_.clear();
      return;
    }
    auto codes = scancodes(host_keys_.front().code, host_keys_.front().down, s.kbd_set == 1 ? 1 : 2);
    if (s.kbd_q.space() < int(codes.size())) return;
    for (uint8_t b : codes) s.kbd_q.push(b);
    host_keys_.pop_front();
  }
}

// Move the next byte into the output buffer if it is empty.
void I8042::pump() {
  refill_keys();
  while (!(s.status & kStOutFull)) {
    if (s.ctrl_q.count) {
      uint16_t v = s.ctrl_q.pop();
      s.out = uint8_t(v);
      s.status = uint8_t((s.status | kStOutFull) & ~kStAuxData);
      if (v & kFromAux) s.status |= kStAuxData;
    } else if (s.kbd_q.count && !(s.ctr & kCtrKbdDisable)) {
      uint8_t b = uint8_t(s.kbd_q.pop());
      if (s.ctr & kCtrTranslate) {
        if (b == 0xf0) {
          s.xlate_release = true;
          continue;  // folded into the next byte
        }
        b = translate(b);
        if (s.xlate_release) {
          b |= 0x80;
          s.xlate_release = false;
        }
      }
      s.out = b;
      s.status = uint8_t((s.status | kStOutFull) & ~kStAuxData);
    } else if (s.aux_q.count && !(s.ctr & kCtrAuxDisable)) {
      s.out = uint8_t(s.aux_q.pop());
      s.status |= kStOutFull | kStAuxData;
    } else {
      break;
    }
  }
  s.outport = uint8_t(s.outport & ~(kOutKbdFull | kOutAuxFull));
  if (s.status & kStOutFull) s.outport |= (s.status & kStAuxData) ? kOutAuxFull : kOutKbdFull;
  update_irq();
}

uint8_t I8042::read_data() {
  std::lock_guard g(mu_);
  uint8_t v = s.out;  // an empty buffer re-reads the last byte, like the real part
  if (s.status & kStOutFull) {
    s.status = uint8_t(s.status & ~(kStOutFull | kStAuxData));
    // Lower the line before the next byte raises it again, so an edge-triggered
    // PIC sees a fresh edge per byte.
    update_irq();
    pump();
  }
  return v;
}

uint8_t I8042::read_status() {
  std::lock_guard g(mu_);
  return s.status;
}

void I8042::set_outport(uint8_t v, Deferred& d) {
  uint8_t old = s.outport;
  s.outport = uint8_t((v & ~(kOutKbdFull | kOutAuxFull)) | (old & (kOutKbdFull | kOutAuxFull)));
  if ((old ^ v) & kOutA20) d.a20 = (v & kOutA20) ? 1 : 0;
  if (!(v & kOutReset)) {
    d.reset = true;
    s.outport |= kOutReset;  // the line is a pulse as far as the board is concerned
  }
}

void I8042::run(const Deferred& d) {
  if (d.a20 >= 0 && cb_.set_a20) cb_.set_a20(d.a20 == 1);
  if (d.reset && cb_.reset) cb_.reset();
}

void I8042::write_command(uint8_t v) {
  Deferred d;
  {
    std::lock_guard g(mu_);
    s.status |= kStCmd;
    s.pending_cmd = 0;
    if (v == 0x20) {
      s.ctrl_q.push(s.ctr);
    } else if (v > 0x20 && v < 0x40) {
      s.ctrl_q.push(s.ram[v & 0x1f]);
    } else if (v >= 0x60 && v < 0x80) {
      s.pending_cmd = v;
    } else {
      switch (v) {
        case 0xa7: s.ctr |= kCtrAuxDisable; break;
        case 0xa8: s.ctr = uint8_t(s.ctr & ~kCtrAuxDisable); break;
        case 0xa9: s.ctrl_q.push(0x00); break;  // aux interface test: OK
        case 0xaa:                                // controller self-test
          s.status |= kStSystem;
          s.ctrl_q.push(0x55);
          break;
        case 0xab: s.ctrl_q.push(0x00); break;  // keyboard interface test: OK
        case 0xad: s.ctr |= kCtrKbdDisable; break;
        case 0xae: s.ctr = uint8_t(s.ctr & ~kCtrKbdDisable); break;
        case 0xc0: s.ctrl_q.push(0x80); break;  // input port: keyboard not inhibited
        case 0xd0: s.ctrl_q.push(s.outport); break;
        case 0xd1: case 0xd2: case 0xd3: case 0xd4: s.pending_cmd = v; break;
        case 0xdd: set_outport(uint8_t(s.outport & ~kOutA20), d); break;
        case 0xdf: set_outport(uint8_t(s.outport | kOutA20), d); break;
        case 0xe0: s.ctrl_q.push(0x00); break;  // test inputs
        default:
          if (v >= 0xf0) {
            // Pulse output-port lines whose bit is 0 in the low nibble; bit 0 is CPU reset.
            if (!(v & 1)) d.reset = true;
          }
          break;  // unknown commands are ignored
      }
    }
    pump();
  }
  run(d);
}

void I8042::write_data(uint8_t v) {
  Deferred d;
  {
    std::lock_guard g(mu_);
    s.status = uint8_t(s.status & ~kStCmd);
    uint8_t cmd = s.pending_cmd;
    s.pending_cmd = 0;
    if (cmd == 0x60) {
      s.ctr = v;
      s.status = uint8_t((s.status & ~kStSystem) | (v & kCtrSystem));
      if (!(v & kCtrTranslate)) s.xlate_release = false;
    } else if (cmd > 0x60 && cmd < 0x80) {
      s.ram[cmd & 0x1f] = v;
    } else if (cmd == 0xd1) {
      set_outport(v, d);
    } else if (cmd == 0xd2) {
      s.ctrl_q.push(v);
    } else if (cmd == 0xd3) {
      s.ctrl_q.push(uint16_t(v | kFromAux));
    } else if (cmd == 0xd4) {
      aux_write(v, d);
    } else {
      // Writing to the keyboard also re-enables its clock line.
      s.ctr = uint8_t(s.ctr & ~kCtrKbdDisable);
      kbd_write(v);
    }
    pump();
  }
  run(d);
}

// ---------------------------------------------------------------- keyboard

void I8042::kbd_queue(uint8_t v) {
  s.kbd_last = v;
  s.kbd_q.push(v);
}

void I8042::kbd_reset_defaults() {
  s.kbd_set = 2;
  s.kbd_typematic = 0x2b;
  s.kbd_scan = true;
}

void I8042::kbd_write(uint8_t v) {
  if (s.kbd_pending) {
    uint8_t c = s.kbd_pending;
    s.kbd_pending = 0;
    // A command byte in place of a parameter aborts the pending command.
    if (v >= kKbdSetLeds && c != kKbdTypematic) {
      // fall through to command handling below
    } else {
      switch (c) {
        case kKbdSetLeds:
          s.kbd_leds = v & 7;
          kbd_queue(kAck);
          return;
        case kKbdTypematic:
          s.kbd_typematic = v & 0x7f;
          kbd_queue(kAck);
          return;
        case kKbdScanSet:
          if (v == 0) {
            kbd_queue(kAck);
            kbd_queue(s.kbd_set);
          } else if (v <= 3) {
            s.kbd_set = v;
            kbd_queue(kAck);
          } else {
            kbd_queue(kNak);
          }
          return;
        default:
          break;
      }
    }
  }
  switch (v) {
    case kKbdSetLeds:
    case kKbdTypematic:
    case kKbdScanSet:
      s.kbd_pending = v;
      kbd_queue(kAck);
      break;
    case kKbdEcho:
      kbd_queue(kKbdEcho);
      break;
    case kKbdGetId:
      kbd_queue(kAck);
      kbd_queue(0xab);
      kbd_queue(0x83);
      break;
    case kKbdEnable:
      s.kbd_q.clear();
      host_keys_.clear();
      s.kbd_scan = true;
      kbd_queue(kAck);
      break;
    case kKbdDisable:
      kbd_reset_defaults();
      s.kbd_scan = false;
      kbd_queue(kAck);
      break;
    case kKbdDefaults:
      kbd_reset_defaults();
      kbd_queue(kAck);
      break;
    case kKbdResend:
      s.kbd_q.push(s.kbd_last);
      break;
    case kKbdReset:
      s.kbd_q.clear();
      host_keys_.clear();
      kbd_reset_defaults();
      s.kbd_leds = 0;
      kbd_queue(kAck);
      kbd_queue(kBatOk);
      break;
    case 0xf7: case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd:
      kbd_queue(kAck);  // set-3 key type commands: accepted, no effect
      break;
    default:
      kbd_queue(kNak);
      break;
  }
}

bool I8042::key(const std::string& code, bool down) {
  std::lock_guard g(mu_);
  auto codes = scancodes(code, down, s.kbd_set == 1 ? 1 : 2);
  if (codes.empty()) return false;
  if (!s.kbd_scan) return true;
  if (host_keys_.empty() && s.kbd_q.space() >= int(codes.size())) {
    for (uint8_t b : codes) s.kbd_q.push(b);
  } else if (host_keys_.size() < kHostKeyCap) {
    host_keys_.push_back({code, down});  // moves into the buffer as the guest reads (refill_keys)
  } else {
    dropped_keys_++;  // the guest reads nothing: the newest key is lost, as on an overrun PC keyboard
  }
  pump();
  return true;
}

bool I8042::combo(const std::string& name) {
  std::vector<std::string> keys;
  size_t start = 0;
  std::string lower = name;
  for (auto& c : lower) c = char(std::tolower(uint8_t(c)));
  while (start <= lower.size()) {
    size_t dash = lower.find('-', start);
    std::string tok = lower.substr(start, dash == std::string::npos ? std::string::npos : dash - start);
    std::string code;
    if (tok == "ctrl" || tok == "control") code = "ControlLeft";
    else if (tok == "alt") code = "AltLeft";
    else if (tok == "shift") code = "ShiftLeft";
    else if (tok == "meta" || tok == "super" || tok == "win") code = "MetaLeft";
    else if (tok == "del" || tok == "delete") code = "Delete";
    else if (tok == "backspace" || tok == "bksp") code = "Backspace";
    else if (tok == "esc" || tok == "escape") code = "Escape";
    else if (tok == "tab") code = "Tab";
    else if (tok == "enter" || tok == "return") code = "Enter";
    else if (tok == "space") code = "Space";
    else if (tok == "sysrq" || tok == "print") code = "PrintScreen";
    else if (tok.size() >= 2 && tok[0] == 'f' && std::isdigit(uint8_t(tok[1]))) code = "F" + tok.substr(1);
    else if (tok.size() == 1 && std::isalpha(uint8_t(tok[0]))) code = std::string("Key") + char(std::toupper(uint8_t(tok[0])));
    else if (tok.size() == 1 && std::isdigit(uint8_t(tok[0]))) code = "Digit" + tok;
    if (code.empty() || (!find_key(code) && code != "PrintScreen")) return false;
    keys.push_back(code);
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  if (keys.empty()) return false;
  for (auto& k : keys) key(k, true);
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) key(*it, false);
  return true;
}

// ---------------------------------------------------------------- mouse

void I8042::aux_queue(uint8_t v) {
  s.aux_last = v;
  s.aux_q.push(v);
}

void I8042::aux_reset_defaults() {
  s.aux_rate = 100;
  s.aux_resolution = 2;
  s.aux_scaling21 = false;
  s.aux_stream_enabled = false;
  s.aux_remote = false;
  s.aux_dx = s.aux_dy = s.aux_dz = 0;
}

void I8042::aux_write(uint8_t v, Deferred&) {
  if (s.aux_wrap && v != kAuxResetWrap && v != kAuxReset) {
    aux_queue(v);  // wrap mode echoes everything
    return;
  }
  if (s.aux_pending) {
    uint8_t c = s.aux_pending;
    s.aux_pending = 0;
    if (c == kAuxSetRate) {
      s.aux_rate = v;
      s.aux_rates[0] = s.aux_rates[1];
      s.aux_rates[1] = s.aux_rates[2];
      s.aux_rates[2] = v;
      if (s.aux_rates[0] == 200 && s.aux_rates[1] == 100 && s.aux_rates[2] == 80 && s.aux_id == 0) s.aux_id = 3;
      if (s.aux_rates[0] == 200 && s.aux_rates[1] == 200 && s.aux_rates[2] == 80 && s.aux_id == 3) s.aux_id = 4;
      aux_queue(kAck);
      return;
    }
    if (c == kAuxSetRes) {
      s.aux_resolution = v & 3;
      aux_queue(kAck);
      return;
    }
  }
  switch (v) {
    case kAuxScale11: s.aux_scaling21 = false; aux_queue(kAck); break;
    case kAuxScale21: s.aux_scaling21 = true; aux_queue(kAck); break;
    case kAuxSetRes:
    case kAuxSetRate:
      s.aux_pending = v;
      aux_queue(kAck);
      break;
    case kAuxStatus:
      aux_queue(kAck);
      aux_queue(uint8_t((s.aux_remote ? 0x40 : 0) | (s.aux_stream_enabled ? 0x20 : 0) |
                        (s.aux_scaling21 ? 0x10 : 0) | ((s.aux_buttons & 1) << 2) |
                        ((s.aux_buttons & 4) >> 1) | ((s.aux_buttons & 2) >> 1)));
      aux_queue(s.aux_resolution);
      aux_queue(s.aux_rate);
      break;
    case kAuxStream: s.aux_remote = false; aux_queue(kAck); break;
    case kAuxRemote: s.aux_remote = true; aux_queue(kAck); break;
    case kAuxReadData: {
      aux_queue(kAck);
      bool was = s.aux_stream_enabled;
      s.aux_stream_enabled = true;
      s.aux_remote = false;
      int dx = s.aux_dx, dy = s.aux_dy, dz = s.aux_dz;
      s.aux_dx = s.aux_dy = s.aux_dz = 0;
      // one packet, even with no motion
      uint8_t b0 = uint8_t(0x08 | (s.aux_buttons & 7));
      int cx = std::clamp(dx, -256, 255), cy = std::clamp(-dy, -256, 255);
      if (cx < 0) b0 |= 0x10;
      if (cy < 0) b0 |= 0x20;
      aux_queue(b0);
      aux_queue(uint8_t(cx));
      aux_queue(uint8_t(cy));
      if (s.aux_id == 3 || s.aux_id == 4) aux_queue(uint8_t(std::clamp(dz, -8, 7)));
      s.aux_stream_enabled = was;
      s.aux_remote = true;
      break;
    }
    case kAuxResetWrap: s.aux_wrap = false; aux_queue(kAck); break;
    case kAuxWrap: s.aux_wrap = true; aux_queue(kAck); break;
    case kAuxGetId:
      aux_queue(kAck);
      aux_queue(s.aux_id);
      break;
    case kAuxEnable:
      s.aux_stream_enabled = true;
      aux_queue(kAck);
      break;
    case kAuxDisable:
      s.aux_stream_enabled = false;
      aux_queue(kAck);
      break;
    case kAuxDefaults:
      aux_reset_defaults();
      aux_queue(kAck);
      break;
    case kAuxResend: s.aux_q.push(s.aux_last); break;
    case kAuxReset:
      s.aux_q.clear();
      aux_reset_defaults();
      s.aux_wrap = false;
      s.aux_id = 0;
      std::memset(s.aux_rates, 0, sizeof s.aux_rates);
      aux_queue(kAck);
      aux_queue(kBatOk);
      aux_queue(0x00);
      break;
    default:
      aux_queue(kNak);
      break;
  }
}

void I8042::push_aux_packets() {
  if (!s.aux_stream_enabled || s.aux_remote) return;
  const int len = (s.aux_id == 3 || s.aux_id == 4) ? 4 : 3;
  bool first = true;
  // Split big motions into several packets; always send at least one when asked
  // (a button change with no motion still needs a packet).
  while (first || s.aux_dx || s.aux_dy || s.aux_dz) {
    if (s.aux_q.space() < len) return;  // keep the rest for later
    first = false;
    int dx = std::clamp(s.aux_dx, -256, 255);
    int dy = std::clamp(-s.aux_dy, -256, 255);  // PS/2 Y grows upward
    int dz = std::clamp(s.aux_dz, -8, 7);
    s.aux_dx -= dx;
    s.aux_dy += dy;
    s.aux_dz -= dz;
    uint8_t b0 = uint8_t(0x08 | (s.aux_buttons & 7));
    if (dx < 0) b0 |= 0x10;
    if (dy < 0) b0 |= 0x20;
    aux_queue(b0);
    aux_queue(uint8_t(dx));
    aux_queue(uint8_t(dy));
    if (len == 4) {
      uint8_t z = uint8_t(dz & 0x0f);
      if (s.aux_id == 4) z = uint8_t(z | ((s.aux_buttons & 0x18) << 1));  // buttons 4/5
      else z = uint8_t(dz);
      aux_queue(z);
    }
  }
}

void I8042::mouse(int dx, int dy, int dz, uint8_t buttons) {
  std::lock_guard g(mu_);
  auto sat = [](int64_t v) { return int32_t(std::clamp<int64_t>(v, -65536, 65536)); };
  s.aux_dx = sat(int64_t(s.aux_dx) + dx);
  s.aux_dy = sat(int64_t(s.aux_dy) + dy);
  s.aux_dz = sat(int64_t(s.aux_dz) + dz);
  bool changed = buttons != s.aux_buttons || dx || dy || dz;
  s.aux_buttons = buttons;
  if (!changed) return;
  if (!s.aux_stream_enabled || s.aux_remote) {
    if (!s.aux_stream_enabled) s.aux_dx = s.aux_dy = s.aux_dz = 0;
    return;
  }
  push_aux_packets();
  pump();
}

// ---------------------------------------------------------------- misc

void I8042::reset() {
  std::lock_guard g(mu_);
  s = State{};
  host_keys_.clear();
  update_irq();
}

uint64_t I8042::dropped_keys() const {
  std::lock_guard g(mu_);
  return dropped_keys_;
}

size_t I8042::backlog() const {
  std::lock_guard g(mu_);
  return size_t(s.status & kStOutFull) + s.ctrl_q.count + s.kbd_q.count + s.aux_q.count + host_keys_.size();
}

// ---------------------------------------------------------------- saved state

namespace {

void put_fifo(state::StateWriter& w, const I8042::Fifo& f) {
  w.u8(f.count);
  for (int i = 0; i < f.count; i++) w.u16(f.buf[(f.head + i) % I8042::Fifo::kCap]);
}

I8042::Fifo get_fifo(state::StateReader& r, uint16_t max, const char* what) {
  I8042::Fifo f;
  uint8_t n = r.u8();
  if (n > I8042::Fifo::kCap) r.fail(std::string(what) + " queue holds " + std::to_string(n) + " entries, at most 64");
  for (int i = 0; i < n; i++) {
    uint16_t v = r.u16();
    if (v > max) r.fail(std::string(what) + " queue entry out of range");
    f.push(v);
  }
  return f;
}

}  // namespace

void I8042::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  for (uint8_t b : {s.status, s.ctr, s.outport, s.pending_cmd, s.out}) w.u8(b);
  w.boolean(s.xlate_release);
  w.bytes(s.ram, sizeof s.ram);
  put_fifo(w, s.ctrl_q);
  put_fifo(w, s.kbd_q);
  for (uint8_t b : {s.kbd_pending, s.kbd_set}) w.u8(b);
  w.boolean(s.kbd_scan);
  for (uint8_t b : {s.kbd_leds, s.kbd_typematic, s.kbd_last}) w.u8(b);
  put_fifo(w, s.aux_q);
  w.u8(s.aux_pending);
  for (bool b : {s.aux_stream_enabled, s.aux_remote, s.aux_wrap, s.aux_scaling21}) w.boolean(b);
  for (uint8_t b : {s.aux_rate, s.aux_resolution, s.aux_id}) w.u8(b);
  w.bytes(s.aux_rates, sizeof s.aux_rates);
  for (uint8_t b : {s.aux_buttons, s.aux_last}) w.u8(b);
  for (int32_t v : {s.aux_dx, s.aux_dy, s.aux_dz}) w.i32(v);
  w.u32(uint32_t(host_keys_.size()));
  for (const HostKey& k : host_keys_) {
    w.str(k.code);
    w.boolean(k.down);
  }
}

void I8042::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  for (uint8_t* b : {&n.status, &n.ctr, &n.outport, &n.pending_cmd, &n.out}) *b = r.u8();
  n.xlate_release = r.boolean();
  r.bytes(n.ram, sizeof n.ram);
  n.ctrl_q = get_fifo(r, 0x1ff, "controller");
  n.kbd_q = get_fifo(r, 0xff, "keyboard");
  for (uint8_t* b : {&n.kbd_pending, &n.kbd_set}) *b = r.u8();
  n.kbd_scan = r.boolean();
  for (uint8_t* b : {&n.kbd_leds, &n.kbd_typematic, &n.kbd_last}) *b = r.u8();
  n.aux_q = get_fifo(r, 0xff, "mouse");
  n.aux_pending = r.u8();
  for (bool* b : {&n.aux_stream_enabled, &n.aux_remote, &n.aux_wrap, &n.aux_scaling21}) *b = r.boolean();
  for (uint8_t* b : {&n.aux_rate, &n.aux_resolution, &n.aux_id}) *b = r.u8();
  r.bytes(n.aux_rates, sizeof n.aux_rates);
  for (uint8_t* b : {&n.aux_buttons, &n.aux_last}) *b = r.u8();
  for (int32_t* v : {&n.aux_dx, &n.aux_dy, &n.aux_dz}) *v = r.i32();
  if (n.kbd_set < 1 || n.kbd_set > 3) r.fail("keyboard scancode set " + std::to_string(n.kbd_set) + " (1 to 3)");
  if (n.aux_id != 0 && n.aux_id != 3 && n.aux_id != 4) r.fail("mouse ID " + std::to_string(n.aux_id) + " (0, 3 or 4)");
  if (n.aux_resolution > 3) r.fail("mouse resolution out of range");
  uint32_t keys = r.u32();
  if (keys > kHostKeyCap) r.fail(std::to_string(keys) + " waiting host keys, at most " + std::to_string(kHostKeyCap));
  std::deque<HostKey> hk;
  for (uint32_t i = 0; i < keys; i++) {
    HostKey k;
    k.code = r.str(64);
    k.down = r.boolean();
    if (scancodes(k.code, k.down, 2).empty()) r.fail("waiting host key '" + k.code + "' is not a key");
    hk.push_back(std::move(k));
  }
  r.finish();
  std::lock_guard g(mu_);
  s = n;
  host_keys_ = std::move(hk);
  update_irq();
}

I8042::State I8042::snapshot() const {
  std::lock_guard g(mu_);
  return s;
}

void I8042::restore(const State& st) {
  std::lock_guard g(mu_);
  s = st;
  update_irq();
}

}  // namespace vireo
