// libFuzzer target: virtio-blk's split-ring request parsing (descriptor
// chains, indirect tables, header/status placement, IN/OUT/FLUSH/GET_ID/
// DISCARD/WRITE_ZEROES segments) from a fuzzed guest memory image and a
// sequence of register writes, on a 64 KiB in-memory disk. See virtio_rig.h
// for the input format; op 9 waits for the I/O thread, op 10 resets.
#include "block/block.h"
#include "devices/virtio/blk/device.h"
#include "virtio_rig.h"

using namespace vireo;
using namespace vireo::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  VirtioRig rig;
  auto disk = std::make_shared<block::MemoryBackend>(64 << 10);
  virtio::VirtioBlk::Options o;
  o.serial = "fuzz";
  o.io_threads = 1;
  auto blk = std::make_shared<virtio::VirtioBlk>(disk, o);
  rig.attach(blk, 1);
  rig.begin(in);
  for (int ops = 0; !in.empty() && ops < 4096; ops++) {
    uint8_t op = in.u8() % 11;
    if (rig.step(op, in)) continue;
    if (op == 9) blk->drain();
    else rig.w(0x14, 1, 0);  // device reset
  }
  blk->drain();
  blk->quiesce();
  return 0;
}
