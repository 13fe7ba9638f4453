// guests/assist.asm under KVM: ring-0 INT3, UD2, POPCNT, CMPXCHG16B, FWAIT,
// CLAC/STAC and the XSAVE family in 64-bit mode, each result reported on the
// serial port. On kvm_pvm hosts KVM's emulator cannot run these and Vireo's
// assist (kvm/assist.h) completes them or delivers their exception; on
// VT-x/AMD-V the CPU runs them. The expected values are the architecture's,
// so the same test holds on both.
#include <map>

#include "kvm/kvm.h"
#include "kvm_helpers.h"

using namespace vireo;

TEST(ring0_instructions_the_pvm_emulator_lacks_behave_architecturally) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("assist.bin");
  c.mem_bytes = 64 << 20;
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  const bool done = r.wait_done(m, 120);
  m.stop();
  std::printf("        (kvm_pvm host: %s)\n%s", kvm::host_is_pvm() ? "yes, the assist runs" : "no", r.serial.c_str());
  CHECK(done);
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x0a);
  CHECK(r.serial.find("done\r\n") != std::string::npos);
  auto v = serial_values(r.serial);
  CHECK_EQ(v["cpuid1.ebx.count"], 0x00010000u);  // Vireo's topology (one vCPU) is what the guest sees
  CHECK_EQ(v["int3.vector"], 3u);
  CHECK_EQ(v["int3.rip_delta"], 1u);
  CHECK_EQ(v["ud2.vector"], 6u);
  CHECK_EQ(v["ud2.rip_delta"], 0u);
  CHECK_EQ(v["popcnt"], 13u);
  CHECK_EQ(v["popcnt.flags"], 0u);
  CHECK_EQ(v["popcnt0.flags"], 0x40u);
  CHECK_EQ(v["popcnt.mem"], 2u);
  CHECK_EQ(v["cmpxchg16b.eq.zf"], 0x40u);
  CHECK_EQ(v["cmpxchg16b.mem"], 0x33333333u);
  CHECK_EQ(v["cmpxchg16b.rax"], 0x33333333u);
  CHECK_EQ(v["cmpxchg16b.ne.zf"], 0u);
  CHECK_EQ(v["fwait"], 1u);
  CHECK_EQ(v["sse.paddd"], 0x13579bdeu);  // 0x89abcdef * 2, per dword
  CHECK_EQ(v["lar.data"], 0x00009300u);  // access byte 93: present, DPL 0, writable data, accessed (set when DS was loaded)
  CHECK_EQ(v["lsl.code"], 0u);            // limit 0, byte-granular
  CHECK_EQ(v["lsl.code.zf"], 1u);
  CHECK_EQ(v["lsl.null"], 0xdeadbeefu);   // untouched
  CHECK_EQ(v["lsl.null.zf"], 0u);
  if (v["cpuid7.ebx"] & (1u << 20)) {  // SMAP
    CHECK_EQ(v["smap.vector"], 0xffu);
    CHECK_EQ(v["stac.ac"], 1u);
    CHECK_EQ(v["clac.ac"], 0u);
  } else {
    CHECK_EQ(v["smap.vector"], 6u);
  }
  if (v["cpuid1.ecx"] & (1u << 26)) {  // XSAVE
    CHECK_EQ(v["xcr0"], 1u);
    CHECK_EQ(v["xcr0.set"], 3u);
    CHECK_EQ(v["xsave.xstate_bv"], 3u);
    CHECK_EQ(v["xsave.xmm0"], 0x89abcdefu);
    CHECK_EQ(v["xrstor.xmm0"], 0x89abcdefu);
    CHECK_EQ(v["xrstor.unaligned.vector"], 13u);
  } else {
    CHECK(v.find("xcr0") == v.end());
  }
}
