/* Sessions: arena layout, parameter initialization, and the step/forward executor. */
#include <string.h>

#include "../port/ie_port.h"
#include "internal.h"
#include "planner.h"

/* Evaluation rounds like training: round to nearest repeats one error wherever a tensor repeats
 * a value (an image's plain background), an offset per channel that eval-mode BatchNorm, with
 * fixed statistics, cannot remove (docs/fidelity.md). Its draws are keyed by the step, so an
 * evaluation of one state is reproducible. */
ie_rounder ie_session_rounder(const ie_session *s, uint32_t stream) {
    ie_rounder r;
    r.key = ie_stream_key(s->cfg.seed, stream, s->step);
    r.nearest = s->cfg.rounding == IE_ROUND_NEAREST;
    return r;
}

int ie_session_term_bits(const ie_session *s, uint32_t pi) {
    if (s->model->tensors[s->model->param_tensor[pi]].state || !s->cfg.sgd_bits) return IE_TERM_BITS;
    return IE_TERM_BITS - (32 - (int)s->cfg.sgd_bits);
}

static int trained(const ie_session_config *cfg, const ie_model *m, uint32_t pi) {
    return (!cfg->trainable || cfg->trainable[pi]) && !m->tensors[m->param_tensor[pi]].state;
}

/* Optimizer state beside a trained parameter's master: SGD's momentum (when momentum != 0), or
 * AdamW's m (int32) and v (int64). */
static int has_first_moment(const ie_session_config *cfg, const ie_model *m, uint32_t pi) {
    return (cfg->optimizer == IE_OPTIM_ADAMW || cfg->momentum.m != 0) && trained(cfg, m, pi);
}

static int has_second_moment(const ie_session_config *cfg, const ie_model *m, uint32_t pi) {
    return cfg->optimizer == IE_OPTIM_ADAMW && trained(cfg, m, pi);
}

/* The fixed part of the arena, in order: handle, flags, tables, AdamW's constants, masters and
 * optimizer state; then the planned region. With base == NULL only the sizes are computed. */
typedef struct layout {
    size_t session, flags, input_map, values, params, nodes, slots, adamw, persistent, region, total;
} layout;

static ie_status compute_layout(ie_model *m, const ie_session_config *cfg, layout *L) {
    uint64_t off = 0; /* 64 bits, checked against IE_MAX_ARENA_BYTES below: no sum wraps */
    L->session = off; off += ie_align_up(IE_STRIDE_SESSION);
    L->flags = off; off += ie_align_up(m->n_params);
    L->input_map = off;
    if (cfg->input_format == IE_INPUT_U8) off += ie_align_up(2 * sizeof(int32_t) * cfg->input_channels);
    L->values = off; off += ie_align_up(IE_STRIDE_VALUE * m->n_tensors);
    L->params = off; off += ie_align_up(IE_STRIDE_PARAM * m->n_params);
    L->nodes = off; off += ie_align_up(IE_STRIDE_NODE_RT * m->n_nodes);
    L->slots = off; off += ie_align_up(IE_STRIDE_GRAD_SLOT * ie_count_grad_slots(m));
    L->adamw = off;
    if (cfg->optimizer == IE_OPTIM_ADAMW) off += ie_align_up(IE_ADAMW_BYTES);
    L->persistent = off;
    for (uint32_t i = 0; i < m->n_params; i++) {
        size_t numel = m->tensors[m->param_tensor[i]].numel;
        off += ie_align_up(sizeof(int32_t) * numel) * (has_first_moment(cfg, m, i) ? 2 : 1);
        if (has_second_moment(cfg, m, i)) off += ie_align_up(sizeof(int64_t) * numel);
    }
    L->region = (size_t)off;
    size_t region = 0;
    ie_status st = ie_plan_region(m, cfg, NULL, NULL, &region);
    if (st == IE_OK && off + region > IE_MAX_ARENA_BYTES) {
        ie_set_err(m->errmsg, "this model's parameters and optimizer state need more than %lu MiB",
                   (unsigned long)(IE_MAX_ARENA_BYTES >> 20));
        return IE_ERR_NOMEM;
    }
    L->total = (size_t)(off + region);
    return st;
}

static ie_status check_config(ie_model *m, const ie_session_config *cfg) {
    if (!m || !m->tensors) return IE_ERR_ARG;
    if (!cfg) { ie_set_err(m->errmsg, "config is NULL"); return IE_ERR_ARG; }
    if (cfg->batch_size == 0 || cfg->batch_size > (1u << 20)) {
        ie_set_err(m->errmsg, "batch size %" PRIu32 " is outside 1..1048576", cfg->batch_size);
        return IE_ERR_ARG;
    }
    switch (cfg->loss) { /* a switch, not a range test: with short enums (arm-none-eabi) a range test is always true */
    case IE_LOSS_SOFTMAX_CE: case IE_LOSS_MSE: case IE_LOSS_BCE_LOGITS: case IE_LOSS_SOFTMAX_CE_PIXELS: case IE_LOSS_CENTERNET:
        break;
    default:
        ie_set_err(m->errmsg, "unknown loss %d", (int)cfg->loss);
        return IE_ERR_ARG;
    }
    if (cfg->loss == IE_LOSS_SOFTMAX_CE_PIXELS && m->tensors[m->output].rank < 2) {
        ie_set_err(m->errmsg, "per-pixel cross-entropy needs an output of classes by pixels ([C, H, W] a sample); this one has rank %u",
                   (unsigned)m->tensors[m->output].rank);
        return IE_ERR_ARG;
    }
    if (cfg->loss == IE_LOSS_CENTERNET && (m->tensors[m->output].rank < 2 || m->tensors[m->output].dims[0] < 5)) {
        ie_set_err(m->errmsg, "the CenterNet loss needs an output of C + 4 >= 5 channels by cells ([C + 4, h, w] a "
                              "sample: heatmaps, then box w, h and offset x, y)");
        return IE_ERR_ARG;
    }
    if (cfg->lr.m < 0 || cfg->momentum.m < 0 || cfg->weight_decay.m < 0) {
        ie_set_err(m->errmsg, "lr, momentum and weight decay must not be negative");
        return IE_ERR_ARG;
    }
    if (cfg->optimizer == IE_OPTIM_ADAMW) {
        ie_adamw a;
        ie_status st = ie_adamw_init(cfg, &a, m->errmsg);
        if (st != IE_OK) return st;
    } else if (cfg->optimizer != IE_OPTIM_SGD) {
        ie_set_err(m->errmsg, "unknown optimizer %d", (int)cfg->optimizer);
        return IE_ERR_ARG;
    }
    if (cfg->input_format == IE_INPUT_U8) {
        uint32_t c = cfg->input_channels, numel = m->tensors[m->input].numel;
        if (c == 0 || numel % c != 0 || !cfg->input_offset_q8 || !cfg->input_scale_m) {
            ie_set_err(m->errmsg, "uint8 input needs a channel count dividing the %" PRIu32 " input values, and per-channel "
                       "offsets and scales", numel);
            return IE_ERR_ARG;
        }
        for (uint32_t i = 0; i < c; i++)
            if (cfg->input_scale_m[i] <= 0 || cfg->input_offset_q8[i] > (1 << 24) || cfg->input_offset_q8[i] < -(1 << 24)) {
                ie_set_err(m->errmsg, "uint8 input: channel %" PRIu32 " needs a positive scale and an offset within +-2^24", i);
                return IE_ERR_ARG;
            }
        if (cfg->input_scale_e < -200 || cfg->input_scale_e > 200) {
            ie_set_err(m->errmsg, "uint8 input: scale exponent %" PRId32 " is out of range", cfg->input_scale_e);
            return IE_ERR_ARG;
        }
    } else if (cfg->input_format != IE_INPUT_F32_BITS) {
        ie_set_err(m->errmsg, "unknown input format %d", (int)cfg->input_format);
        return IE_ERR_ARG;
    }
    if (cfg->rounding != IE_ROUND_STOCHASTIC && cfg->rounding != IE_ROUND_NEAREST) {
        ie_set_err(m->errmsg, "unknown rounding %d", (int)cfg->rounding);
        return IE_ERR_ARG;
    }
    if (cfg->grad_bits && (cfg->grad_bits < 2 || cfg->grad_bits > 8)) {
        ie_set_err(m->errmsg, "grad_bits %" PRIu32 " is outside 2..8 (0: 8)", cfg->grad_bits);
        return IE_ERR_ARG;
    }
    if (cfg->sgd_bits && (cfg->sgd_bits < 16 || cfg->sgd_bits > 32)) {
        ie_set_err(m->errmsg, "sgd_bits %" PRIu32 " is outside 16..32 (0: 32)", cfg->sgd_bits);
        return IE_ERR_ARG;
    }
    if (cfg->bn_input_bits && cfg->bn_input_bits != 8 && cfg->bn_input_bits != 16) {
        ie_set_err(m->errmsg, "bn_input_bits %" PRIu32 " is neither 8 nor 16 (0: 8)", cfg->bn_input_bits);
        return IE_ERR_ARG;
    }
    if (cfg->sgd_bits && cfg->sgd_bits != 32 && cfg->optimizer == IE_OPTIM_ADAMW) {
        ie_set_err(m->errmsg, "sgd_bits narrows SGD's integers; AdamW keeps 32 (leave sgd_bits 0)");
        return IE_ERR_ARG;
    }
    if (!ie_kernels_select(cfg->kernels)) {
        ie_set_err(m->errmsg, "kernel tier '%s' does not run on this CPU (or was not built); try scalar", cfg->kernels);
        return IE_ERR_UNSUPPORTED;
    }
    if ((uint64_t)cfg->batch_size * m->tensors[m->output].numel > (1u << 28)) {
        ie_set_err(m->errmsg, "batch size %" PRIu32 " times %" PRIu32 " outputs is too large", cfg->batch_size,
                   m->tensors[m->output].numel);
        return IE_ERR_UNSUPPORTED;
    }
    return IE_OK;
}

ie_status ie_session_arena_size(ie_model *m, const ie_session_config *cfg, size_t *bytes) {
    ie_status st = check_config(m, cfg);
    if (st != IE_OK) return st;
    if (!bytes) return IE_ERR_ARG;
    layout L;
    st = compute_layout(m, cfg, &L);
    if (st == IE_OK) *bytes = L.total + IE_ALIGN; /* slack to align an arbitrary caller pointer */
    return st;
}


/* Master weights from the model's float32 bits, mapped with one exponent (29-bit mantissas, or
 * narrower for a narrower sgd_bits). */
static ie_status init_param(ie_session *s, uint32_t pi) {
    ie_param *p = &s->params[pi];
    const ie_tensor_desc *t = &s->model->tensors[p->tensor];
    uint32_t max_mag = 0;
    for (uint32_t i = 0; i < p->numel; i++) {
        uint32_t v = ie_rd32(t->data + 4 * i);
        if (!ie_f32_bits_is_finite(v)) {
            ie_set_err(s->model->errmsg, "parameter '%s' holds NaN or Inf at element %" PRIu32, t->name, i);
            return IE_ERR_VALUE;
        }
        if ((v & 0x7FFFFFFFU) > max_mag) max_mag = v & 0x7FFFFFFFU;
    }
    int bits = ie_session_term_bits(s, pi);
    ie_f32_common_exponent(&max_mag, 1, bits, &p->we);
    ie_rounder r = {ie_stream_key(s->cfg.seed, ie_param_stream(pi, 15), 0), 0};
    for (uint32_t i = 0; i < p->numel; i++) p->w[i] = ie_f32_to_fixed(ie_rd32(t->data + 4 * i), p->we, bits, ie_draw(r, i));
    ie_param_written(p);
    return IE_OK;
}

ie_status ie_session_create(ie_model *m, const ie_session_config *cfg, void *arena, size_t arena_size,
                            ie_session **out) {
    if (!out) return IE_ERR_ARG;
    *out = NULL;
    ie_status st = check_config(m, cfg);
    if (st != IE_OK) return st;
    if (m->weights_released) {
        ie_set_err(m->errmsg, "the model's weights were released (ie_model_release_weights); load it again to create a session");
        return IE_ERR_STATE;
    }
    layout L;
    if ((st = compute_layout(m, cfg, &L)) != IE_OK) return st;
    int owns = arena == NULL;
    if (owns) {
        arena_size = L.total + IE_ALIGN;
        arena = ie_port_calloc(arena_size);
        if (!arena) {
            ie_set_err(m->errmsg, "cannot allocate a %lu-byte arena", (unsigned long)arena_size);
            return IE_ERR_NOMEM;
        }
    }
    uint8_t *base = (uint8_t *)ie_align_up((size_t)(uintptr_t)arena);
    if ((size_t)(base - (uint8_t *)arena) + L.total > arena_size) {
        ie_set_err(m->errmsg, "arena of %lu bytes is too small: this config needs %lu", (unsigned long)arena_size,
                   (unsigned long)(L.total + (size_t)(base - (uint8_t *)arena)));
        return IE_ERR_NOMEM;
    }
    memset(base, 0, L.region);
    ie_session *s = (ie_session *)(base + L.session);
    s->model = m;
    s->cfg = *cfg;
    s->ex.k = ie_kernels_select(cfg->kernels);
    s->trainable = base + L.flags;
    for (uint32_t i = 0; i < m->n_params; i++) s->trainable[i] = cfg->trainable ? cfg->trainable[i] != 0 : 1;
    s->cfg.trainable = s->trainable;
    s->cfg.kernels = NULL; /* the caller's string need not outlive the call; s->ex.k remembers */
    if (cfg->input_format == IE_INPUT_U8) { /* offsets then scales, one per channel (copied) */
        int32_t *map = (int32_t *)(base + L.input_map);
        memcpy(map, cfg->input_offset_q8, sizeof(int32_t) * cfg->input_channels);
        memcpy(map + cfg->input_channels, cfg->input_scale_m, sizeof(int32_t) * cfg->input_channels);
        s->cfg.input_offset_q8 = map;
        s->cfg.input_scale_m = map + cfg->input_channels;
    }
    if (cfg->optimizer == IE_OPTIM_ADAMW) {
        _Static_assert(sizeof(ie_adamw) <= IE_ADAMW_BYTES, "IE_ADAMW_BYTES too small");
        s->adamw = (ie_adamw *)(base + L.adamw);
        ie_adamw_init(cfg, s->adamw, m->errmsg); /* checked with the config */
    }
    s->values = (ie_value *)(base + L.values);
    s->params = (ie_param *)(base + L.params);
    s->nodes = (ie_node_rt *)(base + L.nodes);
    s->slots = (ie_grad_slot *)(base + L.slots);
    s->n_slots = ie_count_grad_slots(m);
    s->arena = arena;
    s->owns_arena = owns;
    uint8_t *pers = base + L.persistent;
    for (uint32_t i = 0; i < m->n_params; i++) {
        ie_param *p = &s->params[i];
        p->tensor = m->param_tensor[i];
        p->numel = m->tensors[p->tensor].numel;
        p->trainable = s->trainable[i] && !m->tensors[p->tensor].state;
        p->w = (int32_t *)pers;
        pers += ie_align_up(sizeof(int32_t) * p->numel);
        if (has_first_moment(cfg, m, i)) {
            p->mom = (int32_t *)pers;
            pers += ie_align_up(sizeof(int32_t) * p->numel);
        }
        if (has_second_moment(cfg, m, i)) {
            p->v = (int64_t *)pers;
            pers += ie_align_up(sizeof(int64_t) * p->numel);
        }
        if ((st = init_param(s, i)) != IE_OK) break;
    }
    size_t region_bytes = 0;
    if (st == IE_OK) st = ie_plan_region(m, &s->cfg, s, base + L.region, &region_bytes);
    if (st != IE_OK) {
        if (owns) ie_port_free(arena);
        return st;
    }
    s->ex.pool = ie_pool_create(cfg->threads);
    *out = s;
    return IE_OK;
}

void ie_session_free(ie_session *s) {
    if (!s) return;
    ie_pool_free(s->ex.pool);
    ie_port_free(s->ex.prof); /* ie_test_profile's */
    if (s->owns_arena) ie_port_free(s->arena);
}

uint32_t ie_session_threads(const ie_session *s) { return s ? ie_pool_threads(s->ex.pool) : 0; }

const char *ie_session_errmsg(const ie_session *s) { return s ? s->errmsg : "session handle is NULL"; }

static ie_status bad(ie_session *s, ie_status st, const char *msg) {
    ie_set_err(s->errmsg, "%s", msg);
    return st;
}

/* Bytes: (256 p - offset[c]) * scale[c] at exponent scale_e - 8, one requant for the batch. */
static void load_input_u8(ie_session *s, uint32_t n, const uint8_t *x) {
    ie_value *in = &s->values[s->model->input];
    uint32_t c = s->cfg.input_channels;
    size_t numel = s->model->tensors[s->model->input].numel, plane = numel / c, total = (size_t)n * numel;
    const int32_t *off = s->cfg.input_offset_q8, *scale = s->cfg.input_scale_m;
#define U8_VALUE(i) (((int64_t)x[i] * 256 - off[((i) / plane) % c]) * scale[((i) / plane) % c])
    uint64_t max = 0;
    for (size_t i = 0; i < total; i++)
        if (ie_abs64(U8_VALUE(i)) > max) max = ie_abs64(U8_VALUE(i));
    int sh = ie_requant_shift(max, 7);
    ie_rounder r = ie_session_rounder(s, IE_STREAM_INPUT);
    for (size_t i = 0; i < total; i++)
        in->q[i] = (int8_t)ie_clamp64(ie_shift_round(U8_VALUE(i), sh, ie_draw(r, (uint32_t)i)), 127);
#undef U8_VALUE
    in->e = s->cfg.input_scale_e - 8 + sh;
}

/* Maps an input batch of binary32 bit patterns to int8 with one exponent. */
static ie_status load_input_f32(ie_session *s, uint32_t t, uint32_t stream, uint32_t n, const uint32_t *x) {
    ie_value *in = &s->values[t];
    uint32_t numel = s->model->tensors[t].numel;
    size_t total = (size_t)n * numel;
    if (ie_f32_common_exponent(x, total, 7, &in->e) != IE_OK) {
        for (size_t i = 0; i < total; i++)
            if (!ie_f32_bits_is_finite(x[i])) {
                ie_set_err(s->errmsg, "input '%s' of sample %lu holds NaN or Inf", s->model->tensors[t].name,
                           (unsigned long)(i / numel));
                break;
            }
        return IE_ERR_VALUE;
    }
    ie_f32_to_s8(x, total, in->e, ie_session_rounder(s, stream), in->q);
    return IE_OK;
}

/* Integer inputs are copied as int32, each checked against the tables that read it. */
static ie_status load_input_ids(ie_session *s, uint32_t t, uint32_t n, const int32_t *x) {
    const ie_tensor_desc *td = &s->model->tensors[t];
    size_t total = (size_t)n * td->numel;
    if (td->ids_limit != IE_NONE)
        for (size_t i = 0; i < total; i++)
            if (x[i] < 0 || (uint32_t)x[i] >= td->ids_limit) {
                ie_set_err(s->errmsg, "input '%s' of sample %lu holds %" PRId32 "; its table has rows 0..%" PRIu32, td->name,
                           (unsigned long)(i / td->numel), x[i], td->ids_limit - 1);
                return IE_ERR_VALUE;
            }
    memcpy(s->values[t].q, x, sizeof(int32_t) * total);
    s->values[t].e = 0;
    return IE_OK;
}

static ie_status load_inputs(ie_session *s, uint32_t n, const void *const *inputs) {
    for (uint32_t i = 0; i < s->model->n_inputs; i++) {
        uint32_t t = ie_model_input_tensor(s->model, i);
        ie_status st = IE_OK;
        if (!inputs[i]) {
            ie_set_err(s->errmsg, "input '%s' is NULL", s->model->tensors[t].name);
            return IE_ERR_ARG;
        }
        if (s->model->tensors[t].ids)
            st = load_input_ids(s, t, n, inputs[i]);
        else if (i == 0 && s->cfg.input_format == IE_INPUT_U8)
            load_input_u8(s, n, inputs[i]);
        else
            st = load_input_f32(s, t, i == 0 ? IE_STREAM_INPUT : IE_STREAM_INPUTS + i, n, inputs[i]);
        if (st != IE_OK) return st;
    }
    return IE_OK;
}

/* ie_session_begin; with wide != NULL, the output's node captures its wide values when it is
 * the last node (nothing runs after it to reuse its scratch). */
static ie_status begin(ie_session *s, uint32_t n, const void *const *inputs, ie_mode mode, ie_wide_capture *wide) {
    if (!s) return IE_ERR_ARG;
    if (!inputs) return bad(s, IE_ERR_ARG, "input batch is NULL");
    if (n == 0 || n > s->cfg.batch_size) {
        ie_set_err(s->errmsg, "batch of %" PRIu32 " samples; the session takes 1..%" PRIu32, n, s->cfg.batch_size);
        return IE_ERR_ARG;
    }
    s->n = n;
    s->mode = mode;
    ie_prof_enter(s->ex.prof, s->model->n_nodes, IE_PROF_FWD); /* the input mapping */
    ie_status st = load_inputs(s, n, inputs);
    if (st != IE_OK) return st;
    uint32_t last = s->model->n_nodes - 1;
    int capture = wide && s->model->n_nodes && s->model->tensors[s->model->output].producer == last;
    for (uint32_t i = 0; i < s->model->n_nodes; i++) {
        ie_prof_enter(s->ex.prof, i, IE_PROF_FWD);
        s->ex.wide = capture && i == last ? wide : NULL;
        ie_op_lookup(s->model->nodes[i].op)->forward(s, i);
    }
    s->ex.wide = NULL;
    ie_prof_leave(s->ex.prof);
    return IE_OK;
}

ie_status ie_session_begin(ie_session *s, uint32_t n, const void *const *inputs, ie_mode mode) {
    return begin(s, n, inputs, mode, NULL);
}

/* An evaluation-mode forward whose output comes out wide (ie_session_forward_f32_bits): w->q (n x
 * output size values, valid until the session runs again) at the output's exponent + w->delta
 * when w->hit, else the int8 output itself. */
static ie_status forward_wide(ie_session *s, uint32_t n, const void *const *inputs, ie_wide_capture *w) {
    w->y = s->values[s->model->output].q;
    w->q = NULL;
    w->delta = 0;
    w->hit = 0;
    return begin(s, n, inputs, IE_MODE_EVAL, w);
}

static ie_status check_targets(ie_session *s, const int32_t *labels, const uint32_t *targets) {
    int reads_labels = ie_loss_reads_labels(s->cfg.loss);
    if (reads_labels && !labels) return bad(s, IE_ERR_ARG, "cross-entropy and CenterNet need labels");
    if (!reads_labels && !targets) return bad(s, IE_ERR_ARG, "MSE and BCE need targets");
    return IE_OK;
}

/* Config grad_bits below 8: re-rounds an int8 gradient of tensor t (in g, exponent *ge) to
 * grad_bits-bit integers with its own max-based shift, as requantization does for int8. A
 * scalar loop with counter-based draws: only for ablation studies, bit-exact everywhere. */
static void narrow_grad(ie_session *s, uint32_t t, int8_t *g, int32_t *ge) {
    uint32_t bits = s->cfg.grad_bits;
    if (!bits || bits >= 8) return;
    size_t n = (size_t)s->n * s->model->tensors[t].numel;
    uint32_t max = 0;
    for (size_t i = 0; i < n; i++) max = (uint32_t)ie_abs64(g[i]) > max ? (uint32_t)ie_abs64(g[i]) : max;
    int sh = ie_requant_shift(max, (int)bits - 1);
    if (sh <= 0) return; /* already within grad_bits */
    ie_rounder r = ie_session_rounder(s, IE_STREAM_GRAD_NARROW + t);
    int64_t lim = ((int64_t)1 << (bits - 1)) - 1;
    for (size_t i = 0; i < n; i++) g[i] = (int8_t)ie_clamp64(ie_shift_round(g[i], sh, ie_draw(r, (uint32_t)i)), lim);
    *ge += sh;
}

/* Sums the consumers' shares of tensor t's gradient into its own buffer. */
static void sum_grad_slots(ie_session *s, uint32_t t) {
    const int8_t *parts[IE_MAX_FANOUT];
    int32_t exps[IE_MAX_FANOUT];
    uint32_t k = 0;
    for (uint32_t j = 0; j < s->n_slots && k < IE_MAX_FANOUT; j++)
        if (s->slots[j].tensor == t) {
            parts[k] = s->slots[j].g;
            exps[k++] = s->slots[j].e;
        }
    ie_value *v = &s->values[t];
    v->g = v->g_total;
    v->ge = ie_sum_s8(parts, exps, NULL, k, (size_t)s->n * s->model->tensors[t].numel,
                      ie_session_rounder(s, IE_STREAM_GRAD_SUM + t), v->g);
    narrow_grad(s, t, v->g, &v->ge);
}

/* Runs node i's backward; inputs read by several nodes get this node's share in a slot. */
static void backward_node(ie_session *s, uint32_t i) {
    const ie_node_desc *nd = &s->model->nodes[i];
    ie_node_rt *rt = &s->nodes[i];
    for (uint32_t k = 0; k < nd->n_in; k++)
        if (rt->grad_slot[k] != IE_NONE) s->values[nd->in[k]].g = s->slots[rt->grad_slot[k]].g;
    ie_prof_enter(s->ex.prof, i, IE_PROF_DX); /* ops with parameters switch to DW and OPT */
    ie_op_lookup(nd->op)->backward(s, i);
    for (uint32_t k = 0; k < nd->n_in; k++) {
        uint32_t t = nd->in[k];
        if (s->model->tensors[t].kind == IE_KIND_ACTIVATION && s->values[t].requires_grad)
            narrow_grad(s, t, s->values[t].g, &s->values[t].ge);
        if (rt->grad_slot[k] == IE_NONE || !s->values[t].requires_grad) continue;
        s->slots[rt->grad_slot[k]].e = s->values[t].ge;
        if (s->model->tensors[t].first_consumer == i) sum_grad_slots(s, t);
    }
}

/* The single-input calls hand their x to the *_inputs calls; x of a model with several inputs
 * would be read as the first only, so they refuse. */
static const void *const *single_input(ie_session *s, const void *const *x) {
    if (s->model->n_inputs == 1) return x;
    ie_set_err(s->errmsg, "the model has %" PRIu32 " inputs: pass each one (ie_session_step_inputs)", s->model->n_inputs);
    return NULL;
}

ie_status ie_session_step_inputs(ie_session *s, uint32_t n, const void *const *inputs, const int32_t *labels,
                                 const uint32_t *targets, ie_step_stats *stats) {
    if (!s) return IE_ERR_ARG;
    ie_status st = check_targets(s, labels, targets);
    if (st == IE_OK) st = ie_session_begin(s, n, inputs, IE_MODE_TRAIN);
    if (st != IE_OK) return st;
    ie_step_stats local;
    ie_value *out = &s->values[s->model->output];
    ie_prof_enter(s->ex.prof, s->model->n_nodes, IE_PROF_FWD); /* the loss: closed by the backward */
    st = ie_loss_forward_backward(s, labels, targets, out->requires_grad, stats ? stats : &local);
    if (st != IE_OK) return st;
    ie_session_backward(s);
    return IE_OK;
}

ie_status ie_session_step(ie_session *s, uint32_t n, const void *x, const int32_t *labels,
                          const uint32_t *targets, ie_step_stats *stats) {
    if (!s) return IE_ERR_ARG;
    const void *const *in = single_input(s, &x);
    return in ? ie_session_step_inputs(s, n, in, labels, targets, stats) : IE_ERR_ARG;
}

void ie_session_backward(ie_session *s) {
    ie_optim_begin_step(s);
    ie_value *out = &s->values[s->model->output];
    if (out->requires_grad) narrow_grad(s, s->model->output, out->g, &out->ge);
    if (out->requires_grad)
        for (uint32_t i = s->model->n_nodes; i-- > 0;)
            if (s->values[s->model->nodes[i].out[0]].requires_grad) backward_node(s, i);
    ie_prof_leave(s->ex.prof);
    s->step++;
}

ie_status ie_session_forward(ie_session *s, uint32_t n, const void *x, int8_t *out_q, int16_t *out_e) {
    if (!s) return IE_ERR_ARG;
    if (!out_q || !out_e) return bad(s, IE_ERR_ARG, "output pointers are NULL");
    const void *const *in = single_input(s, &x);
    ie_status st = in ? ie_session_begin(s, n, in, IE_MODE_EVAL) : IE_ERR_ARG;
    if (st != IE_OK) return st;
    const ie_value *o = &s->values[s->model->output];
    memcpy(out_q, o->q, (size_t)n * s->model->tensors[s->model->output].numel);
    *out_e = (int16_t)o->e;
    return IE_OK;
}

ie_status ie_session_forward_inputs(ie_session *s, uint32_t n, const void *const *inputs, uint32_t *out) {
    if (!s) return IE_ERR_ARG;
    if (!out) return bad(s, IE_ERR_ARG, "output pointer is NULL");
    ie_wide_capture w;
    ie_status st = forward_wide(s, n, inputs, &w);
    if (st != IE_OK) return st;
    const ie_value *o = &s->values[s->model->output];
    size_t total = (size_t)n * s->model->tensors[s->model->output].numel;
    for (size_t i = 0; i < total; i++) out[i] = ie_fixed_to_f32_bits(w.hit ? w.q[i] : o->q[i], o->e + w.delta);
    return IE_OK;
}

ie_status ie_session_forward_f32_bits(ie_session *s, uint32_t n, const void *x, uint32_t *out) {
    if (!s) return IE_ERR_ARG;
    const void *const *in = single_input(s, &x);
    return in ? ie_session_forward_inputs(s, n, in, out) : IE_ERR_ARG;
}

ie_status ie_session_evaluate_inputs(ie_session *s, uint32_t n, const void *const *inputs, const int32_t *labels,
                                     const uint32_t *targets, ie_step_stats *stats) {
    if (!s) return IE_ERR_ARG;
    if (!stats) return bad(s, IE_ERR_ARG, "stats pointer is NULL");
    ie_status st = check_targets(s, labels, targets);
    ie_wide_capture w;
    uint32_t hits = 0;
    int counted = 0;
    if (st == IE_OK) st = forward_wide(s, n, inputs, &w);
    if (st == IE_OK) counted = ie_loss_count_wide(s, &w, labels, &hits); /* before the loss may use the scratch */
    if (st == IE_OK) st = ie_loss_forward_backward(s, labels, targets, 0, stats);
    if (st == IE_OK && counted) stats->n_correct = hits;
    return st;
}

ie_status ie_session_evaluate(ie_session *s, uint32_t n, const void *x, const int32_t *labels,
                              const uint32_t *targets, ie_step_stats *stats) {
    if (!s) return IE_ERR_ARG;
    const void *const *in = single_input(s, &x);
    return in ? ie_session_evaluate_inputs(s, n, in, labels, targets, stats) : IE_ERR_ARG;
}

static ie_param *param_at(ie_session *s, uint32_t index) {
    return index < s->model->n_params ? &s->params[index] : NULL;
}

ie_status ie_session_get_param(ie_session *s, uint32_t index, int32_t *mantissas, int16_t *exponent) {
    if (!s) return IE_ERR_ARG;
    ie_param *p = param_at(s, index);
    if (!p || !mantissas || !exponent) return bad(s, IE_ERR_ARG, "bad parameter index or NULL output");
    memcpy(mantissas, p->w, sizeof(int32_t) * p->numel);
    *exponent = (int16_t)p->we;
    return IE_OK;
}

ie_status ie_session_set_param(ie_session *s, uint32_t index, const int32_t *mantissas, int16_t exponent) {
    if (!s) return IE_ERR_ARG;
    ie_param *p = param_at(s, index);
    if (!p || !mantissas) return bad(s, IE_ERR_ARG, "bad parameter index or NULL input");
    for (uint32_t i = 0; i < p->numel; i++)
        if (mantissas[i] > (1 << 30) || mantissas[i] < -(1 << 30))
            return bad(s, IE_ERR_VALUE, "master mantissas must lie within +-2^30");
    memcpy(p->w, mantissas, sizeof(int32_t) * p->numel);
    p->we = exponent;
    ie_param_written(p);
    return IE_OK;
}

ie_status ie_session_get_param_f32_bits(ie_session *s, uint32_t index, uint32_t *out) {
    if (!s) return IE_ERR_ARG;
    ie_param *p = param_at(s, index);
    if (!p || !out) return bad(s, IE_ERR_ARG, "bad parameter index or NULL output");
    for (uint32_t i = 0; i < p->numel; i++) out[i] = ie_fixed_to_f32_bits(p->w[i], p->we);
    return IE_OK;
}

ie_status ie_session_set_param_f32_bits(ie_session *s, uint32_t index, const uint32_t *values) {
    if (!s) return IE_ERR_ARG;
    ie_param *p = param_at(s, index);
    if (!p || !values) return bad(s, IE_ERR_ARG, "bad parameter index or NULL input");
    int32_t e;
    int bits = ie_session_term_bits(s, index);
    if (ie_f32_common_exponent(values, p->numel, bits, &e) != IE_OK)
        return bad(s, IE_ERR_VALUE, "parameter values hold NaN or Inf");
    ie_rounder r = {0, 1};
    for (uint32_t i = 0; i < p->numel; i++) p->w[i] = ie_f32_to_fixed(values[i], e, bits, ie_draw(r, i));
    p->we = e;
    ie_param_written(p);
    return IE_OK;
}

ie_status ie_session_set_lr(ie_session *s, ie_dyadic lr) {
    if (!s) return IE_ERR_ARG;
    if (lr.m < 0) return bad(s, IE_ERR_ARG, "lr must not be negative");
    s->cfg.lr = lr;
    return IE_OK;
}

uint64_t ie_session_step_count(const ie_session *s) { return s ? s->step : 0; }

const char *ie_session_kernels(const ie_session *s) { return s ? s->ex.k->name : "none"; }

const char *ie_kernel_tier(uint32_t index) {
    const ie_kernels *k = ie_kernels_at(index);
    return k ? k->name : NULL;
}
