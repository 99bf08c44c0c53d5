# Which SIMD kernel tiers this build compiles. Every tier is compiled with its own per-file ISA
# flags and picked at run time (CPUID, HWCAP), so one binary serves every CPU of its family.
# The -mgeneral-regs-only proof build (INTEDGE_NO_FLOAT) is the scalar core alone: x86-64 and
# aarch64 SIMD live in vector registers, which that flag forbids. Sets INTEDGE_SOURCES (appended)
# and INTEDGE_KERNEL_DEFINITIONS.
set(INTEDGE_KERNEL_DEFINITIONS "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND NOT INTEDGE_NO_FLOAT)
  list(APPEND INTEDGE_SOURCES runtime/kernels/x86/table_x86.c runtime/kernels/x86/gemm_s8s8_avx2.c
                              runtime/kernels/x86/gemm_s8s8_bt_avx2.c runtime/kernels/x86/gemm_s8s8_avx512vnni.c
                              runtime/kernels/x86/gemm_s8s8_bt_avx512vnni.c)
  set_source_files_properties(runtime/kernels/x86/gemm_s8s8_avx2.c runtime/kernels/x86/gemm_s8s8_bt_avx2.c
                              PROPERTIES COMPILE_OPTIONS "-mavx2")
  set_source_files_properties(runtime/kernels/x86/gemm_s8s8_avx512vnni.c runtime/kernels/x86/gemm_s8s8_bt_avx512vnni.c
                              PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vnni")
  list(APPEND INTEDGE_KERNEL_DEFINITIONS IE_HAVE_X86_KERNELS)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # NEON is baseline ARMv8-A. The dot-product file alone gets armv8.2-a+dotprod so an armv8-a
  # build (Pi 3/4) still carries it; table_arm.c enables it from HWCAP_ASIMDDP (Pi 5, Orin).
  if(NOT INTEDGE_NO_FLOAT)
    list(APPEND INTEDGE_SOURCES runtime/kernels/arm/table_arm.c runtime/kernels/arm/gemm_s8s8_neon.c
                                runtime/kernels/arm/gemm_s8s8_bt_neon.c runtime/kernels/arm/gemm_s8s8_dotprod.c
                                runtime/kernels/arm/gemm_s8s8_bt_dotprod.c)
    set_source_files_properties(runtime/kernels/arm/gemm_s8s8_dotprod.c runtime/kernels/arm/gemm_s8s8_bt_dotprod.c
                                PROPERTIES COMPILE_OPTIONS "-march=armv8.2-a+dotprod")
    list(APPEND INTEDGE_KERNEL_DEFINITIONS IE_HAVE_ARM64_KERNELS)
  endif()
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^([Aa][Rr][Mm].*|[Cc]ortex-[Mm].*)$")
  # 32-bit Arm (Cortex-M). The DSP extension (M4/M7/M33) is fixed by -mcpu, so the C files
  # test __ARM_FEATURE_DSP themselves and are empty on M0/M3. Its SIMD32 instructions work on
  # core registers, so the tier also stays in the -mgeneral-regs-only build.
  list(APPEND INTEDGE_SOURCES runtime/kernels/cortexm/table_cortexm.c runtime/kernels/cortexm/gemm_s8s8_dsp.c
                              runtime/kernels/cortexm/gemm_s8s8_bt_dsp.c)
  list(APPEND INTEDGE_KERNEL_DEFINITIONS IE_HAVE_CORTEXM_KERNELS)
endif()
