# vireo-img: qemu-img-like image tool over the block layer (core/block).
add_executable(vireo-img ${CMAKE_CURRENT_LIST_DIR}/vireo_img.cc)
target_link_libraries(vireo-img PRIVATE vireo_core)
# vireo-blockbench: replays a request list through the block layer (bench/block).
add_executable(vireo-blockbench ${CMAKE_CURRENT_LIST_DIR}/blockbench.cc)
target_link_libraries(vireo-blockbench PRIVATE vireo_core)
