# Engine benchmarks (bench/engine): a lean runner with no Node, for start time
# and memory next to QEMU, and the display path driven without a vCPU.
add_executable(vireo-run ${CMAKE_CURRENT_LIST_DIR}/vireo_run.cc)
target_link_libraries(vireo-run PRIVATE vireo_core)
add_executable(vireo-display-bench ${CMAKE_CURRENT_LIST_DIR}/display_bench.cc)
target_link_libraries(vireo-display-bench PRIVATE vireo_core)
