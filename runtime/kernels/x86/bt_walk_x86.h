/* The walk both x86 reduction-major GEMMs (AVX2, AVX-512 VNNI) share: an empty reduction gives
 * zeros; otherwise the reduction goes in blocks of KB (a block's packed B stays in L1, and later
 * blocks add into c) and the columns in blocks of COLS. The body (the last argument) runs once per
 * block with k0, kb, groups (of four bt rows), j0 and ncols set; ie_bt_rows gives a group's rows. */
#ifndef IE_BT_WALK_X86_H
#define IE_BT_WALK_X86_H

#include <stdint.h>
#include <string.h>

#define IE_BT_WALK(c, m, n, k, KB, COLS, ...)                                                        \
    do {                                                                                             \
        if ((k) == 0 && (m) && (n)) memset((c), 0, sizeof(int32_t) * (m) * (n));                     \
        for (size_t k0 = 0; k0 < (k); k0 += (KB)) {                                                  \
            size_t kb = (k) - k0 < (KB) ? (k) - k0 : (KB), groups = (kb + 3) / 4;                    \
            for (size_t j0 = 0; j0 < (n); j0 += (COLS)) {                                            \
                size_t ncols = (n) - j0 < (COLS) ? (n) - j0 : (COLS);                                \
                __VA_ARGS__                                                                          \
            }                                                                                        \
        }                                                                                            \
    } while (0)

/* Rows 4g..4g+3 of the reduction block at k0, from column j0 (NULL past kb: packed as zeros). */
static inline void ie_bt_rows(const int8_t *bt, size_t n, size_t k0, size_t kb, size_t g, size_t j0,
                              const int8_t *r[4]) {
    for (size_t t = 0; t < 4; t++) r[t] = 4 * g + t < kb ? bt + (k0 + 4 * g + t) * n + j0 : NULL;
}

#endif
