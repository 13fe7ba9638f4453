; Vireo test ISO: an El Torito no-emulation boot image (16-bit real mode) that
; pokes the PC the way an OS installer would, through the BIOS and the hardware,
; and reports everything on COM1 for native/tests/kvm_testiso_test.cc.
;
; Serial protocol (lines end in CR LF, hex digits lower case):
;   vireo-testiso start
;   --- first boot (LBA 1 of hard disk 0x80 does not hold the marker) ---
;   vbe mode MMMM lfb AAAAAAAA pitch PPPP   the 640x480x32 mode found via 4F00/4F01
;   vbe ok                                  pattern drawn (see below)
;   keys ready
;   key AA SS                               one per key (int 16h AH=00: ASCII, scancode)
;                                           until Enter (scancode 1c)
;   mouse ready                             int 15h C205/C207/C200 done
;   mouse SS XX YY                          one per packet (status, X, Y bytes) for 3 packets
;   disk written                            int 13h AH=43h wrote LBA 1 of drive 0x80
;   resetting                               then 0xFE to port 0x64 (keyboard controller reset)
;   --- boot after the reset (marker found) ---
;   second boot
;   disk readback ok | disk readback BAD    all 512 bytes compared
;   then the value 0x10 (ok) / 0x11 (BAD) is written to the debug-exit port 0xf4.
; Errors print "error: <what>" and exit through port 0xf4 with 0x20 + n.
;
; Screen pattern (640x480, 32 bpp, pixel dword 0x00RRGGBB): eight vertical bars
; 80 pixels wide, left to right black 000000, blue 0000ff, green 00ff00, cyan
; 00ffff, red ff0000, magenta ff00ff, yellow ffff00, white ffffff; over them a
; diagonal line of colour 804020 at pixels (i, i) for i = 0..479.
;
; Sector written to LBA 1: byte i = (i*7 + 3) & 0xff for i = 0..511, except
; bytes 0..15 which hold the marker "VIREO-TESTISO-01".

bits 16
org 0x7c00

COM1        equ 0x3f8
EXIT_PORT   equ 0xf4
READBUF     equ 0x9000      ; 512 bytes: sector read from the disk
PATTBUF     equ 0x9200      ; 512 bytes: the expected sector
VBEINFO     equ 0x9400      ; 512 bytes: VbeInfoBlock
MODEINFO    equ 0x9600      ; 256 bytes: ModeInfoBlock
MOUSE_PACKETS equ 3

start:
    jmp 0:entry             ; the BIOS may enter at 07c0:0000; use 0000:7cxx
entry:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    cld
    mov [boot_drive], dl

    mov si, msg_start
    call puts

    ; build the expected sector
    mov di, PATTBUF
    xor cx, cx
.fill:
    mov ax, cx
    mov bl, 7
    mul bl
    add al, 3
    stosb
    inc cx
    cmp cx, 512
    jb .fill
    mov si, marker
    mov di, PATTBUF
    mov cx, 16
    rep movsb

    ; int 13h extensions on the first hard disk?
    mov ah, 0x41
    mov bx, 0x55aa
    mov dl, 0x80
    int 0x13
    jc err_noext
    cmp bx, 0xaa55
    jne err_noext

    ; read LBA 1
    mov word [dap_buf], READBUF
    mov ah, 0x42
    mov dl, 0x80
    mov si, dap
    int 0x13
    jc err_read

    mov si, READBUF
    mov di, marker
    mov cx, 16
    repe cmpsb
    jne first_boot

; ---------------------------------------------------------------- second boot
    mov si, msg_second
    call puts
    mov si, READBUF
    mov di, PATTBUF
    mov cx, 512
    repe cmpsb
    jne .bad
    mov si, msg_readback_ok
    call puts
    mov al, 0x10
    jmp exit
.bad:
    mov si, msg_readback_bad
    call puts
    mov al, 0x11
    jmp exit

; ---------------------------------------------------------------- first boot
first_boot:
    ; --- VBE: find 640x480x32 with a linear framebuffer
    mov di, VBEINFO
    mov dword [di], 'VBE2'
    mov ax, 0x4f00
    int 0x10
    cmp ax, 0x004f
    jne err_vbe
    lfs si, [VBEINFO + 14]  ; VideoModePtr
.next_mode:
    mov cx, [fs:si]
    add si, 2
    cmp cx, 0xffff
    je err_nomode
    push si
    push fs
    mov [vbe_mode], cx
    mov di, MODEINFO
    mov ax, 0x4f01
    int 0x10
    pop fs
    pop si
    cmp ax, 0x004f
    jne .next_mode
    mov ax, [MODEINFO + 0x00]           ; ModeAttributes: supported + LFB
    and ax, 0x0081
    cmp ax, 0x0081
    jne .next_mode
    cmp word [MODEINFO + 0x12], 640
    jne .next_mode
    cmp word [MODEINFO + 0x14], 480
    jne .next_mode
    cmp byte [MODEINFO + 0x19], 32
    jne .next_mode
    mov eax, [MODEINFO + 0x28]          ; PhysBasePtr
    mov [lfb], eax
    mov ax, [MODEINFO + 0x10]           ; BytesPerScanLine
    mov [pitch], ax

    mov si, msg_vbe_mode
    call puts
    mov ax, [vbe_mode]
    call puthex16
    mov si, msg_lfb
    call puts
    mov eax, [lfb]
    call puthex32
    mov si, msg_pitch
    call puts
    mov ax, [pitch]
    call puthex16
    call crlf

    mov bx, [vbe_mode]
    or bx, 0xc000                       ; LFB, keep memory (we draw every pixel)
    mov ax, 0x4f02
    int 0x10
    cmp ax, 0x004f
    jne err_setmode

    call draw
    mov si, msg_vbe_ok
    call puts

    ; --- keyboard through int 16h until Enter
    mov si, msg_keys
    call puts
.key:
    xor ah, ah
    int 0x16
    push ax
    mov si, msg_key
    call puts
    call puthex8                        ; ASCII
    mov al, ' '
    call putc
    mov al, ah
    call puthex8                        ; scancode
    call crlf
    pop ax
    cmp ah, 0x1c
    jne .key

    ; --- PS/2 mouse through int 15h C2xx with a far callback
    mov ax, 0xc205                      ; initialise, 3-byte packets
    mov bh, 3
    int 0x15
    jc err_mouse
    push cs
    pop es
    mov bx, mouse_handler
    mov ax, 0xc207                      ; set the handler (ES:BX)
    int 0x15
    jc err_mouse
    xor ax, ax
    mov es, ax
    mov ax, 0xc200                      ; enable
    mov bh, 1
    int 0x15
    jc err_mouse
    mov si, msg_mouse_ready
    call puts
    xor bp, bp                          ; packets printed
.mwait:
    cli
    mov al, [mq_head]
    cmp al, [mq_tail]
    jne .mpacket
    sti
    hlt                                 ; sti's shadow covers hlt: no lost wake-up
    jmp .mwait
.mpacket:
    sti
    movzx bx, byte [mq_tail]
    and bx, 7
    shl bx, 2
    mov si, msg_mouse
    call puts
    mov al, [mq + bx]
    call puthex8
    mov al, ' '
    call putc
    mov al, [mq + bx + 1]
    call puthex8
    mov al, ' '
    call putc
    mov al, [mq + bx + 2]
    call puthex8
    call crlf
    inc byte [mq_tail]
    inc bp
    cmp bp, MOUSE_PACKETS
    jb .mwait
    mov ax, 0xc200                      ; disable
    xor bh, bh
    int 0x15

    ; --- write the sector
    mov word [dap_buf], PATTBUF
    mov ax, 0x4300
    mov dl, 0x80
    mov si, dap
    int 0x13
    jc err_write
    mov si, msg_written
    call puts

    ; --- reset through the keyboard controller
    mov si, msg_resetting
    call puts
.kbc:
    in al, 0x64
    test al, 2
    jnz .kbc
    mov al, 0xfe
    out 0x64, al
    cli
.hang:
    hlt
    jmp .hang

; Mouse callback (int 15h C207): far-called with status, X, Y, 0 pushed in
; that order; interrupts on. Queues the packet for the main loop.
mouse_handler:
    push bp
    mov bp, sp
    push ax
    push bx
    push ds
    xor ax, ax
    mov ds, ax
    movzx bx, byte [mq_head]
    and bx, 7
    shl bx, 2
    mov al, [bp + 12]                   ; status
    mov [mq + bx], al
    mov al, [bp + 10]                   ; X
    mov [mq + bx + 1], al
    mov al, [bp + 8]                    ; Y
    mov [mq + bx + 2], al
    inc byte [mq_head]
    pop ds
    pop bx
    pop ax
    pop bp
    retf

; Draws the pattern through the LFB in big real mode: ES gets a 4 GiB limit
; from a protected-mode descriptor and keeps it back in real mode.
draw:
    pushf
    pushad
    cli                                 ; no BIOS interrupt code may reload ES meanwhile
    lgdt [gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    mov bx, 0x08
    mov es, bx
    and al, 0xfe
    mov cr0, eax
    xor bx, bx
    mov es, bx                          ; base 0, limit stays 4 GiB

    mov edi, [lfb]
    movzx edx, word [pitch]
    sub edx, 640 * 4                    ; bytes to skip at the end of a line
    mov bp, 480
.row:
    xor si, si
.bar:
    mov eax, [bars + si]
    mov ecx, 80
    a32 rep stosd
    add si, 4
    cmp si, 32
    jb .bar
    add edi, edx
    dec bp
    jnz .row

    ; diagonal: (i, i) for i = 0..479
    mov edi, [lfb]
    movzx edx, word [pitch]
    add edx, 4
    mov eax, 0x00804020
    mov cx, 480
.diag:
    mov [es:edi], eax
    add edi, edx
    loop .diag

    xor ax, ax
    mov es, ax
    popad
    popf
    ret

; ---------------------------------------------------------------- errors/exit
err_noext:   mov si, msg_e_noext
             mov bl, 0x21
             jmp error
err_read:    mov si, msg_e_read
             mov bl, 0x22
             jmp error
err_vbe:     mov si, msg_e_vbe
             mov bl, 0x23
             jmp error
err_nomode:  mov si, msg_e_nomode
             mov bl, 0x24
             jmp error
err_setmode: mov si, msg_e_setmode
             mov bl, 0x25
             jmp error
err_mouse:   mov si, msg_e_mouse
             mov bl, 0x26
             jmp error
err_write:   mov si, msg_e_write
             mov bl, 0x27
error:
    push si
    mov si, msg_error
    call puts
    pop si
    call puts
    mov al, bl
exit:
    out EXIT_PORT, al
    cli
.hang:
    hlt
    jmp .hang

; ---------------------------------------------------------------- serial
putc:                                   ; AL
    push dx
    push ax
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20                       ; THR empty
    jz .wait
    pop ax
    mov dx, COM1
    out dx, al
    pop dx
    ret

puts:                                   ; DS:SI, NUL-terminated
    push ax
.loop:
    lodsb
    test al, al
    jz .done
    call putc
    jmp .loop
.done:
    pop ax
    ret

crlf:
    push ax
    mov al, 13
    call putc
    mov al, 10
    call putc
    pop ax
    ret

puthex8:                                ; AL
    push ax
    shr al, 4
    call .nib
    pop ax
    push ax
    and al, 0x0f
    call .nib
    pop ax
    ret
.nib:
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '0' - 10
.out:
    jmp putc

puthex16:                               ; AX
    xchg al, ah
    call puthex8
    xchg al, ah
    jmp puthex8

puthex32:                               ; EAX
    ror eax, 16
    call puthex16
    ror eax, 16
    jmp puthex16

; ---------------------------------------------------------------- data
align 8
gdt:
    dq 0
    dq 0x00cf92000000ffff               ; flat 4 GiB data, read/write
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt

bars:
    dd 0x000000, 0x0000ff, 0x00ff00, 0x00ffff, 0xff0000, 0xff00ff, 0xffff00, 0xffffff

dap:
    db 0x10, 0
    dw 1                                ; sectors
dap_buf:
    dw 0, 0                             ; offset, segment
    dq 1                                ; LBA

boot_drive: db 0
vbe_mode:   dw 0
pitch:      dw 0
lfb:        dd 0
mq_head:    db 0
mq_tail:    db 0
mq:         times 8 * 4 db 0

marker:            db "VIREO-TESTISO-01"
msg_start:         db "vireo-testiso start", 13, 10, 0
msg_second:        db "second boot", 13, 10, 0
msg_readback_ok:   db "disk readback ok", 13, 10, 0
msg_readback_bad:  db "disk readback BAD", 13, 10, 0
msg_vbe_mode:      db "vbe mode ", 0
msg_lfb:           db " lfb ", 0
msg_pitch:         db " pitch ", 0
msg_vbe_ok:        db "vbe ok", 13, 10, 0
msg_keys:          db "keys ready", 13, 10, 0
msg_key:           db "key ", 0
msg_mouse_ready:   db "mouse ready", 13, 10, 0
msg_mouse:         db "mouse ", 0
msg_written:       db "disk written", 13, 10, 0
msg_resetting:     db "resetting", 13, 10, 0
msg_error:         db "error: ", 0
msg_e_noext:       db "no int 13h extensions on drive 80", 13, 10, 0
msg_e_read:        db "disk read failed", 13, 10, 0
msg_e_vbe:         db "VBE 4F00 failed", 13, 10, 0
msg_e_nomode:      db "no 640x480x32 LFB mode", 13, 10, 0
msg_e_setmode:     db "VBE 4F02 failed", 13, 10, 0
msg_e_mouse:       db "int 15h C2 mouse services failed", 13, 10, 0
msg_e_write:       db "disk write failed", 13, 10, 0

; The boot image is loaded whole by the BIOS (-boot-load-size 4 = 2 KiB).
times 2048 - ($ - $$) db 0
