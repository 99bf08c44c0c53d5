/* MatMul of two activations (attention's Q.K^T and P.V): per sample,
 *   Y[..., M, N] = A[..., M, K] . B[..., K, N]
 * with numpy broadcasting over the leading per-sample axes ([h, T, d] x [h, d, T], or [T, d] x
 * [h, d, T]); the batch itself never broadcasts. attrs[0] = 1 reads A as stored [..., K, M],
 * attrs[1] = 1 reads B as stored [..., N, K] (Q.K^T without materializing K^T).
 *
 * Every product is one packed int8 GEMM of the dispatch table: the row-major kernel when the
 * second operand is stored reduction-contiguous ([C, red]), the reduction-major ("bt") kernel
 * when it is stored [red, C]; a first operand stored transposed is transposed into per-thread
 * scratch first (a copy, O(size), next to the product's O(size x red)). The three products:
 *   forward  Y  = A . B                      reduction K
 *   dA       dA = dY . B^T  (dA^T = B . dY^T) reduction N, summed over the axes where A broadcasts
 *   dB       dB = A^T . dY  (dB^T = dY^T . A) reduction M, summed over the axes where B broadcasts
 * Sums are exact: int32 while a destination's terms (reduction x broadcast count) stay within
 * 2^17, int64 beyond; then one SR per tensor. Work is split by destination matrix over the pool,
 * each matrix summed whole by one thread, so no thread count or kernel tier changes a byte. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { S_ACC, S_DA_ACC, S_DB_ACC, S_WORK_F, S_WORK_B };
enum { R_OUT = 1, R_DA, R_DB };
enum { OPND_A, OPND_B, OPND_DY }; /* the tensors a product reads */

typedef struct mm_shape {
    uint32_t a, b, y;
    size_t m, n, k;
    int ta, tb;
    uint32_t rank;                   /* leading (broadcast) axes of the output */
    uint32_t dims[IE_MAX_RANK];      /* their sizes */
    uint32_t stride[2][IE_MAX_RANK]; /* A's and B's matrix strides on them, 0 where broadcast */
    size_t count[3];                 /* matrices per sample of A, B and Y */
} mm_shape;

static mm_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    mm_shape g;
    memset(&g, 0, sizeof g);
    g.a = nd->in[0];
    g.b = nd->in[1];
    g.y = nd->out[0];
    g.ta = nd->attrs[0];
    g.tb = nd->attrs[1];
    const ie_tensor_desc *ta = &m->tensors[g.a], *tb = &m->tensors[g.b], *ty = &m->tensors[g.y];
    g.m = ty->dims[ty->rank - 2];
    g.n = ty->dims[ty->rank - 1];
    g.k = ta->dims[ta->rank - (g.ta ? 2 : 1)];
    g.rank = ty->rank - 2u;
    memcpy(g.dims, ty->dims, sizeof(uint32_t) * g.rank);
    const ie_tensor_desc *in[2] = {ta, tb};
    for (int x = 0; x < 2; x++) {
        uint32_t off = ty->rank - in[x]->rank;
        size_t s = 1;
        for (int d = (int)g.rank - 1; d >= 0; d--) {
            uint32_t xd = (uint32_t)d >= off ? in[x]->dims[d - off] : 1;
            g.stride[x][d] = xd == 1 && g.dims[d] != 1 ? 0 : (uint32_t)s;
            s *= xd;
        }
        g.count[x] = s;
    }
    g.count[2] = ty->numel / (g.m * g.n);
    return g;
}

/* The matrix of operand x (OPND_A or OPND_B) that output matrix j reads. */
static size_t operand_matrix(const mm_shape *g, int x, size_t j) {
    size_t idx = 0;
    for (int d = (int)g->rank - 1; d >= 0; d--) {
        idx += (j % g->dims[d]) * g->stride[x][d];
        j /= g->dims[d];
    }
    return idx;
}

static ie_status matmul_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *a = &m->tensors[nd->in[0]], *b = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (a->kind == IE_KIND_PARAM || b->kind == IE_KIND_PARAM) {
        ie_set_err(err, "both inputs must be activations (a weight is a Gemm)");
        return IE_ERR_FORMAT;
    }
    if ((nd->attrs[0] != 0 && nd->attrs[0] != 1) || (nd->attrs[1] != 0 && nd->attrs[1] != 1)) {
        ie_set_err(err, "attributes trans_a and trans_b must be 0 or 1");
        return IE_ERR_FORMAT;
    }
    if (a->rank < 2 || b->rank < 2 || y->rank != (a->rank > b->rank ? a->rank : b->rank)) {
        ie_set_err(err, "the inputs must be matrices (rank >= 2) and the output of the larger rank");
        return IE_ERR_FORMAT;
    }
    int ta = nd->attrs[0], tb = nd->attrs[1];
    uint32_t mo = a->dims[a->rank - (ta ? 1 : 2)], ka = a->dims[a->rank - (ta ? 2 : 1)];
    uint32_t kb = b->dims[b->rank - (tb ? 1 : 2)], no = b->dims[b->rank - (tb ? 2 : 1)];
    if (ka != kb || y->dims[y->rank - 2] != mo || y->dims[y->rank - 1] != no) {
        ie_set_err(err, "[%" PRIu32 ", %" PRIu32 "] x [%" PRIu32 ", %" PRIu32 "] does not give the output's [%" PRIu32 ", %" PRIu32 "]",
                   mo, ka, kb, no, y->dims[y->rank - 2], y->dims[y->rank - 1]);
        return IE_ERR_FORMAT;
    }
    if (mo > IE_MAX_REDUCTION || no > IE_MAX_REDUCTION || ka > IE_MAX_REDUCTION) {
        ie_set_err(err, "a matrix side above 2^17 (an int8 product would not be exact in int32)");
        return IE_ERR_UNSUPPORTED;
    }
    const ie_tensor_desc *in[2] = {a, b};
    for (uint32_t d = 0; d + 2 < y->rank; d++) { /* the leading axes: the output is their broadcast shape */
        uint32_t want = 1;
        for (int x = 0; x < 2; x++) {
            uint32_t off = y->rank - in[x]->rank, xd = d >= off ? in[x]->dims[d - off] : 1;
            if (xd != 1 && xd != y->dims[d] && y->dims[d] != 1) {
                ie_set_err(err, "input %d does not broadcast to the output", x);
                return IE_ERR_FORMAT;
            }
            want = xd > want ? xd : want;
        }
        if (want != y->dims[d]) { ie_set_err(err, "the output's leading axes are not the inputs' broadcast shape"); return IE_ERR_FORMAT; }
    }
    return IE_OK;
}

/* ---- one kind of product over every destination matrix ------------------------------------- */

/* C[R, C] = P[R, red] . Q[red, C], P stored [R, red] or (pt) [red, R], Q stored [red, C] or (qt)
 * [C, red]; work holds R x red bytes when pt. */
static void product(const ie_kernels *k, const int8_t *p, int pt, const int8_t *q, int qt, size_t r, size_t c,
                    size_t red, int8_t *work, int32_t *out) {
    if (pt) {
        ie_transpose_s8(p, red, r, work);
        p = work;
    }
    if (qt) k->gemm_s8s8_s32(p, q, out, r, c, red);
    else k->gemm_s8s8_s32_bt(p, q, out, r, c, red);
}

typedef struct mm_pass {
    const ie_kernels *k;
    const mm_shape *g;
    const int8_t *src[3]; /* A, B, dY: whole batches */
    int opnd[2], trans[2];  /* what P and Q read, and whether stored transposed */
    size_t r, c, red;
    int dest;               /* OPND_DY: Y itself; OPND_A or OPND_B: that operand's gradient */
    size_t n;               /* samples */
    void *acc;              /* int32, or int64 when wide */
    int wide;
    int8_t *work;           /* per part: work_bytes: P transposed, then (at tmp_offset) one r x c int32 product */
    size_t work_bytes, tmp_offset;
} mm_pass;

/* Destination matrices per sample. */
static size_t dest_count(const mm_pass *j) { return j->dest == OPND_DY ? j->g->count[2] : j->g->count[j->dest]; }

static size_t matrix_elems(const mm_shape *g, int x) {
    return x == OPND_A ? g->m * g->k : (x == OPND_B ? g->k * g->n : g->m * g->n);
}

/* The product of output matrix o of sample s into out. */
static void product_at(const mm_pass *j, size_t s, size_t o, int8_t *work, int32_t *out) {
    const mm_shape *g = j->g;
    const int8_t *mat[2];
    for (int t = 0; t < 2; t++) {
        int x = j->opnd[t];
        size_t idx = x == OPND_DY ? o : operand_matrix(g, x, o);
        mat[t] = j->src[x] + (s * (x == OPND_DY ? g->count[2] : g->count[x]) + idx) * matrix_elems(g, x);
    }
    product(j->k, mat[0], j->trans[0], mat[1], j->trans[1], j->r, j->c, j->red, work, out);
}

/* Destination matrices [d0, d1) of one part; each is the sum over the output matrices that read it. */
static void pass_part(void *p, uint32_t part, uint32_t parts) {
    const mm_pass *j = p;
    const mm_shape *g = j->g;
    size_t per = dest_count(j), d0, d1, rc = j->r * j->c;
    ie_part_range(j->n * per, part, parts, &d0, &d1);
    int8_t *work = j->work_bytes ? j->work + part * j->work_bytes : NULL;
    int32_t *tmp = work ? (int32_t *)(work + j->tmp_offset) : NULL;
    for (size_t d = d0; d < d1; d++) {
        size_t s = d / per, local = d % per, seen = 0;
        if (per == g->count[2]) { /* no broadcast: one product, and the map is the identity */
            product_at(j, s, local, work, (int32_t *)j->acc + d * rc);
            continue;
        }
        for (size_t o = 0; o < g->count[2]; o++) {
            if (operand_matrix(g, j->dest, o) != local) continue;
            int32_t *out = !j->wide && seen == 0 ? (int32_t *)j->acc + d * rc : tmp;
            product_at(j, s, o, work, out);
            if (j->wide) {
                int64_t *acc = (int64_t *)j->acc + d * rc;
                for (size_t i = 0; i < rc; i++) acc[i] = (seen ? acc[i] : 0) + tmp[i];
            } else if (out == tmp) {
                int32_t *acc = (int32_t *)j->acc + d * rc;
                for (size_t i = 0; i < rc; i++) acc[i] += tmp[i];
            }
            seen++;
        }
    }
}

/* Runs a pass over the pool when it is worth waking (as the Gemm entry points decide), and
 * requantizes its sums into y; returns the shift. */
static int run_pass(const ie_exec *ex, mm_pass *j, ie_rounder r, int8_t *y) {
    const mm_shape *g = j->g;
    size_t per = dest_count(j), total = j->n * per * j->r * j->c;
    uint64_t work = (uint64_t)j->n * g->count[2] * j->r * j->c * j->red;
    ie_pool_run(work >= ((uint64_t)1 << 22) && j->n * per > 1 ? ex->pool : NULL, pass_part, j);
    if (j->wide) return ie_requant_s64_s8(j->acc, total, r, y);
    return ie_requant_acc(ex, j->acc, total, r, y);
}

/* The three passes of a node: 0 forward, 1 dA, 2 dB. */
static mm_pass pass_of(const mm_shape *g, int which) {
    mm_pass j;
    memset(&j, 0, sizeof j);
    j.g = g;
    if (which == 0) { /* Y = A . B */
        j.opnd[0] = OPND_A, j.trans[0] = g->ta, j.opnd[1] = OPND_B, j.trans[1] = g->tb;
        j.r = g->m, j.c = g->n, j.red = g->k, j.dest = OPND_DY;
    } else if (which == 1 && !g->ta) { /* dA = dY . B^T */
        j.opnd[0] = OPND_DY, j.trans[0] = 0, j.opnd[1] = OPND_B, j.trans[1] = !g->tb;
        j.r = g->m, j.c = g->k, j.red = g->n, j.dest = OPND_A;
    } else if (which == 1) { /* dA^T = B . dY^T */
        j.opnd[0] = OPND_B, j.trans[0] = g->tb, j.opnd[1] = OPND_DY, j.trans[1] = 1;
        j.r = g->k, j.c = g->m, j.red = g->n, j.dest = OPND_A;
    } else if (!g->tb) { /* dB = A^T . dY */
        j.opnd[0] = OPND_A, j.trans[0] = !g->ta, j.opnd[1] = OPND_DY, j.trans[1] = 0;
        j.r = g->k, j.c = g->n, j.red = g->m, j.dest = OPND_B;
    } else { /* dB^T = dY^T . A */
        j.opnd[0] = OPND_DY, j.trans[0] = 1, j.opnd[1] = OPND_A, j.trans[1] = g->ta;
        j.r = g->n, j.c = g->k, j.red = g->m, j.dest = OPND_B;
    }
    size_t per = dest_count(&j);
    j.wide = (uint64_t)(g->count[2] / per) * j.red > IE_MAX_REDUCTION; /* terms summed per element */
    /* each product is one operand or result matrix (at most 2^28 elements): their sum fits size_t */
    j.tmp_offset = ie_align_up(j.trans[0] ? j.r * j.red : 0);
    j.work_bytes = j.tmp_offset + ie_align_up(per != g->count[2] ? j.r * j.c * sizeof(int32_t) : 0);
    return j;
}

static void matmul_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    mm_shape g = shape_of(m, &m->nodes[node]);
    size_t n = ie_plan_batch(p), t = ie_plan_threads(p); /* per-thread scratch, t copies */
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int bwd = ie_plan_requires_grad(p, g.y);
    mm_pass fwd = pass_of(&g, 0), da = pass_of(&g, 1), db = pass_of(&g, 2);
    ie_plan_node_scratch(p, node, S_ACC, IE_SIZE(n, m->tensors[g.y].numel, sizeof(int32_t)), F, F);
    ie_plan_node_scratch(p, node, S_WORK_F, IE_SIZE(t, fwd.work_bytes), F, F);
    if (!bwd) return;
    size_t work_b = 0;
    if (ie_plan_requires_grad(p, g.a)) {
        ie_plan_keep(p, g.b, B);
        ie_plan_node_scratch(p, node, S_DA_ACC, IE_SIZE(n, m->tensors[g.a].numel, da.wide ? 8 : 4), B, B);
        work_b = da.work_bytes;
    }
    if (ie_plan_requires_grad(p, g.b)) {
        ie_plan_keep(p, g.a, B);
        ie_plan_node_scratch(p, node, S_DB_ACC, IE_SIZE(n, m->tensors[g.b].numel, db.wide ? 8 : 4), B, B);
        work_b = db.work_bytes > work_b ? db.work_bytes : work_b;
    }
    ie_plan_node_scratch(p, node, S_WORK_B, IE_SIZE(t, work_b), B, B);
}

static mm_pass bind(const ie_session *s, const mm_shape *g, int which, void *acc, int8_t *work) {
    mm_pass j = pass_of(g, which);
    j.k = s->ex.k;
    j.n = s->n;
    j.src[OPND_A] = s->values[g->a].q;
    j.src[OPND_B] = s->values[g->b].q;
    j.src[OPND_DY] = s->values[g->y].g;
    j.acc = acc;
    j.work = work;
    return j;
}

static void matmul_forward(ie_session *s, uint32_t node) {
    mm_shape g = shape_of(s->model, &s->model->nodes[node]);
    void **sc = s->nodes[node].scratch;
    ie_value *a = &s->values[g.a], *b = &s->values[g.b], *y = &s->values[g.y];
    mm_pass j = bind(s, &g, 0, sc[S_ACC], sc[S_WORK_F]);
    y->e = a->e + b->e + run_pass(&s->ex, &j, ie_session_rounder(s, ie_node_stream(node, R_OUT)), y->q);
}

static void matmul_backward(ie_session *s, uint32_t node) {
    mm_shape g = shape_of(s->model, &s->model->nodes[node]);
    void **sc = s->nodes[node].scratch;
    ie_value *a = &s->values[g.a], *b = &s->values[g.b], *y = &s->values[g.y];
    if (a->requires_grad) {
        mm_pass j = bind(s, &g, 1, sc[S_DA_ACC], sc[S_WORK_B]);
        a->ge = y->ge + b->e + run_pass(&s->ex, &j, ie_session_rounder(s, ie_node_stream(node, R_DA)), a->g);
    }
    if (b->requires_grad) {
        mm_pass j = bind(s, &g, 2, sc[S_DB_ACC], sc[S_WORK_B]);
        b->ge = y->ge + a->e + run_pass(&s->ex, &j, ie_session_rounder(s, ie_node_stream(node, R_DB)), b->g);
    }
}

const ie_op_def ie_op_matmul = {"MatMul", 2, 2, 1, matmul_check, matmul_plan, matmul_forward, matmul_backward};
