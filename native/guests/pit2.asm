; A flat real-mode binary that times a delay the way iPXE's udelay and
; Linux's pit_calibrate_tsc do: PIT channel 2 in mode 0 with its gate on
; (port 0x61 bit 0), then port 0x61 bit 5 (channel 2's output) polled until
; it rises. Exit codes (port 0xf4): 2 = output low after loading, high later;
; 1 = it never rose; 4 = it was already high right after loading.
bits 16
org 0x7c00
start:
    cli
    in al, 0x61
    and al, 0xfc            ; speaker off
    or al, 0x01             ; channel 2 gate on
    out 0x61, al
    mov al, 0xb0            ; channel 2, lobyte/hibyte, mode 0, binary
    out 0x43, al
    mov al, 0xff            ; count 0xffff: about 55 ms
    out 0x42, al
    out 0x42, al
    in al, 0x61
    test al, 0x20
    jnz .early
    mov ecx, 0x1000000
.poll:
    in al, 0x61
    test al, 0x20
    jnz .fired
    dec ecx
    jnz .poll
    mov al, 0x01
    out 0xf4, al
    hlt
.early:
    mov al, 0x04
    out 0xf4, al
    hlt
.fired:
    mov al, 0x02
    out 0xf4, al
    hlt
