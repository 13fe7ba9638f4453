; A flat real-mode binary loaded at 0x7c00 that runs with interrupts off and
; never halts: a '.' on COM1 after every 16,384 turns of a loop, for ever.
; kvm_halt_watch_test puts its vCPU in KVM's halted state where it stands (as
; kvm_pvm's single-step hazard does) and checks that the dots go on.
bits 16
org 0x7c00
%include "lib16.inc"
    BOOT16_ENTRY
.outer:
    mov cx, 0x4000
.inner:
    dec cx
    jnz .inner
    mov al, '.'
    call putc
    jmp .outer
    LIB16_SERIAL
