// N-API face of a core Machine. Converts at the edge, delivers events through
// thread-safe functions (never calling JS from a vCPU thread), and never
// holds a core lock while calling JS.
#pragma once
#include <napi.h>

#include <memory>

#include "machine/machine.h"

namespace vireo::binding {

class MachineWrap : public Napi::ObjectWrap<MachineWrap> {
public:
  static Napi::Function Init(Napi::Env env);
  explicit MachineWrap(const Napi::CallbackInfo& info);
  ~MachineWrap() override;
  // Stops the machine and drops the event functions (env teardown, finalizer).
  void Shutdown();

private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value SaveState(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value CreateDiskSnapshots(const Napi::CallbackInfo& info);
  Napi::Value DeleteDiskSnapshots(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value WriteSerial(const Napi::CallbackInfo& info);
  Napi::Value OnSerial(const Napi::CallbackInfo& info);
  Napi::Value OnState(const Napi::CallbackInfo& info);
  Napi::Value SendKey(const Napi::CallbackInfo& info);
  Napi::Value SendCombo(const Napi::CallbackInfo& info);
  Napi::Value SendMouse(const Napi::CallbackInfo& info);
  Napi::Value SendPointer(const Napi::CallbackInfo& info);
  Napi::Value TabletActive(const Napi::CallbackInfo& info);
  Napi::Value SetDisplaySize(const Napi::CallbackInfo& info);
  Napi::Value PollFrame(const Napi::CallbackInfo& info);
  Napi::Value ScreenshotPng(const Napi::CallbackInfo& info);
  Napi::Value ScreenText(const Napi::CallbackInfo& info);
  Napi::Value PowerButton(const Napi::CallbackInfo& info);
  Napi::Value ChangeCdrom(const Napi::CallbackInfo& info);
  Napi::Value EjectCdrom(const Napi::CallbackInfo& info);
  Napi::Value SetNicLink(const Napi::CallbackInfo& info);
  Napi::Value NicStats(const Napi::CallbackInfo& info);
  Napi::Value PerfStats(const Napi::CallbackInfo& info);
  Napi::Value PciDevices(const Napi::CallbackInfo& info);

  void DrainSerial(Napi::Env env);
  void ReleaseEvents();
  // After stop(): keeps what JS may still ask for, then destroys the core
  // Machine so its KVM fds and guest memory go now, not at garbage collection.
  void Release();

  std::string final_state_ = "stopped";
  std::vector<uint8_t> leftover_[2];

  std::unique_ptr<Machine> m_;
  Napi::FunctionReference serial_cb_, state_cb_;
  Napi::ThreadSafeFunction serial_tsfn_, state_tsfn_;
  bool events_live_ = false;
};

}  // namespace vireo::binding
