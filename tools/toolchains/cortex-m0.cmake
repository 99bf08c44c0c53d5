# Cortex-M0/M0+ (ARMv6-M: no DSP, no FPU, no 32x32->64 multiply, no divide instruction). qemu
# has no M0 board with the RAM training needs, so CI builds the library only
# (-DINTEDGE_BUILD_TESTS=OFF) and checks what it imports; the M3 build runs the same C.
set(INTEDGE_MCU_CPU_FLAGS "-mcpu=cortex-m0plus -mfloat-abi=soft")
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake)
