; A flat real-mode binary loaded at 0x7c00 (like a boot sector): prints on
; COM1 with 16-bit code and exits with 0x03 (status 7).
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov si, msg
.next:
    lodsb
    test al, al
    jz .done
    mov bl, al
    mov dx, 0x3fd
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov al, bl
    mov dx, 0x3f8
    out dx, al
    jmp .next
.done:
    mov al, 0x03
    out 0xf4, al
    hlt
msg: db "real mode flat binary ok", 13, 10, 0
