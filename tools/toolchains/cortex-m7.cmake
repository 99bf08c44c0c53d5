# Cortex-M7 (ARMv7E-M with DSP), emulated as the MPS2 AN500 board.
set(INTEDGE_MCU_CPU_FLAGS "-mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard")
set(INTEDGE_QEMU_MACHINE mps2-an500)
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake)
