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
