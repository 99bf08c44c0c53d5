# libFuzzer harnesses of the loaders (INTEDGE_FUZZ=ON, clang): the runtime is built with coverage
# instrumentation, ASan and UBSan (CMakeLists.txt), each harness links libFuzzer's main.
# tools/fuzz/run.sh builds them, makes the seed corpus and runs them.
foreach(harness fuzz_model fuzz_state)
  add_executable(${harness} ${CMAKE_CURRENT_SOURCE_DIR}/tools/fuzz/${harness}.c)
  target_compile_options(${harness} PRIVATE ${INTEDGE_WARNINGS})
  target_link_libraries(${harness} PRIVATE intedge_static)
  target_link_options(${harness} PRIVATE -fsanitize=fuzzer)
endforeach()

# The arithmetic (kernels, the optimizer, fixed-point helpers) keeps its edge coverage but not
# libFuzzer's compare tracing: its loops compare counters, not input bytes, and tracing each
# compare took a third of a run. The parsers, the planner and the ops' checks keep it.
file(GLOB_RECURSE INTEDGE_FUZZ_ARITHMETIC CONFIGURE_DEPENDS
  runtime/kernels/*.c runtime/src/numeric.c runtime/src/optim.c runtime/src/fixmath.c)
set_property(SOURCE ${INTEDGE_FUZZ_ARITHMETIC} APPEND PROPERTY COMPILE_OPTIONS -fno-sanitize-coverage=trace-cmp)
