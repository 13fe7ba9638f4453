; A multiboot v1 kernel (a.out kludge) for the PC board that reports what the
; console's pointer and keyboard send, polled, no interrupts:
;   - USB: finds the UHCI on PCI bus 0, resets it, builds a frame list whose
;     every entry is one queue head, resets and enables the root port with a
;     device, reads its device descriptor, gives it address 1, reads its
;     configuration, configures it and then keeps an IN TD on its interrupt
;     endpoint. Each report (the Vireo tablet's 7 bytes: buttons, X LE16,
;     Y LE16, wheel int8, AC Pan int8) is printed on COM1 as
;         PTR x=<0..32767> y=<0..32767> b=<buttons> w=<wheel> p=<pan>
;   - keyboard: reads the i8042 (scan code set 2 translated to set 1 by the
;     controller, the PC default: command byte bit 6, which it turns on),
;     keeps Shift, maps US-layout keys to ASCII and prints each line typed as
;         KEY <text>
;     on Enter (Backspace removes the last character).
; "INPUT ready" once both are set up; failures print "INPUT failed: <why>"
; and idle. Written from Intel's UHCI Design Guide rev 1.1 (sections in the
; comments), USB 2.0 chapter 9 and HID 1.11.
bits 32
%include "macros.inc"
%define LOAD_ADDR 0x100000

; Schedule memory above the image (no paging: linear = physical).
%define FRAMELIST 0x200000              ; 1024 frame pointers, 4 KiB aligned (3.1)
%define QH        0x201000              ; the one queue head every frame points at (3.3)
%define TD0       0x201100              ; control transfer: SETUP, DATA, STATUS TDs, 32 bytes apart
%define TD1       0x201120
%define TD2       0x201140
%define INTTD     0x201200              ; the interrupt IN TD
%define SETUPBUF  0x201300
%define DATABUF   0x201400              ; 64 bytes
%define REPORT    0x201500

; UHCI I/O registers (2.1).
%define USBCMD    0x00
%define USBSTS    0x02
%define USBINTR   0x04
%define FRNUM     0x06
%define FLBASEADD 0x08
%define PORTSC1   0x10
; PORTSC bits (2.1.7).
%define PORT_CCS  0x0001
%define PORT_CSC  0x0002
%define PORT_PE   0x0004
%define PORT_PEC  0x0008
%define PORT_PR   0x0200
; Link pointer bits (3.1, 3.2.1).
%define LINK_T    1
%define LINK_QH   2
%define LINK_VF   4
; TD control/status (3.2.2) and token (3.2.3).
%define TD_ACTIVE (1 << 23)
%define TD_ERRORS (0x76 << 16)          ; stalled, data buffer, babble, CRC/time-out, bitstuff
%define TD_CERR3  (3 << 27)
%define PID_SETUP 0x2d
%define PID_IN    0x69
%define PID_OUT   0xe1
%define DEV_ADDR  1
%define LINE_MAX  200                   ; characters kept of a typed line

org LOAD_ADDR
    MULTIBOOT_AOUT start
start:
    cli
    mov esp, 0x90000
    call find_uhci
    call uhci_start
    call port_reset
    call enumerate
    call kbd_init
    mov esi, msg_ready
    call puts
    call arm_int
.poll:
    call poll_tablet
    call poll_kbd
    jmp .poll

fail:
    push esi
    mov esi, msg_failed
    call puts
    pop esi
    call puts
    mov esi, crlf
    call puts
idle:
    cli
    hlt
    jmp idle

; ---- PCI ---------------------------------------------------------------

; find_uhci: the first function on bus 0 of class 0x0c0300 (serial bus, USB,
; UHCI). [iobase] = its BAR4 (I/O, 32 bytes); I/O decoding and bus mastering
; turned on.
find_uhci:
    xor ecx, ecx                        ; device << 3 | function
.fn:
    mov eax, ecx
    shl eax, 8
    or eax, 0x80000008                  ; class code, subclass, prog-if, revision
    call pci_read
    shr eax, 8
    cmp eax, 0x0c0300
    je .it
    inc ecx
    cmp ecx, 256
    jb .fn
    mov esi, msg_nouhci
    jmp fail
.it:
    shl ecx, 8
    or ecx, 0x80000000
    mov eax, ecx
    or eax, 0x20                        ; BAR4
    call pci_read
    test al, 1
    jz .notio
    and eax, 0xffe0
    mov [iobase], eax
    mov eax, ecx
    or eax, 4                           ; command: I/O space (bit 0), bus master (bit 2)
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in ax, dx
    or ax, 0x0005
    out dx, ax
    mov esi, msg_uhci
    call puts
    mov eax, ecx
    shr eax, 11
    and al, 31
    call puthex8
    mov al, '.'
    call putc
    mov eax, ecx
    shr eax, 8
    and al, 7
    add al, '0'
    call putc
    mov esi, msg_io
    call puts
    mov eax, [iobase]
    call puthex32
    mov esi, crlf
    call puts
    ret
.notio:
    mov esi, msg_notio
    jmp fail

; ---- UHCI --------------------------------------------------------------

; uhci_start: host controller reset (2.1.1 HCRESET), every frame list entry
; pointing at the one queue head (empty for now), then run.
uhci_start:
    mov edx, [iobase]
    mov ax, 2                           ; HCRESET
    out dx, ax
    mov ecx, 100000
.rst:
    in ax, dx
    test ax, 2
    jz .reset
    loop .rst
    mov esi, msg_hcreset
    jmp fail
.reset:
    mov dword [QH], LINK_T              ; no next queue head
    mov dword [QH + 4], LINK_T          ; no TD yet
    mov edi, FRAMELIST
    mov eax, QH | LINK_QH
    mov ecx, 1024
    rep stosd
    add dx, USBINTR
    xor ax, ax                          ; polled: no interrupts
    out dx, ax
    mov edx, [iobase]
    add dx, FRNUM
    out dx, ax
    mov edx, [iobase]
    add dx, FLBASEADD
    mov eax, FRAMELIST
    out dx, eax
    mov edx, [iobase]
    add dx, USBSTS
    mov ax, 0x3f                        ; clear every status bit (write 1 to clear)
    out dx, ax
    mov edx, [iobase]
    mov ax, 0x00c1                      ; Run/Stop, Configure Flag, 64-byte max packet
    out dx, ax
    ret

; wait_frames: ECX = frames (1 ms each) counted on FRNUM.
wait_frames:
    push eax
    push ebx
    push edx
    mov edx, [iobase]
    add dx, FRNUM
    in ax, dx
    mov bx, ax
.next:
    in ax, dx
    cmp ax, bx
    je .next
    mov bx, ax
    loop .next
    pop edx
    pop ebx
    pop eax
    ret

; port_reset: the first root port with a device on it: reset (held 50 ms,
; USB 2.0 7.1.7.5), then enabled with its change bits cleared (2.1.7).
port_reset:
    mov edx, [iobase]
    add dx, PORTSC1
    mov ecx, 2
.port:
    in ax, dx
    test ax, PORT_CCS
    jnz .found
    add dx, 2
    loop .port
    mov esi, msg_nodev
    jmp fail
.found:
    mov [portsc], edx
    mov ax, PORT_PR
    out dx, ax
    mov ecx, 50
    call wait_frames
    xor ax, ax
    out dx, ax
    mov ecx, 2
    call wait_frames
    mov ax, PORT_PE | PORT_CSC | PORT_PEC
    out dx, ax
    mov ecx, 10
    call wait_frames
    in ax, dx
    test ax, PORT_PE
    jnz .enabled
    mov esi, msg_noenable
    jmp fail
.enabled:
    mov ecx, 10                         ; reset recovery (USB 2.0 9.2.6.2)
    call wait_frames
    ret

; control: ESI = an 8-byte SETUP packet, BL = device address. A control
; transfer on endpoint 0 with the data stage (IN, wLength bytes to DATABUF,
; at most 64) if wLength is not 0 (3.2, USB 2.0 8.5.3). Fails on an error.
control:
    push edi
    mov edi, SETUPBUF
    movsd
    movsd
    sub esi, 8
    movzx ecx, bl
    shl ecx, 8                          ; token: device address
    ; SETUP, DATA0, 8 bytes
    mov dword [TD0], TD1 | LINK_VF
    mov dword [TD0 + 4], TD_ACTIVE | TD_CERR3
    mov eax, ecx
    or eax, (7 << 21) | PID_SETUP
    mov [TD0 + 8], eax
    mov dword [TD0 + 12], SETUPBUF
    movzx eax, word [esi + 6]           ; wLength
    test eax, eax
    jz .nodata
    ; DATA1 IN, wLength bytes
    mov dword [TD0], TD1 | LINK_VF
    mov dword [TD1], TD2 | LINK_VF
    mov dword [TD1 + 4], TD_ACTIVE | TD_CERR3
    dec eax
    shl eax, 21
    or eax, ecx
    or eax, (1 << 19) | PID_IN
    mov [TD1 + 8], eax
    mov dword [TD1 + 12], DATABUF
    mov eax, ecx
    or eax, (0x7ff << 21) | (1 << 19) | PID_OUT  ; status: zero-length DATA1 OUT
    jmp .status
.nodata:
    mov dword [TD0], TD2 | LINK_VF
    mov dword [TD1 + 4], 0
    mov eax, ecx
    or eax, (0x7ff << 21) | (1 << 19) | PID_IN   ; status: zero-length DATA1 IN
.status:
    mov [TD2 + 8], eax
    mov dword [TD2], LINK_T
    mov dword [TD2 + 4], TD_ACTIVE | TD_CERR3
    mov dword [TD2 + 12], 0
    mov dword [QH + 4], TD0             ; the queue head's element: the SETUP TD
    mov ecx, 1000                       ; about a second
.wait:
    mov eax, [TD0 + 4]
    or eax, [TD1 + 4]
    or eax, [TD2 + 4]
    test eax, TD_ERRORS
    jnz .error
    test dword [TD2 + 4], TD_ACTIVE
    jz .done
    push ecx
    mov ecx, 1
    call wait_frames
    pop ecx
    loop .wait
    mov esi, msg_ctltimeout
    jmp .fail
.error:
    mov esi, msg_ctlerror
.fail:
    mov dword [QH + 4], LINK_T
    push esi
    mov esi, msg_failed
    call puts
    mov esi, msg_request
    call puts
    mov al, [SETUPBUF + 1]
    call puthex8
    pop esi
    call puts
    mov esi, crlf
    call puts
    jmp idle
.done:
    pop edi
    ret

; enumerate: USB 2.0 9.1.2: the default address, the device descriptor,
; SET_ADDRESS, the configuration descriptor (its first IN interrupt
; endpoint), SET_CONFIGURATION.
enumerate:
    xor bl, bl
    mov esi, req_devdesc
    call control
    mov esi, msg_device
    call puts
    mov ax, [DATABUF + 8]               ; idVendor
    call puthex16
    mov al, ':'
    call putc
    mov ax, [DATABUF + 10]              ; idProduct
    call puthex16
    mov esi, msg_onport
    call puts
    mov eax, [portsc]
    sub eax, [iobase]
    sub al, PORTSC1 - 2
    shr al, 1
    add al, '0'
    call putc
    mov esi, crlf
    call puts
    xor bl, bl
    mov esi, req_setaddr
    call control
    mov ecx, 2                          ; SET_ADDRESS recovery (9.2.6.3)
    call wait_frames
    mov bl, DEV_ADDR
    mov esi, req_config
    call control
    ; Walk the descriptors for the first endpoint (type 5) that is IN and interrupt.
    movzx ecx, word [DATABUF + 2]       ; wTotalLength
    cmp ecx, 64
    jbe .len
    mov ecx, 64
.len:
    mov esi, DATABUF
    lea edx, [esi + ecx]
.desc:
    movzx eax, byte [esi]
    test eax, eax
    jz .noep
    cmp byte [esi + 1], 5
    jne .skip
    test byte [esi + 2], 0x80           ; IN
    jz .skip
    mov ah, [esi + 3]
    and ah, 3
    cmp ah, 3                           ; interrupt
    jne .skip
    mov al, [esi + 2]
    and al, 0x0f
    mov [int_ep], al
    mov ax, [esi + 4]
    mov [int_max], ax
    jmp .ep
.skip:
    add esi, eax
    cmp esi, edx
    jb .desc
.noep:
    mov esi, msg_noep
    jmp fail
.ep:
    mov al, [DATABUF + 5]               ; bConfigurationValue
    mov [req_setconf + 2], al
    mov bl, DEV_ADDR
    mov esi, req_setconf
    call control
    mov esi, msg_configured
    call puts
    mov al, [int_ep]
    or al, 0x80
    call puthex8
    mov esi, crlf
    call puts
    ret

; arm_int: the interrupt IN TD (DATA0/1 as [toggle]) as the queue head's element.
arm_int:
    mov dword [INTTD], LINK_T
    mov dword [INTTD + 4], TD_ACTIVE | TD_CERR3
    movzx eax, word [int_max]
    dec eax
    and eax, 0x7ff
    shl eax, 21
    movzx ecx, byte [int_ep]
    shl ecx, 15
    or eax, ecx
    movzx ecx, byte [toggle]
    shl ecx, 19
    or eax, ecx
    or eax, (DEV_ADDR << 8) | PID_IN
    mov [INTTD + 8], eax
    mov dword [INTTD + 12], REPORT
    mov dword [QH + 4], INTTD
    ret

; poll_tablet: a finished interrupt TD: print the report, flip the data
; toggle, arm it again. An error is printed and the TD armed again.
poll_tablet:
    mov eax, [INTTD + 4]
    test eax, TD_ACTIVE
    jnz .ret
    test eax, TD_ERRORS
    jnz .error
    inc eax
    and eax, 0x7ff                      ; ActLen is n - 1
    xor byte [toggle], 1
    cmp eax, 7
    jb .rearm
    mov esi, msg_ptr
    call puts
    movzx eax, word [REPORT + 1]
    call putdec
    mov esi, msg_y
    call puts
    movzx eax, word [REPORT + 3]
    call putdec
    mov esi, msg_b
    call puts
    movzx eax, byte [REPORT]
    call putdec
    mov esi, msg_w
    call puts
    movsx eax, byte [REPORT + 5]
    call putsdec
    mov esi, msg_p
    call puts
    movsx eax, byte [REPORT + 6]
    call putsdec
    mov esi, crlf
    call puts
.rearm:
    jmp arm_int
.error:
    mov esi, msg_interr
    call puts
    call puthex32
    mov esi, crlf
    call puts
    jmp arm_int
.ret:
    ret

; ---- i8042 keyboard ------------------------------------------------------

; kbd_init: drop whatever waits in the controller, then scan code
; translation on (command byte bit 6) and both interrupts off (this kernel polls).
kbd_init:
    mov ecx, 64
.flush:
    in al, 0x64
    test al, 1
    jz .empty
    in al, 0x60
    loop .flush
.empty:
    mov al, 0x20                        ; read the command byte
    call kbd_cmd
.rd:
    in al, 0x64
    test al, 1
    jz .rd
    in al, 0x60
    and al, ~0x03
    or al, 0x40
    mov ah, al
    mov al, 0x60                        ; write the command byte
    call kbd_cmd
    call kbd_wait_in
    mov al, ah
    out 0x60, al
    ret

; kbd_cmd: AL = controller command, once its input buffer is empty.
kbd_cmd:
    call kbd_wait_in
    out 0x64, al
    ret

kbd_wait_in:
    push eax
.w:
    in al, 0x64
    test al, 2
    jnz .w
    pop eax
    ret

; poll_kbd: one byte from the keyboard, if any (mouse bytes are dropped).
; Set 1: bit 7 = release; 0xE0 starts an extended key (keypad Enter and
; keypad / count, the rest are not text).
poll_kbd:
    in al, 0x64
    test al, 1
    jz .ret
    test al, 0x20                       ; from the mouse
    jnz .drop
    in al, 0x60
    cmp al, 0xe0
    je .ext
    cmp byte [e0], 0
    mov byte [e0], 0                    ; (MOV leaves the flags)
    jne .extended
    cmp al, 0x2a                        ; left Shift
    je .shift_down
    cmp al, 0x36                        ; right Shift
    je .shift_down
    cmp al, 0xaa
    je .shift_up
    cmp al, 0xb6
    je .shift_up
    test al, 0x80
    jnz .ret
    cmp al, 0x1c
    je .enter
    cmp al, 0x0e
    je .backspace
    cmp al, KEYMAP_LEN
    jae .ret
    movzx ebx, al
    mov al, [keymap + ebx]
    cmp byte [shift], 0
    je .char
    mov al, [keymap_shift + ebx]
.char:
    test al, al
    jz .ret
    movzx ebx, byte [linelen]
    cmp ebx, LINE_MAX
    jae .ret
    mov [line + ebx], al
    inc byte [linelen]
    ret
.extended:
    cmp al, 0x1c                        ; keypad Enter
    je .enter
    cmp al, 0x35                        ; keypad /
    jne .ret
    mov al, '/'
    jmp .char
.ext:
    mov byte [e0], 1
    ret
.shift_down:
    mov byte [shift], 1
    ret
.shift_up:
    mov byte [shift], 0
    ret
.backspace:
    cmp byte [linelen], 0
    je .ret
    dec byte [linelen]
    ret
.enter:
    mov esi, msg_key
    call puts
    movzx ecx, byte [linelen]
    mov esi, line
    jecxz .eol
.out:
    lodsb
    call putc
    loop .out
.eol:
    mov esi, crlf
    call puts
    mov byte [linelen], 0
    ret
.drop:
    in al, 0x60
.ret:
    ret

; ---- output --------------------------------------------------------------

puthex16:
    push eax
    xchg al, ah
    call puthex8
    xchg al, ah
    call puthex8
    pop eax
    ret

; putsdec: EAX signed, in decimal.
putsdec:
    test eax, eax
    jns putdec
    push eax
    mov al, '-'
    call putc
    pop eax
    push eax
    neg eax
    call putdec
    pop eax
    ret

%include "lib.inc"

; US layout, scan code set 1 make codes 0x00..0x39 (0 = no character).
keymap:
    db 0, 0, "1234567890-=", 0, 0
    db "qwertyuiop[]", 0, 0
    db "asdfghjkl;'`", 0, '\'
    db "zxcvbnm,./", 0, '*', 0, ' '
KEYMAP_LEN equ $ - keymap
keymap_shift:
    db 0, 0, "!@#$%^&*()_+", 0, 0
    db "QWERTYUIOP{}", 0, 0
    db "ASDFGHJKL:", '"', "~", 0, "|"
    db "ZXCVBNM<>?", 0, '*', 0, ' '
%if ($ - keymap_shift) != KEYMAP_LEN || KEYMAP_LEN != 0x3a
%error "keymap tables must cover scan codes 0x00..0x39"
%endif

req_devdesc: db 0x80, 6, 0, 1, 0, 0, 18, 0         ; GET_DESCRIPTOR(DEVICE), 18 bytes
req_setaddr: db 0x00, 5, DEV_ADDR, 0, 0, 0, 0, 0   ; SET_ADDRESS
req_config:  db 0x80, 6, 0, 2, 0, 0, 64, 0         ; GET_DESCRIPTOR(CONFIGURATION), up to 64 bytes
req_setconf: db 0x00, 9, 1, 0, 0, 0, 0, 0          ; SET_CONFIGURATION (value filled in)

msg_uhci:       db "UHCI at 00:", 0
msg_io:         db " io 0x", 0
msg_device:     db "USB device ", 0
msg_onport:     db " on port ", 0
msg_configured: db "configured, interrupt endpoint 0x", 0
msg_ready:      db "INPUT ready", 13, 10, 0
msg_ptr:        db "PTR x=", 0
msg_y:          db " y=", 0
msg_b:          db " b=", 0
msg_w:          db " w=", 0
msg_p:          db " p=", 0
msg_key:        db "KEY ", 0
msg_interr:     db "PTR error 0x", 0
msg_failed:     db "INPUT failed: ", 0
msg_nouhci:     db "no UHCI (class 0c0300) on PCI bus 0", 0
msg_notio:      db "the UHCI's BAR4 is not an I/O BAR", 0
msg_hcreset:    db "the UHCI stayed in reset", 0
msg_nodev:      db "no device on either root port", 0
msg_noenable:   db "the root port did not enable", 0
msg_request:    db "request 0x", 0
msg_ctltimeout: db " timed out", 0
msg_ctlerror:   db " failed (stall or bus error)", 0
msg_noep:       db "no interrupt IN endpoint in the configuration", 0
crlf:           db 13, 10, 0

iobase:  dd 0
portsc:  dd 0
int_max: dw 8
int_ep:  db 1
toggle:  db 0
shift:   db 0
e0:      db 0
linelen: db 0
line:    times LINE_MAX db 0
