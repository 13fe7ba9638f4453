; A boot sector (SeaBIOS loads it from the IDE disk at 0x7c00) that brings
; up the other CPUs the way an OS does: find the RSDP, walk the RSDT to the
; MADT, list every enabled processor's local APIC ID, then send each one
; but the BSP an INIT IPI and two STARTUP IPIs through the local APIC's ICR.
; The APs start in real mode at the trampoline (copied to 0x8000, SIPI
; vector 8; it jumps back into this sector), read their own local APIC ID from the APIC's ID register and
; set that bit in a bitmap, then count themselves and halt. SeaBIOS has
; already counted the CPUs the same way and parked them; INIT resets them,
; so what this proves is that the OS-visible path -- MADT IDs, the APIC's
; ICR, INIT/SIPI, the APs' own IDs -- works, not SeaBIOS's count.
; Runs in big real mode (FS has a 4 GiB limit), interrupts off.
;
; Result through isa-debug-exit (port 0xf4): the number of MADT processors
; whose APIC ID was seen running (the BSP included) | the MADT's count << 4.
; 0x0f: no RSDP or no MADT.
bits 16
org 0x7c00
%include "lib16.inc"

TRAMP       equ 0x8000           ; SIPI vector 0x08
COUNT       equ 0x9000           ; dword: APs that ran the trampoline
LAPIC       equ 0x9004           ; dword: the MADT's local APIC address
SEEN        equ 0x9010           ; 256-bit bitmap of APIC IDs that ran
IDS         equ 0x9100           ; bytes: enabled processors' APIC IDs
APIC_ID     equ 0x20
APIC_SVR    equ 0xf0
APIC_ICR_LO equ 0x300
APIC_ICR_HI equ 0x310

BOOT16_ENTRY
    call big_real_mode

    mov di, COUNT                ; COUNT, LAPIC, SEEN: cleared
    mov cx, (SEEN + 32 - COUNT) / 2
    xor ax, ax
    rep stosw
    mov si, ap_start             ; the trampoline, to the SIPI page
    mov di, TRAMP
    mov cx, ap_end - ap_start
    rep movsb

    call find_madt
    jc fail
    mov edx, [fs:edi + 4]
    add edx, edi                 ; end of the MADT
    mov ebp, [fs:edi + 36]       ; local APIC address
    mov [LAPIC], ebp
    add edi, 44
    xor bx, bx                   ; processors listed
.entry:
    cmp edi, edx
    jae .walked
    cmp byte [fs:edi], 0         ; processor local APIC
    jne .advance
    test byte [fs:edi + 4], 1    ; enabled
    jz .advance
    mov al, [fs:edi + 3]
    mov [IDS + bx], al
    inc bx
.advance:
    movzx eax, byte [fs:edi + 1]
    test eax, eax
    jz fail
    add edi, eax
    jmp .entry

.walked:
    test bx, bx
    jz fail
    mov [nids], bx
    mov dword [fs:ebp + APIC_SVR], 0x1ff   ; software enable, spurious vector 0xff
    mov eax, [fs:ebp + APIC_ID]
    shr eax, 24
    mov [bsp], al
    lock bts dword [SEEN], eax

    xor si, si
.start_ap:
    cmp si, [nids]
    jae .wait
    movzx eax, byte [IDS + si]
    inc si
    cmp al, [bsp]
    je .start_ap
    shl eax, 24
    mov di, ipis                 ; INIT, then two STARTUPs as the MP spec says
.ipi:
    mov [fs:ebp + APIC_ICR_HI], eax
    mov edx, [di]
    mov [fs:ebp + APIC_ICR_LO], edx
    mov ecx, 60000
.delay:
    dec ecx
    jnz .delay
    add di, 4
    cmp di, ipis + 12
    jb .ipi
    jmp .start_ap

.wait:                           ; every AP counted, or give up
    movzx eax, word [nids]
    dec eax
    mov ecx, 30000000
.poll:
    cmp [COUNT], eax
    jae .tally
    dec ecx
    jnz .poll
.tally:                          ; MADT IDs that ran, the BSP included
    xor si, si
    xor cx, cx
.t:
    cmp si, [nids]
    jae .done
    movzx eax, byte [IDS + si]
    inc si
    bt dword [SEEN], eax
    adc cx, 0
    jmp .t
.done:
    mov al, [nids]
    shl al, 4
    or al, cl
    jmp exit

fail:
    mov al, 0x0f
exit:
    out 0xf4, al
.halt:
    hlt
    jmp .halt

; The AP trampoline, copied to the SIPI page: the AP starts there at
; 0x0800:0000 in real mode and jumps to ap_main in this sector.
ap_start:
    jmp 0:ap_main
ap_end:

ap_main:
    xor ax, ax
    mov ds, ax
    call big_real_mode
    mov ebp, [LAPIC]
    mov eax, [fs:ebp + APIC_ID]
    shr eax, 24
    lock bts dword [SEEN], eax
    lock inc dword [COUNT]
.park:
    hlt
    jmp .park

align 4
ipis:   dd 0x4500, 0x4608, 0x4608   ; INIT assert; STARTUP vector 0x08 (twice)
nids:   dw 0
bsp:    db 0
LIB16_ACPI

times 510 - ($ - $$) db 0
    dw 0xaa55
