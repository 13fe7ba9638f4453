// libFuzzer target: the i8042 controller and its PS/2 keyboard and mouse:
// controller commands and their data bytes, device commands through 0x60 and
// 0xD4, host key/mouse input interleaved, snapshot/restore.
// Input: ops (u8 opcode + operands, see the switch).
#include "devices/legacy/i8042.h"
#include "fuzz_input.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {
const char* const kKeys[] = {"KeyA", "Enter", "ShiftLeft", "ControlRight", "ArrowUp", "Pause", "PrintScreen",
                             "NumpadDivide", "MetaLeft", "F12", "IntlBackslash", "Lang1", "NoSuchKey", ""};
const char* const kCombos[] = {"ctrl+alt+del", "ctrl+alt+f1", "alt+sysrq", "shift+a", "bogus", "ctrl+"};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  int resets = 0;
  I8042 k(IrqLine(), IrqLine(), I8042::Callbacks{[&] { resets++; }, [](bool) {}});
  for (int ops = 0; !in.empty() && ops < 8192; ops++) {
    switch (in.u8() % 10) {
      case 0: k.write_data(in.u8()); break;
      case 1: k.write_command(in.u8()); break;
      case 2: k.read_data(); break;
      case 3: k.read_status(); break;
      case 4: {
        uint8_t i = in.u8();
        k.key(kKeys[i % std::size(kKeys)], i & 0x80);
        break;
      }
      case 5: {
        int dx = int8_t(in.u8()) * (in.u8() & 1 ? 300 : 1), dy = int8_t(in.u8()), dz = int8_t(in.u8());
        k.mouse(dx, dy, dz, in.u8());
        break;
      }
      case 6: k.combo(kCombos[in.u8() % std::size(kCombos)]); break;
      case 7: k.restore(k.snapshot()); break;
      case 8: k.reset(); break;
      default: {  // a command and its data byte through the ports
        uint8_t b[1] = {in.u8()};
        k.command_port()->write(0, b);
        b[0] = in.u8();
        k.data_port()->write(0, b);
        break;
      }
    }
  }
  return 0;
}
