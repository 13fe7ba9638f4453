; Ring-0 instructions that kvm_pvm's emulator cannot run by itself, executed in
; 64-bit long mode (as Linux does). Reports each result on COM1 as
; "name value" lines and exits with 0x0a. On kvm_pvm hosts Vireo's assist
; completes them or delivers their exception; on VT-x/AMD-V the CPU does. The
; host test (kvm_assist_test.cc) compares every line with what the
; architecture says.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, 0x90000
    IDENTITY_MAP_1G
    LONG_MODE_ENTER 0x70000, 0x08, long_mode

bits 64
long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, 0x90000
    ; IDT: #BP (3), #UD (6), #GP (13), #PF (14) go to handlers that record the
    ; vector and error code and resume at [resume].
    mov rax, bp_handler
    mov edi, 3
    call set_intr_gate
    mov rax, ud_handler
    mov edi, 6
    call set_intr_gate
    mov rax, gp_handler
    mov edi, 13
    call set_intr_gate
    mov rax, pf_handler
    mov edi, 14
    call set_intr_gate
    lidt [idtr]

    ; CPUID leaf 1 ECX and leaf 7 EBX, as this guest sees them.
    mov eax, 1
    xor ecx, ecx
    cpuid
    mov [cpuid1_ecx], ecx
    mov [cpuid1_ebx], ebx
    mov rsi, s_cpuid1
    mov eax, ecx
    call report32
    mov rsi, s_cpuid1b
    mov eax, [cpuid1_ebx]
    and eax, 0x00ff0000         ; logical processor count (Vireo writes the vCPU count)
    call report32
    mov eax, 0xd
    xor ecx, ecx
    cpuid
    mov rsi, s_cpuidd
    call report32
    mov eax, 7
    xor ecx, ecx
    cpuid
    mov rsi, s_cpuid7
    mov eax, ebx
    call report32

    ; INT3: #BP with the return address just past it.
    mov qword [resume], after_int3
    mov byte [vec], 0xff
int3_here:
    int3
after_int3:
    mov rsi, s_int3
    movzx eax, byte [vec]
    call report32
    mov rsi, s_int3_rip
    mov rax, [frame_rip]
    sub rax, int3_here
    call report32

    ; UD2: #UD with the return address at the UD2 itself.
    mov qword [resume], after_ud2
    mov byte [vec], 0xff
ud2_here:
    ud2
after_ud2:
    mov rsi, s_ud2
    movzx eax, byte [vec]
    call report32
    mov rsi, s_ud2_rip
    mov rax, [frame_rip]
    sub rax, ud2_here
    call report32

    ; POPCNT rax, rdi (f3 48 0f b8 c7), with flags.
    mov rdi, 0xf0f0000000000f01
    popcnt rax, rdi
    pushfq
    mov rsi, s_popcnt
    call report32
    pop rax
    and eax, 0x8d5
    mov rsi, s_popcnt_fl
    call report32
    xor edi, edi
    popcnt rax, rdi
    pushfq
    pop rax
    and eax, 0x8d5
    mov rsi, s_popcnt0_fl
    call report32
    ; POPCNT ecx, [mem32]
    popcnt ecx, dword [pop_mem]
    mov eax, ecx
    mov rsi, s_popcnt_m
    call report32

    ; CMPXCHG16B: equal (ZF=1, memory replaced), then unequal (ZF=0, RDX:RAX loaded).
    mov rax, 0x1111111111111111
    mov rdx, 0x2222222222222222
    mov rbx, 0x3333333333333333
    mov rcx, 0x4444444444444444
    lock cmpxchg16b [cx_mem]
    pushfq
    pop rax
    and eax, 0x40
    mov rsi, s_cx_eq
    call report32
    mov eax, [cx_mem]
    mov rsi, s_cx_mem
    call report32
    mov rax, 0x5555555555555555
    mov rdx, 0x6666666666666666
    lock cmpxchg16b [cx_mem]
    pushfq
    mov rsi, s_cx_rax
    call report32               ; low half of RAX: the memory's 0x33333333
    pop rax
    and eax, 0x40
    mov rsi, s_cx_ne
    call report32

    ; FWAIT with nothing pending: a no-op.
    fninit
    fwait
    mov rsi, s_fwait
    mov eax, 1
    call report32

    ; CLAC / STAC where CPUID says SMAP (leaf 7 EBX bit 20); #UD otherwise.
    mov qword [resume], after_stac
    mov byte [vec], 0xff
    stac
    pushfq
    pop rax
    shr eax, 18
    and eax, 1
    mov [ac_after_stac], eax
    clac
    pushfq
    pop rax
    shr eax, 18
    and eax, 1
    mov [ac_after_clac], eax
after_stac:
    mov rsi, s_stac
    mov eax, [ac_after_stac]
    call report32
    mov rsi, s_clac
    mov eax, [ac_after_clac]
    call report32
    mov rsi, s_smap_vec
    movzx eax, byte [vec]
    call report32

    ; Selector checks: LAR and LSL of this GDT's descriptors (Linux's
    ; paranoid_entry reads its CPU number with LSL), and LSL of the null
    ; selector, which clears ZF and leaves the destination alone.
    mov eax, 0x10
    mov ebx, 0xdeadbeef
    lar ebx, eax
    mov eax, ebx
    mov rsi, s_lar
    call report32
    mov ecx, 0x08
    mov rsi, s_lsl
    mov rdi, s_lsl_zf
    call report_lsl
    xor ecx, ecx
    mov rsi, s_lsl_null
    mov rdi, s_lsl_null_zf
    call report_lsl

    ; SSE arithmetic in ring 0 (the assist runs it on the host CPU).
    movdqu xmm1, [xmm_pattern]
    paddd xmm1, xmm1
    movdqu [xmm_out], xmm1
    mov eax, [xmm_out]
    mov rsi, s_sse
    call report32

    ; XSAVE family, where CPUID says XSAVE (leaf 1 ECX bit 26).
    test dword [cpuid1_ecx], 1 << 26
    jz no_xsave
    mov rax, cr4
    or eax, 1 << 18             ; OSXSAVE
    mov cr4, rax
    xor ecx, ecx
    xgetbv
    mov rsi, s_xcr0
    call report32
    mov eax, 3                  ; x87 | SSE
    xor edx, edx
    xor ecx, ecx
    xsetbv
    xor ecx, ecx
    xgetbv
    mov rsi, s_xcr0_set
    call report32
    ; Save XMM0 = pattern, clobber it, restore it, read it back.
    movdqu xmm0, [xmm_pattern]      ; (KVM's emulator has MOVDQU, not MOVQ)
    mov eax, 3
    xor edx, edx
    xsave [xsave_area]
    mov rax, [xsave_area + 512]  ; XSTATE_BV
    and eax, 3
    mov rsi, s_xstate_bv
    call report32
    mov eax, [xsave_area + 160]  ; XMM0 low dword in the legacy area
    mov rsi, s_xsave_xmm0
    call report32
    movdqu xmm0, [xmm_zero]
    mov eax, 3
    xor edx, edx
    xrstor [xsave_area]
    movdqu [xmm_out], xmm0
    mov eax, [xmm_out]
    mov rsi, s_xrstor_xmm0
    call report32
    ; XRSTOR of an unaligned area: #GP(0).
    mov qword [resume], after_bad_xrstor
    mov byte [vec], 0xff
    mov eax, 3
    xor edx, edx
    xrstor [xsave_area + 8]
after_bad_xrstor:
    mov rsi, s_xrstor_gp
    movzx eax, byte [vec]
    call report32
no_xsave:

    mov rsi, s_done
    call puts64
    EXIT 0x0a

; LSL of selector ECX into a destination holding 0xdeadbeef: reports the
; destination under the name at RSI and ZF (0/1) under the name at RDI.
; (report32 keeps every register.)
report_lsl:
    mov edx, 0xdeadbeef
    lsl edx, ecx
    setz al
    movzx eax, al
    xchg eax, edx               ; EAX: the destination, EDX: ZF
    call report32
    mov rsi, rdi
    mov eax, edx
    call report32
    ret

; Handlers: record vector (and error code), the frame's RIP, and return to [resume].
bp_handler:
    mov byte [vec], 3
    jmp no_err
ud_handler:
    mov byte [vec], 6
no_err:
    mov rax, [rsp]
    mov [frame_rip], rax
    mov rax, [resume]
    mov [rsp], rax
    iretq
gp_handler:
    mov byte [vec], 13
    jmp with_err
pf_handler:
    mov byte [vec], 14
with_err:
    pop rax
    mov [err_code], eax
    mov rax, [rsp]
    mov [frame_rip], rax
    mov rax, [resume]
    mov [rsp], rax
    iretq

%include "lib64.inc"
%include "gate64.inc"

FLAT64_TABLES
resume: dq 0
frame_rip: dq 0
err_code: dd 0
vec: db 0
align 4
cpuid1_ecx: dd 0
cpuid1_ebx: dd 0
ac_after_stac: dd 0xff
ac_after_clac: dd 0xff
pop_mem: dd 0x80000001
align 16
cx_mem: dq 0x1111111111111111, 0x2222222222222222
xmm_pattern: dq 0x0123456789abcdef, 0xfedcba9876543210
xmm_zero: dq 0, 0
xmm_out: dq 0, 0

s_cpuid1: db "cpuid1.ecx", 0
s_cpuid1b: db "cpuid1.ebx.count", 0
s_cpuidd: db "cpuid0d.eax", 0
s_cpuid7: db "cpuid7.ebx", 0
s_int3: db "int3.vector", 0
s_int3_rip: db "int3.rip_delta", 0
s_ud2: db "ud2.vector", 0
s_ud2_rip: db "ud2.rip_delta", 0
s_popcnt: db "popcnt", 0
s_popcnt_fl: db "popcnt.flags", 0
s_popcnt0_fl: db "popcnt0.flags", 0
s_popcnt_m: db "popcnt.mem", 0
s_cx_eq: db "cmpxchg16b.eq.zf", 0
s_cx_mem: db "cmpxchg16b.mem", 0
s_cx_rax: db "cmpxchg16b.rax", 0
s_cx_ne: db "cmpxchg16b.ne.zf", 0
s_fwait: db "fwait", 0
s_stac: db "stac.ac", 0
s_clac: db "clac.ac", 0
s_smap_vec: db "smap.vector", 0
s_sse: db "sse.paddd", 0
s_lar: db "lar.data", 0
s_lsl: db "lsl.code", 0
s_lsl_zf: db "lsl.code.zf", 0
s_lsl_null: db "lsl.null", 0
s_lsl_null_zf: db "lsl.null.zf", 0
s_xcr0: db "xcr0", 0
s_xcr0_set: db "xcr0.set", 0
s_xstate_bv: db "xsave.xstate_bv", 0
s_xsave_xmm0: db "xsave.xmm0", 0
s_xrstor_xmm0: db "xrstor.xmm0", 0
s_xrstor_gp: db "xrstor.unaligned.vector", 0
s_done: db "done", 13, 10, 0

align 64
xsave_area: times 4096 db 0
