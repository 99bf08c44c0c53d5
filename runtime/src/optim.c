/* Integer SGD with momentum and weight decay (PyTorch semantics):
 *   g' = g + wd * w;   v = mu * v + g';   w = w - lr * v
 * The gradient arrives exact (int64); every stage is an ie_axpby_s32 that re-picks the
 * output exponent and rounds stochastically, so updates far below the master's resolution
 * still move it on average. */
#include "internal.h"

enum { R_VIEW = 0, R_GRAD, R_DECAY, R_MOMENTUM, R_UPDATE };

static const ie_dyadic ONE = {1, 0};

void ie_param_quantize(ie_session *s, uint32_t pi, int8_t *dst, size_t transpose_rows) {
    ie_param *p = &s->params[pi];
    int sh = ie_requant_shift(ie_absmax_s32(p->w, p->numel), 7);
    ie_rounder r = ie_session_rounder(s, ie_param_stream(pi, R_VIEW));
    if (!transpose_rows) { /* the common layout: one vectorizable pass */
        ie_shift_s32_s8(p->w, p->numel, sh, r, dst);
        p->e8 = p->we + sh;
        return;
    }
    size_t cols = transpose_rows ? p->numel / transpose_rows : 0;
    for (size_t i = 0; i < p->numel; i++) {
        int8_t q = (int8_t)ie_clamp64(ie_shift_round(p->w[i], sh, ie_draw(r, (uint32_t)i)), 127);
        if (transpose_rows) dst[(i % cols) * transpose_rows + i / cols] = q;
        else dst[i] = q;
    }
    p->e8 = p->we + sh;
}

void ie_optim_step(ie_session *s, uint32_t pi) {
    ie_param *p = &s->params[pi];
    const ie_session_config *c = &s->cfg;
    int32_t *g = p->opt_scratch;
    int sh = ie_requant_shift(ie_absmax_s64(p->grad, p->numel), 29);
    ie_shift_s64_s32(p->grad, p->numel, sh, 29, ie_session_rounder(s, ie_param_stream(pi, R_GRAD)), g);
    int32_t ge = p->grad_e + sh;
    if (c->weight_decay.m)
        ge = ie_axpby_s32(g, p->numel, ONE, g, ge, c->weight_decay, p->w, p->we,
                          ie_session_rounder(s, ie_param_stream(pi, R_DECAY)));
    const int32_t *v = g;
    int32_t ve = ge;
    if (c->momentum.m) {
        p->me = ie_axpby_s32(p->mom, p->numel, c->momentum, p->mom, p->me, ONE, g, ge,
                             ie_session_rounder(s, ie_param_stream(pi, R_MOMENTUM)));
        v = p->mom;
        ve = p->me;
    }
    ie_dyadic neg_lr = {-c->lr.m, c->lr.e};
    p->we = ie_axpby_s32(p->w, p->numel, ONE, p->w, p->we, neg_lr, v, ve,
                         ie_session_rounder(s, ie_param_stream(pi, R_UPDATE)));
}
