; A multiboot v1 kernel (a.out kludge) for the PC board that gets a DHCP
; lease through an Intel 82540EM (e1000), polled, no interrupts: finds the
; card by scanning PCI bus 0, resets it, sets up 8-entry receive and transmit
; descriptor rings, sends DHCPDISCOVER, reads the OFFER, sends DHCPREQUEST,
; reads the ACK, prints
;     DHCP <your address> via <server address>
; on COM1 and idles (HLT). Failures print "DHCP failed: <why>" and idle too.
; Written from Intel's 8254x Software Developer's Manual (sections in the
; comments) and RFC 2131/2132. SeaBIOS has given the card its BAR0 (the
; multiboot ROM path); the kernel turns on memory decoding and bus mastering.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000

; Buffers in RAM above the image (no paging: linear = physical).
%define RXDESC 0x200000                ; 8 x 16-byte legacy descriptors (ring length a multiple of 128)
%define TXDESC 0x200080
%define RXBUF  0x201000                ; 8 x 2048 bytes
%define TXBUF  0x205000
%define NDESC  8
%define FRAME_LEN (14 + 20 + 8 + 548)  ; BOOTP 236 + options 312 (RFC 2131's 576-byte IP minimum)

; e1000 registers (BAR0 offsets, 13.4).
%define CTRL   0x0000
%define STATUS 0x0008
%define IMC    0x00d8
%define RCTL   0x0100
%define TCTL   0x0400
%define RDBAL  0x2800
%define RDBAH  0x2804
%define RDLEN  0x2808
%define RDH    0x2810
%define RDT    0x2818
%define TDBAL  0x3800
%define TDBAH  0x3804
%define TDLEN  0x3808
%define TDH    0x3810
%define TDT    0x3818
%define RAL0   0x5400
%define RAH0   0x5404

; A 16-bit value as it lies in a frame (network order) read as an x86 word.
%define BE16(v) ((((v) >> 8) & 0xff) | (((v) & 0xff) << 8))

org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    cli
    mov esp, 0x90000
    call find_e1000
    test ebp, ebp
    jnz .found
    mov esi, msg_nonic
    jmp fail
.found:
    call e1000_init
    ; DISCOVER until an OFFER comes (5 tries), then REQUEST until the ACK.
    mov dword [tries], 5
.discover:
    mov al, 1                           ; DHCPDISCOVER
    call send_dhcp
    mov bl, 2                           ; wait for DHCPOFFER
    call wait_dhcp
    jnc .offered
    dec dword [tries]
    jnz .discover
    mov esi, msg_nooffer
    jmp fail
.offered:
    mov eax, [yiaddr]
    mov [offered], eax
    mov dword [tries], 5
.request:
    mov al, 3                           ; DHCPREQUEST
    call send_dhcp
    mov bl, 5                           ; wait for DHCPACK (or NAK)
    call wait_dhcp
    jnc .acked
    cmp byte [got_type], 6              ; NAK: start again
    je .nak
    dec dword [tries]
    jnz .request
    mov esi, msg_noack
    jmp fail
.nak:
    mov esi, msg_nak
    call puts
    mov dword [tries], 5
    jmp .discover
.acked:
    mov esi, msg_dhcp
    call puts
    mov eax, [yiaddr]
    call put_ip
    mov esi, msg_via
    call puts
    mov eax, [server]
    call put_ip
    mov esi, crlf
    call puts
idle:
    cli
    hlt
    jmp idle

fail:
    push esi
    mov esi, msg_failed
    call puts
    pop esi
    call puts
    mov esi, crlf
    call puts
    jmp idle

; ---- PCI ---------------------------------------------------------------

; pci_read: EAX = config address (0x80000000 | dev << 11 | reg) -> EAX = dword.
pci_read:
    push edx
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in eax, dx
    pop edx
    ret

; find_e1000: bus 0, functions 0 of devices 0..31, vendor:device 8086:100E.
; EBP = BAR0 memory base (0 when none), [pci_addr] = its config address.
find_e1000:
    xor ebp, ebp
    mov ecx, 0
.dev:
    mov eax, ecx
    shl eax, 11
    or eax, 0x80000000
    mov [pci_addr], eax
    call pci_read
    cmp eax, 0x100e8086
    je .it
    inc ecx
    cmp ecx, 32
    jb .dev
    ret
.it:
    mov esi, msg_nic
    call puts
    mov al, cl
    call puthex8
    mov esi, msg_nic2
    call puts
    ; Command register (offset 4): memory space (bit 1) and bus master (bit 2).
    mov eax, [pci_addr]
    or eax, 4
    call pci_read
    or ax, 0x0006
    mov edx, eax
    mov eax, [pci_addr]
    or eax, 4
    push edx
    mov dx, 0xcf8
    out dx, eax
    pop eax
    mov dx, 0xcfc
    out dx, ax                          ; the command word only (status is write-1-to-clear)
    mov eax, [pci_addr]
    or eax, 0x10                        ; BAR0
    call pci_read
    test al, 1                          ; an I/O BAR here would not be the register BAR
    jnz .none
    and eax, 0xfffffff0
    mov ebp, eax
    ret
.none:
    xor ebp, ebp
    ret

; ---- e1000 -------------------------------------------------------------

e1000_init:
    ; Software reset (CTRL.RST, 14.9): clears itself when done.
    mov dword [ebp + CTRL], 1 << 26
    mov ecx, 100000
.rst:
    test dword [ebp + CTRL], 1 << 26
    jz .reset
    loop .rst
.reset:
    mov dword [ebp + IMC], 0xffffffff   ; no interrupts: this kernel polls
    ; Set link up (CTRL.SLU) with speed detection (ASDE), 14.3.
    mov dword [ebp + CTRL], (1 << 6) | (1 << 5)
    ; The MAC, loaded from the EEPROM into RAL0/RAH0 on reset (5.6.1).
    mov eax, [ebp + RAL0]
    mov [mac], eax
    mov eax, [ebp + RAH0]
    mov [mac + 4], ax
    mov esi, msg_mac
    call puts
    mov esi, mac
    mov ecx, 6
.macb:
    lodsb
    call puthex8
    cmp ecx, 1
    je .macd
    mov al, ':'
    call putc
.macd:
    loop .macb
    mov esi, crlf
    call puts
    ; Receive ring (3.2, 14.4): every descriptor owns a 2048-byte buffer.
    mov edi, RXDESC
    xor ecx, ecx
.rxd:
    mov eax, ecx
    shl eax, 11
    add eax, RXBUF
    mov [edi], eax
    mov dword [edi + 4], 0
    mov dword [edi + 8], 0
    mov dword [edi + 12], 0
    add edi, 16
    inc ecx
    cmp ecx, NDESC
    jb .rxd
    mov dword [ebp + RDBAL], RXDESC
    mov dword [ebp + RDBAH], 0
    mov dword [ebp + RDLEN], NDESC * 16
    mov dword [ebp + RDH], 0
    mov dword [ebp + RDT], NDESC - 1    ; all but one descriptor free (RDH == RDT is none)
    ; RCTL: EN, unicast and multicast promiscuous, broadcast accept, 2048-byte
    ; buffers (BSIZE 00), strip the CRC (SECRC).
    mov dword [ebp + RCTL], (1 << 1) | (1 << 3) | (1 << 4) | (1 << 15) | (1 << 26)
    ; Transmit ring (3.3, 14.5).
    mov edi, TXDESC
    mov ecx, NDESC * 4
    xor eax, eax
    rep stosd
    mov dword [ebp + TDBAL], TXDESC
    mov dword [ebp + TDBAH], 0
    mov dword [ebp + TDLEN], NDESC * 16
    mov dword [ebp + TDH], 0
    mov dword [ebp + TDT], 0
    ; TCTL: EN, pad short packets (PSP), collision threshold 0x10, distance 0x40.
    mov dword [ebp + TCTL], (1 << 1) | (1 << 3) | (0x10 << 4) | (0x40 << 12)
    ; Wait for STATUS.LU (about 2 s at most).
    call timer_start
.link:
    test dword [ebp + STATUS], 1 << 1
    jnz .up
    call timer_expired
    jnc .link
    mov esi, msg_nolink
    jmp fail
.up:
    mov esi, msg_link
    call puts
    ret

; send_frame: TXBUF holds FRAME_LEN bytes; queue them on the next transmit
; descriptor (EOP, IFCS, RS) and wait for DD.
send_frame:
    mov eax, [tx_tail]
    shl eax, 4
    lea edi, [TXDESC + eax]
    mov dword [edi], TXBUF
    mov dword [edi + 4], 0
    mov dword [edi + 8], FRAME_LEN | ((1 | 2 | 8) << 24)  ; length, CSO 0, CMD EOP|IFCS|RS
    mov dword [edi + 12], 0
    mov eax, [tx_tail]
    inc eax
    and eax, NDESC - 1
    mov [tx_tail], eax
    mov [ebp + TDT], eax
    call timer_start
.wait:
    test byte [edi + 12], 1             ; DD
    jnz .done
    call timer_expired
    jnc .wait
    mov esi, msg_notx
    jmp fail
.done:
    ret

; ---- DHCP --------------------------------------------------------------

; send_dhcp: AL = message type (1 DISCOVER, 3 REQUEST). Builds an Ethernet
; broadcast IPv4/UDP 68 -> 67 frame from 0.0.0.0 and sends it. A REQUEST
; carries the offered address (option 50) and the server (option 54).
send_dhcp:
    push eax
    mov edi, TXBUF
    mov ecx, FRAME_LEN
    xor eax, eax
    rep stosb
    mov edi, TXBUF
    ; Ethernet: broadcast, from our MAC, IPv4.
    mov dword [edi], 0xffffffff
    mov word [edi + 4], 0xffff
    mov eax, [mac]
    mov [edi + 6], eax
    mov ax, [mac + 4]
    mov [edi + 10], ax
    mov word [edi + 12], BE16(0x0800)
    ; IPv4 header at 14: version 4, IHL 5, total length, TTL 64, UDP, 0.0.0.0 -> 255.255.255.255.
    mov byte [edi + 14], 0x45
    mov word [edi + 16], BE16(FRAME_LEN - 14)
    mov byte [edi + 22], 64
    mov byte [edi + 23], 17
    mov dword [edi + 30], 0xffffffff
    ; header checksum: one's complement of the one's complement sum of its words
    xor eax, eax
    xor edx, edx
    lea esi, [edi + 14]
    mov ecx, 10
.sum:
    lodsw
    add edx, eax
    loop .sum
    mov eax, edx
    shr eax, 16
    and edx, 0xffff
    add edx, eax
    mov eax, edx
    shr eax, 16
    add edx, eax
    not edx
    mov [edi + 24], dx
    ; UDP at 34: 68 -> 67, length, no checksum (0 is allowed over IPv4).
    mov word [edi + 34], BE16(68)
    mov word [edi + 36], BE16(67)
    mov word [edi + 38], BE16(FRAME_LEN - 34)
    ; BOOTP at 42: BOOTREQUEST, Ethernet, 6-byte addresses, our xid,
    ; the broadcast flag, chaddr = our MAC, the magic cookie.
    lea ebx, [edi + 42]
    mov byte [ebx], 1
    mov byte [ebx + 1], 1
    mov byte [ebx + 2], 6
    mov eax, [xid]
    mov [ebx + 4], eax
    mov word [ebx + 10], BE16(0x8000)
    mov eax, [mac]
    mov [ebx + 28], eax
    mov ax, [mac + 4]
    mov [ebx + 32], ax
    mov dword [ebx + 236], 0x63538263   ; 99.130.83.99
    ; Options (RFC 2132): 53 message type, 12 host name, [50, 54], 255 end.
    lea edi, [ebx + 240]
    pop eax
    mov byte [edi], 53
    mov byte [edi + 1], 1
    mov [edi + 2], al
    add edi, 3
    push eax
    mov esi, hostname
    mov byte [edi], 12
    mov byte [edi + 1], hostname_len
    add edi, 2
    mov ecx, hostname_len
    rep movsb
    pop eax
    cmp al, 3
    jne .end
    mov byte [edi], 50
    mov byte [edi + 1], 4
    mov eax, [offered]
    mov [edi + 2], eax
    mov byte [edi + 6], 54
    mov byte [edi + 7], 4
    mov eax, [server]
    mov [edi + 8], eax
    add edi, 12
.end:
    mov byte [edi], 255
    jmp send_frame

; wait_dhcp: BL = wanted message type. Reads frames for about 2 s; returns
; CF clear with [yiaddr], [server], [got_type] set when a reply to our xid
; of that type comes, CF set on timeout or a NAK ([got_type] = 6).
wait_dhcp:
    mov byte [got_type], 0
    call timer_start
.poll:
    mov eax, [rx_next]
    shl eax, 4
    lea edi, [RXDESC + eax]
    test byte [edi + 12], 1             ; DD: the card wrote a frame here
    jnz .frame
    call timer_expired
    jnc .poll
    stc
    ret
.frame:
    movzx ecx, word [edi + 8]           ; length
    mov esi, [edi]                      ; buffer
    call parse_reply
    ; hand the descriptor back: clear its status, move the tail onto it
    mov dword [edi + 12], 0
    mov eax, [rx_next]
    mov [ebp + RDT], eax
    inc eax
    and eax, NDESC - 1
    mov [rx_next], eax
    mov al, [got_type]
    cmp al, bl
    je .got
    cmp al, 6
    jne .poll
    stc
    ret
.got:
    clc
    ret

; parse_reply: ESI = frame, ECX = length. When it is a DHCP reply (UDP to
; port 68, BOOTREPLY, our xid, the cookie) sets [got_type] (option 53),
; [yiaddr] and [server] (option 54). Keeps EDI, EBX.
parse_reply:
    push edi
    push ebx
    cmp ecx, 14 + 20 + 8 + 240
    jb .out
    cmp word [esi + 12], BE16(0x0800)
    jne .out
    cmp byte [esi + 14], 0x45           ; IPv4 without options (as slirp sends)
    jne .out
    cmp byte [esi + 23], 17             ; UDP
    jne .out
    cmp word [esi + 36], BE16(68)
    jne .out
    lea ebx, [esi + 42]
    cmp byte [ebx], 2                   ; BOOTREPLY
    jne .out
    mov eax, [xid]
    cmp [ebx + 4], eax
    jne .out
    cmp dword [ebx + 236], 0x63538263
    jne .out
    mov eax, [ebx + 16]
    mov [yiaddr], eax
    lea edx, [esi + ecx]                ; end of the frame
    lea edi, [ebx + 240]
    xor ah, ah                          ; message type seen
.opt:
    cmp edi, edx
    jae .done
    mov al, [edi]
    cmp al, 255
    je .done
    cmp al, 0                           ; pad
    jne .long
    inc edi
    jmp .opt
.long:
    lea ecx, [edi + 2]
    cmp ecx, edx
    ja .done
    movzx ecx, byte [edi + 1]
    cmp al, 53
    jne .not53
    mov ah, [edi + 2]
.not53:
    cmp al, 54
    jne .not54
    cmp ecx, 4
    jne .not54
    push eax
    mov eax, [edi + 2]
    mov [server], eax
    pop eax
.not54:
    lea edi, [edi + ecx + 2]
    jmp .opt
.done:
    mov [got_type], ah
.out:
    pop ebx
    pop edi
    ret

; ---- time --------------------------------------------------------------

; timer_start / timer_expired: a deadline of 2^32 TSC ticks (1-2 s at
; today's TSC rates). timer_expired returns CF set once it has passed.
timer_start:
    push eax
    push edx
    rdtsc
    mov [t0], eax
    mov [t0 + 4], edx
    pop edx
    pop eax
    ret
timer_expired:
    push eax
    push edx
    pause
    rdtsc
    sub eax, [t0]
    sbb edx, [t0 + 4]
    cmp edx, 1                          ; CF set while below 2^32 ticks...
    cmc                                 ; ...so CF set once past them
    pop edx
    pop eax
    ret

; ---- output ------------------------------------------------------------

; put_ip: EAX = IPv4 address as it lies in a frame; prints a.b.c.d.
put_ip:
    push eax
    push ecx
    push edx
    mov edx, eax
    mov ecx, 4
.b:
    movzx eax, dl
    call putdec
    shr edx, 8
    cmp ecx, 1
    je .n
    mov al, '.'
    call putc
.n:
    loop .b
    pop edx
    pop ecx
    pop eax
    ret

; putdec: EAX (< 1000) in decimal.
putdec:
    push eax
    push ebx
    push ecx
    push edx
    mov ebx, 10
    xor ecx, ecx
.div:
    xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz .div
.pr:
    pop eax
    add al, '0'
    call putc
    loop .pr
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

; puthex8: AL as 2 hex digits.
puthex8:
    push eax
    push ecx
    mov ecx, 2
    mov ah, al
.d:
    rol ah, 4
    mov al, ah
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .o
    add al, 'a' - '0' - 10
.o:
    call putc
    loop .d
    pop ecx
    pop eax
    ret

%include "lib.inc"

msg_nic:     db "e1000 at 00:", 0
msg_nic2:    db ".0", 13, 10, 0
msg_mac:     db "mac ", 0
msg_link:    db "link up", 13, 10, 0
msg_dhcp:    db "DHCP ", 0
msg_via:     db " via ", 0
msg_nak:     db "DHCP NAK, starting again", 13, 10, 0
msg_failed:  db "DHCP failed: ", 0
msg_nonic:   db "no e1000 (8086:100e) on PCI bus 0", 0
msg_nolink:  db "the link stayed down", 0
msg_notx:    db "the card did not send the frame", 0
msg_nooffer: db "no DHCPOFFER after 5 DISCOVERs", 0
msg_noack:   db "no DHCPACK after 5 REQUESTs", 0
crlf:        db 13, 10, 0
hostname:    db "vireo-dhcp"
hostname_len equ $ - hostname
align 4
xid:      dd 0x5643494e               ; any value; replies must carry it
pci_addr: dd 0
tries:    dd 0
tx_tail:  dd 0
rx_next:  dd 0
offered:  dd 0
yiaddr:   dd 0
server:   dd 0
got_type: db 0
align 4
t0:       dd 0, 0
mac:      times 8 db 0
