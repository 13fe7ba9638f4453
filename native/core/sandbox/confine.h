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

// Also asks every device thread started afterwards to confine itself
// (device_threads_confined()).
ConfineResult confine_engine_host();

// The system call names the filter refuses (for documentation and tests).
std::vector<std::string> refused_syscalls();

// Device threads: the threads that run code a guest drives (vCPUs, virtio
// notify threads, block I/O workers). In a confined engine host each narrows
// itself further, for itself only, to an allow list: I/O on descriptors it
// already has (read/write/pread/pwrite and their vector forms, lseek, fstat,
// fcntl, ioctl, fsync/fdatasync, fallocate, ftruncate, sync_file_range,
// io_uring_enter, send/recv on existing sockets, close), memory without
// PROT_EXEC (mmap, mprotect, munmap, mremap, madvise, brk), futexes, polls,
// clocks and sleeps, signals to its own process (tgkill), getrandom, exit.
// Nothing that opens a file or socket, makes a process or thread, or
// changes the file system. Anything else is trapped: the thread gets EPERM
// and stderr says which call on which thread, once per call and thread.
void set_device_thread_confinement(bool on);
bool device_threads_confined();
// Installs the allow list on the calling thread if device_threads_confined();
// `what` names the thread in messages ("vCPU 0"). "" or the problem (which
// is also printed).
std::string confine_device_thread(const char* what);
// The allow list's system call names (for documentation and tests).
std::vector<std::string> device_thread_syscalls();

}  // namespace vireo::sandbox
