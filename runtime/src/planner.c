#include "planner.h"

#include <string.h>

#include "numeric.h"

typedef struct ie_value_life {
    uint32_t q_first, q_last, g_first, g_last, alias_of;
    uint8_t requires_grad;
} ie_value_life;

struct ie_planner {
    ie_model *m;
    const ie_session_config *cfg;
    ie_plan_buffer *buf;
    uint32_t n, cap;
    ie_value_life *life;
    int overflow;
    uint64_t total; /* every buffer's bytes, a bound on the arena (saturates past IE_MAX_ARENA_BYTES) */
    const char *refusal;
    uint32_t refused_node;
};

/* Buffers per tensor (data, grad), per node (scratch slots) and per parameter (view, grad, opt). */
uint32_t ie_planner_capacity(uint32_t n_tensors, uint32_t n_nodes) {
    return 5 * n_tensors + (IE_NODE_SCRATCH + IE_MAX_INPUTS) * n_nodes + 4;
}

static int fans_out(const ie_model *m, uint32_t t) {
    return m->tensors[t].kind == IE_KIND_ACTIVATION && m->tensors[t].n_consumers > 1;
}

uint32_t ie_count_grad_slots(const ie_model *m) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n_nodes; i++)
        for (uint32_t k = 0; k < m->nodes[i].n_in; k++) n += fans_out(m, m->nodes[i].in[k]);
    return n;
}

size_t ie_planner_scratch_bytes(uint32_t capacity, uint32_t n_tensors) {
    /* buffers, then one life record per tensor */
    _Static_assert(sizeof(ie_plan_buffer) <= IE_STRIDE_PLAN_BUFFER, "IE_STRIDE_PLAN_BUFFER too small");
    _Static_assert(sizeof(ie_value_life) <= IE_STRIDE_VALUE_LIFE, "IE_STRIDE_VALUE_LIFE too small");
    return capacity * (size_t)IE_STRIDE_PLAN_BUFFER + n_tensors * (size_t)IE_STRIDE_VALUE_LIFE;
}

uint64_t ie_size_product(const uint64_t *factors, size_t n) {
    uint64_t p = 1;
    for (size_t i = 0; i < n; i++) {
        if (factors[i] == 0) return 0;
        /* under 64 bits of length the product cannot wrap; over, it is at least 2^62: past the limit */
        p = ie_bitlen64(p) + ie_bitlen64(factors[i]) <= 64 ? p * factors[i] : UINT64_MAX;
        if (p > IE_MAX_ARENA_BYTES) p = IE_MAX_ARENA_BYTES + 1;
    }
    return p;
}

static void add(ie_planner *p, ie_buf_kind kind, uint32_t index, uint32_t slot, uint64_t bytes, uint32_t first,
                uint32_t last) {
    if (bytes == 0) return;
    /* the sum of every buffer bounds each offset place() computes: past the limit, refuse */
    p->total += bytes > IE_MAX_ARENA_BYTES ? IE_MAX_ARENA_BYTES + 1 : bytes;
    if (p->total > IE_MAX_ARENA_BYTES) return;
    if (p->n == p->cap) {
        p->overflow = 1;
        return;
    }
    ie_plan_buffer *b = &p->buf[p->n++];
    b->kind = (uint8_t)kind;
    b->slot = (uint8_t)slot;
    b->index = index;
    b->first = first;
    b->last = last;
    b->bytes = ie_align_up((size_t)bytes);
    b->offset = 0;
}

const ie_model *ie_plan_model(const ie_planner *p) { return p->m; }
uint32_t ie_plan_batch(const ie_planner *p) { return p->cfg->batch_size; }
const ie_session_config *ie_plan_config(const ie_planner *p) { return p->cfg; }
uint32_t ie_plan_threads(const ie_planner *p) { return ie_threads_planned(p->cfg->threads); }
int ie_plan_requires_grad(const ie_planner *p, uint32_t t) { return p->life[t].requires_grad; }
int ie_plan_param_trainable(const ie_planner *p, uint32_t t) {
    return p->m->tensors[t].kind == IE_KIND_PARAM && p->life[t].requires_grad;
}
void ie_plan_node_scratch(ie_planner *p, uint32_t node, uint32_t slot, uint64_t bytes, uint32_t first, uint32_t last) {
    if (slot >= IE_NODE_SCRATCH) { /* an op asking for more slots than a node has: refuse, never overrun */
        p->overflow = 1;
        return;
    }
    add(p, IE_BUF_NODE, node, slot, bytes, first, last);
}
void ie_plan_param_buffer(ie_planner *p, uint32_t t, ie_buf_kind kind, uint64_t bytes, uint32_t first, uint32_t last) {
    add(p, kind, p->m->tensors[t].param, 0, bytes, first, last);
}
void ie_plan_keep(ie_planner *p, uint32_t t, uint32_t until) {
    if (p->life[t].q_last < until) p->life[t].q_last = until;
}
void ie_plan_refuse(ie_planner *p, uint32_t node, const char *msg) {
    if (!p->refusal) {
        p->refusal = msg;
        p->refused_node = node;
    }
}

void ie_plan_alias(ie_planner *p, uint32_t view, uint32_t base) {
    while (p->life[base].alias_of != IE_NONE) base = p->life[base].alias_of;
    p->life[view].alias_of = base;
}

static void lifetimes(ie_planner *p) {
    ie_model *m = p->m;
    for (uint32_t t = 0; t < m->n_tensors; t++) {
        const ie_tensor_desc *td = &m->tensors[t];
        ie_value_life *l = &p->life[t];
        l->alias_of = IE_NONE;
        l->requires_grad = 0;
        if (td->kind == IE_KIND_PARAM)
            l->requires_grad = !td->state && (p->cfg->trainable ? p->cfg->trainable[td->param] != 0 : 1);
        l->q_first = td->kind == IE_KIND_INPUT ? 0 : ie_pos_fwd(m, td->producer);
        l->q_last = td->consumer != IE_NONE ? ie_pos_fwd(m, td->consumer) : ie_pos_loss(m);
    }
    /* nodes are topologically ordered, so one pass propagates requires_grad forward */
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const ie_node_desc *nd = &m->nodes[i];
        uint8_t rg = 0;
        for (uint32_t k = 0; k < nd->n_in; k++) rg |= p->life[nd->in[k]].requires_grad;
        for (uint32_t k = 0; k < nd->n_out; k++) p->life[nd->out[k]].requires_grad = rg;
    }
    for (uint32_t t = 0; t < m->n_tensors; t++) {
        const ie_tensor_desc *td = &m->tensors[t];
        ie_value_life *l = &p->life[t];
        if (td->kind != IE_KIND_ACTIVATION || !l->requires_grad) continue;
        /* with several consumers the gradient is complete after the first consumer's backward */
        l->g_first = t == m->output ? ie_pos_loss(m) : ie_pos_bwd(m, td->first_consumer);
        l->g_last = ie_pos_bwd(m, td->producer);
    }
    if (p->cfg->keep_tensors) /* every tensor's data and gradient live through the whole step */
        for (uint32_t t = 0; t < m->n_tensors; t++) {
            ie_value_life *l = &p->life[t];
            l->q_first = l->g_first = 0;
            l->q_last = l->g_last = ie_pos_bwd(m, 0) + 1;
        }
}

static void merge_aliases(ie_planner *p) {
    for (uint32_t t = 0; t < p->m->n_tensors; t++) {
        ie_value_life *l = &p->life[t], *r;
        if (l->alias_of == IE_NONE) continue;
        r = &p->life[l->alias_of];
        if (l->q_first < r->q_first) r->q_first = l->q_first;
        if (l->q_last > r->q_last) r->q_last = l->q_last;
        if (l->requires_grad) {
            if (!r->requires_grad || l->g_first < r->g_first) r->g_first = l->g_first;
            if (!r->requires_grad || l->g_last > r->g_last) r->g_last = l->g_last;
        }
    }
}

static int overlaps(const ie_plan_buffer *a, const ie_plan_buffer *b) {
    return a->first <= b->last && b->first <= a->last;
}

/* Greedy by size: biggest first, each at the lowest offset clear of every placed buffer whose
 * lifetime overlaps. Returns the peak. */
static size_t place(ie_plan_buffer *buf, uint32_t n) {
    /* insertion sort by size, descending (n is small; stable, so the plan is deterministic) */
    for (uint32_t i = 1; i < n; i++) {
        ie_plan_buffer x = buf[i];
        uint32_t j = i;
        while (j > 0 && buf[j - 1].bytes < x.bytes) {
            buf[j] = buf[j - 1];
            j--;
        }
        buf[j] = x;
    }
    size_t peak = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t off = 0;
        int moved = 1;
        while (moved) { /* slide past every conflicting placed buffer until none conflicts */
            moved = 0;
            for (uint32_t j = 0; j < i; j++) {
                if (!overlaps(&buf[i], &buf[j])) continue;
                if (off < buf[j].offset + buf[j].bytes && buf[j].offset < off + buf[i].bytes) {
                    off = buf[j].offset + buf[j].bytes;
                    moved = 1;
                }
            }
        }
        buf[i].offset = off;
        if (off + buf[i].bytes > peak) peak = off + buf[i].bytes;
    }
    return peak;
}

static void resolve(ie_session *s, const ie_plan_buffer *b, uint8_t *region) {
    void *ptr = region + b->offset;
    switch ((ie_buf_kind)b->kind) {
    case IE_BUF_VALUE_Q: s->values[b->index].q = ptr; break;
    case IE_BUF_VALUE_G: s->values[b->index].g = ptr; break;
    case IE_BUF_NODE: s->nodes[b->index].scratch[b->slot] = ptr; break;
    case IE_BUF_PARAM_W8: s->params[b->index].w8 = ptr; break;
    case IE_BUF_PARAM_GRAD: s->params[b->index].grad = ptr; break;
    case IE_BUF_LOSS_ACC: s->loss_acc = ptr; break;
    case IE_BUF_TARGETS: s->targets = ptr; break;
    case IE_BUF_GRAD_SLOT: s->slots[b->index].g = ptr; break;
    }
}

ie_status ie_plan_region(ie_model *m, const ie_session_config *cfg, ie_session *s, uint8_t *region,
                         size_t *region_bytes) {
    ie_planner p;
    memset(&p, 0, sizeof p);
    p.m = m;
    p.cfg = cfg;
    p.cap = m->plan_capacity;
    p.buf = m->plan_scratch;
    p.life = (ie_value_life *)(p.buf + p.cap);
    lifetimes(&p);
    for (uint32_t i = 0; i < m->n_nodes; i++) ie_op_lookup(m->nodes[i].op)->plan(&p, i);
    merge_aliases(&p);
    uint64_t batch = cfg->batch_size;
    for (uint32_t t = 0; t < m->n_tensors; t++) {
        const ie_value_life *l = &p.life[t];
        if (m->tensors[t].kind == IE_KIND_PARAM || l->alias_of != IE_NONE) continue;
        /* integer inputs stay int32; Conv outputs read by BatchNorm at bn_input_bits 16 are int16 */
        uint64_t elem = m->tensors[t].ids ? sizeof(int32_t) : ie_tensor_is_q16(m, cfg, t) ? sizeof(int16_t) : 1;
        add(&p, IE_BUF_VALUE_Q, t, 0, IE_SIZE(batch, m->tensors[t].numel, elem), l->q_first, l->q_last);
        if (l->requires_grad) add(&p, IE_BUF_VALUE_G, t, 0, IE_SIZE(batch, m->tensors[t].numel), l->g_first, l->g_last);
    }
    /* one gradient slot per (consumer, input) of a tensor read by several nodes */
    uint32_t slot = 0;
    for (uint32_t i = 0; i < m->n_nodes; i++)
        for (uint32_t k = 0; k < m->nodes[i].n_in; k++) {
            uint32_t t = m->nodes[i].in[k];
            if (s) s->nodes[i].grad_slot[k] = IE_NONE;
            if (!fans_out(m, t)) continue;
            if (s) {
                s->nodes[i].grad_slot[k] = slot;
                s->slots[slot].tensor = t;
            }
            if (p.life[t].requires_grad)
                add(&p, IE_BUF_GRAD_SLOT, slot, 0, IE_SIZE(batch, m->tensors[t].numel), ie_pos_bwd(m, i),
                    ie_pos_bwd(m, m->tensors[t].first_consumer));
            slot++;
        }
    uint64_t outputs = IE_SIZE(batch, m->tensors[m->output].numel);
    add(&p, IE_BUF_LOSS_ACC, 0, 0, IE_SIZE(outputs, sizeof(int64_t)), ie_pos_loss(m), ie_pos_loss(m));
    if (!ie_loss_reads_labels(cfg->loss))
        add(&p, IE_BUF_TARGETS, 0, 0, IE_SIZE(outputs, sizeof(int32_t)), ie_pos_loss(m), ie_pos_loss(m));
    if (p.refusal) {
        ie_set_err(m->errmsg, "node '%s': %s", m->nodes[p.refused_node].name, p.refusal);
        return IE_ERR_UNSUPPORTED;
    }
    if (p.total > IE_MAX_ARENA_BYTES) {
        ie_set_err(m->errmsg, "at batch size %" PRIu32 " this model needs an arena of more than %lu MiB; lower the "
                   "batch size or the model's sizes", cfg->batch_size, (unsigned long)(IE_MAX_ARENA_BYTES >> 20));
        return IE_ERR_NOMEM;
    }
    if (p.overflow) {
        ie_set_err(m->errmsg, "internal: planner capacity %" PRIu32 " exceeded", p.cap);
        return IE_ERR_STATE;
    }
    *region_bytes = place(p.buf, p.n);
    m->plan_used = p.n;
    if (s) {
        for (uint32_t i = 0; i < p.n; i++) resolve(s, &p.buf[i], region);
        for (uint32_t t = 0; t < m->n_tensors; t++) {
            s->values[t].requires_grad = p.life[t].requires_grad;
            s->values[t].alias_of = p.life[t].alias_of;
        }
        for (uint32_t t = 0; t < m->n_tensors; t++) {
            uint32_t r = p.life[t].alias_of;
            if (r == IE_NONE) continue;
            s->values[t].q = s->values[r].q;
            s->values[t].g = s->values[r].g;
        }
        for (uint32_t t = 0; t < m->n_tensors; t++) s->values[t].g_total = s->values[t].g;
    }
    return IE_OK;
}
