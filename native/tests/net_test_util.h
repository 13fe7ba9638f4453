// Shared by the NIC tests (virtio_net_test, e1000_test): the test plays the
// guest's network stack with a tiny Ethernet/ARP/IPv4/UDP/TCP frame builder
// and parser, a fake backend it feeds directly, a TCP listener on the host's
// loopback and a libslirp backend. `Driver` in the templates is any test
// driver with send(Bytes) and wait_for(pred, ms) -> Bytes (empty: timeout).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "check.h"
#include "net/backend.h"
#include "net/slirp.h"

namespace nettest {

using vireo::net::NetBackend;
using Bytes = std::vector<uint8_t>;
using MacAddr = std::array<uint8_t, 6>;
namespace net = vireo::net;

const MacAddr kGuestMac{0x52, 0x54, 0x00, 0xab, 0xcd, 0x01};

// ------------------------------------------------------------ fake backend

struct FakeBackend : NetBackend {
  std::mutex mu;
  std::vector<Bytes> sent;
  Receiver rx;
  bool refuse = false;
  void start(Receiver r) override { rx = std::move(r); }
  void stop() override {}
  bool send(std::span<const uint8_t> f) override {
    std::lock_guard g(mu);
    if (refuse) return false;
    sent.emplace_back(f.begin(), f.end());
    return true;
  }
  std::string kind() const override { return "fake"; }
  void inject(const Bytes& f) { rx(f); }
  size_t nsent() {
    std::lock_guard g(mu);
    return sent.size();
  }
};

// ------------------------------------------------------------ frames

struct Ip4 {
  uint8_t b[4];
};
const Ip4 kGuestIp{{10, 0, 2, 15}}, kGwIp{{10, 0, 2, 2}}, kAny{{0, 0, 0, 0}}, kBcast{{255, 255, 255, 255}};
const MacAddr kBcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void put16(Bytes& v, size_t at, uint16_t x) {
  v[at] = uint8_t(x >> 8);
  v[at + 1] = uint8_t(x);
}
void put32(Bytes& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; i++) v[at + size_t(i)] = uint8_t(x >> (24 - 8 * i));
}
uint16_t get16(const Bytes& v, size_t at) { return uint16_t(v[at] << 8 | v[at + 1]); }
uint32_t get32(const Bytes& v, size_t at) {
  return uint32_t(v[at]) << 24 | uint32_t(v[at + 1]) << 16 | uint32_t(v[at + 2]) << 8 | v[at + 3];
}
uint32_t sum16(const uint8_t* p, size_t n, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t(p[i]) << 8 | p[i + 1];
  if (n & 1) s += uint32_t(p[n - 1]) << 8;
  return s;
}
uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(s);
}

Bytes eth(const MacAddr& dst, const MacAddr& src, uint16_t type, const Bytes& payload) {
  Bytes f(14);
  std::memcpy(f.data(), dst.data(), 6);
  std::memcpy(f.data() + 6, src.data(), 6);
  put16(f, 12, type);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}
Bytes arp_request(const Ip4& sender, const Ip4& target) {
  Bytes a(28, 0);
  put16(a, 0, 1);
  put16(a, 2, 0x0800);
  a[4] = 6;
  a[5] = 4;
  put16(a, 6, 1);
  std::memcpy(a.data() + 8, kGuestMac.data(), 6);
  std::memcpy(a.data() + 14, sender.b, 4);
  std::memcpy(a.data() + 24, target.b, 4);
  return eth(kBcastMac, kGuestMac, 0x0806, a);
}
// IPv4 packet with a correct header checksum; `l4` already built.
Bytes ipv4(const Ip4& src, const Ip4& dst, uint8_t proto, const Bytes& l4) {
  Bytes p(20, 0);
  p[0] = 0x45;
  put16(p, 2, uint16_t(20 + l4.size()));
  put16(p, 4, 0x1234);
  p[8] = 64;
  p[9] = proto;
  std::memcpy(p.data() + 12, src.b, 4);
  std::memcpy(p.data() + 16, dst.b, 4);
  put16(p, 10, uint16_t(~fold(sum16(p.data(), 20))));
  p.insert(p.end(), l4.begin(), l4.end());
  return p;
}
uint32_t pseudo(const Ip4& src, const Ip4& dst, uint8_t proto, size_t len) {
  uint32_t s = sum16(src.b, 4) + sum16(dst.b, 4);
  return s + proto + uint32_t(len);
}
Bytes udp(const Ip4& src, const Ip4& dst, uint16_t sport, uint16_t dport, const Bytes& data) {
  Bytes u(8, 0);
  put16(u, 0, sport);
  put16(u, 2, dport);
  put16(u, 4, uint16_t(8 + data.size()));
  u.insert(u.end(), data.begin(), data.end());
  uint16_t c = uint16_t(~fold(sum16(u.data(), u.size(), pseudo(src, dst, 17, u.size()))));
  put16(u, 6, c ? c : 0xffff);
  return u;
}
constexpr uint8_t kFin = 1, kSyn = 2, kRst = 4, kPsh = 8, kAck = 16;
// TCP segment. partial: the checksum field holds only the pseudo-header sum
// (what a driver hands over with VIRTIO_NET_HDR_F_NEEDS_CSUM).
Bytes tcp(const Ip4& src, const Ip4& dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
          const Bytes& data, bool partial = false) {
  Bytes t(20, 0);
  put16(t, 0, sport);
  put16(t, 2, dport);
  put32(t, 4, seq);
  put32(t, 8, ack);
  t[12] = 5 << 4;
  t[13] = flags;
  put16(t, 14, 65535);
  t.insert(t.end(), data.begin(), data.end());
  uint32_t ps = pseudo(src, dst, 6, t.size());
  put16(t, 16, partial ? fold(ps) : uint16_t(~fold(sum16(t.data(), t.size(), ps))));
  return t;
}
// A DHCP client message from the guest's MAC, broadcast from 0.0.0.0:
// `type` (option 53), with a requested address (50), server id (54), client
// address (ciaddr) and hostname (12) when given (addresses in network order
// as Ip4, zero = left out).
Bytes dhcp_client(uint32_t xid, uint8_t type, Ip4 requested = kAny, Ip4 server = kAny, const char* hostname = nullptr,
                  Ip4 ciaddr = kAny) {
  Bytes b(240, 0);
  b[0] = 1;  // BOOTREQUEST
  b[1] = 1;
  b[2] = 6;
  put32(b, 4, xid);
  std::memcpy(b.data() + 12, ciaddr.b, 4);
  std::memcpy(b.data() + 28, kGuestMac.data(), 6);
  put32(b, 236, 0x63825363);
  Bytes opts = {53, 1, type, 55, 3, 1, 3, 6};
  auto addr = [&](uint8_t code, const Ip4& a) {
    if (a.b[0] | a.b[1] | a.b[2] | a.b[3]) opts.insert(opts.end(), {code, 4, a.b[0], a.b[1], a.b[2], a.b[3]});
  };
  addr(50, requested);
  addr(54, server);
  if (hostname) {
    opts.push_back(12);
    opts.push_back(uint8_t(std::strlen(hostname)));
    opts.insert(opts.end(), hostname, hostname + std::strlen(hostname));
  }
  opts.push_back(255);
  b.insert(b.end(), opts.begin(), opts.end());
  return eth(kBcastMac, kGuestMac, 0x0800, ipv4(kAny, kBcast, 17, udp(kAny, kBcast, 68, 67, b)));
}
Bytes dhcp_discover(uint32_t xid) { return dhcp_client(xid, 1); }

// Received-frame views.
bool is_ipv4(const Bytes& f, uint8_t proto) { return f.size() >= 34 && get16(f, 12) == 0x0800 && f[23] == proto; }
size_t l4_off(const Bytes& f) { return 14 + size_t(f[14] & 0xf) * 4; }
bool l4_checksum_ok(const Bytes& f) {
  size_t ip = 14, l4 = l4_off(f);
  size_t len = get16(f, ip + 2) - (l4 - ip);
  Ip4 s, d;
  std::memcpy(s.b, f.data() + 26, 4);
  std::memcpy(d.b, f.data() + 30, 4);
  return fold(sum16(f.data() + l4, len, pseudo(s, d, f[23], len))) == 0xffff;
}
// A DHCP option's value from a reply (empty when absent).
Bytes dhcp_opt(const Bytes& f, uint8_t code) {
  size_t o = l4_off(f) + 8 + 240;
  while (o < f.size() && f[o] != 255) {
    if (f[o] == 0) {
      o++;
      continue;
    }
    if (o + 1 >= f.size()) break;
    uint8_t len = f[o + 1];
    if (f[o] == code) return Bytes(f.begin() + long(o + 2), f.begin() + long(std::min(f.size(), o + 2 + len)));
    o += 2 + len;
  }
  return {};
}
bool is_dhcp_reply(const Bytes& f, uint32_t xid) {
  if (!is_ipv4(f, 17)) return false;
  size_t u = l4_off(f);
  return f.size() >= u + 8 + 240 && get16(f, u) == 67 && get16(f, u + 2) == 68 && get32(f, u + 8 + 4) == xid;
}

// A TCP listener on 127.0.0.1, ephemeral port.
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    CHECK(::listen(fd, 4) == 0);
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
  int accept(int ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return -1;
    return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  }
};
uint16_t free_port() {
  Listener l;
  return l.port;
}

template <class Driver>
Bytes dhcp_exchange(Driver& d, uint32_t xid, int ms = 5000) {
  d.send(dhcp_discover(xid));
  return d.wait_for([&](const Bytes& f) { return is_dhcp_reply(f, xid); }, ms);
}

// ARP for the gateway; returns slirp's MAC for it.
template <class Driver>
MacAddr arp_gateway(Driver& d) {
  d.send(arp_request(kGuestIp, kGwIp));
  Bytes r = d.wait_for([](const Bytes& f) {
    return f.size() >= 42 && get16(f, 12) == 0x0806 && get16(f, 20) == 2 && std::memcmp(f.data() + 28, kGwIp.b, 4) == 0;
  });
  CHECK(!r.empty());
  MacAddr m;
  std::memcpy(m.data(), r.data() + 22, 6);
  return m;
}

// A host port forward to the guest's port 22, end to end: a host client
// connects to 127.0.0.1:`port`, the guest (the driver `d`, whose NIC has
// ARPed the gateway) sees slirp's SYN, answers it with `guest_iss`, sends a
// banner, and the host client reads it.
template <class Driver>
void check_port_forward_to_guest(Driver& d, uint16_t port, uint32_t guest_iss) {
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  int r = ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
  CHECK(r == 0 || errno == EINPROGRESS);
  Bytes syn = d.wait_for([](const Bytes& f) {
    return is_ipv4(f, 6) && get16(f, l4_off(f) + 2) == 22 && (f[l4_off(f) + 13] & (kSyn | kAck)) == kSyn;
  });
  CHECK(!syn.empty());
  CHECK_EQ(std::memcmp(syn.data() + 30, kGuestIp.b, 4), 0);
  CHECK_EQ(std::memcmp(syn.data(), kGuestMac.data(), 6), 0);
  CHECK(l4_checksum_ok(syn));
  // The guest accepts and says something; the host side reads it.
  Ip4 from;
  std::memcpy(from.b, syn.data() + 26, 4);
  MacAddr gw;
  std::memcpy(gw.data(), syn.data() + 6, 6);
  uint16_t hport = get16(syn, l4_off(syn));
  uint32_t hseq = get32(syn, l4_off(syn) + 4);
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, from, 6, tcp(kGuestIp, from, 22, hport, guest_iss, hseq + 1, kSyn | kAck, {}))));
  Bytes ack = d.wait_for([&](const Bytes& f) {
    return is_ipv4(f, 6) && get16(f, l4_off(f) + 2) == 22 && (f[l4_off(f) + 13] & kAck) && get32(f, l4_off(f) + 8) == guest_iss + 1;
  });
  CHECK(!ack.empty());
  Bytes banner = {'S', 'S', 'H', '-', '2', '.', '0', '\n'};
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, from, 6, tcp(kGuestIp, from, 22, hport, guest_iss + 1, hseq + 1, kAck | kPsh, banner))));
  pollfd p{c, POLLIN, 0};
  CHECK_EQ(::poll(&p, 1, 5000), 1);
  char buf[16] = {};
  CHECK_EQ(::read(c, buf, sizeof buf), ssize_t(banner.size()));
  CHECK_EQ(std::string(buf, 8), std::string("SSH-2.0\n"));
  ::close(c);
}

std::shared_ptr<net::SlirpBackend> slirp(net::SlirpOptions o = {}) { return std::make_shared<net::SlirpBackend>(o); }


}  // namespace nettest
