; Vireo's kernel-boot option ROM. On the PC board a kernel given with
; --kernel is booted the way QEMU's -kernel does: SeaBIOS runs its POST as
; for any boot, finds this ROM in fw_cfg (genroms/vireo-kboot.bin, first in
; "bootorder") and calls its boot entry (BEV). The ROM then
;   1. collects the firmware's memory map with INT 15h AX=E820h into the
;      parameter block at PARAMS (linear; DS = 0),
;   2. writes PARAMS to Vireo's kernel-boot port: Vireo's loaders (boot.cc)
;      place the kernel, initrd, command line and boot data in the RAM that
;      map says is free and write the entry state back into the block,
;   3. enters the kernel: real mode (a Linux bzImage's 16-bit setup code) or
;      flat 32-bit protected mode (multiboot, PVH) with the registers the
;      block names.
; No register of the vCPU is changed from outside; no `sti; hlt` wait.
; Vireo pads the image to 512 bytes and fixes the size byte and checksums
; (machine/kernel_boot.cc: finish_option_rom).
;
; Parameter block (layout.h kKernelBootParams), little-endian:
;   in  +0  u32 magic 'VKB1'       +4 u32 number of E820 entries
;       +0x40 E820 entries, 20 bytes each (addr u64, size u64, type u32)
;   out +0  u32 mode: 1 real mode, 2 protected mode 32-bit, else failed
;       real: +4 u16 CS, +6 u16 IP, +8 u16 DS=ES=FS=GS=SS, +0xa u16 SP
;       prot: +4 u32 EIP, +8 EAX, +0xc EBX, +0x10 ESI, +0x14 ESP,
;             +0x20 GDTR (u16 limit, u32 base; Vireo's flat GDT: code 0x10, data 0x18)
;   ROM scratch: +0x18 far pointer (u32 offset, u16 selector) for the mode switch
bits 16
org 0

PARAMS      equ 0x8000
PORT        equ 0x5f0
MAX_E820    equ 128
SMAP        equ 0x534d4150

rom:
    dw 0xaa55
    db 1                    ; size in 512-byte blocks (Vireo sets it)
    jmp init                ; init vector (offset 3)
    times 0x18 - ($ - $$) db 0
    dw 0                    ; PCI data structure: none
    dw pnp                  ; PnP expansion header

    align 16
pnp:
    db '$PnP'
    db 1                    ; revision
    db 2                    ; length, 16-byte units
    dw 0                    ; next header
    db 0                    ; reserved
    db 0                    ; checksum (Vireo sets it)
    dd 0                    ; device id
    dw manufacturer
    dw product
    db 0, 0, 0              ; device type
    db 0x04                 ; indicators: IPL device
    dw 0                    ; boot connection vector
    dw 0                    ; disconnect vector
    dw bev                  ; bootstrap entry vector
    dw 0
    dw 0                    ; static resource information

init:
    retf

bev:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    ; 1. E820 map into PARAMS+0x40
    mov di, PARAMS + 0x40
    xor ebx, ebx
    xor si, si              ; entries so far
.e820:
    mov eax, 0xe820
    mov edx, SMAP
    mov ecx, 20
    mov dword [es:di + 16], 1   ; type, for BIOSes that return fewer than 20 bytes
    int 0x15
    jc .e820_done
    cmp eax, SMAP
    jne .e820_done
    inc si
    add di, 20
    cmp si, MAX_E820
    jae .e820_done
    test ebx, ebx
    jnz .e820
.e820_done:
    cli
    xor ax, ax
    mov ds, ax
    mov dword [PARAMS], 'VKB1'
    movzx eax, si
    mov [PARAMS + 4], eax
    ; 2. Vireo loads the kernel
    mov dx, PORT
    mov eax, PARAMS
    out dx, eax
    ; 3. enter it
    mov eax, [PARAMS]
    cmp eax, 1
    je .real
    cmp eax, 2
    je .prot
.failed:                    ; Vireo has stopped the machine with the reason
    cli
    hlt
    jmp .failed

.real:
    mov bx, [PARAMS + 8]    ; data and stack segment
    mov cx, [PARAMS + 0xa]  ; SP
    mov bp, [PARAMS + 4]    ; CS
    mov si, [PARAMS + 6]    ; IP
    mov ds, bx
    mov es, bx
    mov fs, bx
    mov gs, bx
    mov ss, bx
    mov sp, cx
    push bp
    push si
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    xor edi, edi
    xor ebp, ebp
    retf

.prot:
    in al, 0x92             ; A20 on (fast A20 gate)
    or al, 2
    and al, 0xfe
    out 0x92, al
    xor eax, eax
    mov ax, cs
    shl eax, 4
    add eax, pm32           ; linear address of pm32 (this ROM's CS base + offset)
    mov [PARAMS + 0x18], eax
    mov word [PARAMS + 0x1c], 0x10
    o32 lgdt [PARAMS + 0x20]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp dword far [PARAMS + 0x18]

bits 32
pm32:
    mov ax, 0x18
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, [PARAMS + 0x14]
    mov eax, [PARAMS + 8]
    mov ebx, [PARAMS + 0xc]
    mov esi, [PARAMS + 0x10]
    xor ecx, ecx
    xor edx, edx
    xor edi, edi
    xor ebp, ebp
    jmp [PARAMS + 4]

manufacturer: db "Vireo", 0
product:      db "Vireo kernel boot", 0
