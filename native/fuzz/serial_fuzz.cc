// libFuzzer target: the 16550 UART's registers (DLAB, FIFO control,
// loopback, interrupt identification) interleaved with host input (receive
// into the FIFO, backlog queue).
// Input: ops (u8 opcode + operands, see the switch).
#include "devices/legacy/serial.h"
#include "fuzz_input.h"

using namespace vireo;
using namespace vireo::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  size_t out = 0;
  devices::Serial16550 s(IrqLine(), [&](uint8_t) { out++; });
  s.on_rx_space = [] {};
  for (int ops = 0; !in.empty() && ops < 8192; ops++) {
    uint8_t op = in.u8();
    uint8_t b[4];
    switch (op % 5) {
      case 0: {
        b[0] = in.u8();
        s.write((op >> 3) & 7, {b, 1});
        break;
      }
      case 1: s.read((op >> 3) & 7, {b, 1}); break;
      case 2: s.receive(in.bytes(in.u8() % 32)); break;
      case 3: s.queue_input(in.bytes(in.u8())); break;
      default: {  // a wider access, as a confused driver might
        uint32_t v = in.u32();
        for (int i = 0; i < 4; i++) b[i] = uint8_t(v >> (8 * i));
        size_t n = size_t(1) << (in.u8() % 3);
        if (op & 0x80) s.write((op >> 3) & 7, {b, n});
        else s.read((op >> 3) & 7, {b, n});
        break;
      }
    }
  }
  return 0;
}
