// The isolated network switch (net/switch.h) and its client backend
// (net/socket_backend.h): fake NIC clients on raw SEQPACKET sockets check
// learning, flooding, separation between networks, drops of malformed frames
// and the DHCP server; then virtio-net devices driven without a vCPU (as
// virtio_net_test does) on two switches: "Two VMs on one isolated network
// exchange frames; a third on another network sees none of them". Sockets
// live in a fresh temporary directory; nothing touches a host interface.

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "bus/bus.h"
#include "devices/pci/pci.h"
#include "devices/virtio/net/device.h"
#include "devices/virtio/pci_transport.h"
#include "devices/virtio/virtio.h"
#include "machine/guest_memory.h"
#include "net/socket_backend.h"
#include "net/switch.h"
#include "virtio_net_rig.h"

using namespace vireo;
using namespace vireo::virtio;
using Bytes = std::vector<uint8_t>;
using namespace virtio_net_rig;

namespace {

std::string tmpdir() {
  static std::string d = [] {
    char t[] = "/tmp/vireo-switch-test-XXXXXX";
    CHECK(::mkdtemp(t) != nullptr);
    static std::string keep = t;
    std::atexit([] { std::filesystem::remove_all(keep); });
    return std::string(t);
  }();
  return d;
}
std::string sock(const std::string& name) { return tmpdir() + "/" + name + ".sock"; }

// ------------------------------------------------------------ fake NIC clients

struct Client {
  int fd = -1;
  explicit Client(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strcpy(sa.sun_path, path.c_str());
    CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  }
  ~Client() { ::close(fd); }
  void send(const Bytes& f) { CHECK_EQ(::send(fd, f.data(), f.size(), 0), ssize_t(f.size())); }
  // The next frame within `ms`, or empty.
  Bytes recv(int ms = 1000) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return {};
    Bytes b(70000);
    ssize_t n = ::recv(fd, b.data(), b.size(), 0);
    if (n <= 0) return {};
    b.resize(size_t(n));
    return b;
  }
  bool quiet(int ms = 150) { return recv(ms).empty(); }
};

net::Mac mac(uint8_t last) { return {0x52, 0x54, 0x00, 0x00, 0x00, last}; }

Bytes frame(const net::Mac& dst, const net::Mac& src, uint16_t type = 0x88b5, size_t payload = 46, uint8_t fill = 0xa5) {
  Bytes f(14 + payload, fill);
  std::memcpy(f.data(), dst.data(), 6);
  std::memcpy(f.data() + 6, src.data(), 6);
  f[12] = uint8_t(type >> 8);
  f[13] = uint8_t(type);
  return f;
}
const net::Mac kBcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// Waits until the switch has accepted n ports (accept runs on its thread).
void wait_ports(net::Switch& sw, uint64_t n) {
  for (int i = 0; i < 200 && sw.counters().ports != n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK_EQ(sw.counters().ports, n);
}

TEST(unicast_after_learning_and_broadcast_flood) {
  net::Switch sw({sock("learn"), {}, 64});
  Client a(sw.path()), b(sw.path()), c(sw.path());
  wait_ports(sw, 3);
  // A → B before B has spoken: unknown unicast, flooded to B and C.
  a.send(frame(mac(2), mac(1), 0x88b5, 46, 1));
  CHECK_EQ(b.recv()[14], uint8_t(1));
  CHECK_EQ(c.recv()[14], uint8_t(1));
  CHECK(a.quiet());
  // B → A: A was learned, only A gets it.
  b.send(frame(mac(1), mac(2), 0x88b5, 46, 2));
  CHECK_EQ(a.recv()[14], uint8_t(2));
  CHECK(c.quiet());
  // A → B again: B is learned now.
  a.send(frame(mac(2), mac(1), 0x88b5, 46, 3));
  CHECK_EQ(b.recv()[14], uint8_t(3));
  CHECK(c.quiet());
  // Broadcast: everyone but the sender.
  c.send(frame(kBcast, mac(3), 0x88b5, 46, 4));
  CHECK_EQ(a.recv()[14], uint8_t(4));
  CHECK_EQ(b.recv()[14], uint8_t(4));
  CHECK(c.quiet());
  auto k = sw.counters();
  CHECK_EQ(k.frames, 4u);
  CHECK_EQ(k.forwarded, 2u);
  CHECK_EQ(k.flooded, 2u);
  CHECK_EQ(k.dropped_malformed, 0u);
}

TEST(a_client_on_another_network_sees_nothing) {
  net::Switch one({sock("one"), {}, 64}), two({sock("two"), {}, 64});
  Client a(one.path()), b(one.path()), d(two.path());
  wait_ports(one, 2);
  wait_ports(two, 1);
  a.send(frame(kBcast, mac(1)));
  a.send(frame(mac(2), mac(1)));
  CHECK(!b.recv().empty());
  CHECK(!b.recv().empty());
  CHECK(d.quiet(300));
  CHECK_EQ(two.counters().frames, 0u);
}

TEST(malformed_and_oversized_frames_are_dropped_and_counted) {
  net::Switch sw({sock("bad"), {}, 64});
  Client a(sw.path()), b(sw.path());
  wait_ports(sw, 2);
  a.send(Bytes(10, 0xff));                                        // shorter than an Ethernet header
  a.send(frame(kBcast, mac(1), 0x88b5, net::kSwitchMaxFrame));    // 14 bytes over the MTU frame
  a.send(frame(kBcast, {0x01, 0x00, 0x5e, 0, 0, 1}));              // multicast source
  a.send(frame(kBcast, {0, 0, 0, 0, 0, 0}));                       // zero source
  a.send(frame(kBcast, mac(1), 0x88b5, 65000));                   // far over (recv truncates)
  CHECK(b.quiet(300));
  auto k = sw.counters();
  CHECK_EQ(k.frames, 5u);
  CHECK_EQ(k.dropped_malformed, 5u);
  // The switch still works, and the largest allowed frame passes whole.
  a.send(frame(kBcast, mac(1), 0x88b5, net::kSwitchMaxFrame - 14));
  CHECK_EQ(b.recv().size(), net::kSwitchMaxFrame);
}

TEST(a_full_port_drops_and_counts_instead_of_blocking) {
  net::Switch sw({sock("full"), {}, 64});
  Client a(sw.path()), b(sw.path()), c(sw.path());  // c never reads
  wait_ports(sw, 3);
  int n = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sw.counters().dropped_full == 0 && std::chrono::steady_clock::now() < deadline) {
    a.send(frame(kBcast, mac(1), 0x88b5, 1400));
    n++;
    while (!b.recv(0).empty()) {
    }
  }
  CHECK(sw.counters().dropped_full > 0);
  // b kept receiving while c was full: the switch did not stall on c.
  a.send(frame(mac(2), mac(1), 0x88b5, 46, 9));
  b.send(frame(mac(1), mac(2)));  // learn b
  bool seen = false;
  for (int i = 0; i < 50 && !seen; i++) {
    a.send(frame(mac(2), mac(1), 0x88b5, 46, 7));
    for (Bytes f; !(f = b.recv(20)).empty();) seen |= f[14] == 7;
  }
  CHECK(seen);
  std::printf("        (%d frames until c's queue was full)\n", n);
}

TEST(stopped_switch_closes_ports_and_removes_its_socket) {
  auto path = sock("stop");
  auto sw = std::make_unique<net::Switch>(net::SwitchOptions{path, {}, 64});
  Client a(path);
  wait_ports(*sw, 1);
  sw->stop();
  CHECK(::access(path.c_str(), F_OK) != 0);
  Bytes b(100);
  CHECK_EQ(::recv(a.fd, b.data(), b.size(), 0), ssize_t(0));  // EOF
  bool threw = false;
  try {
    net::SocketBackend be(path);
  } catch (net::NetError& e) {
    threw = std::string(e.what()).find("not started") != std::string::npos;
  }
  CHECK(threw);
}

// ------------------------------------------------------------ DHCP

void put16(Bytes& v, size_t at, uint16_t x) {
  v[at] = uint8_t(x >> 8);
  v[at + 1] = uint8_t(x);
}
void put32(Bytes& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; i++) v[at + size_t(i)] = uint8_t(x >> (24 - 8 * i));
}
uint32_t get32(const Bytes& v, size_t at) { return uint32_t(v[at]) << 24 | uint32_t(v[at + 1]) << 16 | uint32_t(v[at + 2]) << 8 | v[at + 3]; }

// A DHCP client message from `m` (broadcast, from 0.0.0.0).
Bytes dhcp_msg(const net::Mac& m, uint8_t type, uint32_t requested = 0, uint32_t server = 0, uint32_t xid = 0x1234) {
  Bytes opts = {53, 1, type};
  if (requested) opts.insert(opts.end(), {50, 4, uint8_t(requested >> 24), uint8_t(requested >> 16), uint8_t(requested >> 8), uint8_t(requested)});
  if (server) opts.insert(opts.end(), {54, 4, uint8_t(server >> 24), uint8_t(server >> 16), uint8_t(server >> 8), uint8_t(server)});
  opts.insert(opts.end(), {12, 4, 'v', 'm', '-', '1'});
  opts.push_back(255);
  size_t bootp = 240 + opts.size();
  Bytes f = frame(kBcast, m, 0x0800, 20 + 8 + bootp, 0);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  put16(f, 16, uint16_t(20 + 8 + bootp));
  ip[8] = 64;
  ip[9] = 17;
  put32(f, 30, 0xffffffff);
  put16(f, 34, 68);
  put16(f, 36, 67);
  put16(f, 38, uint16_t(8 + bootp));
  size_t b = 42;
  f[b] = 1;
  f[b + 1] = 1;
  f[b + 2] = 6;
  put32(f, b + 4, xid);
  put16(f, b + 10, 0x8000);
  std::memcpy(f.data() + b + 28, m.data(), 6);
  put32(f, b + 236, 0x63825363);
  std::memcpy(f.data() + b + 240, opts.data(), opts.size());
  return f;
}

struct Reply {
  uint8_t type = 0;
  uint32_t yiaddr = 0, server = 0, mask = 0, xid = 0;
  bool router = false, dns = false;
  uint32_t router_ip = 0;
};
Reply parse_reply(const Bytes& f) {
  Reply r;
  CHECK(f.size() >= 42 + 240);
  CHECK_EQ(f[12], uint8_t(0x08));
  CHECK_EQ(f[23], uint8_t(17));
  CHECK_EQ(uint16_t(f[36] << 8 | f[37]), uint16_t(68));
  size_t b = 42;
  CHECK_EQ(f[b], uint8_t(2));
  r.xid = get32(f, b + 4);
  r.yiaddr = get32(f, b + 16);
  CHECK_EQ(get32(f, b + 236), 0x63825363u);
  for (size_t i = b + 240; i < f.size() && f[i] != 255;) {
    if (f[i] == 0) {
      i++;
      continue;
    }
    uint8_t c = f[i], l = f[i + 1];
    if (c == 53) r.type = f[i + 2];
    if (c == 54) r.server = get32(f, i + 2);
    if (c == 1) r.mask = get32(f, i + 2);
    if (c == 3) r.router = true, r.router_ip = get32(f, i + 2);
    if (c == 6) r.dns = true;
    i += 2 + l;
  }
  return r;
}

net::DhcpConfig dhcp_cfg() {
  net::DhcpConfig d;
  d.enabled = true;
  d.server = 0xc0a86401;       // 192.168.100.1
  d.netmask = 0xffffff00;
  d.range_start = 0xc0a8640a;  // .10
  d.range_end = 0xc0a8640b;    // .11: two leases
  return d;
}

TEST(dhcp_discover_offer_request_ack) {
  net::Switch sw({sock("dhcp"), dhcp_cfg(), 64});
  Client a(sw.path()), b(sw.path()), other(sw.path());
  wait_ports(sw, 3);
  a.send(dhcp_msg(mac(1), 1, 0, 0, 0xabc));
  Reply offer = parse_reply(a.recv());
  CHECK_EQ(offer.type, uint8_t(2));
  CHECK_EQ(offer.xid, 0xabcu);
  CHECK_EQ(offer.yiaddr, 0xc0a8640au);
  CHECK_EQ(offer.server, 0xc0a86401u);
  CHECK_EQ(offer.mask, 0xffffff00u);
  CHECK(!offer.router && !offer.dns);  // isolated: no gateway, no DNS
  CHECK(sw.leases().empty());          // an offer is not a lease
  a.send(dhcp_msg(mac(1), 3, offer.yiaddr, offer.server));
  Reply ack = parse_reply(a.recv());
  CHECK_EQ(ack.type, uint8_t(5));
  CHECK_EQ(ack.yiaddr, 0xc0a8640au);
  auto leases = sw.leases();
  CHECK_EQ(leases.size(), size_t(1));
  CHECK(leases[0].mac == mac(1));
  CHECK_EQ(leases[0].ip, 0xc0a8640au);
  CHECK_EQ(leases[0].hostname, std::string("vm-1"));
  // The DHCP exchange is answered by the switch, not flooded to the other ports.
  CHECK(other.quiet());
  // A second client gets the next address; asking for the first one's is refused.
  b.send(dhcp_msg(mac(2), 3, 0xc0a8640a, 0xc0a86401));
  CHECK_EQ(parse_reply(b.recv()).type, uint8_t(6));  // NAK
  b.send(dhcp_msg(mac(2), 1));
  Reply o2 = parse_reply(b.recv());
  CHECK_EQ(o2.yiaddr, 0xc0a8640bu);
  // The range is used up: a third MAC gets no offer.
  other.send(dhcp_msg(mac(3), 3, 0xc0a8640b, 0xc0a86401));
  CHECK_EQ(parse_reply(other.recv()).type, uint8_t(5));  // took .11 first
  b.send(dhcp_msg(mac(2), 1));
  CHECK(b.quiet(300));
  // A request naming another server is left alone; the same MAC asking again keeps its address.
  a.send(dhcp_msg(mac(1), 3, 0xc0a8640a, 0x0a000001));
  CHECK(a.quiet(200));
  a.send(dhcp_msg(mac(1), 1));
  CHECK_EQ(parse_reply(a.recv()).yiaddr, 0xc0a8640au);
  CHECK_EQ(sw.counters().dhcp_replies, 6u);
}

TEST(dhcp_gives_router_and_dns_when_the_network_has_a_host_address) {
  auto cfg = dhcp_cfg();
  cfg.router = 0xc0a86401;
  cfg.dns = 0xc0a86401;
  net::Switch sw({sock("dhcp2"), cfg, 64});
  Client a(sw.path());
  wait_ports(sw, 1);
  a.send(dhcp_msg(mac(1), 1));
  Reply r = parse_reply(a.recv());
  CHECK(r.router && r.dns);
  CHECK_EQ(r.router_ip, 0xc0a86401u);
}

TEST(dhcp_truncated_and_garbage_do_not_crash) {
  net::Switch sw({sock("dhcp3"), dhcp_cfg(), 64});
  Client a(sw.path());
  wait_ports(sw, 1);
  Bytes good = dhcp_msg(mac(1), 1);
  for (size_t n = 14; n < good.size(); n += 7) a.send(Bytes(good.begin(), good.begin() + std::ptrdiff_t(n)));
  Bytes bad = good;
  bad[42 + 241] = 200;  // option 53's length runs past the end
  a.send(bad);
  Bytes ihl = good;
  ihl[14] = 0x4f;  // header length 60: UDP header beyond the frame's end for short ones
  a.send(ihl);
  a.send(good);
  // Only the whole DISCOVER is answered.
  Reply r = parse_reply(a.recv());
  CHECK_EQ(r.type, uint8_t(2));
  CHECK(a.quiet(200));
}

TEST(arp_for_the_dhcp_server_is_answered) {
  net::Switch sw({sock("arp"), dhcp_cfg(), 64});
  Client a(sw.path());
  wait_ports(sw, 1);
  Bytes f = frame(kBcast, mac(1), 0x0806, 28, 0);
  put16(f, 14, 1);
  put16(f, 16, 0x0800);
  f[18] = 6;
  f[19] = 4;
  put16(f, 20, 1);
  std::memcpy(f.data() + 22, mac(1).data(), 6);
  put32(f, 28, 0xc0a8640a);
  put32(f, 38, 0xc0a86401);
  a.send(f);
  Bytes r = a.recv();
  CHECK(r.size() >= 42);
  CHECK_EQ(uint16_t(r[20] << 8 | r[21]), uint16_t(2));  // reply
  CHECK(std::memcmp(r.data() + 22, net::Switch::kOwnMac.data(), 6) == 0);
  CHECK_EQ(get32(r, 28), 0xc0a86401u);
  CHECK(std::memcmp(r.data(), mac(1).data(), 6) == 0);
}

// ------------------------------------------------------------ virtio-net on the switch


constexpr uint64_t kDriverFeatures = bit(kFVersion1) | bit(kNetFMac) | bit(kNetFStatus);

TEST(two_vms_on_one_isolated_network_exchange_frames_a_third_on_another_sees_none) {
  net::Switch lan({sock("lan"), {}, 64}), other({sock("other"), {}, 64});
  const MacAddr ma{0x52, 0x54, 0x00, 0, 1, 1}, mb{0x52, 0x54, 0x00, 0, 1, 2}, mc{0x52, 0x54, 0x00, 0, 1, 3};
  Rig ra(std::make_shared<net::SocketBackend>(lan.path()), {}, ma);
  Rig rb(std::make_shared<net::SocketBackend>(lan.path()), {}, mb);
  Rig rc(std::make_shared<net::SocketBackend>(other.path()), {}, mc);
  Driver a(ra, kDriverFeatures), b(rb, kDriverFeatures), c(rc, kDriverFeatures);
  wait_ports(lan, 2);
  wait_ports(other, 1);
  auto mk = [](const MacAddr& dst, const MacAddr& src, uint8_t tag) {
    Bytes f(60, tag);
    std::memcpy(f.data(), dst.data(), 6);
    std::memcpy(f.data() + 6, src.data(), 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    return f;
  };
  const MacAddr bc{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  a.send(mk(bc, ma, 0x11));  // broadcast from A
  Bytes got = b.wait_for([](const Bytes& f) { return f.size() == 60 && f[20] == 0x11; });
  CHECK(!got.empty());
  b.send(mk(ma, mb, 0x22));  // B answers A by unicast
  got = a.wait_for([](const Bytes& f) { return f.size() == 60 && f[20] == 0x22; });
  CHECK(!got.empty());
  CHECK(std::memcmp(got.data() + 6, mb.data(), 6) == 0);
  a.send(mk(mb, ma, 0x33));
  CHECK(!b.wait_for([](const Bytes& f) { return f[20] == 0x33; }).empty());
  // C, on the other network, saw none of it.
  CHECK(c.wait_for([](const Bytes&) { return true; }, 300).empty());
  CHECK_EQ(other.counters().frames, 0u);
  CHECK_EQ(lan.counters().frames, 3u);
  // C sending reaches neither A nor B.
  c.send(mk(bc, mc, 0x44));
  CHECK(a.wait_for([](const Bytes& f) { return f[20] == 0x44; }, 300).empty());
  CHECK(b.wait_for([](const Bytes& f) { return f[20] == 0x44; }, 100).empty());
}

}  // namespace
