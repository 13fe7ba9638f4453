// VIREO_SAMPLE_VCPUS's line format (machine/vcpu_sample.h): what the reader
// of a stalled guest's stderr relies on.
#include "machine/vcpu_sample.h"

#include <cstring>

#include "check.h"

using namespace vireo;

static void set_reg(kvm_lapic_state& l, unsigned off, uint32_t v) { std::memcpy(l.regs + off, &v, 4); }

static VcpuSample halted_ap() {
  VcpuSample s;
  s.vcpu = 1;
  s.t_s = 42.0;
  s.exits = 7;
  s.cpu_ns = 3'000'000;
  s.regs.rip = 0xffffffff81a592ebull;
  s.regs.rsp = 0xffffc90000097ed8ull;
  s.regs.rflags = 0x246;  // IF
  s.sregs.cs.selector = 0x10;
  s.mp_state = KVM_MP_STATE_HALTED;
  s.have_lapic = true;
  set_reg(s.lapic, 0x20, 1u << 24);
  set_reg(s.lapic, 0xf0, 0x1ff);
  set_reg(s.lapic, 0x320, (2u << 17) | 0xec);  // TSC-deadline mode, vector 0xec
  set_reg(s.lapic, 0x200 + 7 * 16, 1u << 12);  // IRR: vector 0xec
  set_reg(s.lapic, 0x100 + 0 * 16, 1u << 31);  // ISR: vector 0x1f
  s.have_deadline = true;
  s.tsc = 1000;
  s.tsc_deadline = 400;
  s.stack = {0x12, 0xffffffff81a5918aull, ~0ull, 0xffffc90000097f00ull, 0xffffffff810fbb86ull};
  return s;
}

TEST(lapic_vectors_reads_the_256_bit_arrays) {
  VcpuSample s = halted_ap();
  auto irr = lapic_vectors(s.lapic, 0x200);
  CHECK_EQ(irr.size(), size_t(1));
  CHECK_EQ(irr[0], 0xec);
  auto isr = lapic_vectors(s.lapic, 0x100);
  CHECK_EQ(isr.size(), size_t(1));
  CHECK_EQ(isr[0], 0x1f);
  CHECK_EQ(lapic_reg(s.lapic, 0x20) >> 24, 1u);
  CHECK_EQ(lapic_reg(s.lapic, 0x1000), 0u);  // out of the page: 0, no read past it
}

TEST(sample_line_names_state_timer_and_stack) {
  const std::string l = format_vcpu_sample(halted_ap());
  CHECK(l.rfind("[vireo] sample 42.0s vCPU 1 rip=ffffffff81a592eb ", 0) == 0);
  CHECK(l.find(" cpl=0 if=1 mp=halted exits=+7 cpu=+3ms") != std::string::npos);
  CHECK(l.find(" apic=1 ") != std::string::npos);
  CHECK(l.find(" isr=[1f] irr=[ec] ") != std::string::npos);
  CHECK(l.find(" lvtt=400ec(deadline,vec) ") != std::string::npos);
  CHECK(l.find(" deadline=-600") != std::string::npos);  // in the past: the timer is overdue
  // Only kernel-text-looking words (top 2 GiB, not all ones) are listed.
  CHECK(l.find(" stack: ffffffff81a5918a ffffffff810fbb86") != std::string::npos);
  CHECK(l.find("ffffc90000097f00") == std::string::npos);
  CHECK(l.find("ffffffffffffffff") == std::string::npos);
  CHECK(l.find('\n') == std::string::npos);
}

TEST(sample_line_shows_pending_events_and_masked_timer) {
  VcpuSample s = halted_ap();
  s.regs.rflags = 0x2;
  s.sregs.cs.selector = 0x33;
  s.mp_state = KVM_MP_STATE_RUNNABLE;
  s.events.interrupt.injected = 1;
  s.events.interrupt.nr = 0xfb;
  s.events.nmi.pending = 1;
  set_reg(s.lapic, 0x320, (1u << 16) | 0x30);  // one-shot, masked
  s.tsc_deadline = 0;
  const std::string l = format_vcpu_sample(s);
  CHECK(l.find(" cpl=3 if=0 mp=runnable ") != std::string::npos);
  CHECK(l.find(" inj-irq=fb") != std::string::npos);
  CHECK(l.find(" nmi=1/0") != std::string::npos);
  CHECK(l.find("(oneshot,masked,v30)") != std::string::npos);
  CHECK(l.find(" deadline=0") != std::string::npos);
}

