#include "net/dhcp.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>

namespace vireo::net {

namespace {

constexpr size_t kEth = 14;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

}  // namespace

DhcpParse parse_dhcp(std::span<const uint8_t> frame, uint16_t to_port, DhcpMessage& out) {
  const uint8_t* f = frame.data();
  const size_t n = frame.size();
  if (n < kEth + 20 || rd16(f + 12) != 0x0800) return DhcpParse::NotDhcp;
  const uint8_t* ip = f + kEth;
  const size_t ihl = size_t(ip[0] & 15) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17 || n < kEth + ihl + 8) return DhcpParse::NotDhcp;
  if (rd16(ip + 6) & 0x3fff) return DhcpParse::NotDhcp;  // a fragment
  const uint8_t* udp = ip + ihl;
  if (rd16(udp + 2) != to_port) return DhcpParse::NotDhcp;
  const size_t ulen = std::min<size_t>(rd16(udp + 4), n - kEth - ihl);
  if (ulen < 8 + kBootpFixed + 4) return DhcpParse::Malformed;
  const uint8_t* b = udp + 8;
  const size_t blen = ulen - 8;
  if ((b[0] != 1 && b[0] != 2) || b[1] != 1 || b[2] != 6 || rd32(b + kBootpFixed) != kDhcpMagic) return DhcpParse::Malformed;
  DhcpMessage m;
  m.op = b[0];
  m.xid = rd32(b + 4);
  m.flags = rd16(b + 10);
  m.ciaddr = rd32(b + 12);
  m.yiaddr = rd32(b + 16);
  std::memcpy(m.chaddr.data(), b + 28, 6);
  for (size_t i = kBootpFixed + 4; i < blen;) {
    const uint8_t code = b[i];
    if (code == 255) break;
    if (code == 0) {
      i++;
      continue;
    }
    if (i + 2 > blen || i + 2 + b[i + 1] > blen) return DhcpParse::Malformed;  // runs past the packet
    const uint8_t len = b[i + 1];
    const uint8_t* v = b + i + 2;
    if (code == 53 && len == 1) m.type = v[0];
    if (code == 50 && len == 4) m.requested = rd32(v);
    if (code == 54 && len == 4) m.server_id = rd32(v);
    if (code == 51 && len == 4) m.lease_s = rd32(v);
    if (code == 12) {
      for (uint8_t k = 0; k < len; k++) {
        const char c = char(v[k]);
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_') m.hostname += c;
      }
    }
    i += 2 + size_t(len);
  }
  m.bootp = std::span<const uint8_t>(b, blen);
  out = std::move(m);
  return DhcpParse::Ok;
}

void LeaseWatch::from_guest(std::span<const uint8_t> frame) {
  DhcpMessage m;
  if (parse_dhcp(frame, 67, m) != DhcpParse::Ok || m.op != 1) return;
  std::lock_guard g(mu_);
  if (m.type == kDhcpRelease) {
    std::erase_if(leases_, [&](const DhcpLease& l) { return l.mac == m.chaddr; });
    return;
  }
  if (m.hostname.empty()) return;
  auto h = std::find_if(hostnames_.begin(), hostnames_.end(), [&](const auto& x) { return x.first == m.chaddr; });
  if (h != hostnames_.end()) h->second = m.hostname;
  else if (hostnames_.size() < 256) hostnames_.emplace_back(m.chaddr, m.hostname);
  for (auto& l : leases_)
    if (l.mac == m.chaddr) l.hostname = m.hostname;
}

void LeaseWatch::to_guest(std::span<const uint8_t> frame) {
  DhcpMessage m;
  if (parse_dhcp(frame, 68, m) != DhcpParse::Ok || m.op != 2) return;
  std::lock_guard g(mu_);
  if (m.type == kDhcpNak) {
    std::erase_if(leases_, [&](const DhcpLease& l) { return l.mac == m.chaddr; });
    return;
  }
  if (m.type != kDhcpAck || m.yiaddr == 0) return;
  const int64_t now = int64_t(::time(nullptr));
  auto l = std::find_if(leases_.begin(), leases_.end(), [&](const DhcpLease& x) { return x.mac == m.chaddr; });
  if (l == leases_.end()) {
    if (leases_.size() >= 256) return;
    l = leases_.insert(leases_.end(), DhcpLease{m.chaddr, 0, 0, {}});
  }
  l->ip = m.yiaddr;
  l->expires = now + (m.lease_s ? int64_t(m.lease_s) : 86400);
  auto h = std::find_if(hostnames_.begin(), hostnames_.end(), [&](const auto& x) { return x.first == m.chaddr; });
  if (h != hostnames_.end()) l->hostname = h->second;
}

std::vector<DhcpLease> LeaseWatch::leases(int64_t now) const {
  std::lock_guard g(mu_);
  std::vector<DhcpLease> out;
  for (const auto& l : leases_)
    if (l.expires > now) out.push_back(l);
  return out;
}

}  // namespace vireo::net
