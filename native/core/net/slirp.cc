// libslirp backend. See slirp.h.
#include "net/slirp.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <slirp/libslirp.h>

namespace vireo::net {

namespace {

constexpr size_t kTxQueueFrames = 1024, kTxQueueBytes = 8u << 20;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

in_addr ipv4(const std::string& s, const char* what, in_addr dflt) {
  if (s.empty()) return dflt;
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) throw NetError(std::string(what) + " '" + s + "' is not an IPv4 address");
  return a;
}

in6_addr ipv6(const char* s) {
  in6_addr a{};
  inet_pton(AF_INET6, s, &a);
  return a;
}

short to_poll(int ev) {
  short p = 0;
  if (ev & SLIRP_POLL_IN) p |= POLLIN;
  if (ev & SLIRP_POLL_OUT) p |= POLLOUT;
  if (ev & SLIRP_POLL_PRI) p |= POLLPRI;
  if (ev & SLIRP_POLL_ERR) p |= POLLERR;
  if (ev & SLIRP_POLL_HUP) p |= POLLHUP;
  return p;
}

int from_poll(short p) {
  int ev = 0;
  if (p & POLLIN) ev |= SLIRP_POLL_IN;
  if (p & POLLOUT) ev |= SLIRP_POLL_OUT;
  if (p & POLLPRI) ev |= SLIRP_POLL_PRI;
  if (p & POLLERR) ev |= SLIRP_POLL_ERR;
  if (p & POLLHUP) ev |= SLIRP_POLL_HUP;
  return ev;
}

uint16_t parse_port(const std::string& s, const std::string& spec) {
  char* end = nullptr;
  errno = 0;
  long v = s.empty() ? -1 : std::strtol(s.c_str(), &end, 10);
  if (s.empty() || errno || *end || v < 0 || v > 65535) {
    throw NetError("hostfwd '" + spec + "': '" + s + "' is not a port number (0-65535)");
  }
  return uint16_t(v);
}

}  // namespace

// A slirp timer: fires slirp_handle_timer(id, cb_opaque) or the old-style
// callback at `expire_ms` (clock_get_ns / 1e6), -1 = not armed.
struct SlirpBackend::Timer {
  SlirpTimerId id{};
  void* cb_opaque = nullptr;
  SlirpTimerCb cb = nullptr;  // timer_new (pre-version-4 API)
  int64_t expire_ms = -1;
};

// The C callbacks; `opaque` is the SlirpBackend.
struct SlirpBackend::Cb {
  static SlirpBackend* self(void* o) { return static_cast<SlirpBackend*>(o); }
  static ssize_t send_packet(const void* buf, size_t len, void* o) {
    auto* b = self(o);
    const std::span<const uint8_t> f(static_cast<const uint8_t*>(buf), len);
    b->leases_.to_guest(f);
    if (b->in_kick_) b->kick_rx_(f);  // inside the NIC's transmit: its lock is taken
    else if (b->rx_) b->rx_(f);
    return ssize_t(len);
  }
  static void guest_error(const char* msg, void* o) {
    self(o)->guest_errors_++;
    if (getenv("VIREO_NET_DEBUG")) std::fprintf(stderr, "vireo slirp: guest error: %s\n", msg);
  }
  static int64_t clock_get_ns(void*) { return now_ns(); }
  static void* timer_new(SlirpTimerCb cb, void* cb_opaque, void* o) {
    auto t = std::make_unique<Timer>();
    t->cb = cb;
    t->cb_opaque = cb_opaque;
    Timer* p = t.get();
    self(o)->timers_.push_back(std::move(t));
    return p;
  }
  static void* timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* o) {
    auto t = std::make_unique<Timer>();
    t->id = id;
    t->cb_opaque = cb_opaque;
    Timer* p = t.get();
    self(o)->timers_.push_back(std::move(t));
    return p;
  }
  static void timer_free(void* timer, void* o) {
    auto& v = self(o)->timers_;
    v.erase(std::remove_if(v.begin(), v.end(), [&](auto& t) { return t.get() == timer; }), v.end());
  }
  static void timer_mod(void* timer, int64_t expire_ms, void*) { static_cast<Timer*>(timer)->expire_ms = expire_ms; }
  static void register_poll_fd(int, void*) {}
  static void unregister_poll_fd(int, void*) {}
  static void notify(void* o) { self(o)->wake(); }
  static int add_poll(int fd, int events, void* o) {
    auto& fds = *self(o)->pollfds_;
    fds.push_back({fd, to_poll(events), 0});
    return int(fds.size() - 1);
  }
  static int get_revents(int idx, void* o) {
    auto& fds = *self(o)->pollfds_;
    if (idx < 0 || size_t(idx) >= fds.size()) return 0;
    return from_poll(fds[size_t(idx)].revents);
  }
};

HostForward parse_hostfwd(const std::string& spec) {
  // [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport
  HostForward f;
  std::string s = spec;
  auto bad = [&](const char* why) { return NetError("hostfwd '" + spec + "': " + why + " (expected tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT)"); };
  size_t dash = s.find('-');
  if (dash == std::string::npos) throw bad("no '-' between the host and the guest side");
  std::string host = s.substr(0, dash), guest = s.substr(dash + 1);
  // Host side: proto:addr:port, or addr:port with tcp implied.
  size_t c1 = host.find(':');
  if (c1 == std::string::npos) throw bad("the host side needs ADDR:PORT");
  std::string proto = host.substr(0, c1), rest = host.substr(c1 + 1);
  if (proto == "tcp" || proto == "udp" || proto.empty()) {
    f.udp = proto == "udp";
    size_t c2 = rest.rfind(':');
    if (c2 == std::string::npos) {
      // "tcp:PORT"? QEMU requires the address field, possibly empty.
      throw bad("the host side needs ADDR:PORT (ADDR may be empty)");
    }
    f.host_addr = rest.substr(0, c2);
    f.host_port = parse_port(rest.substr(c2 + 1), spec);
  } else {
    f.host_addr = proto;
    f.host_port = parse_port(rest, spec);
  }
  size_t c3 = guest.rfind(':');
  if (c3 == std::string::npos) throw bad("the guest side needs [ADDR]:PORT");
  f.guest_addr = guest.substr(0, c3);
  f.guest_port = parse_port(guest.substr(c3 + 1), spec);
  if (f.guest_port == 0) throw bad("the guest port cannot be 0");
  in_addr any{};
  ipv4(f.host_addr, "host address", any);
  ipv4(f.guest_addr, "guest address", any);
  return f;
}

SlirpAddrs slirp_addrs(const SlirpOptions& o) {
  if (o.prefix < 8 || o.prefix > 30) {
    throw NetError("user networking: prefix /" + std::to_string(o.prefix) + " is out of range (8-30)");
  }
  uint32_t mask = o.prefix == 0 ? 0 : ~uint32_t(0) << (32 - o.prefix);
  auto h = [](in_addr a) { return ntohl(a.s_addr); };
  in_addr dnet{};
  dnet.s_addr = htonl(0x0a000200);  // 10.0.2.0
  uint32_t net = h(ipv4(o.network, "user networking: network", dnet));
  if (net & ~mask) {
    throw NetError("user networking: network '" + o.network + "' has host bits set for /" + std::to_string(o.prefix));
  }
  auto inside = [&](const std::string& s, const char* what, uint32_t dflt_host) {
    in_addr d{};
    d.s_addr = htonl(net | dflt_host);
    uint32_t a = h(ipv4(s, (std::string("user networking: ") + what).c_str(), d));
    if ((a & mask) != net) throw NetError(std::string("user networking: ") + what + " '" + s + "' is outside the network");
    if (a == net || a == (net | ~mask)) {
      throw NetError(std::string("user networking: ") + what + " '" + s + "' is the network's own or broadcast address");
    }
    return a;
  };
  SlirpAddrs r{};
  r.network = htonl(net);
  r.netmask = htonl(mask);
  r.host = htonl(inside(o.host, "host (gateway) address", 2));
  r.dhcp_start = htonl(inside(o.dhcp_start, "DHCP start", 15));
  r.dns = htonl(inside(o.dns, "DNS address", 3));
  if (r.host == r.dhcp_start || r.dns == r.dhcp_start) {
    throw NetError("user networking: the DHCP start address must differ from the host and DNS addresses");
  }
  return r;
}

SlirpBackend::SlirpBackend(SlirpOptions opt) : opt_(std::move(opt)) {
  SlirpAddrs addrs = slirp_addrs(opt_);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw NetError(std::string("user networking: eventfd: ") + std::strerror(errno));

  SlirpConfig c{};
  c.version = 4;
  c.restricted = opt_.restrict ? 1 : 0;
  c.in_enabled = true;
  c.vnetwork.s_addr = addrs.network;
  c.vnetmask.s_addr = addrs.netmask;
  c.vhost.s_addr = addrs.host;
  c.vdhcp_start.s_addr = addrs.dhcp_start;
  c.vnameserver.s_addr = addrs.dns;
  c.in6_enabled = true;
  c.vprefix_addr6 = ipv6("fec0::");
  c.vprefix_len = 64;
  c.vhost6 = ipv6("fec0::2");
  c.vnameserver6 = ipv6("fec0::3");
  c.if_mtu = 0;  // slirp's default (1500)
  c.if_mru = 0;
  c.disable_host_loopback = false;
  c.enable_emu = false;

  static const SlirpCb cbs = [] {
    SlirpCb b{};
    b.send_packet = Cb::send_packet;
    b.guest_error = Cb::guest_error;
    b.clock_get_ns = Cb::clock_get_ns;
    b.timer_new = Cb::timer_new;
    b.timer_free = Cb::timer_free;
    b.timer_mod = Cb::timer_mod;
    b.register_poll_fd = Cb::register_poll_fd;
    b.unregister_poll_fd = Cb::unregister_poll_fd;
    b.notify = Cb::notify;
    b.timer_new_opaque = Cb::timer_new_opaque;
    return b;
  }();
  slirp_ = slirp_new(&c, &cbs, this);
  if (!slirp_) {
    ::close(wake_fd_);
    throw NetError("user networking: libslirp refused its configuration");
  }
  in_addr guest_default = c.vdhcp_start;
  in_addr any{};
  any.s_addr = htonl(INADDR_ANY);
  for (const auto& f : opt_.hostfwd) {
    try {
      in_addr h = ipv4(f.host_addr, "hostfwd host address", any);
      in_addr g = ipv4(f.guest_addr, "hostfwd guest address", guest_default);
      if (slirp_add_hostfwd(slirp_, f.udp, h, f.host_port, g, f.guest_port) < 0) {
        throw NetError(std::string("port forward ") + (f.udp ? "udp" : "tcp") + " " +
                       (f.host_addr.empty() ? "*" : f.host_addr) + ":" + std::to_string(f.host_port) +
                       " -> guest port " + std::to_string(f.guest_port) +
                       ": the host port cannot be bound (already in use, or below 1024 without privileges)");
      }
    } catch (...) {
      slirp_cleanup(slirp_);
      slirp_ = nullptr;
      ::close(wake_fd_);
      throw;
    }
  }
}

std::vector<DhcpLease> SlirpBackend::leases() const { return leases_.leases(int64_t(::time(nullptr))); }

SlirpBackend::~SlirpBackend() {
  stop();
  if (slirp_) slirp_cleanup(slirp_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void SlirpBackend::start(Receiver rx) {
  if (thread_.joinable()) return;
  rx_ = std::move(rx);
  quit_ = false;
  thread_ = std::thread([this] { run(); });
}

void SlirpBackend::stop() {
  quit_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
}

void SlirpBackend::wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0 && ::write(wake_fd_, &one, sizeof one) < 0 && errno != EAGAIN) {
    std::perror("vireo slirp: wake eventfd");
  }
}

bool SlirpBackend::run_kicks(int efd, std::function<void()> kick, Receiver locked_rx) {
  if (thread_.joinable() || efd < 0 || !kick || !locked_rx) return false;
  kick_fd_ = efd;
  kick_ = std::move(kick);
  kick_rx_ = std::move(locked_rx);
  return true;
}

bool SlirpBackend::send(std::span<const uint8_t> frame) {
  if (frame.size() < kMinFrame || frame.size() > kMaxFrame) return false;
  if (std::this_thread::get_id() == thread_id_.load(std::memory_order_relaxed) && in_kick_) {
    // A kick on this thread (run_kicks): straight into slirp.
    leases_.from_guest(frame);
    slirp_input(slirp_, frame.data(), int(frame.size()));
    return true;
  }
  bool was_empty;
  {
    std::lock_guard g(tx_mu_);
    if (tx_.size() >= kTxQueueFrames || tx_bytes_ + frame.size() > kTxQueueBytes) return false;
    was_empty = tx_.empty();
    tx_.emplace_back(frame.begin(), frame.end());
    tx_bytes_ += frame.size();
  }
  // One wake per batch: a queue that already held frames has a wake pending
  // (run() swaps the whole queue at the top of every turn, after the read
  // that consumes wakes), so a burst of frames costs one eventfd write.
  if (was_empty) wake();
  return true;
}

void SlirpBackend::run() {
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  std::vector<pollfd> fds;
  std::vector<std::vector<uint8_t>> batch;
  while (!quit_) {
    {
      std::lock_guard g(tx_mu_);
      batch.swap(tx_);
      tx_bytes_ = 0;
    }
    for (auto& f : batch) {
      leases_.from_guest(f);
      slirp_input(slirp_, f.data(), int(f.size()));
    }
    batch.clear();

    // Expired timers. A callback may free or re-arm timers: collect first.
    int64_t now_ms = now_ns() / 1000000;
    std::vector<Timer*> due;
    for (auto& t : timers_) {
      if (t->expire_ms >= 0 && t->expire_ms <= now_ms) due.push_back(t.get());
    }
    for (Timer* t : due) {
      bool alive = std::any_of(timers_.begin(), timers_.end(), [&](auto& u) { return u.get() == t; });
      if (!alive || t->expire_ms < 0 || t->expire_ms > now_ms) continue;
      t->expire_ms = -1;
      if (t->cb) t->cb(t->cb_opaque);
      else slirp_handle_timer(slirp_, t->id, t->cb_opaque);
    }

    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({kick_fd_, POLLIN, 0});  // -1 (skipped) without run_kicks()
    pollfds_ = &fds;
    uint32_t timeout = UINT32_MAX;
    slirp_pollfds_fill(slirp_, &timeout, Cb::add_poll, this);
    int64_t wait_ms = timeout == UINT32_MAX ? 1000 : int64_t(timeout);
    now_ms = now_ns() / 1000000;
    for (auto& t : timers_) {
      if (t->expire_ms >= 0) wait_ms = std::min(wait_ms, std::max<int64_t>(0, t->expire_ms - now_ms));
    }
    wait_ms = std::min<int64_t>(wait_ms, 1000);
    int n = ::poll(fds.data(), fds.size(), int(wait_ms));
    if (n < 0 && errno == EINTR) n = 0;
    slirp_pollfds_poll(slirp_, n < 0, Cb::get_revents, this);
    pollfds_ = nullptr;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      if (::read(wake_fd_, &v, sizeof v) < 0 && errno != EAGAIN) std::perror("vireo slirp: wake eventfd read");
    }
    uint64_t kicks;
    if ((fds[1].revents & POLLIN) && ::read(kick_fd_, &kicks, sizeof kicks) == sizeof kicks) {
      in_kick_ = true;
      kick_();
      in_kick_ = false;
    }
  }
}

}  // namespace vireo::net
