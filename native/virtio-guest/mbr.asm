; A boot sector for the virtio-blk boot test. SeaBIOS loads it from the
; virtio-blk disk at 0:7c00 with DL = the drive. It prints a marker on COM1,
; then reads LBA 1 and LBA 2048 through INT 13h AH=42h (SeaBIOS's virtio-blk
; driver does the I/O), prints the strings found there, and exits through
; the isa-debug-exit port: 0x31 on success, 0x35 when a read fails.
bits 16
org 0x7c00
%define COM1 0x3f8

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov [drive], dl
    mov si, hello
    call puts

    mov word [dap.lba], 1
    mov word [dap.buf], 0x8000
    call read
    mov si, 0x8000
    call puts

    mov word [dap.lba], 2048
    mov word [dap.buf], 0x9000
    call read
    mov si, 0x9000
    call puts

    mov al, 0x31
    out 0xf4, al
.hang:
    cli
    hlt
    jmp .hang

; INT 13h extended read of one sector described by dap.
read:
    mov si, dap
    mov dl, [drive]
    mov ah, 0x42
    int 0x13
    jc .fail
    ret
.fail:
    mov si, failed
    call puts
    mov al, 0x35
    out 0xf4, al
    jmp start.hang

; Print the NUL-terminated string at DS:SI on COM1.
puts:
    lodsb
    test al, al
    jz .done
    mov ah, al
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov al, ah
    mov dx, COM1
    out dx, al
    jmp puts
.done:
    ret

hello:  db "VIREO-VIRTIO-MBR booted", 13, 10, 0
failed: db "INT13 read failed", 13, 10, 0
drive:  db 0
align 4
dap:    db 16, 0
        dw 1            ; sectors
.buf:   dw 0x8000, 0    ; offset, segment
.lba:   dq 0

times 510 - ($ - $$) db 0
dw 0xaa55

; LBA 1.
sector1: db "sector 1 read through virtio-blk", 13, 10, 0
times 1024 - ($ - $$) db 0
