// Confinement of an engine host process (one per running VM): once it runs a
// guest, a bug in a device model is reachable from guest code, so the process
// gives up what a VMM never needs before the guest starts:
// - no_new_privs: no execve can gain privileges (setuid, file capabilities);
// - a seccomp filter that refuses (EPERM) the system calls a VMM has no use for
//   and an attacker would want: running programs (execve, execveat), touching
//   other processes (ptrace, process_vm_readv/writev, pidfd_getfd), kernel
//   modules, kexec, mounts and namespaces, BPF, perf, keyrings, userfaultfd,
//   handle-based opens, port I/O rights (iopl, ioperm), clock setting, swap,
//   reboot, quotas, acct; and every system call of another ABI (i386 int 0x80,
//   x32) so the list cannot be bypassed;
// - RLIMIT_CORE 0: a crash does not write the guest's RAM to a core file.
// It is a deny list, not an allow list: what KVM, the block layer (io_uring,
// O_DIRECT, fallocate), the network backends (libslirp sockets, TAP ioctls),
// Node and V8 use keeps working without enumerating it. Irreversible for the
// process and inherited by its threads (TSYNC) and children.
#pragma once
#include <string>
#include <vector>

namespace vireo::sandbox {

struct ConfineResult {
  bool no_new_privs = false;
  bool seccomp = false;
  bool core_limit = false;
  std::vector<std::string> problems;  // what could not be applied, with the errno text
};

ConfineResult confine_engine_host();

// The system call names the filter refuses (for documentation and tests).
std::vector<std::string> refused_syscalls();

}  // namespace vireo::sandbox
