// Queue notifications through ioeventfds: one eventfd per queue, bound by
// the board to the queue's notify address (KVM_IOEVENTFD) whenever the BAR
// is mapped, and one thread that waits on them and kicks the device. A
// driver's notify write then costs the vCPU no exit to userspace. Where KVM
// refuses the binding, nothing changes: the write exits as MMIO and the
// transport's notify region handles it.
#pragma once
#include <atomic>
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
  // The transport's Hooks::notify_mapped.
  void mapped(int q, uint64_t gpa, bool mapped);
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
  };
  Bind bind_;
  std::function<void(int)> kick_;
  std::vector<Slot> slots_;
  int stop_fd_ = -1;
  mutable std::mutex mu_;
  std::atomic<uint64_t> kicks_{0};
  std::thread thread_;
};

}  // namespace vireo::virtio
