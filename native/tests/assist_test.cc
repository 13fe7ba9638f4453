// The kvm_pvm userspace assist (kvm/assist.h) as a pure function: recorded
// exits (instruction bytes + register state) in, results out. Arithmetic
// instructions are also checked differentially: the host CPU runs the same
// bytes on the same register values and must agree with the assist.
#include "kvm/assist.h"

#include <cpuid.h>

#include <cstring>
#include <map>

#include "check.h"

using namespace vireo::kvm;
using Action = AssistResult::Action;

namespace {

constexpr uint64_t kArith = 0x8d5;  // CF PF AF ZF SF OF

// One flat range of guest-linear memory; everything else is unmapped.
struct FakeMemory : AssistMemory {
  uint64_t base = 0x10000;
  std::vector<uint8_t> data = std::vector<uint8_t>(0x4000, 0);
  bool read_only = false;
  int writes = 0;
  bool in(uint64_t a, size_t n) const { return a >= base && a + n <= base + data.size(); }
  bool read(uint64_t a, void* dst, size_t n, uint32_t& pf) override {
    if (!in(a, n)) { pf = 0; return false; }
    std::memcpy(dst, data.data() + (a - base), n);
    return true;
  }
  bool write(uint64_t a, const void* src, size_t n, uint32_t& pf) override {
    if (!in(a, n)) { pf = 2; return false; }
    if (read_only) { pf = 3; return false; }
    std::memcpy(data.data() + (a - base), src, n);
    writes++;
    return true;
  }
  uint8_t* at(uint64_t a) { return data.data() + (a - base); }
};

// 64-bit long mode, ring 0, paging, CR4.OSXSAVE, SMAP in CPUID.
AssistState long_mode() {
  AssistState st;
  st.sregs.cr0 = 0x80050033;  // PG WP NE ET MP PE
  st.sregs.cr4 = 0x40000 | 0x20 | 0x600;
  st.sregs.efer = 0xd00;      // LMA LME NXE
  st.sregs.cs.l = 1;
  st.sregs.cs.selector = 0x10;
  st.regs.rip = 0xffffffff81000000ull;
  st.regs.rflags = 0x2;
  st.xcr0 = 7;
  kvm_cpuid_entry2 e7{};
  e7.function = 7;
  e7.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  e7.ebx = 1u << 20;  // SMAP
  st.cpuid.push_back(e7);
  // Leaf 0xd as on an AVX-512 host: AVX 256 @ 576, opmask 64 @ 1088, ZMM_Hi256 512 @ 1152, Hi16_ZMM 1024 @ 1664.
  auto d = [&](uint32_t i, uint32_t eax, uint32_t ebx, uint32_t ecx) {
    kvm_cpuid_entry2 e{};
    e.function = 0xd;
    e.index = i;
    e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    e.eax = eax;
    e.ebx = ebx;
    e.ecx = ecx;
    st.cpuid.push_back(e);
  };
  d(0, 0xe7, 0xa80, 0xa80);
  d(2, 256, 576, 0);
  d(5, 64, 1088, 2);  // 64-byte aligned in the compacted form
  d(6, 512, 1152, 0);
  d(7, 1024, 1664, 0);
  return st;
}

template <size_t N> AssistResult run(const uint8_t (&b)[N], AssistState& st, AssistMemory& m) {
  return assist_instruction(b, N, st, m);
}

}  // namespace

// ---- exceptions ----

TEST(int3_delivers_bp_with_rip_past_it) {
  AssistState st = long_mode();
  FakeMemory m;
  const uint64_t rip = st.regs.rip;
  const uint8_t b[] = {0xcc, 0x90};
  AssistResult r = run(b, st, m);
  CHECK(r.action == Action::Exception);
  CHECK(r.kind == AssistKind::Int3);
  CHECK_EQ(int(r.vector), 3);
  CHECK(!r.has_error_code);
  CHECK(r.regs_changed);
  CHECK_EQ(st.regs.rip, rip + 1);
}

TEST(ud2_and_undecodable_bytes_deliver_ud_at_the_instruction) {
  AssistState st = long_mode();
  FakeMemory m;
  const uint64_t rip = st.regs.rip;
  const uint8_t ud2[] = {0x0f, 0x0b};
  AssistResult r = run(ud2, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 6);
  CHECK_EQ(st.regs.rip, rip);
  const uint8_t bad[] = {0x0f, 0x04};  // no such opcode
  r = run(bad, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 6);
  CHECK_EQ(st.regs.rip, rip);
}

TEST(unknown_instruction_is_left_unhandled) {
  AssistState st = long_mode();
  FakeMemory m;
  const uint8_t enclu[] = {0x0f, 0x01, 0xd7};  // SGX: nothing Vireo runs
  AssistResult r = run(enclu, st, m);
  CHECK(r.action == Action::Unhandled);
  CHECK_EQ(r.what, std::string("enclu"));
}

// ---- CLAC / STAC ----

TEST(clac_and_stac_change_ac_recorded_exit) {
  AssistState st = long_mode();
  FakeMemory m;
  st.regs.rflags = 0x40246;  // AC set, as in the Linux entry stub
  const uint64_t rip = st.regs.rip;
  const uint8_t clac[] = {0x0f, 0x01, 0xca};
  AssistResult r = run(clac, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::ClacStac);
  CHECK_EQ(st.regs.rflags, uint64_t(0x246));
  CHECK_EQ(st.regs.rip, rip + 3);
  const uint8_t stac[] = {0x0f, 0x01, 0xcb};
  r = run(stac, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rflags, uint64_t(0x40246));
  CHECK_EQ(st.regs.rip, rip + 6);
}

TEST(clac_without_smap_or_in_user_mode_is_ud) {
  AssistState st = long_mode();
  FakeMemory m;
  const uint8_t clac[] = {0x0f, 0x01, 0xca};
  st.cpuid[0].ebx = 0;
  CHECK_EQ(int(run(clac, st, m).vector), 6);
  st = long_mode();
  st.sregs.cs.selector = 0x33;  // CPL 3
  AssistResult r = run(clac, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 6);
}

// ---- POPCNT, differential against the host CPU ----

static uint64_t host_popcnt64(uint64_t v, uint64_t& flags) {
  uint64_t out;
  asm volatile(".byte 0xf3, 0x48, 0x0f, 0xb8, 0xc7\n\tpushfq\n\tpopq %1" : "=a"(out), "=&r"(flags) : "D"(v) : "cc");
  return out;
}
static uint64_t host_popcnt32(uint64_t rax, uint64_t v, uint64_t& flags) {
  asm volatile(".byte 0xf3, 0x0f, 0xb8, 0xc7\n\tpushfq\n\tpopq %1" : "+a"(rax), "=&r"(flags) : "D"(v) : "cc");
  return rax;
}
static uint64_t host_popcnt16(uint64_t rax, uint64_t v, uint64_t& flags) {
  asm volatile(".byte 0x66, 0xf3, 0x0f, 0xb8, 0xc7\n\tpushfq\n\tpopq %1" : "+a"(rax), "=&r"(flags) : "D"(v) : "cc");
  return rax;
}

TEST(popcnt_matches_the_host_cpu) {
  unsigned a, b, c, d;
  __cpuid_count(1, 0, a, b, c, d);
  if (!(c & (1u << 23))) SKIP("this CPU has no POPCNT to compare with");
  const uint64_t values[] = {0, 1, 0x8000000000000000ull, 0xffffffffffffffffull, 0xf0f0000000000f01ull,
                             0x00000000ffff0000ull, 0x123456789abcdef0ull, 0xffff};
  const uint64_t garbage = 0xdeadbeefcafe1234ull;
  for (uint64_t v : values) {
    struct Form {
      std::vector<uint8_t> bytes;
      uint64_t (*host)(uint64_t, uint64_t, uint64_t&);
    };
    const Form forms[] = {
        {{0xf3, 0x48, 0x0f, 0xb8, 0xc7}, [](uint64_t, uint64_t v, uint64_t& f) { return host_popcnt64(v, f); }},
        {{0xf3, 0x0f, 0xb8, 0xc7}, host_popcnt32},
        {{0x66, 0xf3, 0x0f, 0xb8, 0xc7}, host_popcnt16},
    };
    for (const Form& f : forms) {
      AssistState st = long_mode();
      FakeMemory m;
      st.regs.rax = garbage;
      st.regs.rdi = v;
      st.regs.rflags = 0x2 | kArith;  // every arithmetic flag set: POPCNT must clear them
      const uint64_t rip = st.regs.rip;
      AssistResult r = assist_instruction(f.bytes.data(), f.bytes.size(), st, m);
      CHECK(r.action == Action::Completed);
      CHECK(r.kind == AssistKind::Popcnt);
      uint64_t hflags = 0;
      const uint64_t hout = f.host(garbage, v, hflags);
      CHECK_EQ(st.regs.rax, hout);
      CHECK_EQ(st.regs.rflags & kArith, hflags & kArith);
      CHECK_EQ(st.regs.rip, rip + f.bytes.size());
    }
  }
}

TEST(popcnt_reads_memory_and_faults_where_unmapped) {
  AssistState st = long_mode();
  FakeMemory m;
  const uint32_t v = 0x80000001;
  std::memcpy(m.at(0x10100), &v, 4);
  st.regs.rsi = 0x10100;
  const uint8_t b[] = {0xf3, 0x0f, 0xb8, 0x0e};  // popcnt ecx, [rsi]
  st.regs.rcx = ~uint64_t(0);
  AssistResult r = run(b, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rcx, uint64_t(2));  // 32-bit destination zero-extends
  st.regs.rsi = 0x900000;
  const uint64_t rip = st.regs.rip;
  r = run(b, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 14);
  CHECK(r.has_error_code);
  CHECK_EQ(r.error_code, 0u);
  CHECK_EQ(r.cr2, uint64_t(0x900000));
  CHECK_EQ(st.regs.rip, rip);  // a fault: RIP stays at the instruction
}

// ---- FWAIT ----

TEST(fwait_is_skipped_unless_ts_and_mp_give_nm) {
  AssistState st = long_mode();
  FakeMemory m;
  const uint64_t rip = st.regs.rip;
  const uint8_t b[] = {0x9b};
  AssistResult r = run(b, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Fwait);
  CHECK_EQ(st.regs.rip, rip + 1);
  st.sregs.cr0 |= 8;  // TS (MP is set)
  r = run(b, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 7);
}

// ---- XGETBV / XSETBV ----

TEST(xgetbv_and_xsetbv) {
  AssistState st = long_mode();
  FakeMemory m;
  st.xcr0 = 0xe7;
  st.regs.rcx = 0;
  const uint8_t xgetbv[] = {0x0f, 0x01, 0xd0};
  AssistResult r = run(xgetbv, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rax, uint64_t(0xe7));
  CHECK_EQ(st.regs.rdx, uint64_t(0));
  st.regs.rcx = 2;
  CHECK_EQ(int(run(xgetbv, st, m).vector), 13);
  const uint8_t xsetbv[] = {0x0f, 0x01, 0xd1};
  st.regs.rcx = 0;
  st.regs.rdx = 0;
  st.regs.rax = 7;
  r = run(xsetbv, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.xcr0_changed);
  CHECK_EQ(st.xcr0, uint64_t(7));
  st.regs.rax = 5;  // AVX without SSE
  CHECK_EQ(int(run(xsetbv, st, m).vector), 13);
  st.regs.rax = 0x107;  // a component leaf 0xd does not list
  CHECK_EQ(int(run(xsetbv, st, m).vector), 13);
  st.regs.rax = 7;
  st.sregs.cs.selector = 0x33;
  CHECK_EQ(int(run(xsetbv, st, m).vector), 13);
  st = long_mode();
  st.sregs.cr4 &= ~uint64_t(0x40000);
  CHECK_EQ(int(run(xgetbv, st, m).vector), 6);
}

// ---- XSAVE family ----

static void fill_xsave_state(AssistState& st) {
  for (size_t i = 0; i < 2048; i++) st.xsave[i] = uint8_t(i * 7 + 1);
  const uint32_t mxcsr = 0x1f80, mask = 0xffff;
  std::memcpy(&st.xsave[24], &mxcsr, 4);
  std::memcpy(&st.xsave[28], &mask, 4);
  const uint64_t bv = 0xe7, comp = 0;
  std::memcpy(&st.xsave[512], &bv, 8);
  std::memcpy(&st.xsave[520], &comp, 8);
  std::memset(&st.xsave[528], 0, 48);
}

TEST(xsave_then_xrstor_round_trips_recorded_exit) {
  AssistState st = long_mode();
  FakeMemory m;
  fill_xsave_state(st);
  const auto saved = st.xsave;
  st.regs.rdi = 0x10000;
  st.regs.rax = 0xffffffff;
  st.regs.rdx = 0xffffffff;
  const uint8_t xsave[] = {0x48, 0x0f, 0xae, 0x27};  // xsave64 [rdi]
  AssistResult r = run(xsave, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Xsave);
  CHECK(std::memcmp(m.at(0x10000), saved.data(), 24) == 0);            // x87
  CHECK(std::memcmp(m.at(0x10000 + 24), saved.data() + 24, 8) == 0);   // MXCSR
  CHECK(std::memcmp(m.at(0x10000 + 160), saved.data() + 160, 256) == 0);  // XMM
  CHECK(std::memcmp(m.at(0x10000 + 576), saved.data() + 576, 256) == 0);  // AVX (XCR0 = 7: only up to AVX)
  CHECK(m.at(0x10000 + 1088)[0] == 0);                                 // opmask not saved
  uint64_t bv;
  std::memcpy(&bv, m.at(0x10000 + 512), 8);
  CHECK_EQ(bv, uint64_t(7));
  // Clobber the registers, then XRSTOR64 [rdi] (48 0f ae 2f, where Linux 6.1 stopped).
  std::fill(st.xsave.begin(), st.xsave.begin() + 1024, 0);
  const uint8_t xrstor[] = {0x48, 0x0f, 0xae, 0x2f};
  r = run(xrstor, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Xrstor);
  CHECK(r.xsave_changed);
  CHECK(std::memcmp(st.xsave.data(), saved.data(), 24) == 0);
  CHECK(std::memcmp(st.xsave.data() + 160, saved.data() + 160, 256) == 0);
  CHECK(std::memcmp(st.xsave.data() + 576, saved.data() + 576, 256) == 0);
}

TEST(xrstor_with_clear_xstate_bv_loads_initial_state) {
  AssistState st = long_mode();
  FakeMemory m;
  fill_xsave_state(st);
  st.regs.rdi = 0x10000;
  st.regs.rax = 7;
  st.regs.rdx = 0;
  // An all-zero area (XSTATE_BV = 0): x87 init (FCW 0x37f), XMM and YMM zero; MXCSR still loaded.
  const uint32_t mxcsr = 0x1f80;
  std::memcpy(m.at(0x10000 + 24), &mxcsr, 4);
  const uint8_t xrstor[] = {0x48, 0x0f, 0xae, 0x2f};
  AssistResult r = run(xrstor, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(int(st.xsave[0]), 0x7f);
  CHECK_EQ(int(st.xsave[1]), 0x03);
  CHECK_EQ(int(st.xsave[160]), 0);
  CHECK_EQ(int(st.xsave[576]), 0);
  uint32_t got;
  std::memcpy(&got, &st.xsave[24], 4);
  CHECK_EQ(got, mxcsr);
}

TEST(xsavec_writes_the_compacted_form_and_xrstor_reads_it) {
  AssistState st = long_mode();
  FakeMemory m;
  st.xcr0 = 0xe7;
  fill_xsave_state(st);
  const auto saved = st.xsave;
  st.regs.rdi = 0x10000;
  st.regs.rax = 0x27;  // x87, SSE, AVX, opmask
  st.regs.rdx = 0;
  const uint8_t xsavec[] = {0x48, 0x0f, 0xc7, 0x27};  // xsavec64 [rdi]
  AssistResult r = run(xsavec, st, m);
  CHECK(r.action == Action::Completed);
  uint64_t bv, comp;
  std::memcpy(&bv, m.at(0x10000 + 512), 8);
  std::memcpy(&comp, m.at(0x10000 + 520), 8);
  CHECK_EQ(bv, uint64_t(0x27));
  CHECK_EQ(comp, (uint64_t(1) << 63) | 0x27);
  // AVX right after the header, opmask after it rounded up to 64: 576 + 256 = 832.
  CHECK(std::memcmp(m.at(0x10000 + 576), saved.data() + 576, 256) == 0);
  CHECK(std::memcmp(m.at(0x10000 + 832), saved.data() + 1088, 64) == 0);
  std::fill(st.xsave.begin(), st.xsave.begin() + 2048, 0);
  const uint8_t xrstor[] = {0x48, 0x0f, 0xae, 0x2f};
  r = run(xrstor, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(std::memcmp(st.xsave.data() + 576, saved.data() + 576, 256) == 0);
  CHECK(std::memcmp(st.xsave.data() + 1088, saved.data() + 1088, 64) == 0);
}

TEST(xrstor_faults_like_the_cpu) {
  const uint8_t xrstor[] = {0x48, 0x0f, 0xae, 0x2f};
  auto setup = [](AssistState& st, FakeMemory& m) {
    st = long_mode();
    st.regs.rdi = 0x10000;
    st.regs.rax = 7;
    (void)m;
  };
  AssistState st;
  FakeMemory m;
  setup(st, m);
  st.regs.rdi = 0x10008;  // not 64-byte aligned
  CHECK_EQ(int(run(xrstor, st, m).vector), 13);
  setup(st, m);
  m.at(0x10000 + 512 + 20)[0] = 1;  // reserved header byte
  CHECK_EQ(int(run(xrstor, st, m).vector), 13);
  m.at(0x10000 + 512 + 20)[0] = 0;
  const uint64_t bv = 0x20;  // opmask, but XCR0 = 7
  std::memcpy(m.at(0x10000 + 512), &bv, 8);
  CHECK_EQ(int(run(xrstor, st, m).vector), 13);
  std::memset(m.at(0x10000 + 512), 0, 8);
  const uint32_t bad_mxcsr = 0xffffffff;
  std::memcpy(m.at(0x10000 + 24), &bad_mxcsr, 4);
  CHECK_EQ(int(run(xrstor, st, m).vector), 13);
  setup(st, m);
  st.regs.rdi = 0x900000;  // unmapped
  AssistResult r = run(xrstor, st, m);
  CHECK_EQ(int(r.vector), 14);
  CHECK(r.cr2 >= 0x900000);
  setup(st, m);
  st.sregs.cr4 &= ~uint64_t(0x40000);
  CHECK_EQ(int(run(xrstor, st, m).vector), 6);
}

// ---- CMPXCHG16B, differential against the host CPU ----

struct Cx16 {
  uint64_t rax, rdx, zf, mem[2];
};

static Cx16 host_cmpxchg16b(uint64_t rax, uint64_t rdx, uint64_t rbx, uint64_t rcx, const uint64_t mem_in[2]) {
  alignas(16) uint64_t mem[2] = {mem_in[0], mem_in[1]};
  uint64_t fl;
  asm volatile(".byte 0xf0, 0x48, 0x0f, 0xc7, 0x0f\n\tpushfq\n\tpopq %2"  // lock cmpxchg16b [rdi]
               : "+a"(rax), "+d"(rdx), "=&r"(fl)
               : "b"(rbx), "c"(rcx), "D"(mem)
               : "memory", "cc");
  return {rax, rdx, fl & 0x40, {mem[0], mem[1]}};
}

TEST(cmpxchg16b_matches_the_host_cpu) {
  unsigned a, b, c, d;
  __cpuid_count(1, 0, a, b, c, d);
  if (!(c & (1u << 13))) SKIP("this CPU has no CMPXCHG16B to compare with");
  const uint64_t cases[][6] = {
      // rax, rdx, rbx, rcx, mem lo, mem hi
      {1, 2, 3, 4, 1, 2},                      // equal
      {1, 2, 3, 4, 1, 5},                      // high half differs
      {1, 2, 3, 4, 9, 2},                      // low half differs
      {~0ull, ~0ull, 0, 0, ~0ull, ~0ull},
  };
  for (const auto& k : cases) {
    AssistState st = long_mode();
    FakeMemory m;
    st.regs.rax = k[0];
    st.regs.rdx = k[1];
    st.regs.rbx = k[2];
    st.regs.rcx = k[3];
    st.regs.rdi = 0x10010;
    std::memcpy(m.at(0x10010), &k[4], 16);
    const uint8_t bytes[] = {0xf0, 0x48, 0x0f, 0xc7, 0x0f};
    AssistResult r = run(bytes, st, m);
    CHECK(r.action == Action::Completed);
    CHECK(r.kind == AssistKind::Cmpxchg16b);
    Cx16 h = host_cmpxchg16b(k[0], k[1], k[2], k[3], &k[4]);
    CHECK_EQ(st.regs.rax, h.rax);
    CHECK_EQ(st.regs.rdx, h.rdx);
    CHECK_EQ(st.regs.rflags & 0x40, h.zf);
    uint64_t got[2];
    std::memcpy(got, m.at(0x10010), 16);
    CHECK_EQ(got[0], h.mem[0]);
    CHECK_EQ(got[1], h.mem[1]);
  }
}

TEST(cmpxchg16b_unaligned_is_gp_and_read_only_is_pf) {
  AssistState st = long_mode();
  FakeMemory m;
  st.regs.rdi = 0x10008;
  const uint8_t bytes[] = {0xf0, 0x48, 0x0f, 0xc7, 0x0f};
  AssistResult r = run(bytes, st, m);
  CHECK_EQ(int(r.vector), 13);
  CHECK(r.has_error_code);
  st.regs.rdi = 0x10010;
  m.read_only = true;
  r = run(bytes, st, m);
  CHECK_EQ(int(r.vector), 14);
  CHECK_EQ(r.error_code & 2, 2u);
  CHECK_EQ(m.writes, 0);
}

TEST(protected_mode_32_bit_addresses_use_segment_bases) {
  AssistState st = long_mode();
  st.sregs.efer = 0;
  st.sregs.cs.l = 0;
  st.sregs.cs.db = 1;
  st.sregs.ds.base = 0x10000;
  st.regs.rsi = 0x100;
  FakeMemory m;
  const uint32_t v = 0xff;
  std::memcpy(m.at(0x10100), &v, 4);
  const uint8_t b[] = {0xf3, 0x0f, 0xb8, 0x06};  // popcnt eax, [esi] (32-bit mode: no REX)
  AssistResult r = run(b, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rax & 0xffffffff, uint64_t(8));
}

// ---- FSGSBASE, RDPID ----

TEST(fsgsbase_reads_and_writes_segment_bases) {
  AssistState st = long_mode();
  FakeMemory m;
  st.sregs.cr4 |= 1u << 16;  // FSGSBASE
  st.sregs.gs.base = 0xffff888000001000ull;
  const uint8_t rdgsbase[] = {0xf3, 0x48, 0x0f, 0xae, 0xc8};  // rdgsbase rax
  AssistResult r = run(rdgsbase, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::FsGsBase);
  CHECK_EQ(st.regs.rax, uint64_t(0xffff888000001000ull));
  const uint8_t wrfsbase[] = {0xf3, 0x48, 0x0f, 0xae, 0xd7};  // wrfsbase rdi
  st.regs.rdi = 0x00007f0000001000ull;
  r = run(wrfsbase, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.sregs_changed);
  CHECK_EQ(st.sregs.fs.base, uint64_t(0x00007f0000001000ull));
  st.regs.rdi = 0x0000800000000000ull;  // not canonical
  CHECK_EQ(int(run(wrfsbase, st, m).vector), 13);
  st.sregs.cr4 &= ~uint64_t(1u << 16);
  CHECK_EQ(int(run(rdgsbase, st, m).vector), 6);
}

TEST(rdpid_reads_tsc_aux) {
  AssistState st = long_mode();
  FakeMemory m;
  st.tsc_aux = 5;
  st.regs.rax = ~uint64_t(0);
  const uint8_t rdpid[] = {0xf3, 0x0f, 0xc7, 0xf8};  // rdpid rax
  CHECK_EQ(assist_needs(rdpid, sizeof rdpid, st.sregs), unsigned(kNeedTscAux));
  AssistResult r = run(rdpid, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rax, uint64_t(5));
}

// ---- SSE / AVX / AVX-512 / BMI run on the host CPU ----

static uint64_t host_xcr0() {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

// Long mode with the host's real leaf 0xd (the layout KVM's XSAVE buffer uses) and a live vector state.
static AssistState simd_state() {
  AssistState st = long_mode();
  std::erase_if(st.cpuid, [](const kvm_cpuid_entry2& e) { return e.function == 0xd; });
  for (uint32_t i = 0; i < 64; i++) {
    kvm_cpuid_entry2 e{};
    e.function = 0xd;
    e.index = i;
    e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    __cpuid_count(0xd, i, e.eax, e.ebx, e.ecx, e.edx);
    st.cpuid.push_back(e);
  }
  st.xcr0 = host_xcr0() & 0xe7;
  st.have_xsave = true;
  const uint32_t mxcsr = 0x1f80, mask = 0xffff;
  std::memcpy(&st.xsave[24], &mxcsr, 4);
  std::memcpy(&st.xsave[28], &mask, 4);
  const uint64_t bv = st.xcr0;
  std::memcpy(&st.xsave[512], &bv, 8);
  return st;
}
static uint32_t* xmm(AssistState& st, int i) { return reinterpret_cast<uint32_t*>(&st.xsave[160 + 16 * i]); }

TEST(sse_register_instruction_runs_natively) {
  AssistState st = simd_state();
  FakeMemory m;
  for (int k = 0; k < 4; k++) {
    xmm(st, 0)[k] = uint32_t(k + 1);
    xmm(st, 1)[k] = uint32_t(10 * (k + 1));
  }
  const uint64_t rip = st.regs.rip;
  const uint8_t paddd[] = {0x66, 0x0f, 0xfe, 0xc1};  // paddd xmm0, xmm1
  CHECK_EQ(assist_needs(paddd, sizeof paddd, st.sregs), unsigned(kNeedXsave));
  AssistResult r = run(paddd, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Native);
  CHECK(r.xsave_changed);
  CHECK_EQ(xmm(st, 0)[0], 11u);
  CHECK_EQ(xmm(st, 0)[3], 44u);
  CHECK_EQ(xmm(st, 1)[3], 40u);
  CHECK_EQ(st.regs.rip, rip + 4);
}

TEST(sse_memory_operands_are_read_and_written_through_guest_memory) {
  AssistState st = simd_state();
  FakeMemory m;
  for (int k = 0; k < 4; k++) xmm(st, 2)[k] = 0xffff0000u;
  const uint32_t pat[4] = {0x12345678, 0x9abcdef0, 0x0f0f0f0f, 0};
  std::memcpy(m.at(0x10040), pat, 16);
  st.regs.rsi = 0x10040;
  st.regs.rbx = 0x1111;  // a GPR the re-encoded instruction may borrow: it must come back unchanged
  const uint8_t pxor[] = {0x66, 0x0f, 0xef, 0x16};  // pxor xmm2, [rsi]
  AssistResult r = run(pxor, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(xmm(st, 2)[0], 0xffff0000u ^ 0x12345678u);
  CHECK_EQ(xmm(st, 2)[3], 0xffff0000u);
  CHECK_EQ(st.regs.rbx, uint64_t(0x1111));
  CHECK_EQ(st.regs.rsi, uint64_t(0x10040));
  for (int k = 0; k < 4; k++) xmm(st, 3)[k] = 0xa0a0a0a0u + k;
  st.regs.rdi = 0x10100;
  const uint8_t movdqu[] = {0xf3, 0x0f, 0x7f, 0x5f, 0x08};  // movdqu [rdi+8], xmm3
  r = run(movdqu, st, m);
  CHECK(r.action == Action::Completed);
  uint32_t got[4];
  std::memcpy(got, m.at(0x10108), 16);
  CHECK_EQ(got[0], 0xa0a0a0a0u);
  CHECK_EQ(got[3], 0xa0a0a0a3u);
  CHECK_EQ(int(m.at(0x10107)[0]), 0);  // nothing written around it
  CHECK_EQ(int(m.at(0x10118)[0]), 0);
}

TEST(misaligned_movaps_is_gp_and_unmapped_operand_is_pf) {
  AssistState st = simd_state();
  FakeMemory m;
  st.regs.rsi = 0x10008;
  const uint64_t rip = st.regs.rip;
  const uint8_t movaps[] = {0x0f, 0x28, 0x06};  // movaps xmm0, [rsi]
  AssistResult r = run(movaps, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 13);
  CHECK_EQ(st.regs.rip, rip);
  st.regs.rsi = 0x10010;
  r = run(movaps, st, m);
  CHECK(r.action == Action::Completed);
  st.regs.rsi = 0x900000;
  r = run(movaps, st, m);
  CHECK_EQ(int(r.vector), 14);
}

TEST(ptest_sets_flags_and_bmi_andn_matches_the_host) {
  AssistState st = simd_state();
  FakeMemory m;
  xmm(st, 0)[0] = 0xf0;
  xmm(st, 1)[0] = 0x0f;
  st.regs.rflags = 0x2;
  const uint8_t ptest[] = {0x66, 0x0f, 0x38, 0x17, 0xc1};  // ptest xmm0, xmm1: (xmm0 & xmm1) == 0 -> ZF
  AssistResult r = run(ptest, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0x40));
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  if (!(b & (1u << 3))) return;  // no BMI1 on this host
  const uint64_t x = 0xff00ff00ff00ff00ull, y = 0x0ff00ff00ff00ff0ull;
  st.regs.rbx = x;
  st.regs.rcx = y;
  const uint8_t andn[] = {0xc4, 0xe2, 0xe0, 0xf2, 0xc1};  // andn rax, rbx, rcx
  r = run(andn, st, m);
  CHECK(r.action == Action::Completed);
  uint64_t hout, hfl;
  asm volatile(".byte 0xc4, 0xe2, 0xe0, 0xf2, 0xc1\n\tpushfq\n\tpopq %1" : "=a"(hout), "=&r"(hfl) : "b"(x), "c"(y) : "cc");
  CHECK_EQ(st.regs.rax, hout);
  CHECK_EQ(st.regs.rflags & 0xc1, hfl & 0xc1);  // CF ZF SF
}

TEST(avx512_instruction_runs_natively_on_full_zmm_state) {
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  AssistState st = simd_state();
  if (!(b & (1u << 16)) || (st.xcr0 & 0xe0) != 0xe0) SKIP("this host has no AVX-512 enabled");
  FakeMemory m;
  kvm_cpuid_entry2 e2{}, e6{};
  cpuid_lookup(st.cpuid, 0xd, 2, e2);
  cpuid_lookup(st.cpuid, 0xd, 6, e6);
  // zmm1 = 1s, zmm2 = 2s in every dword: low 128 (legacy), bits 128-255 (AVX), 256-511 (ZMM_Hi256).
  for (int k = 0; k < 4; k++) {
    xmm(st, 1)[k] = 1;
    xmm(st, 2)[k] = 2;
    reinterpret_cast<uint32_t*>(&st.xsave[e2.ebx + 16 * 1])[k] = 1;
    reinterpret_cast<uint32_t*>(&st.xsave[e2.ebx + 16 * 2])[k] = 2;
  }
  for (int k = 0; k < 8; k++) {
    reinterpret_cast<uint32_t*>(&st.xsave[e6.ebx + 32 * 1])[k] = 1;
    reinterpret_cast<uint32_t*>(&st.xsave[e6.ebx + 32 * 2])[k] = 2;
  }
  const uint8_t vpaddd[] = {0x62, 0xf1, 0x75, 0x48, 0xfe, 0xc2};  // vpaddd zmm0, zmm1, zmm2
  AssistResult r = run(vpaddd, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(xmm(st, 0)[0], 3u);
  CHECK_EQ(reinterpret_cast<uint32_t*>(&st.xsave[e2.ebx])[3], 3u);
  CHECK_EQ(reinterpret_cast<uint32_t*>(&st.xsave[e6.ebx])[7], 3u);
}

TEST(ldmxcsr_and_stmxcsr_through_the_stack) {
  AssistState st = simd_state();
  FakeMemory m;
  st.regs.rsp = 0x10200;
  const uint32_t v = 0x1fa0;  // masks + FTZ off, RC = 01 (round down)
  std::memcpy(m.at(0x10204), &v, 4);
  const uint8_t ldmxcsr[] = {0x0f, 0xae, 0x54, 0x24, 0x04};  // ldmxcsr [rsp+4] (Linux's kernel_fpu_begin_mask)
  AssistResult r = run(ldmxcsr, st, m);
  CHECK(r.action == Action::Completed);
  uint32_t got;
  std::memcpy(&got, &st.xsave[24], 4);
  CHECK_EQ(got, v);
  CHECK_EQ(st.regs.rsp, uint64_t(0x10200));
  const uint8_t stmxcsr[] = {0x0f, 0xae, 0x5c, 0x24, 0x08};  // stmxcsr [rsp+8]
  r = run(stmxcsr, st, m);
  CHECK(r.action == Action::Completed);
  std::memcpy(&got, m.at(0x10208), 4);
  CHECK_EQ(got, v);
  const uint32_t bad = 0xffff0000;  // reserved bits: #GP
  std::memcpy(m.at(0x10204), &bad, 4);
  CHECK_EQ(int(run(ldmxcsr, st, m).vector), 13);
}

TEST(fences_and_cache_hints_complete_and_rdrand_runs_natively) {
  AssistState st = simd_state();
  FakeMemory m;
  const uint64_t rip = st.regs.rip;
  const uint8_t mfence[] = {0x0f, 0xae, 0xf0};
  AssistResult r = run(mfence, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Hint);
  CHECK_EQ(st.regs.rip, rip + 3);
  const uint8_t clflush[] = {0x0f, 0xae, 0x3e};  // clflush [rsi]
  CHECK(run(clflush, st, m).action == Action::Completed);
  unsigned a, b, c, d;
  __cpuid_count(1, 0, a, b, c, d);
  if (!(c & (1u << 30))) return;
  const uint8_t rdrand[] = {0x48, 0x0f, 0xc7, 0xf0};  // rdrand rax
  bool differed = false;
  uint64_t last = 0;
  for (int i = 0; i < 4; i++) {
    r = run(rdrand, st, m);
    CHECK(r.action == Action::Completed);
    if (st.regs.rflags & 1) {  // CF: a number was delivered
      differed |= i > 0 && st.regs.rax != last;
      last = st.regs.rax;
    }
  }
  CHECK(differed);
}

TEST(a_run_of_simd_instructions_is_served_by_one_exit) {
  AssistState st = simd_state();
  FakeMemory m;
  // Code in guest memory: paddd xmm0, xmm1 three times, then RET (not SIMD: the run stops there).
  const uint8_t code[] = {0x66, 0x0f, 0xfe, 0xc1, 0x66, 0x0f, 0xfe, 0xc1, 0x66, 0x0f, 0xfe, 0xc1, 0xc3};
  std::memcpy(m.at(0x11000), code, sizeof code);
  st.regs.rip = 0x11000;
  xmm(st, 0)[0] = 5;
  xmm(st, 1)[0] = 10;
  AssistResult r = assist_instruction(code, 15, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(r.followers, 2);
  CHECK_EQ(xmm(st, 0)[0], 35u);
  CHECK_EQ(st.regs.rip, uint64_t(0x1100c));  // at the RET
  // A faulting instruction inside the run: the ones before it stay done, RIP stops at it.
  const uint8_t code2[] = {0x66, 0x0f, 0xfe, 0xc1, 0x0f, 0x28, 0x06};  // paddd; movaps xmm0, [rsi] (misaligned)
  std::memcpy(m.at(0x11100), code2, sizeof code2);
  st.regs.rip = 0x11100;
  st.regs.rsi = 0x10008;
  r = assist_instruction(code2, 15, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 13);
  CHECK(r.regs_changed && r.xsave_changed);
  CHECK_EQ(xmm(st, 0)[0], 45u);
  CHECK_EQ(st.regs.rip, uint64_t(0x11104));
}

TEST(verw_of_the_kernel_data_selector_sets_zf_recorded_exit) {
  AssistState st = long_mode();
  FakeMemory m;
  // GDT at 0x12000: 0x10 kernel code (64-bit), 0x18 kernel data (writable), 0x2b user code.
  const uint64_t gdt[6] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull, 0, 0x00affb000000ffffull};
  std::memcpy(m.at(0x12000), gdt, sizeof gdt);
  st.sregs.gdt.base = 0x12000;
  st.sregs.gdt.limit = sizeof gdt - 1;
  const uint16_t kernel_ds = 0x18;
  std::memcpy(m.at(0x10100), &kernel_ds, 2);
  // Linux's CLEAR_CPU_BUFFERS before returning to user space: verw [rip+disp32]
  // (0f 00 2d 49 ee ff ff, where Debian's 6.1 stopped on its way to /init).
  st.regs.rip = 0x10100 + 0x11b7 - 7;
  const uint8_t verw[] = {0x0f, 0x00, 0x2d, 0x49, 0xee, 0xff, 0xff};
  st.regs.rflags = 0x2;
  AssistResult r = run(verw, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0x40));
  CHECK_EQ(st.regs.rip, uint64_t(0x10100 + 0x11b7));
  const uint16_t code_sel = 0x10;  // code: not writable
  std::memcpy(m.at(0x10100), &code_sel, 2);
  st.regs.rip -= 7;
  r = run(verw, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0));
  const uint16_t null_sel = 0;
  std::memcpy(m.at(0x10100), &null_sel, 2);
  st.regs.rip -= 7;
  st.regs.rflags |= 0x40;
  run(verw, st, m);
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0));
}

// Linux's paranoid_entry (NMI, #DB, #MC) without RDPID: GET_PERCPU_BASE reads
// the CPU number as the limit of __CPUNODE_SEG (0x7b, GDT entry 15) with LSL,
// then indexes __per_cpu_offset. The bytes where Debian's 6.1 stopped on vCPU 1
// when `reboot` sent NMIs to the other CPU: 48 0f 03 c0 (lsl rax, eax).
TEST(lsl_of_the_cpunode_segment_gives_the_cpu_number_recorded_exit) {
  AssistState st = long_mode();
  FakeMemory m;
  uint64_t gdt[16] = {};
  gdt[2] = 0x00af9b000000ffffull;   // 0x10 kernel code
  gdt[3] = 0x00cf93000000ffffull;   // 0x18 kernel data (G: 4 GiB)
  gdt[15] = 0x0040f50000000001ull;  // CPUNODE: RO data, expand-down, DPL 3, limit = cpu 1 | node 0 << 12
  std::memcpy(m.at(0x12000), gdt, sizeof gdt);
  st.sregs.gdt.base = 0x12000;
  st.sregs.gdt.limit = sizeof gdt - 1;
  const uint8_t lsl[] = {0x48, 0x0f, 0x03, 0xc0};
  st.regs.rax = 0x7b;
  st.regs.rip = 0x10100;
  AssistResult r = run(lsl, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Segment);
  CHECK(r.regs_changed);
  CHECK_EQ(st.regs.rax, uint64_t(1));
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0x40));
  CHECK_EQ(st.regs.rip, uint64_t(0x10104));
  // Page-granular: the limit in bytes.
  st.regs.rax = 0x18;
  run(lsl, st, m);
  CHECK_EQ(st.regs.rax, uint64_t(0xffffffff));
  // A DPL-0 descriptor with RPL 3, the null selector and one past the GDT's
  // limit: ZF clear and the destination untouched.
  for (uint64_t sel : {uint64_t(0x1b), uint64_t(0), uint64_t(0x83)}) {
    st.regs.rax = sel;
    st.regs.rflags |= 0x40;
    r = run(lsl, st, m);
    CHECK(r.action == Action::Completed);
    CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0));
    CHECK_EQ(st.regs.rax, sel);
  }
  // 16-bit operand (66 0f 03 c3: lsl ax, bx): only AX changes.
  const uint8_t lsl16[] = {0x66, 0x0f, 0x03, 0xc3};
  st.regs.rax = 0x1234567890abcdefull;
  st.regs.rbx = 0x7b;
  run(lsl16, st, m);
  CHECK_EQ(st.regs.rax, uint64_t(0x1234567890ab0001ull));
  // LAR (48 0f 02 c0) of the kernel code selector: access bytes 9b, flags a (G L).
  const uint8_t lar[] = {0x48, 0x0f, 0x02, 0xc0};
  st.regs.rax = 0x10;
  r = run(lar, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rax, uint64_t(0x00a09b00));
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0x40));
  // A system descriptor of a type LSL does not take in long mode (a 16-bit TSS): ZF clear.
  gdt[4] = 0x0000810000000067ull;
  std::memcpy(m.at(0x12000), gdt, sizeof gdt);
  st.regs.rax = 0x20;
  run(lsl, st, m);
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0));
  // ...but a 64-bit TSS it does (type 9): the limit, 0x67.
  gdt[4] = 0x0000890000000067ull;
  std::memcpy(m.at(0x12000), gdt, sizeof gdt);
  run(lsl, st, m);
  CHECK_EQ(st.regs.rflags & 0x40, uint64_t(0x40));
  CHECK_EQ(st.regs.rax, uint64_t(0x67));
  // In real mode (0f 03 c0: lsl ax, ax): #UD.
  AssistState rm;
  rm.regs.rax = 0x7b;
  const uint8_t lsl_rm[] = {0x0f, 0x03, 0xc0};
  r = run(lsl_rm, rm, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(int(r.vector), 6);
}

// ---- SWAPGS, SYSRET and the kvm_pvm SYSCALL fix-up ----

namespace {
// Several ranges of guest-linear memory.
struct SparseMemory : AssistMemory {
  std::map<uint64_t, std::vector<uint8_t>> ranges;
  void put(uint64_t a, const void* p, size_t n) {
    auto& r = ranges[a];
    r.assign(static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  }
  bool read(uint64_t a, void* dst, size_t n, uint32_t& pf) override {
    for (auto& [base, bytes] : ranges)
      if (a >= base && a + n <= base + bytes.size()) {
        std::memcpy(dst, bytes.data() + (a - base), n);
        return true;
      }
    pf = 0;
    return false;
  }
  bool write(uint64_t, const void*, size_t, uint32_t& pf) override {
    pf = 2;
    return false;
  }
};

// The state at the first instruction of the guest's #PF handler after
// kvm_pvm's ring-3 SYSCALL, as recorded with guests/syscall.asm on this host
// (Linux's GDT layout; LSTAR on a supervisor-only page).
struct FailedSyscall {
  AssistState st = long_mode();
  SparseMemory mem;
  uint64_t handler = 0x100600, idt = 0x101000, stack = 0x8ffd8, lstar = 0x4010044f, user_rip = 0x10041a;
  FailedSyscall(bool endbr) {
    st.sregs.efer = 0x501;  // LMA LME SCE
    st.sregs.cs.selector = 0x10;
    st.sregs.cs.dpl = 0;
    st.sregs.idt.base = idt;
    st.sregs.idt.limit = 256 * 16 - 1;
    st.sregs.cr2 = lstar;
    st.regs.rip = handler + (endbr ? 4 : 0);
    st.regs.rsp = stack;
    st.regs.rflags = 0x2;
    st.regs.rcx = user_rip;
    st.regs.r11 = 0x203;
    st.star = (uint64_t(0x23) << 48) | (uint64_t(0x10) << 32);
    st.lstar = lstar;
    uint8_t gate[16] = {};
    gate[0] = uint8_t(handler);
    gate[1] = uint8_t(handler >> 8);
    gate[2] = 0x10;
    gate[5] = 0x8e;
    gate[6] = uint8_t(handler >> 16);
    gate[7] = uint8_t(handler >> 24);
    mem.put(idt + 14 * 16, gate, sizeof gate);
    const uint8_t entry[7] = {0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x01, 0xca};  // endbr64; clac
    if (endbr) mem.put(handler, entry, sizeof entry);
    else mem.put(handler, entry + 4, 3);
    const uint64_t frame[6] = {0x5, lstar, 0x33, 0x10003, 0x3ff000, 0x2b};  // err, RIP, CS, RFLAGS, RSP, SS
    mem.put(stack, frame, sizeof frame);
    const uint8_t sc[2] = {0x0f, 0x05};
    mem.put(user_rip - 2, sc, 2);
  }
};
}  // namespace

TEST(failed_syscall_is_recognised_and_completed_recorded_exit) {
  for (bool endbr : {false, true}) {
    FailedSyscall f(endbr);
    SyscallFrame fr;
    CHECK(failed_syscall_frame(f.st, f.mem, fr));
    CHECK_EQ(fr.rip, f.lstar);
    CHECK_EQ(fr.rsp, 0x3ff000u);
    AssistResult r = complete_failed_syscall(f.st, fr);
    CHECK(r.action == Action::Completed);
    CHECK(r.kind == AssistKind::Syscall);
    CHECK(r.regs_changed && r.sregs_changed);
    CHECK_EQ(f.st.regs.rip, f.lstar);
    CHECK_EQ(f.st.regs.rsp, 0x3ff000u);     // SYSCALL keeps the user RSP
    CHECK_EQ(f.st.regs.rflags, 0x3u);       // masked by the host already; RF cleared
    CHECK_EQ(f.st.regs.rcx, f.user_rip);    // as the host set them
    CHECK_EQ(f.st.regs.r11, 0x203u);
    CHECK_EQ(f.st.sregs.cs.selector, 0x10);
    CHECK_EQ(f.st.sregs.cs.dpl, 0);
    CHECK_EQ(f.st.sregs.cs.l, 1);
    CHECK_EQ(f.st.sregs.ss.selector, 0x18);
    CHECK_EQ(f.st.sregs.ss.dpl, 0);
  }
}

TEST(page_faults_that_are_not_a_failed_syscall_are_left_alone) {
  SyscallFrame fr;
  {  // not at the #PF handler
    FailedSyscall f(false);
    f.st.regs.rip += 3;
    CHECK(!failed_syscall_frame(f.st, f.mem, fr));
  }
  {  // a kernel-mode fault (frame CS RPL 0)
    FailedSyscall f(false);
    const uint64_t frame[6] = {0x5, f.lstar, 0x10, 0x10003, 0x3ff000, 0x2b};
    f.mem.put(f.stack, frame, sizeof frame);
    CHECK(!failed_syscall_frame(f.st, f.mem, fr));
  }
  {  // a user write fault
    FailedSyscall f(false);
    const uint64_t frame[6] = {0x7, f.lstar, 0x33, 0x10003, 0x3ff000, 0x2b};
    f.mem.put(f.stack, frame, sizeof frame);
    CHECK(!failed_syscall_frame(f.st, f.mem, fr));
  }
  {  // CR2 is not the faulting RIP (a data access)
    FailedSyscall f(false);
    f.st.sregs.cr2 = 0x5000;
    CHECK(!failed_syscall_frame(f.st, f.mem, fr));
  }
  {  // RCX does not follow a SYSCALL: a user jump to a kernel address
    FailedSyscall f(false);
    const uint8_t other[2] = {0xff, 0xd0};
    f.mem.put(f.user_rip - 2, other, 2);
    CHECK(!failed_syscall_frame(f.st, f.mem, fr));
  }
  {  // handler reached in user mode
    FailedSyscall f(false);
    f.st.sregs.cs.selector = 0x33;
    CHECK(!failed_syscall_frame(f.st, f.mem, fr));
  }
  {  // recognised, but the fault is not at LSTAR, or SYSCALL is off (EFER.SCE=0)
    FailedSyscall f(false);
    CHECK(failed_syscall_frame(f.st, f.mem, fr));
    f.st.lstar = 0xffffffff81c00080ull;
    CHECK(complete_failed_syscall(f.st, fr).action == Action::Unhandled);
    FailedSyscall g(false);
    CHECK(failed_syscall_frame(g.st, g.mem, fr));
    g.st.sregs.efer &= ~1ull;
    CHECK(complete_failed_syscall(g.st, fr).action == Action::Unhandled);
  }
}

TEST(the_rcx_check_peeks_past_smap) {
  // Linux sets CR4.SMAP: from CPL 0 the user bytes before RCX are unreadable
  // to an instruction (and to KVM_TRANSLATE); the check peeks instead.
  struct SmapMemory : SparseMemory {
    uint64_t user_lo = 0, user_hi = 0;
    bool read(uint64_t a, void* dst, size_t n, uint32_t& pf) override {
      if (a < user_hi && a + n > user_lo) { pf = 0x1; return false; }  // present, supervisor read: SMAP
      return SparseMemory::read(a, dst, n, pf);
    }
    bool peek(uint64_t a, void* dst, size_t n) override {
      uint32_t pf;
      return SparseMemory::read(a, dst, n, pf);
    }
  };
  FailedSyscall f(true);
  SmapMemory m;
  m.ranges = f.mem.ranges;
  m.user_lo = f.user_rip - 2;  // (the test's handler shares the page)
  m.user_hi = f.user_rip;
  SyscallFrame fr;
  CHECK(failed_syscall_frame(f.st, m, fr));
  CHECK_EQ(fr.rip, f.lstar);
}

TEST(long_mode_tables_are_walked_in_software) {
  std::map<uint64_t, uint64_t> phys;  // 8-byte entries by physical address
  auto rd = [&](uint64_t a, uint64_t& e) {
    auto it = phys.find(a);
    if (it == phys.end()) return false;
    e = it->second;
    return true;
  };
  const uint64_t cr3 = 0x1000;
  // 4 KiB page: 0x0000_7fff_f000_1234 -> 0x5_5555_5000 | 0x234; U/S clear and NX set on the way: ignored.
  const uint64_t va = 0x00007ffff0001234ull;
  auto idx = [&](int level) { return (va >> (12 + 9 * (level - 1))) & 511; };
  phys[cr3 + idx(4) * 8] = 0x2000 | 0x3;
  phys[0x2000 + idx(3) * 8] = 0x3000 | 0x1;
  phys[0x3000 + idx(2) * 8] = 0x4000 | 0x1;
  phys[0x4000 + idx(1) * 8] = 0x8000000555555000ull | 0x1;
  uint64_t gpa = 0;
  CHECK(walk_long_mode_tables(cr3 | 0x18, false, va, rd, gpa));  // PCD/PWT bits in CR3 ignored
  CHECK_EQ(gpa, 0x555555234ull);
  // The PTE not present: no translation.
  phys[0x4000 + idx(1) * 8] = 0x555555000ull;
  CHECK(!walk_long_mode_tables(cr3, false, va, rd, gpa));
  // A 2 MiB page at the PD level.
  phys[0x3000 + idx(2) * 8] = 0x40000000ull | 0x81;
  CHECK(walk_long_mode_tables(cr3, false, va, rd, gpa));
  CHECK_EQ(gpa, 0x40000000ull | (va & 0x1fffff));
  // A 1 GiB page at the PDPT level.
  phys[0x2000 + idx(3) * 8] = 0x80000000ull | 0x81;
  CHECK(walk_long_mode_tables(cr3, false, va, rd, gpa));
  CHECK_EQ(gpa, 0x80000000ull | (va & 0x3fffffff));
  // Five levels (LA57): one more table above.
  phys[0x9000 + ((va >> 48) & 511) * 8] = cr3 | 0x1;
  CHECK(walk_long_mode_tables(0x9000, true, va, rd, gpa));
  CHECK_EQ(gpa, 0x80000000ull | (va & 0x3fffffff));
  // A table that cannot be read.
  CHECK(!walk_long_mode_tables(0x7000, false, va, rd, gpa));
}

TEST(swapgs_swaps_gs_base_with_kernel_gs_base) {
  AssistState st = long_mode();
  FakeMemory m;
  st.sregs.gs.base = 0x1234;
  st.kernel_gs_base = 0xffff888000000000ull;
  const uint8_t swapgs[] = {0x0f, 0x01, 0xf8};
  CHECK_EQ(assist_needs(swapgs, 3, st.sregs), unsigned(kNeedSyscallMsrs));
  AssistResult r = run(swapgs, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kernel_gs_base_changed && r.sregs_changed);
  CHECK_EQ(st.sregs.gs.base, 0xffff888000000000ull);
  CHECK_EQ(st.kernel_gs_base, 0x1234u);
  CHECK_EQ(st.regs.rip, 0xffffffff81000003ull);
  st.sregs.cs.selector = 0x33;  // ring 3: #GP(0)
  r = run(swapgs, st, m);
  CHECK(r.action == Action::Exception);
  CHECK_EQ(r.vector, 13);
}

TEST(sysretq_and_sysretl_return_to_ring3_from_star) {
  FakeMemory m;
  const uint8_t sysretq[] = {0x48, 0x0f, 0x07}, sysretl[] = {0x0f, 0x07};
  AssistState st = long_mode();
  st.sregs.efer = 0xd01;
  st.star = (uint64_t(0x23) << 48) | (uint64_t(0x10) << 32);
  st.regs.rcx = 0x7f0000001234;
  st.regs.r11 = 0x10303;  // TF, IF, CF and RF: RF is not restored (R11 & 0x3c7fd7)
  AssistResult r = run(sysretq, st, m);
  CHECK(r.action == Action::Completed);
  CHECK(r.kind == AssistKind::Sysret);
  CHECK_EQ(st.regs.rip, 0x7f0000001234ull);
  CHECK_EQ(st.regs.rflags, 0x303u);
  CHECK_EQ(st.sregs.cs.selector, 0x33);
  CHECK_EQ(st.sregs.cs.dpl, 3);
  CHECK_EQ(st.sregs.cs.l, 1);
  CHECK_EQ(st.sregs.ss.selector, 0x2b);
  CHECK_EQ(st.sregs.ss.dpl, 3);
  // To 32-bit compatibility mode: CS = STAR[63:48], EIP = ECX.
  st = long_mode();
  st.sregs.efer = 0xd01;
  st.star = (uint64_t(0x23) << 48) | (uint64_t(0x10) << 32);
  st.regs.rcx = 0xffffffff08048000ull;
  st.regs.r11 = 0x202;
  r = run(sysretl, st, m);
  CHECK(r.action == Action::Completed);
  CHECK_EQ(st.regs.rip, 0x08048000u);
  CHECK_EQ(st.sregs.cs.selector, 0x23);
  CHECK_EQ(st.sregs.cs.l, 0);
  CHECK_EQ(st.sregs.cs.db, 1);
  // Faults: non-canonical RCX, CPL 3 -> #GP(0); EFER.SCE=0 -> #UD.
  st = long_mode();
  st.sregs.efer = 0xd01;
  st.regs.rcx = 0x0000800000000000ull;
  CHECK_EQ(run(sysretq, st, m).vector, 13);
  st.regs.rcx = 0x1000;
  st.sregs.cs.selector = 0x33;
  CHECK_EQ(run(sysretq, st, m).vector, 13);
  st.sregs.cs.selector = 0x10;
  st.sregs.efer = 0xd00;
  CHECK_EQ(run(sysretq, st, m).vector, 6);
}
