// guests/syscall.asm under KVM: SYSCALL, SWAPGS, SYSRETQ and INT 0x80 from
// ring 3 in 64-bit mode, set up as Linux does (GDT layout, STAR, FMASK, a
// supervisor-only LSTAR page, a #PF entry that begins with CLAC). The expected
// values are the architecture's (Intel SDM "SYSCALL"/"SYSRET"), so the test
// holds on VT-x/AMD-V. On kvm_pvm hosts the host leaves a ring-3 SYSCALL at
// CPL 3 (docs/architecture.md, "SYSCALL on kvm_pvm hosts") and Vireo's assist
// completes it (kvm::complete_failed_syscall; the host runs SWAPGS and
// SYSRETQ itself); the variants the assist cannot cover there are printed,
// not asserted.
#include <map>
#include <sstream>
#include <vector>

#include "kvm/kvm.h"
#include "kvm_helpers.h"

using namespace vireo;

namespace {
// "variant NAME" starts a section; each "key value" line appends to section[key].
using Section = std::map<std::string, std::vector<uint64_t>>;
std::map<std::string, Section> parse(const std::string& serial) {
  std::map<std::string, Section> out;
  std::istringstream in(serial);
  std::string line, cur = "setup";
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string k = line.substr(0, sp), v = line.substr(sp + 1);
    if (k == "variant") {
      cur = v;
      continue;
    }
    try {
      out[cur][k].push_back(std::stoull(v, nullptr, 16));
    } catch (...) {
    }
  }
  return out;
}
uint64_t at(Section& s, const std::string& k, size_t i = 0) {
  auto& v = s[k];
  return i < v.size() ? v[i] : ~uint64_t(0);
}
}  // namespace

TEST(syscall_from_ring3_enters_ring0_at_lstar_and_sysret_returns) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("syscall.bin");
  c.mem_bytes = 64 << 20;
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  const bool done = r.wait_done(m, 120);
  m.stop();
  const bool pvm = kvm::host_is_pvm();
  std::printf("        (kvm_pvm host: %s)\n%s", pvm ? "yes, the assist completes SYSCALL" : "no", r.serial.c_str());
  CHECK(done);
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x0a);
  CHECK(r.serial.find("done\r\n") != std::string::npos);
  auto v = parse(r.serial);
  const uint64_t ret1 = at(v["setup"], "user.ret1"), ret2 = at(v["setup"], "user.ret2");
  CHECK_EQ(at(v["setup"], "fmask"), 0x47700u);

  // Two SYSCALLs from ring 3 with SYSRETQ between, as Linux's user space makes them.
  auto check_syscalls = [&](Section& s, uint64_t lstar) {
    CHECK_EQ(s["syscall.cs"].size(), 2u);
    for (size_t i = 0; i < 2; i++) {
      CHECK_EQ(at(s, "syscall.cs", i), 0x10u);    // STAR[47:32]
      CHECK_EQ(at(s, "syscall.ss", i), 0x18u);    // STAR[47:32] + 8
      CHECK_EQ(at(s, "syscall.rax", i), i + 1);
      CHECK_EQ(at(s, "syscall.rip", i), lstar);
      CHECK_EQ(at(s, "syscall.gsbase", i), 0x5a5a0000u);  // SWAPGS brought in KERNEL_GS_BASE
      CHECK_EQ(at(s, "syscall.kernelgsbase", i), 0u);
    }
    CHECK_EQ(at(s, "syscall.rcx", 0), ret1);      // the instruction after SYSCALL
    CHECK_EQ(at(s, "syscall.rcx", 1), ret2);
    CHECK_EQ(at(s, "syscall.r11", 0), 0x203u);    // user RFLAGS: IF, CF (stc)
    CHECK_EQ(at(s, "syscall.r11", 1), 0x202u);    // clc
    CHECK_EQ(at(s, "syscall.rflags", 0), 0x3u);   // RFLAGS & ~FMASK: IF gone, CF kept
    CHECK_EQ(at(s, "syscall.rflags", 1), 0x2u);
    CHECK_EQ(at(s, "user.back"), 1u);             // SYSRETQ reached ring 3 at RCX
    CHECK_EQ(at(s, "user.cs"), 0x33u);            // STAR[63:48] + 16, RPL 3
    CHECK_EQ(at(s, "user.rflags"), 0x203u);       // from R11
    CHECK(s.find("exc.vector") == s.end());
  };
  // LSTAR on a supervisor-only page: Linux's case.
  auto& sup = v["lstar_supervisor_page"];
  check_syscalls(sup, at(sup, "lstar"));

  auto& user = v["lstar_user_page"];
  auto& int80 = v["int80"];
  auto& nosce = v["nosce"];
  if (!pvm) {
    check_syscalls(user, at(user, "lstar"));
    CHECK_EQ(at(int80, "exc.vector"), 0x80u);       // INT 0x80 through the DPL-3 gate
    CHECK_EQ(at(int80, "exc.cs"), 0x33u);
    CHECK_EQ(at(nosce, "exc.vector"), 6u);          // SYSCALL with EFER.SCE=0: #UD
    CHECK_EQ(at(nosce, "exc.cs"), 0x33u);
  } else {
    // Not covered on kvm_pvm (the host's behaviour, recorded in docs/architecture.md):
    std::printf("        kvm_pvm, not asserted: LSTAR on a user page runs the handler at CPL 3 "
                "(here: vector %#llx at %#llx); INT 0x80 from ring 3 gives vector %#llx; "
                "SYSCALL with EFER.SCE=0 gives vector %#llx instead of #UD\n",
                (unsigned long long)at(user, "exc.vector"), (unsigned long long)at(user, "exc.rip"),
                (unsigned long long)at(int80, "exc.vector"), (unsigned long long)at(nosce, "exc.vector"));
  }
}
