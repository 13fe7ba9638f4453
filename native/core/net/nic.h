// What the board and the binding see of a network card, whatever its model
// (virtio-net, e1000): link up/down from the host, counters, and stopping
// its backend before the board goes away.
#pragma once
#include <cstdint>

namespace vireo::net {

struct NicCounters {
  uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0;
  uint64_t tx_packets = 0, tx_bytes = 0, tx_dropped = 0;
  uint64_t tx_malformed = 0;    // frames or descriptors from the guest that broke the rules
  uint64_t rx_bad_buffers = 0;  // receive buffers or rings the guest got wrong (outside RAM...)
};

class Nic {
public:
  virtual ~Nic() = default;
  // A cable plugged or pulled: the guest is told (model-specific interrupt).
  virtual void set_link(bool up) = 0;
  virtual bool link_up() const = 0;
  virtual NicCounters counters() const = 0;
  // Stops the backend: no frame arrives after it returns. Idempotent.
  virtual void quiesce() = 0;
  // The machine is paused (or not started): frames from the backend wait in
  // the card's receive backlog (bounded as usual, the excess dropped) and
  // nothing touches guest memory or raises an interrupt; unpausing delivers
  // what waits, as QEMU queues packets for a stopped VM.
  virtual void set_paused(bool paused) = 0;
};

}  // namespace vireo::net
