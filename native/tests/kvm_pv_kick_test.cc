// KVM's paravirtual "kick" (KVM_HC_KICK_CPU), which Linux's PV spinlocks use:
// a waiter halts with interrupts off (kvm_wait) and only the lock holder's
// kick hypercall wakes it. Linux turns PV spinlocks on when CPUID leaf
// 0x40000001 has KVM_FEATURE_PV_UNHALT and there is more than one CPU. This
// test checks on the real /dev/kvm that a kick wakes a vCPU halted with
// IF=0, and that Vireo's CPUID table (kvm::build_cpuid for this host) only
// advertises PV_UNHALT where it does: a waiter that is never woken hangs the
// guest for good (docs/linux-guest.md, "2 vCPUs").
#include <linux/kvm_para.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <tuple>

#include "check.h"
#include "kvm/cpuid.h"
#include "kvm/kvm.h"
#include "kvm_helpers.h"

using namespace vireo;

namespace {

constexpr uint64_t kRam = 0x10000;

// vCPU 1: cli; hlt; out 0xf5, al; hlt; jmp $-1
const uint8_t kWaiter[] = {0xfa, 0xf4, 0xe6, 0xf5, 0xf4, 0xeb, 0xfd};
// vCPU 0: mov eax, 0x40000001; cpuid; mov [0x3000], eax (the KVM features
// the guest sees); out 0xf6, al; then mov eax, KVM_HC_KICK_CPU; mov ebx, 0
// (flags); mov ecx, 1 (APIC ID); vmcall; out 0xf4, al; hlt; jmp $-1
const uint8_t kKicker[] = {0x66, 0xb8, 0x01, 0, 0, 0x40, 0x0f, 0xa2, 0x66, 0xa3, 0x00, 0x30, 0xe6, 0xf6,
                           0x66, 0xb8, KVM_HC_KICK_CPU, 0, 0, 0, 0x66, 0xbb, 0, 0, 0, 0, 0x66, 0xb9, 1, 0, 0, 0,
                           0x0f, 0x01, 0xc1, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd};
// The same in 64-bit mode (where Linux makes its hypercalls): mov eax,
// 0x40000001; cpuid; mov [0x3000], eax; out 0xf6, al; mov eax, 5; xor ebx,
// ebx; mov ecx, 1; vmcall; out 0xf4, al; hlt; jmp $-1
const uint8_t kKicker64[] = {0xb8, 0x01, 0, 0, 0x40, 0x0f, 0xa2, 0x89, 0x04, 0x25, 0x00, 0x30, 0, 0, 0xe6, 0xf6,
                             0xb8, KVM_HC_KICK_CPU, 0, 0, 0, 0x31, 0xdb, 0xb9, 1, 0, 0, 0,
                             0x0f, 0x01, 0xc1, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd};
uint64_t vmcall_at(bool long_mode) { return 0x1000 + (long_mode ? 28 : 32); }

// 64-bit ring 0 with the first 2 MiB identity-mapped (PML4 0x4000, PDPT
// 0x5000, PD 0x6000 with one 2 MiB page), as a kernel runs.
void long_mode_at(kvm::KvmVcpu& v, uint8_t* ram, uint16_t ip) {
  auto put = [&](uint64_t at, uint64_t val) { std::memcpy(ram + at, &val, 8); };
  put(0x4000, 0x5000 | 3);
  put(0x5000, 0x6000 | 3);
  put(0x6000, 0x0 | 0x83);
  kvm_sregs s = v.sregs();
  auto seg = [](kvm_segment& g, uint16_t sel, uint8_t type, bool code) {
    g = kvm_segment{};
    g.selector = sel;
    g.limit = 0xffffffff;
    g.type = type;
    g.present = 1;
    g.s = 1;
    g.l = code ? 1 : 0;
    g.db = code ? 0 : 1;
    g.g = 1;
  };
  seg(s.cs, 0x08, 0xb, true);
  seg(s.ds, 0x10, 0x3, false);
  seg(s.es, 0x10, 0x3, false);
  seg(s.ss, 0x10, 0x3, false);
  seg(s.fs, 0x10, 0x3, false);
  seg(s.gs, 0x10, 0x3, false);
  s.cr3 = 0x4000;
  s.cr4 = 0x20;                // PAE
  s.cr0 = 0x80000011;          // PG | ET | PE
  s.efer = (1u << 8) | (1u << 10);  // LME | LMA
  v.set_sregs(s);
  kvm_regs r{};
  r.rflags = 2;
  r.rip = ip;
  r.rsp = 0x8000;
  v.set_regs(r);
}

void real_mode_at(kvm::KvmVcpu& v, uint16_t ip) {
  kvm_sregs s = v.sregs();
  s.cs.base = 0;
  s.cs.selector = 0;
  v.set_sregs(s);
  kvm_regs r{};
  r.rflags = 2;
  r.rip = ip;
  r.rsp = 0x8000;
  v.set_regs(r);
}

struct Rig {
  kvm::KvmSystem sys;
  kvm::KvmVm vm{sys};
  void* ram = nullptr;
  std::unique_ptr<kvm::KvmVcpu> v0, v1;
  std::vector<kvm_cpuid_entry2> table0;

  bool long_mode;

  explicit Rig(bool lm) : long_mode(lm) {
    ram = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ram != MAP_FAILED);
    if (lm) std::memcpy(static_cast<uint8_t*>(ram) + 0x1000, kKicker64, sizeof kKicker64);
    else std::memcpy(static_cast<uint8_t*>(ram) + 0x1000, kKicker, sizeof kKicker);
    std::memcpy(static_cast<uint8_t*>(ram) + 0x2000, kWaiter, sizeof kWaiter);
    vm.create_irqchip();
    vm.set_memory(0, 0, kRam, ram);
    v0 = std::make_unique<kvm::KvmVcpu>(vm, 0);
    v1 = std::make_unique<kvm::KvmVcpu>(vm, 1);
    const bool pvm = kvm::host_is_pvm();
    table0 = kvm::build_cpuid(sys.supported_cpuid(), {.vcpu_id = 0, .vcpu_count = 2, .pvm_host = pvm});
    v0->set_cpuid(table0);
    v1->set_cpuid(kvm::build_cpuid(sys.supported_cpuid(), {.vcpu_id = 1, .vcpu_count = 2, .pvm_host = pvm}));
    v1->set_mp_state_runnable();  // no INIT/SIPI: start the AP directly
    if (lm) {
      long_mode_at(*v0, static_cast<uint8_t*>(ram), 0x1000);
      long_mode_at(*v1, static_cast<uint8_t*>(ram), 0x2000);
    } else {
      real_mode_at(*v0, 0x1000);
      real_mode_at(*v1, 0x2000);
    }
  }
  ~Rig() { ::munmap(ram, kRam); }
  bool table_has_pv_unhalt() const {
    for (const auto& e : table0)
      if (e.function == KVM_CPUID_FEATURES) return e.eax & (1u << KVM_FEATURE_PV_UNHALT);
    return false;
  }
};

// Runs `v` until a port write (returns the port) or an error (-errno) or
// another exit (-1000 - exit_reason).
int run_to_port(kvm::KvmVcpu& v) {
  for (;;) {
    int r = v.run();
    if (r == -EINTR) return r;
    if (r < 0) return r;
    const kvm_run* run = v.run_page();
    if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) return run->io.port;
    if (run->exit_reason == KVM_EXIT_INTR) continue;
    return -1000 - int(run->exit_reason);
  }
}

void install_kick() {
  struct sigaction sa{};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
}

// Result of one try: did the kick wake vCPU 1, and what the hypercall returned.
struct KickResult {
  bool woke = false;
  int64_t hc_ret = 0;
  int v0_port = 0;
  uint64_t v0_rip = 0;
  uint32_t guest_kvm_features = 0;  // CPUID 0x40000001 EAX as vCPU 0 read it
  uint32_t v1_mp_state = 0;
};

KickResult kick_a_halted_vcpu(Rig& rig) {
  install_kick();
  KickResult out;
  std::atomic<int> v1_port{0};
  std::thread t1([&] { v1_port = run_to_port(*rig.v1); });
  // Let vCPU 1 reach its HLT (two instructions, emulated or not).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::atomic<int> v0_port{0};
  // vCPU 0 first reads CPUID (port 0xf6), then kicks.
  out.guest_kvm_features = 0;
  if (run_to_port(*rig.v0) == 0xf6) std::memcpy(&out.guest_kvm_features, static_cast<uint8_t*>(rig.ram) + 0x3000, 4);
  std::thread t0([&] { v0_port = run_to_port(*rig.v0); });
  for (int i = 0; i < 100 && (v0_port == 0 || v1_port == 0); i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (auto [v, t, port] : {std::tuple{rig.v0.get(), &t0, &v0_port}, std::tuple{rig.v1.get(), &t1, &v1_port}})
    if (*port == 0) {
      v->run_page()->immediate_exit = 1;
      pthread_kill(t->native_handle(), SIGUSR1);
    }
  t0.join();
  out.v0_port = v0_port;
  const kvm_regs r0 = rig.v0->regs();
  out.hc_ret = int64_t(r0.rax);
  out.v0_rip = r0.rip;
  t1.join();
  out.woke = v1_port == 0xf5;
  try {
    out.v1_mp_state = rig.v1->mp_state().mp_state;
  } catch (const kvm::KvmError&) {
  }
  return out;
}

}  // namespace

static void check_kick(bool long_mode) {
  require_kvm();
  Rig rig(long_mode);
  const KickResult k = kick_a_halted_vcpu(rig);
  const bool seen = k.guest_kvm_features & (1u << KVM_FEATURE_PV_UNHALT);
  const bool stuck = k.v0_port != 0xf4 && k.v0_rip == vmcall_at(long_mode);
  std::printf("  %s, host %s: the guest's CPUID 0x40000001 EAX %#x (PV_UNHALT %s; Vireo's table %s it); vmcall "
              "KVM_HC_KICK_CPU: %s (rax %#llx, rip %#llx); vCPU 1 %s (mp_state %u)\n",
              long_mode ? "64-bit" : "real mode", kvm::host_is_pvm() ? "kvm_pvm" : "KVM", k.guest_kvm_features, seen ? "set" : "clear",
              rig.table_has_pv_unhalt() ? "has" : "clears", stuck ? "never completed (vCPU 0 still on it)" : "completed",
              (unsigned long long)k.hc_ret, (unsigned long long)k.v0_rip, k.woke ? "woke" : "stayed halted",
              unsigned(k.v1_mp_state));
  CHECK_EQ(seen, rig.table_has_pv_unhalt());  // the guest sees Vireo's KVM leaf
  if (seen) {
    CHECK_EQ(k.v0_port, 0xf4);  // the kicker got past its VMCALL
    CHECK(k.woke);              // and the halted waiter woke
  } else if (!kvm::host_is_pvm()) {
    CHECK(!"PV_UNHALT is only withheld on kvm_pvm hosts");
  }
}

TEST(pv_unhalt_is_advertised_only_where_a_kick_wakes_a_halted_vcpu_real_mode) { check_kick(false); }
TEST(pv_unhalt_is_advertised_only_where_a_kick_wakes_a_halted_vcpu_64_bit) { check_kick(true); }
