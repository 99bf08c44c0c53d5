# Shared part of the Cortex-M toolchains (bare metal, newlib-nano, semihosting for output).
# The including file sets INTEDGE_MCU_CPU_FLAGS and INTEDGE_QEMU_MACHINE.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "${INTEDGE_MCU_CPU_FLAGS} -mthumb -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections")
# ctest runs every test executable on the emulated board; the program's exit status comes back
# through semihosting.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-system-arm;-M;${INTEDGE_QEMU_MACHINE};-nographic;-monitor;none;-serial;none;-semihosting-config;enable=on,target=native;-kernel)
set(INTEDGE_BOARD mps2 CACHE STRING "tools/mcu/board/<name>: startup code and linker script")
