// The halt watch (kvm_pvm hosts; docs/architecture.md, "Input on kvm_pvm
// hosts"): kvm_pvm now and then leaves a vCPU halted at an instruction that
// is not a HLT, with interrupts off, for good, right after single-stepping is
// switched off. Once a second the machine kicks each vCPU that has not left
// KVM_RUN for that second; a vCPU halted where no HLT precedes it is made
// runnable again. A vCPU halted by a real HLT stays halted.
#include "kvm_helpers.h"

#include <thread>

using namespace vireo;

namespace {

MachineConfig flat_config(const char* bin) {
  MachineConfig c;
  c.flat = guest(bin);
  c.flat_addr = 0x7c00;
  c.mem_bytes = 32 << 20;
  return c;
}

void require_pvm() {
  require_kvm();
  if (!kvm::host_is_pvm())
    SKIP("the halt watch runs on kvm_pvm hosts only (VT-x/AMD-V KVM does not leave a vCPU halted off a HLT)");
}

size_t serial_size(Run& r, Machine& m) {
  auto b = m.take_serial(0);
  std::lock_guard g(r.mu);
  r.serial.append(b.begin(), b.end());
  return r.serial.size();
}

}  // namespace

TEST(a_vcpu_left_halted_off_a_hlt_with_interrupts_off_runs_on) {
  require_pvm();
  Machine m(flat_config("spin.bin"));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("...", 30));
  m.pause();
  // KVM's halted state where the vCPU stands: in the loop, IF=0, no HLT.
  m.halt_vcpu_for_test(0);
  const size_t before = serial_size(r, m);
  m.resume();
  const auto t0 = std::chrono::steady_clock::now();
  bool more;
  {
    std::unique_lock g(r.mu);
    more = r.cv.wait_for(g, std::chrono::seconds(15), [&] { return r.serial.size() >= before + 3 || r.done; }) &&
           r.serial.size() >= before + 3;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  dots again %.1f s after the resume; %llu repaired\n", s, (unsigned long long)m.false_halts_repaired());
  CHECK(more);
  CHECK_EQ(m.false_halts_repaired(), uint64_t(1));
  m.stop();
}

TEST(a_vcpu_halted_by_cli_hlt_stays_halted) {
  require_pvm();
  Machine m(flat_config("halt.bin"));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("halting\r\n", 30));
  // Three ticks of the watch: each kicks the vCPU and finds a real HLT.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  serial_size(r, m);
  CHECK(m.state() == RunState::Running);
  {
    std::lock_guard g(r.mu);
    CHECK(r.serial.find("woken") == std::string::npos);
  }
  CHECK_EQ(m.false_halts_repaired(), uint64_t(0));
  m.stop();
}
