#include "kvm/cpuid.h"

#include <algorithm>
#include <cstdint>

namespace vireo::kvm {

namespace {
// Leaf 1 ECX bits.
constexpr uint32_t kEcxFma = 1u << 12, kEcxCx16 = 1u << 13, kEcxPcid = 1u << 17, kEcxX2apic = 1u << 21,
                   kEcxMovbe = 1u << 22, kEcxXsave = 1u << 26, kEcxOsxsave = 1u << 27, kEcxAvx = 1u << 28,
                   kEcxF16c = 1u << 29, kEcxHypervisor = 1u << 31;
// Leaf 7.0 EBX bits: AVX2 (5), and the AVX-512 family (16, 17, 21, 26, 27, 28, 30, 31).
constexpr uint32_t kEbx7Avx2 = 1u << 5;
// Leaf 0x40000001 (KVM_CPUID_FEATURES) EAX: the paravirtual features whose
// use is a hypercall (VMCALL from ring 0): PV_UNHALT (KVM_HC_KICK_CPU, PV
// spinlocks), PV_SEND_IPI (KVM_HC_SEND_IPI), PV_SCHED_YIELD
// (KVM_HC_SCHED_YIELD), HC_MAP_GPA_RANGE (KVM_HC_MAP_GPA_RANGE); and
// PV_TLB_FLUSH, which goes with directed yield: a preempted vCPU's flush is
// left to the host through the steal-time area instead of an IPI, which
// nothing here shows kvm_pvm doing (the IPI works).
constexpr uint32_t kKvmHypercallFeatures = (1u << 7) | (1u << 9) | (1u << 11) | (1u << 13) | (1u << 16);
constexpr uint32_t kEbx7Avx512 = (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
                                 (1u << 30) | (1u << 31);
}  // namespace

std::vector<kvm_cpuid_entry2> build_cpuid(std::vector<kvm_cpuid_entry2> t, const CpuidOptions& o) {
  const uint32_t apic_id = uint32_t(o.vcpu_id);
  for (auto& e : t) {
    switch (e.function) {
      case 1:
        // EBX[31:24] initial APIC ID, EBX[23:16] logical processor count.
        e.ebx = (e.ebx & 0x0000ffffu) | (apic_id << 24) | (uint32_t(std::min(o.vcpu_count, 255)) << 16);
        if (o.vcpu_count > 1) e.edx |= 1u << 28;  // HTT: more than one logical CPU in the package
        e.ecx |= kEcxHypervisor;
        if (o.pvm_host) {
          // kvm_pvm runs guest ring-0 code in KVM's x86 emulator, which has
          // no CMPXCHG16B, XSAVE/XRSTOR or MOVBE. Vireo asks for these bits
          // off, but kvm_pvm answers the guest's CPUID feature words from the
          // hardware whatever this table says (only CX16 and PCID come out
          // cleared, by kvm_pvm itself; docs/architecture.md, "CPUID on
          // kvm_pvm hosts"), so the userspace assist (kvm/assist.h) makes
          // XSAVE and friends work instead. The masks stay for a kvm_pvm
          // that honours the table.
          e.ecx &= ~(kEcxCx16 | kEcxXsave | kEcxOsxsave | kEcxAvx | kEcxFma | kEcxF16c | kEcxMovbe | kEcxPcid);
        }
        break;
      case 4:
        // Cache topology: EAX[31:26] = cores per package - 1.
        e.eax = (e.eax & 0x03ffffffu) | (uint32_t(std::max(o.vcpu_count - 1, 0) & 0x3f) << 26);
        break;
      case 7:
        if (e.index == 0 && o.pvm_host) {
          // AVX2 and AVX-512 need XSAVE-managed state the emulator cannot restore.
          e.ebx &= ~(kEbx7Avx2 | kEbx7Avx512);
          e.ecx &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));  // AVX512 VBMI/VBMI2/VNNI/BITALG/VPOPCNTDQ
          e.edx &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));                // AVX512 4VNNIW/4FMAPS/VP2INTERSECT, AVX512_FP16
        }
        break;
      case 0x40000001:
        if (o.pvm_host) {
          // kvm_pvm never completes a VMCALL from (emulated) ring 0: the vCPU
          // stays on the instruction inside KVM_RUN for good
          // (kvm_pv_kick_test). Linux with 2+ CPUs would make them: a PV
          // spinlock waiter halts with interrupts off until the holder's
          // KICK_CPU, so one contended lock stopped the whole guest
          // (docs/linux-guest.md, "2 vCPUs"). Without these bits Linux uses
          // plain spinlocks, APIC IPIs and no directed yield, as QEMU's
          // default CPU model has it.
          e.eax &= ~kKvmHypercallFeatures;
        }
        break;
      case 0xb:
      case 0x1f:
        e.edx = apic_id;  // x2APIC ID
        break;
      default:
        break;
    }
  }
  // Leaf 0xd stays, also on kvm_pvm hosts: the guest sees the hardware's
  // leaf 0xd there anyway, and KVM derives the XCR0 values and XSAVE state it
  // accepts (from the guest and from KVM_SET_XCRS / KVM_SET_XSAVE) from it.
  (void)kEcxX2apic;
  return t;
}

int phys_addr_bits(const std::vector<kvm_cpuid_entry2>& cpuid, int fallback) {
  for (const auto& e : cpuid)
    if (e.function == 0x80000008 && (e.eax & 0xff)) return int(e.eax & 0xff);
  return fallback;
}

}  // namespace vireo::kvm
