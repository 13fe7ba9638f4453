; A multiboot v1 kernel (a.out kludge) for the PC board that never stops
; changing its screen and reports its progress: it repaints one 80-column row
; of the VGA text screen (0xb8000) after another, each pass with the next
; letter and colour, and after every 25 rows (one whole screen) prints
;     PAINT <n>
; on COM1. A console always has a changed frame to fetch, and the rate of the
; PAINT lines shows how fast the guest runs (e2e/slow-console.spec.ts: a
; console that stops reading must not slow it down).
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000
%define VGA 0xb8000
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    cli
    mov esp, 0x90000
    mov esi, hello
    call puts
    xor ebx, ebx                        ; rows painted
.row:
    ; row = ebx % 25, letter = 'A' + (ebx / 25) % 26, colour = (ebx / 25) % 7 + 1 on black
    mov eax, ebx
    xor edx, edx
    mov ecx, 25
    div ecx                             ; eax = pass, edx = row
    mov edi, edx
    imul edi, edi, 160
    add edi, VGA
    push edx
    xor edx, edx
    mov ecx, 26
    push eax
    div ecx                             ; edx = pass % 26
    lea ecx, [edx + 'A']
    pop eax
    xor edx, edx
    push ecx
    mov ecx, 7
    div ecx                             ; edx = pass % 7
    pop ecx
    lea eax, [edx + 1]
    shl eax, 8
    mov al, cl                          ; AH colour, AL letter
    pop edx
    mov ecx, 80
    rep stosw
    inc ebx
    cmp edx, 24
    jne .row
    ; a whole screen: report it
    mov esi, s_paint
    call puts
    mov eax, ebx
    xor edx, edx
    mov ecx, 25
    div ecx
    call putdec
    mov esi, crlf
    call puts
    jmp .row

%include "lib.inc"
hello:   db "PAINT ready", 13, 10, 0
s_paint: db "PAINT ", 0
crlf:    db 13, 10, 0
