# Cortex-M4F (ARMv7E-M with DSP), emulated as the MPS2 AN386 board. The hard-float ABI matches
# typical M4F firmware; the runtime itself uses no floating point.
set(INTEDGE_MCU_CPU_FLAGS "-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard")
set(INTEDGE_QEMU_MACHINE mps2-an386)
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake)
