; A multiboot v1 ELF kernel (no a.out kludge: the loader reads the ELF program
; headers) that prints what the boot loader gave it: magic, flags, memory
; sizes, the command line and every memory-map entry. Exits with 0x05 (status 11).
bits 32
%include "macros.inc"
section .multiboot
align 4
    dd 0x1BADB002
    dd 0x00000003
    dd -(0x1BADB002 + 0x00000003)

section .text
global start
start:
    mov esp, stack_top
    mov edi, ebx                ; multiboot info
    mov esi, s_magic
    call puts
    call puthex32               ; EAX = boot magic
    call nl
    mov esi, s_flags
    call puts
    mov eax, [edi]
    call puthex32
    call nl
    mov esi, s_lower
    call puts
    mov eax, [edi + 4]
    call puthex32
    mov esi, s_upper
    call puts
    mov eax, [edi + 8]
    call puthex32
    call nl
    test dword [edi], 1 << 2
    jz .nocmd
    mov esi, s_cmd
    call puts
    mov esi, [edi + 16]
    call puts
    call nl
.nocmd:
    test dword [edi], 1 << 6
    jz .nommap
    mov ebx, [edi + 48]         ; mmap_addr
    mov ecx, [edi + 44]
    add ecx, ebx                ; end
.entry:
    cmp ebx, ecx
    jae .nommap
    mov esi, s_mmap
    call puts
    mov eax, [ebx + 8]          ; base high
    call puthex32
    mov eax, [ebx + 4]          ; base low
    call puthex32
    mov al, ' '
    call putc
    mov eax, [ebx + 16]         ; length high
    call puthex32
    mov eax, [ebx + 12]
    call puthex32
    mov al, ' '
    call putc
    mov eax, [ebx + 20]         ; type
    call puthex32
    call nl
    add ebx, [ebx]
    add ebx, 4
    jmp .entry
.nommap:
    mov esi, s_end
    call puts
    EXIT 0x05

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
s_magic: db "magic ", 0
s_flags: db "flags ", 0
s_lower: db "mem_lower ", 0
s_upper: db " mem_upper ", 0
s_cmd:   db "cmdline ", 0
s_mmap:  db "mmap ", 0
s_end:   db "end", 13, 10, 0

section .bss
align 16
    resb 8192
stack_top:
