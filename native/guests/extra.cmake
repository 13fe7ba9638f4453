# Test guests built from source with nasm (and ld for the ELF one). Output:
# ${CMAKE_BINARY_DIR}/guests/*.bin / *.elf
find_program(NASM nasm)
find_program(GNU_LD ld)
set(GUEST_SRC ${CMAKE_CURRENT_LIST_DIR})
set(GUEST_OUT ${CMAKE_BINARY_DIR}/guests)
file(MAKE_DIRECTORY ${GUEST_OUT})
if(NASM)
  set(GUEST_FILES)
  foreach(g hello echo flat16 crash vgabanner acpi_irq0 acpi_off diskw snapmark smp_up assist count pit2 syscall touch dhcp input pci64 fbloop edid tick spin halt)
    add_custom_command(OUTPUT ${GUEST_OUT}/${g}.bin
      COMMAND ${NASM} -f bin -I ${GUEST_SRC}/ -o ${GUEST_OUT}/${g}.bin ${GUEST_SRC}/${g}.asm
      DEPENDS ${GUEST_SRC}/${g}.asm ${GUEST_SRC}/lib.inc ${GUEST_SRC}/lib16.inc ${GUEST_SRC}/lib64.inc ${GUEST_SRC}/gate64.inc ${GUEST_SRC}/ring3.inc ${GUEST_SRC}/macros.inc)
    list(APPEND GUEST_FILES ${GUEST_OUT}/${g}.bin)
  endforeach()
  if(GNU_LD)
    add_custom_command(OUTPUT ${GUEST_OUT}/mbinfo.elf
      COMMAND ${NASM} -f elf32 -I ${GUEST_SRC}/ -o ${GUEST_OUT}/mbinfo.o ${GUEST_SRC}/mbinfo.asm
      COMMAND ${GNU_LD} --no-warn-rwx-segments -m elf_i386 -T ${GUEST_SRC}/mbinfo.ld -o ${GUEST_OUT}/mbinfo.elf ${GUEST_OUT}/mbinfo.o
      DEPENDS ${GUEST_SRC}/mbinfo.asm ${GUEST_SRC}/lib.inc ${GUEST_SRC}/mbinfo.ld)
    list(APPEND GUEST_FILES ${GUEST_OUT}/mbinfo.elf)
    add_custom_command(OUTPUT ${GUEST_OUT}/pvhinfo.elf
      COMMAND ${NASM} -f elf32 -I ${GUEST_SRC}/ -o ${GUEST_OUT}/pvhinfo.o ${GUEST_SRC}/pvhinfo.asm
      COMMAND ${GNU_LD} --no-warn-rwx-segments -m elf_i386 -T ${GUEST_SRC}/pvhinfo.ld -o ${GUEST_OUT}/pvhinfo.elf ${GUEST_OUT}/pvhinfo.o
      DEPENDS ${GUEST_SRC}/pvhinfo.asm ${GUEST_SRC}/lib.inc ${GUEST_SRC}/macros.inc ${GUEST_SRC}/pvhinfo.ld)
    list(APPEND GUEST_FILES ${GUEST_OUT}/pvhinfo.elf)
    # netbench: its ring-3 part is C (a virtio-net driver and a TCP client),
    # linked flat at 0x110000 and included there by netbench.asm.
    find_program(GUEST_CC NAMES gcc cc)
    if(GUEST_CC)
      add_custom_command(OUTPUT ${GUEST_OUT}/netbench.bin
        COMMAND ${GUEST_CC} -m64 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables
                -mno-red-zone -fno-builtin -fcf-protection=none -Wall -Wextra -c ${GUEST_SRC}/netbench.c -o ${GUEST_OUT}/netbench_c.o
        COMMAND ${GNU_LD} -m elf_x86_64 -T ${GUEST_SRC}/netbench.ld --oformat binary -o ${GUEST_OUT}/netbench_c.bin ${GUEST_OUT}/netbench_c.o
        COMMAND ${NASM} -f bin -I ${GUEST_SRC}/ -I ${GUEST_OUT}/ -o ${GUEST_OUT}/netbench.bin ${GUEST_SRC}/netbench.asm
        DEPENDS ${GUEST_SRC}/netbench.asm ${GUEST_SRC}/netbench.c ${GUEST_SRC}/netbench.ld ${GUEST_SRC}/lib64.inc ${GUEST_SRC}/ring3.inc ${GUEST_SRC}/macros.inc)
      list(APPEND GUEST_FILES ${GUEST_OUT}/netbench.bin)
    endif()
  endif()
  add_custom_target(guests ALL DEPENDS ${GUEST_FILES})
else()
  message(WARNING "nasm not found: test guests are not built (apt-get install nasm)")
endif()
