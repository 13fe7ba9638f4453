// virtio-net driven without a vCPU: the test plays the guest's driver
// through PCI config space and BAR accesses, with both virtqueues in a
// GuestMemory over a heap buffer, and a tiny Ethernet/ARP/IPv4/UDP/TCP frame
// builder plays the guest's network stack. Behind the NIC: libslirp (DHCP,
// a TCP exchange with a server on the host's 127.0.0.1, a host port
// forward) or, for the receive-path corner cases, a fake backend the test
// feeds directly. All traffic stays on loopback.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "check.h"
#include "bus/bus.h"
#include "devices/pci/pci.h"
#include "devices/virtio/net/device.h"
#include "devices/virtio/pci_transport.h"
#include "devices/virtio/virtio.h"
#include "machine/guest_memory.h"
#include "net/slirp.h"
#include "net_test_util.h"
#include "pci_test_util.h"
#include "virtio_net_rig.h"

using namespace vireo;
using namespace vireo::virtio;
using namespace nettest;
using nettest::Bytes;
using nettest::kGuestMac;
using namespace virtio_net_rig;

namespace {



constexpr uint64_t kDriverFeatures = bit(kFVersion1) | bit(kNetFMac) | bit(kNetFStatus) | bit(kNetFCsum);

}  // namespace

// ------------------------------------------------------------ identity

TEST(pci_identity_features_and_config) {
  Rig rig(std::make_shared<FakeBackend>());
  CHECK_EQ(rig.cfgr(0, 2), 0x1af4u);
  CHECK_EQ(rig.cfgr(2, 2), 0x1041u);  // 0x1040 + type 1
  CHECK_EQ(rig.cfgr(pci::kRevision, 4) >> 8, 0x020000u);
  rig.w(0x00, 4, 0);
  uint64_t f = rig.r(0x04, 4);
  rig.w(0x00, 4, 1);
  f |= rig.r(0x04, 4) << 32;
  for (int b : {kFVersion1, kNetFMac, kNetFStatus, kNetFMrgRxbuf, kNetFCsum}) CHECK(f & bit(b));
  // Nothing the backend cannot honour: no TSO/UFO, no GUEST_CSUM, no control queue.
  for (int b : {kNetFGuestCsum, kNetFHostTso4, kNetFHostTso6, kNetFHostUfo, kNetFGuestTso4, kNetFCtrlVq, kNetFMq}) CHECK(!(f & bit(b)));
  CHECK_EQ(rig.r(0x12, 2), 2u);  // num_queues: rx, tx
  for (int i = 0; i < 6; i++) CHECK_EQ(uint8_t(rig.r(VirtioPci::kDeviceOff + uint64_t(i), 1)), kGuestMac[size_t(i)]);
  CHECK_EQ(rig.r(VirtioPci::kDeviceOff + kNetCfgStatus, 2), uint64_t(kNetSLinkUp));
  // A feature that was not offered is refused at FEATURES_OK.
  rig.w(0x14, 1, 0);
  rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver);
  rig.w(0x08, 4, 0);
  rig.w(0x0c, 4, uint32_t(bit(kNetFHostTso4)));
  rig.w(0x08, 4, 1);
  rig.w(0x0c, 4, 1);
  rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  CHECK(!(rig.status() & kStatusFeaturesOk));
}

TEST(parse_mac_and_hostfwd) {
  MacAddr m;
  CHECK(parse_mac("52:54:00:12:34:56", m));
  CHECK_EQ(m[5], uint8_t(0x56));
  CHECK(!parse_mac("01:00:5e:00:00:01", m));  // multicast
  CHECK(!parse_mac("52:54:00:12:34", m));
  CHECK(!parse_mac("52:54:00:12:34:zz", m));
  auto f = net::parse_hostfwd("tcp::2222-:22");
  CHECK(!f.udp);
  CHECK_EQ(f.host_addr, std::string());
  CHECK_EQ(f.host_port, 2222);
  CHECK_EQ(f.guest_port, 22);
  f = net::parse_hostfwd("udp:127.0.0.1:5353-10.0.2.15:53");
  CHECK(f.udp);
  CHECK_EQ(f.host_addr, std::string("127.0.0.1"));
  CHECK_EQ(f.guest_addr, std::string("10.0.2.15"));
  for (const char* bad : {"tcp::2222", "tcp::99999-:22", "tcp::2222-:0", "tcp:host:1-:2", "tcp::22-:x", "sctp::1-:2"}) {
    bool threw = false;
    try {
      net::parse_hostfwd(bad);
    } catch (net::NetError&) {
      threw = true;
    }
    if (!threw) throw vireo_test::Failure{std::string("parse_hostfwd accepted ") + bad};
  }
}

// ------------------------------------------------------------ slirp

TEST(dhcp_discover_gets_offer_for_10_0_2_15) {
  Rig rig(slirp());
  Driver d(rig, kDriverFeatures);
  Bytes r = dhcp_exchange(d, 0xdeadbeef);
  CHECK(!r.empty());
  size_t u = l4_off(r) + 8;
  CHECK_EQ((Bytes(r.begin() + long(u + 16), r.begin() + long(u + 20))), (Bytes{10, 0, 2, 15}));  // yiaddr
  CHECK_EQ(dhcp_opt(r, 53), Bytes{2});                                     // DHCPOFFER
  CHECK_EQ(dhcp_opt(r, 3), (Bytes{10, 0, 2, 2}));                          // router
  CHECK_EQ(dhcp_opt(r, 6), (Bytes{10, 0, 2, 3}));                          // DNS
  CHECK(l4_checksum_ok(r));
  CHECK_EQ(std::memcmp(r.data(), kGuestMac.data(), 6) == 0 || std::memcmp(r.data(), kBcastMac.data(), 6) == 0, true);
  auto c = rig.net->counters();
  CHECK(c.tx_packets >= 1);
  CHECK(c.rx_packets >= 1);
  CHECK(c.rx_bytes >= r.size());
  CHECK_EQ(c.tx_malformed, 0u);
  CHECK_EQ(d.headers.back()[0], 0);  // no flags: complete checksums
  CHECK_EQ(d.headers.back()[1], kNetHdrGsoNone);
}

TEST(the_lease_slirps_dhcp_hands_out_is_known_and_ends_with_a_release) {
  // libslirp does not report its leases: the backend watches the exchange.
  auto be = slirp();
  Rig rig(be);
  Driver d(rig, kDriverFeatures);
  CHECK(be->leases().empty());
  Bytes offer = dhcp_exchange(d, 0x4242);
  CHECK(!offer.empty());
  CHECK(be->leases().empty());  // an offer is not a lease
  const Ip4 ip{{10, 0, 2, 15}}, server{{10, 0, 2, 2}};
  d.send(dhcp_client(0x4243, 3, ip, server, "guest-1"));
  Bytes ack = d.wait_for([](const Bytes& f) { return is_dhcp_reply(f, 0x4243); });
  CHECK(!ack.empty());
  CHECK_EQ(dhcp_opt(ack, 53), Bytes{5});
  auto ls = be->leases();
  CHECK_EQ(ls.size(), 1u);
  CHECK(std::memcmp(ls[0].mac.data(), kGuestMac.data(), 6) == 0);
  CHECK_EQ(ls[0].ip, 0x0a00020fu);
  CHECK_EQ(ls[0].hostname, std::string("guest-1"));
  const int64_t now = int64_t(::time(nullptr));
  CHECK(ls[0].expires > now + 60);  // slirp's lease time (a day), not zero
  // A RELEASE from the client ends it.
  d.send(dhcp_client(0x4244, 7, kAny, server, nullptr, ip));
  for (int i = 0; i < 200 && !be->leases().empty(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(be->leases().empty());
}

TEST(dhcp_offer_over_mergeable_small_buffers) {
  Rig rig(slirp());
  Driver d(rig, kDriverFeatures | bit(kNetFMrgRxbuf), 128);
  Bytes r = dhcp_exchange(d, 0x1234);
  CHECK(!r.empty());
  CHECK(r.size() > 128);
  uint16_t nbuf = uint16_t(d.headers.back()[10] | d.headers.back()[11] << 8);
  CHECK(nbuf > 1);
  CHECK_EQ(nbuf, uint16_t((r.size() + kNetHdrLen + 127) / 128));
  CHECK(l4_checksum_ok(r));  // reassembled in order
  CHECK_EQ(dhcp_opt(r, 53), Bytes{2});
}

// A TCP connection to a server on the host's loopback, both ways; with
// kicks_on_backend the transmit kicks run on slirp's thread and slirp's
// answers (SYN-ACK, ACKs, data) reach the ring from inside that kick.
static void tcp_exchange(bool kicks_on_backend) {
  Listener srv;
  Rig rig(slirp(), {}, kGuestMac, kicks_on_backend);
  Driver d(rig, kDriverFeatures);
  MacAddr gw = arp_gateway(d);
  const uint16_t sport = 40001;
  uint32_t iss = 1000;
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, iss, 0, kSyn, {}))));
  auto is_ours = [&](const Bytes& f) {
    return is_ipv4(f, 6) && get16(f, l4_off(f)) == srv.port && get16(f, l4_off(f) + 2) == sport;
  };
  Bytes sa = d.wait_for([&](const Bytes& f) { return is_ours(f) && (f[l4_off(f) + 13] & (kSyn | kAck)) == (kSyn | kAck); });
  CHECK(!sa.empty());
  CHECK(l4_checksum_ok(sa));
  CHECK_EQ(get32(sa, l4_off(sa) + 8), iss + 1);
  uint32_t peer = get32(sa, l4_off(sa) + 4) + 1;
  int conn = srv.accept(5000);
  CHECK(conn >= 0);
  // ACK, then data with a partial checksum the device must complete (slirp
  // drops a segment whose checksum is wrong, so "hello" arriving proves it).
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, iss + 1, peer, kAck, {}))));
  Bytes hello = {'h', 'e', 'l', 'l', 'o'};
  Bytes seg = eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, iss + 1, peer, kAck | kPsh, hello, true)));
  d.send_raw(Driver::hdr(kNetHdrFNeedsCsum, 34, 16), seg);
  char buf[16] = {};
  pollfd p{conn, POLLIN, 0};
  CHECK_EQ(::poll(&p, 1, 5000), 1);
  CHECK_EQ(::read(conn, buf, sizeof buf), ssize_t(5));
  CHECK_EQ(std::string(buf, 5), std::string("hello"));
  // Host → guest.
  CHECK_EQ(::write(conn, "world!", 6), ssize_t(6));
  auto tcp_data_len = [](const Bytes& f) {
    size_t l4 = l4_off(f);
    return int(get16(f, 16)) - int(l4 - 14) - int(f[l4 + 12] >> 4) * 4;
  };
  Bytes back = d.wait_for([&](const Bytes& f) { return is_ours(f) && tcp_data_len(f) > 0; });
  CHECK(!back.empty());
  CHECK(l4_checksum_ok(back));
  size_t data = l4_off(back) + size_t(back[l4_off(back) + 12] >> 4) * 4;
  CHECK_EQ(std::string(back.begin() + long(data), back.begin() + long(data + 6)), std::string("world!"));
  CHECK_EQ(get32(back, l4_off(back) + 8), iss + 6);  // acknowledges "hello"
  ::close(conn);
  auto c = rig.net->counters();
  CHECK(c.tx_packets >= 4);
  CHECK(c.rx_packets >= 3);
  CHECK_EQ(c.tx_malformed, 0u);
}

TEST(tcp_exchange_with_host_loopback_server) { tcp_exchange(false); }

TEST(tcp_exchange_with_transmit_kicks_on_slirps_thread) { tcp_exchange(true); }

// Kicks on the backend's thread while the machine is paused: the ring is left
// alone (a saved state must not change under the saver) and sent on resume.
TEST(transmit_kick_on_slirps_thread_waits_while_paused) {
  Rig rig(slirp(), {}, kGuestMac, true);
  Driver d(rig, kDriverFeatures);
  rig.net->set_paused(true);
  d.send(arp_request(kGuestIp, kGwIp));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_EQ(rig.net->counters().tx_packets, 0u);
  CHECK_EQ(d.used_idx(d.txq), 0u);
  rig.net->set_paused(false);
  Bytes reply = d.wait_for([](const Bytes& f) { return f.size() >= 42 && get16(f, 12) == 0x0806 && get16(f, 20) == 2; });
  CHECK(!reply.empty());
  CHECK_EQ(rig.net->counters().tx_packets, 1u);
}

TEST(partial_checksum_left_unfinished_is_dropped_by_slirp) {
  // The control for the test above: the same segment with a partial
  // checksum but without NEEDS_CSUM never reaches the server.
  Listener srv;
  Rig rig(slirp());
  Driver d(rig, kDriverFeatures);
  MacAddr gw = arp_gateway(d);
  const uint16_t sport = 40002;
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, 1, 0, kSyn, {}, true))));
  int conn = srv.accept(700);
  CHECK_EQ(conn, -1);
}

TEST(host_port_forward_reaches_guest) {
  uint16_t port = free_port();
  net::SlirpOptions o;
  o.hostfwd.push_back(net::parse_hostfwd("tcp:127.0.0.1:" + std::to_string(port) + "-:22"));
  Rig rig(slirp(o));
  Driver d(rig, kDriverFeatures);
  arp_gateway(d);  // slirp learns the guest's MAC from the request
  check_port_forward_to_guest(d, port, 5000);
}

TEST(udp_port_forward_and_reply) {
  uint16_t port = free_port();
  net::SlirpOptions o;
  o.hostfwd.push_back(net::parse_hostfwd("udp:127.0.0.1:" + std::to_string(port) + "-:5353"));
  Rig rig(slirp(o));
  Driver d(rig, kDriverFeatures);
  MacAddr gw = arp_gateway(d);
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  CHECK_EQ(::sendto(s, "ping?", 5, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), ssize_t(5));
  Bytes q = d.wait_for([](const Bytes& f) { return is_ipv4(f, 17) && get16(f, l4_off(f) + 2) == 5353; });
  CHECK(!q.empty());
  CHECK(l4_checksum_ok(q));
  CHECK_EQ(std::string(q.begin() + long(l4_off(q) + 8), q.begin() + long(l4_off(q) + 13)), std::string("ping?"));
  // The guest answers from 5353 to where the datagram came from.
  Ip4 from;
  std::memcpy(from.b, q.data() + 26, 4);
  uint16_t fport = get16(q, l4_off(q));
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, from, 17, udp(kGuestIp, from, 5353, fport, {'p', 'o', 'n', 'g'}))));
  pollfd p{s, POLLIN, 0};
  CHECK_EQ(::poll(&p, 1, 5000), 1);
  char buf[8] = {};
  CHECK_EQ(::recv(s, buf, sizeof buf, 0), ssize_t(4));
  CHECK_EQ(std::string(buf, 4), std::string("pong"));
  ::close(s);
}

TEST(ping_the_gateway) {
  Rig rig(slirp());
  Driver d(rig, kDriverFeatures);
  MacAddr gw = arp_gateway(d);
  Bytes icmp(8 + 16, 0);
  icmp[0] = 8;  // echo request
  put16(icmp, 4, 0x4242);
  put16(icmp, 6, 1);
  for (size_t i = 8; i < icmp.size(); i++) icmp[i] = uint8_t(i);
  put16(icmp, 2, uint16_t(~fold(sum16(icmp.data(), icmp.size()))));
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 1, icmp)));
  Bytes r = d.wait_for([](const Bytes& f) { return is_ipv4(f, 1) && f[l4_off(f)] == 0; }, 3000);
  // slirp answers through an unprivileged ICMP socket to the host's loopback
  // (or a raw one as root); a host that allows neither gets no answer.
  if (r.empty()) SKIP("no echo reply: this host allows slirp neither ping sockets (net.ipv4.ping_group_range) nor raw ones");
  CHECK_EQ(get16(r, l4_off(r) + 4), 0x4242);
  CHECK_EQ(fold(sum16(r.data() + l4_off(r), r.size() - l4_off(r))), 0xffff);
}

TEST(dhcp_on_a_configured_network_hands_out_its_addresses) {
  // A Vireo network like libvirt's default: 192.168.122.0/24, gateway .1,
  // leases from .100, DNS .3.
  net::SlirpOptions o;
  o.network = "192.168.122.0";
  o.prefix = 24;
  o.host = "192.168.122.1";
  o.dhcp_start = "192.168.122.100";
  o.dns = "192.168.122.3";
  Rig rig(slirp(o));
  Driver d(rig, kDriverFeatures);
  Bytes r = dhcp_exchange(d, 0x5151);
  CHECK(!r.empty());
  size_t u = l4_off(r) + 8;
  CHECK_EQ((Bytes(r.begin() + long(u + 16), r.begin() + long(u + 20))), (Bytes{192, 168, 122, 100}));  // yiaddr
  CHECK_EQ(dhcp_opt(r, 1), (Bytes{255, 255, 255, 0}));                                                  // netmask
  CHECK_EQ(dhcp_opt(r, 3), (Bytes{192, 168, 122, 1}));                                                  // router
  CHECK_EQ(dhcp_opt(r, 6), (Bytes{192, 168, 122, 3}));                                                  // DNS
}

TEST(dhcp_on_a_wider_network_uses_its_netmask) {
  net::SlirpOptions o;
  o.network = "172.20.0.0";
  o.prefix = 16;
  o.host = "172.20.0.1";
  o.dhcp_start = "172.20.5.10";
  o.dns = "172.20.0.53";
  Rig rig(slirp(o));
  Driver d(rig, kDriverFeatures);
  Bytes r = dhcp_exchange(d, 0x6161);
  CHECK(!r.empty());
  size_t u = l4_off(r) + 8;
  CHECK_EQ((Bytes(r.begin() + long(u + 16), r.begin() + long(u + 20))), (Bytes{172, 20, 5, 10}));
  CHECK_EQ(dhcp_opt(r, 1), (Bytes{255, 255, 0, 0}));
  CHECK_EQ(dhcp_opt(r, 3), (Bytes{172, 20, 0, 1}));
  CHECK_EQ(dhcp_opt(r, 6), (Bytes{172, 20, 0, 53}));
}

TEST(bad_network_options_are_refused_with_the_reason) {
  auto why = [](net::SlirpOptions o) {
    try {
      net::SlirpBackend b(o);
    } catch (net::NetError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  net::SlirpOptions o;
  o.network = "192.168.122.0";
  o.host = "192.168.123.1";
  CHECK(why(o).find("outside the network") != std::string::npos);
  o = {};
  o.network = "192.168.122.5";
  CHECK(why(o).find("host bits") != std::string::npos);
  o = {};
  o.prefix = 31;
  CHECK(why(o).find("out of range") != std::string::npos);
  o = {};
  o.dhcp_start = "10.0.2.255";
  CHECK(why(o).find("broadcast") != std::string::npos);
  o = {};
  o.dns = "10.0.2.x";
  CHECK(why(o).find("not an IPv4 address") != std::string::npos);
  o = {};
  o.dhcp_start = "10.0.2.2";
  CHECK(why(o).find("must differ") != std::string::npos);
  // Defaults resolve to QEMU's addresses.
  auto a = net::slirp_addrs({});
  CHECK_EQ(ntohl(a.network), 0x0a000200u);
  CHECK_EQ(ntohl(a.netmask), 0xffffff00u);
  CHECK_EQ(ntohl(a.host), 0x0a000202u);
  CHECK_EQ(ntohl(a.dhcp_start), 0x0a00020fu);
  CHECK_EQ(ntohl(a.dns), 0x0a000203u);
}

TEST(host_port_forward_on_a_taken_port_is_an_error) {
  Listener taken;
  net::SlirpOptions o;
  o.hostfwd.push_back(net::parse_hostfwd("tcp:127.0.0.1:" + std::to_string(taken.port) + "-:22"));
  std::string msg;
  try {
    net::SlirpBackend b(o);
  } catch (net::NetError& e) {
    msg = e.what();
  }
  CHECK(msg.find(std::to_string(taken.port)) != std::string::npos);
  CHECK(msg.find("in use") != std::string::npos);
}

TEST(restrict_keeps_the_guest_off_the_host) {
  Listener srv;
  net::SlirpOptions o;
  o.restrict = true;
  Rig rig(slirp(o));
  Driver d(rig, kDriverFeatures);
  // slirp's own services still answer.
  CHECK(!dhcp_exchange(d, 77).empty());
  MacAddr gw = arp_gateway(d);
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, 40003, srv.port, 1, 0, kSyn, {}))));
  CHECK_EQ(srv.accept(700), -1);
}

TEST(link_down_stops_traffic_and_tells_the_guest) {
  Rig rig(slirp());
  Driver d(rig, kDriverFeatures);
  CHECK(!dhcp_exchange(d, 1).empty());
  (void)rig.r(VirtioPci::kIsrOff, 1);  // clear
  uint8_t gen = uint8_t(rig.r(0x15, 1));
  rig.net->set_link(false);
  CHECK_EQ(rig.r(VirtioPci::kDeviceOff + kNetCfgStatus, 2), 0u);
  CHECK(uint8_t(rig.r(0x15, 1)) != gen);                      // config_generation moved
  CHECK(rig.r(VirtioPci::kIsrOff, 1) & kIsrConfig);          // configuration-change interrupt
  auto before = rig.net->counters();
  CHECK(dhcp_exchange(d, 2, 600).empty());
  auto after = rig.net->counters();
  CHECK_EQ(after.tx_dropped, before.tx_dropped + 1);
  CHECK_EQ(after.tx_packets, before.tx_packets);
  // Frames for the guest are dropped while down.
  rig.net->receive(arp_request(kGwIp, kGuestIp));
  CHECK_EQ(rig.net->counters().rx_dropped, after.rx_dropped + 1);
  rig.net->set_link(true);
  CHECK_EQ(rig.r(VirtioPci::kDeviceOff + kNetCfgStatus, 2), uint64_t(kNetSLinkUp));
  CHECK(!dhcp_exchange(d, 3).empty());
}

// ------------------------------------------------------------ guest errors

TEST(malformed_transmit_frames_are_dropped_and_counted) {
  auto fake = std::make_shared<FakeBackend>();
  Rig rig(fake);
  Driver d(rig, kDriverFeatures);
  Bytes good = arp_request(kGuestIp, kGwIp);
  int bad = 0;
  // Header only, no frame.
  d.send_raw(Driver::hdr(), {}, false), bad++;
  // A frame shorter than an Ethernet header.
  d.send_raw(Driver::hdr(), Bytes(10, 0)), bad++;
  // GSO that was not negotiated.
  d.send_raw(Driver::hdr(0, 0, 0, 1), good), bad++;
  // Checksum offsets past the frame.
  d.send_raw(Driver::hdr(kNetHdrFNeedsCsum, 40, 6), good), bad++;
  d.send_raw(Driver::hdr(kNetHdrFNeedsCsum, 0xffff, 0xffff), good), bad++;
  // A device-writable descriptor in a transmit chain.
  {
    uint16_t head = d.txq.next_desc;
    uint64_t buf = Driver::kTxBufs;
    std::memcpy(rig.ram.data() + buf, Driver::hdr().data(), kNetHdrLen);
    std::memcpy(rig.ram.data() + buf + 0x100, good.data(), good.size());
    d.set_desc(d.txq, head, buf, kNetHdrLen, kDescNext, uint16_t(head + 1));
    d.set_desc(d.txq, uint16_t(head + 1), buf + 0x100, uint32_t(good.size()), kDescWrite, 0);
    d.txq.next_desc = uint16_t(head + 2);
    d.publish(d.txq, head);
    d.kick(1);
    bad++;
  }
  // A buffer outside guest RAM.
  {
    uint16_t head = d.txq.next_desc;
    d.set_desc(d.txq, head, Driver::kTxBufs, kNetHdrLen, kDescNext, uint16_t(head + 1));
    d.set_desc(d.txq, uint16_t(head + 1), Rig::kRamSize - 8, 64, 0, 0);
    d.txq.next_desc = uint16_t(head + 2);
    d.publish(d.txq, head);
    d.kick(1);
    bad++;
  }
  // Longer than any Ethernet frame (64 KiB + header).
  d.send_raw(Driver::hdr(), Bytes(net::kMaxFrame + 1, 0xaa)), bad++;
  CHECK_EQ(rig.net->counters().tx_malformed, uint64_t(bad));
  CHECK_EQ(fake->nsent(), 0u);
  CHECK(!(rig.status() & kStatusNeedsReset));
  // Every chain came back on the used ring, and the queue still works.
  CHECK_EQ(d.used_idx(d.txq), uint16_t(bad));
  d.send(good);
  CHECK_EQ(fake->nsent(), 1u);
  CHECK(fake->sent[0] == good);
  CHECK_EQ(rig.net->counters().tx_packets, 1u);
  CHECK_EQ(rig.net->counters().tx_bytes, uint64_t(good.size()));
}

TEST(checksum_completion_for_udp_and_tcp) {
  auto fake = std::make_shared<FakeBackend>();
  Rig rig(fake);
  Driver d(rig, kDriverFeatures);
  Bytes payload(333, 0);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = uint8_t(i * 7);
  Bytes u = udp(kGuestIp, kGwIp, 1000, 2000, payload);
  // Partial: pseudo-header sum in the checksum field.
  Bytes up = u;
  put16(up, 6, fold(pseudo(kGuestIp, kGwIp, 17, up.size())));
  Bytes f = eth(kBcastMac, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 17, up));
  d.send_raw(Driver::hdr(kNetHdrFNeedsCsum, 34, 6), f);
  Bytes t = eth(kBcastMac, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, 1, 2, 3, 4, kAck, payload, true)));
  d.send_raw(Driver::hdr(kNetHdrFNeedsCsum, 34, 16), t);
  CHECK_EQ(fake->nsent(), 2u);
  CHECK(l4_checksum_ok(fake->sent[0]));
  CHECK(l4_checksum_ok(fake->sent[1]));
  CHECK_EQ(get16(fake->sent[0], 34 + 6), get16(u, 6));  // what a full checksum would be
  // NEEDS_CSUM without VIRTIO_NET_F_CSUM negotiated is malformed.
  Driver d2(rig, bit(kFVersion1) | bit(kNetFMac));
  d2.send_raw(Driver::hdr(kNetHdrFNeedsCsum, 34, 6), f);
  CHECK_EQ(rig.net->counters().tx_malformed, 1u);
}

TEST(descriptor_loop_needs_reset_and_is_counted) {
  auto fake = std::make_shared<FakeBackend>();
  Rig rig(fake);
  Driver d(rig, kDriverFeatures);
  d.set_desc(d.txq, 0, Driver::kTxBufs, 64, kDescNext, 1);
  d.set_desc(d.txq, 1, Driver::kTxBufs, 64, kDescNext, 0);
  d.publish(d.txq, 0);
  d.kick(1);
  CHECK(rig.status() & kStatusNeedsReset);
  CHECK(rig.fn->needs_reset_reason().find("loop") != std::string::npos);
  CHECK_EQ(rig.net->counters().tx_malformed, 1u);
  // Nothing reaches the guest until it resets the device; then all is well.
  rig.net->receive(arp_request(kGwIp, kGuestIp));
  CHECK_EQ(d.used_idx(d.rxq), 0u);
  Driver again(rig, kDriverFeatures);
  again.send(arp_request(kGuestIp, kGwIp));
  CHECK_EQ(fake->nsent(), 1u);
}

// ------------------------------------------------------------ receive path

TEST(receive_waits_for_buffers_and_drops_what_cannot_fit) {
  auto fake = std::make_shared<FakeBackend>();
  Rig rig(fake);
  // Before DRIVER_OK: dropped.
  fake->inject(arp_request(kGwIp, kGuestIp));
  CHECK_EQ(rig.net->counters().rx_dropped, 1u);
  Driver d(rig, kDriverFeatures, 256, false);
  Bytes a = arp_request(kGwIp, kGuestIp), b = eth(kGuestMac, kBcastMac, 0x0800, Bytes(100, 1));
  // No buffers yet: they wait in the backlog.
  fake->inject(a);
  fake->inject(b);
  CHECK_EQ(d.used_idx(d.rxq), 0u);
  d.post_rx(4);
  CHECK_EQ(d.collect(), 2);
  CHECK(d.frames[0] == a);
  CHECK(d.frames[1] == b);
  // Too big for a 256-byte buffer without MRG_RXBUF: dropped, the buffer stays for the next frame.
  auto before = rig.net->counters();
  fake->inject(eth(kGuestMac, kBcastMac, 0x0800, Bytes(1000, 2)));
  fake->inject(a);
  CHECK_EQ(d.collect(), 1);
  CHECK(d.frames[2] == a);
  auto after = rig.net->counters();
  CHECK_EQ(after.rx_dropped, before.rx_dropped + 1);
  CHECK_EQ(after.rx_packets, before.rx_packets + 1);
  // A read-only receive buffer goes back unused and is counted.
  // Replace every posted buffer's descriptor by a read-only one.
  for (uint16_t k = 0; k < d.rxq.size; k++) d.set_desc(d.rxq, k, Driver::kRxBufs, 256, 0, 0);
  fake->inject(a);
  CHECK(rig.net->counters().rx_bad_buffers >= 1);
  CHECK(!(rig.status() & kStatusNeedsReset));
}

TEST(mergeable_frame_waiting_for_buffers_gets_its_kick_with_event_idx) {
  // A driver that honours avail_event (as Linux does with EVENT_IDX) posts
  // too few buffers for a frame, then more: the device must have asked for a
  // kick on those, or the frame would sit in the backlog for good.
  auto fake = std::make_shared<FakeBackend>();
  Rig rig(fake);
  Driver d(rig, kDriverFeatures | bit(kNetFMrgRxbuf) | bit(kFEventIdx), 128, false);
  auto post_evented = [&](int n) {
    uint16_t old = d.rxq.avail_idx;
    for (int k = 0; k < n; k++) {
      uint16_t i = d.rxq.next_desc;
      d.rxq.next_desc = uint16_t((i + 1) % d.rxq.size);
      d.set_desc(d.rxq, i, Driver::kRxBufs + 0x10000ull * i, 128, kDescWrite, 0);
      d.publish(d.rxq, i);
    }
    uint16_t event = ld16(rig.ram.data() + d.rxq.used + 4 + 8ull * d.rxq.size);
    uint16_t now = d.rxq.avail_idx;
    // 2.7.10.1 vring_need_event
    if (uint16_t(now - event - 1) < uint16_t(now - old)) d.kick(0);
  };
  Bytes big = eth(kGuestMac, kBcastMac, 0x0800, Bytes(600, 3));  // 626 bytes + header: 5 buffers of 128
  post_evented(2);
  fake->inject(big);
  CHECK_EQ(d.used_idx(d.rxq), 0u);
  post_evented(4);
  CHECK_EQ(d.collect(), 1);
  CHECK(d.frames[0] == big);
}

TEST(receive_backlog_is_bounded) {
  auto fake = std::make_shared<FakeBackend>();
  VirtioNet::Options o;
  o.rx_backlog = 8;
  Rig rig(fake, o);
  Driver d(rig, kDriverFeatures, 2048, false);
  for (int k = 0; k < 20; k++) fake->inject(arp_request(kGwIp, kGuestIp));
  CHECK_EQ(rig.net->counters().rx_dropped, 12u);
  d.post_rx(32);
  CHECK_EQ(d.collect(), 8);
}

TEST(seeded_ring_fuzz_never_crashes) {
  // Random descriptors, rings and headers on both queues, with frames
  // arriving meanwhile; the device must neither crash nor write outside RAM.
  auto fake = std::make_shared<FakeBackend>();
  Rig rig(fake);
  std::mt19937_64 rng(1234);
  for (int round = 0; round < 200; round++) {
    Driver d(rig, kDriverFeatures | (round & 1 ? bit(kNetFMrgRxbuf) : 0) | (round & 2 ? bit(kFEventIdx) : 0) |
                      (round & 4 ? bit(kFIndirectDesc) : 0),
             uint32_t(64 + rng() % 2048), round % 3 != 0);
    for (int op = 0; op < 100; op++) {
      DQueue& q = rng() & 1 ? d.txq : d.rxq;
      uint16_t i = uint16_t(rng() % q.size);
      uint64_t addr = rng() % 4 == 0 ? rng() : 0x100000 + rng() % 0x600000;
      uint32_t len = uint32_t(rng() % 4 == 0 ? rng() : rng() % 3000);
      d.set_desc(q, i, addr, len, uint16_t(rng() % 8), uint16_t(rng() % (q.size + 2)));
      if (rng() % 3 == 0) {
        // Random bytes in a header area.
        uint64_t at = 0x400000 + rng() % 0x100000;
        rig.ram[at] = uint8_t(rng());
      }
      if (rng() % 2) d.publish(q, uint16_t(rng() % (q.size + 1)));
      if (rng() % 7 == 0) st16(rig.ram.data() + q.avail + 2, uint16_t(rng()));
      d.kick(int(rng() % 3));
      if (rng() % 2) fake->inject(Bytes(14 + rng() % 3000, uint8_t(op)));
    }
  }
  auto c = rig.net->counters();
  CHECK(c.tx_malformed + c.rx_bad_buffers + c.rx_dropped > 0);
}
