#include "devices/virtio/notify_thread.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "sandbox/confine.h"

namespace vireo::virtio {

NotifyThread::NotifyThread(int queues, Bind bind) : bind_(std::move(bind)), slots_(size_t(queues)) {
  for (auto& s : slots_) s.efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ctl_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void NotifyThread::start(std::function<void(int q)> kick) {
  if (thread_.joinable()) return;
  kick_ = std::move(kick);
  thread_ = std::thread([this] { run(); });
}

NotifyThread::~NotifyThread() {
  {
    std::lock_guard g(pause_mu_);
    stopping_ = true;
  }
  pause_cv_.notify_all();
  uint64_t one = 1;
  if (stop_fd_ >= 0 && ::write(stop_fd_, &one, sizeof one) < 0) {
    // Cannot happen for an eventfd below its maximum; the join below would hang, so say so.
    std::perror("virtio notify thread: stop eventfd write");
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard g(mu_);
  for (auto& s : slots_) {
    if (s.bound) bind_(s.gpa, s.efd, false);
    if (s.efd >= 0) ::close(s.efd);
  }
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (ctl_fd_ >= 0) ::close(ctl_fd_);
}

void NotifyThread::pause() {
  std::unique_lock g(pause_mu_);
  if (paused_) return;
  paused_ = true;
  uint64_t gen = ++pause_gen_;
  if (!thread_.joinable()) {
    parked_gen_ = gen;  // nothing runs kicks; start() begins parked
    return;
  }
  uint64_t one = 1;
  if (ctl_fd_ < 0 || ::write(ctl_fd_, &one, sizeof one) != sizeof one) {
    std::perror("virtio notify thread: pause eventfd write");
    return;
  }
  pause_cv_.wait(g, [&] { return parked_gen_ == gen || stopping_; });
}

void NotifyThread::resume() {
  {
    std::lock_guard g(pause_mu_);
    if (!paused_) return;
    paused_ = false;
  }
  pause_cv_.notify_all();
}

void NotifyThread::mapped(int q, uint64_t gpa, bool mapped) {
  std::lock_guard g(mu_);
  if (q < 0 || size_t(q) >= slots_.size()) return;
  Slot& s = slots_[size_t(q)];
  if (s.efd < 0) return;
  if (s.bound) {
    bind_(s.gpa, s.efd, false);
    s.bound = false;
  }
  if (mapped) {
    s.gpa = gpa;
    s.bound = bind_(gpa, s.efd, true) == 0;
  }
}

int NotifyThread::eventfd(int q) const {
  std::lock_guard g(mu_);
  return q >= 0 && size_t(q) < slots_.size() ? slots_[size_t(q)].efd : -1;
}

void NotifyThread::hand_off(int q) {
  std::lock_guard g(mu_);
  if (thread_.joinable() || q < 0 || size_t(q) >= slots_.size()) return;
  slots_[size_t(q)].handed_off = true;
}

bool NotifyThread::bound(int q) const {
  std::lock_guard g(mu_);
  return q >= 0 && size_t(q) < slots_.size() && slots_[size_t(q)].bound;
}

void NotifyThread::run() {
  sandbox::confine_device_thread("a virtio notify thread");  // guest-driven queue work (sandbox/confine.h)
  std::vector<pollfd> fds;
  // A handed-off queue keeps its place with fd -1 (poll() skips it).
  for (auto& s : slots_) fds.push_back({s.handed_off ? -1 : s.efd, POLLIN, 0});
  const size_t nq = fds.size();
  fds.push_back({ctl_fd_, POLLIN, 0});
  fds.push_back({stop_fd_, POLLIN, 0});
  auto kick_signalled = [&](bool all) {
    for (size_t i = 0; i < nq; i++) {
      if (!all && !(fds[i].revents & POLLIN)) continue;
      uint64_t v;
      if (fds[i].fd >= 0 && ::read(fds[i].fd, &v, sizeof v) == sizeof v) {
        kicks_++;
        kick_(int(i));
      }
    }
  };
  // While paused: each new pause generation first handles every kick already
  // signalled (read from every eventfd, so one that landed after poll()
  // returned counts too), then says it is parked. False: stopping.
  auto park = [&] {
    std::unique_lock g(pause_mu_);
    while (paused_ && !stopping_) {
      uint64_t gen = pause_gen_;
      if (parked_gen_ != gen) {
        g.unlock();
        kick_signalled(true);
        g.lock();
        parked_gen_ = gen;
        pause_cv_.notify_all();
        continue;
      }
      pause_cv_.wait(g, [&] { return !paused_ || stopping_ || pause_gen_ != parked_gen_; });
    }
    return !stopping_;
  };
  if (!park()) return;  // paused before start()
  for (;;) {
    int n = ::poll(fds.data(), fds.size(), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds.back().revents) return;
    kick_signalled(false);
    if (fds[nq].revents & POLLIN) {
      uint64_t v;
      if (::read(ctl_fd_, &v, sizeof v) < 0) {
        // EAGAIN only (another wake-up read it): nothing to do
      }
      if (!park()) return;
    }
  }
}

}  // namespace vireo::virtio
