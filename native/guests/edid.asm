; A multiboot v1 kernel (a.out kludge) for the PC board that watches the
; display's EDID the way a driver that probes modes does: it finds the std-vga
; (PCI 1234:1111) on bus 0, takes its MMIO BAR (BAR2, EDID at offset 0), and
; prints
;     EDID <width>x<height>
; on COM1 at start and whenever the preferred timing (detailed timing 1, at
; EDID byte 54) names another size. e2e/display-size.spec.ts: the VM's
; preferred resolution and the console's "Resize guest with window" reach the
; guest. Prints "EDID no vga" and stops when there is no std-vga.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    cli
    mov esp, 0x90000
    xor ebx, ebx                        ; device number on bus 0
.scan:
    mov eax, ebx
    shl eax, 11
    or eax, 0x80000000                  ; vendor/device ID
    call pci_read
    cmp eax, 0x11111234
    je .found
    inc ebx
    cmp ebx, 32
    jb .scan
    mov esi, novga
    call puts
.stop:
    hlt
    jmp .stop
.found:
    mov eax, ebx
    shl eax, 11
    or eax, 0x80000018                  ; BAR2
    call pci_read
    and eax, 0xfffffff0
    mov edi, eax
    mov dword [last], 0xffffffff
.poll:
    ; Horizontal active: byte 56 low 8 bits, byte 58 high nibble; vertical: bytes 59 and 61.
    movzx eax, byte [edi + 58]
    shr eax, 4
    shl eax, 8
    mov al, [edi + 56]
    movzx edx, byte [edi + 61]
    shr edx, 4
    shl edx, 8
    mov dl, [edi + 59]
    mov ecx, eax
    shl ecx, 16
    or ecx, edx
    cmp ecx, [last]
    je .wait
    mov [last], ecx
    mov esi, prefix
    call puts
    call putdec
    mov al, 'x'
    call putc
    mov eax, edx
    call putdec
    mov al, 10
    call putc
.wait:
    ; A pause between probes: port 0x80 (POST code) writes, each one a trip to the VMM.
    mov ecx, 2000
.delay:
    out 0x80, al
    loop .delay
    jmp .poll

prefix: db "EDID ", 0
novga:  db "EDID no vga", 10, 0
align 4
last:   dd 0

%include "lib.inc"
