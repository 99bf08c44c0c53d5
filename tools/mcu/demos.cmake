# Training demos: `intedge compile` output built into one program per demo, run (under the
# build's emulator when cross-compiling) and compared with the host's run of the same steps:
# the proof that training is bit-exact across chips. Needs the intedge Python package.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
execute_process(COMMAND ${Python3_EXECUTABLE} -c "import intedge" RESULT_VARIABLE has_intedge OUTPUT_QUIET ERROR_QUIET)
if(NOT has_intedge EQUAL 0)
  message(FATAL_ERROR "INTEDGE_DEMOS needs the intedge Python package for ${Python3_EXECUTABLE}: pip install .")
endif()
set(INTEDGE_DEMO_TARGET host CACHE STRING "intedge compile --target for the demos")
set(demo_root ${CMAKE_BINARY_DIR}/demos)
string(REPLACE ";" "|" demo_emulator "${CMAKE_CROSSCOMPILING_EMULATOR}")
set(demo_size "")
if(INTEDGE_BARE_METAL)
  string(REGEX REPLACE "gcc$" "size" size_tool ${CMAKE_C_COMPILER})
  find_program(INTEDGE_SIZE NAMES ${size_tool} REQUIRED)
  set(demo_nm ${CMAKE_NM})
  if(INTEDGE_BOARD)  # its start-up reports the stack a run used, so RAM can be held to a budget
    set(demo_size ${INTEDGE_SIZE})
  endif()
endif()

function(run_python what)
  execute_process(COMMAND ${Python3_EXECUTABLE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed:\n${out}${err}")
  endif()
  message(STATUS "${what}: ${out}")
endfunction()

# intedge_demo(NAME MODEL file.onnx RAM_BUDGET bytes OPTIONS compile options...)
function(intedge_demo name)
  cmake_parse_arguments(D "" "MODEL;RAM_BUDGET" "OPTIONS" ${ARGN})
  set(dir ${demo_root}/${name})
  run_python("intedge compile ${name}" -m intedge compile ${D_MODEL} --target ${INTEDGE_DEMO_TARGET} ${D_OPTIONS} -o ${dir})
  # built as `intedge compile` output is meant to be: the op table lists the model's ops alone
  # (intedge_ops.h), so the firmware links no other op
  add_executable(demo_${name} ${dir}/intedge_model.c ${dir}/intedge_data.c ${dir}/train_example.c
                 ${CMAKE_CURRENT_SOURCE_DIR}/runtime/src/ops/registry.c)
  target_include_directories(demo_${name} PRIVATE ${dir})
  target_compile_definitions(demo_${name} PRIVATE IE_OPS_SELECTED)
  target_compile_options(demo_${name} PRIVATE ${INTEDGE_WARNINGS})
  target_compile_definitions(demo_${name} PRIVATE INTEDGE_STATE_FILE="trained_state.ies")
  target_link_libraries(demo_${name} PRIVATE intedge_static)
  if(INTEDGE_BARE_METAL)
    target_sources(demo_${name} PRIVATE $<TARGET_OBJECTS:intedge_port_none>)  # no heap for the runtime
  endif()
  add_test(NAME demo_${name} COMMAND ${CMAKE_COMMAND} "-DEMULATOR=${demo_emulator}" -DPROGRAM=$<TARGET_FILE:demo_${name}>
           -DEXPECTED=${dir}/expected_output.txt -DWORKDIR=${dir}/run "-DSIZE=${demo_size}" "-DNM=${demo_nm}" -DRAM_BUDGET=${D_RAM_BUDGET}
           -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/mcu/run_demo.cmake)
  set_tests_properties(demo_${name} PROPERTIES LABELS mcu)
endfunction()

file(MAKE_DIRECTORY ${demo_root})
run_python("digits MLP 64-32-10" ${CMAKE_CURRENT_SOURCE_DIR}/models/build_mlp.py --sizes 64,32,10 -o ${demo_root}/mlp_digits.onnx)
# RAM budgets: the figures docs/mcu.md and README state (51.7 and 70.1 KB) plus about 4%, so that
# growth shows up
intedge_demo(mlp_digits MODEL ${demo_root}/mlp_digits.onnx RAM_BUDGET 54000
             OPTIONS --batch-size 16 --lr 0.2 --data builtin:digits --steps 40)
# The CNN is pretrained on the host, then only its classifier is fine-tuned on the device.
run_python("small CNN" ${CMAKE_CURRENT_SOURCE_DIR}/models/build_cnn.py -o ${demo_root}/cnn_digits.onnx)
run_python("pretraining the CNN on the host" -m intedge train ${demo_root}/cnn_digits.onnx builtin:digits --epochs 2
           --batch-size 32 --lr 0.1 --quiet --output-dir ${demo_root}/cnn_pretrain)
intedge_demo(cnn_head MODEL ${demo_root}/cnn_pretrain/model.onnx RAM_BUDGET 73000
             OPTIONS --batch-size 16 --lr 0.1 --trainable fc.* --data builtin:digits --steps 30 --samples 480)

if(INTEDGE_BARE_METAL)
  # The runtime needs nothing from the platform but memory and string helpers: no heap, no float
  # helpers (on the soft-float M3 any float op would call __aeabi_f*/__aeabi_d*), no files, no threads.
  add_test(NAME runtime_imports COMMAND ${CMAKE_COMMAND} -DNM=${CMAKE_NM} -DLIBRARY=$<TARGET_FILE:intedge_static>
           -DSIZE=${INTEDGE_SIZE} -DTARGET=${INTEDGE_DEMO_TARGET} -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/mcu/check_runtime.cmake)
  set_tests_properties(runtime_imports PROPERTIES LABELS mcu)
endif()
