; A boot sector (SeaBIOS loads it from the IDE disk at 0x7c00) that checks
; the board's ACPI interrupt routing end to end, the way an OS would:
; find the RSDP in the F-segment, walk the RSDT to the MADT, take the
; IOAPIC's address and the GSI its interrupt source override names for ISA
; IRQ 0, program that IOAPIC pin (vector 0x40) and, when it is not pin 0,
; pin 0 too (vector 0x41), start the PIT, and poll the LAPIC's IRR with
; interrupts off (protected-mode IRET is not emulated on kvm_pvm hosts, so
; nothing is taken). Runs in big real mode (FS has a 4 GiB limit).
;
; Result through isa-debug-exit (port 0xf4), value = status | gsi << 4:
;   1 the PIT reached the MADT's pin only       3 no RSDP, no MADT or no IOAPIC in it
;   4 no interrupt within the timeout
;   5 the PIT reached pin 0 as well (routing and MADT disagree)
bits 16
org 0x7c00
%include "lib16.inc"

VEC_GSI     equ 0x40
VEC_PIN0    equ 0x41
LAPIC_SVR   equ 0xf0
LAPIC_IRR2  equ 0x220            ; IRR bits 64-95: bit 0 = vector 0x40, bit 1 = 0x41
PIT_HZ_DIV  equ 1193             ; ~1 kHz

BOOT16_ENTRY
    call big_real_mode

    mov al, 0xff                 ; mask both 8259s: only the IOAPIC path counts
    out 0x21, al
    out 0xa1, al

    call find_madt
    jc no_madt
    mov edx, [fs:edi + 4]
    add edx, edi                 ; end of the MADT
    mov ebp, [fs:edi + 36]       ; local APIC address
    add edi, 44
.entry:
    cmp edi, edx
    jae .walked
    mov cl, [fs:edi]             ; entry type
    cmp cl, 1                    ; I/O APIC
    jne .not_ioapic
    mov eax, [fs:edi + 4]
    mov [ioapic], eax
    jmp .advance
.not_ioapic:
    cmp cl, 2                    ; interrupt source override
    jne .advance
    cmp byte [fs:edi + 3], 0     ; source: ISA IRQ 0
    jne .advance
    mov eax, [fs:edi + 4]
    mov [gsi], eax
.advance:
    movzx eax, byte [fs:edi + 1]
    test eax, eax
    jz no_madt
    add edi, eax
    jmp .entry

.walked:
    mov esi, [ioapic]
    test esi, esi
    jz no_madt
    mov dword [fs:ebp + LAPIC_SVR], 0x1ff   ; APIC software enable, spurious vector 0xff
    mov eax, [gsi]
    mov ecx, VEC_GSI
    call route
    cmp dword [gsi], 0
    je .pit
    xor eax, eax
    mov ecx, VEC_PIN0
    call route
.pit:
    mov al, 0x34                 ; channel 0, lobyte/hibyte, mode 2
    out 0x43, al
    mov al, PIT_HZ_DIV & 0xff
    out 0x40, al
    mov al, PIT_HZ_DIV >> 8
    out 0x40, al
    mov ecx, 3000000
.poll:
    mov eax, [fs:ebp + LAPIC_IRR2]
    test al, 1
    jnz .got
    dec ecx
    jnz .poll
    mov al, 4
    jmp exit
.got:
    test al, 2                   ; the same edge reached pin 0 too?
    mov al, 5
    jnz exit
    mov al, 1
    jmp exit

no_madt:
    mov al, 3
exit:
    mov bl, [gsi]
    shl bl, 4
    or al, bl
    out 0xf4, al
.halt:
    hlt
    jmp .halt

; IOAPIC redirection entry for pin EAX: vector ECX, fixed, physical, edge,
; active high, unmasked, destination APIC ID 0.
route:
    lea eax, [eax * 2 + 0x10]
    mov [fs:esi], eax            ; IOREGSEL
    mov [fs:esi + 0x10], ecx     ; IOWIN: low half
    inc eax
    mov [fs:esi], eax
    mov dword [fs:esi + 0x10], 0 ; high half: destination 0
    ret

align 4
gsi:    dd 0                     ; no override for IRQ 0: GSI 0
ioapic: dd 0
LIB16_ACPI

times 510 - ($ - $$) db 0
    dw 0xaa55
