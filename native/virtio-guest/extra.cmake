# The boot sector for kvm_virtio_test (SeaBIOS booting from virtio-blk).
# Output: ${CMAKE_BINARY_DIR}/guests/virtio-mbr.bin (next to the other test guests).
find_program(VIRTIO_NASM nasm)
if(VIRTIO_NASM)
  set(VIRTIO_GUEST_OUT ${CMAKE_BINARY_DIR}/guests)
  file(MAKE_DIRECTORY ${VIRTIO_GUEST_OUT})
  add_custom_command(OUTPUT ${VIRTIO_GUEST_OUT}/virtio-mbr.bin
    COMMAND ${VIRTIO_NASM} -f bin -o ${VIRTIO_GUEST_OUT}/virtio-mbr.bin ${CMAKE_CURRENT_LIST_DIR}/mbr.asm
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/mbr.asm)
  add_custom_target(virtio_guests ALL DEPENDS ${VIRTIO_GUEST_OUT}/virtio-mbr.bin)
endif()
