# Shared part of the Cortex-M toolchains (bare metal, newlib-nano, semihosting for output).
# The including file sets INTEDGE_MCU_CPU_FLAGS, INTEDGE_QEMU_MACHINE (none: nothing to run the
# tests on) and, when the board's memory map differs from AN385's, INTEDGE_BOARD_MEMORY.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "${INTEDGE_MCU_CPU_FLAGS} -mthumb -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections")
# ctest runs every test executable on the emulated board; the program's exit status comes back
# through semihosting.
if(INTEDGE_QEMU_MACHINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-system-arm -M ${INTEDGE_QEMU_MACHINE} -nographic -monitor none -serial none
      -semihosting-config enable=on,target=native -kernel)
endif()
set(INTEDGE_BOARD mps2 CACHE STRING "tools/mcu/board/<name>: startup code and linker scripts")
if(NOT INTEDGE_BOARD_MEMORY)
  set(INTEDGE_BOARD_MEMORY memory-an385.ld)
endif()
set(INTEDGE_BOARD_MEMORY ${INTEDGE_BOARD_MEMORY} CACHE STRING "the board's memory map (a file in INTEDGE_BOARD)")
