// Queue notifications through ioeventfds: one eventfd per queue, bound by
// the board to the queue's notify address (KVM_IOEVENTFD) whenever the BAR
// is mapped, and one thread that waits on them and kicks the device. A
// driver's notify write then costs the vCPU no exit to userspace. Where KVM
// refuses the binding, nothing changes: the write exits as MMIO and the
// transport's notify region handles it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vireo::virtio {

class NotifyThread {
public:
  // bind(gpa, efd, assign): register (assign) or remove an ioeventfd; 0 or -errno.
  using Bind = std::function<int(uint64_t gpa, int efd, bool assign)>;
  explicit NotifyThread(int queues, Bind bind);
  ~NotifyThread();
  NotifyThread(const NotifyThread&) = delete;
  NotifyThread& operator=(const NotifyThread&) = delete;

  // Starts the thread; `kick(q)` runs on it for every notification.
  void start(std::function<void(int q)> kick);
  // The machine pauses (every vCPU parked): the thread first handles every
  // notification already signalled (a driver's write that reached the
  // eventfd before its vCPU parked), then waits, without touching the
  // device, until resume(); pause() returns once that has happened, so no
  // request starts after it. Idempotent; a thread not started pauses at once.
  void pause();
  void resume();
  // The transport's Hooks::notify_mapped.
  void mapped(int q, uint64_t gpa, bool mapped);
  // Queue q's notification eventfd (-1: none).
  int eventfd(int q) const;
  // Queue q's eventfd is polled by another thread from now on (a network
  // backend that runs the transmit queue on its own loop, as QEMU's main
  // loop does): this thread leaves it alone; mapped() still binds and
  // unbinds it. Before start().
  void hand_off(int q);
  // Is queue q's notify address bound to its eventfd now?
  bool bound(int q) const;
  // Tests: how many kicks came through eventfds.
  uint64_t kicks() const { return kicks_.load(); }

private:
  void run();
  struct Slot {
    int efd = -1;
    uint64_t gpa = 0;
    bool bound = false;
    bool handed_off = false;
  };
  Bind bind_;
  std::function<void(int)> kick_;
  std::vector<Slot> slots_;
  int stop_fd_ = -1;
  mutable std::mutex mu_;
  std::atomic<uint64_t> kicks_{0};
  // Pausing: pause() sets paused_, a new pause_gen_, and writes ctl_fd_; the
  // thread handles the pending kicks, answers with parked_gen_ = that
  // generation and waits on pause_cv_.
  int ctl_fd_ = -1;
  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  bool paused_ = false, stopping_ = false;
  uint64_t pause_gen_ = 0, parked_gen_ = 0;
  std::thread thread_;
};

}  // namespace vireo::virtio
