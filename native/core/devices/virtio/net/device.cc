// virtio-net device (virtio 1.2, 5.1). See device.h.
#include "devices/virtio/net/device.h"

#include "machine/state.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

namespace vireo::virtio {

namespace {

// Ones'-complement sum of `len` bytes, big-endian 16-bit words (RFC 1071).
uint32_t csum_add(const uint8_t* p, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t(p[i]) << 8 | p[i + 1];
  if (len & 1) sum += uint32_t(p[len - 1]) << 8;
  return sum;
}
uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}

}  // namespace

bool parse_mac(const std::string& s, MacAddr& out) {
  if (s.size() != 17) return false;
  MacAddr m{};
  for (int i = 0; i < 6; i++) {
    if (i && s[size_t(3 * i - 1)] != ':' && s[size_t(3 * i - 1)] != '-') return false;
    unsigned v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[size_t(3 * i + k)];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return false;
      v = v * 16 + unsigned(d);
    }
    m[size_t(i)] = uint8_t(v);
  }
  if (m[0] & 1) return false;  // multicast
  out = m;
  return true;
}

VirtioNet::VirtioNet(std::shared_ptr<net::NetBackend> backend, Options opt)
    : backend_(std::move(backend)), opt_(opt) {
  if (opt_.queue_size == 0 || opt_.queue_size > kMaxQueueSize || (opt_.queue_size & (opt_.queue_size - 1))) opt_.queue_size = 256;
  link_up_ = opt_.link_up;
}

VirtioNet::~VirtioNet() { quiesce(); }

void VirtioNet::start() {
  backend_->start([this](std::span<const uint8_t> f) { receive(f); });
}

void VirtioNet::quiesce() {
  if (backend_) backend_->stop();
}

uint64_t VirtioNet::device_features() const {
  return bit(kFVersion1) | bit(kFIndirectDesc) | bit(kFEventIdx) | bit(kNetFMac) | bit(kNetFStatus) |
         bit(kNetFMrgRxbuf) | bit(kNetFCsum);
}

void VirtioNet::read_config(uint32_t offset, std::span<uint8_t> data) {
  uint8_t c[kNetCfgSize] = {};
  std::memcpy(c + kNetCfgMac, opt_.mac.data(), 6);
  uint16_t status = link_up_ ? kNetSLinkUp : 0;
  c[kNetCfgStatus] = uint8_t(status);
  c[kNetCfgStatus + 1] = uint8_t(status >> 8);
  c[kNetCfgMaxPairs] = 1;
  c[kNetCfgMtu] = uint8_t(kMtu);
  c[kNetCfgMtu + 1] = uint8_t(kMtu >> 8);
  for (size_t i = 0; i < data.size(); i++) data[i] = offset + i < kNetCfgSize ? c[offset + i] : 0;
}

void VirtioNet::activate(uint64_t features) {
  VirtioDevice::activate(features);
  active_ = true;
}

void VirtioNet::reset() {
  VirtioDevice::reset();
  active_ = false;
  broken_ = false;
  backlog_.clear();
}

NetCounters VirtioNet::counters() const {
  NetCounters n;
  n.rx_packets = c_.rx_packets;
  n.rx_bytes = c_.rx_bytes;
  n.rx_dropped = c_.rx_dropped;
  n.tx_packets = c_.tx_packets;
  n.tx_bytes = c_.tx_bytes;
  n.tx_dropped = c_.tx_dropped;
  n.tx_malformed = c_.tx_malformed;
  n.rx_bad_buffers = c_.rx_bad_buffers;
  return n;
}

void VirtioNet::set_link(bool up) {
  std::lock_guard g(transport_->lock());
  if (link_up_.exchange(up) == up) return;
  if (!up) {
    c_.rx_dropped += backlog_.size();
    backlog_.clear();
  }
  // 5.1.4.2: the driver learns of it through a configuration change.
  if (features_ & bit(kNetFStatus)) transport_->config_changed();
}

// ------------------------------------------------------------ receive

void VirtioNet::receive(std::span<const uint8_t> frame) {
  std::lock_guard g(transport_->lock());
  receive_locked(frame);
}

void VirtioNet::receive_locked(std::span<const uint8_t> frame) {
  if (!active_ || broken_ || !link_up_ || !transport_->dma_allowed() || !transport_->queue(kNetRxQ).s.ready ||
      frame.size() < net::kMinFrame || frame.size() > net::kMaxFrame || backlog_.size() >= opt_.rx_backlog) {
    c_.rx_dropped++;
    return;
  }
  if (backlog_.empty() && !paused_) {
    // Nothing waiting: straight into the ring, no copy kept.
    Rx r;
    while ((r = deliver(frame)) == Rx::Retry) {}  // buffers arrived meanwhile (2.7.10)
    if (broken_) return;
    if (r == Rx::Delivered) {
      c_.rx_packets++;
      c_.rx_bytes += frame.size();
      transport_->signal_used(kNetRxQ);
      return;
    }
    if (r == Rx::Dropped) {
      c_.rx_dropped++;
      return;
    }
    // No buffers: it waits below; deliver() asked for a kick on the next one.
    backlog_.emplace_back(frame.begin(), frame.end());
    return;
  }
  backlog_.emplace_back(frame.begin(), frame.end());
  if (!paused_) flush_rx();  // else delivered by set_paused(false)
}

void VirtioNet::set_paused(bool paused) {
  std::lock_guard g(transport_->lock());
  if (paused_ == paused) return;
  paused_ = paused;
  if (paused_) return;
  if (!backlog_.empty()) flush_rx();
  // Frames the driver queued while paused (a kick held back above), or
  // before a saved state was taken (its kick is not part of the state).
  if (active_ && !broken_ && transport_->queue(kNetTxQ).s.ready && transport_->dma_allowed()) transmit();
}

void VirtioNet::flush_rx() {
  if (!active_ || broken_) return;
  bool any = false;
  while (!backlog_.empty()) {
    Rx r = deliver(backlog_.front());
    if (broken_) return;
    if (r == Rx::Retry) continue;  // buffers arrived meanwhile (2.7.10)
    if (r == Rx::NoBuffers) break;  // deliver() asked for a kick on the next buffer
    if (r == Rx::Delivered) {
      c_.rx_packets++;
      c_.rx_bytes += backlog_.front().size();
      any = true;
    } else {
      c_.rx_dropped++;
    }
    backlog_.pop_front();
  }
  if (any) transport_->signal_used(kNetRxQ);
}

VirtioNet::Rx VirtioNet::deliver(std::span<const uint8_t> frame) {
  const GuestMemory& mem = transport_->memory();
  SplitQueue& vq = transport_->queue(kNetRxQ);
  const bool mrg = features_ & bit(kNetFMrgRxbuf);
  const uint64_t total = kNetHdrLen + frame.size();
  // The header (5.1.6.4): no flags, no GSO; num_buffers filled in below.
  uint8_t hdr[kNetHdrLen] = {};

  struct Piece {
    uint16_t head;
    std::vector<SplitQueue::Segment> segs;
    uint64_t len;
  };
  std::vector<Piece> pieces;
  uint64_t room = 0;
  // Chains taken for this frame go back untouched when it cannot be placed yet.
  auto give_back = [&] {
    std::vector<uint16_t> heads;
    for (const auto& pc : pieces) heads.push_back(pc.head);
    vq.unpop(heads);
  };
  while (room < total) {
    SplitQueue::Chain ch;
    std::string why;
    SplitQueue::Pop p = vq.pop(mem, ch, &why);
    if (p == SplitQueue::Pop::Empty) {
      // Not enough room yet. With EVENT_IDX, ask to be kicked for the next
      // buffer past the ones seen now (avail_event = the current avail
      // index, published before the chains are given back: published after,
      // it would name buffers the driver already added and no kick would
      // come); then give the chains back for this frame later.
      bool more = vq.enable_notification(mem);
      give_back();
      return more ? Rx::Retry : Rx::NoBuffers;
    }
    if (p == SplitQueue::Pop::Broken) {
      c_.rx_bad_buffers++;
      broken_ = true;
      transport_->set_needs_reset("virtio-net receive queue: " + why);
      return Rx::Dropped;
    }
    // A receive buffer is device-writable only, and must hold the header in
    // its first chain (5.1.6.3.1). A bad one goes back unused and is counted.
    bool ok = ch.readable_len == 0 && ch.writable_len > 0 && (!pieces.empty() || ch.writable_len >= kNetHdrLen);
    for (const auto& s : ch.segs) ok = ok && mem.ptr(s.gpa, s.len);
    if (!ok) {
      c_.rx_bad_buffers++;
      std::vector<SplitQueue::Used> back;
      for (auto& pc : pieces) back.push_back({pc.head, 0});
      back.push_back({ch.head, 0});
      if (!vq.push_all(mem, back)) {
        broken_ = true;
        transport_->set_needs_reset("virtio-net used ring outside guest RAM");
      }
      transport_->signal_used(kNetRxQ);
      return Rx::Dropped;
    }
    room += ch.writable_len;
    pieces.push_back({ch.head, std::move(ch.segs), ch.writable_len});
    if (!mrg) break;
    if (pieces.size() >= vq.s.size) break;  // the whole ring cannot hold it
  }
  if (room < total) {
    // Too big for the buffers the driver posts (without MRG_RXBUF one chain
    // must hold it all): drop the frame, leave the buffers for the next one.
    give_back();
    return Rx::Dropped;
  }
  uint16_t nbuf = uint16_t(pieces.size());
  hdr[10] = uint8_t(nbuf);
  hdr[11] = uint8_t(nbuf >> 8);
  // Scatter header + frame over the chains in order.
  uint64_t done = 0;
  std::vector<SplitQueue::Used> used;
  for (auto& pc : pieces) {
    uint32_t in_piece = 0;
    for (const auto& s : pc.segs) {
      uint64_t off = 0;
      while (off < s.len && done < total) {
        uint64_t n;
        uint8_t* dst = mem.ptr(s.gpa + off, 1);
        if (done < kNetHdrLen) {
          n = std::min<uint64_t>(kNetHdrLen - done, s.len - off);
          std::memcpy(dst, hdr + done, n);
        } else {
          n = std::min<uint64_t>(total - done, s.len - off);
          std::memcpy(dst, frame.data() + (done - kNetHdrLen), n);
        }
        off += n;
        done += n;
        in_piece += uint32_t(n);
      }
    }
    used.push_back({pc.head, in_piece});
  }
  if (!vq.push_all(mem, used)) {
    broken_ = true;
    transport_->set_needs_reset("virtio-net used ring outside guest RAM");
    return Rx::Dropped;
  }
  return Rx::Delivered;
}

// ------------------------------------------------------------ transmit

void VirtioNet::queue_notify(int q) {
  if (broken_) return;
  if (q == kNetRxQ) {
    flush_rx();
  } else if (q == kNetTxQ) {
    // A backend that runs the kicks on its own thread (run_kicks) can get
    // one while the machine is paused: the ring stays as it is until resume.
    if (paused_) return;
    transmit();
  }
}

void VirtioNet::transmit() {
  const GuestMemory& mem = transport_->memory();
  SplitQueue& vq = transport_->queue(kNetTxQ);
  for (;;) {
    SplitQueue::Chain ch;
    std::string why;
    SplitQueue::Pop r;
    bool any = false;
    while ((r = vq.pop(mem, ch, &why)) == SplitQueue::Pop::Ok) {
      if (!tx_one(ch)) c_.tx_malformed++;
      // 5.1.6.2: the device returns transmit buffers with length 0 (nothing written).
      if (!vq.push(mem, ch.head, 0)) {
        broken_ = true;
        transport_->set_needs_reset("virtio-net used ring outside guest RAM");
        return;
      }
      any = true;
    }
    if (any) transport_->signal_used(kNetTxQ);
    if (r == SplitQueue::Pop::Broken) {
      c_.tx_malformed++;
      broken_ = true;
      transport_->set_needs_reset("virtio-net transmit queue: " + why);
      return;
    }
    if (!vq.enable_notification(mem)) break;
  }
}

bool VirtioNet::tx_one(const SplitQueue::Chain& ch) {
  const GuestMemory& mem = transport_->memory();
  // 5.1.6.2: header then frame, all device-readable.
  if (ch.writable_len || ch.readable_len < kNetHdrLen + net::kMinFrame ||
      ch.readable_len > kNetHdrLen + net::kMaxFrame) {
    return false;
  }
  txbuf_.resize(ch.readable_len);
  uint64_t at = 0;
  for (const auto& s : ch.segs) {
    if (!mem.read(s.gpa, txbuf_.data() + at, s.len)) return false;
    at += s.len;
  }
  const uint8_t* h = txbuf_.data();
  uint8_t flags = h[0], gso = h[1];
  uint16_t csum_start = uint16_t(h[6] | h[7] << 8), csum_offset = uint16_t(h[8] | h[9] << 8);
  std::span<uint8_t> frame{txbuf_.data() + kNetHdrLen, txbuf_.size() - kNetHdrLen};
  // No TSO/UFO was offered: a GSO frame is the driver's mistake.
  if ((gso & ~kNetHdrGsoEcn) != kNetHdrGsoNone) return false;
  if (flags & kNetHdrFNeedsCsum) {
    // 5.1.6.2: checksum from csum_start to the end, stored at
    // csum_start + csum_offset. Only with VIRTIO_NET_F_CSUM.
    if (!(features_ & bit(kNetFCsum))) return false;
    if (size_t(csum_start) + csum_offset + 2 > frame.size()) return false;
    uint16_t sum = uint16_t(~csum_fold(csum_add(frame.data() + csum_start, frame.size() - csum_start, 0)));
    // A computed 0 goes out as 0xffff (as Linux's skb_checksum_help does):
    // to UDP a 0 means "no checksum".
    if (sum == 0) sum = 0xffff;
    frame[size_t(csum_start) + csum_offset] = uint8_t(sum >> 8);
    frame[size_t(csum_start) + csum_offset + 1] = uint8_t(sum);
  }
  if (!link_up_) {
    c_.tx_dropped++;
    return true;
  }
  if (!backend_->send(frame)) {
    c_.tx_dropped++;
    return true;
  }
  c_.tx_packets++;
  c_.tx_bytes += frame.size();
  return true;
}

void VirtioNet::save_device(state::StateWriter& w) const {
  w.boolean(link_up_.load());
  w.boolean(broken_);
  w.u32(uint32_t(backlog_.size()));
  for (const auto& f : backlog_) w.blob(f);
}

std::function<void()> VirtioNet::load_device(state::StateReader& r) {
  bool link = r.boolean(), broken = r.boolean();
  uint32_t n = r.u32();
  if (n > opt_.rx_backlog) r.fail(std::to_string(n) + " frames waiting, at most " + std::to_string(opt_.rx_backlog));
  std::deque<std::vector<uint8_t>> frames;
  for (uint32_t i = 0; i < n; i++) {
    frames.push_back(r.blob(net::kMaxFrame));
    if (frames.back().size() < net::kMinFrame) r.fail("a waiting frame is shorter than an Ethernet header");
  }
  return [this, link, broken, frames = std::move(frames)]() mutable {
    link_up_ = link;
    broken_ = broken;
    backlog_ = std::move(frames);
  };
}

}  // namespace vireo::virtio
