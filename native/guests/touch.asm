; Touches guest RAM for the save/restore bench (bench/state): fills TOUCH_MIB
; MiB from 16 MiB up with a non-zero pattern (so a state file cannot leave those
; pages out), prints "touched" on COM1 and halts with interrupts off. A machine
; saved then has TOUCH_MIB MiB of guest data besides what firmware left.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
%define TOUCH_MIB 100
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, 0x90000
    cld
    mov edi, 16 << 20
    mov ecx, (TOUCH_MIB << 20) / 4
    mov eax, 0x5a5aa5a5
    rep stosd
    mov esi, msg
    call puts
.hang:
    cli
    hlt
    jmp .hang
%include "lib.inc"
msg: db "touched", 13, 10, 0
