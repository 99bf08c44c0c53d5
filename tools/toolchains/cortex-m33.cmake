# Cortex-M33 (ARMv8-M Mainline with DSP), emulated as the MPS2 AN505 board; the firmware runs in
# the Secure state the core resets into. Soft float, like an M33 without its optional FPU.
set(INTEDGE_MCU_CPU_FLAGS "-mcpu=cortex-m33 -mfloat-abi=soft")
set(INTEDGE_QEMU_MACHINE mps2-an505)
set(INTEDGE_BOARD_MEMORY memory-an505.ld)
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake)
