#include "sandbox/confine.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

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

}  // namespace

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
  std::vector<sock_filter> f;
  auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
  auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); };
  const uint32_t deny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  stmt(BPF_RET | BPF_K, deny);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 0, 1);
  stmt(BPF_RET | BPF_K, deny);
  for (const auto& r : kRefused) {
    jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(r.nr), 0, 1);
    stmt(BPF_RET | BPF_K, deny);
  }
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};
  // TSYNC: every thread already running (libuv's pool, V8's) gets the filter too.
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0) res.seccomp = true;
  else res.problems.push_back(std::string("seccomp filter: ") + std::strerror(errno));
  return res;
}

}  // namespace vireo::sandbox
