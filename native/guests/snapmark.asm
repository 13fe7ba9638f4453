; A boot sector (SeaBIOS loads it from its hard disk) for tests of a snapshot
; with RAM followed by a revert, seen from inside the guest. It writes a
; marker to its disk's sector 1 through int 13h, then obeys COM1:
;   'w'  write the next marker (A, B, C...) to sector 1
;   'r'  read sector 1 back and say which marker it holds
; Each operation has a number (0 for the first write at boot), kept in RAM:
;   "#00 wrote A"
;   "#01 read A (last wrote A)"
; so a guest restored from a snapshot's RAM goes on with the snapshot's
; numbers and its memory of the last marker written, and says what its disk
; holds now. A read of a sector that is not one whole marker says '?'.
;
; Sector 1: the dword 'VSM1', then 508 bytes of the marker letter.
; Waits for COM1 input with HLT between polls (the BIOS timer wakes it).
; Errors: "snapmark: disk error XX" (AH of the BIOS call) and isa-debug-exit
; (port 0xf4) with 0x21.
bits 16
org 0x7c00
%include "lib16.inc"

BUF     equ 0x8000               ; one sector

BOOT16_ENTRY
    sti
    cld
    mov [drive], dl
    mov al, 'A'
    call write_mark

.cmd:
    mov dx, 0x3fd
    in al, dx
    test al, 1                   ; LSR.DR
    jnz .byte
    hlt
    jmp .cmd
.byte:
    mov dx, 0x3f8
    in al, dx
    cmp al, 'r'
    je .read
    cmp al, 'w'
    jne .cmd
    inc byte [ops]
    mov al, [mark]
    inc al
    call write_mark
    jmp .cmd

.read:
    inc byte [ops]
    call op_no
    mov ah, 0x42
    call disk_io
    mov bl, '?'
    cmp dword [BUF], 'VSM1'
    jne .show
    mov si, BUF + 4
    mov bh, [si]
    mov cx, 508
.same:
    lodsb
    cmp al, bh
    jne .show
    loop .same
    mov bl, bh
.show:
    mov si, msg_read
    call puts
    mov al, bl
    call putc
    mov si, msg_last
    call puts
    mov al, [mark]
    call putc
    mov si, msg_close
    call puts
    jmp .cmd

; AL = the marker: sector 1 gets it, then "#NN wrote X".
write_mark:
    mov [mark], al
    mov di, BUF
    mov dword [di], 'VSM1'
    add di, 4
    mov cx, 508
    rep stosb
    mov ah, 0x43
    call disk_io
    call op_no
    mov si, msg_wrote
    call puts
    mov al, [mark]
    call putc
    mov si, msg_nl
    call puts
    ret

; AH = 0x42 (read) or 0x43 (write) of sector 1 to/from BUF.
disk_io:
    xor al, al                   ; write: no verify
    mov si, dap
    mov dl, [drive]
    int 0x13
    jc .error
    ret
.error:
    mov bl, ah
    mov si, msg_err
    call puts
    mov al, bl
    call puthex8
    mov si, msg_nl
    call puts
    mov al, 0x21
    out 0xf4, al
.halt:
    hlt
    jmp .halt

; "#NN " with NN = [ops] in decimal (0..99).
op_no:
    mov al, '#'
    call putc
    mov al, [ops]
    aam                          ; AH = tens, AL = units
    push ax
    mov al, ah
    add al, '0'
    call putc
    pop ax
    add al, '0'
    call putc
    mov al, ' '
    call putc
    ret

puthex8:
    push ax
    shr al, 4
    call .digit
    pop ax
.digit:
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '0' - 10
.out:
    jmp putc

LIB16_SERIAL

msg_wrote: db 'wrote ', 0
msg_read:  db 'read ', 0
msg_last:  db ' (last wrote ', 0
msg_close: db ')'
msg_nl:    db 13, 10, 0
msg_err:   db 'snapmark: disk error ', 0

mark:   db 0
ops:    db 0
drive:  db 0
align 4
dap:
    db 16, 0
    dw 1                         ; sectors
    dw BUF, 0                    ; buffer offset, segment
    dq 1                         ; LBA

times 510 - ($ - $$) db 0
    dw 0xaa55
