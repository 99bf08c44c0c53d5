# libFuzzer harnesses of the loaders (INTEDGE_FUZZ=ON, clang): the runtime is built with coverage
# instrumentation, ASan and UBSan (CMakeLists.txt), each harness links libFuzzer's main.
# tools/fuzz/run.sh builds them, makes the seed corpus and runs them.
foreach(harness fuzz_model fuzz_state)
  add_executable(${harness} ${CMAKE_CURRENT_SOURCE_DIR}/tools/fuzz/${harness}.c)
  target_compile_options(${harness} PRIVATE ${INTEDGE_WARNINGS})
  target_link_libraries(${harness} PRIVATE intedge_static)
  target_link_options(${harness} PRIVATE -fsanitize=fuzzer)
endforeach()
