/* Integer SGD with momentum and weight decay (PyTorch semantics):
 *   g' = g + wd * w;   v = mu * v + g';   w = w - lr * v
 * The gradient arrives exact (int64); every stage is an ie_axpby_s32 that re-picks the
 * output exponent and rounds stochastically, so updates far below the master's resolution
 * still move it on average.
 * Each stage needs the max magnitude of its inputs, which the stage that wrote them returns:
 * max|w| and max|mom| are kept in the parameter from one step (and forward) to the next. Large
 * parameters split every pass over the session's pool. */
#include <string.h>

#include "internal.h"

enum { R_VIEW = 0, R_GRAD, R_DECAY, R_MOMENTUM, R_UPDATE, R_RESCALE_W, R_RESCALE_MOM };

static const ie_dyadic ONE = {1, 0};

/* max|a| of the parameter's master (IE_KNOWN_W) or momentum (IE_KNOWN_MOM), kept in *max. */
static uint64_t cached_max(ie_param *p, uint8_t which, const int32_t *a, uint32_t *max) {
    if (!(p->known & which)) {
        *max = (uint32_t)ie_absmax_s32(a, p->numel);
        p->known |= which;
    }
    return *max;
}

void ie_param_quantize(ie_session *s, uint32_t pi, int8_t *dst, size_t transpose_rows) {
    ie_param *p = &s->params[pi];
    uint64_t t0 = ie_prof_start(s->ex.prof);
    int sh = ie_requant_shift(cached_max(p, IE_KNOWN_W, p->w, &p->wmax), 7);
    ie_rounder r = ie_session_rounder(s, ie_param_stream(pi, R_VIEW));
    p->e8 = p->we + sh;
    if (!transpose_rows) { /* the common layout: one vectorizable pass */
        ie_shift_s32_s8_bits_split(s->ex.pool, p->w, p->numel, sh, 7, r, dst);
    } else {
        size_t cols = p->numel / transpose_rows;
        for (size_t i = 0; i < p->numel; i++)
            dst[(i % cols) * transpose_rows + i / cols] =
                (int8_t)ie_clamp64(ie_shift_round(p->w[i], sh, ie_draw(r, (uint32_t)i)), 127);
    }
    ie_prof_add(s->ex.prof, IE_PROF_ROUND, t0);
}

void ie_optim_step(ie_session *s, uint32_t pi) {
    uint32_t phase = ie_prof_switch(s->ex.prof, IE_PROF_OPT);
    ie_param *p = &s->params[pi];
    const ie_session_config *c = &s->cfg;
    ie_pool *pool = s->ex.pool;
    size_t n = p->numel;
    int32_t *g = p->opt_scratch;
    uint64_t wmax = cached_max(p, IE_KNOWN_W, p->w, &p->wmax), gmax, vmax;
    ie_rounder rg = ie_session_rounder(s, ie_param_stream(pi, R_GRAD));
    int sh;
#if IE_FAST_PATHS
    if (p->grad32) { /* the same values as int32: the same shift and bytes */
        const int32_t *g32 = (const int32_t *)p->grad;
        sh = ie_requant_shift(ie_absmax_s32_split(pool, g32, n), 29);
        gmax = ie_shift_s32_s32_split(pool, g32, n, sh, 29, rg, g);
    } else
#endif
    {
        sh = ie_requant_shift(ie_absmax_s64_split(pool, p->grad, n), 29);
        gmax = ie_shift_s64_s32_split(pool, p->grad, n, sh, 29, rg, g);
    }
    int32_t ge = p->grad_e + sh;
    if (c->weight_decay.m)
        ge = ie_axpby_s32_split(pool, g, n, ONE, g, ge, gmax, c->weight_decay, p->w, p->we, wmax,
                                ie_session_rounder(s, ie_param_stream(pi, R_DECAY)), &gmax);
    const int32_t *v = g;
    int32_t ve = ge;
    vmax = gmax;
    if (c->momentum.m) {
        uint64_t mmax = cached_max(p, IE_KNOWN_MOM, p->mom, &p->mmax);
        p->me = ie_axpby_s32_split(pool, p->mom, n, c->momentum, p->mom, p->me, mmax, ONE, g, ge, gmax,
                                   ie_session_rounder(s, ie_param_stream(pi, R_MOMENTUM)), &vmax);
        p->mmax = (uint32_t)vmax;
        v = p->mom;
        ve = p->me;
    }
    ie_dyadic neg_lr = {-c->lr.m, c->lr.e};
    p->we = ie_axpby_s32_split(pool, p->w, n, ONE, p->w, p->we, wmax, neg_lr, v, ve, vmax,
                               ie_session_rounder(s, ie_param_stream(pi, R_UPDATE)), &wmax);
    p->wmax = (uint32_t)wmax;
    p->known = IE_KNOWN_W | (c->momentum.m ? IE_KNOWN_MOM : 0);
    ie_prof_switch(s->ex.prof, phase);
}

/* ---- row-sparse parameters (Embedding tables) -------------------------------------------------
 * A step reads and updates only the rows its batch used. Those rows are gathered into scratch,
 * stepped like a dense parameter, and scattered back at the table's exponent: the rows it leaves
 * alone keep their bytes, unless the used rows outgrow that exponent, when the whole table moves
 * to the new one (SR, like any dense update). */

static void view_shift(ie_session *s, uint32_t pi, int *sh) {
    ie_param *p = &s->params[pi];
    *sh = ie_requant_shift(cached_max(p, IE_KNOWN_W, p->w, &p->wmax), 7);
    p->e8 = p->we + *sh;
}

void ie_param_quantize_rows(ie_session *s, uint32_t pi, const int32_t *ids, size_t count, size_t row_len,
                            int8_t *dst) {
    ie_param *p = &s->params[pi];
    int sh;
    view_shift(s, pi, &sh);
    ie_rounder r = ie_session_rounder(s, ie_param_stream(pi, R_VIEW));
    for (size_t i = 0; i < count; i++) {
        size_t base = (size_t)ids[i] * row_len; /* a row's draws count from its place in the table */
        for (size_t j = 0; j < row_len; j++)
            dst[i * row_len + j] =
                (int8_t)ie_clamp64(ie_shift_round(p->w[base + j], sh, ie_draw(r, (uint32_t)(base + j))), 127);
    }
}

static void gather_rows(const int32_t *table, const uint32_t *rows, size_t n_rows, size_t row_len, int32_t *out) {
    for (size_t i = 0; i < n_rows; i++) memcpy(out + i * row_len, table + (size_t)rows[i] * row_len, 4 * row_len);
}

static void scatter_rows(const int32_t *in, const uint32_t *rows, size_t n_rows, size_t row_len, int32_t *table) {
    for (size_t i = 0; i < n_rows; i++) memcpy(table + (size_t)rows[i] * row_len, in + i * row_len, 4 * row_len);
}

/* Moves a whole table from exponent *e to e_new >= *e (its rows outgrew it). */
static void rescale(ie_session *s, uint32_t pi, int32_t *a, size_t n, int32_t *e, int32_t e_new, uint32_t slot) {
    if (e_new == *e) return;
    ie_shift_s32_s32(a, n, e_new - *e, 30, ie_session_rounder(s, ie_param_stream(pi, slot)), a);
    *e = e_new;
}

void ie_optim_step_rows(ie_session *s, uint32_t pi, const uint32_t *rows, size_t n_rows, size_t row_len,
                        const int64_t *grad, int32_t grad_e, int32_t *scratch) {
    ie_param *p = &s->params[pi];
    const ie_session_config *c = &s->cfg;
    size_t n = n_rows * row_len;
    int32_t *g = scratch, *w = scratch + n, *mom = scratch + 2 * n;
    gather_rows(p->w, rows, n_rows, row_len, w);
    int sh = ie_requant_shift(ie_absmax_s64(grad, n), 29);
    uint64_t gmax = 0, wmax = ie_absmax_s32(w, n), vmax;
    ie_shift_s64_s32(grad, n, sh, 29, ie_session_rounder(s, ie_param_stream(pi, R_GRAD)), g);
    gmax = ie_absmax_s32(g, n);
    int32_t ge = grad_e + sh;
    if (c->weight_decay.m)
        ge = ie_axpby_s32_split(NULL, g, n, ONE, g, ge, gmax, c->weight_decay, w, p->we, wmax,
                                ie_session_rounder(s, ie_param_stream(pi, R_DECAY)), &gmax);
    const int32_t *v = g;
    int32_t ve = ge;
    vmax = gmax;
    if (c->momentum.m) {
        gather_rows(p->mom, rows, n_rows, row_len, mom);
        /* momentum that is all zero has no exponent to keep */
        int32_t floor = cached_max(p, IE_KNOWN_MOM, p->mom, &p->mmax) ? p->me : INT32_MIN;
        int32_t me = ie_axpby_s32_floor(NULL, mom, n, c->momentum, mom, p->me, ie_absmax_s32(mom, n), ONE, g, ge, gmax,
                                        floor, ie_session_rounder(s, ie_param_stream(pi, R_MOMENTUM)), &vmax);
        if (floor == INT32_MIN) p->me = me;
        rescale(s, pi, p->mom, p->numel, &p->me, me, R_RESCALE_MOM);
        scatter_rows(mom, rows, n_rows, row_len, p->mom);
        v = mom;
        ve = me;
    }
    ie_dyadic neg_lr = {-c->lr.m, c->lr.e};
    int32_t we = ie_axpby_s32_floor(NULL, w, n, ONE, w, p->we, wmax, neg_lr, v, ve, vmax, p->we,
                                    ie_session_rounder(s, ie_param_stream(pi, R_UPDATE)), NULL);
    rescale(s, pi, p->w, p->numel, &p->we, we, R_RESCALE_W);
    scatter_rows(w, rows, n_rows, row_len, p->w);
    p->known = 0; /* the rows written may have held the table's maxima */
}
