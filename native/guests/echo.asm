; Echoes COM1 input back using the UART receive interrupt (IRQ 4 through the
; 8259 PIC, remapped to vector 0x24). Ctrl-D (0x04) prints "bye" and exits
; with value 0x10 (VMM status 33).
bits 32
%include "macros.inc"

; Return from an interrupt without IRET: kvm_pvm hosts run this ring-0 code
; in KVM's instruction emulator, which fails on protected-mode IRET
; (KVM_EXIT_INTERNAL_ERROR). The frame is EIP, CS, EFLAGS; the interrupted
; code always runs with IF=1 (the idle loop), so restore that with STI, whose
; one-instruction shadow keeps the next interrupt out until the JMP has used
; ret_eip.
%macro IRET_FREE_RETURN 0
    push eax
    mov eax, [esp + 4]
    mov [ret_eip], eax
    pop eax
    add esp, 12
    sti
    jmp [ret_eip]
%endmacro
%define LOAD_ADDR 0x100000
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    cli
    mov esp, 0x90000
    lgdt [gdt_desc]
    jmp 0x08:.reload
.reload:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    ; IDT: every vector to `unexpected`, vector 0x24 to the UART handler,
    ; spurious IRQ 7 (0x27) to a bare iret.
    mov edi, idt
    mov ecx, 64
.fill:
    mov eax, unexpected
    call set_gate
    add edi, 8
    loop .fill
    mov edi, idt + 0x24 * 8
    mov eax, uart_isr
    call set_gate
    mov edi, idt + 0x27 * 8
    mov eax, spurious
    call set_gate
    lidt [idt_desc]
    ; 8259 PIC: ICW1..4, master at 0x20, slave at 0x28; unmask only IRQ 4.
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
    mov al, 0xef
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    ; UART: 8N1, FIFO on (trigger 1), receive-data interrupt, OUT2 gate on.
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al
    mov dx, COM1 + 2
    mov al, 0x07
    out dx, al
    mov dx, COM1 + 1
    mov al, 0x01
    out dx, al
    mov dx, COM1 + 4
    mov al, 0x0b
    out dx, al
    mov esi, ready
    call puts
    sti
.idle:
    hlt
    jmp .idle

; EDI = gate address, EAX = handler.
set_gate:
    mov [edi], ax
    mov word [edi + 2], 0x08
    mov word [edi + 4], 0x8e00
    shr eax, 16
    mov [edi + 6], ax
    ret

uart_isr:
    pusha
.more:
    mov dx, COM1 + 5
    in al, dx
    test al, 1
    jz .done
    mov dx, COM1
    in al, dx
    cmp al, 4
    je .bye
    call putc
    jmp .more
.done:
    mov al, 0x20
    out 0x20, al
    popa
    IRET_FREE_RETURN
.bye:
    mov esi, bye
    call puts
    EXIT 0x10

spurious:
    IRET_FREE_RETURN

unexpected:
    mov esi, oops
    call puts
    EXIT 0x7f

%include "lib.inc"
ready: db "echo ready", 13, 10, 0
bye: db 13, 10, "bye", 13, 10, 0
oops: db "unexpected interrupt", 13, 10, 0
ret_eip: dd 0
align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff
    dq 0x00cf92000000ffff
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt
idt_desc:
    dw 64 * 8 - 1
    dd idt
align 8
idt:
    times 64 * 8 db 0
