# aarch64 Linux (Raspberry Pi 3/4/5, Jetson): Debian's gcc-aarch64-linux-gnu, tests under
# qemu-user. INTEDGE_ARM_ARCH picks the baseline: armv8-a (NEON, Pi 3/4, Jetson Nano) or
# armv8.2-a+dotprod (Pi 5, Jetson Orin). INTEDGE_QEMU_CPU picks the emulated core, e.g.
# cortex-a72 (the Pi 4's: no dot product, so the NEON tier runs) or cortex-a76 (the Pi 5's).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(INTEDGE_ARM_ARCH "armv8-a" CACHE STRING "-march= for aarch64 builds")
set(CMAKE_C_FLAGS_INIT "-march=${INTEDGE_ARM_ARCH}")
set(INTEDGE_QEMU_CPU "max" CACHE STRING "qemu-aarch64 -cpu for ctest")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-cpu;${INTEDGE_QEMU_CPU};-L;/usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
