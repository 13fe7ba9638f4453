; A multiboot v1 kernel (a.out kludge) for the PC board that gets a DHCP
; lease through an Intel 82540EM (e1000) or a modern virtio-net card, polled,
; no interrupts: finds the first such card by scanning PCI bus 0, resets it,
; sets up 8-entry receive and transmit rings, sends DHCPDISCOVER, reads the
; OFFER, sends DHCPREQUEST, reads the ACK, prints
;     DHCP <your address> via <server address>
; on COM1 and idles (HLT). Failures print "DHCP failed: <why>" and idle too.
; Written from Intel's 8254x Software Developer's Manual and the virtio 1.x
; specification (sections in the comments) and RFC 2131/2132. SeaBIOS has
; given the card its BARs (the multiboot ROM path); the kernel turns on memory
; decoding and bus mastering.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000

; Buffers in RAM above the image (no paging: linear = physical).
%define RXDESC 0x200000                ; 8 x 16-byte legacy descriptors (ring length a multiple of 128)
%define TXDESC 0x200080
%define RXBUF  0x201000                ; 8 x 2048 bytes
%define VHDR   0x206000                ; virtio-net: the 12-byte header before the frame (5.1.6)
%define TXBUF  (VHDR + 12)             ; the frame to send
%define RXQ    0x210000                ; virtio: receive queue (descriptors, avail at +0x100, used at +0x200)
%define TXQ    0x211000                ; virtio: transmit queue, the same layout
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
    call find_nic
    cmp byte [nic_kind], 1
    jne .virtio
    call e1000_init
    jmp .ready
.virtio:
    call vnet_init
.ready:
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

; pci_write16: EAX = config address, CX = the word written at its low half.
pci_write16:
    push edx
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    mov ax, cx
    out dx, ax
    pop edx
    ret

; find_nic: bus 0, function 0 of devices 0..31: the first 8086:100E (e1000,
; [nic_kind] 1) or 1af4:1041 (virtio-net, [nic_kind] 2). [pci_addr] = its
; config address; memory decoding and bus mastering turned on. None: fails.
find_nic:
    xor ecx, ecx
.dev:
    mov eax, ecx
    shl eax, 11
    or eax, 0x80000000
    mov [pci_addr], eax
    call pci_read
    mov esi, msg_e1000
    mov byte [nic_kind], 1
    cmp eax, 0x100e8086
    je .it
    mov esi, msg_vnet
    mov byte [nic_kind], 2
    cmp eax, 0x10411af4
    je .it
    inc ecx
    cmp ecx, 32
    jb .dev
    mov esi, msg_nonic
    jmp fail
.it:
    call puts
    mov esi, msg_at
    call puts
    mov al, cl
    call puthex8
    mov esi, msg_nic2
    call puts
    ; Command register (offset 4): memory space (bit 1) and bus master (bit 2);
    ; the command word only (status, the high half, is write-1-to-clear).
    mov eax, [pci_addr]
    or eax, 4
    call pci_read
    or ax, 0x0006
    mov cx, ax
    mov eax, [pci_addr]
    or eax, 4
    call pci_write16
    ret

; bar_base: EAX = BAR index -> EAX = its memory base. A 64-bit BAR placed
; above 4 GiB cannot be reached from this 32-bit kernel without paging: fails.
bar_base:
    push ecx
    lea ecx, [eax * 4 + 0x10]
    mov eax, [pci_addr]
    or eax, ecx
    call pci_read
    test al, 1
    jnz .io
    push eax
    and al, 6
    cmp al, 4                           ; 64-bit: the next BAR is the high half
    pop eax
    jne .low
    push eax
    mov eax, [pci_addr]
    lea eax, [eax + ecx + 4]
    call pci_read
    test eax, eax
    pop eax
    jnz .high
.low:
    and eax, 0xfffffff0
    pop ecx
    ret
.io:
    mov esi, msg_iobar
    jmp fail
.high:
    mov esi, msg_highbar
    jmp fail

; ---- e1000 -------------------------------------------------------------

e1000_init:
    xor eax, eax                        ; BAR0: the registers
    call bar_base
    mov ebp, eax
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
    call print_mac
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

; send_frame: TXBUF holds FRAME_LEN bytes: send them on the card.
send_frame:
    cmp byte [nic_kind], 1
    jne vnet_send
; e1000_send: queue them on the next transmit descriptor (EOP, IFCS, RS) and wait for DD.
e1000_send:
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
    call rx_poll
    jnc .frame
    call timer_expired
    jnc .poll
    stc
    ret
.frame:
    call parse_reply
    call rx_release
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

; rx_poll: CF clear with ESI = the next received frame, ECX = its length;
; CF set when none has come. rx_release gives its buffer back to the card.
; Both keep EBX.
rx_poll:
    cmp byte [nic_kind], 1
    jne vnet_rx_poll
    mov eax, [rx_next]
    shl eax, 4
    lea edi, [RXDESC + eax]
    test byte [edi + 12], 1             ; DD: the card wrote a frame here
    jz .none
    movzx ecx, word [edi + 8]           ; length
    mov esi, [edi]                      ; buffer
    clc
    ret
.none:
    stc
    ret
rx_release:
    cmp byte [nic_kind], 1
    jne vnet_rx_release
    ; clear the descriptor's status, move the tail onto it
    mov eax, [rx_next]
    shl eax, 4
    mov dword [RXDESC + eax + 12], 0
    mov eax, [rx_next]
    mov [ebp + RDT], eax
    inc eax
    and eax, NDESC - 1
    mov [rx_next], eax
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

; ---- virtio-net (virtio 1.x, PCI transport 4.1) -----------------------

; Common configuration fields (4.1.4.3).
%define VC_DFSEL   0x00
%define VC_DF      0x04
%define VC_GFSEL   0x08
%define VC_GF      0x0c
%define VC_STATUS  0x14
%define VC_QSEL    0x16
%define VC_QSIZE   0x18
%define VC_QMSIX   0x1a
%define VC_QENABLE 0x1c
%define VC_QNOTOFF 0x1e
%define VC_QDESC   0x20
%define VC_QAVAIL  0x28
%define VC_QUSED   0x30

; vnet_init: find the common, notify and device configuration structures
; through the vendor capabilities (4.1.4), reset, negotiate VERSION_1 (and
; MAC), set up queue 0 (receive, 8 device-writable 2048-byte buffers posted)
; and queue 1 (transmit), DRIVER_OK (3.1.1). EBP = the common configuration.
vnet_init:
    ; Capability list: pointer at 0x34 (status bit 4 says there is one).
    mov eax, [pci_addr]
    or eax, 0x34
    call pci_read
    movzx ebx, al
.cap:
    and ebx, 0xfc
    jz .caps_done
    mov eax, [pci_addr]
    or eax, ebx
    call pci_read                       ; vndr, next, len, cfg_type
    mov edx, eax
    cmp dl, 0x09                        ; vendor-specific: a virtio structure
    jne .next
    mov eax, [pci_addr]
    lea eax, [eax + ebx + 4]
    call pci_read                       ; bar
    movzx eax, al
    call bar_base
    push eax
    mov eax, [pci_addr]
    lea eax, [eax + ebx + 8]
    call pci_read                       ; offset in the BAR
    pop ecx
    add ecx, eax                        ; ECX = where the structure is
    mov eax, edx
    shr eax, 24                         ; cfg_type
    cmp al, 1
    jne .not_common
    mov [vcommon], ecx
.not_common:
    cmp al, 4
    jne .not_device
    mov [vdevice], ecx
.not_device:
    cmp al, 2
    jne .next
    mov [vnotify], ecx
    mov eax, [pci_addr]
    lea eax, [eax + ebx + 16]
    call pci_read                       ; notify_off_multiplier
    mov [vnotmul], eax
.next:
    movzx ebx, dh                       ; cap_next
    jmp .cap
.caps_done:
    mov ebp, [vcommon]
    test ebp, ebp
    jz .nocaps
    cmp dword [vnotify], 0
    je .nocaps
    ; Reset, then ACKNOWLEDGE | DRIVER (3.1.1).
    mov byte [ebp + VC_STATUS], 0
    mov ecx, 100000
.rst:
    cmp byte [ebp + VC_STATUS], 0
    je .reset
    loop .rst
    mov esi, msg_noreset
    jmp fail
.reset:
    mov byte [ebp + VC_STATUS], 1
    mov byte [ebp + VC_STATUS], 1 | 2
    ; Features: MAC (bit 5) when offered, VERSION_1 (bit 32).
    mov dword [ebp + VC_DFSEL], 0
    mov eax, [ebp + VC_DF]
    and eax, 1 << 5
    mov [vfeat], eax
    mov dword [ebp + VC_GFSEL], 0
    mov [ebp + VC_GF], eax
    mov dword [ebp + VC_DFSEL], 1
    test dword [ebp + VC_DF], 1
    jz .nov1
    mov dword [ebp + VC_GFSEL], 1
    mov dword [ebp + VC_GF], 1
    mov byte [ebp + VC_STATUS], 1 | 2 | 8      ; FEATURES_OK
    test byte [ebp + VC_STATUS], 8
    jz .nofeat
    ; The queues.
    mov edi, RXQ
    xor eax, eax
    call vq_setup
    mov edi, TXQ
    mov eax, 1
    call vq_setup
    ; Receive buffers: descriptor i -> RXBUF + 2048 i, device-writable; all in the avail ring.
    xor ecx, ecx
.rxd:
    mov eax, ecx
    shl eax, 4
    mov edx, ecx
    shl edx, 11
    add edx, RXBUF
    mov [RXQ + eax], edx
    mov dword [RXQ + eax + 4], 0
    mov dword [RXQ + eax + 8], 2048
    mov dword [RXQ + eax + 12], 2       ; flags WRITE, next 0
    mov [RXQ + 0x100 + 4 + ecx * 2], cx
    inc ecx
    cmp ecx, NDESC
    jb .rxd
    mov word [RXQ + 0x100 + 2], NDESC   ; avail idx
    mov byte [ebp + VC_STATUS], 1 | 2 | 8 | 4  ; DRIVER_OK
    xor eax, eax
    call vq_notify
    ; The MAC from the device configuration (5.1.4), else a fixed local one.
    mov dword [mac], 0x00545202         ; 02:52:54:00:00:01 (locally administered)
    mov word [mac + 4], 0x0100
    cmp dword [vfeat], 0
    je .mac_done
    mov esi, [vdevice]
    test esi, esi
    jz .mac_done
    mov eax, [esi]
    mov [mac], eax
    mov ax, [esi + 4]
    mov [mac + 4], ax
.mac_done:
    call print_mac
    mov esi, msg_vready
    call puts
    ret
.nocaps:
    mov esi, msg_nocaps
    jmp fail
.nov1:
    mov esi, msg_nov1
    jmp fail
.nofeat:
    mov esi, msg_nofeat
    jmp fail

; vq_setup: EAX = queue index, EDI = its memory (descriptors at +0,
; avail at +0x100, used at +0x200, cleared here); size NDESC, no MSI-X vector.
vq_setup:
    push edi
    push eax
    mov ecx, 0x300 / 4
    xor eax, eax
    rep stosd
    pop eax
    pop edi
    mov [ebp + VC_QSEL], ax
    cmp word [ebp + VC_QSIZE], NDESC
    jb .small
    mov word [ebp + VC_QSIZE], NDESC
    mov word [ebp + VC_QMSIX], 0xffff
    mov [ebp + VC_QDESC], edi
    mov dword [ebp + VC_QDESC + 4], 0
    lea ecx, [edi + 0x100]
    mov [ebp + VC_QAVAIL], ecx
    mov dword [ebp + VC_QAVAIL + 4], 0
    lea ecx, [edi + 0x200]
    mov [ebp + VC_QUSED], ecx
    mov dword [ebp + VC_QUSED + 4], 0
    movzx ecx, word [ebp + VC_QNOTOFF]
    mov [vqnotoff + eax * 4], ecx
    mov word [ebp + VC_QENABLE], 1
    ret
.small:
    mov esi, msg_qsmall
    jmp fail

; vq_notify: EAX = queue index: write it at notify + queue_notify_off * multiplier (4.1.4.4).
vq_notify:
    push eax
    push edx
    mov edx, [vqnotoff + eax * 4]
    imul edx, [vnotmul]
    add edx, [vnotify]
    mov [edx], ax
    pop edx
    pop eax
    ret

; vnet_send: the 12-byte header (all zero: no offloads) and the frame in one
; device-readable descriptor on queue 1; waits for the used ring to move.
vnet_send:
    mov eax, [tx_tail]
    mov edi, eax
    shl edi, 4
    add edi, TXQ
    mov dword [edi], VHDR
    mov dword [edi + 4], 0
    mov dword [edi + 8], 12 + FRAME_LEN
    mov dword [edi + 12], 0
    mov dword [VHDR], 0
    mov dword [VHDR + 4], 0
    mov dword [VHDR + 8], 0
    movzx ecx, word [TXQ + 0x100 + 2]   ; avail idx
    mov edx, ecx
    and edx, NDESC - 1
    mov [TXQ + 0x100 + 4 + edx * 2], ax
    inc ecx
    mov [TXQ + 0x100 + 2], cx
    inc eax
    and eax, NDESC - 1
    mov [tx_tail], eax
    mov eax, 1
    call vq_notify
    call timer_start
.wait:
    cmp [TXQ + 0x200 + 2], cx           ; used idx caught up
    je .done
    call timer_expired
    jnc .wait
    mov esi, msg_notx
    jmp fail
.done:
    ret

; vnet_rx_poll / vnet_rx_release: rx_poll and rx_release for virtio-net.
vnet_rx_poll:
    mov ax, [RXQ + 0x200 + 2]           ; used idx
    cmp ax, [rx_used]
    je .none
    movzx eax, word [rx_used]
    and eax, NDESC - 1
    mov edx, [RXQ + 0x200 + 4 + eax * 8]      ; id
    mov ecx, [RXQ + 0x200 + 4 + eax * 8 + 4]  ; length written, header included
    and edx, NDESC - 1
    mov [rx_id], edx
    mov esi, edx
    shl esi, 11
    add esi, RXBUF + 12
    sub ecx, 12
    jae .ok
    xor ecx, ecx
.ok:
    clc
    ret
.none:
    stc
    ret
vnet_rx_release:
    movzx eax, word [RXQ + 0x100 + 2]   ; avail idx
    mov edx, eax
    and edx, NDESC - 1
    mov ecx, [rx_id]
    mov [RXQ + 0x100 + 4 + edx * 2], cx
    inc eax
    mov [RXQ + 0x100 + 2], ax
    inc word [rx_used]
    xor eax, eax
    jmp vq_notify

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

; print_mac: "mac xx:xx:xx:xx:xx:xx".
print_mac:
    mov esi, msg_mac
    call puts
    mov esi, mac
    mov ecx, 6
.b:
    lodsb
    call puthex8
    cmp ecx, 1
    je .d
    mov al, ':'
    call putc
.d:
    loop .b
    mov esi, crlf
    jmp puts

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

%include "lib.inc"

msg_e1000:   db "e1000", 0
msg_vnet:    db "virtio-net", 0
msg_at:      db " at 00:", 0
msg_nic2:    db ".0", 13, 10, 0
msg_mac:     db "mac ", 0
msg_link:    db "link up", 13, 10, 0
msg_vready:  db "queues ready", 13, 10, 0
msg_dhcp:    db "DHCP ", 0
msg_via:     db " via ", 0
msg_nak:     db "DHCP NAK, starting again", 13, 10, 0
msg_failed:  db "DHCP failed: ", 0
msg_nonic:   db "no e1000 (8086:100e) or virtio-net (1af4:1041) on PCI bus 0", 0
msg_iobar:   db "an I/O BAR where memory was expected", 0
msg_highbar: db "a 64-bit BAR above 4 GiB (this kernel has no paging)", 0
msg_nocaps:  db "virtio-net without common and notify structures", 0
msg_nov1:    db "virtio-net without VERSION_1", 0
msg_nofeat:  db "virtio-net refused FEATURES_OK", 0
msg_noreset: db "virtio-net did not reset", 0
msg_qsmall:  db "virtio-net queue smaller than 8", 0
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
vcommon:  dd 0
vdevice:  dd 0
vnotify:  dd 0
vnotmul:  dd 0
vfeat:    dd 0
vqnotoff: dd 0, 0
rx_id:    dd 0
rx_used:  dw 0
got_type: db 0
nic_kind: db 0
align 4
t0:       dd 0, 0
mac:      times 8 db 0
