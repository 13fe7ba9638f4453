#include "machine/vcpu_sample.h"

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace vireo {

uint32_t lapic_reg(const kvm_lapic_state& l, unsigned off) {
  uint32_t v = 0;
  if (off + 4 <= sizeof l.regs) std::memcpy(&v, l.regs + off, 4);
  return v;
}

std::vector<int> lapic_vectors(const kvm_lapic_state& l, unsigned base) {
  std::vector<int> out;
  for (unsigned i = 0; i < 8; i++) {
    const uint32_t w = lapic_reg(l, base + i * 16);
    for (unsigned b = 0; b < 32; b++)
      if (w & (1u << b)) out.push_back(int(i * 32 + b));
  }
  return out;
}

const char* mp_state_name(uint32_t s) {
  switch (s) {
    case KVM_MP_STATE_RUNNABLE: return "runnable";
    case KVM_MP_STATE_UNINITIALIZED: return "uninit";
    case KVM_MP_STATE_INIT_RECEIVED: return "init-received";
    case KVM_MP_STATE_HALTED: return "halted";
    case KVM_MP_STATE_SIPI_RECEIVED: return "sipi-received";
    default: return "?";
  }
}

namespace {
void appendf(std::string& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& s, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) s.append(buf, size_t(std::min<int>(n, int(sizeof buf) - 1)));
}
std::string vec_list(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) {
    char b[8];
    std::snprintf(b, sizeof b, "%s%x", i ? "," : "", v[i]);
    s += b;
  }
  return s + "]";
}
}  // namespace

std::string format_vcpu_sample(const VcpuSample& s) {
  std::string o;
  const kvm_regs& r = s.regs;
  appendf(o, "[vireo] sample %.1fs vCPU %d rip=%016llx rsp=%016llx cpl=%u if=%d mp=%s exits=+%llu", s.t_s, s.vcpu,
          (unsigned long long)r.rip, (unsigned long long)r.rsp, unsigned(s.sregs.cs.selector & 3),
          int((r.rflags >> 9) & 1), mp_state_name(s.mp_state), (unsigned long long)s.exits);
  if (s.cpu_ns) appendf(o, " cpu=+%llums", (unsigned long long)(s.cpu_ns / 1000000));
  const kvm_vcpu_events& e = s.events;
  if (e.interrupt.injected) appendf(o, " inj-irq=%x", unsigned(e.interrupt.nr));
  if (e.exception.injected || e.exception.pending) appendf(o, " exc=%u", unsigned(e.exception.nr));
  if (e.nmi.pending || e.nmi.injected) appendf(o, " nmi=%u/%u", unsigned(e.nmi.pending), unsigned(e.nmi.injected));
  if (e.nmi.masked) o += " nmi-masked";
  if (e.interrupt.shadow) o += " shadow";
  if (s.have_lapic) {
    const kvm_lapic_state& l = s.lapic;
    const uint32_t lvtt = lapic_reg(l, 0x320);
    const char* mode = ((lvtt >> 17) & 3) == 0 ? "oneshot" : ((lvtt >> 17) & 3) == 1 ? "periodic" : "deadline";
    appendf(o, " apic=%x tpr=%x svr=%x isr=%s irr=%s lvtt=%x(%s%s,v%x) tmict=%x tmcct=%x",
            lapic_reg(l, 0x20) >> 24, lapic_reg(l, 0x80), lapic_reg(l, 0xf0), vec_list(lapic_vectors(l, 0x100)).c_str(),
            vec_list(lapic_vectors(l, 0x200)).c_str(), lvtt, mode, (lvtt & (1u << 16)) ? ",masked" : "", lvtt & 0xff,
            lapic_reg(l, 0x380), lapic_reg(l, 0x390));
  }
  if (s.have_deadline) {
    if (s.tsc_deadline == 0) o += " deadline=0";
    else appendf(o, " deadline=%+" PRId64, int64_t(s.tsc_deadline - s.tsc));
  }
  bool first = true;
  for (uint64_t q : s.stack) {
    if (q < 0xffffffff80000000ull || q == ~0ull) continue;
    o += first ? " stack:" : "";
    appendf(o, " %016llx", (unsigned long long)q);
    first = false;
  }
  return o;
}

}  // namespace vireo
