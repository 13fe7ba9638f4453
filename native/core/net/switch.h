// An isolated virtual network: a learning Ethernet switch on a UNIX
// SOCK_SEQPACKET socket. Each engine NIC on the network (net::SocketBackend)
// connects to the socket and sends and receives whole Ethernet frames, one
// frame per packet; the switch learns which port each source MAC is behind
// and forwards a unicast frame to that port only, floods broadcast, multicast
// and unknown unicast to every other port (IEEE 802.1D's relay, without
// spanning tree: a port is one NIC, so there are no loops). Nothing leaves
// the switch: VMs on it reach each other and nothing else.
//
// It also answers DHCP (RFC 2131) for the network when DhcpConfig says so:
// leases by client MAC from a range, the server's own address (ARP answered),
// router and DNS options only when configured. Leases are kept in memory; the
// owner reads them with leases() (the manager shows a VM's address).
//
// Bounds: a port's queue is its socket's send buffer (the kernel's, bounded);
// a frame for a full port is dropped and counted, never waited for, so one
// slow VM cannot stall the others. Frames shorter than an Ethernet header,
// longer than kSwitchMaxFrame or with a multicast/zero source MAC are dropped
// and counted. Only processes of this UID may connect (SO_PEERCRED).
//
// Threading: one thread polls the listening socket and every port; the
// public methods are safe from any thread.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/backend.h"
#include "net/dhcp.h"

namespace vireo::net {

// A 1500-byte MTU frame with an 802.1Q tag: 14 + 4 + 1500 (no FCS).
constexpr size_t kSwitchMaxFrame = 1518;

struct DhcpConfig {
  bool enabled = false;
  // IPv4 addresses in host byte order. `server` is the DHCP server's own
  // address (its identifier; ARP for it is answered), inside the network.
  uint32_t server = 0, netmask = 0, range_start = 0, range_end = 0;
  uint32_t router = 0, dns = 0;  // 0 = the option is left out
  uint32_t lease_s = 3600;
};

struct SwitchOptions {
  std::string path;  // the socket; an old file there is replaced
  DhcpConfig dhcp;
  size_t max_ports = 64;
};

using SwitchLease = DhcpLease;

struct SwitchCounters {
  uint64_t frames = 0;             // frames received from ports
  uint64_t forwarded = 0;          // unicast to a learned port
  uint64_t flooded = 0;            // sent to every other port
  uint64_t dropped_malformed = 0;  // too short/long, bad source MAC
  uint64_t dropped_full = 0;       // a port's queue was full (per port and frame)
  uint64_t dhcp_replies = 0;       // OFFER/ACK/NAK sent
  uint64_t ports = 0;              // connected now
};

// Parses "A.B.C.D" into host byte order; throws NetError naming `what`.
uint32_t parse_ipv4(const std::string& s, const char* what);
std::string format_ipv4(uint32_t ip);

class Switch {
public:
  // Binds and listens (the file is made 0600), starts the thread. Throws
  // NetError (path too long, cannot bind, bad DHCP range).
  explicit Switch(SwitchOptions opt);
  ~Switch();
  Switch(const Switch&) = delete;
  Switch& operator=(const Switch&) = delete;

  // Closes every port and the socket (its file is removed). Idempotent.
  void stop();
  SwitchCounters counters() const;
  std::vector<SwitchLease> leases() const;
  const std::string& path() const { return opt_.path; }

  // The switch's own MAC (source of its DHCP and ARP replies).
  static constexpr Mac kOwnMac{0x02, 0x76, 0x69, 0x72, 0x65, 0x6f};

private:
  struct Port {
    int fd;
    uint64_t id;
  };
  void run();
  void on_frame(size_t from, const uint8_t* f, size_t n);
  void output(size_t to, const uint8_t* f, size_t n);
  bool dhcp(size_t from, const uint8_t* f, size_t n);  // true: the switch answered it
  bool arp(size_t from, const uint8_t* f, size_t n);
  void drop_port(size_t i);
  uint32_t pick_address(const Mac& mac, uint32_t requested, int64_t now);

  SwitchOptions opt_;
  int listen_fd_ = -1, wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> quit_{false};
  std::vector<Port> ports_;  // the thread's
  uint64_t next_port_id_ = 1;
  struct Learned {
    uint64_t port;
    int64_t seen;
  };
  std::unordered_map<uint64_t, Learned> macs_;  // the thread's
  mutable std::mutex mu_;                        // counters_, leases_
  SwitchCounters counters_;
  std::vector<SwitchLease> leases_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace vireo::net
