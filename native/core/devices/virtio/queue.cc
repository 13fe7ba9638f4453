// Split virtqueue, device side (virtio 1.2, 2.7).
#include "devices/virtio/queue.h"

#include <atomic>

#include "devices/virtio/virtio.h"

namespace vireo::virtio {

namespace {

// 2.7.5 struct virtq_desc.
struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == 16);

// Ring offsets: avail {le16 flags; le16 idx; le16 ring[N]; le16 used_event},
// used {le16 flags; le16 idx; {le32 id; le32 len} ring[N]; le16 avail_event}.
constexpr uint64_t kRingIdx = 2, kRingHdr = 4;

bool fail(std::string* why, const char* msg) {
  if (why) *why = msg;
  return false;
}

// The ring index fields are shared with the guest's vCPUs: access them as
// atomics (they are naturally aligned: the transport requires 2-byte avail
// and 4-byte used alignment, 2.7.2).
uint16_t load16(uint8_t* p) { return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(std::memory_order_acquire); }
void store16(uint8_t* p, uint16_t v) {
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, std::memory_order_release);
}

// 2.7.10.1: vring_need_event.
bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
  return uint16_t(new_idx - event - 1) < uint16_t(new_idx - old_idx);
}

}  // namespace

void SplitQueue::reset() {
  s = State{};
  s.size = max_size_;
  in_flight_.assign(max_size_, false);
  in_flight_count_ = 0;
}

bool SplitQueue::avail_idx(const GuestMemory& mem, uint16_t& idx) const {
  if (s.avail & 1) return false;
  uint8_t* p = mem.ptr(s.avail + kRingIdx, 2);
  if (!p) return false;
  idx = load16(p);
  return true;
}

bool SplitQueue::has_available(const GuestMemory& mem) const {
  uint16_t idx;
  return s.ready && avail_idx(mem, idx) && idx != s.last_avail;
}

SplitQueue::Pop SplitQueue::pop(const GuestMemory& mem, Chain& out, std::string* why) {
  out.segs.clear();
  out.readable_len = out.writable_len = 0;
  if (!s.ready) return Pop::Empty;
  uint16_t size = s.size;
  if (size == 0 || size > max_size_ || (size & (size - 1))) return fail(why, "queue size is not a power of two"), Pop::Broken;
  uint16_t idx;
  if (!avail_idx(mem, idx)) return fail(why, "available ring outside guest RAM or misaligned"), Pop::Broken;
  if (idx == s.last_avail) return Pop::Empty;
  // More entries than the ring holds: the driver's index is garbage (2.7.13.3).
  if (uint16_t(idx - s.last_avail) > size) return fail(why, "available index ran more than a ring ahead"), Pop::Broken;
  std::atomic_thread_fence(std::memory_order_acquire);
  uint16_t head;
  if (!mem.read_obj(s.avail + kRingHdr + 2ull * (s.last_avail % size), head)) {
    return fail(why, "available ring outside guest RAM"), Pop::Broken;
  }
  s.last_avail++;
  out.head = head;
  if (head >= size) return fail(why, "chain head past the descriptor table"), Pop::Broken;
  if (in_flight_[head]) return fail(why, "chain head made available again while the device still holds it"), Pop::Broken;

  // Walk the chain. `table`/`table_len` is the descriptor table being walked:
  // the queue's, or an indirect one. The total number of descriptors is
  // bounded by the queue size (2.7.5.3.1: a chain is never longer), which
  // also ends any loop.
  uint64_t table = s.desc;
  uint32_t table_len = size;
  uint32_t i = head;
  uint32_t seen = 0;
  bool in_indirect = false, seen_writable = false;
  for (;;) {
    if (i >= table_len) return fail(why, "next descriptor index out of range"), Pop::Broken;
    if (++seen > size) return fail(why, "descriptor chain longer than the queue (a loop?)"), Pop::Broken;
    Desc d;
    if (!mem.read_obj(table + 16ull * i, d)) return fail(why, "descriptor table outside guest RAM"), Pop::Broken;
    if (d.flags & kDescIndirect) {
      // 2.7.5.3.1: only with the feature, never nested, never with NEXT,
      // a whole number of descriptors.
      if (!indirect) return fail(why, "indirect descriptor without VIRTIO_F_INDIRECT_DESC"), Pop::Broken;
      if (in_indirect) return fail(why, "nested indirect descriptor"), Pop::Broken;
      if (d.flags & kDescNext) return fail(why, "indirect descriptor with NEXT set"), Pop::Broken;
      if (d.len == 0 || d.len % 16) return fail(why, "indirect table length not a multiple of 16"), Pop::Broken;
      if (d.len / 16 > size) return fail(why, "indirect table longer than the queue"), Pop::Broken;
      if (!mem.ptr(d.addr, d.len)) return fail(why, "indirect table outside guest RAM"), Pop::Broken;
      table = d.addr;
      table_len = d.len / 16;
      in_indirect = true;
      seen = 0;
      i = 0;
      continue;
    }
    bool w = d.flags & kDescWrite;
    // 2.7.4.2: device-readable descriptors come before device-writable ones.
    if (!w && seen_writable) return fail(why, "readable descriptor after a writable one"), Pop::Broken;
    seen_writable |= w;
    if (d.len) {
      out.segs.push_back({d.addr, d.len, w});
      (w ? out.writable_len : out.readable_len) += d.len;
    }
    if (!(d.flags & kDescNext)) break;
    i = d.next;
  }
  in_flight_[head] = true;
  in_flight_count_++;
  return Pop::Ok;
}

bool SplitQueue::push(const GuestMemory& mem, uint16_t head, uint32_t len) {
  uint16_t size = s.size;
  if (size == 0 || (s.used & 3)) return false;
  uint8_t* idxp = mem.ptr(s.used + kRingIdx, 2);
  uint64_t elem = s.used + kRingHdr + 8ull * (s.used_idx % size);
  uint32_t e[2] = {head, len};
  if (!idxp || !mem.write(elem, e, sizeof e)) return false;
  // The element must be visible before the index that publishes it (2.7.8.2).
  s.used_idx++;
  store16(idxp, s.used_idx);
  if (head < in_flight_.size() && in_flight_[head]) {
    in_flight_[head] = false;
    in_flight_count_--;
  }
  return true;
}

bool SplitQueue::push_all(const GuestMemory& mem, const std::vector<Used>& elems) {
  uint16_t size = s.size;
  if (size == 0 || (s.used & 3)) return false;
  uint8_t* idxp = mem.ptr(s.used + kRingIdx, 2);
  if (!idxp) return false;
  uint16_t idx = s.used_idx;
  for (const Used& u : elems) {
    uint32_t e[2] = {u.head, u.len};
    if (!mem.write(s.used + kRingHdr + 8ull * (idx % size), e, sizeof e)) return false;
    idx++;
  }
  s.used_idx = idx;
  store16(idxp, idx);
  for (const Used& u : elems) {
    if (u.head < in_flight_.size() && in_flight_[u.head]) {
      in_flight_[u.head] = false;
      in_flight_count_--;
    }
  }
  return true;
}

void SplitQueue::unpop(const std::vector<uint16_t>& heads) {
  for (uint16_t h : heads) {
    if (h < in_flight_.size() && in_flight_[h]) {
      in_flight_[h] = false;
      in_flight_count_--;
    }
  }
  s.last_avail = uint16_t(s.last_avail - heads.size());
}

bool SplitQueue::needs_interrupt(const GuestMemory& mem) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // (old, now] is what was added since the last decision.
  uint16_t old = s.signalled_used, now = s.used_idx;
  s.signalled_used = now;
  if (old == now) return false;
  if (event_idx) {
    uint16_t used_event;
    if (!mem.read_obj(s.avail + kRingHdr + 2ull * s.size, used_event)) return true;
    return need_event(used_event, now, old);
  }
  uint16_t flags;
  if (!mem.read_obj(s.avail, flags)) return true;
  return !(flags & kAvailNoInterrupt);
}

bool SplitQueue::enable_notification(const GuestMemory& mem) {
  if (event_idx) {
    uint8_t* p = mem.ptr(s.used + kRingHdr + 8ull * s.size, 2);
    if (p && !(s.used & 1)) store16(p, s.last_avail);
  }
  // Order the avail_event store before re-reading avail->idx (2.7.10).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return has_available(mem);
}

}  // namespace vireo::virtio
