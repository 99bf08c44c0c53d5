/*
 * intedge.h — the one public header of libintedge, an integer-only training runtime.
 *
 * Numbers. Every tensor that enters a multiply is int8 in [-127, 127] with one shared
 * power-of-two exponent: value = q * 2^e. Products accumulate exactly in int32/int64 and go
 * back to int8 by stochastic rounding (SR) driven by a counter-based hash of
 * (seed, stream, step, element), so results are identical on every CPU and thread count.
 * Master weights, momentum and AdamW's m are int32 with a per-tensor exponent; AdamW's v is
 * int64 with one (docs/number-format.md says why). Floats only cross the
 * API as IEEE-754 bit patterns (uint32_t); the runtime converts them with integer operations.
 *
 * Conventions (after SQLite):
 *   - every call returns an ie_status; IE_OK is 0;
 *   - handles are opaque; a failed call leaves a message in its handle (ie_model_errmsg,
 *     ie_session_errmsg). ie_session_create reports through the model's message;
 *   - there is no global mutable state: two sessions never share anything writable;
 *   - ie_session_step and ie_session_forward never allocate: all memory comes from one arena
 *     whose size ie_session_arena_size tells before anything is allocated.
 *
 * Lifetime: a model borrows the buffer given to ie_model_load (it may sit in flash); the
 * buffer must outlive the model, and the model must outlive its sessions.
 */
#ifndef INTEDGE_H
#define INTEDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define IE_API __declspec(dllexport)
#else
#define IE_API __attribute__((visibility("default")))
#endif

#define IE_VERSION_MAJOR 0
#define IE_VERSION_MINOR 1

/* IE_CDEF_BEGIN — the Python binding (cffi) reads the declarations from here to IE_CDEF_END. */

typedef enum ie_status {
    IE_OK = 0,
    IE_ERR_ARG = 1,         /* a NULL pointer, a zero size, a value out of range */
    IE_ERR_FORMAT = 2,      /* a model or checkpoint buffer is malformed or truncated */
    IE_ERR_UNSUPPORTED = 3, /* a valid request this build cannot do (op, shape, version) */
    IE_ERR_NOMEM = 4,       /* an allocation failed, or the caller's arena is too small */
    IE_ERR_VALUE = 5,       /* data the math cannot take: NaN/Inf, a label out of range */
    IE_ERR_STATE = 6        /* the call does not fit the handle's state */
} ie_status;

/* A dyadic constant: value = m * 2^e. Optimizer hyper-parameters travel in this form. */
typedef struct ie_dyadic {
    int32_t m;
    int32_t e;
} ie_dyadic;

typedef enum ie_loss {
    IE_LOSS_SOFTMAX_CE = 0, /* logits [N, C], labels int32 in [0, C) */
    IE_LOSS_MSE = 1,        /* outputs [N, D], targets float32 bits [N, D]; mean over N*D */
    IE_LOSS_BCE_LOGITS = 2, /* outputs [N, D] logits, targets in [0, 1] as float32 bits [N, D]; mean
                               over N*D; n_correct counts elements whose sign matches t >= 0.5 */
    IE_LOSS_SOFTMAX_CE_PIXELS = 3, /* semantic segmentation: outputs [N, C, H, W] logits (the first
                               per-sample axis is the classes, the others the pixels), labels int32
                               [N, H, W] in [0, C) or IE_IGNORE_LABEL; softmax cross-entropy per
                               pixel, mean over the counted pixels. ie_step_stats.count is their
                               number and n_correct the pixels whose argmax is the label; a batch
                               with no counted pixel has loss 0 and a zero gradient */
    IE_LOSS_CENTERNET = 4   /* object detection, CenterNet-style (Zhou et al., "Objects as Points"):
                               outputs [N, C + 4, h, w]; channels 0..C-1 are heatmap logits,
                               C, C+1 the box width and height in output cells, C+2, C+3 the
                               centre's sub-cell offset (x, y). The labels are int32 in the
                               output's layout, C + 4 planes of h * w a sample:
                                 planes 0..C-1: the Gaussian heat target in Q30, 0..IE_HEAT_ONE;
                                   a cell at IE_HEAT_ONE is an object's centre;
                                 planes C..C+3: at a centre cell, the w, h, offset x, offset y
                                   targets in Q16 (value * 65536, within 0..IE_BOX_TARGET_MAX);
                                   IE_NO_BOX in all four at every other cell.
                               Loss: the penalty-reduced focal loss (alpha 2, beta 4) on
                               sigmoid(heatmap) plus L1 on w, h (weight 0.1) and on the offsets
                               (weight 1) at the cells with box targets, the sum divided by the
                               number of centre cells in the batch (1 if none). ie_step_stats.count
                               is that number of objects; n_correct the centres whose logit is > 0 */
} ie_loss;

/* IE_LOSS_CENTERNET's label encoding: heat 1.0 in Q30, no box target at a cell, the largest box
 * target (256 output cells in Q16). */
#define IE_HEAT_ONE 1073741824
#define IE_NO_BOX -1
#define IE_BOX_TARGET_MAX 16777216

/* A pixel label that IE_LOSS_SOFTMAX_CE_PIXELS does not count (PASCAL VOC's border value). */
#define IE_IGNORE_LABEL 255

/* How ie_session_step/evaluate/forward read their input pointer `x`. */
typedef enum ie_input_format {
    IE_INPUT_F32_BITS = 0, /* const uint32_t *: float32 bit patterns */
    IE_INPUT_U8 = 1        /* const uint8_t *: pixels/sensor bytes, mapped per channel (below) */
} ie_input_format;

/* How training and evaluation round when they narrow an integer. */
typedef enum ie_rounding {
    IE_ROUND_STOCHASTIC = 0, /* unbiased stochastic rounding: the method, and the default */
    IE_ROUND_NEAREST = 1     /* round half up everywhere, for ablation studies (docs/fidelity.md) */
} ie_rounding;

typedef struct ie_model ie_model;
typedef struct ie_session ie_session;

/* A graph input. Data inputs take the config's input format (the first input) or IEEE-754
 * binary32 bit patterns (uint32); integer inputs (ids != 0: token ids, attention masks) take int32 values. */
typedef struct ie_input_info {
    const char *name; /* borrowed from the model buffer; NUL-terminated */
    uint32_t rank;
    uint32_t dims[6]; /* per sample */
    uint32_t numel;
    uint32_t ids;
} ie_input_info;

/* What a parameter (an ONNX initializer the graph trains) looks like. */
typedef struct ie_param_info {
    const char *name; /* borrowed from the model buffer; NUL-terminated */
    uint32_t rank;
    uint32_t dims[6];
    uint32_t numel;
} ie_param_info;

/* The optimizer a session runs. A zeroed config is plain SGD. */
typedef enum ie_optimizer {
    IE_OPTIM_SGD = 0,  /* PyTorch's SGD: g' = g + wd*w; v = mu*v + g'; w -= lr*v */
    IE_OPTIM_ADAMW = 1 /* PyTorch's AdamW (decoupled weight decay), step t = 1, 2, ...:
                          w -= lr*wd*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
                          w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) */
} ie_optimizer;

typedef struct ie_session_config {
    uint32_t batch_size;  /* largest batch a step or forward call may pass */
    ie_loss loss;
    ie_dyadic lr;         /* both optimizers; ie_session_set_lr changes it between steps */
    ie_dyadic momentum;   /* SGD only ({0,0}: plain SGD); AdamW refuses a nonzero one */
    ie_dyadic weight_decay; /* SGD: added to the gradient; AdamW: decoupled (w -= lr*wd*w) */
    uint64_t seed;        /* drives every stochastic rounding */
    const uint8_t *trainable; /* one flag per parameter (ie_model_param_count), or NULL = all */
    /* IE_INPUT_U8: a sample is `input_channels` planes (CHW); byte p of channel c stands for
     * (p - input_offset_q8[c] / 256) * input_scale_m[c] * 2^input_scale_e, so normalization
     * ((p/255 - mean)/std: offset = 256*255*mean, scale = 1/(255*std)) folds into the mapping
     * and no float is involved. |offset| <= 2^24, scale > 0. */
    ie_input_format input_format;
    uint32_t input_channels;
    const int32_t *input_offset_q8;
    const int32_t *input_scale_m;
    int32_t input_scale_e;
    /* Kernel tier by name ("scalar", "avx2", "avx512vnni", ...), NULL = the best this CPU runs.
     * Every tier gives identical bytes; naming one is for testing and benchmarks. */
    const char *kernels;
    /* Worker threads for the GEMMs (0 or 1: none). Results are identical for every count.
     * Hosted builds only; sessions with threads allocate their pool with malloc. */
    uint32_t threads;
    /* Nonzero: every activation and gradient keeps memory of its own for the whole step (the
     * arena grows to hold them all), so that the testing surface (intedge_testing.h) can read
     * any of them after a step or forward. For tests and debugging; no result changes. */
    uint32_t keep_tensors;
    /* Nonzero: plan the least scratch memory, convolutions taking one sample per GEMM instead of
     * chunks of samples (size-optimized builds, -Os, always do). No result changes. `intedge
     * compile` sets it, and plans a firmware's arena with it, so that host and firmware agree. */
    uint32_t lean_scratch;
    /* The optimizer, and AdamW's hyper-parameters (SGD ignores them). AdamW needs
     * 0 <= beta1 < 1, 0 < beta2 < 1 and beta1^2 < beta2 (then |m| / sqrt(v) is bounded, which fixes
     * the exponent of the step direction), and eps >= 0. PyTorch's defaults are beta1 0.9, beta2
     * 0.999, eps 1e-8. AdamW keeps m as int32 and v as int64 beside each trained parameter's
     * master (12 bytes per element in the arena), and steps the rows of an Embedding table
     * lazily: a row the batch did not use keeps its master, m and v. */
    ie_optimizer optimizer;
    ie_dyadic beta1;
    ie_dyadic beta2;
    ie_dyadic eps;
    /* Number-format ablations (docs/fidelity.md). Zero keeps the default format, byte for byte;
     * every setting is bit-exact across kernel tiers and thread counts. */
    ie_rounding rounding;
    /* Activation gradients as signed grad_bits-bit integers (|q| < 2^(grad_bits-1)), 2..8;
     * 0 = 8, the int8 of the number format. Narrower ones are int8 tensors re-rounded. */
    uint32_t grad_bits;
    /* Width of the optimizer's integers (master weights, momentum, the gradient entering SGD),
     * 16..32; 0 = 32. Their magnitudes stay below 2^(sgd_bits - 2): 16 is the int16 SGD of
     * Ghaffari et al. with the same headroom as the default int32 masters. */
    uint32_t sgd_bits;
    /* Width of a BatchNormalization's input when a Conv's output feeds it alone, 8 or 16; 0 = 8.
     * 16 hands BatchNorm the Conv's sums as int16 (its batch statistics, normalization and
     * backward read 8 more bits): larger gradients through deep BatchNorm nets, at a cost in
     * time and arena (an int16 tensor per such Conv; docs/fidelity.md). */
    uint32_t bn_input_bits;
} ie_session_config;

/* Per-step results. The loss is fixed point: loss_sum_q16 / 65536 / count is the mean loss
 * (nats for cross-entropy). n_correct counts argmax hits (cross-entropy only). count is the
 * samples, the counted pixels of IE_LOSS_SOFTMAX_CE_PIXELS, or the objects of IE_LOSS_CENTERNET. */
typedef struct ie_step_stats {
    int64_t loss_sum_q16;
    uint32_t count;
    uint32_t n_correct;
} ie_step_stats;

/* ---- constants and conversions ---------------------------------------------------------- */

/* A float32 (as IEEE-754 bits) to the nearest dyadic with a 31-bit mantissa. IE_ERR_VALUE for
 * NaN or Inf. Done with integer operations only. */
IE_API ie_status ie_dyadic_from_f32_bits(uint32_t bits, ie_dyadic *out);

/* Name of the index-th kernel tier this CPU runs (best last), NULL past the end. */
IE_API const char *ie_kernel_tier(uint32_t index);

/* Short static text for a status code. */
IE_API const char *ie_status_str(ie_status status);

/* ---- models ----------------------------------------------------------------------------- */

/* Validates an .iem buffer (every offset, size, shape and op parameter) and opens it. The
 * model borrows `data`. On failure other than IE_ERR_NOMEM, *out is still a handle carrying the
 * message; free it with ie_model_free. */
IE_API ie_status ie_model_load(const void *data, size_t size, ie_model **out);
/* The same without malloc (bare metal): the handle and its decoded tables live in the caller's
 * `mem` (8-byte aligned, at least ie_model_memory_size bytes; the figure is the same on every
 * target, so a host tool can print it for a microcontroller). ie_model_free then frees nothing. */
IE_API ie_status ie_model_memory_size(const void *data, size_t size, size_t *bytes);
IE_API ie_status ie_model_load_into(const void *data, size_t size, void *mem, size_t mem_size,
                                    ie_model **out);
IE_API void ie_model_free(ie_model *model);
/* A session's master weights are its own copy of the model's weights (IEEE-754 bits): once sessions are
 * created, the weight bytes of every parameter but the constants ops read while they run
 * (parameters the .iem flags as state, e.g. constant token ids) are needed only to create
 * another session. After this call the caller may free or overwrite those bytes (a host gives
 * their pages back; 43 MB for ResNet-18); ie_session_create then refuses this model. */
IE_API ie_status ie_model_release_weights(ie_model *model);
IE_API const char *ie_model_errmsg(const ie_model *model);

IE_API uint32_t ie_model_param_count(const ie_model *model);
IE_API ie_status ie_model_param_info(const ie_model *model, uint32_t index, ie_param_info *out);
/* Per-sample element counts of the (first) graph input and of the output (e.g. 64 and 10). */
IE_API uint32_t ie_model_input_size(const ie_model *model);
IE_API uint32_t ie_model_output_size(const ie_model *model);
/* Graph inputs (a transformer has input_ids, attention_mask, ...), in the order the *_inputs
 * calls take them. */
IE_API uint32_t ie_model_input_count(const ie_model *model);
IE_API ie_status ie_model_input_info(const ie_model *model, uint32_t index, ie_input_info *out);
/* The output's name and per-sample shape, in the record an input's comes in (ids is 0): a
 * segmentation net's [C, H, W] tells how many labels a sample has. */
IE_API ie_status ie_model_output_info(const ie_model *model, ie_input_info *out);

/* ---- sessions --------------------------------------------------------------------------- */

/* Bytes the session needs for this config: handle, plan, parameters, optimizer state and
 * every activation and gradient, laid out by the planner. Nothing is allocated. The figure is
 * the same on every target (32- or 64-bit) with the same thread count. */
IE_API ie_status ie_session_arena_size(ie_model *model, const ie_session_config *config,
                                       size_t *bytes);

/* Creates a session. With arena == NULL the runtime allocates the arena itself; otherwise it
 * uses the caller's (at least ie_session_arena_size bytes, 64-byte aligned for best speed) and
 * never calls malloc. Initial parameters come from the model. Errors go to the model's errmsg. */
IE_API ie_status ie_session_create(ie_model *model, const ie_session_config *config,
                                   void *arena, size_t arena_size, ie_session **out);
IE_API void ie_session_free(ie_session *session);
IE_API const char *ie_session_errmsg(const ie_session *session);

/* One training step (forward, backward, the config's optimizer) on n <= batch_size samples. x
 * holds n * ie_model_input_size values in the config's input format (float32 bits by default).
 * labels (cross-entropy: n; per-pixel cross-entropy: n * ie_model_output_size / C, one per pixel;
 * CenterNet: n * ie_model_output_size)
 * or targets (MSE and BCE: n * output size float32 bits) per the loss; the other may be NULL.
 * stats may be NULL. */
IE_API ie_status ie_session_step(ie_session *session, uint32_t n, const void *x,
                                 const int32_t *labels, const uint32_t *targets,
                                 ie_step_stats *stats);

/* The same for models with several graph inputs: inputs[i] holds n samples of graph input i
 * (ie_model_input_info): data in the config's input format for input 0 and as binary32 bit
 * patterns (uint32) for the others, int32 values for integer inputs. The single-input calls equal these with
 * inputs = &x. An integer outside what its Embedding table holds is IE_ERR_VALUE. */
IE_API ie_status ie_session_step_inputs(ie_session *session, uint32_t n, const void *const *inputs,
                                        const int32_t *labels, const uint32_t *targets, ie_step_stats *stats);
IE_API ie_status ie_session_evaluate_inputs(ie_session *session, uint32_t n, const void *const *inputs,
                                            const int32_t *labels, const uint32_t *targets, ie_step_stats *stats);
IE_API ie_status ie_session_forward_inputs(ie_session *session, uint32_t n, const void *const *inputs,
                                           uint32_t *out);

/* Evaluation-mode forward (nothing saved, no step counted). Outputs are int8 q with one
 * exponent (out_q: n * output size) ... */
IE_API ie_status ie_session_forward(ie_session *session, uint32_t n, const void *x,
                                    int8_t *out_q, int16_t *out_e);
/* ... or, finer, as float32 bits: when the output's node is the graph's last and ends in the
 * requantization of an accumulator (Conv, ConvTranspose, Gemm, bilinear Resize, a MatMul summing
 * in int32), its sums are rounded to 23 bits instead of 8 (|q| < 2^23 at one exponent, exact in
 * float32), so that an argmax or a peak is not decided by a tie of the int8 grid; other outputs
 * are the int8 values.
 * Bit-exact across kernel tiers and thread counts, like everything else. */
IE_API ie_status ie_session_forward_f32_bits(ie_session *session, uint32_t n, const void *x,
                                             uint32_t *out);
/* Loss and accuracy of an evaluation-mode forward, as ie_session_step reports them; the loss is
 * the int8 output's, n_correct (argmax hits, CenterNet's positive centres) the finer output's of
 * ie_session_forward_f32_bits. */
IE_API ie_status ie_session_evaluate(ie_session *session, uint32_t n, const void *x,
                                     const int32_t *labels, const uint32_t *targets,
                                     ie_step_stats *stats);

/* Master weights of parameter `index`: numel int32 mantissas and one exponent. */
IE_API ie_status ie_session_get_param(ie_session *session, uint32_t index, int32_t *mantissas,
                                      int16_t *exponent);
IE_API ie_status ie_session_set_param(ie_session *session, uint32_t index,
                                      const int32_t *mantissas, int16_t exponent);
/* The same as float32 bits (round to nearest even), and back (mapped with integer ops). */
IE_API ie_status ie_session_get_param_f32_bits(ie_session *session, uint32_t index,
                                               uint32_t *out);
IE_API ie_status ie_session_set_param_f32_bits(ie_session *session, uint32_t index,
                                               const uint32_t *values);

IE_API ie_status ie_session_set_lr(ie_session *session, ie_dyadic lr);
/* Threads the session runs on (1 without a pool). */
IE_API uint32_t ie_session_threads(const ie_session *session);

/* The kernel tier the session runs. */
IE_API const char *ie_session_kernels(const ie_session *session);

/* Steps taken so far; it is part of every SR counter. */
IE_API uint64_t ie_session_step_count(const ie_session *session);

/* Training state: master weights, optimizer state (SGD's momentum, AdamW's m and v) and the
 * step counter, tied to the model by its CRC. SGD sessions write version 1, AdamW sessions
 * version 2 (docs/format.md); a session loads a state of its own optimizer only.
 * Restoring it into a session of the same model and config continues training bit-exactly.
 * The buffer is validated like a model (versioned, CRC-protected, every size checked). */
IE_API ie_status ie_session_state_size(const ie_session *session, size_t *bytes);
IE_API ie_status ie_session_save_state(const ie_session *session, void *buffer, size_t size);
IE_API ie_status ie_session_load_state(ie_session *session, const void *buffer, size_t size);
/* CRC-32 of that training state (the CRC its saved header carries), computed without a buffer.
 * Equal digests mean bit-identical weights, optimizer state and step: a run on a microcontroller and
 * the same run on a PC can be compared by this one number. */
IE_API ie_status ie_session_digest(const ie_session *session, uint32_t *crc32);
/* Bytes [offset, offset + length) of what ie_session_save_state writes, without a buffer for
 * the whole state: a microcontroller streams its trained state out over a UART or to flash in
 * small pieces (each call runs over the state twice; the bytes are identical). */
IE_API ie_status ie_session_read_state(const ie_session *session, size_t offset, void *buffer,
                                       size_t length);

/* ---- CenterNet decoding, for firmware ------------------------------------------------ */

/* A detection: the box in input pixels times 256 (top-left corner, width, height), its class,
 * the peak's output cell, and the class's heatmap logit there as the int8 mantissa at the
 * output's exponent (sigmoid of it is the score; it ranks the detections). */
typedef struct ie_detection {
    int32_t x_q8, y_q8, w_q8, h_q8;
    int32_t logit_q;
    uint32_t class_id;
    uint32_t cx, cy;
} ie_detection;

/* Decodes one image's IE_LOSS_CENTERNET output (out_q: [classes + 4, h, w] int8 at exponent
 * out_e, as ie_session_forward writes it for that image) in integers, as CenterNet does:
 * heatmap cells that are their 3x3 neighbourhood's max (of equal neighbours only the first in
 * raster order), whose logit is above min_logit_q16 / 65536 (a score threshold p is the logit
 * ln(p / (1 - p)), computed once on the host), the k highest logits (ties: class, then raster
 * order), best first, into dets[0 .. *n_dets). Box: w, h = size * stride; x, y = (cell + offset)
 * * stride - size * stride / 2, exact and rounded once to 1/256 pixel (halves up; saturated at
 * +-2^31 - 1). This is python/intedge/detect.py's decode on the same output. Needs no arena and
 * allocates nothing. IE_ERR_ARG for NULL pointers, k = 0, stride outside 1..1024, h or w
 * outside 1..32768, an output past 2^31 elements, or out_e outside [-30, 7]. */
IE_API ie_status ie_centernet_decode(const int8_t *out_q, int16_t out_e, uint32_t classes, uint32_t h,
                                     uint32_t w, uint32_t stride, int32_t min_logit_q16, uint32_t k,
                                     ie_detection *dets, uint32_t *n_dets);

/* IE_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* INTEDGE_H */
