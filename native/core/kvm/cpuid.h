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

}  // namespace vireo::kvm
