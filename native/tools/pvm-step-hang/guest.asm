bits 16
org 0x1000
start:
  cli
  xor ax,ax
  mov ds,ax
  mov ss,ax
  mov sp,0x7000
  mov word [9*4], isr
  mov word [9*4+2], 0
  mov al,0x11
  out 0x20,al
  mov al,0x08
  out 0x21,al
  mov al,0x04
  out 0x21,al
  mov al,0x01
  out 0x21,al
  mov al,0xfd
  out 0x21,al
loop:
  sti
  hlt
  cli
  inc word [0x504]
  jmp loop
isr:
  inc word [0x500]
  push ax
  mov al,0x20
  out 0x20,al
  pop ax
  iret
