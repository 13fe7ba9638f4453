; A flat real-mode binary loaded at 0x7c00: prints "halting" on COM1, then
; halts with interrupts off (cli; hlt). Nothing on a PC wakes it but an NMI,
; INIT or reset; if it ever runs past the HLT it prints "woken".
; kvm_halt_watch_test checks that the halt watch leaves such a vCPU halted.
bits 16
org 0x7c00
%include "lib16.inc"
    BOOT16_ENTRY
    mov si, halting
    call puts
    cli
    hlt
    mov si, woken
    call puts
.stop:
    jmp .stop
halting: db "halting", 13, 10, 0
woken: db "woken", 13, 10, 0
    LIB16_SERIAL
