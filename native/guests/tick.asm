; The local APIC timer in TSC-deadline mode, as Linux runs its tick: x2APIC,
; LVT timer vector 0x40 in TSC-deadline mode, and each interrupt's handler
; arms the next deadline a little after now (rdtsc + 1000), TICKS times, in
; 64-bit long mode with interrupts taken through the IDT (sti; hlt).
; Reports on COM1 "ticks N" (interrupts taken) and "mingap G" (the smallest
; TSC distance between two interrupts, high bits clipped to 32) and exits 0x0b.
; The host test (kvm_tick_pacer_test.cc) runs it with and without Vireo's
; timer pacer (machine/tick_pacer.h).
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
TICKS       equ 20
VEC_TIMER   equ 0x40
MSR_APICBASE equ 0x1b
MSR_DEADLINE equ 0x6e0
MSR_X2_EOI  equ 0x80b
MSR_X2_SVR  equ 0x80f
MSR_X2_LVTT equ 0x832
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
    mov rax, timer_handler
    mov edi, VEC_TIMER
    call set_intr_gate
    lidt [idtr]
    mov al, 0xff                 ; both 8259s masked: only the LAPIC timer interrupts
    out 0x21, al
    out 0xa1, al

    mov ecx, MSR_APICBASE        ; x2APIC on (xAPIC enable + EXTD)
    rdmsr
    or eax, (1 << 11) | (1 << 10)
    wrmsr
    mov ecx, MSR_X2_SVR          ; software enable, spurious vector 0xff
    mov eax, 0x1ff
    xor edx, edx
    wrmsr
    mov ecx, MSR_X2_LVTT         ; TSC-deadline mode (bits 18:17 = 10), unmasked
    mov eax, VEC_TIMER | (2 << 17)
    wrmsr
    mov qword [mingap], -1
    call arm
.wait:
    sti
    hlt
    cli
    cmp dword [ticks], TICKS
    jb .wait

    mov rsi, s_ticks
    mov eax, [ticks]
    call report32
    mov rsi, s_mingap
    mov rax, [mingap]
    mov rdx, 0xffffffff
    cmp rax, rdx
    cmova rax, rdx
    call report32
    EXIT 0x0b

; arm: the deadline 1000 TSC cycles from now.
arm:
    rdtsc
    shl rdx, 32
    or rax, rdx
    add rax, 1000
    mov rdx, rax
    shr rdx, 32
    mov ecx, MSR_DEADLINE
    wrmsr
    ret

timer_handler:
    push rax
    push rcx
    push rdx
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rcx, [last]
    mov [last], rax
    test rcx, rcx
    jz .first
    sub rax, rcx
    cmp rax, [mingap]
    jae .first
    mov [mingap], rax
.first:
    inc dword [ticks]
    mov ecx, MSR_X2_EOI
    xor eax, eax
    xor edx, edx
    wrmsr
    cmp dword [ticks], TICKS
    jae .done
    call arm
.done:
    pop rdx
    pop rcx
    pop rax
    iretq

%include "lib64.inc"
%include "gate64.inc"

FLAT64_TABLES
last: dq 0
mingap: dq 0
ticks: dd 0
s_ticks: db "ticks", 0
s_mingap: db "mingap", 0
