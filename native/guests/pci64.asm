; A boot sector (SeaBIOS loads it from the IDE disk at 0x7c00) that uses the
; DSDT's 64-bit PCI window the way an OS that reassigns BARs would: it walks
; RSDP -> RSDT -> FADT -> DSDT to the QWordMemory descriptor of PCI0._CRS
; (8a 2b 00 00: the only one in Vireo's DSDT), finds a virtio function whose
; BAR4 is a 64-bit memory BAR, and moves that BAR to the window's first byte
; and then to its last 16 KiB, reading the virtio common config through it
; each time. Runs as 32-bit code in IA-32e compatibility mode (EFER.LME,
; 4-level paging with 2 MiB pages): 0-1 GiB and 2-4 GiB identity-mapped,
; 1-2 GiB (PD 0x12000) remapped to the high addresses. Not legacy PAE
; paging: with it (CR4.PAE, EFER.LME clear) this guest triple-faulted on a
; kvm_pvm host between entering protected mode and its first table read,
; while QEMU TCG ran it; with long-mode paging it runs on both.
; Interrupts stay off. QEMU 7.2 TCG gives the same results (0x4f at -m 5G).
;
; The boot sector loads the rest (3 sectors) with int 13h.
;
; Result through isa-debug-exit (port 0xf4):
;   0x40 | bits, bit 0  the BAR answers at the window's start (device
;                       feature word 1 has VIRTIO_F_VERSION_1)
;                bit 1  its firmware address no longer answers (device_feature_select,
;                       1 through the new address, reads otherwise there)
;                bit 2  it answers at the window's last 16 KiB
;                bit 3  RAM right below the window start keeps a pattern
;                       (the host checks that it is guest RAM)
;   1 no RSDP   2 no FADT/DSDT   3 no QWordMemory window   4 no virtio 64-bit BAR4
;   5 the BAR does not answer where SeaBIOS put it   6 int 13h failed
bits 16
org 0x7c00
%include "lib16.inc"

PML4        equ 0x15000
PDPT        equ 0x10000
PD0         equ 0x11000          ; four page directories, 0x11000-0x14fff
SCRATCH     equ 0x12000          ; PD of virtual 1-2 GiB, entries set by map
VIRT        equ 0x40000000
BAR4        equ 0x20
PATTERN     equ 0x34364943       ; "CI64"

SECTORS     equ 3                ; loaded after the boot sector, at 0x7e00

BOOT16_ENTRY
    sti
    mov ax, 0x0200 | SECTORS     ; int 13h AH=02h: read from the boot drive (DL)
    mov cx, 0x0002               ; cylinder 0, sector 2
    xor dh, dh                   ; head 0
    mov bx, 0x7e00
    int 0x13
    cli
    mov al, 6
    jc exit16
    lgdt [gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm

exit16:
    out 0xf4, al
    hlt

gdt:
    dq 0
    dq 0x00cf9a000000ffff        ; 0x08: code, base 0, limit 4 GiB
    dq 0x00cf92000000ffff        ; 0x10: data
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt

times 510 - ($ - $$) db 0
    dw 0xaa55

bits 32
pm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    ; Identity-map 4 GiB with 2 MiB pages, then PAE paging on.
    mov edi, PD0
    mov eax, 0x83                ; present, writable, 2 MiB
    mov ecx, 2048
.pd:
    mov [edi], eax
    and dword [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    loop .pd
    mov edi, PDPT
    mov eax, PD0 | 3
    mov cl, 4
.pdpt:
    mov [edi], eax
    and dword [edi + 4], 0
    add eax, 0x1000
    add edi, 8
    loop .pdpt
    mov dword [PML4], PDPT | 3
    mov eax, PML4
    mov cr3, eax
    mov eax, cr4
    or al, 0x20                  ; PAE
    mov cr4, eax
    mov ecx, 0xc0000080          ; EFER.LME: IA-32e paging, compatibility mode
    rdmsr
    or ah, 1
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax

    mov esi, 0xe0000             ; the RSDP, 16-byte aligned in 0xe0000-0xfffff
.scan:
    cmp dword [esi], 'RSD '
    jne .next
    cmp dword [esi + 4], 'PTR '
    je .rsdp
.next:
    add esi, 16
    cmp esi, 0x100000
    jb .scan
    mov al, 1
    jmp exit
.rsdp:
    mov ebx, [esi + 16]          ; RSDT
    mov edx, [ebx + 4]
    add edx, ebx
    add ebx, 36
.tables:
    mov al, 2
    cmp ebx, edx
    jae exit
    mov esi, [ebx]
    add ebx, 4
    cmp dword [esi], 'FACP'
    jne .tables
    mov esi, [esi + 40]          ; DSDT
    mov edx, [esi + 4]
    add edx, esi
.aml:
    mov al, 3
    cmp esi, edx
    jae exit
    inc esi
    cmp dword [esi], 0x00002b8a  ; QWord address space, length 0x2b, memory
    jne .aml
    mov eax, [esi + 14]          ; Range Minimum
    mov [win], eax
    mov eax, [esi + 18]
    mov [win + 4], eax
    mov eax, [esi + 22]          ; Range Maximum
    mov [top], eax
    mov eax, [esi + 26]
    mov [top + 4], eax

    ; A virtio function (vendor 0x1af4) on bus 0 with a 64-bit memory BAR4.
    mov ebx, 0x80000000 | BAR4
.func:
    mov al, 4
    cmp ebx, 0x80010000 | BAR4
    jae exit
    lea eax, [ebx - BAR4]
    call cfg_read
    cmp ax, 0x1af4
    jne .nextf
    mov eax, ebx
    call cfg_read
    and al, 0x6
    cmp al, 0x4
    je .found
.nextf:
    add ebx, 0x800               ; next slot
    jmp .func
.found:
    mov eax, ebx
    call cfg_read
    and al, 0xf0
    mov edi, eax                 ; where SeaBIOS put it (below 4 GiB)
    call features
    mov al, 5
    jz exit
    mov ebp, edi

    ; To the window's first byte.
    mov eax, [win]
    mov edx, [win + 4]
    xor ecx, ecx                 ; scratch page 0
    call move
    call features
    jz .start_done
    or byte [result], 1
.start_done:
    cmp dword [ebp], 1           ; the old address no longer holds the select just written
    je .old_done
    or byte [result], 2
.old_done:
    ; RAM's last 2 MiB page below the window (scratch page 1).
    mov eax, [win]
    mov edx, [win + 4]
    sub eax, 0x200000
    sbb edx, 0
    mov ecx, 1
    call map
    mov dword [esi], PATTERN
    cmp dword [esi], PATTERN
    jne .ram_done
    or byte [result], 8
.ram_done:
    ; To the window's last 16 KiB (scratch page 2).
    mov eax, [top]
    mov edx, [top + 4]
    sub eax, 0x3fff
    sbb edx, 0
    mov ecx, 2
    call move
    call features
    jz .top_done
    or byte [result], 4
.top_done:
    mov al, [result]
exit:
    out 0xf4, al
.halt:
    hlt
    jmp .halt

; EAX = config address (bit 31 set): EAX = the dword there.
cfg_read:
    mov dx, 0xcf8
    out dx, eax
    mov dl, 0xfc
    in eax, dx
    ret

; Moves BAR4 (config address EBX) to EDX:EAX and maps it at scratch page
; ECX: EDI = its virtual address.
move:
    push eax
    push edx
    mov esi, eax
    mov eax, ebx
    mov dx, 0xcf8
    out dx, eax
    mov dl, 0xfc
    mov eax, esi
    or al, 0xc                   ; 64-bit prefetchable: what the BAR's flag bits read
    out dx, eax
    lea eax, [ebx + 4]
    mov dl, 0xf8
    out dx, eax
    mov dl, 0xfc
    pop eax                      ; the high half
    out dx, eax
    mov edx, eax
    pop eax
    call map
    mov edi, esi
    ret

; Maps the 2 MiB page holding EDX:EAX at scratch page ECX (uncached);
; ESI = the virtual address of EDX:EAX.
map:
    mov esi, eax
    and esi, 0x1fffff
    and eax, ~0x1fffff
    or al, 0x9b                  ; present, writable, PWT, PCD, 2 MiB
    mov [SCRATCH + ecx * 8], eax
    mov [SCRATCH + ecx * 8 + 4], edx
    shl ecx, 21
    lea esi, [esi + ecx + VIRT]
    invlpg [esi]
    ret

; ZF clear when the virtio common config at EDI says VIRTIO_F_VERSION_1
; (device_feature_select = 1, then device_feature bit 0).
features:
    mov dword [edi], 1
    test dword [edi + 4], 1
    ret

align 8
win:    dq 0
top:    dq 0
result: db 0x40

times 512 * (1 + SECTORS) - ($ - $$) db 0
