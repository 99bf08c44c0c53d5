/* Elementary functions in fixed Q formats, integers only: exp2 and log2 for the losses and
 * softmax, the sigmoid (the dyadic exp and erf of the smooth activations: ops/smooth.c). */
#ifndef IE_FIXMATH_H
#define IE_FIXMATH_H

#include <stdint.h>

#include "numeric.h"

#define IE_LOG2E_Q30 1549082005LL /* log2(e) * 2^30 */
#define IE_LN2_Q30 744261118LL    /* ln(2) * 2^30 */

/* 2^f for f in [0, 1) as Q30, in Q30: a degree-6 polynomial (max relative error 5e-9). */
int64_t ie_exp2_frac_q30(int64_t f);
/* 2^(-t / 2^16) for t >= 0, in Q30 (0 from t = 31 on). Integer part as a shift, fraction by a
 * degree-6 polynomial (max relative error 5e-9 over [0, 1)). */
int64_t ie_exp2_neg_q16(int64_t t);
/* log2(x) in Q16 for x >= 1, by repeated squaring of the normalized mantissa. */
int64_t ie_log2_q16(uint64_t x);
/* sigmoid(q 2^e) in Q30. */
int64_t ie_sigmoid_q30(int64_t q, int32_t e);
/* log(1 + e^x) in Q16 nats for x in Q16, |x| < 2^31 (log(1 + e^-|x|) from exp2 and log2). */
int64_t ie_softplus_q16(int64_t x);
/* gap 2^e log2(e) in Q16, for a gap >= 0 between int8 logits (saturates far beyond exp2's range):
 * ie_exp2_neg_q16 of it is e^-(gap 2^e) in Q30. */
int64_t ie_gap_log2e_q16(int32_t gap, int32_t e);

#endif
