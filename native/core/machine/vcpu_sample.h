#pragma once
// VIREO_SAMPLE_VCPUS=SECONDS: where each vCPU is, every SECONDS seconds, on
// stderr (docs/architecture.md, "Debug variables"). A vCPU thread fills a
// VcpuSample for itself when the sampler has kicked it out of KVM_RUN;
// format_vcpu_sample() turns it into one line that
// scripts/symbolize-vcpu-samples.mjs can annotate with a System.map.
#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vireo {

struct VcpuSample {
  int vcpu = 0;
  double t_s = 0;          // seconds since the machine started
  uint64_t exits = 0;      // KVM_RUN returns since the last sample
  uint64_t cpu_ns = 0;     // thread CPU time since the last sample (0: unknown)
  kvm_regs regs{};
  kvm_sregs sregs{};
  uint32_t mp_state = 0;
  kvm_vcpu_events events{};
  bool have_lapic = false;
  kvm_lapic_state lapic{};
  bool have_deadline = false;
  uint64_t tsc = 0, tsc_deadline = 0;
  std::vector<uint64_t> stack;  // qwords from RSP up (as many as could be read)
};

// LAPIC register `off` (a 32-bit register at that offset of the 1 KiB page).
uint32_t lapic_reg(const kvm_lapic_state& l, unsigned off);
// The vectors set in the 256-bit LAPIC array at `base` (ISR 0x100, TMR 0x180, IRR 0x200).
std::vector<int> lapic_vectors(const kvm_lapic_state& l, unsigned base);
const char* mp_state_name(uint32_t s);

// One line, no trailing newline:
//   [vireo] sample 12.0s vCPU 1 rip=ffffffff81... cpl=0 if=1 mp=halted exits=+3 cpu=+1ms ...
// Stack entries are only those that look like kernel text (top 2 GiB).
std::string format_vcpu_sample(const VcpuSample& s);

}  // namespace vireo
