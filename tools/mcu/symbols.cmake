# Shared by the demo and runtime checks: symbol names from `nm` output, and which of them are
# compiler helpers for floating point (ARM EABI __aeabi_f*/__aeabi_d* and conversions, libgcc's
# soft-float routines on RISC-V and elsewhere). A core without floating point calls none.
function(nm_symbols out text)
  string(REGEX MATCHALL "[ \t][A-Za-z][ \t]+[A-Za-z_.$0-9]+" refs "${text}")
  set(names "")
  foreach(r ${refs})
    string(REGEX REPLACE "^[ \t][A-Za-z][ \t]+" "" sym "${r}")
    list(APPEND names ${sym})
  endforeach()
  list(REMOVE_DUPLICATES names)
  set(${out} ${names} PARENT_SCOPE)
endfunction()

string(CONCAT FLOAT_HELPER_REGEX
  "^__aeabi_(f|d|[iu]?l?2[fd])"
  "|^__(add|sub|mul|div|neg|eq|ne|lt|le|gt|ge|unord|cmp)[sdt]f[23]$"
  "|^__fix(uns)?[sdt]f|^__float(un)?[sdt]i[sdt]f$|^__(extend|trunc)[sdt]f[sdt]f2$")
