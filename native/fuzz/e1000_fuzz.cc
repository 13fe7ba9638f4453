// libFuzzer target: the e1000 (82540EM) from a fuzzed guest memory image and a
// sequence of register accesses, as a guest driver makes them (no vCPU): the
// transmit path (legacy, context and data descriptors, checksum offload, TSO)
// and the receive path (filters, descriptors, FIFO) with a loopback backend.
//
// Input: u16 n + n bytes copied to RAM at 0, then ops until the input ends:
//   0 write_reg(u32 offset, u32 value)   1 read_reg(u32 offset)
//   2 poke RAM: u16 addr, u8 len, bytes  3 a frame from the backend: u16 len, bytes
//   4 deliver what the guest sent back to it (loopback)
//   5 link up/down (u8 bit 0)            6 device reset
//   7 16-byte descriptor at 0x1000 + 16 * u8 (the seeds' TX ring), 16 bytes
#include <deque>
#include <mutex>

#include "bus/bus.h"
#include "devices/net/e1000.h"
#include "devices/pci/pci.h"
#include "fuzz_input.h"
#include "machine/guest_memory.h"
#include "net/backend.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {
constexpr uint64_t kRam = 64 << 10;

struct Loopback : net::NetBackend {
  std::mutex mu;
  std::deque<std::vector<uint8_t>> sent;
  Receiver rx;
  void start(Receiver r) override { rx = std::move(r); }
  void stop() override {}
  bool send(std::span<const uint8_t> f) override {
    std::lock_guard g(mu);
    if (sent.size() >= 64) return false;
    sent.emplace_back(f.begin(), f.end());
    return true;
  }
  std::string kind() const override { return "loopback"; }
  void loop() {
    std::deque<std::vector<uint8_t>> q;
    {
      std::lock_guard g(mu);
      q.swap(sent);
    }
    for (auto& f : q)
      if (rx) rx(f);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  std::vector<uint8_t> ram(kRam, 0);
  GuestMemory mem;
  mem.add_region(0, kRam, ram.data());
  Bus pio, mmio;
  pci::PciHost host{pio, mmio};
  auto be = std::make_shared<Loopback>();
  e1000::E1000::Options o;
  o.rx_fifo = 8;
  auto dev = std::make_shared<e1000::E1000>(be, &mem, o);
  host.attach(3, 0, dev);
  dev->start();
  auto image = in.bytes(in.u16());
  std::memcpy(ram.data(), image.data(), std::min(image.size(), ram.size()));
  for (int ops = 0; !in.empty() && ops < 4096; ops++) {
    switch (in.u8() % 8) {
      case 0: {
        uint32_t off = in.u32() % e1000::E1000::kMmioSize & ~3u;
        dev->write_reg(off, in.u32());
        break;
      }
      case 1:
        (void)dev->read_reg(in.u32() % e1000::E1000::kMmioSize & ~3u);
        break;
      case 2: {
        uint16_t a = in.u16();
        auto b = in.bytes(in.u8());
        for (size_t i = 0; i < b.size(); i++) ram[(a + i) % kRam] = b[i];
        break;
      }
      case 3: {
        auto f = in.bytes(in.u16() % 2048);
        if (be->rx) be->rx(f);
        break;
      }
      case 4:
        be->loop();
        break;
      case 5:
        dev->set_link(in.u8() & 1);
        break;
      case 6:
        dev->reset();
        break;
      default: {
        uint64_t a = 0x1000 + 16ull * in.u8();
        auto b = in.bytes(16);
        for (size_t i = 0; i < b.size(); i++) ram[(a + i) % kRam] = b[i];
        break;
      }
    }
  }
  dev->quiesce();
  return 0;
}
