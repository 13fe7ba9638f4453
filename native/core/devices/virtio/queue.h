// A split virtqueue (virtio 1.2, 2.7) as the device side sees it: the
// descriptor table, the available ring (driver area) and the used ring
// (device area) in guest memory. It knows nothing of PCI or of the device
// type; the transport programs its State, the device pops chains and pushes
// completions.
//
// Nothing the guest writes can make it crash: every descriptor is copied out
// of guest memory before it is looked at, chains are bounded by the queue
// size (which catches loops), and every address is checked against guest RAM.
// A chain that breaks the rules makes pop() return Broken; the device then
// sets DEVICE_NEEDS_RESET (2.1.2). So does a head made available again while
// the device still holds it (2.7.13: the driver may reuse a buffer only once
// the device has used it): each head is in flight at most once, so a guest
// cannot make the device start unbounded work by re-posting the same chain.
//
// Not thread-safe: the owning device serialises calls with its own lock.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "machine/guest_memory.h"

namespace vireo::virtio {

class SplitQueue {
public:
  // Plain, versioned state for save/restore.
  struct State {
    static constexpr uint32_t kVersion = 1;
    uint16_t size = 0;         // as the driver set it (queue_size)
    bool ready = false;        // queue_enable
    uint16_t msix_vector = 0xffff;
    uint64_t desc = 0, avail = 0, used = 0;  // guest-physical addresses
    uint16_t last_avail = 0;   // next avail ring slot the device will read
    uint16_t used_idx = 0;     // device's copy of used->idx
    uint16_t signalled_used = 0;  // used_idx at the last interrupt decision
  };

  struct Segment {
    uint64_t gpa;
    uint32_t len;
    bool writable;
  };
  struct Chain {
    uint16_t head = 0;
    std::vector<Segment> segs;
    uint64_t readable_len = 0, writable_len = 0;
  };
  enum class Pop { Empty, Ok, Broken };

  explicit SplitQueue(uint16_t max_size) : max_size_(max_size), in_flight_(max_size) { reset(); }
  void reset();
  uint16_t max_size() const { return max_size_; }

  // Negotiated features that change the ring format / rules.
  bool event_idx = false;
  bool indirect = false;

  // Takes the next available chain. Broken: the chain (or the rings) break
  // the spec's rules; `why` says how. The chain's head is consumed either way.
  Pop pop(const GuestMemory& mem, Chain& out, std::string* why = nullptr);
  // Puts `head` on the used ring with `len` bytes written (and gives the head
  // back to the driver). False when the used ring is not in guest RAM.
  bool push(const GuestMemory& mem, uint16_t head, uint32_t len);
  // Chains popped and not yet pushed.
  uint32_t heads_in_flight() const { return in_flight_count_; }
  // Puts several chains on the used ring and publishes them with one index
  // update, so the driver sees all or none of them (virtio-net's mergeable
  // receive buffers: one frame over several chains).
  struct Used {
    uint16_t head;
    uint32_t len;
  };
  bool push_all(const GuestMemory& mem, const std::vector<Used>& elems);
  // Gives back the chains with these heads, the last ones pop() returned,
  // in the order popped: they become available again, as if never taken
  // (virtio-net, when a frame needs more receive buffers than are there).
  void unpop(const std::vector<uint16_t>& heads);
  // After one or more push(): should the driver be interrupted? (2.7.7,
  // 2.7.10 with VIRTIO_F_EVENT_IDX.) Records the decision point.
  bool needs_interrupt(const GuestMemory& mem);
  // With EVENT_IDX: publish avail_event = last_avail, so the driver notifies
  // on the next buffer. Then true if more buffers arrived meanwhile.
  bool enable_notification(const GuestMemory& mem);
  // Buffers available that pop() has not taken yet.
  bool has_available(const GuestMemory& mem) const;

  State s;

private:
  bool avail_idx(const GuestMemory& mem, uint16_t& idx) const;
  uint16_t max_size_;
  // Heads the device holds (popped, not pushed), by descriptor index.
  std::vector<bool> in_flight_;
  uint32_t in_flight_count_ = 0;
};

}  // namespace vireo::virtio
