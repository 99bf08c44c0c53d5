# Golden training digests (tests/golden/golden.py): every case is built for this target and run
# (under the emulator when cross-compiling) on each kernel tier it has; every run must print the
# record committed in tests/golden/digests.json. Included with INTEDGE_DEMOS (it needs the
# intedge Python package and torch, for the fixtures).
set(golden_dir ${CMAKE_BINARY_DIR}/golden)
run_python("golden cases" ${CMAKE_CURRENT_SOURCE_DIR}/tests/golden/golden.py emit ${golden_dir})
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${CMAKE_CURRENT_SOURCE_DIR}/tests/golden/golden.py ${CMAKE_CURRENT_SOURCE_DIR}/tests/golden/digests.json)
string(REPLACE ";" "|" golden_emulator "${CMAKE_CROSSCOMPILING_EMULATOR}")
file(GLOB golden_cases LIST_DIRECTORIES true ${golden_dir}/*)
foreach(case_dir ${golden_cases})
  get_filename_component(case ${case_dir} NAME)
  add_executable(golden_${case} ${CMAKE_CURRENT_SOURCE_DIR}/tests/golden/golden_main.c)
  target_include_directories(golden_${case} PRIVATE ${case_dir})
  target_compile_options(golden_${case} PRIVATE ${INTEDGE_WARNINGS})
  target_compile_definitions(golden_${case} PRIVATE IE_TEST_HAVE_THREADS=$<BOOL:${INTEDGE_THREADS}>)
  target_link_libraries(golden_${case} PRIVATE intedge_static)
  if(INTEDGE_BARE_METAL)  # the runtime allocates its arena through the C library's heap here
    target_sources(golden_${case} PRIVATE $<TARGET_OBJECTS:intedge_port_stdlib>)
  endif()
  add_test(NAME golden_${case} COMMAND ${CMAKE_COMMAND} "-DEMULATOR=${golden_emulator}"
           -DPROGRAM=$<TARGET_FILE:golden_${case}> -DEXPECTED=${case_dir}/expected.txt
           -P ${CMAKE_CURRENT_SOURCE_DIR}/tests/golden/run_golden.cmake)
  set_tests_properties(golden_${case} PROPERTIES LABELS golden)
endforeach()
