// virtio-blk device (virtio 1.2, 5.2).
#include "devices/virtio/blk/device.h"

#include "machine/state.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "devices/virtio/virtio.h"

namespace vireo::virtio {

namespace {

constexpr uint64_t kSector = 512;
constexpr uint32_t kHeaderLen = 16;  // le32 type, le32 reserved, le64 sector
constexpr uint32_t kDwzSegLen = 16;  // le64 sector, le32 num_sectors, le32 flags
constexpr uint32_t kDwzUnmap = 1;

// Copy `len` bytes starting `skip` bytes into the chain's segments of the
// given direction, out of (to_guest = false) or into guest memory. False
// when a segment is outside guest RAM or the chain is too short.
bool copy_segments(const GuestMemory& mem, const std::vector<SplitQueue::Segment>& segs, bool writable,
                   uint64_t skip, uint8_t* buf, uint64_t len, bool to_guest) {
  for (const auto& s : segs) {
    if (s.writable != writable) continue;
    if (!len) return true;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(s.len - skip, len);
    bool ok = to_guest ? mem.write(s.gpa + skip, buf, n) : mem.read(s.gpa + skip, buf, n);
    if (!ok) return false;
    buf += n;
    len -= n;
    skip = 0;
  }
  return len == 0;
}

}  // namespace

struct VirtioBlk::Request {
  int q = 0;
  uint16_t head = 0;
  uint64_t epoch = 0;
  uint32_t type = 0;
  std::vector<SplitQueue::Segment> segs;
  uint64_t status_gpa = 0;
  std::vector<uint8_t> buf;   // bounce buffer: IN data to scatter
  uint64_t charged = 0;       // bytes counted in bytes_in_flight_
  uint32_t used_len = 1;      // bytes written into device-writable buffers
  uint8_t status = kBlkSOk;
  std::atomic<int> parts{1};  // outstanding BlockQueue operations
  std::atomic<int> error{0};
};

VirtioBlk::VirtioBlk(std::shared_ptr<block::BlockBackend> disk, Options opt) : disk_(std::move(disk)), opt_(std::move(opt)) {
  if (disk_->read_only()) opt_.read_only = true;
  if (opt_.queue_size == 0 || opt_.queue_size > kMaxQueueSize || (opt_.queue_size & (opt_.queue_size - 1))) opt_.queue_size = 256;
  io_ = std::make_unique<block::BlockQueue>(disk_, std::max(1u, opt_.io_threads));
}

VirtioBlk::~VirtioBlk() { quiesce(); }

void VirtioBlk::quiesce() {
  if (io_) io_->drain();
}

uint64_t VirtioBlk::device_features() const {
  uint64_t f = bit(kFVersion1) | bit(kFIndirectDesc) | bit(kFEventIdx) | bit(kBlkFSegMax) | bit(kBlkFBlkSize) |
               bit(kBlkFFlush) | bit(kBlkFDiscard) | bit(kBlkFWriteZeroes);
  if (opt_.read_only) f |= bit(kBlkFRo);
  return f;
}

void VirtioBlk::read_config(uint32_t offset, std::span<uint8_t> data) {
  uint8_t c[kBlkCfgSize] = {};
  auto put = [&](uint32_t off, uint64_t v, int n) {
    for (int i = 0; i < n; i++) c[off + i] = uint8_t(v >> (8 * i));
  };
  put(kBlkCfgCapacity, capacity_sectors(), 8);
  put(kBlkCfgSegMax, opt_.queue_size - 2u, 4);  // header and status take two descriptors
  put(kBlkCfgBlkSize, kSector, 4);
  put(kBlkCfgNumQueues, 1, 2);
  put(kBlkCfgMaxDiscardSectors, kMaxDiscardSectors, 4);
  put(kBlkCfgMaxDiscardSeg, kMaxDiscardSeg, 4);
  put(kBlkCfgDiscardAlign, 1, 4);
  put(kBlkCfgMaxWzSectors, kMaxDiscardSectors, 4);
  put(kBlkCfgMaxWzSeg, kMaxDiscardSeg, 4);
  put(kBlkCfgWzMayUnmap, 0, 1);
  for (size_t i = 0; i < data.size(); i++) data[i] = offset + i < kBlkCfgSize ? c[offset + i] : 0;
}

void VirtioBlk::queue_notify(int q) {
  const GuestMemory& mem = transport_->memory();
  SplitQueue& vq = transport_->queue(q);
  for (;;) {
    SplitQueue::Chain chain;
    std::string why;
    SplitQueue::Pop r;
    while ((r = vq.pop(mem, chain, &why)) == SplitQueue::Pop::Ok) {
      // Requests start in order: once one waits for room, later ones wait behind it.
      if (!deferred_.empty() || bytes_in_flight_ >= kMaxBytesInFlight) {
        deferred_.push_back({q, std::move(chain)});
        chain = SplitQueue::Chain{};
      } else {
        start(q, chain);
      }
    }
    if (r == SplitQueue::Pop::Broken) {
      transport_->set_needs_reset("virtio-blk queue " + std::to_string(q) + ": " + why);
      return;
    }
    // With EVENT_IDX, ask to be notified for the next buffer; re-check for
    // buffers the driver added meanwhile (2.7.10).
    if (!vq.enable_notification(mem)) break;
  }
}

void VirtioBlk::start(int q, SplitQueue::Chain& chain) {
  const GuestMemory& mem = transport_->memory();
  auto r = std::make_shared<Request>();
  r->q = q;
  r->head = chain.head;
  r->epoch = transport_->epoch();
  // Framing (5.2.6): a 16-byte device-readable header first, a one-byte
  // device-writable status last. Without them there is nowhere to report
  // an error: the driver broke the protocol.
  uint8_t hdr[kHeaderLen];
  if (chain.readable_len < kHeaderLen || chain.writable_len < 1 ||
      !copy_segments(mem, chain.segs, false, 0, hdr, kHeaderLen, false)) {
    transport_->set_needs_reset("virtio-blk request without a readable header or a writable status byte");
    return;
  }
  const auto& last = chain.segs.back();  // writable_len >= 1, so the last segment is writable
  r->status_gpa = last.gpa + last.len - 1;
  if (!mem.ptr(r->status_gpa, 1)) {
    transport_->set_needs_reset("virtio-blk status byte outside guest RAM");
    return;
  }
  std::memcpy(&r->type, hdr, 4);
  uint64_t sector;
  std::memcpy(&sector, hdr + 8, 8);
  r->segs = std::move(chain.segs);
  uint64_t in_len = chain.writable_len - 1, out_len = chain.readable_len - kHeaderLen;
  uint64_t cap = capacity_sectors();

  auto done_now = [&](uint8_t status) {
    r->status = status;
    complete(*r);
  };
  auto cb = [this, r](int res) {
    if (res) r->error.store(res);
    if (r->parts.fetch_sub(1) == 1) finish(r);
  };
  auto in_range = [&](uint64_t sec, uint64_t bytes) { return sec <= cap && bytes / kSector <= cap - sec; };

  switch (r->type) {
    case kBlkTIn: {
      if (in_len % kSector || in_len > kMaxRequestBytes || !in_range(sector, in_len)) return done_now(kBlkSIoErr);
      // Check the destination now so a bad buffer fails before any I/O.
      for (const auto& s : r->segs) {
        if (s.writable && !mem.ptr(s.gpa, s.len)) return done_now(kBlkSIoErr);
      }
      if (in_len == 0) return done_now(kBlkSOk);  // nothing to read: no backend call
      r->buf.resize(in_len);
      r->charged = in_len;
      bytes_in_flight_ += in_len;
      r->used_len = uint32_t(in_len + 1);
      io_->read(r->buf.data(), in_len, sector * kSector, cb);
      return;
    }
    case kBlkTOut: {
      if (opt_.read_only) return done_now(kBlkSIoErr);  // 5.2.6.2: VIRTIO_BLK_F_RO
      if (out_len % kSector || out_len > kMaxRequestBytes || !in_range(sector, out_len)) return done_now(kBlkSIoErr);
      if (out_len == 0) return done_now(kBlkSOk);
      r->buf.resize(out_len);
      r->charged = out_len;
      bytes_in_flight_ += out_len;
      if (!copy_segments(mem, r->segs, false, kHeaderLen, r->buf.data(), out_len, false)) return done_now(kBlkSIoErr);
      io_->write(r->buf.data(), out_len, sector * kSector, cb);
      return;
    }
    case kBlkTFlush:
      io_->flush(cb);
      return;
    case kBlkTGetId: {
      // 5.2.6: 20 bytes, NUL-padded; not NUL-terminated when 20 long.
      uint8_t id[kBlkIdBytes] = {};
      std::memcpy(id, opt_.serial.data(), std::min<size_t>(opt_.serial.size(), kBlkIdBytes));
      uint64_t n = std::min<uint64_t>(in_len, kBlkIdBytes);
      if (!copy_segments(mem, r->segs, true, 0, id, n, true)) return done_now(kBlkSIoErr);
      r->used_len = uint32_t(n + 1);
      return done_now(kBlkSOk);
    }
    case kBlkTDiscard:
    case kBlkTWriteZeroes: {
      if (opt_.read_only) return done_now(kBlkSIoErr);
      if (out_len == 0 || out_len % kDwzSegLen || out_len / kDwzSegLen > kMaxDiscardSeg) return done_now(kBlkSIoErr);
      struct Seg {
        uint64_t sector;
        uint32_t num, flags;
      };
      std::vector<Seg> segs(out_len / kDwzSegLen);
      if (!copy_segments(mem, r->segs, false, kHeaderLen, reinterpret_cast<uint8_t*>(segs.data()), out_len, false)) {
        return done_now(kBlkSIoErr);
      }
      for (const auto& s : segs) {
        // 5.2.6.2: reserved flag bits, or unmap on a discard, are UNSUPP.
        if ((s.flags & ~kDwzUnmap) || (r->type == kBlkTDiscard && (s.flags & kDwzUnmap))) return done_now(kBlkSUnsupp);
        if (s.num > kMaxDiscardSectors || !in_range(s.sector, uint64_t(s.num) * kSector)) return done_now(kBlkSIoErr);
      }
      r->parts.store(int(segs.size()));
      for (const auto& s : segs) {
        if (r->type == kBlkTDiscard) {
          io_->discard(s.sector * kSector, uint64_t(s.num) * kSector, cb);
        } else {
          io_->write_zeroes(s.sector * kSector, uint64_t(s.num) * kSector, cb);
        }
      }
      return;
    }
    default:
      return done_now(kBlkSUnsupp);
  }
}

void VirtioBlk::finish(std::shared_ptr<Request> r) {
  // On an I/O thread (a BlockQueue callback): take the transport lock.
  std::lock_guard g(transport_->lock());
  complete(*r);
  start_deferred();
}

void VirtioBlk::reset() {
  VirtioDevice::reset();
  // Chains the driver gave before the reset are void (requests already
  // running finish without touching guest memory: their epoch is old).
  deferred_.clear();
}

void VirtioBlk::start_deferred() {
  while (!deferred_.empty() && bytes_in_flight_ < kMaxBytesInFlight) {
    Deferred d = std::move(deferred_.front());
    deferred_.pop_front();
    if (d.q >= 0) start(d.q, d.chain);
  }
}

void VirtioBlk::complete(Request& req) {
  Request* r = &req;
  bytes_in_flight_ -= r->charged;
  r->charged = 0;
  if (r->epoch != transport_->epoch()) return;  // the device was reset meanwhile
  const GuestMemory& mem = transport_->memory();
  uint8_t status = r->status;
  if (status == kBlkSOk && r->error.load()) status = kBlkSIoErr;
  if (status == kBlkSOk && r->type == kBlkTIn &&
      !copy_segments(mem, r->segs, true, 0, r->buf.data(), r->buf.size(), true)) {
    status = kBlkSIoErr;
  }
  uint32_t used = status == kBlkSOk ? r->used_len : 1;
  SplitQueue& vq = transport_->queue(r->q);
  if (!mem.write(r->status_gpa, &status, 1) || !vq.push(mem, r->head, used)) {
    transport_->set_needs_reset("virtio-blk used ring or status byte outside guest RAM");
    return;
  }
  transport_->signal_used(r->q);
}

void VirtioBlk::save_device(state::StateWriter&) const {
  size_t n = io_->in_flight() + deferred_.size();
  if (n) throw state::StateError("virtio-blk: " + std::to_string(n) + " requests still in flight; pause the machine first");
}

}  // namespace vireo::virtio
