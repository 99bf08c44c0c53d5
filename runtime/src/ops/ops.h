/* The arithmetic of each op on plain arrays. The executor calls these through the op table;
 * the tests call them directly (testing.c) to compare against float64 references. */
#ifndef IE_OPS_H
#define IE_OPS_H

#include "../internal.h"

int32_t ie_gemm_fwd(const ie_kernels *kt, size_t n, size_t m, size_t k, const int8_t *x, int32_t ex,
                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, int32_t *acc,
                    int64_t *bias_al, const ie_rounder r[3], int8_t *y);
int32_t ie_gemm_bwd_dx(const ie_kernels *kt, size_t n, size_t m, size_t k, const int8_t *dy, int32_t edy,
                       const int8_t *w8, int32_t ew, int8_t *wt, int32_t *acc, ie_rounder r, int8_t *dx);
int32_t ie_gemm_bwd_dw(const ie_kernels *kt, size_t n, size_t m, size_t k, const int8_t *dy, int32_t edy,
                       const int8_t *x, int32_t ex, int w_is_mk, int8_t *dyt, int8_t *xt, int64_t *dw);
int32_t ie_gemm_bwd_db(size_t n, size_t m, const int8_t *dy, int32_t edy, int64_t *db);

void ie_relu_fwd(size_t n, const int8_t *x, int8_t *y);
void ie_relu_bwd(size_t n, const int8_t *y, const int8_t *dy, int8_t *dx);

/* Softmax cross-entropy gradient exponent: Q30 probabilities times a Q31 reciprocal of n. */
#define IE_CE_GRAD_EXP (-30 - 31)
ie_status ie_softmax_ce_rows(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, const int32_t *labels,
                             int64_t *grad, ie_step_stats *st, char *err);
int64_t ie_exp2_neg_q16(int64_t t);
int64_t ie_log2_q16(uint64_t x);

#endif
