// The userspace assist for kvm_pvm hosts. kvm_pvm runs guest ring-0 code in
// KVM's instruction emulator, which lacks instructions that a stock kernel
// uses (XSAVE/XRSTOR, CMPXCHG16B, POPCNT, CLAC/STAC, FWAIT, LSL...) and cannot
// deliver an exception raised by emulated code (INT3, UD2): both end in
// KVM_EXIT_INTERNAL_ERROR (emulation failure). Vireo then decodes the
// instruction at RIP and either completes it with the architectural result or
// says which exception the CPU would raise. This file is the pure part:
// instruction bytes + register state + a guest-memory accessor in, a result
// out; no ioctl. The vCPU exit path (machine.cc) applies the result.
#pragma once
#include <linux/kvm.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vireo::kvm {

// Guest-linear memory as the instruction sees it. A failed access fills
// `pf_error` with the page-fault error code the CPU would push (the faulting
// address is the one passed in).
class AssistMemory {
public:
  virtual ~AssistMemory() = default;
  virtual bool read(uint64_t linear, void* dst, size_t n, uint32_t& pf_error) = 0;
  virtual bool write(uint64_t linear, const void* src, size_t n, uint32_t& pf_error) = 0;
  // A look at guest memory that no guest instruction makes: present mappings
  // only, ignoring U/S, SMAP and write protection. failed_syscall_frame() reads
  // the user bytes before RCX with it from CPL 0, where an instruction's read
  // would fault under CR4.SMAP (Linux sets it). By default, read().
  virtual bool peek(uint64_t linear, void* dst, size_t n) {
    uint32_t pf;
    return read(linear, dst, n, pf);
  }
};

// The guest's 4- or 5-level (CR4.LA57) long-mode page tables from CR3, walked
// in software: the physical address of `linear`, or false where a level is not
// present (or `read_phys` cannot read a table). Only the P bit and the page
// size (PS at the PDPT and PD levels) are looked at: no permission checks, no
// A/D updates. For peeks that KVM_TRANSLATE refuses (it applies SMAP).
bool walk_long_mode_tables(uint64_t cr3, bool la57, uint64_t linear,
                           const std::function<bool(uint64_t gpa, uint64_t& entry)>& read_phys, uint64_t& gpa);

// The kinds the assist counts (VIREO_PROFILE_EXITS) and the tests name.
enum class AssistKind : uint8_t {
  None,
  Int3,        // #BP delivered with RIP past the INT3
  IntN,        // INT n (software interrupt) delivered
  Ud,          // #UD delivered (UD2, undecodable, or a feature the exposed CPUID lacks)
  ClacStac,
  Popcnt,
  Fwait,
  Xgetbv,
  Xsetbv,
  Xsave,       // XSAVE, XSAVEOPT, XSAVEC, XSAVES
  Xrstor,      // XRSTOR, XRSTORS
  Cmpxchg16b,
  FsGsBase,    // RDFSBASE, RDGSBASE, WRFSBASE, WRGSBASE
  Rdpid,
  Hint,        // LFENCE/SFENCE/MFENCE, CLFLUSH(OPT), CLWB, PREFETCH*: nothing to do
  Native,      // SSE/AVX/AVX-512/BMI..., run on the host CPU on the guest's registers
  Fault,       // #GP / #PF / #NM raised by an instruction the assist ran
  Swapgs,      // SWAPGS: GS.base <-> IA32_KERNEL_GS_BASE (kvm_pvm runs it itself today; a fallback)
  Sysret,      // SYSRET back to ring 3 (likewise)
  Syscall,     // a ring-3 SYSCALL that kvm_pvm left in ring 3, completed (complete_failed_syscall)
  Segment,     // LAR, LSL: a descriptor's access rights or limit
  Count
};
const char* assist_kind_name(AssistKind k);

// The per-vCPU state an instruction may read or change. `xsave` is KVM's
// KVM_GET_XSAVE buffer (standard, non-compacted XSAVE layout of the guest's
// FPU/SSE/AVX state); `cpuid` is the table the guest sees (its leaf 0xd gives
// the state components' sizes and offsets).
struct AssistState {
  kvm_regs regs{};
  kvm_sregs sregs{};
  uint64_t xcr0 = 1;
  uint64_t xss = 0;            // IA32_XSS
  uint64_t tsc_aux = 0;        // IA32_TSC_AUX (RDPID)
  uint64_t star = 0;           // IA32_STAR (SYSRET; read when assist_needs says kNeedSyscallMsrs)
  uint64_t lstar = 0;          // IA32_LSTAR (complete_failed_syscall)
  uint64_t kernel_gs_base = 0; // IA32_KERNEL_GS_BASE (SWAPGS)
  std::array<uint8_t, 4096> xsave{};
  bool have_xsave = false;     // xsave[] holds the guest's state (read lazily by the glue)
  std::vector<kvm_cpuid_entry2> cpuid;
};

struct AssistResult {
  enum class Action : uint8_t {
    Unhandled,  // not an instruction the assist knows: stop the VM as before
    Completed,  // state changed (see the *_changed flags), RIP advanced
    Exception,  // deliver `vector` (with `error_code` if has_error_code; CR2 = cr2 for #PF)
  } action = Action::Unhandled;
  AssistKind kind = AssistKind::None;
  uint8_t vector = 0;
  bool has_error_code = false;
  uint32_t error_code = 0;
  uint64_t cr2 = 0;
  bool regs_changed = false, sregs_changed = false, xcr0_changed = false, xsave_changed = false;
  bool kernel_gs_base_changed = false;  // write st.kernel_gs_base back (SWAPGS)
  int followers = 0;  // Native: further SIMD instructions run in the same exit
  std::string what;  // mnemonic and a word on what was done, for logs and errors
};

// What state beyond registers the instruction needs (the glue reads only
// that, as each costs an ioctl).
enum : unsigned { kNeedXsave = 1, kNeedTscAux = 2, kNeedSyscallMsrs = 4 };  // kNeedXsave: the XSAVE buffer, XCR0 and IA32_XSS;
                                                                         // kNeedSyscallMsrs: IA32_STAR and IA32_KERNEL_GS_BASE
unsigned assist_needs(const uint8_t* bytes, size_t n, const kvm_sregs& s);

// Decodes the instruction in `bytes` (fetched at CS:RIP) and runs it on `st`.
AssistResult assist_instruction(const uint8_t* bytes, size_t n, AssistState& st, AssistMemory& mem);

// kvm_pvm and a ring-3 SYSCALL (docs/architecture.md, "SYSCALL on kvm_pvm
// hosts"): the host sets RCX (next RIP), R11 (RFLAGS), RFLAGS &= ~FMASK and
// RIP = LSTAR but leaves CS/SS, so CPL stays 3; fetching LSTAR's supervisor
// page then raises a user-mode #PF (error P|U[|I], CR2 = RIP = LSTAR) that the
// host delivers through the guest's IDT. Vireo first sees the guest again when
// the #PF handler's first instruction exits to the assist (Linux's entries
// begin with CLAC, which kvm_pvm's emulator lacks). failed_syscall_frame()
// recognises that moment: CPL 0, RIP at IDT[14]'s target (or just past an
// ENDBR64 there), and on the stack a user-mode instruction-side #PF frame whose
// RIP is CR2 and whose RCX follows a SYSCALL (0f 05). complete_failed_syscall()
// then gives the architectural SYSCALL result, as if the #PF had not happened:
// CS/SS from STAR[47:32] at CPL 0, RIP = LSTAR, RSP = the user RSP, RFLAGS as
// the host masked it (RF clear). RCX and R11 stay as the host set them.
struct SyscallFrame {
  uint64_t error_code = 0, rip = 0, cs = 0, rflags = 0, rsp = 0, ss = 0;
};
bool failed_syscall_frame(const AssistState& st, AssistMemory& mem, SyscallFrame& out);
// Needs st.star and st.lstar; Unhandled unless the frame's RIP is LSTAR.
AssistResult complete_failed_syscall(AssistState& st, const SyscallFrame& f);

// CPUID as the guest sees it (0 if the leaf is absent).
bool cpuid_lookup(const std::vector<kvm_cpuid_entry2>& t, uint32_t fn, uint32_t idx, kvm_cpuid_entry2& out);

// Makes this thread's native-run trampoline (an executable page) and the
// assist's fault handlers now, before the thread confines itself (a device
// thread may not map executable memory or install signal handlers later).
void prepare_native_assist();

}  // namespace vireo::kvm
