; Prints a greeting on COM1 and exits through the isa-debug-exit port with
; value 0x21 (the VMM's exit status is then 0x43 = 67).
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, 0x90000
    mov esi, msg
    call puts
    EXIT 0x21
%include "lib.inc"
msg: db "Hello from a Vireo test guest", 13, 10, 0
