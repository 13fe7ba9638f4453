#include "binding/machine_wrap.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "devices/vga/vga.h"
#include "machine/pc_board.h"
#include <mutex>
#include <set>

namespace vireo::binding {

namespace {

// Every live wrap, so that environment teardown (process exit, worker end)
// stops vCPU threads before the addon is unloaded.
std::mutex g_live_mu;
std::set<MachineWrap*> g_live;

struct StateMsg {
  RunState state;
  StopInfo info;
};

std::string hex64(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
  return b;
}

std::string hex_bytes(const std::vector<uint8_t>& v) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < v.size(); i++) {
    std::snprintf(b, sizeof b, i ? " %02x" : "%02x", v[i]);
    s += b;
  }
  return s;
}

Napi::Object state_event(Napi::Env env, const StateMsg& m) {
  auto o = Napi::Object::New(env);
  o.Set("state", run_state_name(m.state));
  if (m.state == RunState::Stopped || m.state == RunState::Crashed) {
    auto r = Napi::Object::New(env);
    r.Set("kind", m.info.kind);
    r.Set("message", m.info.message);
    if (m.info.kind == "exit") r.Set("code", m.info.code);
    if (m.info.vcpu >= 0) r.Set("vcpu", m.info.vcpu);
    if (m.info.has_rip) r.Set("rip", hex64(m.info.rip));
    if (!m.info.bytes.empty()) r.Set("bytes", hex_bytes(m.info.bytes));
    o.Set("reason", r);
  }
  return o;
}

std::string get_str(const Napi::Object& o, const char* k) {
  auto v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

MachineConfig parse_config(const Napi::Object& o) {
  MachineConfig c;
  auto mem = o.Get("memoryMiB");
  if (mem.IsNumber()) c.mem_bytes = uint64_t(mem.As<Napi::Number>().Int64Value()) << 20;
  auto cpus = o.Get("cpus");
  if (cpus.IsNumber()) c.cpus = cpus.As<Napi::Number>().Int32Value();
  c.kernel = get_str(o, "kernel");
  c.initrd = get_str(o, "initrd");
  c.append = get_str(o, "append");
  c.flat = get_str(o, "flat");
  auto fa = o.Get("flatAddress");
  if (fa.IsNumber()) c.flat_addr = uint64_t(fa.As<Napi::Number>().Int64Value());
  c.bios = get_str(o, "bios");
  c.vga_bios = get_str(o, "vgaBios");
  c.boot_order = get_str(o, "bootOrder");
  if (c.boot_order.empty()) c.boot_order = "cdn";
  c.boot_menu = o.Get("bootMenu").ToBoolean();
  auto bmt = o.Get("bootMenuTimeout");
  if (bmt.IsNumber()) c.boot_menu_timeout_ms = uint32_t(std::clamp(bmt.As<Napi::Number>().DoubleValue(), 0.0, 65535.0));
  c.uuid = get_str(o, "uuid");
  c.no_reboot = o.Get("noReboot").ToBoolean();
  auto tablet = o.Get("usbTablet");
  c.usb_tablet = tablet.IsBoolean() ? tablet.As<Napi::Boolean>().Value() : true;  // on unless turned off
  auto display = o.Get("display");
  if (display.IsObject()) {
    auto d = display.As<Napi::Object>();
    auto dim = [&](const char* k) {
      auto v = d.Get(k);
      double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
      return x >= 1 && x <= 65535 ? uint32_t(x) : 65535u;  // out of range: the board refuses it by name
    };
    c.display_width = dim("width");
    c.display_height = dim("height");
  }
  auto disks = o.Get("disks");
  if (disks.IsArray()) {
    auto a = disks.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      auto d = a.Get(i).As<Napi::Object>();
      DiskSpec s;
      s.path = get_str(d, "path");
      s.format = get_str(d, "format");
      s.read_only = d.Get("readOnly").ToBoolean();
      s.cdrom = get_str(d, "media") == "cdrom";
      s.virtio = get_str(d, "bus") == "virtio";
      s.snapshot = d.Get("snapshot").ToBoolean();
      c.disks.push_back(s);
    }
  }
  auto nics = o.Get("nics");
  if (nics.IsArray()) {
    auto a = nics.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      auto n = a.Get(i).As<Napi::Object>();
      NicSpec s;
      if (n.Has("model")) s.model = get_str(n, "model");
      s.mac = get_str(n, "mac");
      if (n.Has("backend")) s.backend = get_str(n, "backend");
      if (n.Has("linkUp")) s.link_up = n.Get("linkUp").ToBoolean();
      s.restrict = n.Get("restrict").ToBoolean();
      s.net = get_str(n, "net");
      s.host = get_str(n, "host");
      s.dhcp_start = get_str(n, "dhcpStart");
      s.dns = get_str(n, "dns");
      s.socket = get_str(n, "socket");
      s.bridge = get_str(n, "bridge");
      s.tap = get_str(n, "tap");
      auto fw = n.Get("hostfwd");
      if (fw.IsArray()) {
        auto fa = fw.As<Napi::Array>();
        for (uint32_t k = 0; k < fa.Length(); k++) s.hostfwd.push_back(fa.Get(k).ToString().Utf8Value());
      }
      c.nics.push_back(s);
    }
  }
  return c;
}

}  // namespace

Napi::Function MachineWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "Machine",
                                 {
                                     InstanceMethod<&MachineWrap::Start>("start"),
                                     InstanceMethod<&MachineWrap::Pause>("pause"),
                                     InstanceMethod<&MachineWrap::Resume>("resume"),
                                     InstanceMethod<&MachineWrap::SaveState>("saveState"),
                                     InstanceMethod<&MachineWrap::LoadState>("loadState"),
                                     InstanceMethod<&MachineWrap::CreateDiskSnapshots>("createDiskSnapshots"),
                                     InstanceMethod<&MachineWrap::DeleteDiskSnapshots>("deleteDiskSnapshots"),
                                     InstanceMethod<&MachineWrap::Stop>("stop"),
                                     InstanceAccessor<&MachineWrap::GetState>("state"),
                                     InstanceMethod<&MachineWrap::WriteSerial>("writeSerial"),
                                     InstanceMethod<&MachineWrap::OnSerial>("onSerial"),
                                     InstanceMethod<&MachineWrap::OnState>("onState"),
                                     InstanceMethod<&MachineWrap::SendKey>("sendKey"),
                                     InstanceMethod<&MachineWrap::SendCombo>("sendCombo"),
                                     InstanceMethod<&MachineWrap::SendMouse>("sendMouse"),
                                     InstanceMethod<&MachineWrap::SendPointer>("sendPointer"),
                                     InstanceMethod<&MachineWrap::TabletActive>("tabletActive"),
                                     InstanceMethod<&MachineWrap::SetDisplaySize>("setDisplaySize"),
                                     InstanceMethod<&MachineWrap::PollFrame>("pollFrame"),
                                     InstanceMethod<&MachineWrap::ScreenshotPng>("screenshotPng"),
                                     InstanceMethod<&MachineWrap::ScreenText>("screenText"),
                                     InstanceMethod<&MachineWrap::PowerButton>("powerButton"),
                                     InstanceMethod<&MachineWrap::ChangeCdrom>("changeCdrom"),
                                     InstanceMethod<&MachineWrap::EjectCdrom>("ejectCdrom"),
                                     InstanceMethod<&MachineWrap::SetNicLink>("setNicLink"),
                                     InstanceMethod<&MachineWrap::NicStats>("nicStats"),
                                     InstanceMethod<&MachineWrap::PerfStats>("perfStats"),
                                     InstanceMethod<&MachineWrap::PciDevices>("pciDevices"),
                                 });
  env.AddCleanupHook([] {
    std::set<MachineWrap*> live;
    {
      std::lock_guard g(g_live_mu);
      live = g_live;
    }
    for (auto* w : live) w->Shutdown();
  });
  return f;
}

MachineWrap::MachineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MachineWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "Machine(config): config object required").ThrowAsJavaScriptException();
    return;
  }
  try {
    m_ = std::make_unique<Machine>(parse_config(info[0].As<Napi::Object>()));
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
    return;
  }
  std::lock_guard g(g_live_mu);
  g_live.insert(this);
}

MachineWrap::~MachineWrap() {
  Shutdown();
  std::lock_guard g(g_live_mu);
  g_live.erase(this);
}

void MachineWrap::Shutdown() {
  Release();
  ReleaseEvents();
}

void MachineWrap::Release() {
  if (!m_) return;
  m_->stop();  // joins vCPU threads; their last TSFN calls are queued, not blocking
  m_->on_serial_ready = nullptr;
  m_->on_state = nullptr;
  final_state_ = run_state_name(m_->state());
  for (int port = 0; port < 2; port++) {
    auto b = m_->take_serial(port);
    leftover_[port].insert(leftover_[port].end(), b.begin(), b.end());
  }
  m_.reset();
}

void MachineWrap::ReleaseEvents() {
  if (!events_live_) return;
  events_live_ = false;
  serial_tsfn_.Release();
  state_tsfn_.Release();
}

void MachineWrap::DrainSerial(Napi::Env env) {
  for (int port = 0; port < 2; port++) {
    std::vector<uint8_t> bytes;
    bytes.swap(leftover_[port]);
    if (m_) {
      auto more = m_->take_serial(port);
      bytes.insert(bytes.end(), more.begin(), more.end());
    }
    if (bytes.empty() || serial_cb_.IsEmpty()) continue;
    auto buf = Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
    serial_cb_.Call({Napi::Number::New(env, port), buf});
  }
}

Napi::Value MachineWrap::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!m_) {
    Napi::Error::New(env, "cannot start a machine that is " + final_state_ + "; create a new one").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // The thread-safe functions keep the event loop alive while the VM runs and
  // are released once the final state has been delivered.
  auto noop = Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  serial_tsfn_ = Napi::ThreadSafeFunction::New(env, noop, "vireo-serial", 0, 1);
  state_tsfn_ = Napi::ThreadSafeFunction::New(env, noop, "vireo-state", 0, 1);
  events_live_ = true;
  Napi::ThreadSafeFunction serial = serial_tsfn_, state = state_tsfn_;
  m_->on_serial_ready = [this, serial]() mutable {
    serial.NonBlockingCall([this](Napi::Env env, Napi::Function) { DrainSerial(env); });
  };
  m_->on_state = [this, state](RunState s, const StopInfo& i) mutable {
    auto* msg = new StateMsg{s, i};
    state.NonBlockingCall(msg, [this](Napi::Env env, Napi::Function, StateMsg* msg) {
      std::unique_ptr<StateMsg> owned(msg);
      DrainSerial(env);  // output written before the stop reaches JS first
      if (!state_cb_.IsEmpty()) state_cb_.Call({state_event(env, *owned)});
      if (owned->state == RunState::Stopped || owned->state == RunState::Crashed) ReleaseEvents();
    });
  };
  try {
    m_->start();
  } catch (std::exception& e) {
    ReleaseEvents();
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::Pause(const Napi::CallbackInfo& info) {
  if (m_) m_->pause();
  return info.Env().Undefined();
}

// saveState(path) / loadState(path): machine/state.h. Both throw with the
// engine's message (a device that cannot save, a bad or foreign file, a
// changed configuration).
Napi::Value MachineWrap::SaveState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "saveState(path): a path is required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!m_) {
    Napi::Error::New(env, "cannot save a machine that is " + final_state_).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  try {
    m_->save_state(info[0].As<Napi::String>().Utf8Value());
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::LoadState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "loadState(path): a path is required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!m_) {
    Napi::Error::New(env, "cannot load a state into a machine that is " + final_state_).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  try {
    m_->load_state(info[0].As<Napi::String>().Utf8Value());
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// createDiskSnapshots(name) / deleteDiskSnapshots(name): internal snapshots of
// every writable qcow2 disk, machine paused (Machine::create_disk_snapshots).
// Both throw with the engine's message (raw disks named, a name in use...).
Napi::Value MachineWrap::CreateDiskSnapshots(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "createDiskSnapshots(name): a name is required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!m_) {
    Napi::Error::New(env, "cannot snapshot a machine that is " + final_state_).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  try {
    m_->create_disk_snapshots(info[0].As<Napi::String>().Utf8Value());
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::DeleteDiskSnapshots(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "deleteDiskSnapshots(name): a name is required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!m_) {
    Napi::Error::New(env, "cannot delete snapshots of a machine that is " + final_state_).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  try {
    m_->delete_disk_snapshots(info[0].As<Napi::String>().Utf8Value());
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::Resume(const Napi::CallbackInfo& info) {
  if (m_) m_->resume();
  return info.Env().Undefined();
}

Napi::Value MachineWrap::Stop(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value MachineWrap::GetState(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), m_ ? run_state_name(m_->state()) : final_state_);
}

Napi::Value MachineWrap::WriteSerial(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    Napi::TypeError::New(env, "writeSerial(port, Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto a = info[1].As<Napi::Uint8Array>();
  if (m_) m_->write_serial(info[0].As<Napi::Number>().Int32Value(), a.Data(), a.ByteLength());
  return env.Undefined();
}

Napi::Value MachineWrap::OnSerial(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsFunction()) serial_cb_ = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value MachineWrap::OnState(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsFunction()) state_cb_ = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static PcBoard* pc(const std::unique_ptr<Machine>& m, const Napi::CallbackInfo& info, const char* what) {
  PcBoard* b = m ? dynamic_cast<PcBoard*>(m->board()) : nullptr;
  if (!b) {
    Napi::Error::New(info.Env(), std::string(what) +
                                     " needs the PC board (display and PS/2); this machine runs a flat binary or a "
                                     "kernel without firmware and has only serial ports")
        .ThrowAsJavaScriptException();
  }
  return b;
}

Napi::Value MachineWrap::SendKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "sendKey");
  if (!b) return env.Undefined();
  if (info.Length() < 2 || !info[0].IsString()) {
    Napi::TypeError::New(env, "sendKey(code: string, down: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string code = info[0].As<Napi::String>().Utf8Value();
  if (!b->key(code, info[1].ToBoolean())) {
    Napi::Error::New(env, "unknown key code '" + code + "'").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::SendCombo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "sendCombo");
  if (!b) return env.Undefined();
  std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (!b->combo(name)) Napi::Error::New(env, "unknown key combination '" + name + "'").ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value MachineWrap::SendMouse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "sendMouse");
  if (!b) return env.Undefined();
  auto num = [&](size_t i) { return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : 0; };
  b->mouse(num(0), num(1), num(2), uint8_t(num(3) & 7));
  return env.Undefined();
}

Napi::Value MachineWrap::SendPointer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "sendPointer");
  if (!b) return env.Undefined();
  auto num = [&](size_t i) { return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : 0; };
  return Napi::Boolean::New(env, b->pointer_abs(num(0), num(1), uint8_t(num(2) & 0x1f), num(3), num(4)));
}

Napi::Value MachineWrap::TabletActive(const Napi::CallbackInfo& info) {
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  return Napi::Boolean::New(info.Env(), b && b->tablet_active());
}

Napi::Value MachineWrap::SetDisplaySize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "setDisplaySize");
  if (!b) return env.Undefined();
  auto num = [&](size_t i) {
    double x = info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : 0;
    return x >= 0 && x <= 65535 ? uint32_t(x) : 0u;
  };
  return Napi::Boolean::New(env, b->set_display_size(num(0), num(1)));
}

Napi::Value MachineWrap::PollFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  if (!b) return env.Null();
  bool full = info.Length() > 0 && info[0].ToBoolean();
  auto up = b->poll(full);
  if (!up) return env.Null();
  auto o = Napi::Object::New(env);
  o.Set("width", up->width);
  o.Set("height", up->height);
  o.Set("modeChanged", up->mode_changed);
  auto rects = Napi::Array::New(env, up->rects.size());
  for (size_t i = 0; i < up->rects.size(); i++) {
    auto& r = up->rects[i];
    auto ro = Napi::Object::New(env);
    ro.Set("x", r.r.x);
    ro.Set("y", r.r.y);
    ro.Set("w", r.r.w);
    ro.Set("h", r.r.h);
    ro.Set("data", Napi::Buffer<uint8_t>::Copy(env, r.bgrx.data(), r.bgrx.size()));
    rects.Set(uint32_t(i), ro);
  }
  o.Set("rects", rects);
  return o;
}

Napi::Value MachineWrap::ScreenshotPng(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "screenshotPng");
  if (!b) return env.Undefined();
  auto png = b->screenshot_png();
  return Napi::Buffer<uint8_t>::Copy(env, png.data(), png.size());
}

Napi::Value MachineWrap::ScreenText(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  return Napi::String::New(env, b ? b->screen_text() : std::string());
}

Napi::Value MachineWrap::PowerButton(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  return Napi::Boolean::New(env, b ? b->press_power_button() : false);
}

Napi::Value MachineWrap::ChangeCdrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "changeCdrom");
  if (!b) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "changeCdrom(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  try {
    b->change_cdrom(info[0].As<Napi::String>().Utf8Value());
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::EjectCdrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = pc(m_, info, "ejectCdrom");
  if (!b) return env.Undefined();
  try {
    return Napi::Boolean::New(env, b->eject_cdrom());
  } catch (std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value MachineWrap::SetNicLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env, "setNicLink(index: number, up: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  int64_t i = info[0].As<Napi::Number>().Int64Value();
  bool ok = b && i >= 0 && b->set_nic_link(size_t(i), info[1].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(env, ok);
}

Napi::Value MachineWrap::PciDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  auto fns = b ? b->pci_functions() : std::vector<PcBoard::PciInfo>{};
  auto a = Napi::Array::New(env, fns.size());
  for (size_t i = 0; i < fns.size(); i++) {
    const auto& f = fns[i];
    auto o = Napi::Object::New(env);
    o.Set("slot", f.slot);
    o.Set("fn", f.fn);
    o.Set("vendorId", f.vendor);
    o.Set("deviceId", f.device);
    o.Set("classCode", double(f.class_code));
    o.Set("name", f.name);
    a.Set(uint32_t(i), o);
  }
  return a;
}

Napi::Value MachineWrap::NicStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  size_t n = b ? b->nic_count() : 0;
  auto a = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    auto c = b->nic_counters(i);
    auto o = Napi::Object::New(env);
    o.Set("rxPackets", double(c.rx_packets));
    o.Set("rxBytes", double(c.rx_bytes));
    o.Set("rxDropped", double(c.rx_dropped));
    o.Set("txPackets", double(c.tx_packets));
    o.Set("txBytes", double(c.tx_bytes));
    o.Set("txDropped", double(c.tx_dropped));
    o.Set("txMalformed", double(c.tx_malformed));
    o.Set("rxBadBuffers", double(c.rx_bad_buffers));
    o.Set("linkUp", b->nic_link_up(i));
    auto leases = b->nic_leases(i);
    auto la = Napi::Array::New(env, leases.size());
    for (size_t k = 0; k < leases.size(); k++) {
      const auto& l = leases[k];
      char mac[18], ip[16];
      std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", l.mac[0], l.mac[1], l.mac[2], l.mac[3], l.mac[4], l.mac[5]);
      std::snprintf(ip, sizeof ip, "%u.%u.%u.%u", l.ip >> 24, l.ip >> 16 & 255, l.ip >> 8 & 255, l.ip & 255);
      auto lo = Napi::Object::New(env);
      lo.Set("mac", mac);
      lo.Set("ip", ip);
      lo.Set("expires", double(l.expires));
      if (!l.hostname.empty()) lo.Set("hostname", l.hostname);
      la.Set(uint32_t(k), lo);
    }
    o.Set("leases", la);
    a.Set(uint32_t(i), o);
  }
  return a;
}

// One call for the Performance graphs: cumulative counters (the caller takes
// rates from two samples). memory.residentBytes costs a mincore() over guest
// RAM; pass {memory: false} to skip it (then it is -1).
Napi::Value MachineWrap::PerfStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool want_mem = true;
  if (info.Length() > 0 && info[0].IsObject()) {
    auto opt = info[0].As<Napi::Object>();
    if (opt.Has("memory")) want_mem = opt.Get("memory").ToBoolean();
  }
  auto o = Napi::Object::New(env);
  o.Set("vcpus", m_ ? m_->vcpu_count() : 0);
  o.Set("cpuNs", m_ ? double(m_->vcpu_cpu_ns()) : 0.0);
  o.Set("ramBytes", m_ ? double(m_->ram_bytes()) : 0.0);
  o.Set("residentBytes", m_ && want_mem ? double(m_->ram_resident_bytes()) : -1.0);
  PcBoard* b = m_ ? dynamic_cast<PcBoard*>(m_->board()) : nullptr;
  auto disks = b ? b->disk_io() : std::vector<PcBoard::DiskIo>{};
  auto da = Napi::Array::New(env, disks.size());
  for (size_t i = 0; i < disks.size(); i++) {
    const auto& d = disks[i];
    auto e = Napi::Object::New(env);
    e.Set("path", d.path);
    e.Set("cdrom", d.cdrom);
    e.Set("readBytes", double(d.read_bytes));
    e.Set("readOps", double(d.read_ops));
    e.Set("writeBytes", double(d.write_bytes));
    e.Set("writeOps", double(d.write_ops));
    e.Set("flushOps", double(d.flush_ops));
    da.Set(uint32_t(i), e);
  }
  o.Set("disks", da);
  size_t n = b ? b->nic_count() : 0;
  auto na = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    auto c = b->nic_counters(i);
    auto e = Napi::Object::New(env);
    e.Set("rxBytes", double(c.rx_bytes));
    e.Set("rxPackets", double(c.rx_packets));
    e.Set("txBytes", double(c.tx_bytes));
    e.Set("txPackets", double(c.tx_packets));
    na.Set(uint32_t(i), e);
  }
  o.Set("nics", na);
  if (b) {
    auto loss = b->input_loss();
    auto in = Napi::Object::New(env);
    in.Set("droppedKeys", double(loss.dropped_keys));
    in.Set("mergedClicks", double(loss.merged_clicks));
    o.Set("input", in);
  }
  return o;
}

}  // namespace vireo::binding
