# The PC acceptance-test ISO (native/testiso/testiso.asm), built from source:
# nasm assembles the El Torito no-emulation boot image, xorriso wraps it in an
# ISO 9660 image. Output: ${CMAKE_BINARY_DIR}/guests/testiso.iso, used by
# tests/kvm_testiso_test.cc (which skips with a reason when it is absent).
find_program(TESTISO_NASM nasm)
find_program(TESTISO_XORRISO xorriso)
set(TESTISO_SRC ${CMAKE_CURRENT_LIST_DIR})
set(TESTISO_WORK ${CMAKE_BINARY_DIR}/testiso-root)
set(TESTISO_OUT ${CMAKE_BINARY_DIR}/guests/testiso.iso)
if(TESTISO_NASM AND TESTISO_XORRISO)
  add_custom_command(OUTPUT ${TESTISO_OUT}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${TESTISO_WORK} ${CMAKE_BINARY_DIR}/guests
    COMMAND ${TESTISO_NASM} -f bin -o ${TESTISO_WORK}/boot.bin ${TESTISO_SRC}/testiso.asm
    # The boot image is 2 KiB: -boot-load-size counts 512-byte sectors.
    COMMAND ${TESTISO_XORRISO} -as mkisofs -quiet -o ${TESTISO_OUT} -V VIREO_TESTISO
            -c boot.cat -b boot.bin -no-emul-boot -boot-load-size 4 ${TESTISO_WORK}
    DEPENDS ${TESTISO_SRC}/testiso.asm
    COMMENT "Building the PC test ISO (nasm + xorriso)")
  add_custom_target(testiso ALL DEPENDS ${TESTISO_OUT})
else()
  message(WARNING "nasm or xorriso not found: guests/testiso.iso is not built (apt-get install nasm xorriso)")
endif()
