// A virtio PCI function on a PCI host with a small guest RAM, driven by a
// fuzz input the way a guest driver would (no vCPU): PCI config writes, BAR4
// accesses, descriptors and avail-ring entries written into RAM, notifies.
//
// Input: u16 n + n bytes copied to RAM at 0 (the guest memory image), u8
// flags (bit 0: run the standard driver init first: the features from the
// next u64, every queue's size from a u8 and its rings at fixed addresses),
// then ops until the input ends; see step(). Device-specific ops are passed
// to the caller's handler.
#pragma once
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "bus/bus.h"
#include "devices/pci/pci.h"
#include "devices/virtio/pci_transport.h"
#include "devices/virtio/virtio.h"
#include "fuzz_input.h"
#include "machine/guest_memory.h"

namespace vireo::fuzz {

struct VirtioRig {
  static constexpr uint64_t kRam = 64 << 10, kBar4 = 0xe0000000, kBar1 = 0xe1000000;
  static constexpr int kSlot = 3;
  // Queue q's rings: descriptors at desc(q), avail at +0x1000, used at +0x2000.
  static constexpr uint64_t desc(int q) { return 0x1000 + 0x3000ull * q; }
  static constexpr uint64_t avail(int q) { return desc(q) + 0x1000; }
  static constexpr uint64_t used(int q) { return desc(q) + 0x2000; }

  std::vector<uint8_t> ram = std::vector<uint8_t>(kRam, 0);
  GuestMemory mem;
  Bus pio, mmio;
  pci::PciHost host{pio, mmio};
  std::shared_ptr<virtio::VirtioPci> fn;
  uint16_t qsize[8] = {}, avail_idx[8] = {};
  int nq = 0;

  VirtioRig() { mem.add_region(0, kRam, ram.data()); }
  void attach(std::shared_ptr<virtio::VirtioDevice> dev, int queues) {
    nq = queues;
    virtio::VirtioPci::Hooks h;
    h.msi = [](uint64_t, uint32_t) {};
    fn = std::make_shared<virtio::VirtioPci>(std::move(dev), &mem, h);
    host.attach(kSlot, 0, fn);
    cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
    cfgw(pci::kBar0 + 20, 4, 0);
    cfgw(pci::kBar0 + 4, 4, uint32_t(kBar1));
    cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
  }
  uint32_t cfgr(uint32_t reg, int size) { return host.config_read(0, kSlot, 0, reg, size); }
  void cfgw(uint32_t reg, int size, uint32_t v) { host.config_write(0, kSlot, 0, reg, size, v); }
  uint64_t r(uint64_t off, int size) {
    uint8_t b[8] = {};
    mmio.read(kBar4 + off, {b, size_t(size)});
    return bytes_le({b, size_t(size)});
  }
  void w(uint64_t off, int size, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = uint8_t(v >> (8 * i));
    mmio.write(kBar4 + off, {b, size_t(size)});
  }
  void kick(int q) { w(virtio::VirtioPci::kNotifyOff + virtio::VirtioPci::kNotifyMultiplier * q, 2, uint16_t(q)); }

  // The driver's side of 3.1.1, with the queues at the fixed addresses.
  void init(Reader& in) {
    using namespace virtio;
    uint64_t features = in.u64() | bit(kFVersion1);
    w(0x14, 1, 0);
    w(0x14, 1, kStatusAcknowledge);
    w(0x14, 1, kStatusAcknowledge | kStatusDriver);
    w(0x08, 4, 0);
    w(0x0c, 4, uint32_t(features));
    w(0x08, 4, 1);
    w(0x0c, 4, uint32_t(features >> 32));
    w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    for (int q = 0; q < nq; q++) {
      uint16_t size = uint16_t(1u << (in.u8() % 9));  // 1..256
      qsize[q] = size;
      w(0x16, 2, q);
      w(0x18, 2, size);
      w(0x20, 8, desc(q));
      w(0x28, 8, avail(q));
      w(0x30, 8, used(q));
      w(0x1c, 2, 1);
    }
    w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  // Reads the memory image and flags; runs init when asked.
  void begin(Reader& in) {
    auto img = in.bytes(in.u16());
    std::memcpy(ram.data(), img.data(), img.size());
    if (in.u8() & 1) init(in);
  }

  // One op. Returns false when the opcode is not a transport op (the caller's).
  bool step(uint8_t op, Reader& in) {
    switch (op) {
      case 0: {  // BAR4 write (common cfg, ISR, device cfg, notify)
        uint16_t off = in.u16() % virtio::VirtioPci::kBar4Size;
        int s = in.size();
        w(off, s, in.u64());
        return true;
      }
      case 1: {
        uint16_t off = in.u16() % virtio::VirtioPci::kBar4Size;
        r(off, in.size());
        return true;
      }
      case 2: {  // PCI config space
        uint8_t reg = in.u8();
        int s = std::min(in.size(), 4);
        cfgw(reg, s, in.u32());
        return true;
      }
      case 3: cfgr(in.u8(), std::min(in.size(), 4)); return true;
      case 4: {  // MSI-X table / PBA
        uint16_t off = in.u16() % virtio::VirtioPci::kMsixBarSize;
        uint8_t b[4];
        uint32_t v = in.u32();
        std::memcpy(b, &v, 4);
        mmio.write(kBar1 + off, {b, 4});
        return true;
      }
      case 5: {  // guest RAM poke
        uint16_t off = in.u16();
        auto b = in.bytes(in.u8());
        size_t k = std::min<size_t>(b.size(), kRam - off);
        std::memcpy(ram.data() + off, b.data(), k);
        return true;
      }
      case 6: {  // a descriptor in queue q's table
        int q = in.u8() % std::max(nq, 1);
        uint16_t i = in.u16() % 256;
        uint8_t d[16];
        uint64_t addr = in.u32();  // mostly inside (or just past) RAM
        if (in.u8() == 0xff) addr |= uint64_t(in.u32()) << 32;
        uint32_t len = in.u32();
        uint16_t flags = in.u16(), next = in.u16();
        std::memcpy(d, &addr, 8);
        std::memcpy(d + 8, &len, 4);
        std::memcpy(d + 12, &flags, 2);
        std::memcpy(d + 14, &next, 2);
        std::memcpy(ram.data() + desc(q) + 16ull * i, d, 16);
        return true;
      }
      case 7: {  // publish a head in queue q's avail ring (no kick)
        int q = in.u8() % std::max(nq, 1);
        uint16_t head = in.u16();
        uint16_t size = qsize[q] ? qsize[q] : 256;
        std::memcpy(ram.data() + avail(q) + 4 + 2ull * (avail_idx[q] % size), &head, 2);
        avail_idx[q]++;
        std::memcpy(ram.data() + avail(q) + 2, &avail_idx[q], 2);
        return true;
      }
      case 8: kick(in.u8() % std::max(nq, 1)); return true;
      default: return false;
    }
  }
};

}  // namespace vireo::fuzz
