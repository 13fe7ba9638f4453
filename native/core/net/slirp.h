// User-mode NAT through libslirp (the library behind QEMU's -nic user): the
// guest sits on 10.0.2.0/24 with DHCP handing out 10.0.2.15 (first lease),
// the gateway (and the host's loopback) at 10.0.2.2, DNS at 10.0.2.3, as
// QEMU's defaults; IPv6 on fec0::/64 likewise. Host→guest port forwards are
// listening sockets in this process. No root, no host interfaces.
//
// Threading: libslirp is not thread-safe, so every slirp_* call happens on
// this backend's one poll thread (or in the constructor, before it starts).
// send() only queues the frame and wakes that thread; slirp's timers are kept
// here and fired from the same loop.
#pragma once
#include <poll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/backend.h"
#include "net/dhcp.h"

struct Slirp;

namespace vireo::net {

struct HostForward {
  bool udp = false;
  std::string host_addr;  // "" = every host address (0.0.0.0), as QEMU's hostfwd=tcp::2222-:22
  uint16_t host_port = 0;
  std::string guest_addr;  // "" = the first DHCP address (10.0.2.15)
  uint16_t guest_port = 0;
};

struct SlirpOptions {
  // The guest's IPv4 network (dotted quads; "" = QEMU's defaults): `network`
  // with `prefix` bits, the gateway/host address slirp answers on (`host`,
  // default .2), the first address DHCP hands out (`dhcp_start`, default .15;
  // libslirp leases up to 16 addresses from there) and slirp's DNS proxy
  // (`dns`, default .3). host, dhcp_start and dns must lie inside the network
  // and be neither its network nor its broadcast address (QEMU's net=, host=,
  // dhcpstart=, dns= of -netdev user).
  std::string network;
  int prefix = 24;
  std::string host, dhcp_start, dns;
  // Keep the guest off the outside world and the host: only slirp's own
  // services (DHCP, DNS) and the port forwards work (QEMU's restrict=on).
  bool restrict = false;
  std::vector<HostForward> hostfwd;
};

// "tcp:127.0.0.1:2222-:22" / "udp::5353-10.0.2.15:53" (QEMU's hostfwd syntax,
// protocol optional = tcp). Throws NetError saying what is wrong.
HostForward parse_hostfwd(const std::string& spec);

// The addresses a SlirpOptions stands for, checked (throws NetError naming the
// bad one): network, netmask, host, dhcp_start, dns in network byte order.
struct SlirpAddrs {
  uint32_t network, netmask, host, dhcp_start, dns;
};
SlirpAddrs slirp_addrs(const SlirpOptions& o);

class SlirpBackend : public NetBackend {
public:
  // Throws NetError for a forward whose host port cannot be bound (taken,
  // privileged) or an address that is not an IPv4 address.
  explicit SlirpBackend(SlirpOptions opt);
  ~SlirpBackend() override;

  void start(Receiver rx) override;
  void stop() override;
  bool send(std::span<const uint8_t> frame) override;
  bool run_kicks(int efd, std::function<void()> kick, Receiver locked_rx) override;
  std::string kind() const override { return "user"; }

  std::vector<DhcpLease> leases() const override;

  // Guest misbehaviour slirp reported (malformed packets it dropped).
  uint64_t guest_errors() const { return guest_errors_.load(); }

  struct Timer;  // slirp's timers (public for the C callbacks)
  struct Cb;

private:
  void run();
  void wake();

  SlirpOptions opt_;
  Slirp* slirp_ = nullptr;
  Receiver rx_;
  std::thread thread_;
  int wake_fd_ = -1;
  std::atomic<bool> quit_{false};
  // run_kicks(): the NIC's transmit eventfd and what a kick runs. While it
  // runs (in_kick_, this thread only), send() feeds slirp directly and
  // frames slirp makes for the guest go to kick_rx_ (the NIC's lock is held).
  int kick_fd_ = -1;
  std::function<void()> kick_;
  Receiver kick_rx_;
  bool in_kick_ = false;
  std::atomic<std::thread::id> thread_id_{};
  std::mutex tx_mu_;
  std::vector<std::vector<uint8_t>> tx_;  // frames from the guest waiting for the poll thread
  size_t tx_bytes_ = 0;
  std::vector<std::unique_ptr<Timer>> timers_;
  std::vector<::pollfd>* pollfds_ = nullptr;  // during one loop iteration
  std::atomic<uint64_t> guest_errors_{0};
  LeaseWatch leases_;  // what slirp's DHCP server handed out (it does not say)
};

}  // namespace vireo::net
