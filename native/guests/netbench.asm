; The network benchmark guest (bench/net): a multiboot kernel whose ring-0 part
; only builds an identity map of the low 4 GiB as user pages, enters long mode
; and drops to ring 3 (IOPL 3, IF 0, every I/O port allowed by the TSS bitmap),
; where netbench.c runs: a polled virtio-net driver, DHCP and a small TCP
; client. On a kvm_pvm host ring 0 is emulated but ring 3 runs natively, so the
; driver and its TCP run at native speed under Vireo and QEMU-KVM alike, and
; the benchmark measures the VMMs' network paths rather than CPU emulation.
;
; netbench.c is linked to run at C_ADDR and sits in this file at that address
; (see extra.cmake); it is entered with RDI = the multiboot command line (0 when
; there is none). A fault in ring 3 prints "x VECTOR rip RIP" on COM1 and exits
; with 0x0c through the isa-debug-exit port.
bits 32
%include "macros.inc"
%include "ring3.inc"
%define LOAD_ADDR 0x100000
%define C_ADDR 0x110000
%define KSTACK 0x90000
%define USTACK 0x800000
%define PML4 0x70000            ; PML4, PDPT at +0x1000, 4 PDs at +0x2000..+0x5fff
%define KCODE 0x08
%define KDATA 0x10
%define UDATA 0x1b              ; 0x18 | RPL 3
%define UCODE 0x23              ; 0x20 | RPL 3
%define TSSSEL 0x28
org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    mov esp, KSTACK
    xor eax, eax
    test dword [ebx], 1 << 2       ; multiboot info: cmdline present
    jz .nocmd
    mov eax, [ebx + 16]
.nocmd:
    mov [cmdline], eax
    ; Identity map 4 GiB with 2 MiB user pages (RAM, the PCI hole, the BARs).
    IDENTITY_MAP_4G_USER PML4
    LONG_MODE_ENTER PML4, KCODE, long_mode

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
    ; TSS: RSP0, and an I/O bitmap allowing every port (kvm_pvm checks the
    ; bitmap for ring 3 even at IOPL 3).
    mov qword [tss + 4], KSTACK
    mov word [tss + 0x66], 0x68
    TSS_INSTALL TSSSEL, tss_end - tss - 1
    ; IDT: vectors 0-31, each to a stub that reports the vector and RIP.
    FAULT_GATES
    lidt [idtr]
    mov edi, [cmdline]
    push UDATA
    push USTACK
    push 0x3002                    ; IOPL 3, IF 0
    push UCODE
    push C_ADDR
    iretq

    FAULT_STUBS

%include "lib64.inc"

RING3_GDT
cmdline: dd 0
align 16
tss:    times 0x68 db 0
        times 8192 db 0            ; I/O bitmap: every port allowed
        db 0xff
tss_end:
align 16
idt:    times 32 * 16 db 0

    times (C_ADDR - LOAD_ADDR) - ($ - $$) db 0
    incbin "netbench_c.bin"         ; found on the include path (the build directory)
