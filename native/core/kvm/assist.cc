#include "kvm/assist.h"

#include <Zydis/Zydis.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include <cpuid.h>
#include <cstring>
#include <mutex>

namespace vireo::kvm {

namespace {

constexpr uint64_t kCf = 1u << 0, kPf = 1u << 2, kAf = 1u << 4, kZf = 1u << 6, kSf = 1u << 7, kOf = 1u << 11,
                   kAc = 1u << 18;
constexpr uint64_t kArith = kCf | kPf | kAf | kZf | kSf | kOf;
constexpr uint64_t kCr0Mp = 1u << 1, kCr0Em = 1u << 2, kCr0Ts = 1u << 3;
constexpr uint64_t kCr4Osxsave = 1u << 18;
constexpr uint8_t kUd = 6, kNm = 7, kGp = 13, kPfVec = 14, kBp = 3;

// Standard XSAVE layout: legacy region, header, then components at CPUID(0xd, i).EBX.
constexpr int kMaxNativeRun = 256;  // SIMD instructions run natively per exit at most
constexpr size_t kLegacy = 512, kHeader = 512, kExtStart = 576;

ZydisMachineMode machine_mode(const kvm_sregs& s) {
  if (!(s.cr0 & 1)) return ZYDIS_MACHINE_MODE_REAL_16;
  const bool lma = s.efer & (1u << 10);
  if (lma && s.cs.l) return ZYDIS_MACHINE_MODE_LONG_64;
  if (lma) return s.cs.db ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_COMPAT_16;
  return s.cs.db ? ZYDIS_MACHINE_MODE_LEGACY_32 : ZYDIS_MACHINE_MODE_LEGACY_16;
}

int cpl(const kvm_sregs& s) { return (s.cr0 & 1) ? (s.cs.selector & 3) : 0; }

struct Decoded {
  ZydisDecodedInstruction in;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  ZydisMachineMode mode;
};

bool decode(const uint8_t* bytes, size_t n, const kvm_sregs& s, Decoded& d) {
  d.mode = machine_mode(s);
  ZydisStackWidth sw = d.mode == ZYDIS_MACHINE_MODE_LONG_64 ? ZYDIS_STACK_WIDTH_64
                       : (d.mode == ZYDIS_MACHINE_MODE_LONG_COMPAT_32 || d.mode == ZYDIS_MACHINE_MODE_LEGACY_32)
                           ? ZYDIS_STACK_WIDTH_32
                           : ZYDIS_STACK_WIDTH_16;
  ZydisDecoder dec;
  if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, d.mode, sw))) return false;
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, bytes, n, &d.in, d.ops));
}

// A general-purpose register's 64-bit slot in kvm_regs (nullptr for others).
__u64* gpr_slot(kvm_regs& r, ZydisRegister reg) {
  switch (ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg)) {
    case ZYDIS_REGISTER_RAX: return &r.rax;
    case ZYDIS_REGISTER_RBX: return &r.rbx;
    case ZYDIS_REGISTER_RCX: return &r.rcx;
    case ZYDIS_REGISTER_RDX: return &r.rdx;
    case ZYDIS_REGISTER_RSI: return &r.rsi;
    case ZYDIS_REGISTER_RDI: return &r.rdi;
    case ZYDIS_REGISTER_RSP: return &r.rsp;
    case ZYDIS_REGISTER_RBP: return &r.rbp;
    case ZYDIS_REGISTER_R8: return &r.r8;
    case ZYDIS_REGISTER_R9: return &r.r9;
    case ZYDIS_REGISTER_R10: return &r.r10;
    case ZYDIS_REGISTER_R11: return &r.r11;
    case ZYDIS_REGISTER_R12: return &r.r12;
    case ZYDIS_REGISTER_R13: return &r.r13;
    case ZYDIS_REGISTER_R14: return &r.r14;
    case ZYDIS_REGISTER_R15: return &r.r15;
    case ZYDIS_REGISTER_RIP: return &r.rip;
    default: return nullptr;
  }
}

bool is_high_byte(ZydisRegister reg) {
  return reg == ZYDIS_REGISTER_AH || reg == ZYDIS_REGISTER_BH || reg == ZYDIS_REGISTER_CH || reg == ZYDIS_REGISTER_DH;
}

uint64_t width_mask(unsigned bits) { return bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1; }

bool read_reg(kvm_regs& r, ZydisRegister reg, uint64_t& v) {
  __u64* p = gpr_slot(r, reg);
  if (!p || is_high_byte(reg)) return false;
  v = *p & width_mask(ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, reg));
  return true;
}

// Writes with the architecture's rules: a 32-bit destination zero-extends in
// 64-bit mode; 8/16-bit destinations keep the rest.
bool write_reg(kvm_regs& r, ZydisRegister reg, uint64_t v, ZydisMachineMode mode) {
  __u64* p = gpr_slot(r, reg);
  if (!p || is_high_byte(reg)) return false;
  unsigned w = ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, reg);
  if (w == 64 || (w == 32 && mode == ZYDIS_MACHINE_MODE_LONG_64)) *p = v & width_mask(w);
  else *p = (*p & ~width_mask(w)) | (v & width_mask(w));
  return true;
}

uint64_t seg_base(const kvm_sregs& s, ZydisRegister seg, ZydisMachineMode mode) {
  if (seg == ZYDIS_REGISTER_FS) return s.fs.base;
  if (seg == ZYDIS_REGISTER_GS) return s.gs.base;
  if (mode == ZYDIS_MACHINE_MODE_LONG_64) return 0;
  switch (seg) {
    case ZYDIS_REGISTER_ES: return s.es.base;
    case ZYDIS_REGISTER_CS: return s.cs.base;
    case ZYDIS_REGISTER_SS: return s.ss.base;
    default: return s.ds.base;
  }
}

// The linear address of a memory operand.
bool linear_address(const Decoded& d, const ZydisDecodedOperand& op, kvm_regs r, const kvm_sregs& s, uint64_t& out) {
  if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) return false;
  uint64_t a = 0, v = 0;
  if (op.mem.base == ZYDIS_REGISTER_RIP || op.mem.base == ZYDIS_REGISTER_EIP) {
    a = r.rip + d.in.length;
  } else if (op.mem.base != ZYDIS_REGISTER_NONE) {
    if (!read_reg(r, op.mem.base, v)) return false;
    a = v;
  }
  if (op.mem.index != ZYDIS_REGISTER_NONE) {
    if (!read_reg(r, op.mem.index, v)) return false;
    a += v * (op.mem.scale ? op.mem.scale : 1);
  }
  if (op.mem.disp.has_displacement) a += uint64_t(op.mem.disp.value);
  a &= width_mask(d.in.address_width);
  out = seg_base(s, op.mem.segment, d.mode) + a;
  if (d.mode != ZYDIS_MACHINE_MODE_LONG_64) out &= 0xffffffffu;
  return true;
}

AssistResult exception(AssistKind kind, uint8_t vector, std::string what) {
  AssistResult r;
  r.action = AssistResult::Action::Exception;
  r.kind = kind;
  r.vector = vector;
  r.has_error_code = vector == kGp || vector == kPfVec;
  r.what = std::move(what);
  return r;
}

AssistResult page_fault(uint64_t addr, uint32_t err, std::string what) {
  AssistResult r = exception(AssistKind::Fault, kPfVec, std::move(what));
  r.error_code = err;
  r.cr2 = addr;
  return r;
}

AssistResult completed(AssistKind kind, kvm_regs& regs, const Decoded& d, std::string what) {
  regs.rip += d.in.length;
  AssistResult r;
  r.action = AssistResult::Action::Completed;
  r.kind = kind;
  r.regs_changed = true;
  r.what = std::move(what);
  return r;
}

bool has_parity(uint8_t v) { return !__builtin_parity(v); }

// ---- XSAVE state components ----

struct Component {
  uint32_t size = 0, offset = 0;
  bool align64 = false;
};

Component component(const AssistState& st, unsigned i) {
  Component c;
  kvm_cpuid_entry2 e;
  if (i >= 2 && cpuid_lookup(st.cpuid, 0xd, i, e)) {
    c.size = e.eax;
    c.offset = e.ebx;
    c.align64 = e.ecx & 2;
  }
  return c;
}

// Offset of component i (>= 2) in a compacted area whose XCOMP_BV is `comp`.
uint32_t compacted_offset(const AssistState& st, uint64_t comp, unsigned i) {
  uint32_t off = kExtStart;
  for (unsigned j = 2; j <= i; j++) {
    if (!(comp & (uint64_t(1) << j))) continue;
    Component c = component(st, j);
    if (c.align64) off = (off + 63) & ~63u;
    if (j == i) return off;
    off += c.size;
  }
  return off;
}

uint64_t rd64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void wr64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

enum class XForm { Standard, Compacted, Supervisor };

// XSAVE/XSAVEOPT (standard), XSAVEC (compacted), XSAVES (compacted, with IA32_XSS).
AssistResult do_xsave(const Decoded& d, AssistState& st, AssistMemory& mem, XForm form) {
  const char* name = ZydisMnemonicGetString(d.in.mnemonic);
  if (!(st.sregs.cr4 & kCr4Osxsave)) return exception(AssistKind::Ud, kUd, std::string(name) + " with CR4.OSXSAVE=0: #UD");
  if (st.sregs.cr0 & kCr0Ts) return exception(AssistKind::Fault, kNm, std::string(name) + " with CR0.TS=1: #NM");
  if (form == XForm::Supervisor && cpl(st.sregs) != 0) return exception(AssistKind::Fault, kGp, "XSAVES at CPL>0: #GP(0)");
  uint64_t addr;
  if (!linear_address(d, d.ops[0], st.regs, st.sregs, addr)) return {};
  if (addr & 63) return exception(AssistKind::Fault, kGp, std::string(name) + " on an unaligned area: #GP(0)");
  const uint64_t edx_eax = (st.regs.rdx << 32) | (st.regs.rax & 0xffffffffu);
  const uint64_t enabled = st.xcr0 | (form == XForm::Supervisor ? st.xss : 0);
  const uint64_t rfbm = enabled & edx_eax;
  const uint8_t* src = st.xsave.data();
  const uint64_t xinuse = rd64(src + kHeader) | 3;  // KVM always reports x87/SSE
  uint32_t pf = 0;
  // Legacy region: x87 (bytes 0-23, 32-159), MXCSR (24-31) with SSE or AVX, XMM (160-415).
  if (rfbm & 1) {
    if (!mem.write(addr, src, 24, pf)) return page_fault(addr, pf, name);
    if (!mem.write(addr + 32, src + 32, 128, pf)) return page_fault(addr + 32, pf, name);
  }
  if (rfbm & 6) {
    if (!mem.write(addr + 24, src + 24, 8, pf)) return page_fault(addr + 24, pf, name);
  }
  if (rfbm & 2) {
    if (!mem.write(addr + 160, src + 160, 256, pf)) return page_fault(addr + 160, pf, name);
  }
  uint8_t header[64];
  if (form == XForm::Standard) {
    if (!mem.read(addr + kHeader, header, 8, pf)) return page_fault(addr + kHeader, pf, name);
    uint64_t bv = (rd64(header) & ~rfbm) | (xinuse & rfbm);
    wr64(header, bv);
    if (!mem.write(addr + kHeader, header, 8, pf)) return page_fault(addr + kHeader, pf, name);
  } else {
    std::memset(header, 0, sizeof header);
    wr64(header, xinuse & rfbm);
    wr64(header + 8, (uint64_t(1) << 63) | rfbm);
    if (!mem.write(addr + kHeader, header, 64, pf)) return page_fault(addr + kHeader, pf, name);
  }
  for (unsigned i = 2; i < 63; i++) {
    if (!(rfbm & (uint64_t(1) << i))) continue;
    Component c = component(st, i);
    if (!c.size || c.offset + c.size > st.xsave.size()) return {};  // a component KVM's buffer does not hold
    if (form != XForm::Standard && !(xinuse & (uint64_t(1) << i))) continue;
    uint64_t dst = addr + (form == XForm::Standard ? c.offset : compacted_offset(st, rfbm, i));
    if (!mem.write(dst, src + c.offset, c.size, pf)) return page_fault(dst, pf, name);
  }
  return completed(AssistKind::Xsave, st.regs, d, std::string(name) + " rfbm " + std::to_string(rfbm));
}

// XRSTOR (standard or compacted, by the area's XCOMP_BV bit 63) and XRSTORS.
AssistResult do_xrstor(const Decoded& d, AssistState& st, AssistMemory& mem, bool supervisor) {
  const char* name = ZydisMnemonicGetString(d.in.mnemonic);
  if (!(st.sregs.cr4 & kCr4Osxsave)) return exception(AssistKind::Ud, kUd, std::string(name) + " with CR4.OSXSAVE=0: #UD");
  if (st.sregs.cr0 & kCr0Ts) return exception(AssistKind::Fault, kNm, std::string(name) + " with CR0.TS=1: #NM");
  if (supervisor && cpl(st.sregs) != 0) return exception(AssistKind::Fault, kGp, "XRSTORS at CPL>0: #GP(0)");
  uint64_t addr;
  if (!linear_address(d, d.ops[0], st.regs, st.sregs, addr)) return {};
  if (addr & 63) return exception(AssistKind::Fault, kGp, std::string(name) + " on an unaligned area: #GP(0)");
  uint32_t pf = 0;
  uint8_t header[64];
  if (!mem.read(addr + kHeader, header, 64, pf)) return page_fault(addr + kHeader, pf, name);
  const uint64_t bv = rd64(header), comp = rd64(header + 8);
  const bool compacted = comp >> 63;
  const uint64_t enabled = st.xcr0 | (supervisor ? st.xss : 0);
  bool rest_zero = true;
  for (int i = 16; i < 64; i++) rest_zero &= header[i] == 0;
  auto gp = [&](const char* why) { return exception(AssistKind::Fault, kGp, std::string(name) + ": " + why + ": #GP(0)"); };
  if (supervisor && !compacted) return gp("standard-format area");
  if (!rest_zero) return gp("reserved header bytes set");
  if (compacted) {
    uint64_t c = comp & ~(uint64_t(1) << 63);
    if (c & ~enabled) return gp("XCOMP_BV names a disabled component");
    if (bv & ~c) return gp("XSTATE_BV not a subset of XCOMP_BV");
  } else {
    if (comp) return gp("XCOMP_BV set in a standard-format area");
    if (bv & ~enabled) return gp("XSTATE_BV names a disabled component");
  }
  const uint64_t edx_eax = (st.regs.rdx << 32) | (st.regs.rax & 0xffffffffu);
  const uint64_t rfbm = enabled & edx_eax;
  uint8_t* dst = st.xsave.data();
  uint8_t legacy[kLegacy];
  if (!mem.read(addr, legacy, kLegacy, pf)) return page_fault(addr, pf, name);
  const bool load_mxcsr = compacted ? (rfbm & bv & 6) != 0 : (rfbm & 6) != 0;
  if (load_mxcsr) {
    uint32_t mxcsr, mask;
    std::memcpy(&mxcsr, legacy + 24, 4);
    std::memcpy(&mask, dst + 28, 4);
    if (!mask) mask = 0xffbf;
    if (mxcsr & ~mask) return gp("reserved MXCSR bits");
  }
  uint64_t new_bv = rd64(dst + kHeader);
  if (rfbm & 1) {
    if (bv & 1) {
      std::memcpy(dst, legacy, 24);
      std::memcpy(dst + 32, legacy + 32, 128);
    } else {  // x87 initial state: FCW 0x37f, everything else 0
      std::memset(dst, 0, 24);
      std::memset(dst + 32, 0, 128);
      dst[0] = 0x7f;
      dst[1] = 0x03;
    }
  }
  if (load_mxcsr) std::memcpy(dst + 24, legacy + 24, 4);
  if (rfbm & 2) {
    if (bv & 2) std::memcpy(dst + 160, legacy + 160, 256);
    else std::memset(dst + 160, 0, 256);
  }
  for (unsigned i = 2; i < 63; i++) {
    const uint64_t bit = uint64_t(1) << i;
    if (!(rfbm & bit)) continue;
    Component c = component(st, i);
    if (!c.size || c.offset + c.size > st.xsave.size()) return {};
    if (bv & bit) {
      uint64_t src = addr + (compacted ? compacted_offset(st, comp & ~(uint64_t(1) << 63), i) : c.offset);
      if (!mem.read(src, dst + c.offset, c.size, pf)) return page_fault(src, pf, name);
    } else {
      std::memset(dst + c.offset, 0, c.size);
    }
  }
  new_bv = (new_bv & ~rfbm) | (bv & rfbm) | (rfbm & 3);  // KVM's uabi buffer keeps x87/SSE marked present
  wr64(dst + kHeader, new_bv);
  wr64(dst + kHeader + 8, 0);
  AssistResult r = completed(AssistKind::Xrstor, st.regs, d, std::string(name) + " rfbm " + std::to_string(rfbm));
  r.xsave_changed = true;
  return r;
}

// ---- SIMD and bit-manipulation instructions, run on the host CPU ----
//
// The guest sees the host's SSE/AVX/AVX-512/BMI features (kvm_pvm answers
// CPUID from the hardware) and Linux uses them in ring 0 between
// kernel_fpu_begin/end (e.g. the built-in BLAKE2s of the RNG uses AVX-512).
// KVM's emulator has almost none of them. These instructions only compute on
// registers and at most one memory operand, so the assist runs the same
// instruction on the host CPU: the guest's vector state (KVM's XSAVE buffer)
// is loaded with XRSTOR, the GPRs and arithmetic flags from kvm_regs, the
// memory operand is copied into a host buffer and the instruction re-encoded
// (Zydis) to address it through a free GPR; afterwards everything is stored
// back. A fault in the instruction (e.g. a misaligned MOVAPS) is caught and
// becomes the guest's exception. 64-bit guest code only.

bool native_eligible(const Decoded& d) {
  if (d.mode != ZYDIS_MACHINE_MODE_LONG_64) return false;
  switch (d.in.meta.isa_ext) {
    case ZYDIS_ISA_EXT_SSE: case ZYDIS_ISA_EXT_SSE2: case ZYDIS_ISA_EXT_SSE3: case ZYDIS_ISA_EXT_SSSE3:
    case ZYDIS_ISA_EXT_SSE4: case ZYDIS_ISA_EXT_AVX: case ZYDIS_ISA_EXT_AVX2: case ZYDIS_ISA_EXT_AVX512EVEX:
    case ZYDIS_ISA_EXT_AVX512VEX: case ZYDIS_ISA_EXT_AVXAES: case ZYDIS_ISA_EXT_AES: case ZYDIS_ISA_EXT_PCLMULQDQ:
    case ZYDIS_ISA_EXT_VPCLMULQDQ: case ZYDIS_ISA_EXT_VAES: case ZYDIS_ISA_EXT_GFNI: case ZYDIS_ISA_EXT_SHA:
    case ZYDIS_ISA_EXT_BMI1: case ZYDIS_ISA_EXT_BMI2: case ZYDIS_ISA_EXT_LZCNT: case ZYDIS_ISA_EXT_ADOX_ADCX:
    case ZYDIS_ISA_EXT_FMA: case ZYDIS_ISA_EXT_F16C: case ZYDIS_ISA_EXT_AVX_VNNI:
    case ZYDIS_ISA_EXT_RDRAND: case ZYDIS_ISA_EXT_RDSEED:  // a GPR and CF: the host's random numbers serve
      break;
    default:
      return false;
  }
  if (d.in.meta.category == ZYDIS_CATEGORY_AVX2GATHER || d.in.meta.category == ZYDIS_CATEGORY_GATHER ||
      d.in.meta.category == ZYDIS_CATEGORY_SCATTER)
    return false;
  int mems = 0;
  for (int i = 0; i < d.in.operand_count; i++) {
    const auto& op = d.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      // One explicit memory operand; no implicit ones (MASKMOVDQU), no LEA-like AGEN.
      if (op.visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT || op.mem.type != ZYDIS_MEMOP_TYPE_MEM) return false;
      if (++mems > 1) return false;
    }
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, op.reg.value);
      if (big == ZYDIS_REGISTER_RSP || big == ZYDIS_REGISTER_RIP) return false;
      ZydisRegisterClass c = ZydisRegisterGetClass(op.reg.value);
      if (c == ZYDIS_REGCLASS_X87 || c == ZYDIS_REGCLASS_MMX || c == ZYDIS_REGCLASS_SEGMENT ||
          c == ZYDIS_REGCLASS_CONTROL || c == ZYDIS_REGCLASS_DEBUG || c == ZYDIS_REGCLASS_TMM)
        return false;
    }
  }
  return true;
}

// The trampoline's register file, in the order its POPs load it.
struct NativeCtx {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rbp, rbx, rdx, rcx, rax, rflags;
  uint64_t xsave_area;  // guest vector state (64-byte aligned, standard format)
  uint64_t xmask;       // XRSTOR/XSAVE mask
};

struct Trampoline {
  uint8_t* page = nullptr;  // code at 0, host RSP slot at 0x800, stack + ctx above
  size_t insn_at = 0;
  void (*fn)(NativeCtx*) = nullptr;
  NativeCtx* ctx = nullptr;
};

thread_local sigjmp_buf tls_jmp;
thread_local volatile sig_atomic_t tls_in_native = 0;
struct sigaction prev_actions[32];

void native_fault_handler(int sig, siginfo_t* info, void* uc) {
  if (tls_in_native) {
    tls_in_native = 0;
    siglongjmp(tls_jmp, sig);
  }
  const struct sigaction& p = prev_actions[sig];
  if (p.sa_flags & SA_SIGINFO) {
    if (p.sa_sigaction) p.sa_sigaction(sig, info, uc);
    return;
  }
  if (p.sa_handler == SIG_IGN) return;
  if (p.sa_handler == SIG_DFL) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  p.sa_handler(sig);
}

void install_fault_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) {
      struct sigaction sa{};
      sa.sa_sigaction = native_fault_handler;
      sa.sa_flags = SA_SIGINFO | SA_NODEFER;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, &prev_actions[sig]);
    }
  });
}

Trampoline& trampoline() {
  thread_local Trampoline t;
  if (t.page) return t;
  constexpr size_t kSize = 64 * 1024;
  void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return t;
  uint8_t* c = static_cast<uint8_t*>(p);
  size_t n = 0;
  auto emit = [&](std::initializer_list<uint8_t> b) { for (uint8_t x : b) c[n++] = x; };
  const size_t slot = 0x800;
  auto rip_rel = [&](size_t target) {  // disp32 to `target` from the end of this 4-byte field
    int32_t disp = int32_t(int64_t(target) - int64_t(n + 4));
    std::memcpy(c + n, &disp, 4);
    n += 4;
  };
  emit({0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57});  // push rbx rbp r12-r15
  emit({0x48, 0x89, 0x25});                                              // mov [rip+slot], rsp
  rip_rel(slot);
  emit({0x48, 0x8b, 0x9f, 0x80, 0x00, 0x00, 0x00});  // mov rbx, [rdi+0x80]  (xsave_area)
  emit({0x8b, 0x87, 0x88, 0x00, 0x00, 0x00});        // mov eax, [rdi+0x88]
  emit({0x8b, 0x97, 0x8c, 0x00, 0x00, 0x00});        // mov edx, [rdi+0x8c]
  emit({0x48, 0x0f, 0xae, 0x2b});                    // xrstor64 [rbx]
  emit({0x48, 0x89, 0xfc});                          // mov rsp, rdi
  emit({0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58});  // pop r15..r8
  emit({0x5f, 0x5e, 0x5d, 0x5b, 0x5a, 0x59, 0x58, 0x9d});  // pop rdi rsi rbp rbx rdx rcx rax; popfq
  t.insn_at = n;
  n += 15;  // the instruction, NOP-padded
  emit({0x9c, 0x50, 0x51, 0x52, 0x53, 0x55, 0x56, 0x57});  // pushfq; push rax rcx rdx rbx rbp rsi rdi
  emit({0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57});  // push r8..r15
  emit({0x48, 0x89, 0xe7});                          // mov rdi, rsp
  emit({0x48, 0x8b, 0x9f, 0x80, 0x00, 0x00, 0x00});  // mov rbx, [rdi+0x80]
  emit({0x8b, 0x87, 0x88, 0x00, 0x00, 0x00});        // mov eax, [rdi+0x88]
  emit({0x8b, 0x97, 0x8c, 0x00, 0x00, 0x00});        // mov edx, [rdi+0x8c]
  emit({0x48, 0x0f, 0xae, 0x23});                    // xsave64 [rbx]
  emit({0x48, 0x8b, 0x25});                          // mov rsp, [rip+slot]
  rip_rel(slot);
  emit({0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3});  // pop r15-r12 rbp rbx; ret
  t.page = c;
  t.fn = reinterpret_cast<void (*)(NativeCtx*)>(c);
  // The register file sits at the top; signal frames taken while RSP points
  // into it land below (60 KiB of room).
  t.ctx = reinterpret_cast<NativeCtx*>(c + kSize - 4096);
  return t;
}

AssistResult run_natively(const Decoded& d, const uint8_t* bytes, AssistState& st, AssistMemory& mem) {
  const std::string name = ZydisMnemonicGetString(d.in.mnemonic);
  uint32_t mxcsr;
  std::memcpy(&mxcsr, st.xsave.data() + 24, 4);
  // An unmasked SIMD exception would need #XM/#UD bookkeeping; Linux keeps them masked.
  if ((mxcsr & 0x1f80) != 0x1f80) return {};
  Trampoline& t = trampoline();
  if (!t.page) return {};
  install_fault_handlers();

  // Memory operand: guest bytes into a host buffer with the guest address's
  // alignment (so alignment faults match), the instruction re-encoded to use it.
  const ZydisDecodedOperand* mop = nullptr;
  for (int i = 0; i < d.in.operand_count; i++)
    if (d.ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY) mop = &d.ops[i];
  alignas(64) static thread_local uint8_t membuf[256];
  uint8_t code[15];
  size_t code_len = d.in.length;
  uint64_t maddr = 0;
  size_t msize = 0;
  uint8_t* mhost = nullptr;
  ZydisRegister scratch = ZYDIS_REGISTER_NONE;
  if (mop) {
    if (!linear_address(d, *mop, st.regs, st.sregs, maddr)) return {};
    msize = mop->size / 8;
    if (d.in.avx.broadcast.mode != ZYDIS_BROADCAST_MODE_INVALID && mop->element_size) msize = mop->element_size / 8;
    if (msize == 0 || msize > 128) return {};
    mhost = membuf + (maddr & 63);
    uint32_t pf = 0;
    if (!mem.read(maddr, mhost, msize, pf)) return page_fault(maddr, pf, name);
    // A GPR no operand uses (explicit or implicit).
    static const ZydisRegister cands[] = {ZYDIS_REGISTER_RBX, ZYDIS_REGISTER_RSI, ZYDIS_REGISTER_RDI, ZYDIS_REGISTER_RBP,
                                          ZYDIS_REGISTER_R8,  ZYDIS_REGISTER_R9,  ZYDIS_REGISTER_R10, ZYDIS_REGISTER_R11,
                                          ZYDIS_REGISTER_R12, ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R15};
    for (ZydisRegister c : cands) {
      bool used = false;
      for (int i = 0; i < d.in.operand_count; i++) {
        const auto& op = d.ops[i];
        auto same = [&](ZydisRegister r) {
          return r != ZYDIS_REGISTER_NONE && ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r) == c;
        };
        if (op.type == ZYDIS_OPERAND_TYPE_REGISTER && same(op.reg.value)) used = true;
        if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && (same(op.mem.base) || same(op.mem.index))) used = true;
      }
      if (!used) {
        scratch = c;
        break;
      }
    }
    if (scratch == ZYDIS_REGISTER_NONE) return {};
    ZydisEncoderRequest req;
    if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(&d.in, d.ops, d.in.operand_count_visible, &req)))
      return {};
    for (int i = 0; i < req.operand_count; i++) {
      if (req.operands[i].type != ZYDIS_OPERAND_TYPE_MEMORY) continue;
      req.operands[i].mem.base = scratch;
      req.operands[i].mem.index = ZYDIS_REGISTER_NONE;
      req.operands[i].mem.scale = 0;
      req.operands[i].mem.displacement = 0;
    }
    // The segment override (FS/GS) is already in the linear address.
    req.prefixes &= ~(ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS | ZYDIS_ATTRIB_HAS_SEGMENT_CS |
                      ZYDIS_ATTRIB_HAS_SEGMENT_DS | ZYDIS_ATTRIB_HAS_SEGMENT_ES | ZYDIS_ATTRIB_HAS_SEGMENT_SS |
                      ZYDIS_ATTRIB_HAS_SEGMENT);
    ZyanUSize len = sizeof code;
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, code, &len))) return {};
    code_len = len;
  } else {
    std::memcpy(code, bytes, code_len);
  }

  // Registers in, the instruction, registers out.
  kvm_regs& r = st.regs;
  NativeCtx& c = *t.ctx;
  c = NativeCtx{r.r15, r.r14, r.r13, r.r12, r.r11, r.r10, r.r9, r.r8, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rcx, r.rax,
                0x2 | (r.rflags & kArith), 0, 0};
  if (scratch != ZYDIS_REGISTER_NONE) {
    kvm_regs tmp{};
    write_reg(tmp, scratch, reinterpret_cast<uint64_t>(mhost), d.mode);
    __u64* slot = gpr_slot(tmp, scratch);
    const uint64_t v = *slot;
    switch (scratch) {
      case ZYDIS_REGISTER_RBX: c.rbx = v; break;
      case ZYDIS_REGISTER_RSI: c.rsi = v; break;
      case ZYDIS_REGISTER_RDI: c.rdi = v; break;
      case ZYDIS_REGISTER_RBP: c.rbp = v; break;
      case ZYDIS_REGISTER_R8: c.r8 = v; break;
      case ZYDIS_REGISTER_R9: c.r9 = v; break;
      case ZYDIS_REGISTER_R10: c.r10 = v; break;
      case ZYDIS_REGISTER_R11: c.r11 = v; break;
      case ZYDIS_REGISTER_R12: c.r12 = v; break;
      case ZYDIS_REGISTER_R13: c.r13 = v; break;
      case ZYDIS_REGISTER_R14: c.r14 = v; break;
      default: c.r15 = v; break;
    }
  }
  alignas(64) static thread_local uint8_t guest_area[4096];
  std::memcpy(guest_area, st.xsave.data(), sizeof guest_area);
  std::memset(guest_area + 520, 0, 56);  // standard form: XCOMP_BV and the rest of the header zero
  c.xsave_area = reinterpret_cast<uint64_t>(guest_area);
  c.xmask = st.xcr0 | 3;  // x87 and SSE state exist whatever XCR0 says (FXSAVE state)
  uint8_t* slot = t.page + t.insn_at;
  std::memset(slot, 0x90, 15);
  std::memcpy(slot, code, code_len);
  __builtin___clear_cache(reinterpret_cast<char*>(slot), reinterpret_cast<char*>(slot + 15));

  // The host's own vector state around it (MXCSR and the x87 control word are callee-saved).
  unsigned a, b, cc, dd;
  __cpuid_count(0xd, 0, a, b, cc, dd);
  static thread_local std::vector<uint8_t> host_raw;
  host_raw.resize(size_t(cc) + 128);
  uint8_t* host_area = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(host_raw.data()) + 63) & ~uintptr_t(63));
  std::memset(host_area + 512, 0, 64);
  asm volatile("xsave64 %0" : "+m"(*host_area) : "a"(0xffffffffu), "d"(0xffffffffu) : "memory");
  int sig = sigsetjmp(tls_jmp, 1);
  if (sig == 0) {
    tls_in_native = 1;
    t.fn(&c);
    tls_in_native = 0;
  }
  asm volatile("xrstor64 %0" : : "m"(*host_area), "a"(0xffffffffu), "d"(0xffffffffu) : "memory");
  if (sig) {
    const uint8_t vec = sig == SIGILL ? kUd : sig == SIGFPE ? 19 : kGp;
    return exception(AssistKind::Fault, vec, name + " faulted when run natively (signal " + std::to_string(sig) + ")");
  }

  // Results: memory, registers (the scratch GPR keeps the guest's value), flags, vector state.
  if (mop && (mop->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)) {
    uint32_t pf = 0;
    if (!mem.write(maddr, mhost, msize, pf)) return page_fault(maddr, pf, name);
  }
  const kvm_regs before = r;
  r.r15 = c.r15; r.r14 = c.r14; r.r13 = c.r13; r.r12 = c.r12; r.r11 = c.r11; r.r10 = c.r10; r.r9 = c.r9; r.r8 = c.r8;
  r.rdi = c.rdi; r.rsi = c.rsi; r.rbp = c.rbp; r.rbx = c.rbx; r.rdx = c.rdx; r.rcx = c.rcx; r.rax = c.rax;
  if (scratch != ZYDIS_REGISTER_NONE) *gpr_slot(r, scratch) = *gpr_slot(const_cast<kvm_regs&>(before), scratch);
  r.rflags = (r.rflags & ~kArith) | (c.rflags & kArith);
  // Keep KVM's header form (XCOMP_BV 0) and the components beyond XCR0 as they were.
  std::memcpy(st.xsave.data(), guest_area, 576);
  for (unsigned i = 2; i < 63; i++) {
    if (!(st.xcr0 & (uint64_t(1) << i))) continue;
    Component comp = component(st, i);
    if (comp.size && comp.offset + comp.size <= st.xsave.size())
      std::memcpy(st.xsave.data() + comp.offset, guest_area + comp.offset, comp.size);
  }
  AssistResult res = completed(AssistKind::Native, r, d, name + " (run natively)");
  res.xsave_changed = true;
  return res;
}

}  // namespace

const char* assist_kind_name(AssistKind k) {
  switch (k) {
    case AssistKind::None: return "none";
    case AssistKind::Int3: return "int3";
    case AssistKind::IntN: return "int-n";
    case AssistKind::Ud: return "ud";
    case AssistKind::ClacStac: return "clac/stac";
    case AssistKind::Popcnt: return "popcnt";
    case AssistKind::Fwait: return "fwait";
    case AssistKind::Xgetbv: return "xgetbv";
    case AssistKind::Xsetbv: return "xsetbv";
    case AssistKind::Xsave: return "xsave";
    case AssistKind::Xrstor: return "xrstor";
    case AssistKind::Cmpxchg16b: return "cmpxchg16b";
    case AssistKind::FsGsBase: return "fsgsbase";
    case AssistKind::Rdpid: return "rdpid";
    case AssistKind::Native: return "simd-native";
    case AssistKind::Hint: return "fence/cache";
    case AssistKind::Fault: return "fault";
    case AssistKind::Swapgs: return "swapgs";
    case AssistKind::Sysret: return "sysret";
    case AssistKind::Syscall: return "syscall-fixup";
    case AssistKind::Segment: return "lar/lsl";
    case AssistKind::Count: break;
  }
  return "?";
}

bool cpuid_lookup(const std::vector<kvm_cpuid_entry2>& t, uint32_t fn, uint32_t idx, kvm_cpuid_entry2& out) {
  for (const auto& e : t) {
    if (e.function == fn && ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0 || e.index == idx)) {
      out = e;
      return true;
    }
  }
  return false;
}

unsigned assist_needs(const uint8_t* bytes, size_t n, const kvm_sregs& s) {
  Decoded d;
  if (!decode(bytes, n, s, d)) return 0;
  switch (d.in.mnemonic) {
    case ZYDIS_MNEMONIC_XSAVE: case ZYDIS_MNEMONIC_XSAVE64: case ZYDIS_MNEMONIC_XSAVEOPT: case ZYDIS_MNEMONIC_XSAVEOPT64:
    case ZYDIS_MNEMONIC_XSAVEC: case ZYDIS_MNEMONIC_XSAVEC64: case ZYDIS_MNEMONIC_XSAVES: case ZYDIS_MNEMONIC_XSAVES64:
    case ZYDIS_MNEMONIC_XRSTOR: case ZYDIS_MNEMONIC_XRSTOR64: case ZYDIS_MNEMONIC_XRSTORS: case ZYDIS_MNEMONIC_XRSTORS64:
    case ZYDIS_MNEMONIC_XGETBV: case ZYDIS_MNEMONIC_XSETBV:
      return kNeedXsave;
    case ZYDIS_MNEMONIC_RDPID:
      return kNeedTscAux;
    case ZYDIS_MNEMONIC_SWAPGS: case ZYDIS_MNEMONIC_SYSRET:
      return kNeedSyscallMsrs;
    default:
      return native_eligible(d) ? unsigned(kNeedXsave) : 0u;
  }
}

bool walk_long_mode_tables(uint64_t cr3, bool la57, uint64_t linear,
                           const std::function<bool(uint64_t gpa, uint64_t& entry)>& read_phys, uint64_t& gpa) {
  constexpr uint64_t kAddr = 0x000ffffffffff000ull;  // bits 51:12
  uint64_t table = cr3 & kAddr;
  for (int level = la57 ? 5 : 4; level >= 1; level--) {
    const unsigned shift = 12 + 9 * (level - 1);
    uint64_t e;
    if (!read_phys(table + ((linear >> shift) & 511) * 8, e) || !(e & 1)) return false;
    if ((level == 3 || level == 2) && (e & 0x80)) {  // 1 GiB or 2 MiB page
      const uint64_t size = uint64_t(1) << shift;
      gpa = (e & kAddr & ~(size - 1)) | (linear & (size - 1));
      return true;
    }
    table = e & kAddr;
  }
  gpa = table | (linear & 4095);
  return true;
}

bool failed_syscall_frame(const AssistState& st, AssistMemory& mem, SyscallFrame& out) {
  const kvm_sregs& s = st.sregs;
  // 64-bit mode, paging, CPL 0.
  if (!(s.cr0 & 0x80000001u) || !(s.efer & (1u << 10)) || !s.cs.l || cpl(s) != 0) return false;
  uint32_t pf;
  // RIP at the #PF handler: IDT[14]'s target, or past an ENDBR64 there.
  if (s.idt.limit < 14 * 16 + 15) return false;
  uint8_t gate[16];
  if (!mem.read(s.idt.base + 14 * 16, gate, sizeof gate, pf)) return false;
  const uint64_t target = uint64_t(gate[0] | gate[1] << 8) | uint64_t(gate[6] | gate[7] << 8) << 16 |
                          uint64_t(gate[8] | gate[9] << 8 | gate[10] << 16 | uint32_t(gate[11]) << 24) << 32;
  const uint64_t rip = st.regs.rip;
  if (rip != target) {
    static const uint8_t endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};
    uint8_t b[4];
    if (rip != target + 4 || !mem.read(target, b, 4, pf) || std::memcmp(b, endbr64, 4) != 0) return false;
  }
  // The frame: error code, RIP, CS, RFLAGS, RSP, SS.
  uint64_t f[6];
  if (!mem.read(st.regs.rsp, f, sizeof f, pf)) return false;
  SyscallFrame fr{f[0], f[1], f[2], f[3], f[4], f[5]};
  // A present-page, user-mode read-side fault (fetches are reads; bit 4 only with NX) at RIP = CR2, from ring 3.
  if ((fr.error_code & 0x7) != 0x5 || (fr.cs & 3) != 3 || fr.rip != s.cr2) return false;
  // RCX follows a SYSCALL instruction.
  uint8_t sc[2];
  // A peek: from CPL 0 a read of this user page is what CR4.SMAP forbids.
  if (!mem.peek(st.regs.rcx - 2, sc, 2) || sc[0] != 0x0f || sc[1] != 0x05) return false;
  out = fr;
  return true;
}

AssistResult complete_failed_syscall(AssistState& st, const SyscallFrame& f) {
  AssistResult res;
  if (f.rip != st.lstar || !(st.sregs.efer & 1)) return res;
  const uint16_t k = uint16_t(st.star >> 32) & 0xfffc;
  kvm_segment& cs = st.sregs.cs;
  cs.selector = k;
  cs.base = 0;
  cs.limit = 0xffffffff;
  cs.type = 0xb;
  cs.s = 1;
  cs.dpl = 0;
  cs.present = 1;
  cs.l = 1;
  cs.db = 0;
  cs.g = 1;
  cs.unusable = 0;
  kvm_segment& ss = st.sregs.ss;
  ss.selector = uint16_t(k + 8);
  ss.base = 0;
  ss.limit = 0xffffffff;
  ss.type = 0x3;
  ss.s = 1;
  ss.dpl = 0;
  ss.present = 1;
  ss.l = 0;
  ss.db = 1;
  ss.g = 1;
  ss.unusable = 0;
  st.regs.rip = st.lstar;
  st.regs.rsp = f.rsp;
  st.regs.rflags = (f.rflags & ~uint64_t(1u << 16)) | 2;
  res.action = AssistResult::Action::Completed;
  res.kind = AssistKind::Syscall;
  res.regs_changed = res.sregs_changed = true;
  res.what = "ring-3 SYSCALL completed at LSTAR (kvm_pvm left it at CPL 3; its #PF undone)";
  return res;
}

AssistResult assist_instruction(const uint8_t* bytes, size_t n, AssistState& st, AssistMemory& mem) {
  Decoded d;
  if (!decode(bytes, n, st.sregs, d)) {
    // Bytes no decoder accepts are what a CPU answers with #UD.
    return exception(AssistKind::Ud, kUd, "undecodable instruction: #UD");
  }
  kvm_regs& r = st.regs;
  const std::string name = ZydisMnemonicGetString(d.in.mnemonic);
  switch (d.in.mnemonic) {
    case ZYDIS_MNEMONIC_INT3: {
      AssistResult res = exception(AssistKind::Int3, kBp, "INT3: #BP");
      r.rip += d.in.length;  // a trap: the handler sees the address after it
      res.regs_changed = true;
      return res;
    }
    case ZYDIS_MNEMONIC_UD0: case ZYDIS_MNEMONIC_UD1: case ZYDIS_MNEMONIC_UD2:
      return exception(AssistKind::Ud, kUd, name + ": #UD");
    case ZYDIS_MNEMONIC_CLAC: case ZYDIS_MNEMONIC_STAC: {
      kvm_cpuid_entry2 e{};
      const bool smap = cpuid_lookup(st.cpuid, 7, 0, e) && (e.ebx & (1u << 20));
      if (!smap || cpl(st.sregs) != 0) return exception(AssistKind::Ud, kUd, name + " without SMAP or at CPL>0: #UD");
      if (d.in.mnemonic == ZYDIS_MNEMONIC_CLAC) r.rflags &= ~kAc;
      else r.rflags |= kAc;
      return completed(AssistKind::ClacStac, r, d, name);
    }
    case ZYDIS_MNEMONIC_POPCNT: {
      const auto& dst = d.ops[0];
      const auto& src = d.ops[1];
      uint64_t v = 0;
      if (src.type == ZYDIS_OPERAND_TYPE_REGISTER) {
        if (!read_reg(r, src.reg.value, v)) return {};
      } else {
        uint64_t a;
        uint32_t pf = 0;
        if (!linear_address(d, src, r, st.sregs, a)) return {};
        if (!mem.read(a, &v, src.size / 8, pf)) return page_fault(a, pf, name);
        v &= width_mask(src.size);
      }
      uint64_t cnt = uint64_t(__builtin_popcountll(v));
      if (!write_reg(r, dst.reg.value, cnt, d.mode)) return {};
      r.rflags &= ~(kCf | kPf | kAf | kZf | kSf | kOf);
      if (v == 0) r.rflags |= kZf;
      return completed(AssistKind::Popcnt, r, d, name);
    }
    case ZYDIS_MNEMONIC_FWAIT: {
      // #NM when CR0.MP and CR0.TS are both set; an unmasked pending x87
      // exception would raise #MF, which Vireo does not track (FSW's ES bit).
      if ((st.sregs.cr0 & (kCr0Mp | kCr0Ts)) == (kCr0Mp | kCr0Ts))
        return exception(AssistKind::Fault, kNm, "FWAIT with CR0.MP and CR0.TS: #NM");
      (void)kCr0Em;
      return completed(AssistKind::Fwait, r, d, name);
    }
    case ZYDIS_MNEMONIC_XGETBV: {
      if (!(st.sregs.cr4 & kCr4Osxsave)) return exception(AssistKind::Ud, kUd, "XGETBV with CR4.OSXSAVE=0: #UD");
      const uint32_t ecx = uint32_t(r.rcx);
      uint64_t v;
      if (ecx == 0) v = st.xcr0;
      else if (ecx == 1) v = st.xcr0 & (rd64(st.xsave.data() + kHeader) | 3);  // XINUSE
      else return exception(AssistKind::Fault, kGp, "XGETBV of an unknown XCR: #GP(0)");
      r.rax = v & 0xffffffffu;
      r.rdx = v >> 32;
      return completed(AssistKind::Xgetbv, r, d, name);
    }
    case ZYDIS_MNEMONIC_XSETBV: {
      if (!(st.sregs.cr4 & kCr4Osxsave)) return exception(AssistKind::Ud, kUd, "XSETBV with CR4.OSXSAVE=0: #UD");
      const uint64_t v = (r.rdx << 32) | (r.rax & 0xffffffffu);
      kvm_cpuid_entry2 e{};
      const uint64_t supported = cpuid_lookup(st.cpuid, 0xd, 0, e) ? (uint64_t(e.edx) << 32 | e.eax) : 3;
      // #GP(0): CPL > 0, an XCR other than 0, x87 off, AVX without SSE, AVX-512 pieces not all together or without AVX.
      const bool avx512_bad = (v & 0xe0) && ((v & 0xe0) != 0xe0 || !(v & 4));
      if (cpl(st.sregs) != 0 || uint32_t(r.rcx) != 0 || !(v & 1) || ((v & 4) && !(v & 2)) || avx512_bad ||
          (v & ~supported))
        return exception(AssistKind::Fault, kGp, "XSETBV with an invalid value or XCR: #GP(0)");
      st.xcr0 = v;
      AssistResult res = completed(AssistKind::Xsetbv, r, d, name);
      res.xcr0_changed = true;
      return res;
    }
    case ZYDIS_MNEMONIC_XSAVE: case ZYDIS_MNEMONIC_XSAVE64: case ZYDIS_MNEMONIC_XSAVEOPT: case ZYDIS_MNEMONIC_XSAVEOPT64:
      return do_xsave(d, st, mem, XForm::Standard);
    case ZYDIS_MNEMONIC_XSAVEC: case ZYDIS_MNEMONIC_XSAVEC64:
      return do_xsave(d, st, mem, XForm::Compacted);
    case ZYDIS_MNEMONIC_XSAVES: case ZYDIS_MNEMONIC_XSAVES64:
      return do_xsave(d, st, mem, XForm::Supervisor);
    case ZYDIS_MNEMONIC_XRSTOR: case ZYDIS_MNEMONIC_XRSTOR64:
      return do_xrstor(d, st, mem, false);
    case ZYDIS_MNEMONIC_XRSTORS: case ZYDIS_MNEMONIC_XRSTORS64:
      return do_xrstor(d, st, mem, true);
    case ZYDIS_MNEMONIC_CMPXCHG16B: {
      uint64_t a;
      if (!linear_address(d, d.ops[0], r, st.sregs, a)) return {};
      if (a & 15) return exception(AssistKind::Fault, kGp, "CMPXCHG16B on an unaligned operand: #GP(0)");
      uint64_t m[2];
      uint32_t pf = 0;
      if (!mem.read(a, m, 16, pf)) return page_fault(a, pf, name);
      if (m[0] == r.rax && m[1] == r.rdx) {
        const uint64_t n2[2] = {r.rbx, r.rcx};
        if (!mem.write(a, n2, 16, pf)) return page_fault(a, pf | 2, name);
        r.rflags |= kZf;
      } else {
        // The CPU writes the old value back (a locked read-modify-write), so a
        // read-only page faults either way.
        if (!mem.write(a, m, 16, pf)) return page_fault(a, pf | 2, name);
        r.rax = m[0];
        r.rdx = m[1];
        r.rflags &= ~kZf;
      }
      return completed(AssistKind::Cmpxchg16b, r, d, name);
    }
    case ZYDIS_MNEMONIC_SWAPGS: {
      if (d.mode != ZYDIS_MACHINE_MODE_LONG_64) return exception(AssistKind::Ud, kUd, "SWAPGS outside 64-bit mode: #UD");
      if (cpl(st.sregs) != 0) return exception(AssistKind::Fault, kGp, "SWAPGS at CPL>0: #GP(0)");
      const uint64_t gs = st.sregs.gs.base;
      st.sregs.gs.base = st.kernel_gs_base;
      st.kernel_gs_base = gs;
      AssistResult res = completed(AssistKind::Swapgs, r, d, name);
      res.sregs_changed = res.kernel_gs_base_changed = true;
      return res;
    }
    case ZYDIS_MNEMONIC_SYSRET: {
      // SDM "SYSRET": #UD without EFER.SCE or outside long mode; #GP(0) at
      // CPL>0 or, for a 64-bit return, a non-canonical RCX.
      if (!(st.sregs.efer & 1) || !(st.sregs.efer & (1u << 10)) || d.mode != ZYDIS_MACHINE_MODE_LONG_64)
        return exception(AssistKind::Ud, kUd, "SYSRET with EFER.SCE=0 or outside 64-bit mode: #UD");
      if (cpl(st.sregs) != 0) return exception(AssistKind::Fault, kGp, "SYSRET at CPL>0: #GP(0)");
      const bool to64 = d.in.operand_width == 64;
      const unsigned bits = (st.sregs.cr4 & (1u << 12)) ? 57 : 48;
      if (to64 && uint64_t(int64_t(r.rcx << (64 - bits)) >> (64 - bits)) != r.rcx)
        return exception(AssistKind::Fault, kGp, "SYSRET to a non-canonical RCX: #GP(0)");
      const uint16_t base = uint16_t(st.star >> 48);
      kvm_segment& cs = st.sregs.cs;
      cs.selector = uint16_t((to64 ? base + 16 : base) | 3);
      cs.base = 0;
      cs.limit = 0xffffffff;
      cs.type = 0xb;
      cs.s = 1;
      cs.dpl = 3;
      cs.present = 1;
      cs.l = to64;
      cs.db = !to64;
      cs.g = 1;
      cs.unusable = 0;
      kvm_segment& ss = st.sregs.ss;
      ss.selector = uint16_t((base + 8) | 3);
      ss.base = 0;
      ss.limit = 0xffffffff;
      ss.type = 0x3;
      ss.s = 1;
      ss.dpl = 3;
      ss.present = 1;
      ss.l = 0;
      ss.db = 1;
      ss.g = 1;
      ss.unusable = 0;
      r.rip = to64 ? r.rcx : (r.rcx & 0xffffffffu);
      r.rflags = (r.r11 & 0x3c7fd7) | 2;
      AssistResult res;
      res.action = AssistResult::Action::Completed;
      res.kind = AssistKind::Sysret;
      res.regs_changed = res.sregs_changed = true;
      res.what = to64 ? "sysretq" : "sysretl";
      return res;
    }
    case ZYDIS_MNEMONIC_RDFSBASE: case ZYDIS_MNEMONIC_RDGSBASE:
    case ZYDIS_MNEMONIC_WRFSBASE: case ZYDIS_MNEMONIC_WRGSBASE: {
      // #UD outside 64-bit mode or with CR4.FSGSBASE clear.
      if (d.mode != ZYDIS_MACHINE_MODE_LONG_64 || !(st.sregs.cr4 & (1u << 16)))
        return exception(AssistKind::Ud, kUd, name + " outside 64-bit mode or with CR4.FSGSBASE=0: #UD");
      const bool fs = d.in.mnemonic == ZYDIS_MNEMONIC_RDFSBASE || d.in.mnemonic == ZYDIS_MNEMONIC_WRFSBASE;
      kvm_segment& seg = fs ? st.sregs.fs : st.sregs.gs;
      if (d.in.mnemonic == ZYDIS_MNEMONIC_RDFSBASE || d.in.mnemonic == ZYDIS_MNEMONIC_RDGSBASE) {
        if (!write_reg(r, d.ops[0].reg.value, seg.base, d.mode)) return {};
        return completed(AssistKind::FsGsBase, r, d, name);
      }
      uint64_t v;
      if (!read_reg(r, d.ops[0].reg.value, v)) return {};
      // 48-bit canonical (LA57 guests have 57 bits).
      const unsigned bits = (st.sregs.cr4 & (1u << 12)) ? 57 : 48;
      const uint64_t top = uint64_t(int64_t(v << (64 - bits)) >> (64 - bits));
      if (top != v) return exception(AssistKind::Fault, kGp, name + " of a non-canonical address: #GP(0)");
      seg.base = v;
      AssistResult res = completed(AssistKind::FsGsBase, r, d, name);
      res.sregs_changed = true;
      return res;
    }
    case ZYDIS_MNEMONIC_VERR: case ZYDIS_MNEMONIC_VERW:
    case ZYDIS_MNEMONIC_LAR: case ZYDIS_MNEMONIC_LSL: {
      // The selector checks: ZF = the selector names a descriptor this
      // instruction accepts at the current privilege (SDM "LAR", "LSL",
      // "VERR/VERW"). Linux runs VERW with __KERNEL_DS on every return to user
      // space for its side effect (MDS: clears CPU buffers), and LSL of
      // __CPUNODE_SEG in paranoid_entry (GET_PERCPU_BASE without RDPID: NMI,
      // #DB, #MC), where the segment limit is the CPU number. LAR and LSL
      // leave their destination alone when ZF is clear; LSL gives the limit
      // in bytes (scaled by G), LAR the access bytes.
      if (!(st.sregs.cr0 & 1)) return exception(AssistKind::Ud, kUd, name + " in real mode: #UD");
      const bool verify = d.in.mnemonic == ZYDIS_MNEMONIC_VERR || d.in.mnemonic == ZYDIS_MNEMONIC_VERW;
      const auto& op = d.ops[verify ? 0 : 1];
      uint64_t sel = 0;
      uint32_t pf = 0;
      if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
        uint64_t a;
        if (!linear_address(d, op, r, st.sregs, a)) return {};
        if (!mem.read(a, &sel, 2, pf)) return page_fault(a, pf, name);
      } else if (!read_reg(r, op.reg.value, sel)) {
        return {};
      }
      sel &= 0xffff;
      bool ok = false;
      uint64_t desc = 0;
      const kvm_segment* ldt = &st.sregs.ldt;
      const uint64_t table = (sel & 4) ? ldt->base : st.sregs.gdt.base;
      const uint64_t limit = (sel & 4) ? ldt->limit : st.sregs.gdt.limit;
      if ((sel & ~3u) != 0 && (sel | 7) <= limit) {
        if (!mem.read(table + (sel & ~7u), &desc, 8, pf)) return page_fault(table + (sel & ~7u), pf, name);
        const unsigned type = (desc >> 40) & 0xf, s_bit = (desc >> 44) & 1, dpl = (desc >> 45) & 3;
        const bool present = (desc >> 47) & 1;
        const bool code = type & 8, conforming = s_bit && code && (type & 4);
        const unsigned level = std::max<unsigned>(unsigned(cpl(st.sregs)), unsigned(sel & 3));
        const bool privileged_ok = conforming || dpl >= level;
        if (verify) {
          if (s_bit && present && privileged_ok)
            ok = d.in.mnemonic == ZYDIS_MNEMONIC_VERW ? (!code && (type & 2)) : (!code || (type & 2));
        } else {
          // System descriptors LAR/LSL take: in long mode the LDT and the
          // 64-bit TSS (and, for LAR, the call gate); in legacy protected
          // mode also the 16-bit TSS and, for LAR, the other gates.
          const bool longmode = st.sregs.efer & (1u << 10);
          const bool lar = d.in.mnemonic == ZYDIS_MNEMONIC_LAR;
          bool type_ok = s_bit;
          if (!s_bit) {
            switch (type) {
              case 0x2: case 0x9: case 0xb: type_ok = true; break;
              case 0xc: type_ok = lar; break;
              case 0x1: case 0x3: type_ok = !longmode; break;
              case 0x4: case 0x5: type_ok = lar && !longmode; break;
              default: type_ok = false;
            }
          }
          ok = type_ok && privileged_ok;  // the P bit is not looked at
        }
      }
      if (ok) r.rflags |= kZf;
      else r.rflags &= ~kZf;
      if (ok && !verify) {
        uint64_t v;
        if (d.in.mnemonic == ZYDIS_MNEMONIC_LSL) {
          v = (desc & 0xffff) | ((desc >> 32) & 0xf0000);
          if (desc & (1ull << 55)) v = (v << 12) | 0xfff;
        } else {
          v = (desc >> 32) & 0x00f0ff00;
        }
        if (!write_reg(r, d.ops[0].reg.value, v, d.mode)) return {};
      }
      return completed(verify ? AssistKind::Hint : AssistKind::Segment, r, d, name);
    }
    case ZYDIS_MNEMONIC_LFENCE: case ZYDIS_MNEMONIC_SFENCE: case ZYDIS_MNEMONIC_MFENCE:
    case ZYDIS_MNEMONIC_CLFLUSH: case ZYDIS_MNEMONIC_CLFLUSHOPT: case ZYDIS_MNEMONIC_CLWB:
    case ZYDIS_MNEMONIC_PREFETCHNTA: case ZYDIS_MNEMONIC_PREFETCHT0: case ZYDIS_MNEMONIC_PREFETCHT1:
    case ZYDIS_MNEMONIC_PREFETCHT2: case ZYDIS_MNEMONIC_PREFETCHW:
      // Ordering and cache hints: the exit itself serializes the vCPU, and
      // guest RAM is ordinary write-back memory. Nothing to do but go on.
      return completed(AssistKind::Hint, r, d, name);
    case ZYDIS_MNEMONIC_RDPID: {
      if (!write_reg(r, d.ops[0].reg.value, st.tsc_aux, d.mode)) return {};
      return completed(AssistKind::Rdpid, r, d, name);
    }
    default:
      if (native_eligible(d) && st.have_xsave) {
        AssistResult res = run_natively(d, bytes, st, mem);
        if (res.what.empty()) res.what = name + " (not runnable natively)";
        if (res.action != AssistResult::Action::Completed) return res;
        // SIMD code comes in runs (a crypto round is dozens of them): go on
        // with the instructions that follow while they are of the same kind,
        // so one exit serves a whole straight-line run.
        for (int k = 0; k < kMaxNativeRun; k++) {
          uint8_t next[15];
          uint32_t pf;
          const uint64_t at = st.sregs.cs.base + st.regs.rip;
          const size_t to_page_end = 4096 - (at & 4095);
          size_t got = mem.read(at, next, 15, pf) ? 15 : (to_page_end < 15 && mem.read(at, next, to_page_end, pf)) ? to_page_end : 0;
          Decoded nd;
          if (!got || !decode(next, got, st.sregs, nd) || !native_eligible(nd)) break;
          AssistResult more = run_natively(nd, next, st, mem);
          if (more.action == AssistResult::Action::Unhandled) break;  // this one waits for the next exit
          res.followers++;
          if (more.action == AssistResult::Action::Exception) {
            more.regs_changed = more.xsave_changed = true;
            more.followers = res.followers;
            return more;
          }
        }
        return res;
      }
      break;
  }
  AssistResult res;
  res.what = name;
  (void)has_parity;
  return res;
}

void prepare_native_assist() {
  trampoline();
  install_fault_handlers();
}

}  // namespace vireo::kvm
