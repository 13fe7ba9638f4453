// Engine host confinement (sandbox/confine.h) in a forked child: afterwards it
// cannot run programs, trace processes or load modules (EPERM), its status
// says NoNewPrivs and seccomp filter mode, core files are off, and what a VMM
// uses still works: files, threads, memory, sockets and /dev/kvm. A device
// thread (confine_device_thread) then cannot open files or sockets, make
// threads or processes, map executable memory or signal other processes
// (EPERM, said on stderr once per call), while I/O on descriptors it has,
// memory, futexes and KVM ioctls go on, and other threads keep their rights.
#include "sandbox/confine.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "check.h"

namespace {

// Runs `fn` in a forked child; its exit code is fn's (0 = every expectation
// held, else the number of the first that failed).
int in_child(int (*fn)()) {
  pid_t p = ::fork();
  if (p == 0) ::_exit(fn());
  int st = 0;
  ::waitpid(p, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

std::string status_field(const char* name) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(name, 0) == 0) return line.substr(std::strlen(name));
  return "";
}

int confined_child() {
  auto r = vireo::sandbox::confine_engine_host();
  if (!r.no_new_privs || !r.seccomp || !r.core_limit) return 1;
  if (status_field("NoNewPrivs:\t") != "1") return 2;
  if (status_field("Seccomp:\t") != "2") return 3;
  // Refused.
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  errno = 0;
  if (::execve("/bin/true", argv, environ) != -1 || errno != EPERM) return 4;
  errno = 0;
  if (::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != -1 || errno != EPERM) return 5;
  errno = 0;
  if (::syscall(SYS_finit_module, -1, "", 0) != -1 || errno != EPERM) return 6;
  errno = 0;
  if (::syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, nullptr) != -1 || errno != EPERM) return 7;
  errno = 0;
  if (::syscall(SYS_ptrace | 0x40000000, PTRACE_TRACEME, 0, 0, 0) != -1 || errno != EPERM) return 8;  // x32 number
  rlimit core{};
  if (::getrlimit(RLIMIT_CORE, &core) != 0 || core.rlim_cur != 0 || core.rlim_max != 0) return 9;
  // Still works: files, memory, threads, sockets, KVM.
  int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  char b[64];
  if (fd < 0 || ::read(fd, b, sizeof b) <= 0) return 10;
  ::close(fd);
  void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return 11;
  std::memset(m, 1, 4096);
  int v = 0;
  std::thread t([&] { v = 42; });
  t.join();
  if (v != 42) return 12;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return 13;
  int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm >= 0) {
    if (::ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) return 14;
    int vm = ::ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) return 15;
    ::close(vm);
  }
  return 0;
}

int threads_get_it_too() {
  // A thread started before confinement is confined as well (TSYNC).
  std::atomic<int> step{0};
  int result = -1;
  std::thread t([&] {
    while (step.load() == 0) std::this_thread::yield();
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    errno = 0;
    result = (::execve("/bin/true", argv, environ) == -1 && errno == EPERM) ? 0 : 1;
  });
  auto r = vireo::sandbox::confine_engine_host();
  step = 1;
  t.join();
  return r.seccomp ? result : 2;
}

int device_thread_child() {
  // Not wanted before the engine host is confined: a no-op.
  if (vireo::sandbox::device_threads_confined()) return 1;
  if (!vireo::sandbox::confine_device_thread("test thread").empty()) return 2;
  if (status_field("Seccomp:\t") != "0") return 3;
  auto r = vireo::sandbox::confine_engine_host();
  if (!r.seccomp || !vireo::sandbox::device_threads_confined()) return 4;
  // A descriptor opened before, as a device has its image and KVM fds.
  int pre = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int sv[2];
  if (pre < 0 || ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return 5;
  const pid_t parent = ::getppid();
  std::atomic<int> result{-1};
  std::thread dev([&] {
    result = [&]() -> int {
      if (!vireo::sandbox::confine_device_thread("test device thread").empty()) return 10;
      char b[64];
      if (::pread(pre, b, sizeof b, 0) <= 0) return 11;
      if (::send(sv[0], "x", 1, MSG_DONTWAIT) != 1 || ::recv(sv[1], b, 1, MSG_DONTWAIT) != 1) return 12;
      if (kvm >= 0 && ::ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) return 13;
      void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) return 14;
      std::memset(m, 1, 1 << 20);
      if (::mprotect(m, 4096, PROT_READ) != 0) return 15;
      auto* big = new char[64 << 20];  // malloc's own mmap
      big[0] = 1;
      delete[] big;
      // Refused, each with EPERM (the SIGSYS handler), twice to see it said once.
      for (int round = 0; round < 2; round++) {
        errno = 0;
        if (::open("/proc/self/stat", O_RDONLY) != -1 || errno != EPERM) return 20;
        errno = 0;
        if (::socket(AF_INET, SOCK_STREAM, 0) != -1 || errno != EPERM) return 21;
        errno = 0;
        if (::mprotect(m, 4096, PROT_READ | PROT_EXEC) != -1 || errno != EPERM) return 22;
        errno = 0;
        if (::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED || errno != EPERM)
          return 23;
        errno = 0;
        if (::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) != -1 || errno != EPERM) return 24;  // fork
        errno = 0;
        if (::syscall(SYS_tgkill, parent, parent, 0) != -1 || errno != EPERM) return 25;
        errno = 0;
        if (::syscall(SYS_unlinkat, AT_FDCWD, "/tmp/vireo-confine-test-none", 0) != -1 || errno != EPERM) return 26;
      }
      // Its own process may be signalled (signal 0: the check only).
      if (::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0) != 0) return 27;
      ::munmap(m, 1 << 20);
      return 0;
    }();
  });
  dev.join();
  if (result != 0) return result;
  // This thread is not a device thread: it still opens files.
  int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 30;
  ::close(fd);
  return 0;
}

}  // namespace

TEST(a_device_thread_keeps_only_io_on_its_descriptors_memory_and_kvm) {
  CHECK_EQ(in_child(device_thread_child), 0);
}

TEST(the_device_allow_list_has_io_but_nothing_that_opens_or_spawns) {
  auto l = vireo::sandbox::device_thread_syscalls();
  for (const char* n : {"ioctl", "pread64", "pwrite64", "futex", "io_uring_enter", "fdatasync", "fallocate"})
    CHECK(std::find(l.begin(), l.end(), n) != l.end());
  for (const char* n : {"open", "openat", "socket", "connect", "clone", "clone3", "execve", "unlinkat", "io_uring_setup", "kill"})
    CHECK(std::find(l.begin(), l.end(), n) == l.end());
}

TEST(a_confined_engine_host_cannot_exec_trace_or_mount_but_runs_a_vmm) {
  CHECK_EQ(in_child(confined_child), 0);
}

TEST(threads_that_exist_before_confinement_are_confined_too) {
  CHECK_EQ(in_child(threads_get_it_too), 0);
}

TEST(the_refused_list_names_what_a_vmm_never_needs) {
  auto l = vireo::sandbox::refused_syscalls();
  for (const char* n : {"execve", "execveat", "ptrace", "process_vm_writev", "init_module", "kexec_load", "bpf", "mount"})
    CHECK(std::find(l.begin(), l.end(), n) != l.end());
  for (const char* n : {"ioctl", "mmap", "io_uring_setup", "openat", "socket", "clone", "fallocate"})
    CHECK(std::find(l.begin(), l.end(), n) == l.end());
}
