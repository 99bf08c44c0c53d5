/* Internal structures shared by the loader, planner, executor and ops. */
#ifndef IE_INTERNAL_H
#define IE_INTERNAL_H

#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>

#include "../kernels/kernels.h"
#include "intedge.h"
#include "numeric.h"
#include "threads.h"

#define IE_MAX_RANK 6
#define IE_MAX_INPUTS 8
#define IE_MAX_OUTPUTS 2
#define IE_MAX_ATTRS 16
#define IE_NONE UINT32_MAX
#define IE_MAX_FANOUT 64 /* nodes that may read one tensor */
#define IE_ERRMSG_LEN 256
#define IE_ALIGN 64
/* The largest arena a session may plan: 1 TiB, or half the address space of a 32-bit target.
 * Planning adds sizes in 64 bits and refuses past it, so that no size wraps (a batch times a
 * 2^28-element tensor passes 2^32 at once on a microcontroller). */
#define IE_MAX_ARENA_BYTES ((uint64_t)SIZE_MAX / 2 < ((uint64_t)1 << 40) ? (uint64_t)SIZE_MAX / 2 : ((uint64_t)1 << 40))
/* The product of its arguments (counts, bytes) in 64 bits, saturated just past IE_MAX_ARENA_BYTES, which
 * planning refuses. Every size planned goes through it: a product in size_t wraps on a 32-bit target
 * (an im2col of 2^41 bytes would plan as 0). */
#define IE_SIZE(...) \
    ie_size_product((const uint64_t[]){__VA_ARGS__}, sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t))
uint64_t ie_size_product(const uint64_t *factors, size_t n);
/* Largest int8 dot product that int32 holds exactly: 127^2 * 2^17 < 2^31. */
#define IE_MAX_REDUCTION (1u << 17)

/* ---- the op set: one enum, one table (ops/registry.c) --------------------------------------- */
typedef enum ie_op {
    IE_OP_GEMM = 1,    /* Y[R,M] = X[R,K] . W^T (+ B[M]); attrs[0] = 1 if W is [M,K], 0 if [K,M];
                          attrs[1] = rows per sample (0 or 1: the sample flattened), R = batch x rows */
    IE_OP_RELU = 2,    /* Y = max(X, 0) */
    IE_OP_RESHAPE = 3, /* Y = X viewed with the output tensor's per-sample shape */
    IE_OP_CONV = 4,    /* Y = conv2d(X, W) (+ B); attrs in ops/conv.c */
    IE_OP_MAXPOOL = 5, /* attrs: kh kw sh sw dh dw pt pl pb pr */
    IE_OP_AVGPOOL = 6, /* attrs: as MaxPool, then count_include_pad */
    IE_OP_BINARY = 7,  /* Add / Sub / Mul with broadcasting; attrs[0] = 0 add, 1 sub, 2 mul */
    IE_OP_CONCAT = 8,  /* Y = concat(inputs) along attrs[0] (a per-sample axis) */
    IE_OP_BATCHNORM = 9, /* X, scale, bias, running mean, running var; attrs in ops/batchnorm.c */
    IE_OP_ACTIVATION = 10, /* Clip, LeakyRelu, HardSigmoid, HardSwish, Sigmoid; attrs in ops/activation.c */
    IE_OP_TRANSPOSE = 11,  /* the batch stays first; attrs: per-sample permutation */
    IE_OP_PAD = 12,        /* zeros; attrs: per-sample pads before (0..5), after (6..11) */
    IE_OP_RESIZE = 13,     /* [C, H, W] by rational scales, nearest or bilinear; attrs in ops/layout.c */
    IE_OP_DROPOUT = 14,    /* training mask; attrs in ops/layout.c */
    IE_OP_LAYERNORM = 15,  /* X, scale, [bias] over the trailing per-sample axes; attrs in ops/layernorm.c */
    IE_OP_SOFTMAX = 16,    /* X, [mask] along one per-sample axis; attrs in ops/softmax.c */
    IE_OP_MATMUL = 17,     /* Y[..., M, N] = A[..., M, K] . B[..., K, N], two activations, broadcasting;
                              attrs[0], attrs[1]: A, B stored transposed (ops/matmul.c) */
    IE_OP_PARAM_BROADCAST = 18, /* Y[n] = P for every sample (a class token): ops/layout.c */
    IE_OP_EMBEDDING = 19,  /* Y[..., D] = table[ids[...]]: table [V, D], ids an integer input or constant */
    IE_OP_CAST = 20,       /* Y = an integer input as int8 values (attention masks) */
    IE_OP_SLICE = 21,      /* Y = X[start : start + len] along one per-sample axis: ops/layout.c */
    IE_OP_CONV_TRANSPOSE = 22, /* Y = conv_transpose(X, W) (+ B); attrs as Conv's (ops/conv_transpose.c) */
    IE_OP_COUNT
} ie_op;

typedef enum ie_tensor_kind { IE_KIND_INPUT = 0, IE_KIND_PARAM = 1, IE_KIND_ACTIVATION = 2 } ie_tensor_kind;

/* Tensor record flags (docs/format.md). */
enum { IE_TENSOR_STATE = 1, IE_TENSOR_IDS = 2 };

typedef struct ie_tensor_desc {
    uint8_t kind;
    uint8_t rank;
    uint8_t state;       /* a parameter its op updates (running statistics); never trained */
    uint8_t ids;         /* an input of int32 integers (token ids, masks), not IEEE-754 bits */
    uint32_t dims[IE_MAX_RANK]; /* per-sample for inputs and activations; full for parameters */
    uint32_t numel;
    const char *name;
    const uint8_t *data; /* parameters: numel float32 bits, little-endian */
    uint32_t producer;   /* node index, or IE_NONE */
    uint32_t consumer;   /* the last (highest-index) consuming node, or IE_NONE */
    uint32_t first_consumer; /* the first consuming node: its backward completes the gradient */
    uint32_t n_consumers;
    uint32_t param;      /* parameter index, or IE_NONE */
    uint32_t ids_limit;  /* ids inputs: values must lie in [0, ids_limit) (the smallest table read
                            with them), or IE_NONE */
} ie_tensor_desc;

typedef struct ie_node_desc {
    uint16_t op;
    uint8_t n_in, n_out;
    uint32_t in[IE_MAX_INPUTS];
    uint32_t out[IE_MAX_OUTPUTS];
    int32_t attrs[IE_MAX_ATTRS];
    const char *name;
} ie_node_desc;

typedef struct ie_plan_buffer ie_plan_buffer;

struct ie_model {
    const uint8_t *data;
    size_t size;
    uint32_t n_tensors, n_nodes, n_params;
    uint32_t n_inputs;      /* graph inputs: the input tensors, in table order */
    uint32_t input, output; /* input: the first graph input (the one IE_INPUT_U8 maps) */
    ie_tensor_desc *tensors;
    ie_node_desc *nodes;
    uint32_t *param_tensor; /* parameter index -> tensor index */
    ie_plan_buffer *plan_scratch;
    uint32_t plan_capacity;
    uint32_t plan_used; /* buffers the last plan placed in plan_scratch (ie_test_plan reads them) */
    uint32_t crc; /* the file's CRC: ties saved training state to this model */
    int owns_memory; /* loaded with ie_model_load: the handle came from ie_port_calloc */
    int weights_released; /* ie_model_release_weights: the trained parameters' weight bytes (IEEE bits) are gone */
    char errmsg[IE_ERRMSG_LEN];
};

/* ---- runtime state ---------------------------------------------------------------------------- */

typedef struct ie_value {
    int8_t *q;             /* forward data, batch x numel */
    int8_t *g;             /* gradient, batch x numel (a consumer's slot while its backward runs) */
    int8_t *g_total;       /* the gradient buffer itself */
    int32_t e, ge;         /* their exponents */
    uint32_t alias_of;     /* views share storage with this tensor (IE_NONE: own storage) */
    uint8_t requires_grad;
} ie_value;

/* Whether tensor t is held as int16, not int8. With config bn_input_bits 16, a Conv's
 * output whose one reader is a BatchNormalization: the batch statistics and the normalization then
 * read the Conv's sums with 8 more bits, where an int8 rounding's noise inflated the batch variance
 * and flipped the masks of the activations after BatchNorm (docs/fidelity.md, "BatchNorm inputs at
 * 16 bits"). The one place for the rule: the planner sizes, Conv writes and BatchNorm reads by it. */
static inline int ie_tensor_is_q16(const ie_model *m, const ie_session_config *cfg, uint32_t t) {
    const ie_tensor_desc *x = &m->tensors[t];
    return cfg->bn_input_bits == 16 && x->n_consumers == 1 && x->producer != IE_NONE &&
           m->nodes[x->producer].op == IE_OP_CONV && m->nodes[x->consumer].op == IE_OP_BATCHNORM &&
           m->nodes[x->consumer].in[0] == t;
}

/* An int16 tensor's data (ie_tensor_is_q16): int16 in [-32767, 32767] at exponent e, in q's buffer
 * (the arena aligns every buffer). */
static inline int16_t *ie_q16(const ie_value *v) { return (int16_t *)(void *)v->q; }

typedef struct ie_param {
    uint32_t tensor, numel;
    int32_t *w;           /* master mantissas */
    int32_t *mom;         /* SGD's momentum (momentum != 0) or AdamW's m, when trainable */
    int8_t *w8;           /* int8 SR view, rebuilt every step; layout chosen by the op */
    int64_t *grad;        /* exact gradient accumulator for the step; the optimizer normalizes it in place */
    int64_t *v;           /* AdamW's v (>= 0, below 2^62), when trainable */
    int32_t we, me, ve, e8, grad_e; /* the exponents of w, mom, v, w8, grad */
    uint32_t wmax, mmax;  /* max|w|, max|mom|, valid as `known` says: each spares a pass */
    uint8_t known;        /* IE_KNOWN_W | IE_KNOWN_MOM | IE_KNOWN_V */
    uint8_t grad32;       /* grad holds this step's sums as int32 in its first half (Gemm's int32 path; a Conv whose batch is one chunk) */
    uint8_t trainable;
    uint8_t vbits;        /* bit length of max v (known as `known` says) */
} ie_param;

enum { IE_KNOWN_W = 1, IE_KNOWN_MOM = 2, IE_KNOWN_V = 4 };
/* Whatever writes w, mom or v outside the optimizer calls this: a stale max would change results. */
/* Losses that read int32 labels (classes, masks, CenterNet targets); MSE and BCE read float targets. */
static inline int ie_loss_reads_labels(ie_loss loss) { return loss != IE_LOSS_MSE && loss != IE_LOSS_BCE_LOGITS; }

static inline void ie_param_written(ie_param *p) { p->known = 0; }

#define IE_NODE_SCRATCH 12
typedef struct ie_node_rt {
    void *scratch[IE_NODE_SCRATCH]; /* op-specific buffers, placed by the planner */
    uint32_t grad_slot[IE_MAX_INPUTS]; /* for inputs read by several nodes: where this node's
                                          share of the gradient goes (IE_NONE otherwise) */
} ie_node_rt;

/* One consumer's share of the gradient of a tensor read by several nodes. */
typedef struct ie_grad_slot {
    uint32_t tensor;
    int8_t *g;
    int32_t e;
} ie_grad_slot;

typedef enum ie_mode { IE_MODE_TRAIN = 0, IE_MODE_EVAL = 1 } ie_mode;

typedef struct ie_adamw ie_adamw;

struct ie_session {
    ie_model *model;
    ie_session_config cfg;
    ie_exec ex;         /* the kernel tier plus the thread pool, for the arithmetic */
    uint8_t *trainable; /* copy of the flags, one per parameter */
    ie_value *values;
    ie_param *params;
    ie_node_rt *nodes;
    ie_grad_slot *slots;
    ie_adamw *adamw;    /* AdamW's constants (optim.c), NULL for SGD */
    /* loss stage scratch */
    int64_t *loss_acc;  /* batch x outputs */
    int32_t *targets;   /* batch x outputs (MSE) */
    uint8_t *arena;
    uint32_t n_slots;
    int owns_arena;
    uint64_t step;
    uint32_t n;         /* samples in the current call */
    ie_mode mode;
    char errmsg[IE_ERRMSG_LEN];
};

/* Fixed strides for the runtime's own tables in the model memory and the session arena. Each is
 * at least the struct's size on every target (asserted where the struct is complete), so the
 * sizes ie_model_memory_size and ie_session_arena_size compute on a 64-bit host are exact on a
 * 32-bit microcontroller too: `intedge compile` emits them as #defines. */
#define IE_STRIDE_MODEL 384
#define IE_STRIDE_TENSOR_DESC 72
#define IE_STRIDE_NODE_DESC 120
#define IE_STRIDE_SESSION 576
#define IE_STRIDE_VALUE 40
#define IE_STRIDE_PARAM 88
#define IE_STRIDE_NODE_RT 128
#define IE_STRIDE_GRAD_SLOT 24
#define IE_STRIDE_PLAN_BUFFER 32
#define IE_STRIDE_VALUE_LIFE 24
_Static_assert(sizeof(struct ie_model) <= IE_STRIDE_MODEL, "IE_STRIDE_MODEL too small");
_Static_assert(sizeof(ie_tensor_desc) <= IE_STRIDE_TENSOR_DESC, "IE_STRIDE_TENSOR_DESC too small");
_Static_assert(sizeof(ie_node_desc) <= IE_STRIDE_NODE_DESC, "IE_STRIDE_NODE_DESC too small");
_Static_assert(sizeof(struct ie_session) <= IE_STRIDE_SESSION, "IE_STRIDE_SESSION too small");
_Static_assert(sizeof(ie_value) <= IE_STRIDE_VALUE, "IE_STRIDE_VALUE too small");
_Static_assert(sizeof(ie_param) <= IE_STRIDE_PARAM, "IE_STRIDE_PARAM too small");
_Static_assert(sizeof(ie_node_rt) <= IE_STRIDE_NODE_RT, "IE_STRIDE_NODE_RT too small");
_Static_assert(sizeof(ie_grad_slot) <= IE_STRIDE_GRAD_SLOT, "IE_STRIDE_GRAD_SLOT too small");

/* ---- SR stream ids: every rounding site draws from its own stream ---------------------------- */
enum {
    IE_STREAM_INPUT = 1,           /* the first graph input; input i > 0 draws from IE_STREAM_INPUTS + i */
    IE_STREAM_INPUTS = 0x10000,
    IE_STREAM_LOSS = 2,
    IE_STREAM_TARGET = 3,
    IE_STREAM_GRAD_SUM = 0x80000000u, /* + tensor */
    IE_STREAM_GRAD_NARROW = 0x40000000u, /* + tensor: config grad_bits below 8 */
    IE_STREAM_NODE_BASE = 0x100,   /* + node * 16 + slot */
    IE_STREAM_PARAM_BASE = 0x1000000 /* + param * 16 + slot */
};

/* The tensor of graph input `index` (table order), or IE_NONE. */
uint32_t ie_model_input_tensor(const ie_model *m, uint32_t index);

ie_rounder ie_session_rounder(const ie_session *s, uint32_t stream);
/* A step in pieces (ie_session_step; the testing surface injects its own output gradient):
 * the input mapped and the forward run in `mode`; then every backward, and the step counted. */
ie_status ie_session_begin(ie_session *s, uint32_t n, const void *const *inputs, ie_mode mode);
void ie_session_backward(ie_session *s);
/* Bits each term of parameter pi's optimizer integers may take (config sgd_bits; running
 * statistics keep IE_TERM_BITS). */
int ie_session_term_bits(const ie_session *s, uint32_t pi);
static inline uint32_t ie_node_stream(uint32_t node, uint32_t slot) { return IE_STREAM_NODE_BASE + node * 16 + slot; }
static inline uint32_t ie_param_stream(uint32_t param, uint32_t slot) { return IE_STREAM_PARAM_BASE + param * 16 + slot; }

/* Positions in the step schedule: 0 input, 1..n forward, n+1 loss, n+2..2n+1 backward (reverse). */
static inline uint32_t ie_pos_fwd(const ie_model *m, uint32_t node) { (void)m; return 1 + node; }
static inline uint32_t ie_pos_loss(const ie_model *m) { return m->n_nodes + 1; }
static inline uint32_t ie_pos_bwd(const ie_model *m, uint32_t node) { return 2 * m->n_nodes + 1 - node; }

/* ---- planner interface for ops ---------------------------------------------------------------- */
typedef struct ie_planner ie_planner;
/* Asks for `bytes` of arena live from schedule position first to last; *slot receives it. */
void ie_plan_scratch(ie_planner *p, void **slot, size_t bytes, uint32_t first, uint32_t last);
/* Keeps tensor t's forward data alive until position `until` (saved for backward). */
void ie_plan_keep(ie_planner *p, uint32_t tensor, uint32_t until);
ie_session *ie_planner_session(ie_planner *p);

/* ---- op registration -------------------------------------------------------------------------- */
typedef struct ie_op_def {
    const char *name;
    uint8_t min_in, max_in, n_out;
    /* Validates attributes and shapes at load; writes a message into err on failure. */
    ie_status (*check)(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen);
    /* Declares scratch, saved tensors and aliases. */
    void (*plan)(ie_planner *p, uint32_t node);
    void (*forward)(ie_session *s, uint32_t node);
    /* Runs only when the node's output requires grad; fills input grads and parameter grads. */
    void (*backward)(ie_session *s, uint32_t node);
} ie_op_def;

const ie_op_def *ie_op_lookup(uint32_t op);

/* ---- optimizer (optim.c) ---------------------------------------------------------------------- */
/* AdamW's constants: the part fixed by the betas (ie_adamw_init, at session creation), and the
 * part that depends on the step counter and lr (ie_optim_begin_step, before each backward). */
struct ie_adamw {
    ie_dyadic b1, c1, b2, c2; /* beta1, 1 - beta1, beta2, 1 - beta2: mantissas of 31 bits (or 0) */
    int32_t eu;               /* exponent of the step direction m / (sqrt(v) + eps) */
    uint32_t clamp;           /* its bound (1-b1) sqrt(b2 / ((1-b2)(b2-b1^2))), at eu */
    ie_dyadic step_size;      /* lr sqrt(1 - b2^t) / (1 - b1^t) */
    ie_dyadic eps_t;          /* eps sqrt(1 - b2^t) */
    ie_dyadic decay;          /* 1 - lr wd */
};
#define IE_ADAMW_BYTES 64
/* Checks AdamW's hyper-parameters (a message into err) and fills the betas' part of *a. */
ie_status ie_adamw_init(const ie_session_config *cfg, ie_adamw *a, char *err);
/* The per-step constants, before a backward pass. */
void ie_optim_begin_step(ie_session *s);
/* Applies one step of the session's optimizer to parameter p from p->grad (exponent p->grad_e). */
void ie_optim_step(ie_session *s, uint32_t param);
/* Writes the int8 SR view of the master into dst and sets e8. With transpose_rows = R > 0 the
 * master is read as [R, numel/R] and written transposed. nearest: round to nearest instead (a
 * constant operand's view, the same at every step). */
void ie_param_quantize(ie_session *s, uint32_t param, int8_t *dst, size_t transpose_rows, int nearest);

/* Row-sparse parameters ([rows, row_len] tables read by row, an Embedding's): the int8 view of
 * rows ids[0..count) into dst (count x row_len) at the whole table's view exponent (e8); and one
 * optimizer step on rows[0..n_rows) (ascending, distinct) from their exact gradient rows (grad:
 * n_rows x row_len at grad_e), leaving every other row alone. scratch: ie_optim_rows_scratch bytes
 * (64-byte aligned). */
void ie_param_quantize_rows(ie_session *s, uint32_t param, const int32_t *ids, size_t count, size_t row_len,
                            int8_t *dst);
void ie_optim_step_rows(ie_session *s, uint32_t param, const uint32_t *rows, size_t n_rows, size_t row_len,
                        const int64_t *grad, int32_t grad_e, void *scratch);
uint64_t ie_optim_rows_scratch(const ie_session_config *cfg, uint64_t n);

/* ---- loss (ops/loss.c) ------------------------------------------------------------------------ */
ie_status ie_loss_forward_backward(ie_session *s, const int32_t *labels, const uint32_t *targets,
                                   int with_grad, ie_step_stats *stats);
/* An evaluation's hits (n_correct) counted on its wide output, so that int8 ties do not decide
 * them: cross-entropy's argmax hits and CenterNet's positive centres, into *hits. Returns 0 (and
 * counts nothing) without a wide capture or for MSE and BCE. Labels out of range count no hit. */
int ie_loss_count_wide(const ie_session *s, const ie_wide_capture *w, const int32_t *labels, uint32_t *hits);

uint32_t ie_crc32(const uint8_t *p, size_t n);
/* CRC-32 (zlib's) continued over more bytes: ie_crc32(a+b) == update(ie_crc32(a), b). */
uint32_t ie_crc32_update(uint32_t crc, const uint8_t *p, size_t n);
/* A loader's CRC check: the stored CRC-32 of p[0, n) is `want`. Fuzz builds (tools/fuzz) pass
 * every buffer, so that mutations reach the parsers instead of stopping at the checksum (the
 * harness computing a CRC for the runtime to check again took a third of each run). */
static inline int ie_crc_ok(const uint8_t *p, size_t n, uint32_t want) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    (void)p, (void)n, (void)want;
    return 1;
#else
    return ie_crc32(p, n) == want;
#endif
}

/* Formats into a fixed buffer (vsnprintf-free for bare metal would come later). */
void ie_set_err(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Little-endian fields of untrusted buffers, at any alignment. */
static inline uint32_t ie_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t ie_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void ie_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline size_t ie_align_up(size_t x) { return (x + (IE_ALIGN - 1)) & ~(size_t)(IE_ALIGN - 1); }

#endif
