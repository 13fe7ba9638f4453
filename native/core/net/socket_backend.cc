// Client of an isolated network's switch. See socket_backend.h.
#include "net/socket_backend.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "net/switch.h"

namespace vireo::net {

SocketBackend::SocketBackend(std::string path) : path_(std::move(path)) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof sa.sun_path) throw NetError("switch socket path '" + path_ + "' is empty or too long");
  std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw NetError(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    ::close(fd_);
    fd_ = -1;
    if (e == ENOENT || e == ECONNREFUSED) {
      throw NetError("no network switch listens on " + path_ + " (the network is not started: start it under Networks)");
    }
    throw NetError("cannot reach the network switch on " + path_ + ": " + std::strerror(e));
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

SocketBackend::~SocketBackend() {
  stop();
  if (fd_ >= 0) ::close(fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void SocketBackend::start(Receiver rx) {
  rx_ = std::move(rx);
  thread_ = std::thread([this] { run(); });
}

void SocketBackend::stop() {
  if (stopped_.exchange(true)) return;
  quit_ = true;
  uint64_t one = 1;
  if (::write(wake_fd_, &one, 8) < 0) {
  }
  if (thread_.joinable()) thread_.join();
  ::shutdown(fd_, SHUT_RDWR);
}

bool SocketBackend::send(std::span<const uint8_t> frame) {
  if (stopped_ || frame.size() > kSwitchMaxFrame) {
    if (!stopped_) dropped_++;
    return false;
  }
  return ::send(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL) == ssize_t(frame.size());
}

void SocketBackend::run() {
  std::vector<uint8_t> buf(kSwitchMaxFrame);
  while (!quit_) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (quit_) return;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;  // the switch stopped: the cable is cut
      if (n > 0 && size_t(n) <= buf.size() && size_t(n) >= kEthHeader && rx_) rx_({buf.data(), size_t(n)});
    }
  }
}

}  // namespace vireo::net
