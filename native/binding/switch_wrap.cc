// N-API face of net::Switch (an isolated network's switch), run inside the
// Vireo service: new NetSwitch({ path, dhcp? }), counters(), leases(), stop().
// The switch has its own thread; nothing here calls JS from it.
#include <napi.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "net/switch.h"

namespace vireo::binding {

namespace {

std::string str(const Napi::Object& o, const char* k) {
  auto v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

std::string mac_text(const net::Mac& m) {
  char b[18];
  std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return b;
}

class SwitchWrap : public Napi::ObjectWrap<SwitchWrap> {
public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NetSwitch",
                       {InstanceMethod("stop", &SwitchWrap::Stop), InstanceMethod("counters", &SwitchWrap::Counters),
                        InstanceMethod("leases", &SwitchWrap::Leases)});
  }

  explicit SwitchWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SwitchWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "NetSwitch({ path, dhcp? })");
    auto o = info[0].As<Napi::Object>();
    net::SwitchOptions so;
    so.path = str(o, "path");
    try {
      auto d = o.Get("dhcp");
      if (d.IsObject()) {
        auto dd = d.As<Napi::Object>();
        net::DhcpConfig& c = so.dhcp;
        c.enabled = true;
        c.server = net::parse_ipv4(str(dd, "server"), "DHCP server");
        auto prefix = dd.Get("prefix");
        int p = prefix.IsNumber() ? prefix.As<Napi::Number>().Int32Value() : -1;
        if (p < 1 || p > 30) throw net::NetError("DHCP: the prefix must be 1-30 bits");
        c.netmask = uint32_t(0xffffffffull << (32 - p));
        c.range_start = net::parse_ipv4(str(dd, "start"), "DHCP range start");
        c.range_end = net::parse_ipv4(str(dd, "end"), "DHCP range end");
        if (!str(dd, "router").empty()) c.router = net::parse_ipv4(str(dd, "router"), "router");
        if (!str(dd, "dns").empty()) c.dns = net::parse_ipv4(str(dd, "dns"), "DNS server");
        auto ls = dd.Get("leaseSeconds");
        if (ls.IsNumber()) c.lease_s = uint32_t(std::max(60, ls.As<Napi::Number>().Int32Value()));
      }
      sw_ = std::make_unique<net::Switch>(so);
    } catch (net::NetError& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

private:
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (sw_) sw_->stop();
    return info.Env().Undefined();
  }
  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto r = Napi::Object::New(env);
    if (!sw_) return r;
    auto c = sw_->counters();
    r.Set("frames", double(c.frames));
    r.Set("forwarded", double(c.forwarded));
    r.Set("flooded", double(c.flooded));
    r.Set("droppedMalformed", double(c.dropped_malformed));
    r.Set("droppedFull", double(c.dropped_full));
    r.Set("dhcpReplies", double(c.dhcp_replies));
    r.Set("ports", double(c.ports));
    return r;
  }
  Napi::Value Leases(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto a = Napi::Array::New(env);
    if (!sw_) return a;
    uint32_t i = 0;
    for (const auto& l : sw_->leases()) {
      if (l.hostname == "declined") continue;
      auto o = Napi::Object::New(env);
      o.Set("mac", mac_text(l.mac));
      o.Set("ip", net::format_ipv4(l.ip));
      o.Set("expires", double(l.expires));
      if (!l.hostname.empty()) o.Set("hostname", l.hostname);
      a.Set(i++, o);
    }
    return a;
  }
  std::unique_ptr<net::Switch> sw_;
};

}  // namespace

Napi::Function InitSwitch(Napi::Env env) { return SwitchWrap::Init(env); }

}  // namespace vireo::binding
