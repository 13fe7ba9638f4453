// libFuzzer target: virtio-net's TX path (header + frame gathered from
// descriptor chains) and RX path (frames written into the guest's receive
// chains, mergeable buffers or not) from a fuzzed guest memory image and a
// sequence of register writes. The backend is a loopback: what the guest
// transmits is queued and delivered back to it on op 10; op 9 injects a
// frame from the input. See virtio_rig.h for the input format.
#include <deque>
#include <mutex>

#include "devices/virtio/net/device.h"
#include "net/backend.h"
#include "virtio_rig.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {
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
    for (auto& f : q) rx(f);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  VirtioRig rig;
  auto be = std::make_shared<Loopback>();
  virtio::VirtioNet::Options o;
  o.rx_backlog = 8;
  auto net = std::make_shared<virtio::VirtioNet>(be, o);
  rig.attach(net, 2);
  net->start();
  rig.begin(in);
  for (int ops = 0; !in.empty() && ops < 4096; ops++) {
    uint8_t op = in.u8() % 12;
    if (rig.step(op, in)) continue;
    if (op == 9) {
      auto f = in.bytes(in.u16() % 2048);
      if (be->rx) be->rx(f);
    } else if (op == 10) {
      be->loop();
    } else {
      net->set_link(in.u8() & 1);
    }
  }
  net->quiesce();
  return 0;
}
