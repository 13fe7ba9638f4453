// virtio-net (virtio 1.2, 5.1) over a net::NetBackend: one receive and one
// transmit queue, the MAC in configuration space, link status
// (VIRTIO_NET_F_STATUS, settable from the host), mergeable receive buffers,
// and VIRTIO_NET_F_CSUM: the guest may hand over frames with a partial
// checksum, which the device completes before the backend sees them (slirp
// wants whole checksums). No GUEST_CSUM (frames to the guest carry complete
// checksums), no TSO/UFO, no multiqueue, no control queue (Linux runs
// without one: no rx-mode or MAC filter commands to answer).
//
// Receive: frames arrive on the backend's thread. While the driver is up
// they wait in a bounded backlog until the guest posts buffers (a kick on
// the receive queue flushes it); with the link down, before DRIVER_OK, or
// with the backlog full they are dropped and counted.
//
// Guest errors: a transmit frame that breaks the rules (too short or long,
// device-writable descriptors, a buffer outside RAM, GSO that was not
// negotiated, a checksum offset outside the frame) is dropped and counted as
// tx_malformed; the queue carries on. A broken chain or ring (loops, indexes
// past the table: SplitQueue::Pop::Broken) is counted too and sets
// DEVICE_NEEDS_RESET, as virtio-blk does (and QEMU's virtio_error).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "devices/virtio/device.h"
#include "devices/virtio/virtio.h"
#include "net/backend.h"
#include "net/nic.h"

namespace vireo::virtio {

// 5.1.3 feature bits.
constexpr int kNetFCsum = 0, kNetFGuestCsum = 1, kNetFCtrlGuestOffloads = 2, kNetFMtu = 3, kNetFMac = 5,
              kNetFGuestTso4 = 7, kNetFGuestTso6 = 8, kNetFGuestEcn = 9, kNetFGuestUfo = 10, kNetFHostTso4 = 11,
              kNetFHostTso6 = 12, kNetFHostEcn = 13, kNetFHostUfo = 14, kNetFMrgRxbuf = 15, kNetFStatus = 16,
              kNetFCtrlVq = 17, kNetFCtrlRx = 18, kNetFCtrlVlan = 19, kNetFGuestAnnounce = 21, kNetFMq = 22,
              kNetFCtrlMacAddr = 23;
// 5.1.4 configuration: mac[6], le16 status, le16 max_virtqueue_pairs, le16 mtu.
constexpr uint32_t kNetCfgMac = 0, kNetCfgStatus = 6, kNetCfgMaxPairs = 8, kNetCfgMtu = 10, kNetCfgSize = 12;
constexpr uint16_t kNetSLinkUp = 1;
// 5.1.6 struct virtio_net_hdr (with VERSION_1 always 12 bytes, num_buffers included).
constexpr uint32_t kNetHdrLen = 12;
constexpr uint8_t kNetHdrFNeedsCsum = 1, kNetHdrFDataValid = 2;
constexpr uint8_t kNetHdrGsoNone = 0, kNetHdrGsoEcn = 0x80;
constexpr int kNetRxQ = 0, kNetTxQ = 1;

// tx_malformed: frames or chains from the guest that broke the rules;
// rx_bad_buffers: receive chains the guest got wrong (read-only, outside RAM).
using NetCounters = net::NicCounters;

using MacAddr = std::array<uint8_t, 6>;

class VirtioNet : public VirtioDevice, public net::Nic {
public:
  struct Options {
    MacAddr mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};  // QEMU's default
    uint16_t queue_size = 256;
    bool link_up = true;
    size_t rx_backlog = 256;  // frames waiting for guest buffers
  };
  static constexpr uint16_t kMtu = 1500;

  VirtioNet(std::shared_ptr<net::NetBackend> backend, Options opt);
  ~VirtioNet() override;

  uint16_t device_type() const override { return kDeviceNet; }
  uint64_t device_features() const override;
  uint16_t num_queues() const override { return 2; }
  uint16_t max_queue_size() const override { return opt_.queue_size; }
  uint32_t config_size() const override { return kNetCfgSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;
  void queue_notify(int q) override;
  void activate(uint64_t features) override;
  void reset() override;
  // Stops the backend: no frame arrives after it returns.
  void quiesce() override;
  void set_paused(bool paused) override;
  // Saved state: the link status, whether the device broke down (needs a
  // reset), and the frames waiting for receive buffers.
  void save_device(state::StateWriter& w) const override;
  std::function<void()> load_device(state::StateReader& r) override;

  // Starts the backend; call once the transport is attached.
  void start();
  // Link up/down from the host (takes the transport lock). Down: frames both
  // ways are dropped and counted; the guest sees the status change (with
  // VIRTIO_NET_F_STATUS) through a configuration-change interrupt.
  void set_link(bool up) override;
  bool link_up() const override { return link_up_.load(); }
  NetCounters counters() const override;
  const MacAddr& mac() const { return opt_.mac; }
  net::NetBackend& backend() { return *backend_; }

  // A frame for the guest (the backend's receiver; public for tests).
  void receive(std::span<const uint8_t> frame);
  // The same with the transport's lock already held (a backend delivering
  // from inside this device's transmit: NetBackend::run_kicks).
  void receive_locked(std::span<const uint8_t> frame);

private:
  enum class Rx { Delivered, NoBuffers, Retry, Dropped };
  void flush_rx();                         // transport lock held
  Rx deliver(std::span<const uint8_t> frame);
  void transmit();                         // transport lock held
  bool tx_one(const SplitQueue::Chain& c);  // false: malformed

  std::shared_ptr<net::NetBackend> backend_;
  Options opt_;
  std::atomic<bool> link_up_{true};
  bool paused_ = false;  // under the transport's lock
  bool active_ = false, broken_ = false;
  std::deque<std::vector<uint8_t>> backlog_;
  std::vector<uint8_t> txbuf_;
  struct Counters {
    std::atomic<uint64_t> rx_packets{0}, rx_bytes{0}, rx_dropped{0}, tx_packets{0}, tx_bytes{0}, tx_dropped{0},
        tx_malformed{0}, rx_bad_buffers{0};
  } c_;
};

// "52:54:00:12:34:56" → bytes. False when it is not six hex bytes, or a
// multicast address (bit 0 of the first byte).
bool parse_mac(const std::string& s, MacAddr& out);

}  // namespace vireo::virtio
