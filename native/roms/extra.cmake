# Vireo's option ROMs, assembled with nasm at build time and compiled into
# vireo_core as byte arrays (machine/kernel_boot.cc reads kKernelBootRom).
# Without nasm the array is empty and a kernel boot on the PC board fails
# with a message saying so (the bare direct boot still works).
find_program(NASM nasm)
set(ROM_SRC ${CMAKE_CURRENT_LIST_DIR})
set(ROM_OUT ${CMAKE_BINARY_DIR}/roms)
file(MAKE_DIRECTORY ${ROM_OUT})
if(NASM)
  add_custom_command(OUTPUT ${ROM_OUT}/kboot_rom.cc
    COMMAND ${NASM} -f bin -o ${ROM_OUT}/kboot.bin ${ROM_SRC}/kboot.asm
    COMMAND ${CMAKE_COMMAND} -DIN=${ROM_OUT}/kboot.bin -DOUT=${ROM_OUT}/kboot_rom.cc -DSYM=kKernelBootRom -P ${ROM_SRC}/bin2cc.cmake
    DEPENDS ${ROM_SRC}/kboot.asm ${ROM_SRC}/bin2cc.cmake)
else()
  message(WARNING "nasm not found: the kernel-boot option ROM is not built, so --kernel on the PC board fails (apt-get install nasm)")
  add_custom_command(OUTPUT ${ROM_OUT}/kboot_rom.cc
    COMMAND ${CMAKE_COMMAND} -DIN= -DOUT=${ROM_OUT}/kboot_rom.cc -DSYM=kKernelBootRom -P ${ROM_SRC}/bin2cc.cmake
    DEPENDS ${ROM_SRC}/bin2cc.cmake)
endif()
target_sources(vireo_core PRIVATE ${ROM_OUT}/kboot_rom.cc)
