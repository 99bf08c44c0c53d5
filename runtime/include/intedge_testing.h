/* intedge_testing.h — NOT a stable API. Each entry point runs one piece of the runtime's
 * arithmetic (the same functions the executor calls) on caller arrays, so tests can compare it
 * with float64 references. Rounding draws come from (seed, stream 0, step 0). */
#ifndef INTEDGE_TESTING_H
#define INTEDGE_TESTING_H

#include "intedge.h"

#ifdef __cplusplus
extern "C" {
#endif

/* IE_CDEF_BEGIN */

/* y = requant(x) to int8; returns the shift s (y's exponent = x's + s). */
IE_API int32_t ie_test_requant_s64(const int64_t *x, size_t n, uint64_t seed, int32_t nearest, int8_t *y);

/* Gemm pieces; each returns the exponent of what it writes. bias may be NULL. */
IE_API int32_t ie_test_gemm_forward(uint32_t n, uint32_t m, uint32_t k, const int8_t *x, int32_t ex,
                                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb,
                                    uint64_t seed, int32_t nearest, int8_t *y);
IE_API int32_t ie_test_gemm_backward_dx(uint32_t n, uint32_t m, uint32_t k, const int8_t *dy, int32_t edy,
                                        const int8_t *w8, int32_t ew, uint64_t seed, int8_t *dx);
IE_API int32_t ie_test_gemm_backward_dw(uint32_t n, uint32_t m, uint32_t k, const int8_t *dy, int32_t edy,
                                        const int8_t *x, int32_t ex, int32_t w_is_mk, int64_t *dw);
IE_API int32_t ie_test_gemm_backward_db(uint32_t n, uint32_t m, const int8_t *dy, int32_t edy, int64_t *db);
/* Conv2d pieces on one NCHW batch; geometry = {group, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr,
 * cin, h, w, cout, ho, wo}. */
IE_API int32_t ie_test_conv_forward(const uint32_t *geometry, uint32_t n, const int8_t *x, int32_t ex,
                                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, uint64_t seed,
                                    int8_t *y);
IE_API int32_t ie_test_conv_backward_dx(const uint32_t *geometry, uint32_t n, const int8_t *dy, int32_t edy,
                                        const int8_t *w8, int32_t ew, uint64_t seed, int8_t *dx);
IE_API int32_t ie_test_conv_backward_dw(const uint32_t *geometry, uint32_t n, const int8_t *dy, int32_t edy,
                                        const int8_t *x, int32_t ex, int64_t *dw);
/* C[m,n] = A[m,k] . B[n,k]^T with the named kernel tier, int32 (wide 0) or int64 (wide 1). */
IE_API ie_status ie_test_gemm(const char *tier, int32_t wide, uint32_t m, uint32_t n, uint32_t k, const int8_t *a,
                              const int8_t *b, void *c);
IE_API void ie_test_relu_backward(size_t n, const int8_t *y, const int8_t *dy, int8_t *dx);

/* Softmax cross-entropy: loss (Q16 nats, summed), argmax hits, and the int8 logit gradient. */
IE_API ie_status ie_test_softmax_ce(uint32_t n, uint32_t c, const int8_t *z, int32_t ez, const int32_t *labels,
                                    uint64_t seed, int8_t *grad, int32_t *grad_e, int64_t *loss_q16,
                                    uint32_t *correct);
/* The same per pixel over [n, c, p] logits, labels [n, p] (IE_IGNORE_LABEL: not counted);
 * count: the counted pixels; wide (NULL or n * c * p): the gradient before its rounding to int8,
 * at exponent *wide_e. */
IE_API ie_status ie_test_softmax_ce_pixels(uint32_t n, uint32_t c, uint32_t p, const int8_t *z, int32_t ez,
                                           const int32_t *labels, uint64_t seed, int8_t *grad, int32_t *grad_e,
                                           int64_t *wide, int32_t *wide_e, int64_t *loss_q16, uint32_t *correct,
                                           uint32_t *count);
/* CenterNet's loss (IE_LOSS_CENTERNET) over [n, c + 4, p] logits and labels of that layout: the
 * summed loss (Q16), the centres whose logit is > 0, the object count and the int8 gradient;
 * wide (NULL or n * (c + 4) * p): the gradient before its rounding to int8, at exponent *wide_e. */
IE_API ie_status ie_test_centernet(uint32_t n, uint32_t c, uint32_t p, const int8_t *z, int32_t ez,
                                   const int32_t *labels, uint64_t seed, int8_t *grad, int32_t *grad_e,
                                   int64_t *wide, int32_t *wide_e, int64_t *loss_q16, uint32_t *correct, uint32_t *count);
IE_API int64_t ie_test_exp2_neg_q16(int64_t t);
IE_API int64_t ie_test_log2_q16(uint64_t x);
/* A dyadic elementary function by name (ops/smooth.c, numeric.c): "exp2", "exp", "expm1", "erf",
 * "erfc" (builds with the transformer ops), "sqrt", "rsqrt" of a, or "div" (a / b); e = INT32_MIN
 * for an unknown name. */
IE_API ie_dyadic ie_test_dyadic(const char *fn, ie_dyadic a, ie_dyadic b);
/* An Activation node's table (attrs as in the .iem node, 16 values) at input exponent ex: f
 * (slope 0) or f' (slope 1) at q = -128..127 in tab[q + 128]; returns the entries' exponent. */
IE_API int32_t ie_test_activation_table(const int32_t *attrs, int32_t ex, int32_t slope, int64_t *tab);
/* An Activation's forward (dy NULL: y = f(q)) or dX (dY f'(q)) over n inputs at exponent ex,
 * rounded with the stream of seed; *e gets y's exponent, or what dX's adds to dY's. path 0 is the
 * definition (the tables and int64 rounding), 1 Clip's 32-bit closed form, 2 the fastest form
 * (Clip's 16-bit lanes where they apply): all give the same bytes. */
IE_API ie_status ie_test_activation(const int32_t *attrs, int32_t ex, const int8_t *q, const int8_t *dy, size_t n,
                                    uint64_t seed, int32_t nearest, int32_t path, int8_t *y, int32_t *e);

/* The float boundary: float32 bits to `bits`-bit integers with one exponent, and back. */
IE_API ie_status ie_test_f32_to_fixed(const uint32_t *v, size_t n, int32_t bits, uint64_t seed, int32_t nearest,
                                      int32_t *out, int32_t *e);
IE_API uint32_t ie_test_fixed_to_f32(int64_t m, int32_t e);

/* Whole sessions, created with keep_tensors set (IE_ERR_STATE otherwise). A training step whose
 * output gradient is dy (int8 at exponent edy, n * output size) instead of the loss's: the
 * forward, every backward and the optimizer run as in ie_session_step_inputs. */
IE_API ie_status ie_test_step_from_output_grad(ie_session *s, uint32_t n, const void *const *inputs, const int8_t *dy,
                                               int32_t edy);
/* The data (grad 0) or gradient (grad 1) of tensor `tensor` (its index in the .iem file) from the
 * last step or forward: n * numel int8 values and their exponent. */
IE_API ie_status ie_test_tensor(const ie_session *s, uint32_t tensor, int32_t grad, int8_t *out, int32_t *e);
/* Runs node `node`'s forward (backward 0) or backward (1) once more on the tensors the last step
 * left, to time one op (tools/bench/attention_matmul.py). A backward also steps the node's
 * parameters; nodes whose inputs feed other nodes too are refused (IE_ERR_UNSUPPORTED). */
IE_API ie_status ie_test_run_node(ie_session *s, uint32_t node, int32_t backward);

/* The step profile: while ns is set, every step adds nanoseconds (the port's clock, ie_port_clock_ns)
 * into ns[(node * 4 + phase) * 5 + kind], for node 0..n_nodes (the row n_nodes: the input mapping
 * and the loss); phase 0 forward, 1 dX (with what a parameterless backward does), 2 dW, 3 the
 * optimizer; kind 0 the phase's wall time, 1 GEMM, 2 packing (weight transposes and flips, operand
 * gathers), 3 im2col/col2im, 4 rounding (requantization, BatchNorm's affine pass, the weights' int8
 * views). Kinds are timed on the calling thread. ns holds (n_nodes + 1) * 20 values and is zeroed
 * here; NULL stops profiling. The bytes a step writes do not change. */
IE_API ie_status ie_test_profile(ie_session *s, uint64_t *ns);
/* Node `node`'s name and op type (its .iem order, which is the profile's). */
IE_API ie_status ie_test_node(const ie_session *s, uint32_t node, const char **name, const char **op);

/* One step of the session's optimizer on parameter `param` alone, from its exact gradient (numel
 * int64 at exponent grad_e, copied in: the step normalizes it in place), the step counter counted:
 * for studies and timings of the optimizer. The parameter must be trained by a dense op (an
 * Embedding's table has no dense gradient: IE_ERR_STATE). */
IE_API ie_status ie_test_optimizer_step(ie_session *s, uint32_t param, const int64_t *grad, int32_t grad_e);

/* The planned region of (model, config), buffer by buffer, for memory studies
 * (tools/bench/memory.py): rows[6 i ..] = kind (planner.h's ie_buf_kind: 0 activation data,
 * 1 activation gradient, 2 node scratch, 3 a weight's int8 view, 4 a weight's gradient, 5 the
 * loss's sums, 6 targets, 7 a fan-out gradient share), index (tensor,
 * node, parameter or share), first and last schedule position (node i's forward 1 + i, the loss
 * n_nodes + 1, node i's backward 2 n_nodes + 1 - i), bytes and offset. *count receives the
 * number of buffers; at most cap rows are written. */
IE_API ie_status ie_test_plan(ie_model *m, const ie_session_config *cfg, uint64_t *rows, uint32_t cap,
                              uint32_t *count);

/* IE_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif
