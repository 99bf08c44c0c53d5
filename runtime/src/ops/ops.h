/* The arithmetic of each op on plain arrays. The executor calls these through the op table;
 * the tests call them directly (testing.c) to compare against float64 references. */
#ifndef IE_OPS_H
#define IE_OPS_H

#include "../fixmath.h"
#include "../internal.h"
#include "../threads.h"

/* ---- shared by the ops (ops/requant.c) ---- */
/* y = requant(acc + bias[channel]) where element i is in channel (i / inner) % channels. The
 * int32 bias master (exponent eb) joins at the accumulator's exponent e_acc in int64; if that
 * needs more than 31 bits of left shift, the accumulator moves up instead (rounded by r[0]).
 * r[1] rounds the bias, r[2] the output. bias may be NULL. With y16 (y NULL) the output is int16
 * (ie_tensor_is_q16). Returns y's exponent. */
int32_t ie_requant_bias(const ie_exec *rt, int32_t *acc, size_t total, int32_t e_acc, size_t inner,
                        size_t channels, const int32_t *bias, int32_t eb, int64_t *bias_al, const ie_rounder r[3],
                        int8_t *y, int16_t *y16);
/* y = requant(acc); returns the shift. acc is the op's: evaluation's wide output may write it. */
int ie_requant_acc(const ie_exec *rt, int32_t *acc, size_t total, ie_rounder r, int8_t *y);

int32_t ie_gemm_fwd(const ie_exec *rt, size_t n, size_t m, size_t k, const int8_t *x, int32_t ex,
                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, int32_t *acc,
                    int64_t *bias_al, const ie_rounder r[3], int8_t *y);
int32_t ie_gemm_bwd_dx(const ie_exec *rt, size_t n, size_t m, size_t k, const int8_t *dy, int32_t edy,
                       const int8_t *w8, int32_t ew, int32_t *acc, ie_rounder r, int8_t *dx);
int32_t ie_gemm_bwd_dw(const ie_exec *rt, size_t n, size_t m, size_t k, const int8_t *dy, int32_t edy,
                       const int8_t *x, int32_t ex, int w_is_mk, int8_t *dyt, int8_t *xt, int64_t *dw, int *narrow);
int32_t ie_gemm_bwd_db(size_t n, size_t m, const int8_t *dy, int32_t edy, int64_t *db);

/* ---- activations (ops/activation.c; the smooth kinds' tables in ops/smooth.c) ---- */
enum {
    ACT_CLIP = 0, ACT_LEAKY_RELU = 1, ACT_HARD_SIGMOID = 2, ACT_HARD_SWISH = 3, ACT_SIGMOID = 4,
    ACT_GELU = 5, ACT_GELU_TANH = 6, ACT_TANH = 7, ACT_ERF = 8, ACT_SQRT = 9, ACT_RECIPROCAL = 10, ACT_POW = 11,
    ACT_COUNT
};
#define IE_POW_MAX_HALVES 8
/* An activation's f (slope 0) or f' (slope 1) at the 256 int8 inputs q 2^ex (index q + 128), as
 * int64 at the exponent it returns; stage: 256 dyadics of scratch. */
int32_t ie_act_table(const int32_t *attrs, int32_t ex, int slope, ie_dyadic *stage, int64_t tab[256]);
/* An Activation over n int8 inputs q at exponent ex: y = f(q) (dy NULL) or dX = dY f'(q), each
 * one requantization with r; returns the exponent of y, or what dX's adds to dY's. stage: the
 * smooth kinds' scratch (256 dyadics). path IE_ACT_TABLE is the definition (the 256-entry tables,
 * int64 rounding), the only path of the kinds without a closed form and of builds without
 * IE_FAST_PATHS (where the other paths fall back to it); Clip also has its 32-bit
 * (IE_ACT_CLIP32) and fastest (IE_ACT_FAST) closed forms, which give the same bytes. */
enum { IE_ACT_TABLE, IE_ACT_CLIP32, IE_ACT_FAST };
int32_t ie_act_run(const int32_t *attrs, int32_t ex, const int8_t *q, const int8_t *dy, size_t n, ie_rounder r,
                   ie_dyadic *stage, int path, int8_t *y);

/* ---- the smooth activations (ops/smooth.c) ---- */
/* ie_act_table for a smooth kind (p0: Pow's exponent). */
int32_t ie_smooth_table(int kind, ie_dyadic p0, int32_t ex, int slope, ie_dyadic *stage, int64_t tab[256]);
/* k = 2p for Pow's exponent p when that is an integer within +-IE_POW_MAX_HALVES, else INT32_MIN. */
int ie_pow_halves_of(ie_dyadic p);
/* Elementary functions on dyadics (31-bit mantissas, each operation rounded to nearest):
 * 2^t and e^x (results below 2^-(2^20) are 0; |t| below 2^20); e^x - 1 with relative precision
 * near 0 (a series below |x| = 1/2); erf, and erfc with relative precision in its tail (a
 * continued fraction from 2 on, a series of positive terms below). */
ie_dyadic ie_dy_exp2(ie_dyadic t);
ie_dyadic ie_dy_exp(ie_dyadic x);
ie_dyadic ie_dy_expm1(ie_dyadic x);
ie_dyadic ie_dy_erf(ie_dyadic x);
ie_dyadic ie_dy_erfc(ie_dyadic x);

/* The check shared by shape-preserving ops along per-sample axis attrs[0] (LayerNorm, Softmax):
 * X an activation, Y of its size, the axis one of X's (ops/elementwise.c). */
ie_status ie_check_along_axis(const ie_model *m, const ie_node_desc *nd, char *err);

void ie_relu_fwd(size_t n, const int8_t *x, int8_t *y);
void ie_relu_bwd(size_t n, const int8_t *y, const int8_t *dy, int8_t *dx);
void ie_bn_relu_backward(const ie_session *s, uint32_t node, const int8_t *relu_y, const int8_t *dy, int8_t *dx);

/* Convolution geometry (NCHW, per sample). */
typedef struct ie_conv_geom {
    uint32_t group, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    uint32_t cin, h, w, cout, ho, wo, cin_g;
    uint32_t chunk_cols; /* columns a GEMM takes samples up to (0: one sample per GEMM) */
#define IE_CONV_CHUNK_COLS 1024
} ie_conv_geom;
/* A node's geometry; chunks of samples unless the build (-Os) or the session (lean_scratch) says
 * otherwise. transposed: a ConvTranspose node's, as the convolution from Y's shape to X's. */
ie_conv_geom ie_conv_geometry(const ie_model *m, const ie_node_desc *nd, const ie_session_config *cfg,
                              int transposed);
/* Checks a sliding window's parameters and that they give ho x wo outputs. */
ie_status ie_window_check(uint32_t h, uint32_t w, uint32_t kh, uint32_t kw, uint32_t sh, uint32_t sw, uint32_t dh,
                          uint32_t dw, uint32_t pt, uint32_t pl, uint32_t pb, uint32_t pr, uint32_t ho, uint32_t wo,
                          char *err);
/* Samples per GEMM for a batch of n (conv.c: chunks), and the bytes of one thread's scratch for
 * n samples in phase IE_PROF_FWD, IE_PROF_DX or IE_PROF_DW. */
size_t ie_conv_chunk(const ie_conv_geom *g, size_t n);
uint64_t ie_conv_scratch(const ie_conv_geom *g, size_t n, int phase);
int32_t ie_conv_fwd(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *x, int32_t ex,
                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, int8_t *scratch, int32_t *acc,
                    int64_t *bias_al, const ie_rounder r[3], int8_t *y, int16_t *y16);
int32_t ie_conv_bwd_dx(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy,
                       const int8_t *w8, int32_t ew, int8_t *wt, int8_t *scratch, int32_t *acc,
                       ie_rounder r, int8_t *dx);
int32_t ie_conv_bwd_dw(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy,
                       const int8_t *x, int32_t ex, int8_t *scratch, int64_t *partial, int64_t *dw, uint8_t *grad32);
/* What a Conv-like node (Conv, ConvTranspose) plans alike: its weight's int8 view (kept for the
 * backward when dX needs it), X kept for dW, the gradient and optimizer buffers of the weight
 * (weight_numel values) and the bias (bias_channels). Returns IE_CONV_NEEDS_DX | _DW as planned. */
enum { IE_CONV_NEEDS_DX = 1, IE_CONV_NEEDS_DW = 2 };
int ie_conv_plan_params(ie_planner *p, uint32_t node, size_t weight_numel, size_t bias_channels);
/* What forward and backward both look up for a Conv-like node of geometry g. */
typedef struct ie_conv_node {
    ie_conv_geom g;
    void **sc;
    ie_value *x, *y;
    uint32_t wi;
    ie_param *pw, *pb;
} ie_conv_node;
ie_conv_node ie_conv_open(ie_session *s, uint32_t node, ie_conv_geom g);
/* Rounding streams of a Conv-like node: the forward's accumulator, bias and output (three in a
 * row from IE_CONV_R_ACC), the input gradient. */
enum { IE_CONV_R_ACC = 1, IE_CONV_R_DX = 4 };
/* The forward's start: the weight's int8 view, and its three rounders. */
void ie_conv_fwd_start(ie_session *s, uint32_t node, const ie_conv_node *c, ie_rounder r[3]);
/* The bias's gradient (channel sums of dY: channels planes of plane values a sample) and its
 * optimizer step, if the node has a trainable bias. */
void ie_conv_bias_update(ie_session *s, uint32_t node, const ie_conv_node *c, size_t channels, size_t plane);
/* dX's int32 sums before rounding (exponent edy + ew): ie_conv_bwd_dx without its requantization. */
void ie_conv_dx_acc(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, const int8_t *w8,
                    int8_t *wt, int8_t *scratch, int32_t *acc);
/* The checks of a Conv-like node whose convolution geometry is g and whose bias has bias_channels
 * values (Conv; ConvTranspose with the geometry of the convolution it transposes). */
ie_status ie_conv_check_geom(const ie_model *m, const ie_node_desc *nd, const ie_conv_geom *g, uint32_t bias_channels,
                             char *err);

/* Softmax cross-entropy gradient exponent: Q30 probabilities times a Q31 reciprocal of n. */
#define IE_CE_GRAD_EXP (-30 - 31)
ie_status ie_softmax_ce_rows(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, const int32_t *labels,
                             int64_t *grad, ie_step_stats *st, char *err);
/* A dense loss over [n, c, p] int8 outputs (a channel's p values contiguous) and labels: the
 * gradient as int64 at exponent *grad_e (grad may be NULL: the loss alone). */
typedef ie_status (*ie_dense_loss)(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, uint32_t p,
                                   const int32_t *labels, int64_t *grad, int32_t *grad_e, ie_step_stats *st, char *err);
/* Per-pixel cross-entropy: labels [n, p], IE_IGNORE_LABEL not counted. */
ie_status ie_softmax_ce_pixels(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, uint32_t p, const int32_t *labels,
                               int64_t *grad, int32_t *grad_e, ie_step_stats *st, char *err);
/* CenterNet's loss over [n, c = classes + 4, p] outputs and labels of the same layout (intedge.h,
 * IE_LOSS_CENTERNET); st->count is the objects. */
ie_status ie_centernet_loss(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, uint32_t p, const int32_t *labels,
                            int64_t *grad, int32_t *grad_e, ie_step_stats *st, char *err);

#endif
