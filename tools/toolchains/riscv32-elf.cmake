# RISC-V RV32IMAC bare metal (the class of GD32V, ESP32-C3 and CH32V parts): Debian's
# gcc-riscv64-unknown-elf with picolibc, emulated as qemu's `virt` board. No FPU: any float
# operation would be a libgcc call, and the demo tests check that none is linked. picolibc's own
# start-up and linker script (placed by the --defsym lines) serve as the board; semihosting gives
# output, files and the exit status.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)
set(CMAKE_C_COMPILER riscv64-unknown-elf-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "-march=rv32imac -mabi=ilp32 --specs=picolibc.specs -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--oslib=semihost --crt0=semihost -Wl,--gc-sections \
-Wl,--defsym=__flash=0x80000000 -Wl,--defsym=__flash_size=0x400000 \
-Wl,--defsym=__ram=0x80400000 -Wl,--defsym=__ram_size=0x400000 -Wl,--defsym=__stack_size=0x10000")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-system-riscv32 -M virt -nographic -monitor none -serial none -bios none
    -semihosting-config enable=on,target=native -kernel)
set(INTEDGE_BOARD "" CACHE STRING "none: picolibc's start-up and linker script")
