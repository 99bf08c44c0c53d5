/* Elementary functions in integers (no floating point): exp2 and log2 in fixed Q formats for the
 * losses and softmax, and exp, expm1 and erf on dyadics for the activation tables. */
#ifndef IE_FIXMATH_H
#define IE_FIXMATH_H

#include <stdint.h>

#include "numeric.h"

#define IE_LOG2E_Q30 1549082005LL /* log2(e) * 2^30 */
#define IE_LN2_Q30 744261118LL    /* ln(2) * 2^30 */

/* 2^(-t / 2^16) for t >= 0, in Q30 (0 from t = 31 on). Integer part as a shift, fraction by a
 * degree-6 polynomial (max relative error 5e-9 over [0, 1)). */
int64_t ie_exp2_neg_q16(int64_t t);
/* log2(x) in Q16 for x >= 1, by repeated squaring of the normalized mantissa. */
int64_t ie_log2_q16(uint64_t x);
/* sigmoid(q 2^e) in Q30. */
int64_t ie_sigmoid_q30(int64_t q, int32_t e);
/* gap 2^e log2(e) in Q16, for a gap >= 0 between int8 logits (saturates far beyond exp2's range):
 * ie_exp2_neg_q16 of it is e^-(gap 2^e) in Q30. */
int64_t ie_gap_log2e_q16(int32_t gap, int32_t e);

/* ---- dyadics (31-bit mantissas; every result is rounded to nearest, relative error ~2^-30 per
 * operation; the functions below stay within about 2^-26 relative, or the stated absolute) ---- */

/* 2^t; results below 2^-(2^20) are 0 and t must stay below 2^20. */
ie_dyadic ie_dy_exp2(ie_dyadic t);
/* e^x (the same range). */
ie_dyadic ie_dy_exp(ie_dyadic x);
/* e^x - 1 with relative precision near 0 (a series below |x| = 1/2). */
ie_dyadic ie_dy_expm1(ie_dyadic x);
/* erf(x), and erfc(x) with relative precision in its tail (a continued fraction from 2 on, a
 * series of positive terms below). */
ie_dyadic ie_dy_erf(ie_dyadic x);
ie_dyadic ie_dy_erfc(ie_dyadic x);

#endif
