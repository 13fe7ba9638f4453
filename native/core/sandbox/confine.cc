#include "sandbox/confine.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <ucontext.h>

namespace vireo::sandbox {

namespace {

struct Refused {
  int nr;
  const char* name;
};

#define R(x) {SYS_##x, #x}
const Refused kRefused[] = {
    R(execve), R(execveat), R(ptrace), R(process_vm_readv), R(process_vm_writev), R(kexec_load),
#ifdef SYS_kexec_file_load
    R(kexec_file_load),
#endif
    R(init_module), R(finit_module), R(delete_module), R(mount), R(umount2), R(pivot_root), R(chroot), R(unshare),
    R(setns), R(bpf), R(perf_event_open), R(keyctl), R(add_key), R(request_key), R(userfaultfd), R(open_by_handle_at),
    R(name_to_handle_at), R(iopl), R(ioperm), R(settimeofday), R(clock_settime), R(clock_adjtime), R(adjtimex),
    R(swapon), R(swapoff), R(reboot), R(quotactl), R(acct), R(lookup_dcookie), R(syslog), R(vhangup),
#ifdef SYS_pidfd_getfd
    R(pidfd_getfd),
#endif
#ifdef SYS_fsopen
    R(fsopen), R(fsmount), R(move_mount), R(open_tree),
#endif
};
#undef R

constexpr uint32_t kX32Bit = 0x40000000u;

// The device threads' allow list (confine.h). mmap and mprotect are checked
// for PROT_EXEC and tgkill for the process's own id separately, below.
#define A(x) {SYS_##x, #x}
const Refused kDeviceAllowed[] = {
    A(read), A(write), A(readv), A(writev), A(pread64), A(pwrite64), A(preadv), A(pwritev),
#ifdef SYS_preadv2
    A(preadv2), A(pwritev2),
#endif
    A(lseek), A(close), A(fstat), A(newfstatat),
#ifdef SYS_statx
    A(statx),
#endif
    A(fcntl), A(ioctl), A(fsync), A(fdatasync), A(fallocate), A(ftruncate), A(sync_file_range),
#ifdef SYS_io_uring_enter
    A(io_uring_enter),
#endif
    A(sendto), A(sendmsg), A(sendmmsg), A(recvfrom), A(recvmsg), A(futex), A(poll), A(ppoll), A(epoll_wait),
    A(epoll_pwait), A(munmap), A(mremap), A(madvise), A(brk), A(clock_gettime), A(clock_getres), A(gettimeofday),
    A(time), A(nanosleep), A(clock_nanosleep), A(sched_yield), A(sched_getaffinity), A(getpid), A(gettid),
    A(getrandom), A(rt_sigreturn), A(rt_sigprocmask), A(sigaltstack), A(restart_syscall), A(exit), A(exit_group),
#ifdef SYS_membarrier
    A(membarrier),
#endif
#ifdef SYS_rseq
    A(rseq),
#endif
#if defined(__SANITIZE_ADDRESS__)
#define VIREO_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VIREO_SANITIZER_BUILD 1
#endif
#endif
#ifdef VIREO_SANITIZER_BUILD
    // Sanitizer builds only (tests): UBSan's vptr check probes whether memory
    // is readable by writing it into a pipe; without it every confined
    // thread's first virtual call per type reads as "invalid vptr".
    A(pipe2),
#endif
};
#undef A

// A filter under construction. The prologue every filter starts with: a call
// of another architecture or an x32 number gets `refuse` (the lists below
// name x86-64 numbers only, so neither may get past them).
struct Filter {
  std::vector<sock_filter> f;
  void stmt(uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); }
  void jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); }
  explicit Filter(uint32_t refuse) {
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
    jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    stmt(BPF_RET | BPF_K, refuse);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
    jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 0, 1);
    stmt(BPF_RET | BPF_K, refuse);
  }
  // Loaded: the call's number. Returns `action` when it is `nr`.
  void on(long nr, uint32_t action) {
    jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 1);
    stmt(BPF_RET | BPF_K, action);
  }
  sock_fprog prog() { return sock_fprog{static_cast<unsigned short>(f.size()), f.data()}; }
};

std::atomic<bool> g_device_confine{false};
thread_local const char* t_thread_name = nullptr;
thread_local uint64_t t_reported[8];  // system call numbers already reported on this thread (0 = none)

const char* syscall_name(long nr) {
  switch (nr) {
#define N(x) \
  case SYS_##x: return #x;
    N(open) N(openat) N(creat) N(socket) N(connect) N(bind) N(listen) N(accept) N(accept4) N(clone) N(fork) N(vfork)
    N(execve) N(execveat) N(kill) N(tgkill) N(unlink) N(unlinkat) N(rename) N(renameat) N(mkdir) N(mkdirat)
    N(chmod) N(fchmod) N(fchmodat) N(chown) N(symlink) N(link) N(truncate) N(mmap) N(mprotect) N(prctl) N(dup)
    N(dup2) N(dup3) N(pipe) N(pipe2) N(eventfd2) N(socketpair) N(getdents64) N(uname) N(rt_sigaction)
#ifdef SYS_clone3
    N(clone3)
#endif
#ifdef SYS_openat2
    N(openat2)
#endif
#undef N
    default: return nullptr;
  }
}

// A device thread made a call outside its allow list: say so (once per call
// and thread, with write(2): this is a signal handler) and fail it with EPERM.
void on_sigsys(int, siginfo_t* si, void* ctx) {
  auto* uc = static_cast<ucontext_t*>(ctx);
  long nr = si->si_syscall;
  bool seen = false;
  for (auto& r : t_reported) {
    if (r == uint64_t(nr) + 1) { seen = true; break; }
    if (!r) { r = uint64_t(nr) + 1; break; }
  }
  if (!seen) {
    char msg[200];
    const char* name = syscall_name(nr);
    int n = std::snprintf(msg, sizeof msg, "[vireo] sandbox: %s made system call %ld%s%s%s, which a device thread may not: refused (EPERM)\n",
                          t_thread_name ? t_thread_name : "a device thread", nr, name ? " (" : "", name ? name : "", name ? ")" : "");
    if (n > 0 && ::write(2, msg, size_t(n) < sizeof msg ? size_t(n) : sizeof msg - 1) < 0) {
    }
  }
  uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
}

}  // namespace

void set_device_thread_confinement(bool on) { g_device_confine = on; }
bool device_threads_confined() { return g_device_confine; }

std::vector<std::string> device_thread_syscalls() {
  std::vector<std::string> out;
  for (const auto& a : kDeviceAllowed) out.emplace_back(a.name);
  out.emplace_back("mmap (without PROT_EXEC)");
  out.emplace_back("mprotect (without PROT_EXEC)");
  out.emplace_back("tgkill (own process)");
  return out;
}

std::string confine_device_thread(const char* what) {
  if (!g_device_confine) return "";
  t_thread_name = what;
  static std::once_flag handler_once;
  std::call_once(handler_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSYS, &sa, nullptr);
  });
  // The handler must be able to run on this thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGSYS);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  const uint32_t trap = SECCOMP_RET_TRAP, allow = SECCOMP_RET_ALLOW;
  const uint32_t arg_lo = offsetof(seccomp_data, args), arg_hi = arg_lo + 4;  // little endian
  Filter flt(trap);
  auto stmt = [&](uint16_t code, uint32_t k) { flt.stmt(code, k); };
  auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { flt.jump(code, k, jt, jf); };
  for (const auto& a : kDeviceAllowed) flt.on(a.nr, allow);
  // mmap / mprotect: allowed without PROT_EXEC (argument 2).
  for (long nr : {long(SYS_mmap), long(SYS_mprotect)}) {
    jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 4);
    stmt(BPF_LD | BPF_W | BPF_ABS, arg_lo + 2 * 8);
    jump(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1);
    stmt(BPF_RET | BPF_K, trap);
    stmt(BPF_RET | BPF_K, allow);
  }
  // tgkill: only to this process (argument 0, all 64 bits).
  jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_tgkill, 0, 6);
  stmt(BPF_LD | BPF_W | BPF_ABS, arg_hi + 0 * 8);
  jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2);
  stmt(BPF_LD | BPF_W | BPF_ABS, arg_lo + 0 * 8);
  jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(::getpid()), 1, 0);
  stmt(BPF_RET | BPF_K, trap);
  stmt(BPF_RET | BPF_K, allow);
  stmt(BPF_RET | BPF_K, trap);  // everything else
  sock_fprog prog = flt.prog();
  // no_new_privs is the process's (confine_engine_host); set it again in case
  // only this thread is being confined (tests).
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    std::string why = std::string("device thread filter (") + (what ? what : "?") + "): " + std::strerror(errno);
    std::fprintf(stderr, "[vireo] sandbox: %s\n", why.c_str());
    return why;
  }
  return "";
}

std::vector<std::string> refused_syscalls() {
  std::vector<std::string> out;
  for (const auto& r : kRefused) out.emplace_back(r.name);
  return out;
}

ConfineResult confine_engine_host() {
  ConfineResult res;
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) res.no_new_privs = true;
  else res.problems.push_back(std::string("no_new_privs: ") + std::strerror(errno));

  rlimit core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &core) == 0) res.core_limit = true;
  else res.problems.push_back(std::string("RLIMIT_CORE: ") + std::strerror(errno));

  // The filter: another architecture -> EPERM; x32 numbers -> EPERM; each
  // refused number -> EPERM; everything else allowed.
  const uint32_t deny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  Filter flt(deny);
  for (const auto& r : kRefused) flt.on(r.nr, deny);
  flt.stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  sock_fprog prog = flt.prog();
  // TSYNC: every thread already running (libuv's pool, V8's) gets the filter too.
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0) res.seccomp = true;
  else res.problems.push_back(std::string("seccomp filter: ") + std::strerror(errno));
  if (res.seccomp && res.no_new_privs) set_device_thread_confinement(true);
  return res;
}

}  // namespace vireo::sandbox
