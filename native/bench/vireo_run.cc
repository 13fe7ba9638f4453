// vireo-run: the engine alone, without Node. Boots a kernel (multiboot, bzImage,
// PVH) with COM1 on stdout/stdin, for measuring the engine's own start time
// and memory next to QEMU (bench/engine). Not a product command: the real CLI
// is `vireo boot` (electron/cli/boot.ts).
//
//   vireo-run --kernel FILE [--initrd FILE] [--append STR] [--memory 256M] [--cpus N]
//
// stdin is forwarded to COM1 byte for byte; the terminal is not put in raw
// mode (this is for pipes: a terminal's line discipline still applies).
// Exit status: a guest write of V to the debug-exit port 0xf4 exits with
// (V<<1)|1 (like QEMU's isa-debug-exit); power-off/reset exit 0; a crash
// prints why and exits 2; bad arguments exit 1.
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "kvm/kvm.h"
#include "machine/machine.h"

namespace {

[[noreturn]] void usage(const char* why) {
  if (why && *why) std::fprintf(stderr, "vireo-run: %s\n", why);
  std::fprintf(stderr, "usage: vireo-run --kernel FILE [--initrd FILE] [--append STR] [--memory 256M] [--cpus N]\n");
  std::exit(1);
}

uint64_t parse_size(const std::string& s) {
  char* end = nullptr;
  unsigned long long n = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) usage(("not a size: " + s).c_str());
  uint64_t mul = 1ull << 20;  // plain numbers are MiB, as in QEMU's -m
  switch (*end) {
    case 'K': case 'k': mul = 1ull << 10; break;
    case 'M': case 'm': case '\0': mul = 1ull << 20; break;
    case 'G': case 'g': mul = 1ull << 30; break;
    default: usage(("not a size: " + s).c_str());
  }
  return n * mul;
}

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  vireo::MachineConfig cfg;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--kernel") cfg.kernel = val();
    else if (a == "--initrd") cfg.initrd = val();
    else if (a == "--append") cfg.append = val();
    else if (a == "--memory" || a == "-m") cfg.mem_bytes = parse_size(val());
    else if (a == "--cpus" || a == "--smp") cfg.cpus = std::atoi(val().c_str());
    else if (a == "--help" || a == "-h") usage("");
    else usage(("unknown option " + a).c_str());
  }
  if (cfg.kernel.empty()) usage("--kernel is required");
  std::string problem = vireo::kvm::kvm_problem();
  if (!problem.empty()) {
    std::fprintf(stderr, "vireo-run: %s\n", problem.c_str());
    return 1;
  }

  std::unique_ptr<vireo::Machine> m;
  try {
    m = std::make_unique<vireo::Machine>(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vireo-run: %s\n", e.what());
    return 1;
  }

  // Serial out: written straight from the vCPU thread that produced it (the
  // lowest-latency path; a mutex keeps bytes in order across vCPUs).
  std::mutex out_mu;
  vireo::Machine* mp = m.get();
  m->on_serial_ready = [mp, &out_mu] {
    std::lock_guard g(out_mu);
    auto b = mp->take_serial(0);
    write_all(1, b.data(), b.size());
  };
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  vireo::RunState final_state = vireo::RunState::Stopped;
  vireo::StopInfo info;
  m->on_state = [&](vireo::RunState s, const vireo::StopInfo& i) {
    if (s != vireo::RunState::Stopped && s != vireo::RunState::Crashed) return;
    std::lock_guard g(mu);
    done = true;
    final_state = s;
    info = i;
    cv.notify_all();
  };

  // SIGTERM/SIGINT stop the machine the ordinary way, so that the vCPU threads
  // end and VIREO_PROFILE_EXITS prints its report (e.g. under timeout(1)).
  sigset_t stop_sigs;
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGTERM);
  sigaddset(&stop_sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, nullptr);  // inherited by the vCPU threads
  std::thread([mp, stop_sigs] {
    int sig = 0;
    if (sigwait(&stop_sigs, &sig) == 0) mp->stop();
  }).detach();

  try {
    m->start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vireo-run: %s\n", e.what());
    return 1;
  }

  // Serial in: a detached reader (it may sit in read() when the guest exits;
  // the process ends anyway).
  std::thread([mp] {
    uint8_t buf[4096];
    for (;;) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      mp->write_serial(0, buf, size_t(n));
    }
  }).detach();

  {
    std::unique_lock g(mu);
    cv.wait(g, [&] { return done; });
  }
  {
    std::lock_guard g(out_mu);
    auto b = m->take_serial(0);
    write_all(1, b.data(), b.size());
  }
  int rc = 0;
  if (info.kind == "exit") {
    rc = ((info.code << 1) | 1) & 0xff;
  } else if (final_state == vireo::RunState::Crashed) {
    std::fprintf(stderr, "vireo-run: the guest stopped: %s\n", info.message.c_str());
    rc = 2;
  }
  m.reset();  // joins the (finished) vCPU threads, frees guest RAM and the VM
  return rc;
}
