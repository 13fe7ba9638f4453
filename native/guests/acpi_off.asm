; A boot sector (SeaBIOS loads it from the IDE disk at 0x7c00) that powers
; off on the ACPI power button the way an OS does, without an AML
; interpreter: find the RSDP, walk the RSDT to the FADT, take PM1a_EVT_BLK,
; PM1a_CNT_BLK, SMI_CMD, ACPI_ENABLE and the DSDT; look up \_S5's first
; package element (SLP_TYPa) in the DSDT's AML bytes; switch to ACPI mode
; (ACPI_ENABLE to SMI_CMD when PM1_CNT.SCI_EN is clear, then wait for
; SCI_EN); clear PWRBTN_STS and set PWRBTN_EN in PM1_EN. Then, on COM1:
;   "acpi ready"     -- poll PM1_STS.PWRBTN_STS with interrupts off
;   "power button"   -- clear it, wait `delay` seconds (CMOS RTC seconds ticks)
;   "powering off"   -- SLP_TYPa | SLP_EN to PM1a_CNT (S5)
; Runs in big real mode (DS has a 4 GiB limit) so the tables are reachable.
;
; The byte at offset 509 (just before the 0xaa55 signature) is the delay in
; seconds (1..255): 3 as built, `nasm -DDELAY=20` builds another, and tests
; patch the byte (e2e/acpi-shutdown.spec.ts uses 4 and 20). Each of the
; first `delay` RTC ticks ends a second, so the wait is between delay-1 and
; delay seconds.
;
; Failures print "acpi: <why>" and exit through isa-debug-exit (port 0xf4):
;   2 no RSDP   3 no FADT   4 no \_S5 in the DSDT   5 SCI_EN never came on
%ifndef DELAY
%define DELAY 3
%endif
bits 16
org 0x7c00
%include "lib16.inc"

PWRBTN      equ 0x0100           ; PM1_STS.PWRBTN_STS / PM1_EN.PWRBTN_EN
SCI_EN      equ 0x0001
SLP_EN      equ 0x2000
SLP_TYP     equ 0x1c00

BOOT16_ENTRY
    cld
    lgdt [gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    mov bx, 0x08
    mov ds, bx
    and al, 0xfe
    mov cr0, eax
    xor bx, bx
    mov ds, bx                   ; base 0, the 4 GiB limit stays

    mov esi, 0xe0000             ; the RSDP: 16-byte aligned in 0xe0000-0xfffff
.scan:
    cmp dword [esi], 'RSD '
    jne .next
    cmp dword [esi + 4], 'PTR '
    je .found
.next:
    add esi, 16
    cmp esi, 0x100000
    jb .scan
    mov bl, 2
    jmp fail

.found:
    mov ebx, [esi + 16]       ; RSDT
    mov edx, [ebx + 4]
    add edx, ebx                 ; end of the RSDT
    add ebx, 36
.tables:
    cmp ebx, edx
    jae .no_fadt
    mov edi, [ebx]
    cmp dword [edi], 'FACP'
    je .fadt
    add ebx, 4
    jmp .tables
.no_fadt:
    mov bl, 3
    jmp fail

.fadt:
    mov ax, [edi + 56]        ; PM1a_EVT_BLK
    mov [evt], ax
    movzx bx, byte [edi + 88] ; PM1_EVT_LEN: PM1_EN is its second half
    shr bx, 1
    add ax, bx
    mov [en], ax
    mov ax, [edi + 64]        ; PM1a_CNT_BLK
    mov [cnt], ax

    ; \_S5: NameOp '\' '_S5_' PackageOp PkgLength NumElements SLP_TYPa ...
    mov esi, [edi + 40]       ; DSDT
    mov edx, [esi + 4]
    add edx, esi
    add esi, 36
.aml:
    cmp esi, edx
    jae .no_s5
    cmp dword [esi], '_S5_'
    jne .aml_next
    cmp byte [esi + 4], 0x12  ; PackageOp
    je .s5
.aml_next:
    inc esi
    jmp .aml
.no_s5:
    mov bl, 4
    jmp fail
.s5:
    mov al, [esi + 5]         ; PkgLength lead byte: bits 7:6 = extra bytes
    shr al, 6
    movzx eax, al
    lea esi, [esi + eax + 7]     ; past PackageOp, PkgLength, NumElements
    mov al, [esi]
    cmp al, 0x0a                 ; BytePrefix
    jne .typ
    mov al, [esi + 1]
.typ:                            ; ZeroOp 0 / OneOp 1 are the value itself
    and ax, 7
    shl ax, 10
    mov [slp], ax

    ; ACPI mode.
    mov dx, [cnt]
    in ax, dx
    test al, SCI_EN
    jnz .acpi_on
    mov dx, [edi + 48]        ; SMI_CMD
    mov al, [edi + 52]        ; ACPI_ENABLE
    out dx, al
    xor cx, cx
.wait_sci:
    mov dx, [cnt]
    in ax, dx
    test al, SCI_EN
    jnz .acpi_on
    loop .wait_sci
    mov bl, 5
    jmp fail
.acpi_on:
    mov dx, [evt]
    mov ax, PWRBTN               ; write 1 to clear a stale press
    out dx, ax
    mov dx, [en]
    in ax, dx
    or ax, PWRBTN
    out dx, ax
    mov si, msg_ready
    call puts

    mov dx, [evt]
.poll:
    in ax, dx
    test ax, PWRBTN
    jz .poll
    mov ax, PWRBTN
    out dx, ax
    mov si, msg_button
    call puts

    mov cl, [delay]
    call rtc_sec
    mov ch, al
.tick:
    test cl, cl
    jz .off
.same:
    call rtc_sec
    cmp al, ch
    je .same
    mov ch, al
    dec cl
    jmp .tick

.off:
    mov si, msg_off
    call puts
    mov dx, [cnt]
    in ax, dx
    and ax, ~(SLP_TYP | SLP_EN)
    or ax, [slp]
    or ax, SLP_EN
    out dx, ax
    jmp fail.halt                ; the machine is off before this matters

; BL = code: "acpi: fail" on COM1, then isa-debug-exit with the code.
fail:
    mov si, msg_fail
    call puts
    mov al, bl
    out 0xf4, al
.halt:
    hlt
    jmp .halt

rtc_sec:
    xor al, al
    out 0x70, al
    in al, 0x71
    ret

LIB16_SERIAL

msg_ready:  db 'acpi ready', 10, 0
msg_button: db 'power button', 10, 0
msg_off:    db 'powering off', 10, 0
msg_fail:   db 'acpi: fail', 10, 0

align 4
evt:    dw 0
en:     dw 0
cnt:    dw 0
slp:    dw 0
gdt:
    dq 0
    dq 0x00cf92000000ffff        ; 0x08: data, base 0, limit 4 GiB
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt

times 509 - ($ - $$) db 0
delay:  db DELAY
    dw 0xaa55
