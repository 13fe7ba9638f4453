#include "kvm/cpuid.h"

#include "check.h"

using namespace vireo::kvm;

static std::vector<kvm_cpuid_entry2> host_like() {
  std::vector<kvm_cpuid_entry2> t(4);
  t[0].function = 1;
  t[0].ecx = (1u << 13) | (1u << 26) | (1u << 28) | (1u << 0);  // CX16, XSAVE, AVX, SSE3
  t[0].ebx = 0x00000800;
  t[1].function = 7;
  t[1].ebx = (1u << 5) | (1u << 16) | (1u << 0);  // AVX2, AVX512F, FSGSBASE
  t[2].function = 0xd;
  t[3].function = 0xb;
  return t;
}

TEST(pvm_masks_what_the_emulator_cannot_run) {
  auto t = build_cpuid(host_like(), {.vcpu_id = 2, .vcpu_count = 4, .pvm_host = true});
  CHECK_EQ(t.size(), size_t(4));  // leaf 0xd kept: KVM takes the XCR0 it accepts from it
  CHECK_EQ(t[0].ecx & (1u << 13), 0u);
  CHECK_EQ(t[0].ecx & (1u << 26), 0u);
  CHECK_EQ(t[0].ecx & (1u << 28), 0u);
  CHECK_EQ(t[0].ecx & 1u, 1u);               // SSE3 kept
  CHECK(t[0].ecx & (1u << 31));              // hypervisor bit
  CHECK_EQ(t[0].ebx >> 24, 2u);              // APIC ID
  CHECK_EQ((t[0].ebx >> 16) & 0xff, 4u);     // logical CPUs
  CHECK_EQ(t[1].ebx, 1u);                    // only FSGSBASE left
  CHECK_EQ(t[3].edx, 2u);                    // x2APIC ID
}

TEST(hardware_host_keeps_features) {
  auto t = build_cpuid(host_like(), {.vcpu_id = 0, .vcpu_count = 1, .pvm_host = false});
  CHECK_EQ(t.size(), size_t(4));
  CHECK(t[0].ecx & (1u << 13));
  CHECK(t[0].ecx & (1u << 28));
  CHECK(t[1].ebx & (1u << 5));
}

// KVM's PV leaf as KVM_GET_SUPPORTED_CPUID reports it on this kind of host
// (0x40000001 EAX 0x1007efb: kvmclock, PV EOI, PV_UNHALT, PV TLB flush, PV
// IPIs, poll control, directed yield, ...).
static std::vector<kvm_cpuid_entry2> with_kvm_leaf() {
  std::vector<kvm_cpuid_entry2> t(1);
  t[0].function = 0x40000001;
  t[0].eax = 0x1007efb;
  return t;
}

TEST(pvm_hides_the_pv_features_that_are_hypercalls) {
  auto t = build_cpuid(with_kvm_leaf(), {.vcpu_id = 1, .vcpu_count = 2, .pvm_host = true});
  CHECK_EQ(t[0].eax & (1u << 7), 0u);   // PV_UNHALT: PV spinlocks kick with KVM_HC_KICK_CPU
  CHECK_EQ(t[0].eax & (1u << 9), 0u);   // PV_TLB_FLUSH (left to the host; unverified on kvm_pvm)
  CHECK_EQ(t[0].eax & (1u << 11), 0u);  // PV_SEND_IPI
  CHECK_EQ(t[0].eax & (1u << 13), 0u);  // PV_SCHED_YIELD
  CHECK_EQ(t[0].eax & (1u << 16), 0u);  // HC_MAP_GPA_RANGE
  CHECK_EQ(t[0].eax, 0x1007efbu & ~((1u << 7) | (1u << 9) | (1u << 11) | (1u << 13) | (1u << 16)));  // the rest stays
  auto h = build_cpuid(with_kvm_leaf(), {.vcpu_id = 1, .vcpu_count = 2, .pvm_host = false});
  CHECK_EQ(h[0].eax, 0x1007efbu);  // real KVM completes hypercalls: all kept
}

// Leaf 0x80000008 EAX[7:0] is the physical address width the PCI windows
// are sized by (machine/pci_windows.h); without the leaf, the fallback.
TEST(phys_addr_bits_come_from_leaf_0x80000008) {
  std::vector<kvm_cpuid_entry2> t(2);
  t[0].function = 1;
  t[1].function = 0x80000008;
  t[1].eax = 0x3027;  // 39 physical, 48 linear
  CHECK_EQ(phys_addr_bits(t, 36), 39);
  t[1].eax = 0x3030;
  CHECK_EQ(phys_addr_bits(build_cpuid(t, {.vcpu_id = 0, .vcpu_count = 2, .pvm_host = true}), 36), 48);
  t[1].eax = 0;  // a zero width is no answer
  CHECK_EQ(phys_addr_bits(t, 36), 36);
  t.pop_back();
  CHECK_EQ(phys_addr_bits(t, 40), 40);
}
