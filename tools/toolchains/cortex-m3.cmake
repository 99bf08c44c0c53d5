# Cortex-M3 (ARMv7-M, no FPU, no DSP), emulated as the MPS2 AN385 board. Soft float: the
# runtime must not call one floating-point helper (tests/mcu checks the linked ELF).
set(INTEDGE_MCU_CPU_FLAGS "-mcpu=cortex-m3 -mfloat-abi=soft")
set(INTEDGE_QEMU_MACHINE mps2-an385)
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake)
