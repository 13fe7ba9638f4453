// Module entry: Machine, kvmProblem(), kvmIsPvm(), peerUid(), confine(), NetSwitch.
#include <napi.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "binding/machine_wrap.h"
#include "kvm/kvm.h"
#include "sandbox/confine.h"

namespace vireo::binding {
Napi::Function InitSwitch(Napi::Env env);  // switch_wrap.cc
}

namespace {

Napi::Value KvmProblem(const Napi::CallbackInfo& info) {
  std::string p = vireo::kvm::kvm_problem();
  if (p.empty()) return info.Env().Null();
  return Napi::String::New(info.Env(), p);
}

Napi::Value KvmIsPvm(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), vireo::kvm::host_is_pvm()); }

// The UID of the process at the other end of a connected UNIX socket (SO_PEERCRED):
// the service's socket refuses other users with it (electron/services/rpc-socket.ts).
Napi::Value PeerUid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "peerUid(fd): fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
    throw Napi::Error::New(env, std::string("peerUid: SO_PEERCRED failed: ") + std::strerror(errno));
  }
  return Napi::Number::New(env, static_cast<double>(cred.uid));
}

// The engine host confines itself before it builds a machine (sandbox/confine.h).
Napi::Value Confine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto r = vireo::sandbox::confine_engine_host();
  auto o = Napi::Object::New(env);
  o.Set("noNewPrivs", r.no_new_privs);
  o.Set("seccomp", r.seccomp);
  o.Set("coreLimit", r.core_limit);
  auto p = Napi::Array::New(env, r.problems.size());
  for (size_t i = 0; i < r.problems.size(); i++) p.Set(uint32_t(i), r.problems[i]);
  o.Set("problems", p);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Machine", vireo::binding::MachineWrap::Init(env));
  exports.Set("kvmProblem", Napi::Function::New(env, KvmProblem));
  exports.Set("kvmIsPvm", Napi::Function::New(env, KvmIsPvm));
  exports.Set("peerUid", Napi::Function::New(env, PeerUid));
  exports.Set("confine", Napi::Function::New(env, Confine));
  exports.Set("NetSwitch", vireo::binding::InitSwitch(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(vireo_native, Init)
