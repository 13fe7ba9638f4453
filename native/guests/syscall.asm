; SYSCALL / SYSRET / INT 0x80 from ring 3 in 64-bit long mode, as a stock
; kernel uses them. Kernel (ring 0) sets up a GDT with kernel and user
; segments, a TSS (RSP0), an IDT whose handlers print their frame, EFER.SCE,
; STAR, LSTAR and FMASK, enters ring 3 with IRETQ and lets user code run
; SYSCALL. The LSTAR handler prints what it sees and returns with SYSRETQ; ring
; 3 then does it again. Every observation is a "name value" line on COM1 (hex);
; kvm_syscall_test.cc compares them with the architecture. Exits with 0x0a.
;
; Memory: everything runs from the identity map of the first 1 GiB, which is
; user-accessible (U=1). The same memory is mapped again at +1 GiB
; supervisor-only (U=0), so a handler can be entered at an address ring 3
; cannot fetch from (as Linux's entry_SYSCALL_64 is).
bits 32
%include "macros.inc"
%include "ring3.inc"
%define LOAD_ADDR 0x100000
%define ALIAS 0x40000000        ; supervisor-only alias of the first 1 GiB
%define KSTACK 0x90000
%define USTACK 0x3ff000
; Linux's GDT layout: STAR[47:32] = 0x10 (SYSCALL: CS 0x10, SS 0x18),
; STAR[63:48] = 0x23 (SYSRETQ: CS 0x23+16 = 0x33, SS 0x23+8 = 0x2b).
%define KCODE 0x10
%define KDATA 0x18
%define UDATA 0x2b
%define UCODE 0x33
%define TSSSEL 0x40
%define FMASK_VALUE 0x47700     ; TF, IF, DF, IOPL, AC
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, KSTACK
    ; PML4 0x70000 -> PDPT 0x71000: [0] -> PD 0x72000 (U=1), [1] -> PD 0x73000 (U=0).
    mov edi, 0x70000
    xor eax, eax
    mov ecx, 4 * 1024
    rep stosd
    mov dword [0x70000], 0x71007
    mov dword [0x71000], 0x72007
    mov dword [0x71008], 0x73003
    mov edi, 0x72000
    mov eax, 0x87                  ; 2 MiB, present, writable, user
    mov ecx, 512
.pd:
    mov [edi], eax
    mov ebx, eax
    and ebx, ~4                    ; the alias: supervisor-only
    mov [edi + 0x1000], ebx
    add eax, 0x200000
    add edi, 8
    loop .pd
    LONG_MODE_ENTER 0x70000, KCODE, long_mode

bits 64
long_mode:
    mov al, 0xff                   ; mask the PICs
    out 0x21, al
    out 0xa1, al
    mov ax, KDATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, KSTACK
    ; TSS descriptor (base tss, limit 0x67, type 9) and RSP0.
    mov qword [tss + 4], KSTACK
    TSS_INSTALL TSSSEL, 0x67
    ; IDT: vectors 0-31 (DPL 0) and 0x80 (DPL 3), each to a stub that prints the frame.
    xor ebx, ebx
.gates:
    mov rax, [stub_table + rbx * 8]
    mov edi, ebx
    mov edx, 0x8e00
    call set_gate
    inc ebx
    cmp ebx, 32
    jb .gates
    mov rax, stub128
    mov edi, 0x80
    mov edx, 0xee00
    call set_gate
    lidt [idtr]

    ; The PVM interface's MSRs (0x4b564df0..f7): readable here only if the host
    ; handles them for this guest.
    xor ebx, ebx
.pvm_msrs:
    lea ecx, [0x4b564df0 + rbx]
    mov qword [resume], .pvm_next
    mov [probe_msr], ecx
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov rsi, s_pvm_msr
    call print_kv_msr
.pvm_next:
    mov rsp, KSTACK
    inc ebx
    cmp ebx, 8
    jb .pvm_msrs

    ; SYSCALL setup: EFER.SCE, STAR, FMASK. LSTAR per variant.
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1
    wrmsr
    mov ecx, 0xc0000081            ; STAR
    xor eax, eax
    mov edx, (0x23 << 16) | KCODE
    wrmsr
    mov ecx, 0xc0000084            ; FMASK
    mov eax, FMASK_VALUE
    xor edx, edx
    wrmsr
    mov ecx, 0xc0000084
    rdmsr
    mov rsi, s_fmask
    call print_kv
    mov rax, user_after_syscall1   ; where the first SYSCALL returns (RCX)
    mov rsi, s_ret1
    call print_kv
    mov rax, user_after_syscall2
    mov rsi, s_ret2
    call print_kv
    mov ecx, 0xc0000102            ; KERNEL_GS_BASE: what SWAPGS brings in
    mov eax, 0x5a5a0000
    xor edx, edx
    wrmsr
    ; The #PF handler begins with CLAC, as Linux's exception entries do; without
    ; SMAP (CPUID 7 EBX bit 20) CLAC is #UD, so it becomes NOPs.
    mov eax, 7
    xor ecx, ecx
    cpuid
    test ebx, 1 << 20
    jnz .smap
    mov byte [stub14], 0x90
    mov word [stub14 + 1], 0x9090
.smap:

    ; Variant "user": LSTAR on a user-accessible page.
    mov rsi, s_var_user
    call puts64
    mov rax, syscall_entry
    call set_lstar
    mov qword [resume], .after_user
    mov rax, user_syscall
    jmp enter_user
.after_user:
    mov rsp, KSTACK
    call print_user

    ; Variant "super": LSTAR on a supervisor-only page (as in Linux).
    mov rsi, s_var_super
    call puts64
    mov rax, syscall_entry + ALIAS
    call set_lstar
    mov qword [resume], .after_super
    mov rax, user_syscall
    jmp enter_user
.after_super:
    mov rsp, KSTACK
    call print_user

    ; Variant "int80": INT 0x80 from ring 3 (a DPL-3 interrupt gate).
    mov rsi, s_var_int80
    call puts64
    mov qword [resume], .after_int80
    mov rax, user_int80
    jmp enter_user
.after_int80:
    mov rsp, KSTACK
    call print_user

    ; Variant "nosce": SYSCALL with EFER.SCE=0 must raise #UD.
    mov rsi, s_var_nosce
    call puts64
    mov ecx, 0xc0000080
    rdmsr
    and eax, ~1
    wrmsr
    mov qword [resume], .after_nosce
    mov rax, user_syscall
    jmp enter_user
.after_nosce:
    mov rsp, KSTACK
    call print_user

    mov rsi, s_done
    call puts64
    EXIT 0x0a

; set_lstar: RAX = handler.
set_lstar:
    mov [lstar_value], rax
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0xc0000082
    wrmsr
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov rsi, s_lstar
    call print_kv
    ret

; enter_user: RAX = ring-3 entry point. IRETQ with IOPL 0, IF=1 as Linux's user space (the PICs are masked).
enter_user:
    mov qword [u_back], 0
    mov qword [u_cs], 0
    mov qword [u_rflags], 0
    push UDATA
    push USTACK
    push 0x0202
    push UCODE
    push rax
    iretq

print_user:
    mov rax, [u_back]
    mov rsi, s_user_back
    call print_kv
    mov rax, [u_cs]
    mov rsi, s_user_cs
    call print_kv
    mov rax, [u_rflags]
    mov rsi, s_user_rflags
    call print_kv
    ret

; ---- ring 3 ----------------------------------------------------------------
user_syscall:
    mov eax, 1
    stc                           ; R11 must show CF=1
    syscall
user_after_syscall1:
    ; Ring 3 runs with IOPL 0 (as Linux's user space does): it records, the kernel prints.
    mov qword [u_back], 1
    mov ax, cs
    movzx eax, ax
    mov [u_cs], rax
    pushfq
    pop qword [u_rflags]
    mov eax, 2
    clc
    syscall
user_after_syscall2:
    int 0x80                      ; not reached when the second SYSCALL works

user_int80:
    mov eax, 0x80
    int 0x80
    ud2

; ---- the LSTAR handler (ring 0 when SYSCALL works) --------------------------
syscall_entry:
    swapgs
    mov [sc_rcx], rcx
    mov [sc_r11], r11
    mov [sc_rax], rax
    pushfq
    pop qword [sc_rflags]
    mov rsi, s_sc_ok
    call puts64
    mov ax, cs
    movzx eax, ax
    mov [sc_cs], rax
    mov rsi, s_sc_cs
    call print_kv
    mov ax, ss
    movzx eax, ax
    mov rsi, s_sc_ss
    call print_kv
    mov rax, [sc_rax]
    mov rsi, s_sc_rax
    call print_kv
    mov rax, [sc_rcx]
    mov rsi, s_sc_rcx
    call print_kv
    mov rax, [sc_r11]
    mov rsi, s_sc_r11
    call print_kv
    mov rax, [sc_rflags]
    mov rsi, s_sc_rflags
    call print_kv
    lea rax, [rel syscall_entry]
    mov rsi, s_sc_rip
    call print_kv
    mov ecx, 0xc0000101            ; GS_BASE after SWAPGS
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov rsi, s_sc_gs
    call print_kv
    mov ecx, 0xc0000102
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov rsi, s_sc_kgs
    call print_kv
    test byte [sc_cs], 3
    jnz .ring3                    ; the handler runs in ring 3: not a working SYSCALL
    cmp qword [sc_rax], 1
    jne .to_kernel
    mov rcx, [sc_rcx]
    mov r11, [sc_r11]
    swapgs
    o64 sysret
.to_kernel:
    swapgs                        ; back to the user GS, as the next variant expects
    mov rsp, KSTACK
    jmp [resume]
.ring3:
    int 0x80

; ---- exceptions --------------------------------------------------------------
%macro STUB 1
stub%1:
%if %1 == 14
    clac
%endif
%if (%1 == 8) || (%1 >= 10 && %1 <= 14) || (%1 == 17) || (%1 == 21) || (%1 == 29) || (%1 == 30)
%else
    push 0
%endif
    push %1
    jmp exc_common
%endmacro
%assign i 0
%rep 32
STUB %[i]
%assign i i+1
%endrep
STUB 128

; Frame: [rsp] vector, +8 error code, +16 RIP, +24 CS, +32 RFLAGS, +40 RSP, +48 SS.
exc_common:
    mov [x_rcx], rcx
    mov [x_r11], r11
    inc dword [nesting]
    cmp dword [nesting], 16
    jb .ok
    EXIT 0x0c
.ok:
    mov rsi, s_x_vec
    mov rax, [rsp]
    call print_kv
    mov rsi, s_x_err
    mov rax, [rsp + 8]
    call print_kv
    mov rsi, s_x_rip
    mov rax, [rsp + 16]
    call print_kv
    mov rsi, s_x_cs
    mov rax, [rsp + 24]
    call print_kv
    mov rsi, s_x_rflags
    mov rax, [rsp + 32]
    call print_kv
    mov rsi, s_x_rsp
    mov rax, [rsp + 40]
    call print_kv
    mov rsi, s_x_ss
    mov rax, [rsp + 48]
    call print_kv
    mov rsi, s_x_cr2
    mov rax, cr2
    call print_kv
    mov rsi, s_x_rcx
    mov rax, [x_rcx]
    call print_kv
    mov rsi, s_x_r11
    mov rax, [x_r11]
    call print_kv
    mov rsi, s_x_incs
    mov ax, cs
    movzx eax, ax
    call print_kv
    mov rsp, KSTACK
    dec dword [nesting]
    jmp [resume]

; ---- output ------------------------------------------------------------------
%define GATE_CS KCODE
%include "lib64.inc"
%include "gate64.inc"


; print_kv_msr: "<RSI><[probe_msr] in hex> <RAX>"
print_kv_msr:
    push rax
    call puts64
    mov eax, [probe_msr]
    call puthex32_64
    mov al, ' '
    call putc64
    pop rax
    call puthex64
    jmp crlf

; print_kv: "<RSI> <RAX as 16 hex digits>\r\n"; preserves all registers.
print_kv:
    call puts64
    push rax
    mov al, ' '
    call putc64
    pop rax
    call puthex64
crlf:
    push rax
    mov al, 13
    call putc64
    mov al, 10
    call putc64
    pop rax
    ret


align 8
stub_table:
%assign i 0
%rep 32
    dq stub%[i]
%assign i i+1
%endrep

align 16
gdt:
    dq 0
    dq 0x00cf9a000000ffff       ; 0x08: kernel code, 32-bit (unused)
    dq 0x00209a0000000000       ; 0x10: kernel code, 64-bit
    dq 0x00cf92000000ffff       ; 0x18: kernel data
    dq 0x00cffa000000ffff       ; 0x20: user code, 32-bit (STAR's SYSRET base)
    dq 0x00cff2000000ffff       ; 0x28: user data
    dq 0x0020fa0000000000       ; 0x30: user code, 64-bit
    dq 0                        ; 0x38
    dq 0, 0                     ; 0x40: TSS (filled in)
gdtr:
    dw gdtr - gdt - 1
    dd gdt
idtr:
    dw 256 * 16 - 1
    dq idt
resume: dq 0
u_back: dq 0
u_cs: dq 0
u_rflags: dq 0
lstar_value: dq 0
sc_rcx: dq 0
sc_r11: dq 0
sc_rax: dq 0
sc_rflags: dq 0
sc_cs: dq 0
x_rcx: dq 0
x_r11: dq 0
nesting: dd 0
probe_msr: dd 0

s_pvm_msr: db "pvm_msr.", 0
s_fmask: db "fmask", 0
s_ret1: db "user.ret1", 0
s_ret2: db "user.ret2", 0
s_lstar: db "lstar", 0
s_var_user: db "variant lstar_user_page", 13, 10, 0
s_var_super: db "variant lstar_supervisor_page", 13, 10, 0
s_var_int80: db "variant int80", 13, 10, 0
s_var_nosce: db "variant nosce", 13, 10, 0
s_user_back: db "user.back", 0
s_user_cs: db "user.cs", 0
s_user_rflags: db "user.rflags", 0
s_sc_ok: db "SYSCALL-OK", 13, 10, 0
s_sc_cs: db "syscall.cs", 0
s_sc_ss: db "syscall.ss", 0
s_sc_rax: db "syscall.rax", 0
s_sc_rcx: db "syscall.rcx", 0
s_sc_r11: db "syscall.r11", 0
s_sc_rflags: db "syscall.rflags", 0
s_sc_rip: db "syscall.rip", 0
s_sc_gs: db "syscall.gsbase", 0
s_sc_kgs: db "syscall.kernelgsbase", 0
s_x_vec: db "exc.vector", 0
s_x_err: db "exc.error", 0
s_x_rip: db "exc.rip", 0
s_x_cs: db "exc.cs", 0
s_x_rflags: db "exc.rflags", 0
s_x_rsp: db "exc.rsp", 0
s_x_ss: db "exc.ss", 0
s_x_cr2: db "exc.cr2", 0
s_x_rcx: db "exc.rcx", 0
s_x_r11: db "exc.r11", 0
s_x_incs: db "exc.handler_cs", 0
s_done: db "done", 13, 10, 0

align 16
tss: times 0x68 db 0
align 16
idt: times 256 * 16 db 0
