// guests/tick.asm under KVM: the local APIC timer in TSC-deadline mode with
// each interrupt arming the next one 1000 TSC cycles later (Linux's tick, in
// miniature), with Vireo's timer pacer (machine/tick_pacer.h) on and off. The
// pacer works through an MSR filter that any x86 KVM has, so the same checks
// hold on VT-x/AMD-V and on kvm_pvm hosts, where Vireo turns it on itself.
#include <chrono>
#include <map>

#include "kvm/kvm.h"
#include "kvm_helpers.h"

using namespace vireo;

struct TickRun {
  std::map<std::string, uint64_t> v;
  std::vector<Machine::TickPacing> pacing;
  double seconds = 0;
};

static TickRun run_ticks(int64_t gap_us) {
  MachineConfig c;
  c.kernel = guest("tick.bin");
  c.mem_bytes = 64 << 20;
  c.tick_gap_us = gap_us;
  Machine m(c);
  Run r;
  r.attach(m);
  const auto t0 = std::chrono::steady_clock::now();
  m.start();
  const bool done = r.wait_done(m, 120);
  TickRun out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.stop();
  std::printf("        gap %lld us: %.3f s\n%s", (long long)gap_us, out.seconds, r.serial.c_str());
  CHECK(done);
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x0b);
  out.v = serial_values(r.serial);
  out.pacing = m.tick_pacing();
  return out;
}

TEST(every_deadline_interrupt_arrives_unpaced) {
  require_kvm();
  TickRun t = run_ticks(0);
  CHECK_EQ(t.v["ticks"], 20u);
  CHECK(t.pacing.empty());  // no filter, KVM alone
}

TEST(paced_deadlines_come_no_closer_than_the_gap) {
  require_kvm();
  TickRun t = run_ticks(10000);
  CHECK_EQ(t.v["ticks"], 20u);
  CHECK_EQ(t.pacing.size(), size_t(1));
  CHECK_EQ(t.pacing[0].writes, 20u);    // the first arm, then one per interrupt but the last
  CHECK(t.pacing[0].delayed >= 18u);    // each re-arm (1000 cycles on) moved to the gap
  CHECK(t.pacing[0].gap_tsc > 0);
  // Between two handler entries: at least the gap, less the previous interrupt's
  // delivery latency (the pacer counts from its deadline).
  CHECK(t.v["mingap"] >= t.pacing[0].gap_tsc / 2);
  CHECK(t.seconds >= 0.18);             // 19 gaps of 10 ms
}

TEST(vireo_paces_by_itself_only_on_kvm_pvm_hosts) {
  require_kvm();
  TickRun t = run_ticks(-1);
  CHECK_EQ(t.v["ticks"], 20u);
  CHECK_EQ(!t.pacing.empty(), kvm::host_is_pvm());
}
