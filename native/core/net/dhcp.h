// DHCP (RFC 2131) messages as Vireo's networks see them: one parser for the
// isolated switch's server (net/switch) and for watching the leases that
// libslirp's built-in server hands out on a NAT network (LeaseWatch), which
// libslirp keeps to itself. Parsing takes whole Ethernet frames.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace vireo::net {

using Mac = std::array<uint8_t, 6>;

// The magic cookie after BOOTP's fixed part (kBootpFixed bytes), before the options.
constexpr uint32_t kDhcpMagic = 0x63825363;
constexpr size_t kBootpFixed = 236;

// Message types (option 53).
enum : uint8_t { kDhcpDiscover = 1, kDhcpOffer = 2, kDhcpRequest = 3, kDhcpDecline = 4, kDhcpAck = 5, kDhcpNak = 6, kDhcpRelease = 7, kDhcpInform = 8 };

struct DhcpMessage {
  uint8_t op = 0;    // 1 BOOTREQUEST, 2 BOOTREPLY
  uint8_t type = 0;  // option 53; 0 when absent (plain BOOTP)
  uint32_t xid = 0;
  uint16_t flags = 0;
  uint32_t ciaddr = 0, yiaddr = 0;  // host byte order, as every address here
  Mac chaddr{};
  uint32_t requested = 0;  // option 50
  uint32_t server_id = 0;  // option 54
  uint32_t lease_s = 0;    // option 51; 0 when absent
  std::string hostname;    // option 12, only [A-Za-z0-9._-] kept
  // The BOOTP part (from `op`), for a server building its reply.
  std::span<const uint8_t> bootp;
};

enum class DhcpParse {
  NotDhcp,    // not IPv4/UDP to or from the DHCP ports (or a fragment)
  Malformed,  // to/from the ports but not a well-formed Ethernet DHCP message
  Ok,
};

// `to_port` is 67 for client → server messages, 68 for server → client.
DhcpParse parse_dhcp(std::span<const uint8_t> frame, uint16_t to_port, DhcpMessage& out);

struct DhcpLease {
  Mac mac{};
  uint32_t ip = 0;       // host byte order
  int64_t expires = 0;   // CLOCK_REALTIME seconds
  std::string hostname;  // option 12, when the client sent one
};

// The leases a DHCP server (libslirp's) hands out, learnt from the frames that
// pass between it and the guest: a DHCPACK with an address (yiaddr) to a
// client MAC makes or renews that MAC's lease for the ACK's lease time
// (option 51; a day when absent), a NAK or the client's RELEASE ends it. The
// hostname comes from the client's DISCOVER/REQUEST. Safe from any thread.
class LeaseWatch {
public:
  void from_guest(std::span<const uint8_t> frame);
  void to_guest(std::span<const uint8_t> frame);
  // Leases not yet expired at `now` (CLOCK_REALTIME seconds).
  std::vector<DhcpLease> leases(int64_t now) const;

private:
  mutable std::mutex mu_;
  std::vector<DhcpLease> leases_;
  std::vector<std::pair<Mac, std::string>> hostnames_;  // by client MAC, from its requests
};

}  // namespace vireo::net
