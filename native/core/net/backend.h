// A network backend: where a NIC's Ethernet frames go and come from. The NIC
// model (virtio-net now; e1000 later) knows nothing of slirp, TAP or a
// switch; it hands whole frames to send() and gets whole frames through the
// receiver it installed with start().
//
// Threading: send() may be called from any thread (a vCPU, a notify thread)
// while the caller holds the NIC's own lock, so a backend must not call the
// receiver from inside send(): frames for the guest are delivered from the
// backend's own thread. The receiver must not call back into the backend
// synchronously either.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/dhcp.h"

namespace vireo::net {

class NetError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Ethernet frame limits (without FCS). Frames from a guest outside
// [kMinFrame, kMaxFrame] are malformed.
constexpr size_t kEthHeader = 14, kMinFrame = kEthHeader, kMaxFrame = 65535 + kEthHeader;

class NetBackend {
public:
  // A frame for the guest. Called on the backend's thread.
  using Receiver = std::function<void(std::span<const uint8_t> frame)>;

  virtual ~NetBackend() = default;
  // Starts the backend's thread; frames for the guest go to `rx` from then on.
  virtual void start(Receiver rx) = 0;
  // Stops the thread; no receiver call happens after it returns. Idempotent.
  virtual void stop() = 0;
  // A frame from the guest (copied; the caller keeps its buffer). False when
  // the backend dropped it (its queue is full, it is stopped).
  virtual bool send(std::span<const uint8_t> frame) = 0;
  // "user", "tap"...: for messages.
  virtual std::string kind() const = 0;
  // Optional: poll `efd` (the NIC's transmit-queue notification eventfd) on
  // the backend's own thread and call `kick` there when it fires, so the
  // guest's frames go from the ring into the backend on one thread with no
  // hand-over (QEMU's main loop runs virtio-net's transmit and slirp alike).
  // `kick` runs with the NIC's lock taken and calls send() on this thread;
  // frames for the guest the backend makes meanwhile (an ACK for a segment)
  // go to `locked_rx`, which expects that lock taken, so the guest sees them
  // at once, as QEMU delivers them within its transmit loop. False: the
  // backend has no such loop (the caller's thread keeps the kicks). Before start().
  virtual bool run_kicks(int efd, std::function<void()> kick, Receiver locked_rx) {
    (void)efd;
    (void)kick;
    (void)locked_rx;
    return false;
  }
  // The DHCP leases this backend's own server handed out (user-mode NAT),
  // unexpired; none for backends without one (a switch reports its own).
  virtual std::vector<DhcpLease> leases() const { return {}; }
};

}  // namespace vireo::net
