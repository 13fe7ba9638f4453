// A virtio-net PCI function on a test PCI bus (Rig) and the guest driver a
// test plays against it (Driver: feature negotiation, the two virtqueues,
// receive buffers reposted in ring order, mergeable-buffer reassembly,
// transmit with a header in one or two descriptors), no vCPU. Shared by
// virtio_net_test (slirp and fake backends) and net_switch_test (the
// isolated network switch).
#pragma once
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "check.h"
#include "devices/pci/pci.h"
#include "devices/virtio/net/device.h"
#include "devices/virtio/pci_transport.h"
#include "devices/virtio/virtio.h"
#include "net_test_util.h"
#include "pci_test_util.h"

namespace virtio_net_rig {

using namespace vireo::virtio;
using nettest::Bytes;

// ------------------------------------------------------------ the PCI function

struct Rig : PciTestBus {
  static constexpr uint64_t kRamSize = 8 << 20;
  static constexpr uint64_t kBar4 = 0xe0000000, kBar1 = 0xe1000000;
  static constexpr int kSlot = 3;
  std::shared_ptr<vireo::net::NetBackend> be;
  std::shared_ptr<vireo::virtio::VirtioNet> net;
  std::shared_ptr<vireo::virtio::VirtioPci> fn;
  // kicks_on_backend: the transmit queue's notifications go through an
  // eventfd the backend's own thread polls (NetBackend::run_kicks, as
  // PcBoard wires user-mode NAT), not through the notify register.
  int kick_efd = -1;

  explicit Rig(std::shared_ptr<vireo::net::NetBackend> b, vireo::virtio::VirtioNet::Options o = {},
               const vireo::virtio::MacAddr& mac = nettest::kGuestMac, bool kicks_on_backend = false)
      : PciTestBus(kRamSize, kSlot), be(std::move(b)) {
    using namespace vireo;
    o.mac = mac;
    net = std::make_shared<virtio::VirtioNet>(be, o);
    fn = std::make_shared<virtio::VirtioPci>(net, &mem, virtio::VirtioPci::Hooks{});
    host.attach(kSlot, 0, fn);
    cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
    cfgw(pci::kBar0 + 20, 4, 0);
    cfgw(pci::kBar0 + 4, 4, uint32_t(kBar1));
    cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
    if (kicks_on_backend) {
      kick_efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      CHECK(kick_efd >= 0);
      auto* t = fn.get();
      auto* n = net.get();
      CHECK(be->run_kicks(kick_efd, [t] { t->notify(kNetTxQ); }, [n](std::span<const uint8_t> f) { n->receive_locked(f); }));
    }
    net->start();
  }
  ~Rig() {
    net->quiesce();
    if (kick_efd >= 0) ::close(kick_efd);
  }
  uint64_t r(uint64_t off, int size) { return mmio_read(kBar4 + off, size); }
  void w(uint64_t off, int size, uint64_t v) { mmio_write(kBar4 + off, size, v); }
  uint8_t status() { return uint8_t(r(0x14, 1)); }
};

inline uint16_t ld16(uint8_t* p) { return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(std::memory_order_acquire); }
inline void st16(uint8_t* p, uint16_t v) { std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, std::memory_order_release); }

// One virtqueue as the driver keeps it.
struct DQueue {
  uint64_t desc, avail, used;
  uint16_t size;
  uint16_t avail_idx = 0, last_used = 0, next_desc = 0;
};

struct Driver {
  Rig& rig;
  DQueue rxq{0x10000, 0x14000, 0x18000, 64}, txq{0x20000, 0x24000, 0x28000, 64};
  uint32_t rx_buf_len = 2048;
  uint64_t features;
  std::vector<Bytes> frames;  // received, header stripped
  std::vector<Bytes> headers;

  static constexpr uint64_t kRxBufs = 0x100000, kTxBufs = 0x400000;

  Driver(Rig& r, uint64_t f, uint32_t buflen = 2048, bool post = true) : rig(r), rx_buf_len(buflen), features(f) {
    CHECK(negotiate(f) & kStatusFeaturesOk);
    setup(0, rxq);
    setup(1, txq);
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    if (post) post_rx(rxq.size);
  }
  uint8_t negotiate(uint64_t f) {
    rig.w(0x14, 1, 0);
    rig.w(0x14, 1, kStatusAcknowledge);
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver);
    rig.w(0x08, 4, 0);
    rig.w(0x0c, 4, uint32_t(f));
    rig.w(0x08, 4, 1);
    rig.w(0x0c, 4, uint32_t(f >> 32));
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    return rig.status();
  }
  void setup(int qi, DQueue& q) {
    for (uint64_t a : {q.desc, q.avail, q.used}) std::memset(rig.ram.data() + a, 0, 0x4000);
    rig.w(0x16, 2, uint64_t(qi));
    rig.w(0x18, 2, q.size);
    rig.w(0x20, 8, q.desc);
    rig.w(0x28, 8, q.avail);
    rig.w(0x30, 8, q.used);
    rig.w(0x1c, 2, 1);
  }
  void set_desc(DQueue& q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* p = rig.ram.data() + q.desc + 16ull * i;
    std::memcpy(p, &addr, 8);
    std::memcpy(p + 8, &len, 4);
    std::memcpy(p + 12, &flags, 2);
    std::memcpy(p + 14, &next, 2);
  }
  void publish(DQueue& q, uint16_t head) {
    uint16_t v = head;
    std::memcpy(rig.ram.data() + q.avail + 4 + 2ull * (q.avail_idx % q.size), &v, 2);
    q.avail_idx++;
    st16(rig.ram.data() + q.avail + 2, q.avail_idx);
  }
  void kick(int qi) {
    if (qi == kNetTxQ && rig.kick_efd >= 0) {
      uint64_t one = 1;
      CHECK_EQ(::write(rig.kick_efd, &one, sizeof one), ssize_t(sizeof one));
      return;
    }
    rig.w(VirtioPci::kNotifyOff + 4ull * qi, 2, uint64_t(qi));
  }
  uint16_t used_idx(DQueue& q) { return ld16(rig.ram.data() + q.used + 2); }
  std::pair<uint32_t, uint32_t> used_elem(DQueue& q, uint16_t i) {
    uint32_t e[2];
    std::memcpy(e, rig.ram.data() + q.used + 4 + 8ull * (i % q.size), 8);
    return {e[0], e[1]};
  }

  // Receive buffers: descriptor i ↔ buffer i, one writable descriptor each.
  void post_rx(int n) {
    for (int k = 0; k < n; k++) {
      uint16_t i = rxq.next_desc;
      rxq.next_desc = uint16_t((i + 1) % rxq.size);
      set_desc(rxq, i, kRxBufs + 0x10000ull * i, rx_buf_len, kDescWrite, 0);
      publish(rxq, i);
    }
    kick(0);
  }
  // Takes what the device put on the receive ring; reposts the buffers.
  int collect() {
    int got = 0;
    while (rxq.last_used != used_idx(rxq)) {
      auto [head, len] = used_elem(rxq, rxq.last_used++);
      CHECK(head < rxq.size);
      const uint8_t* b = rig.ram.data() + kRxBufs + 0x10000ull * head;
      CHECK(len >= kNetHdrLen && len <= rx_buf_len);
      Bytes hdr(b, b + kNetHdrLen);
      uint16_t nbuf = uint16_t(hdr[10] | hdr[11] << 8);
      Bytes f(b + kNetHdrLen, b + len);
      int reposted = 1;
      if (features & bit(kNetFMrgRxbuf)) {
        CHECK(nbuf >= 1);
        for (uint16_t k = 1; k < nbuf; k++) {
          CHECK(rxq.last_used != used_idx(rxq));  // published together
          auto [h2, l2] = used_elem(rxq, rxq.last_used++);
          const uint8_t* b2 = rig.ram.data() + kRxBufs + 0x10000ull * h2;
          f.insert(f.end(), b2, b2 + l2);
          reposted++;
        }
      } else {
        CHECK_EQ(nbuf, 1);
      }
      headers.push_back(hdr);
      frames.push_back(std::move(f));
      got++;
      // Repost the same buffers (descriptors are reused in ring order).
      for (int k = 0; k < reposted; k++) {
        uint16_t i = rxq.next_desc;
        rxq.next_desc = uint16_t((i + 1) % rxq.size);
        set_desc(rxq, i, kRxBufs + 0x10000ull * i, rx_buf_len, kDescWrite, 0);
        publish(rxq, i);
      }
      kick(0);
    }
    return got;
  }
  // Waits up to `ms` for a received frame matching `pred`; returns it (or empty).
  Bytes wait_for(const std::function<bool(const Bytes&)>& pred, int ms = 5000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    size_t seen = 0;
    for (;;) {
      collect();
      for (; seen < frames.size(); seen++) {
        if (pred(frames[seen])) return frames[seen];
      }
      if (std::chrono::steady_clock::now() > end) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  // Transmit: header (+ frame) in one or two descriptors.
  uint16_t send_raw(const Bytes& hdr, const Bytes& frame, bool split = true) {
    uint16_t head = txq.next_desc;
    uint64_t buf = kTxBufs + 0x20000ull * (head % 16);
    std::memcpy(rig.ram.data() + buf, hdr.data(), hdr.size());
    if (!frame.empty()) std::memcpy(rig.ram.data() + buf + 0x100, frame.data(), frame.size());
    if (split) {
      uint16_t i2 = uint16_t((head + 1) % txq.size);
      set_desc(txq, head, buf, uint32_t(hdr.size()), kDescNext, i2);
      set_desc(txq, i2, buf + 0x100, uint32_t(frame.size()), 0, 0);
      txq.next_desc = uint16_t((head + 2) % txq.size);
    } else {
      Bytes all = hdr;
      all.insert(all.end(), frame.begin(), frame.end());
      std::memcpy(rig.ram.data() + buf, all.data(), all.size());
      set_desc(txq, head, buf, uint32_t(all.size()), 0, 0);
      txq.next_desc = uint16_t((head + 1) % txq.size);
    }
    publish(txq, head);
    kick(1);
    return head;
  }
  static Bytes hdr(uint8_t flags = 0, uint16_t csum_start = 0, uint16_t csum_off = 0, uint8_t gso = 0) {
    Bytes h(kNetHdrLen, 0);
    h[0] = flags;
    h[1] = gso;
    h[6] = uint8_t(csum_start);
    h[7] = uint8_t(csum_start >> 8);
    h[8] = uint8_t(csum_off);
    h[9] = uint8_t(csum_off >> 8);
    return h;
  }
  void send(const Bytes& frame) { send_raw(hdr(), frame); }
};

}  // namespace virtio_net_rig
