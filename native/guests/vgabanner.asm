; A multiboot v1 kernel (a.out kludge) for the PC board: writes a banner to
; the VGA text screen (0xb8000), asks the primary IDE master for its
; IDENTIFY data and writes the drive's model on the second line, then prints
; the same on COM1 with the boot magic, and halts (so the screen stays up for
; a screenshot). Proves a --kernel boot gets the firmware boot's display and
; disks. The drive's model goes to COM1 as "disk: <model>" or "disk: none".
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
%define VGA 0xb8000
%define ATTR 0x1f00                     ; white on blue
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    cli
    mov esp, 0x90000
    mov [magic], eax
    ; clear the screen
    mov edi, VGA
    mov ecx, 80 * 25
    mov ax, ATTR | ' '
    rep stosw
    mov esi, banner
    mov edi, VGA
    call vputs
    ; IDENTIFY on the primary master (polled, no interrupts)
    mov dx, 0x1f6
    mov al, 0xa0
    out dx, al
    mov dx, 0x1f7
    in al, dx
    cmp al, 0xff                        ; floating bus: no controller
    je .nodisk
    mov al, 0xec
    out dx, al
    mov ecx, 10000000
.poll:
    in al, dx
    test al, al
    jz .nodisk                          ; no drive
    test al, 0x01                       ; ERR
    jnz .nodisk
    test al, 0x80                       ; BSY
    jnz .next
    test al, 0x08                       ; DRQ
    jnz .read
.next:
    loop .poll
    jmp .nodisk
.read:
    mov edi, ident
    mov ecx, 256
    mov dx, 0x1f0
    rep insw
    ; model: words 27..46, each word's bytes swapped
    mov esi, ident + 54
    mov edi, model
    mov ecx, 20
.swap:
    lodsw
    xchg al, ah
    stosw
    loop .swap
    mov byte [edi], 0
    ; trim trailing spaces
.trim:
    dec edi
    cmp edi, model
    jb .shown
    cmp byte [edi], ' '
    jne .shown
    mov byte [edi], 0
    jmp .trim
.nodisk:
    mov esi, none
    mov edi, model
.cpy:
    lodsb
    stosb
    test al, al
    jnz .cpy
.shown:
    mov esi, disk_label
    mov edi, VGA + 160
    call vputs
    mov esi, model
    call vputs
    ; the same on COM1
    mov esi, banner
    call puts
    mov esi, crlf
    call puts
    mov esi, s_magic
    call puts
    mov eax, [magic]
    call puthex32
    mov esi, crlf
    call puts
    mov esi, disk_label
    call puts
    mov esi, model
    call puts
    mov esi, crlf
    call puts
.halt:
    cli
    hlt
    jmp .halt

; vputs: ESI = string, EDI = screen position; advances EDI.
vputs:
    push eax
.c:
    lodsb
    test al, al
    jz .d
    mov ah, ATTR >> 8
    stosw
    jmp .c
.d:
    pop eax
    ret

%include "lib.inc"
banner:     db "Vireo multiboot guest on the PC board", 0
disk_label: db "disk: ", 0
none:       db "none", 0
s_magic:    db "magic ", 0
crlf:       db 13, 10, 0
magic:      dd 0
model:      times 48 db 0
ident:      times 512 db 0
