; A PVH kernel (an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note, no multiboot
; header) that prints what the loader gave it: the start_info magic, the
; command line and every memory-map entry. Exits with 0x06 (status 13).
bits 32
%include "macros.inc"

section .note.Xen note alloc noexec nowrite align=4
    dd 4                        ; name size
    dd 4                        ; descriptor size
    dd 18                       ; XEN_ELFNOTE_PHYS32_ENTRY
    db "Xen", 0
    dd pvh_start

section .text
global pvh_start
pvh_start:
    mov esp, stack_top
    mov edi, ebx                ; struct hvm_start_info
    mov esi, s_magic
    call puts
    mov eax, [edi]
    call puthex32
    call nl
    mov esi, s_cmd
    call puts
    mov esi, [edi + 24]         ; cmdline_paddr (low half)
    call puts
    call nl
    mov ebx, [edi + 40]         ; memmap_paddr (low half)
    mov ecx, [edi + 48]         ; memmap_entries
.entry:
    test ecx, ecx
    jz .done
    mov esi, s_mmap
    call puts
    mov eax, [ebx + 4]
    call puthex32
    mov eax, [ebx]
    call puthex32
    mov al, ' '
    call putc
    mov eax, [ebx + 12]
    call puthex32
    mov eax, [ebx + 8]
    call puthex32
    mov al, ' '
    call putc
    mov eax, [ebx + 16]
    call puthex32
    call nl
    add ebx, 24
    dec ecx
    jmp .entry
.done:
    mov esi, s_end
    call puts
    EXIT 0x06

nl:
    push eax
    mov al, 13
    call putc
    mov al, 10
    call putc
    pop eax
    ret

%include "lib.inc"

section .rodata
s_magic: db "pvh magic ", 0
s_cmd:   db "cmdline ", 0
s_mmap:  db "mmap ", 0
s_end:   db "end", 13, 10, 0

section .bss
align 16
    resb 8192
stack_top:
