# libFuzzer targets over the engine's guest- and file-facing parsers (docs/fuzzing.md).
# Only with clang and -DVIREO_FUZZ=ON; then vireo_core itself is built with
# coverage instrumentation + ASan + UBSan, so use a build directory of its own:
#   cmake -S native -B native/out/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DVIREO_FUZZ=ON
#   cmake --build native/out/fuzz --target fuzzers
# scripts/fuzz.sh does both, makes the seed corpora and runs the targets.
option(VIREO_FUZZ "Build libFuzzer targets (needs clang)" OFF)
set(VIREO_FUZZ_TARGETS qcow2_fuzz qcow2_write_fuzz kernel_fuzz virtio_blk_fuzz virtio_net_fuzz e1000_fuzz ide_fuzz vga_fuzz
    i8042_fuzz serial_fuzz fw_cfg_fuzz state_load_fuzz uhci_fuzz)
if(VIREO_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "VIREO_FUZZ needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang")
  endif()
  set(san -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_compile_options(vireo_core PUBLIC -fsanitize=fuzzer-no-link ${san})
  target_link_options(vireo_core PUBLIC -fsanitize=address,undefined)
  add_custom_target(fuzzers)
  foreach(t ${VIREO_FUZZ_TARGETS})
    add_executable(${t} EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/${t}.cc)
    target_link_libraries(${t} PRIVATE vireo_core)
    target_link_options(${t} PRIVATE -fsanitize=fuzzer)
    add_dependencies(fuzzers ${t})
  endforeach()
  # Writes each target's hand-made seed inputs: fuzz_seeds OUTDIR
  add_executable(fuzz_seeds EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/fuzz_seeds.cc)
  target_link_libraries(fuzz_seeds PRIVATE vireo_core)
  add_dependencies(fuzzers fuzz_seeds)
endif()
