// Module entry: Machine, kvmProblem(), kvmIsPvm().
#include <napi.h>

#include "binding/machine_wrap.h"
#include "kvm/kvm.h"

namespace {

Napi::Value KvmProblem(const Napi::CallbackInfo& info) {
  std::string p = vireo::kvm::kvm_problem();
  if (p.empty()) return info.Env().Null();
  return Napi::String::New(info.Env(), p);
}

Napi::Value KvmIsPvm(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), vireo::kvm::host_is_pvm()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Machine", vireo::binding::MachineWrap::Init(env));
  exports.Set("kvmProblem", Napi::Function::New(env, KvmProblem));
  exports.Set("kvmIsPvm", Napi::Function::New(env, KvmIsPvm));
  return exports;
}

}  // namespace

NODE_API_MODULE(vireo_native, Init)
