/* Integer SGD with momentum and weight decay (PyTorch semantics):
 *   g' = g + wd * w;   v = mu * v + g';   w = w - lr * v
 * The gradient arrives exact (int64); every stage is an ie_axpby_s32 that re-picks the
 * output exponent and rounds stochastically, so updates far below the master's resolution
 * still move it on average.
 * Each stage needs the max magnitude of its inputs, which the stage that wrote them returns:
 * max|w| and max|mom| are kept in the parameter from one step (and forward) to the next. Large
 * parameters split every pass over the session's pool. */
#include "internal.h"

enum { R_VIEW = 0, R_GRAD, R_DECAY, R_MOMENTUM, R_UPDATE };

static const ie_dyadic ONE = {1, 0};

/* max|a| of the parameter's master (IE_KNOWN_W) or momentum (IE_KNOWN_MOM), kept in *max. */
static uint64_t cached_max(ie_param *p, uint8_t which, const int32_t *a, uint32_t *max) {
    if (!(p->known & which)) {
        *max = (uint32_t)ie_absmax_s32(a, p->numel);
        p->known |= which;
    }
    return *max;
}

void ie_param_quantize(ie_session *s, uint32_t pi, int8_t *dst, size_t transpose_rows, int nearest) {
    ie_param *p = &s->params[pi];
    int sh = ie_requant_shift(cached_max(p, IE_KNOWN_W, p->w, &p->wmax), 7);
    ie_rounder r = ie_session_rounder(s, ie_param_stream(pi, R_VIEW));
    r.nearest |= (uint32_t)nearest;
    p->e8 = p->we + sh;
    if (!transpose_rows) { /* the common layout: one vectorizable pass */
        ie_shift_s32_s8_bits_split(s->ex.pool, p->w, p->numel, sh, 7, r, dst);
        return;
    }
    size_t cols = p->numel / transpose_rows;
    for (size_t i = 0; i < p->numel; i++)
        dst[(i % cols) * transpose_rows + i / cols] =
            (int8_t)ie_clamp64(ie_shift_round(p->w[i], sh, ie_draw(r, (uint32_t)i)), 127);
}

void ie_optim_step(ie_session *s, uint32_t pi) {
    ie_param *p = &s->params[pi];
    const ie_session_config *c = &s->cfg;
    ie_pool *pool = s->ex.pool;
    size_t n = p->numel;
    int32_t *g = p->opt_scratch;
    uint64_t wmax = cached_max(p, IE_KNOWN_W, p->w, &p->wmax), gmax, vmax;
    ie_rounder rg = ie_session_rounder(s, ie_param_stream(pi, R_GRAD));
    int bits = ie_session_term_bits(s, pi), sh;
#if IE_FAST_PATHS
    if (p->grad32) { /* the same values as int32: the same shift and bytes */
        const int32_t *g32 = (const int32_t *)p->grad;
        sh = ie_requant_shift(ie_absmax_s32_split(pool, g32, n), bits);
        gmax = ie_shift_s32_s32_split(pool, g32, n, sh, bits, rg, g);
    } else
#endif
    {
        sh = ie_requant_shift(ie_absmax_s64_split(pool, p->grad, n), bits);
        gmax = ie_shift_s64_s32_split(pool, p->grad, n, sh, bits, rg, g);
    }
    int32_t ge = p->grad_e + sh;
    if (c->weight_decay.m)
        ge = ie_axpby_s32_split(pool, g, n, ONE, g, ge, gmax, c->weight_decay, p->w, p->we, wmax, bits,
                                ie_session_rounder(s, ie_param_stream(pi, R_DECAY)), &gmax);
    const int32_t *v = g;
    int32_t ve = ge;
    vmax = gmax;
    if (c->momentum.m) {
        uint64_t mmax = cached_max(p, IE_KNOWN_MOM, p->mom, &p->mmax);
        p->me = ie_axpby_s32_split(pool, p->mom, n, c->momentum, p->mom, p->me, mmax, ONE, g, ge, gmax, bits,
                                   ie_session_rounder(s, ie_param_stream(pi, R_MOMENTUM)), &vmax);
        p->mmax = (uint32_t)vmax;
        v = p->mom;
        ve = p->me;
    }
    ie_dyadic neg_lr = {-c->lr.m, c->lr.e};
    p->we = ie_axpby_s32_split(pool, p->w, n, ONE, p->w, p->we, wmax, neg_lr, v, ve, vmax, bits,
                               ie_session_rounder(s, ie_param_stream(pi, R_UPDATE)), &wmax);
    p->wmax = (uint32_t)wmax;
    p->known = IE_KNOWN_W | (c->momentum.m ? IE_KNOWN_MOM : 0);
}
