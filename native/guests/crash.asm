; Crashes on purpose: loads an empty IDT and executes UD2. On VT-x/AMD-V the
; #UD cannot be delivered, so the CPU triple-faults (KVM_EXIT_SHUTDOWN); on a
; kvm_pvm host the emulator reports KVM_EXIT_INTERNAL_ERROR. Either way the
; VMM must stop this VM with a reason and RIP, and keep running.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, 0x90000
    mov esi, msg
    call puts
    lidt [null_idt]
crash_here:
    ud2
%include "lib.inc"
msg: db "about to crash", 13, 10, 0
null_idt:
    dw 0
    dd 0
