/* The optimizers, in integers (PyTorch semantics; docs/number-format.md derives the bounds).
 *
 * SGD with momentum and weight decay:  g' = g + wd * w;   v = mu * v + g';   w = w - lr * v
 * AdamW, at step t = 1, 2, ... (the session's step counter plus one):
 *   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   w = (1 - lr wd) w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps sqrt(1 - b2^t))
 * which is PyTorch's  w -= lr wd w;  w -= lr m_hat / (sqrt(v_hat) + eps)  with the bias
 * corrections moved into two per-step constants.
 *
 * The gradient arrives exact (int64) and is normalized to 29 bits. Every stage that mixes two
 * tensors is an ie_axpby_s32 that re-picks the output exponent and rounds stochastically, so
 * updates far below the master's resolution still move it on average. AdamW's v is int64 (its
 * EMA of squares keeps every element g's own normalization kept), updated with exact 93-bit
 * products; its step direction comes per element from Newton's rsqrt and reciprocal in fixed
 * point, at one exponent fixed by the bound |m| / sqrt(v) <= (1-b1) sqrt(b2/((1-b2)(b2-b1^2))).
 *
 * Each stage needs the max magnitude of its inputs, which the stage that wrote them returns:
 * max|w|, max|mom| and bitlen(max v) are kept in the parameter from one step (and forward) to the
 * next. Large parameters split every pass over the session's pool.
 *
 * One core per optimizer serves a whole parameter and the rows of an Embedding table alike: the
 * rows are gathered, stepped with their exponents held at least at the table's, and scattered. */
#include <string.h>

#include "internal.h"

enum {
    R_VIEW = 0, R_GRAD, R_DECAY, R_MOMENTUM, R_UPDATE, R_RESCALE_W, R_RESCALE_MOM,
    R_V_DECAY, R_V_GRAD, R_DIRECTION, R_RESCALE_V
};

static const ie_dyadic ONE = {1, 0};

/* max|a| of the parameter's master (IE_KNOWN_W) or momentum (IE_KNOWN_MOM), kept in *max. */
static uint64_t cached_max(ie_param *p, uint8_t which, const int32_t *a, uint32_t *max) {
    if (!(p->known & which)) {
        *max = (uint32_t)ie_absmax_s32(a, p->numel);
        p->known |= which;
    }
    return *max;
}

/* bitlen(max v) of the parameter's v. */
static int cached_vbits(ie_param *p) {
    if (!(p->known & IE_KNOWN_V)) {
        p->vbits = (uint8_t)ie_bitlen64(ie_absmax_s64(p->v, p->numel));
        p->known |= IE_KNOWN_V;
    }
    return p->vbits;
}

void ie_param_quantize(ie_session *s, uint32_t pi, int8_t *dst, size_t transpose_rows, int nearest) {
    ie_param *p = &s->params[pi];
    uint64_t t0 = ie_prof_start(s->ex.prof);
    int sh = ie_requant_shift(cached_max(p, IE_KNOWN_W, p->w, &p->wmax), 7);
    ie_rounder r = ie_session_rounder(s, ie_param_stream(pi, R_VIEW));
    r.nearest |= (uint32_t)nearest;
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

/* ---- AdamW's constants ------------------------------------------------------------------------- */

/* A dyadic strictly between lo and 1 (lo = 0: or equal to 0). */
static int in_unit(ie_dyadic d, int zero_ok) {
    if (d.m < 0 || (d.m == 0 && !zero_ok)) return 0;
    return d.m == 0 || d.e + ie_bitlen64((uint64_t)d.m) <= 0; /* below 2^0 */
}

ie_status ie_adamw_init(const ie_session_config *cfg, ie_adamw *a, char *err) {
    if (cfg->momentum.m) {
        ie_set_err(err, "AdamW takes beta1, not momentum: set momentum to 0");
        return IE_ERR_ARG;
    }
    if (!in_unit(cfg->beta1, 1) || !in_unit(cfg->beta2, 0) || cfg->eps.m < 0) {
        ie_set_err(err, "AdamW needs 0 <= beta1 < 1, 0 < beta2 < 1 and eps >= 0");
        return IE_ERR_ARG;
    }
    a->b1 = ie_dy_full(cfg->beta1);
    a->b2 = ie_dy_full(cfg->beta2);
    a->c1 = ie_dy_full(ie_dy_add(ONE, ie_dy_neg(a->b1)));
    a->c2 = ie_dy_full(ie_dy_add(ONE, ie_dy_neg(a->b2)));
    ie_dyadic gap = ie_dy_add(a->b2, ie_dy_neg(ie_dy_mul(a->b1, a->b1))); /* b2 - b1^2 */
    if (gap.m <= 0) {
        ie_set_err(err, "AdamW needs beta1^2 < beta2 (then |m| / sqrt(v) is bounded)");
        return IE_ERR_ARG;
    }
    /* Cauchy-Schwarz on the two EMAs of the same gradients: |m| <= bound sqrt(v) */
    ie_dyadic bound = ie_dy_mul(ie_dy_mul(a->c1, ie_dy_mul(a->b2, ie_dy_rsqrt(a->b2))),
                                ie_dy_rsqrt(ie_dy_mul(a->c2, gap)));
    int len = ie_bitlen64((uint64_t)bound.m);
    a->eu = bound.e + len - 30;
    a->clamp = (uint32_t)bound.m >> (len > 30 ? len - 30 : 0) << (len < 30 ? 30 - len : 0);
    return IE_OK;
}

void ie_optim_begin_step(ie_session *s) {
    ie_adamw *a = s->adamw;
    if (!a) return;
    uint64_t t = s->step + 1;
    ie_dyadic bc1 = ie_dy_mul(a->c1, ie_dy_powsum(a->b1, t)); /* 1 - b1^t */
    ie_dyadic bc2 = ie_dy_mul(a->c2, ie_dy_powsum(a->b2, t));
    ie_dyadic root2 = ie_dy_mul(bc2, ie_dy_rsqrt(bc2)); /* sqrt(1 - b2^t) */
    a->step_size = ie_dy_full(ie_dy_mul(ie_dy_mul(s->cfg.lr, root2), ie_dy_inv(bc1)));
    a->eps_t = ie_dy_full(ie_dy_mul(s->cfg.eps, root2));
    a->decay = ie_dy_add(ONE, ie_dy_neg(ie_dy_mul(s->cfg.lr, s->cfg.weight_decay)));
}

/* ---- one step, on a parameter or on gathered rows ---------------------------------------------- */

/* What a step updates: n elements of the master w, the first moment m (SGD's momentum, AdamW's
 * m; NULL without momentum) and AdamW's v, from the normalized gradient g. The exponents and
 * maxima come in and go out; each floor is the lowest exponent its output may take (a table's
 * own, so the rows left alone keep their bytes; INT32_MIN for a whole parameter). */
typedef struct opt_state {
    ie_pool *pool;
    size_t n;
    int32_t *g, *w, *m;
    int64_t *v;
    int32_t ge, we, me, ve;
    uint64_t gmax, wmax, mmax;
    int vbits;
    int32_t floor_w, floor_m, floor_v;
    int bits; /* SGD's term bits (config sgd_bits; AdamW keeps IE_TERM_BITS) */
} opt_state;

static ie_rounder rounder(ie_session *s, uint32_t pi, uint32_t slot) {
    return ie_session_rounder(s, ie_param_stream(pi, slot));
}

static void sgd_core(ie_session *s, uint32_t pi, opt_state *st) {
    const ie_session_config *c = &s->cfg;
    size_t n = st->n;
    if (c->weight_decay.m)
        st->ge = ie_axpby_s32_split(st->pool, st->g, n, ONE, st->g, st->ge, st->gmax, c->weight_decay, st->w, st->we,
                                    st->wmax, st->bits, rounder(s, pi, R_DECAY), &st->gmax);
    const int32_t *dir = st->g;
    int32_t de = st->ge;
    uint64_t dmax = st->gmax;
    if (st->m) {
        st->me = ie_axpby_s32_floor(st->pool, st->m, n, c->momentum, st->m, st->me, st->mmax, ONE, st->g, st->ge,
                                    st->gmax, st->bits, st->floor_m, rounder(s, pi, R_MOMENTUM), &st->mmax);
        dir = st->m;
        de = st->me;
        dmax = st->mmax;
    }
    ie_dyadic neg_lr = {-c->lr.m, c->lr.e};
    st->we = ie_axpby_s32_floor(st->pool, st->w, n, ONE, st->w, st->we, st->wmax, neg_lr, dir, de, dmax, st->bits,
                                st->floor_w, rounder(s, pi, R_UPDATE), &st->wmax);
}

/* AdamW's fused pass: v = b2 v + (1 - b2) g^2 by ie_mulshift (a draw per term), then the step
 * direction u = m / (sqrt(v) + eps) written over g. Reports max v and max |u|. */
typedef struct adamw_job {
    const int32_t *g, *m;
    int64_t *v;
    int32_t *u;
    uint32_t b2, c2; /* mantissas; 0 leaves a term out */
    ie_mulshift pv, pg;
    ie_adam_dir dir;
    uint32_t key[3];
} adamw_job;

IE_HOT static void adamw_part(const void *ctx, size_t b, size_t e, uint64_t max[2]) {
    const adamw_job *j = ctx;
    uint64_t vmax = 0;
    uint32_t umax = 0, h = (uint32_t)b * 0x9E3779B9U;
    for (size_t i = b; i < e; i++, h += 0x9E3779B9U) {
        uint64_t ag = (uint64_t)(j->g[i] < 0 ? -(int64_t)j->g[i] : j->g[i]);
        uint64_t v = ie_mulshift_apply((uint64_t)j->v[i], j->b2, j->pv, ie_hash32(h ^ j->key[0])) +
                     ie_mulshift_apply(ie_mul32(ag, ag), j->c2, j->pg, ie_hash32(h ^ j->key[1]));
        int32_t u = ie_adam_dir_apply(&j->dir, v, j->m[i], ie_hash32(h ^ j->key[2]));
        uint32_t au = u < 0 ? 0u - (uint32_t)u : (uint32_t)u;
        j->v[i] = (int64_t)v;
        j->u[i] = u;
        vmax = v > vmax ? v : vmax;
        umax = au > umax ? au : umax;
    }
    max[0] = vmax;
    max[1] = umax;
}

/* The exponent a term c x (x's max of `bits` bits, at exponent ex) rounds to from, and its top
 * bit (an upper bound); INT32_MIN when the term is absent. */
static int32_t product_top(ie_dyadic c, int32_t ex, int bits) {
    return c.m && bits ? c.e + ex + ie_bitlen64((uint64_t)c.m) + bits : INT32_MIN;
}

static void adamw_core(ie_session *s, uint32_t pi, opt_state *st) {
    const ie_adamw *a = s->adamw;
    size_t n = st->n;
    st->me = ie_axpby_s32_floor(st->pool, st->m, n, a->b1, st->m, st->me, st->mmax, a->c1, st->g, st->ge, st->gmax,
                                IE_TERM_BITS, st->floor_m, rounder(s, pi, R_MOMENTUM), &st->mmax);
    /* v's exponent: each term below 2^61 (so v < 2^62), no term shifted left */
    int32_t tv = product_top(a->b2, st->ve, st->vbits), tg = product_top(a->c2, 2 * st->ge, ie_bitlen64(st->gmax * st->gmax));
    int32_t ve;
    if (tv == INT32_MIN && tg == INT32_MIN) { /* v stays 0 (no INT32_MIN - 61: libFuzzer found it) */
        ve = st->floor_v > st->ve ? st->floor_v : st->ve;
    } else {
        ve = (tv > tg ? tv : tg) - 61;
        if (tv != INT32_MIN && ve < a->b2.e + st->ve) ve = a->b2.e + st->ve;
        if (tg != INT32_MIN && ve < a->c2.e + 2 * st->ge) ve = a->c2.e + 2 * st->ge;
        if (ve < st->floor_v) ve = st->floor_v;
    }
    int32_t odd = ve & 1, h = (ve - odd) / 2;
    adamw_job j = {st->g, st->m, st->v, st->g,
                   tv == INT32_MIN ? 0 : (uint32_t)a->b2.m, tg == INT32_MIN ? 0 : (uint32_t)a->c2.m,
                   ie_mulshift_make(tv == INT32_MIN ? 0 : ve - (a->b2.e + st->ve)),
                   ie_mulshift_make(tg == INT32_MIN ? 0 : ve - (a->c2.e + 2 * st->ge)),
                   {(uint64_t)a->eps_t.m, a->eps_t.e, a->eps_t.e - h, h, odd, a->eu - st->me + 93, a->clamp},
                   {0}};
    static const uint8_t slots[3] = {R_V_DECAY, R_V_GRAD, R_DIRECTION};
    for (int k = 0; k < 3; k++) j.key[k] = rounder(s, pi, slots[k]).key;
    uint64_t max[2];
    ie_split_max2(st->pool, n, adamw_part, &j, max);
    st->ve = ve;
    st->vbits = ie_bitlen64(max[0]);
    st->we = ie_axpby_s32_floor(st->pool, st->w, n, a->decay, st->w, st->we, st->wmax, ie_dy_neg(a->step_size), st->g,
                                a->eu, max[1], IE_TERM_BITS, st->floor_w, rounder(s, pi, R_UPDATE), &st->wmax);
}

static void step_core(ie_session *s, uint32_t pi, opt_state *st) {
    if (s->adamw)
        adamw_core(s, pi, st);
    else
        sgd_core(s, pi, st);
}

void ie_optim_step(ie_session *s, uint32_t pi) {
    uint32_t phase = ie_prof_switch(s->ex.prof, IE_PROF_OPT);
    ie_param *p = &s->params[pi];
    ie_pool *pool = s->ex.pool;
    size_t n = p->numel;
    int32_t *g = (int32_t *)(void *)p->grad; /* the normalized gradient, over the exact one's bytes */
    ie_rounder rg = rounder(s, pi, R_GRAD);
    int bits = ie_session_term_bits(s, pi), sh;
    uint64_t gmax;
#if IE_FAST_PATHS
    if (p->grad32) { /* the same values as int32: the same shift and bytes */
        const int32_t *g32 = (const int32_t *)p->grad;
        sh = ie_requant_shift(ie_absmax_s32_split(pool, g32, n), bits);
        gmax = ie_shift_s32_s32_split(pool, g32, n, sh, bits, rg, g); /* element by element in place */
    } else
#endif
    {
        sh = ie_requant_shift(ie_absmax_s64_split(pool, p->grad, n), bits);
        gmax = ie_shift_s64_s32_inplace_split(pool, p->grad, n, sh, bits, rg);
    }
    opt_state st = {pool, n, g, p->w, p->mom, p->v, p->grad_e + sh, p->we, p->me, p->ve, gmax,
                    cached_max(p, IE_KNOWN_W, p->w, &p->wmax), p->mom ? cached_max(p, IE_KNOWN_MOM, p->mom, &p->mmax) : 0,
                    p->v ? cached_vbits(p) : 0, INT32_MIN, INT32_MIN, INT32_MIN, bits};
    step_core(s, pi, &st);
    p->we = st.we;
    p->wmax = (uint32_t)st.wmax;
    p->known = IE_KNOWN_W;
    if (p->mom) {
        p->me = st.me;
        p->mmax = (uint32_t)st.mmax;
        p->known |= IE_KNOWN_MOM;
    }
    if (p->v) {
        p->ve = st.ve;
        p->vbits = (uint8_t)st.vbits;
        p->known |= IE_KNOWN_V;
    }
    ie_prof_switch(s->ex.prof, phase);
}

/* ---- row-sparse parameters (Embedding tables) -------------------------------------------------
 * A step reads and updates only the rows its batch used. Those rows are gathered into scratch,
 * stepped like a dense parameter, and scattered back at the table's exponent: the rows it leaves
 * alone keep their bytes (AdamW's m and v too: lazy Adam), unless the used rows outgrow that
 * exponent, when the whole table moves to the new one (SR, like any dense update). */

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

/* Copies rows between a table and their gathered form (elem bytes per value). */
static void gather_rows(const void *table, const uint32_t *rows, size_t n_rows, size_t row_bytes, void *out) {
    for (size_t i = 0; i < n_rows; i++)
        memcpy((uint8_t *)out + i * row_bytes, (const uint8_t *)table + (size_t)rows[i] * row_bytes, row_bytes);
}

static void scatter_rows(const void *in, const uint32_t *rows, size_t n_rows, size_t row_bytes, void *table) {
    for (size_t i = 0; i < n_rows; i++)
        memcpy((uint8_t *)table + (size_t)rows[i] * row_bytes, (const uint8_t *)in + i * row_bytes, row_bytes);
}

/* Moves a whole table from exponent *e to e_new >= *e (its rows outgrew it). */
static void rescale(ie_session *s, uint32_t pi, int32_t *a, size_t n, int32_t *e, int32_t e_new, uint32_t slot) {
    if (e_new == *e) return;
    ie_shift_s32_s32(a, n, e_new - *e, 30, ie_session_rounder(s, ie_param_stream(pi, slot)), a);
    *e = e_new;
}

static void rescale_v(ie_session *s, uint32_t pi, int64_t *v, size_t n, int32_t *e, int32_t e_new) {
    if (e_new == *e) return;
    ie_rounder r = ie_session_rounder(s, ie_param_stream(pi, R_RESCALE_V));
    for (size_t i = 0; i < n; i++) v[i] = ie_shift_round(v[i], e_new - *e, ie_draw(r, (uint32_t)i));
    *e = e_new;
}

uint64_t ie_optim_rows_scratch(const ie_session_config *cfg, uint64_t n) {
    return IE_SIZE(n, 3 * sizeof(int32_t) + (cfg->optimizer == IE_OPTIM_ADAMW ? sizeof(int64_t) : 0));
}

void ie_optim_step_rows(ie_session *s, uint32_t pi, const uint32_t *rows, size_t n_rows, size_t row_len,
                        const int64_t *grad, int32_t grad_e, void *scratch) {
    ie_param *p = &s->params[pi];
    size_t n = n_rows * row_len;
    int64_t *v = p->v ? (int64_t *)scratch : NULL; /* first: 8-byte aligned */
    int32_t *g = (int32_t *)scratch + (p->v ? 2 * n : 0), *w = g + n, *m = p->mom ? w + n : NULL;
    gather_rows(p->w, rows, n_rows, 4 * row_len, w);
    int bits = ie_session_term_bits(s, pi), sh = ie_requant_shift(ie_absmax_s64(grad, n), bits);
    ie_shift_s64_s32(grad, n, sh, bits, rounder(s, pi, R_GRAD), g);
    opt_state st = {NULL, n, g, w, m, v, grad_e + sh, p->we, p->me, p->ve, ie_absmax_s32(g, n), ie_absmax_s32(w, n),
                    0, 0, p->we, INT32_MIN, INT32_MIN, bits};
    if (m) {
        gather_rows(p->mom, rows, n_rows, 4 * row_len, m);
        st.mmax = ie_absmax_s32(m, n);
        /* state that is all zero has no exponent to keep */
        st.floor_m = cached_max(p, IE_KNOWN_MOM, p->mom, &p->mmax) ? p->me : INT32_MIN;
    }
    if (v) {
        gather_rows(p->v, rows, n_rows, 8 * row_len, v);
        st.vbits = ie_bitlen64(ie_absmax_s64(v, n));
        st.floor_v = cached_vbits(p) ? p->ve : INT32_MIN;
    }
    step_core(s, pi, &st);
    if (m) {
        if (st.floor_m == INT32_MIN) p->me = st.me;
        rescale(s, pi, p->mom, p->numel, &p->me, st.me, R_RESCALE_MOM);
        scatter_rows(m, rows, n_rows, 4 * row_len, p->mom);
    }
    if (v) {
        if (st.floor_v == INT32_MIN) p->ve = st.ve;
        rescale_v(s, pi, p->v, p->numel, &p->ve, st.ve);
        scatter_rows(v, rows, n_rows, 8 * row_len, p->v);
    }
    rescale(s, pi, p->w, p->numel, &p->we, st.we, R_RESCALE_W);
    scatter_rows(w, rows, n_rows, 4 * row_len, p->w);
    p->known = 0; /* the rows written may have held the table's maxima */
}
