# Which SIMD kernel tiers this build compiles. Every tier is compiled with its own per-file ISA
# flags and picked at run time (CPUID, HWCAP), so one binary serves every CPU of its family.
# The no-float proof build is the scalar core alone. Sets INTEDGE_SOURCES (appended) and
# INTEDGE_KERNEL_DEFINITIONS.
set(INTEDGE_KERNEL_DEFINITIONS "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND NOT INTEDGE_NO_FLOAT)
  list(APPEND INTEDGE_SOURCES runtime/kernels/x86/table_x86.c runtime/kernels/x86/gemm_s8s8_avx2.c
                              runtime/kernels/x86/gemm_s8s8_avx512vnni.c)
  set_source_files_properties(runtime/kernels/x86/gemm_s8s8_avx2.c PROPERTIES COMPILE_OPTIONS "-mavx2")
  set_source_files_properties(runtime/kernels/x86/gemm_s8s8_avx512vnni.c PROPERTIES
                              COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vnni")
  list(APPEND INTEDGE_KERNEL_DEFINITIONS IE_HAVE_X86_KERNELS)
endif()
