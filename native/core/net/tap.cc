// TAP + host bridge backend. See tap.h.
#include "net/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#ifndef SIOCBRADDIF
#define SIOCBRADDIF 0x89a2
#endif

namespace vireo::net {

namespace {

bool name_ok(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ) return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}

std::string no_rights(const std::string& what) {
  return what + " needs CAP_NET_ADMIN, which the engine does not have. Either grant it to the engine host "
         "(e.g. `sudo setcap cap_net_admin+ep` on the Node/Electron binary that runs it), or have an administrator "
         "make a persistent TAP you own that is already on the bridge and up "
         "(`sudo ip tuntap add dev vireo-tap0 mode tap user $USER && sudo ip link set vireo-tap0 master BRIDGE up`) "
         "and name it as the NIC's TAP device";
}

// The bridge a network interface is a port of ("" = none), from sysfs (which
// shows the namespace it was mounted in: in another one this finds nothing
// and SIOCBRADDIF decides).
std::string master_of(const std::string& ifname) {
  char buf[PATH_MAX];
  std::string link = "/sys/class/net/" + ifname + "/master";
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = 0;
  const char* slash = std::strrchr(buf, '/');
  return slash ? slash + 1 : buf;
}

}  // namespace

TapBackend::TapBackend(TapOptions opt) : opt_(std::move(opt)) {
  if (!opt_.bridge.empty() && !name_ok(opt_.bridge)) throw NetError("'" + opt_.bridge + "' is not a network interface name");
  if (!opt_.tap.empty() && !name_ok(opt_.tap)) throw NetError("'" + opt_.tap + "' is not a network interface name");
  if (!opt_.bridge.empty()) {
    if (::if_nametoindex(opt_.bridge.c_str()) == 0) throw NetError("there is no network interface '" + opt_.bridge + "' on this host to bridge to");
  }
  fd_ = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw NetError(std::string("cannot open /dev/net/tun: ") + std::strerror(errno) + " (is the tun module loaded?)");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, opt_.tap.empty() ? "vireo%d" : opt_.tap.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd_, TUNSETIFF, &ifr) != 0) {
    int e = errno;
    ::close(fd_);
    fd_ = -1;
    if (e == EPERM || e == EACCES) {
      throw NetError(opt_.tap.empty() ? no_rights("making a TAP device")
                                      : "TAP '" + opt_.tap + "' is not yours to open (it must be made with `ip tuntap add ... user $USER`), or " + no_rights("making it"));
    }
    if (e == EBUSY) throw NetError("TAP '" + opt_.tap + "' is in use by another program");
    throw NetError(std::string("TUNSETIFF: ") + std::strerror(e));
  }
  ifname_ = ifr.ifr_name;
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto fail = [&](const std::string& msg) {
    if (s >= 0) ::close(s);
    ::close(fd_);
    fd_ = -1;
    throw NetError(msg);
  };
  if (s < 0) fail(std::string("socket: ") + std::strerror(errno));
  if (!opt_.bridge.empty() && master_of(ifname_) != opt_.bridge) {
    ifreq br{};
    std::strncpy(br.ifr_name, opt_.bridge.c_str(), IFNAMSIZ - 1);
    br.ifr_ifindex = int(::if_nametoindex(ifname_.c_str()));
    if (::ioctl(s, SIOCBRADDIF, &br) != 0) {
      int e = errno;
      if (e == EPERM || e == EACCES) fail(no_rights("adding TAP '" + ifname_ + "' to bridge '" + opt_.bridge + "'"));
      if (e == EOPNOTSUPP || e == EINVAL || e == ENOTTY) fail("'" + opt_.bridge + "' is not a bridge (make one: `ip link add " + opt_.bridge + " type bridge`)");
      if (e == EBUSY) fail("TAP '" + ifname_ + "' is already a port of another bridge");
      fail("adding TAP '" + ifname_ + "' to bridge '" + opt_.bridge + "': " + std::strerror(e));
    }
  }
  ifreq up{};
  std::strncpy(up.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &up) == 0 && !(up.ifr_flags & IFF_UP)) {
    up.ifr_flags = short(up.ifr_flags | IFF_UP);
    if (::ioctl(s, SIOCSIFFLAGS, &up) != 0) {
      int e = errno;
      if (e == EPERM || e == EACCES) fail(no_rights("bringing TAP '" + ifname_ + "' up"));
      fail("bringing TAP '" + ifname_ + "' up: " + std::strerror(e));
    }
  }
  ::close(s);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

TapBackend::~TapBackend() {
  stop();
  if (fd_ >= 0) ::close(fd_);  // a TAP made here (not persistent) goes away with it
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void TapBackend::start(Receiver rx) {
  rx_ = std::move(rx);
  thread_ = std::thread([this] { run(); });
}

void TapBackend::stop() {
  if (stopped_.exchange(true)) return;
  quit_ = true;
  uint64_t one = 1;
  if (::write(wake_fd_, &one, 8) < 0) {
  }
  if (thread_.joinable()) thread_.join();
}

bool TapBackend::send(std::span<const uint8_t> frame) {
  if (stopped_ || frame.size() < kMinFrame || frame.size() > kMaxFrame) return false;
  return ::write(fd_, frame.data(), frame.size()) == ssize_t(frame.size());
}

void TapBackend::run() {
  std::vector<uint8_t> buf(kMaxFrame);
  while (!quit_) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (quit_) return;
    if (fds[1].revents & POLLIN) {
      for (int k = 0; k < 64; k++) {
        ssize_t n = ::read(fd_, buf.data(), buf.size());
        if (n < 0) break;
        if (size_t(n) >= kEthHeader && rx_) rx_({buf.data(), size_t(n)});
      }
    }
    if (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL)) return;  // the device was deleted
  }
}

}  // namespace vireo::net
