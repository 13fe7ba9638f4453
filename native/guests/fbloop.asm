; A display workload for the console benchmarks (bench/app, "frames-engine"):
; sets a Bochs VBE linear mode through the dispi ports (0x1ce/0x1cf), finds the
; framebuffer from the std-vga's PCI BAR0, maps RAM and the LFB as user pages,
; enters ring 3 (IRETQ, 64-bit, IOPL 3, IF 0) and repaints the whole screen
; from there, forever. On a kvm_pvm host ring 0 is emulated but ring 3 runs
; natively, so the loop runs at native speed under Vireo and QEMU-KVM alike.
;
; The multiboot command line picks the workload (words anywhere in it):
;   (default)  "desktop": a page of text-like glyph rows on a light background,
;              scrolling 8 px a frame (the synthetic addon's pattern)
;   noise      every pixel random: 4 screens of xorshift noise in turn
;   key        static dark screen; each key press (PS/2 make code, polled from
;              ring 3 through ports 0x64/0x60) toggles a 128x128 block at
;              (0,0) between white and red (keypress -> pixel latency), then
;              writes "k N" on COM1 (N: unasked-for #DBs so far, hex; see db_handler)
;   1920       1920x1080x32 instead of 1024x768x32
; COM1: "fbloop WxH mode lfb=ADDR" at start; then from ring 3 every 256 frames
; "f N t T" (frames so far, TSC in units of 2^20 cycles; both hex), so a log
; gives the guest's own repaint rate.
bits 32
%include "macros.inc"
%include "ring3.inc"
%define LOAD_ADDR 0x100000
%define KSTACK 0x90000
%define USTACK 0x800000
%define PML4 0x70000            ; PML4, PDPT at +0x1000, 4 PDs at +0x2000..+0x5fff
%define PAGE 0x1000000          ; the desktop page (W x (H + EXTRA) pixels)
%define NOISE 0x3000000         ; 4 noise screens
%define EXTRA 1024              ; page rows beyond the screen (the scroll period)
%define KCODE 0x08
%define KDATA 0x10
%define UDATA 0x1b              ; 0x18 | RPL 3
%define UCODE 0x23              ; 0x20 | RPL 3
%define TSSSEL 0x28
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, KSTACK
    ; Command line (multiboot info flags bit 2).
    test dword [ebx], 1 << 2
    jz .params
    mov edx, [ebx + 16]
.scan:
    mov eax, [edx]
    test al, al
    jz .params
    cmp eax, 'nois'
    jne .n1
    mov dword [mode], 1
.n1:
    and eax, 0xffffff
    cmp eax, 'key'
    jne .n3
    mov dword [mode], 2
.n3:
    mov eax, [edx]
    cmp eax, '1920'
    jne .n4
    mov dword [width], 1920
    mov dword [height], 1080
.n4:
    inc edx
    jmp .scan
.params:
    ; std-vga (1234:1111) on bus 0: BAR0 is the LFB.
    xor ecx, ecx
.dev:
    mov eax, ecx
    shl eax, 11
    or eax, 0x80000000
    mov edi, eax
    call pci_read
    cmp eax, 0x11111234
    je .found
    inc ecx
    cmp ecx, 32
    jb .dev
    mov esi, s_novga
    call puts
    EXIT 0x0c
.found:
    lea eax, [edi + 0x10]
    call pci_read
    and eax, 0xfffffff0
    jnz .have_bar
    ; Unassigned (no firmware): place it ourselves and turn on memory decoding.
    lea eax, [edi + 0x10]
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    mov eax, 0xe0000000
    out dx, eax
.have_bar:
    lea eax, [edi + 4]
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in ax, dx
    or ax, 2
    out dx, ax
    lea eax, [edi + 0x10]
    call pci_read
    and eax, 0xfffffff0
    mov [lfb], eax
    ; Bochs dispi: disable, XRES, YRES, BPP 32, enable with LFB.
    mov bx, 4
    xor ax, ax
    call dispi
    mov bx, 1
    mov ax, [width]
    call dispi
    mov bx, 2
    mov ax, [height]
    call dispi
    mov bx, 3
    mov ax, 32
    call dispi
    mov bx, 4
    mov ax, 0x41
    call dispi
    mov esi, s_hello
    call puts
    mov eax, [width]
    call putdec
    mov al, 'x'
    call putc
    mov eax, [height]
    call putdec
    mov al, ' '
    call putc
    mov eax, [mode]
    call putdec
    mov esi, s_en
    call puts
    mov dx, 0x1ce
    mov ax, 4
    out dx, ax
    mov dx, 0x1cf
    in ax, dx
    movzx eax, ax
    call puthex32
    mov esi, s_lfb
    call puts
    mov eax, [lfb]
    call puthex32
    mov al, 10
    call putc

    ; Identity map 4 GiB with 2 MiB user pages.
    IDENTITY_MAP_4G_USER PML4
    LONG_MODE_ENTER PML4, KCODE, long_mode

; dispi: BX = index, AX = value.
dispi:
    push eax
    mov dx, 0x1ce
    mov ax, bx
    out dx, ax
    pop eax
    mov dx, 0x1cf
    out dx, ax
    ret

%include "lib.inc"

bits 64
long_mode:
    mov al, 0xff                   ; mask the PICs: nothing interrupts ring 3
    out 0x21, al
    out 0xa1, al
    mov ax, KDATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, KSTACK
    ; TSS descriptor (base tss, type 9 available), RSP0 and an I/O bitmap that
    ; allows ports 0-0x3ff: kvm_pvm checks the bitmap for ring 3 even at IOPL 3.
    mov qword [tss + 4], KSTACK
    mov word [tss + 0x66], 0x68
    TSS_INSTALL TSSSEL, tss_end - tss - 1
    ; IDT: vectors 0-31, each to a stub that prints the vector and RIP and exits.
    FAULT_GATES
    ; #DB: note it and go on (see db_handler).
    mov rax, db_handler
    mov [idt + 16], ax
    shr rax, 16
    mov [idt + 16 + 6], ax
    lidt [idtr]
    ; Ring 3 with IOPL 3 (COM1 and the i8042 from there), IF 0.
    push UDATA
    push USTACK
    push 0x3002
    push UCODE
    push user
    iretq

; Exceptions: "x VV RRRRRRRRRRRRRRRR" (vector, RIP) on COM1, then exit 0x0c.
    FAULT_STUBS

; A #DB from ring 3 that the guest never asked for: Vireo single-steps the vCPU
; (KVM_SET_GUEST_DEBUG) while host input waits in the keyboard controller (its
; kvm_pvm input workaround, docs/architecture.md), and kvm_pvm delivers a step's
; #DB to a guest running in ring 3 instead of exiting. Vireo no longer steps a
; vCPU at CPL 3; should one come anyway it is counted (printed with each key's
; ack; kvm_kboot_test wants 0) and resumed, and the key loop then polls without
; pausing, as every instruction would cost a trip through the emulated ring 0.
db_handler:
    mov byte [stepped], 1
    inc dword [dbcount]
    iretq

; ---- ring 3 -------------------------------------------------------------------
user:
    mov eax, [mode]
    cmp eax, 2
    je key_mode
    call make_page
    cmp dword [mode], 1
    jne .loop
    call make_noise
.loop:
    mov eax, [width]
    imul eax, [height]
    mov ecx, eax
    shr ecx, 1                     ; qwords per screen
    mov edi, [lfb]
    cmp dword [mode], 1
    je .noise
    ; desktop: the page from row (frame * 8) % EXTRA
    mov eax, [frame]
    shl eax, 3
    and eax, EXTRA - 1
    imul eax, [width]
    lea rsi, [PAGE + rax * 4]
    jmp .copy
.noise:
    mov eax, [frame]
    and eax, 3
    mov edx, [width]
    imul edx, [height]
    imul eax, edx
    lea rsi, [NOISE + rax * 4]
.copy:
    cld
    rep movsq
    inc dword [frame]
    test dword [frame], 255
    jnz .loop
    call report
    jmp .loop

; report: "f FRAMES t TSC>>20\n" on COM1.
report:
    mov al, 'f'
    call putc64
    mov al, ' '
    call putc64
    mov eax, [frame]
    call puthex32_64
    mov al, ' '
    call putc64
    mov al, 't'
    call putc64
    mov al, ' '
    call putc64
    rdtsc
    shl rdx, 32
    or rax, rdx
    shr rax, 20
    call puthex32_64
    mov al, 10
    call putc64
    ret

; The desktop page: light background, 16 px text lines of dark 6x10 'glyphs'.
make_page:
    mov edi, PAGE
    mov eax, [height]
    add eax, EXTRA
    imul eax, [width]
    mov ecx, eax
    mov eax, 0x00f4f4f4
    rep stosd
    mov r15d, 12345                ; xorshift state
    xor r8d, r8d                   ; line
.line:
    mov eax, r8d
    shl eax, 4
    add eax, 16
    mov edx, [height]
    add edx, EXTRA
    cmp eax, edx
    ja .done
    call rnd
    mov ecx, [width]
    shr ecx, 3
    sub ecx, 10
    xor edx, edx
    div ecx
    lea r9d, [edx + 5]             ; glyphs on this line
    xor r10d, r10d                 ; column
.glyph:
    cmp r10d, r9d
    jae .next_line
    call rnd
    xor edx, edx
    mov ecx, 6
    div ecx
    test edx, edx
    jz .skip                       ; a space
    call rnd
    mov r11d, eax                  ; the glyph's bits
    xor r12d, r12d                 ; gy
.gy:
    xor r13d, r13d                 ; gx
.gx:
    ; bit (gy*6+gx) % 31 of the glyph
    mov eax, r12d
    imul eax, 6
    add eax, r13d
    xor edx, edx
    mov ecx, 31
    div ecx
    mov ecx, edx
    mov eax, r11d
    shr eax, cl
    test eax, 1
    jz .px_next
    ; page[(line*16 + 3 + gy) * W + 8 + col*8 + gx] = 0x202830
    mov eax, r8d
    shl eax, 4
    add eax, 3
    add eax, r12d
    imul eax, [width]
    lea edx, [r10d * 8 + 8]
    add eax, edx
    add eax, r13d
    mov dword [PAGE + rax * 4], 0x00202830
.px_next:
    inc r13d
    cmp r13d, 6
    jb .gx
    inc r12d
    cmp r12d, 10
    jb .gy
.skip:
    inc r10d
    jmp .glyph
.next_line:
    inc r8d
    jmp .line
.done:
    ret

; rnd: EAX = next xorshift32 of R15D.
rnd:
    mov eax, r15d
    shl eax, 13
    xor r15d, eax
    mov eax, r15d
    shr eax, 17
    xor r15d, eax
    mov eax, r15d
    shl eax, 5
    xor r15d, eax
    mov eax, r15d
    ret

; 4 screens of random pixels.
make_noise:
    mov r15d, 0x9e3779b9
    mov edi, NOISE
    mov eax, [width]
    imul eax, [height]
    shl eax, 2
    mov ecx, eax
.px:
    call rnd
    and eax, 0x00ffffff
    stosd
    loop .px
    ret

; key: poll the i8042 about every 0.2 ms; each make code toggles the block.
key_mode:
    mov edi, [lfb]
    mov eax, [width]
    imul eax, [height]
    mov ecx, eax
    mov eax, 0x00101010
    rep stosd
    xor r14d, r14d                 ; 0: next is white, 1: red
.poll:
    in al, 0x64
    test al, 1
    jz .wait
    mov bl, al
    in al, 0x60
    test bl, 0x20                  ; a mouse byte
    jnz .poll
    cmp al, 0xf0                   ; set 2 break prefix: skip it and the code after
    jne .notf0
    mov byte [skip_next], 1
    jmp .poll
.notf0:
    cmp al, 0xe0
    je .poll
    cmp byte [skip_next], 0
    je .code
    mov byte [skip_next], 0
    jmp .poll
.code:
    test al, 0x80                  ; set 1 break code
    jnz .poll
    mov eax, 0x00ffffff
    test r14d, r14d
    jz .paint
    mov eax, 0x00ff0000
.paint:
    xor r14d, 1
    mov edi, [lfb]
    mov edx, 128
.row:
    mov ecx, 128
    push rdi
    rep stosd
    pop rdi
    mov ecx, [width]
    lea rdi, [rdi + rcx * 4]
    dec edx
    jnz .row
    inc dword [frame]
    mov al, 'k'                    ; the key is on screen: "k <#DBs so far>"
    call putc64
    mov al, ' '
    call putc64
    mov eax, [dbcount]
    call puthex32_64
    mov al, 10
    call putc64
    jmp .poll
.wait:
    cmp byte [stepped], 0
    je .pause
    mov byte [stepped], 0
    jmp .poll
.pause:
    mov ecx, 4000
.spin:
    pause
    loop .spin
    jmp .poll

; ---- output (ring 0 and ring 3: IOPL 3) ---------------------------------------
%include "lib64.inc"


RING3_GDT
width:  dd 1024
height: dd 768
mode:   dd 0                       ; 0 desktop, 1 noise, 2 key
lfb:    dd 0
frame:  dd 0
skip_next: db 0
stepped: db 0
align 4
dbcount: dd 0
s_hello: db "fbloop ", 0
s_lfb:   db " lfb=", 0
s_en:    db " dispi_enable=", 0
s_novga: db "fbloop: no std-vga (1234:1111) on bus 0", 10, 0
align 16
tss:    times 0x68 db 0
        times 0x80 db 0            ; I/O bitmap: ports 0-0x3ff allowed
        db 0xff
tss_end:
align 16
idt:    times 32 * 16 db 0
