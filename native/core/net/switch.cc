// The isolated network switch. See switch.h.
#include "net/switch.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace vireo::net {

namespace {

constexpr size_t kMacTableMax = 4096;
constexpr int64_t kMacAgeS = 300;  // 802.1D's default ageing time
constexpr int kFramesPerTurn = 64;  // per port and poll round: no port starves the others

int64_t mono_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}
int64_t real_s() { return int64_t(::time(nullptr)); }

uint64_t mac_key(const uint8_t* m) {
  uint64_t k = 0;
  for (int i = 0; i < 6; i++) k = k << 8 | m[i];
  return k;
}
bool is_group(const uint8_t* m) { return m[0] & 1; }
bool is_zero(const uint8_t* m) { return !(m[0] | m[1] | m[2] | m[3] | m[4] | m[5]); }

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
void wr16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (24 - 8 * i));
}

uint16_t ip_checksum(const uint8_t* p, size_t n) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t(p[i]) << 8 | p[i + 1];
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

}  // namespace

uint32_t parse_ipv4(const std::string& s, const char* what) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) throw NetError(std::string(what) + " '" + s + "' is not an IPv4 address");
  return ntohl(a.s_addr);
}

std::string format_ipv4(uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string(ip >> 16 & 255) + "." + std::to_string(ip >> 8 & 255) + "." + std::to_string(ip & 255);
}

Switch::Switch(SwitchOptions opt) : opt_(std::move(opt)) {
  const DhcpConfig& d = opt_.dhcp;
  if (d.enabled) {
    uint32_t net = d.server & d.netmask;
    auto inside = [&](uint32_t a) { return (a & d.netmask) == net && a != net && a != (net | ~d.netmask); };
    if (!d.netmask || !inside(d.server)) throw NetError("DHCP: the server address " + format_ipv4(d.server) + " is not a host address of its network");
    if (!inside(d.range_start) || !inside(d.range_end) || d.range_end < d.range_start) {
      throw NetError("DHCP: the range " + format_ipv4(d.range_start) + "-" + format_ipv4(d.range_end) + " is not inside the network");
    }
    if (d.server >= d.range_start && d.server <= d.range_end) throw NetError("DHCP: the server address lies inside the range");
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (opt_.path.empty() || opt_.path.size() >= sizeof sa.sun_path) throw NetError("switch socket path '" + opt_.path + "' is empty or too long for a UNIX socket");
  std::memcpy(sa.sun_path, opt_.path.c_str(), opt_.path.size() + 1);
  listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw NetError(std::string("switch: socket: ") + std::strerror(errno));
  ::unlink(opt_.path.c_str());  // left by a switch that was killed
  mode_t old = ::umask(0177);
  int r = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int e = errno;
  ::umask(old);
  if (r != 0 || ::listen(listen_fd_, 16) != 0) {
    if (r == 0) e = errno;
    ::close(listen_fd_);
    throw NetError("switch: cannot listen on " + opt_.path + ": " + std::strerror(e));
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

Switch::~Switch() { stop(); }

void Switch::stop() {
  std::lock_guard g(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  quit_ = true;
  uint64_t one = 1;
  if (::write(wake_fd_, &one, 8) < 0) {
  }
  if (thread_.joinable()) thread_.join();
  for (auto& p : ports_) ::close(p.fd);
  ports_.clear();
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::unlink(opt_.path.c_str());
  std::lock_guard c(mu_);
  counters_.ports = 0;
}

SwitchCounters Switch::counters() const {
  std::lock_guard g(mu_);
  return counters_;
}

std::vector<SwitchLease> Switch::leases() const {
  std::lock_guard g(mu_);
  return leases_;
}

void Switch::run() {
  std::vector<uint8_t> buf(kSwitchMaxFrame + 1);
  std::vector<pollfd> fds;
  while (!quit_) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& p : ports_) fds.push_back({p.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (quit_) break;
    // Ports first (indices match fds[2..] before any port is added or dropped).
    std::vector<size_t> gone;
    for (size_t i = 0; i < ports_.size(); i++) {
      short re = fds[i + 2].revents;
      if (!re) continue;
      bool closed = (re & (POLLERR | POLLNVAL)) != 0;
      for (int k = 0; k < kFramesPerTurn && !closed; k++) {
        ssize_t n = ::recv(ports_[i].fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) closed = true;
          break;
        }
        if (n == 0) {  // the engine went away (SEQPACKET: a zero-length packet is EOF)
          closed = true;
          break;
        }
        on_frame(i, buf.data(), size_t(n));
      }
      if (!closed && (re & POLLHUP)) closed = true;
      if (closed) gone.push_back(i);
    }
    for (auto it = gone.rbegin(); it != gone.rend(); ++it) drop_port(*it);
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::getuid() || ports_.size() >= opt_.max_ports) {
          ::close(fd);
          continue;
        }
        ports_.push_back({fd, next_port_id_++});
        std::lock_guard g(mu_);
        counters_.ports = ports_.size();
      }
    }
  }
}

void Switch::drop_port(size_t i) {
  uint64_t id = ports_[i].id;
  ::close(ports_[i].fd);
  ports_.erase(ports_.begin() + std::ptrdiff_t(i));
  std::erase_if(macs_, [id](const auto& kv) { return kv.second.port == id; });
  std::lock_guard g(mu_);
  counters_.ports = ports_.size();
}

void Switch::output(size_t to, const uint8_t* f, size_t n) {
  ssize_t r = ::send(ports_[to].fd, f, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (r != ssize_t(n)) {
    std::lock_guard g(mu_);
    counters_.dropped_full++;  // full (EAGAIN) or going away: either way the frame is lost
  }
}

void Switch::on_frame(size_t from, const uint8_t* f, size_t n) {
  {
    std::lock_guard g(mu_);
    counters_.frames++;
    if (n < kEthHeader || n > kSwitchMaxFrame || is_group(f + 6) || is_zero(f + 6)) {
      counters_.dropped_malformed++;
      return;
    }
  }
  int64_t now = mono_s();
  uint64_t src = mac_key(f + 6);
  auto it = macs_.find(src);
  if (it != macs_.end()) {
    it->second = {ports_[from].id, now};
  } else {
    if (macs_.size() >= kMacTableMax) std::erase_if(macs_, [now](const auto& kv) { return now - kv.second.seen > kMacAgeS; });
    if (macs_.size() < kMacTableMax) macs_[src] = {ports_[from].id, now};
  }
  if (opt_.dhcp.enabled && (dhcp(from, f, n) || arp(from, f, n))) return;
  if (!is_group(f)) {
    auto d = macs_.find(mac_key(f));
    if (d != macs_.end() && now - d->second.seen <= kMacAgeS) {
      if (d->second.port == ports_[from].id) return;  // already on the sender's segment
      for (size_t i = 0; i < ports_.size(); i++) {
        if (ports_[i].id == d->second.port) {
          {
            std::lock_guard g(mu_);
            counters_.forwarded++;
          }
          output(i, f, n);
          return;
        }
      }
    }
  }
  {
    std::lock_guard g(mu_);
    counters_.flooded++;
  }
  for (size_t i = 0; i < ports_.size(); i++) {
    if (i != from) output(i, f, n);
  }
}

bool Switch::arp(size_t from, const uint8_t* f, size_t n) {
  // Ethernet/IPv4 ARP request (RFC 826) for the server's address.
  if (n < kEthHeader + 28 || rd16(f + 12) != 0x0806) return false;
  const uint8_t* a = f + kEthHeader;
  if (rd16(a) != 1 || rd16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 || rd16(a + 6) != 1) return false;
  if (rd32(a + 24) != opt_.dhcp.server) return false;
  uint8_t r[kEthHeader + 28] = {};
  std::memcpy(r, a + 8, 6);
  std::memcpy(r + 6, kOwnMac.data(), 6);
  wr16(r + 12, 0x0806);
  uint8_t* p = r + kEthHeader;
  wr16(p, 1);
  wr16(p + 2, 0x0800);
  p[4] = 6;
  p[5] = 4;
  wr16(p + 6, 2);
  std::memcpy(p + 8, kOwnMac.data(), 6);
  wr32(p + 14, opt_.dhcp.server);
  std::memcpy(p + 18, a + 8, 10);  // the asker's MAC and IP
  output(from, r, sizeof r);
  return true;
}

uint32_t Switch::pick_address(const Mac& mac, uint32_t requested, int64_t now) {
  // Called with mu_ held. The MAC's lease (even expired: a client keeps its
  // address), else the requested address when free, else the first free one
  // (an expired lease of another MAC counts as free).
  const DhcpConfig& d = opt_.dhcp;
  for (auto& l : leases_) {
    if (l.mac == mac) return l.ip;
  }
  auto taken = [&](uint32_t ip) {
    return ip == d.server || ip == d.router || ip == d.dns ||
           std::any_of(leases_.begin(), leases_.end(), [&](const SwitchLease& l) { return l.ip == ip && l.expires > now; });
  };
  if (requested >= d.range_start && requested <= d.range_end && !taken(requested)) return requested;
  for (uint32_t ip = d.range_start; ip <= d.range_end && ip != 0; ip++) {
    if (!taken(ip)) return ip;
  }
  return 0;
}

bool Switch::dhcp(size_t from, const uint8_t* f, size_t n) {
  // IPv4 / UDP to port 67: DHCP for us, consumed even when malformed.
  DhcpMessage m;
  const DhcpParse p = parse_dhcp(std::span<const uint8_t>(f, n), 67, m);
  if (p == DhcpParse::NotDhcp) return false;
  if (p == DhcpParse::Malformed || m.op != 1) return true;
  const uint8_t* b = m.bootp.data();
  const uint8_t type = m.type;
  const uint32_t requested = m.requested, server_id = m.server_id, ciaddr = m.ciaddr;
  const std::string& hostname = m.hostname;
  const Mac& mac = m.chaddr;
  const DhcpConfig& d = opt_.dhcp;
  int64_t now = real_s();
  uint8_t reply = 0;
  uint32_t yiaddr = 0;
  {
    std::lock_guard g(mu_);
    if (type == kDhcpDiscover) {
      yiaddr = pick_address(mac, requested, now);
      if (yiaddr) reply = kDhcpOffer;  // none free: no offer (the client retries)
    } else if (type == kDhcpRequest) {
      if (server_id && server_id != d.server) return true;  // it chose another server
      uint32_t want = requested ? requested : ciaddr;
      uint32_t got = pick_address(mac, want, now);
      if (want && got == want) {
        yiaddr = want;
        reply = kDhcpAck;
        auto l = std::find_if(leases_.begin(), leases_.end(), [&](const SwitchLease& x) { return x.mac == mac; });
        if (l == leases_.end()) l = leases_.insert(leases_.end(), SwitchLease{mac, want, 0, {}});
        // Another MAC's expired lease on this address is gone now.
        std::erase_if(leases_, [&](const SwitchLease& x) { return x.ip == want && x.mac != mac; });
        l = std::find_if(leases_.begin(), leases_.end(), [&](const SwitchLease& x) { return x.mac == mac; });
        l->ip = want;
        l->expires = now + d.lease_s;
        if (!hostname.empty()) l->hostname = hostname;
      } else {
        reply = kDhcpNak;
      }
    } else if (type == kDhcpRelease) {
      std::erase_if(leases_, [&](const SwitchLease& x) { return x.mac == mac && x.ip == ciaddr; });
      return true;
    } else if (type == kDhcpDecline) {
      // The address is in use by someone else (RFC 2131 4.3.3): keep it out for a lease time.
      for (auto& l : leases_) {
        if (l.mac == mac) l = SwitchLease{Mac{}, l.ip, now + d.lease_s, "declined"};
      }
      return true;
    } else {
      return true;  // INFORM and others: not served
    }
  }
  if (!reply) return true;

  // The reply: Ethernet + IPv4 + UDP 67→68 + BOOTREPLY (+ options), at least 300 bytes of BOOTP.
  std::vector<uint8_t> o;
  auto opt = [&](uint8_t code, std::initializer_list<uint8_t> v) {
    o.push_back(code);
    o.push_back(uint8_t(v.size()));
    o.insert(o.end(), v);
  };
  auto opt32 = [&](uint8_t code, uint32_t v) { opt(code, {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}); };
  opt(53, {reply});
  opt32(54, d.server);
  if (reply != kDhcpNak) {
    opt32(51, d.lease_s);
    opt32(58, d.lease_s / 2);
    opt32(59, d.lease_s / 8 * 7);
    opt32(1, d.netmask);
    if (d.router) opt32(3, d.router);
    if (d.dns) opt32(6, d.dns);
  }
  o.push_back(255);
  size_t bootp_len = std::max<size_t>(kBootpFixed + 4 + o.size(), 300);
  size_t total = kEthHeader + 20 + 8 + bootp_len;
  std::vector<uint8_t> r(total, 0);
  bool bcast = reply == kDhcpNak || (rd16(b + 10) & 0x8000) || ciaddr == 0;
  if (bcast) std::memset(r.data(), 0xff, 6);
  else std::memcpy(r.data(), mac.data(), 6);
  std::memcpy(r.data() + 6, kOwnMac.data(), 6);
  wr16(r.data() + 12, 0x0800);
  uint8_t* rip = r.data() + kEthHeader;
  rip[0] = 0x45;
  wr16(rip + 2, uint16_t(20 + 8 + bootp_len));
  rip[8] = 64;
  rip[9] = 17;
  wr32(rip + 12, d.server);
  wr32(rip + 16, bcast ? 0xffffffff : ciaddr);
  wr16(rip + 10, ip_checksum(rip, 20));
  uint8_t* rudp = rip + 20;
  wr16(rudp, 67);
  wr16(rudp + 2, 68);
  wr16(rudp + 4, uint16_t(8 + bootp_len));  // checksum 0: none (allowed for UDP over IPv4)
  uint8_t* rb = rudp + 8;
  rb[0] = 2;
  rb[1] = 1;
  rb[2] = 6;
  std::memcpy(rb + 4, b + 4, 4);    // xid
  std::memcpy(rb + 10, b + 10, 2);  // flags
  std::memcpy(rb + 12, b + 12, 4);  // ciaddr
  wr32(rb + 16, yiaddr);
  wr32(rb + 20, d.server);
  std::memcpy(rb + 24, b + 24, 4);  // giaddr
  std::memcpy(rb + 28, b + 28, 16);
  wr32(rb + kBootpFixed, kDhcpMagic);
  std::memcpy(rb + kBootpFixed + 4, o.data(), o.size());
  {
    std::lock_guard g(mu_);
    counters_.dhcp_replies++;
  }
  output(from, r.data(), r.size());
  return true;
}

}  // namespace vireo::net
