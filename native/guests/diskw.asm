; A boot sector (SeaBIOS loads it from its hard disk) that keeps writing its
; own disk, for tests of what a stop, a pause or a clone leaves in the image.
; Pass after pass it writes sectors 1..NSECT in one BIOS call (int 13h AH=43h)
; and, once the call returns, prints "pass XXXXXXXX" (hex) on COM1.
;
; Sector n (1..NSECT) of pass p: the dword 'VDW1', p, n, then 125 dwords of
; p << 16 | n. So a sector is whole or torn, every sector's pass is at least
; the last pass printed, and within the range passes only step down by one
; (one write in flight). Errors: "diskw: error XX" (AH of the BIOS call) and
; isa-debug-exit (port 0xf4) with 0x20.
bits 16
org 0x7c00
%include "lib16.inc"

NSECT   equ 64
BUFSEG  equ 0x1000               ; 0x10000: NSECT * 512 = 32 KiB

BOOT16_ENTRY
    sti
    cld
    mov [drive], dl
.pass:
    inc dword [pass]
    mov ax, BUFSEG
    mov es, ax
    xor di, di
    mov ebx, 1                   ; sector number
.sector:
    mov eax, 'VDW1'
    stosd
    mov eax, [pass]
    stosd
    mov eax, ebx
    stosd
    mov eax, [pass]
    shl eax, 16
    or eax, ebx
    mov cx, 125
    rep stosd
    inc ebx
    cmp ebx, NSECT
    jbe .sector

    mov si, dap
    mov ah, 0x43
    xor al, al                   ; no verify
    mov dl, [drive]
    int 0x13
    jc .error
    mov si, msg_pass
    call puts
    mov eax, [pass]
    call puthex
    mov si, msg_nl
    call puts
    jmp .pass

.error:
    mov al, ah
    push ax
    mov si, msg_err
    call puts
    pop ax
    movzx eax, al
    shl eax, 24
    mov cx, 2
    call puthex.digits
    mov si, msg_nl
    call puts
    mov al, 0x20
    out 0xf4, al
.halt:
    hlt
    jmp .halt

; EAX as 8 hex digits (puthex) or its top CX digits (puthex.digits).
puthex:
    mov cx, 8
.digits:
    rol eax, 4
    push eax
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '0' - 10
.out:
    call putc
    pop eax
    loop .digits
    ret

LIB16_SERIAL

msg_pass: db 'pass ', 0
msg_err:  db 'diskw: error ', 0
msg_nl:   db 13, 10, 0

align 4
pass:   dd 0
drive:  db 0
align 4
dap:
    db 16, 0
    dw NSECT
    dw 0, BUFSEG                 ; buffer offset, segment
    dq 1                         ; first LBA

times 510 - ($ - $$) db 0
    dw 0xaa55
