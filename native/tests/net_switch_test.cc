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

using namespace vireo;
using namespace vireo::virtio;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kRamSize = 8 << 20;
constexpr uint64_t kBar4 = 0xe0000000, kBar1 = 0xe1000000;
constexpr int kSlot = 3;

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

struct Rig {
  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize, 0);
  GuestMemory mem;
  Bus pio, mmio;
  pci::PciHost host{pio, mmio};
  std::shared_ptr<net::NetBackend> be;
  std::shared_ptr<VirtioNet> net;
  std::shared_ptr<VirtioPci> fn;
  std::mutex mu;
  bool intx = false;

  Rig(std::shared_ptr<net::NetBackend> b, const MacAddr& mac) : be(std::move(b)) {
    VirtioNet::Options o;
    mem.add_region(0, kRamSize, ram.data());
    host.route_intx = [this](int, int, bool level) {
      std::lock_guard g(mu);
      intx = level;
    };
    o.mac = mac;
    net = std::make_shared<VirtioNet>(be, o);
    fn = std::make_shared<VirtioPci>(net, &mem, VirtioPci::Hooks{});
    host.attach(kSlot, 0, fn);
    cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
    cfgw(pci::kBar0 + 20, 4, 0);
    cfgw(pci::kBar0 + 4, 4, uint32_t(kBar1));
    cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
    net->start();
  }
  ~Rig() { net->quiesce(); }
  uint32_t cfgr(uint32_t reg, int size) { return host.config_read(0, kSlot, 0, reg, size); }
  void cfgw(uint32_t reg, int size, uint32_t v) { host.config_write(0, kSlot, 0, reg, size, v); }
  uint64_t r(uint64_t off, int size) {
    uint8_t b[8] = {};
    mmio.read(kBar4 + off, {b, size_t(size)});
    return span_to_u64({b, size_t(size)});
  }
  void w(uint64_t off, int size, uint64_t v) {
    uint8_t b[8];
    u64_to_span(v, {b, size_t(size)});
    mmio.write(kBar4 + off, {b, size_t(size)});
  }
  uint8_t status() { return uint8_t(r(0x14, 1)); }
};

uint16_t ld16(uint8_t* p) { return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(std::memory_order_acquire); }
void st16(uint8_t* p, uint16_t v) { std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, std::memory_order_release); }

// One virtqueue as the driver keeps it.
struct DQueue {
  uint64_t desc, avail, used;
  uint16_t size;
  uint16_t avail_idx = 0, last_used = 0, next_desc = 0;
};

struct Driver {
  Rig& rig;
  DQueue rxq{0x10000, 0x14000, 0x18000, 64}, txq{0x20000, 0x24000, 0x28000, 64};
  uint32_t rx_buf_len = 2048;
  uint64_t features;
  std::vector<Bytes> frames;  // received, header stripped
  std::vector<Bytes> headers;

  static constexpr uint64_t kRxBufs = 0x100000, kTxBufs = 0x400000;

  Driver(Rig& r, uint64_t f, uint32_t buflen = 2048, bool post = true) : rig(r), rx_buf_len(buflen), features(f) {
    CHECK(negotiate(f) & kStatusFeaturesOk);
    setup(0, rxq);
    setup(1, txq);
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    if (post) post_rx(rxq.size);
  }
  uint8_t negotiate(uint64_t f) {
    rig.w(0x14, 1, 0);
    rig.w(0x14, 1, kStatusAcknowledge);
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver);
    rig.w(0x08, 4, 0);
    rig.w(0x0c, 4, uint32_t(f));
    rig.w(0x08, 4, 1);
    rig.w(0x0c, 4, uint32_t(f >> 32));
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    return rig.status();
  }
  void setup(int qi, DQueue& q) {
    for (uint64_t a : {q.desc, q.avail, q.used}) std::memset(rig.ram.data() + a, 0, 0x4000);
    rig.w(0x16, 2, uint64_t(qi));
    rig.w(0x18, 2, q.size);
    rig.w(0x20, 8, q.desc);
    rig.w(0x28, 8, q.avail);
    rig.w(0x30, 8, q.used);
    rig.w(0x1c, 2, 1);
  }
  void set_desc(DQueue& q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* p = rig.ram.data() + q.desc + 16ull * i;
    std::memcpy(p, &addr, 8);
    std::memcpy(p + 8, &len, 4);
    std::memcpy(p + 12, &flags, 2);
    std::memcpy(p + 14, &next, 2);
  }
  void publish(DQueue& q, uint16_t head) {
    uint16_t v = head;
    std::memcpy(rig.ram.data() + q.avail + 4 + 2ull * (q.avail_idx % q.size), &v, 2);
    q.avail_idx++;
    st16(rig.ram.data() + q.avail + 2, q.avail_idx);
  }
  void kick(int qi) { rig.w(VirtioPci::kNotifyOff + 4ull * qi, 2, uint64_t(qi)); }
  uint16_t used_idx(DQueue& q) { return ld16(rig.ram.data() + q.used + 2); }
  std::pair<uint32_t, uint32_t> used_elem(DQueue& q, uint16_t i) {
    uint32_t e[2];
    std::memcpy(e, rig.ram.data() + q.used + 4 + 8ull * (i % q.size), 8);
    return {e[0], e[1]};
  }

  // Receive buffers: descriptor i ↔ buffer i, one writable descriptor each.
  void post_rx(int n) {
    for (int k = 0; k < n; k++) {
      uint16_t i = rxq.next_desc;
      rxq.next_desc = uint16_t((i + 1) % rxq.size);
      set_desc(rxq, i, kRxBufs + 0x10000ull * i, rx_buf_len, kDescWrite, 0);
      publish(rxq, i);
    }
    kick(0);
  }
  // Takes what the device put on the receive ring; reposts the buffers.
  int collect() {
    int got = 0;
    while (rxq.last_used != used_idx(rxq)) {
      auto [head, len] = used_elem(rxq, rxq.last_used++);
      CHECK(head < rxq.size);
      const uint8_t* b = rig.ram.data() + kRxBufs + 0x10000ull * head;
      CHECK(len >= kNetHdrLen && len <= rx_buf_len);
      Bytes hdr(b, b + kNetHdrLen);
      uint16_t nbuf = uint16_t(hdr[10] | hdr[11] << 8);
      Bytes f(b + kNetHdrLen, b + len);
      int reposted = 1;
      if (features & bit(kNetFMrgRxbuf)) {
        CHECK(nbuf >= 1);
        for (uint16_t k = 1; k < nbuf; k++) {
          CHECK(rxq.last_used != used_idx(rxq));  // published together
          auto [h2, l2] = used_elem(rxq, rxq.last_used++);
          const uint8_t* b2 = rig.ram.data() + kRxBufs + 0x10000ull * h2;
          f.insert(f.end(), b2, b2 + l2);
          reposted++;
        }
      } else {
        CHECK_EQ(nbuf, 1);
      }
      headers.push_back(hdr);
      frames.push_back(std::move(f));
      got++;
      // Repost the same buffers (descriptors are reused in ring order).
      for (int k = 0; k < reposted; k++) {
        uint16_t i = rxq.next_desc;
        rxq.next_desc = uint16_t((i + 1) % rxq.size);
        set_desc(rxq, i, kRxBufs + 0x10000ull * i, rx_buf_len, kDescWrite, 0);
        publish(rxq, i);
      }
      kick(0);
    }
    return got;
  }
  // Waits up to `ms` for a received frame matching `pred`; returns it (or empty).
  Bytes wait_for(const std::function<bool(const Bytes&)>& pred, int ms = 5000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    size_t seen = 0;
    for (;;) {
      collect();
      for (; seen < frames.size(); seen++) {
        if (pred(frames[seen])) return frames[seen];
      }
      if (std::chrono::steady_clock::now() > end) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  // Transmit: header (+ frame) in one or two descriptors.
  uint16_t send_raw(const Bytes& hdr, const Bytes& frame, bool split = true) {
    uint16_t head = txq.next_desc;
    uint64_t buf = kTxBufs + 0x20000ull * (head % 16);
    std::memcpy(rig.ram.data() + buf, hdr.data(), hdr.size());
    if (!frame.empty()) std::memcpy(rig.ram.data() + buf + 0x100, frame.data(), frame.size());
    if (split) {
      uint16_t i2 = uint16_t((head + 1) % txq.size);
      set_desc(txq, head, buf, uint32_t(hdr.size()), kDescNext, i2);
      set_desc(txq, i2, buf + 0x100, uint32_t(frame.size()), 0, 0);
      txq.next_desc = uint16_t((head + 2) % txq.size);
    } else {
      Bytes all = hdr;
      all.insert(all.end(), frame.begin(), frame.end());
      std::memcpy(rig.ram.data() + buf, all.data(), all.size());
      set_desc(txq, head, buf, uint32_t(all.size()), 0, 0);
      txq.next_desc = uint16_t((head + 1) % txq.size);
    }
    publish(txq, head);
    kick(1);
    return head;
  }
  static Bytes hdr(uint8_t flags = 0, uint16_t csum_start = 0, uint16_t csum_off = 0, uint8_t gso = 0) {
    Bytes h(kNetHdrLen, 0);
    h[0] = flags;
    h[1] = gso;
    h[6] = uint8_t(csum_start);
    h[7] = uint8_t(csum_start >> 8);
    h[8] = uint8_t(csum_off);
    h[9] = uint8_t(csum_off >> 8);
    return h;
  }
  void send(const Bytes& frame) { send_raw(hdr(), frame); }
};

constexpr uint64_t kDriverFeatures = bit(kFVersion1) | bit(kNetFMac) | bit(kNetFStatus);

TEST(two_vms_on_one_isolated_network_exchange_frames_a_third_on_another_sees_none) {
  net::Switch lan({sock("lan"), {}, 64}), other({sock("other"), {}, 64});
  const MacAddr ma{0x52, 0x54, 0x00, 0, 1, 1}, mb{0x52, 0x54, 0x00, 0, 1, 2}, mc{0x52, 0x54, 0x00, 0, 1, 3};
  Rig ra(std::make_shared<net::SocketBackend>(lan.path()), ma);
  Rig rb(std::make_shared<net::SocketBackend>(lan.path()), mb);
  Rig rc(std::make_shared<net::SocketBackend>(other.path()), mc);
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
