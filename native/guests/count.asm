; A flat real-mode binary loaded at 0x7c00 that counts on COM1: "1\r\n",
; "2\r\n", ... one number every 10 ticks of the PIT (100 Hz, IRQ 0 through
; the PIC), waiting in HLT between ticks. The count lives in RAM and the
; tick comes from the in-kernel PIT and PIC, so a saved and restored machine
; (machine/state.h) goes on from where it was.
bits 16
org 0x7c00
%include "lib16.inc"
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    mov word [8*4], tick        ; IRQ 0 -> vector 8
    mov word [8*4+2], 0
    mov al, 0x11                ; PIC: ICW1 edge, cascade, ICW4
    out 0x20, al
    out 0xa0, al
    mov al, 0x08                ; ICW2: master vectors 8..15
    out 0x21, al
    mov al, 0x70
    out 0xa1, al
    mov al, 4                   ; ICW3
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1                   ; ICW4: 8086 mode
    out 0x21, al
    out 0xa1, al
    mov al, 0xfe                ; only IRQ 0
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0x34                ; PIT channel 0, lo/hi, mode 2
    out 0x43, al
    mov ax, 11932               ; 1193182 / 100
    out 0x40, al
    mov al, ah
    out 0x40, al
    sti
.idle:
    hlt
    cmp byte [ticks], 10
    jb .idle
    mov byte [ticks], 0
    inc dword [count]
    mov eax, [count]
    call print_dec
    jmp .idle

tick:
    push ax
    inc byte [cs:ticks]
    mov al, 0x20                ; EOI
    out 0x20, al
    pop ax
    iret

; EAX in decimal, then CR LF, on COM1.
print_dec:
    xor cx, cx
    mov ebx, 10
.div:
    xor edx, edx
    div ebx
    push dx
    inc cx
    test eax, eax
    jnz .div
.out:
    pop ax
    add al, '0'
    call putc
    loop .out
    mov al, 13
    call putc
    mov al, 10
    call putc
    ret

LIB16_SERIAL

ticks: db 0
align 4
count: dd 0
