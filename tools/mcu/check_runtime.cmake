# What the runtime library asks of the platform, from its undefined symbols: it must not need a
# heap, floating-point helpers, files or threads. Also holds its code size (text + rodata of every
# object) to TARGET's budget below.
execute_process(COMMAND ${NM} -u ${LIBRARY} OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIBRARY}")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/symbols.cmake)
nm_symbols(imports "${undefined}")
list(FILTER imports EXCLUDE REGEX "^ie_")  # between the library's own objects
list(SORT imports)
message("runtime imports: ${imports}")
set(forbidden "")
foreach(sym ${imports})
  if(sym MATCHES "${FLOAT_HELPER_REGEX}" OR sym MATCHES "^(malloc|calloc|realloc|free|fopen|fwrite|fread|pthread_.*)$")
    list(APPEND forbidden ${sym})
  endif()
endforeach()
if(forbidden)
  message(FATAL_ERROR "the runtime needs what bare metal may not have: ${forbidden}")
endif()
execute_process(COMMAND ${SIZE} -t ${LIBRARY} OUTPUT_VARIABLE sizes)
string(REGEX MATCH "([0-9]+)[ \t]+([0-9]+)[ \t]+([0-9]+)[ \t]+[0-9]+[ \t]+[0-9a-f]+[ \t]+\\(TOTALS\\)" row "${sizes}")
message("runtime library: text+rodata ${CMAKE_MATCH_1} B, data ${CMAKE_MATCH_2} B, bss ${CMAKE_MATCH_3} B "
        "(every object; a firmware built with its intedge_ops.h links only its model's ops)")
# Budgets in bytes: the sizes docs/mcu.md states (-Os, GCC 12.2) plus about 3.5%, so that growth
# shows up here before it reaches the docs' figures; a change that grows the code past one
# updates both.
set(code_budget_cortex-m0 95900)   # 92.7 KB
set(code_budget_cortex-m3 95100)   # 91.9 KB
set(code_budget_cortex-m4 96700)   # 93.4 KB
set(code_budget_cortex-m7 96700)   # 93.4 KB
set(code_budget_cortex-m33 96600)  # 93.3 KB
set(code_budget_riscv32 113300)    # 109.4 KB
if(NOT DEFINED code_budget_${TARGET})
  message(FATAL_ERROR "no code budget for target '${TARGET}' (pass -DTARGET=<one of tools/mcu/check_runtime.cmake's>)")
endif()
set(budget ${code_budget_${TARGET}})
message("runtime code budget on ${TARGET}: ${budget} B")
if(CMAKE_MATCH_1 GREATER budget)
  message(FATAL_ERROR "the runtime's code (${CMAKE_MATCH_1} B) is over the ${TARGET} budget of ${budget} B")
endif()
