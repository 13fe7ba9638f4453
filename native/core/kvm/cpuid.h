// The CPUID table each vCPU sees: KVM_GET_SUPPORTED_CPUID, with per-vCPU
// topology filled in and, on kvm_pvm hosts, features masked that KVM's
// instruction emulator cannot execute. A pure function, unit-tested.
#pragma once
#include <linux/kvm.h>

#include <vector>

namespace vireo::kvm {

struct CpuidOptions {
  int vcpu_id = 0;
  int vcpu_count = 1;
  bool pvm_host = false;
};

std::vector<kvm_cpuid_entry2> build_cpuid(std::vector<kvm_cpuid_entry2> supported, const CpuidOptions& o);

// The guest's physical address width: leaf 0x80000008 EAX[7:0] (what SeaBIOS
// and Linux read), or `fallback` where the table has no such leaf or it says 0.
int phys_addr_bits(const std::vector<kvm_cpuid_entry2>& cpuid, int fallback);

}  // namespace vireo::kvm
