/* ConvTranspose (2-D, NCHW): Y = conv_transpose(X, W) + B with groups, stride, dilation, pads and
 * output padding. A transposed convolution is the input gradient of the convolution that maps Y's
 * shape to X's with the same weights, so the three training products are conv.c's, roles swapped
 * (g below is that convolution's geometry: its input is Y's shape, its output X's):
 *   forward  Y  = conv's dX of "dY" = X        (ie_conv_dx_acc: W^T . X, col2im), + B, one rounding
 *   dX          = conv's forward of dY         (ie_conv_fwd: W . im2col(dY))
 *   dW          = conv's dW with dY := X, X := dY   (exact, int64; W's layout [Cin, Cout/group, kh, kw]
 *                 is the convolution's [cout, cin_g, kh, kw])
 * The kernels, their tiers and their chunking are conv.c's, so every tier gives the same bytes.
 * Output padding is the rows and columns past the last tap (Y's size); the convolution's window
 * check accepts output padding below the stride.
 * attrs: as Conv's (ops/conv.c): 0 group, 1 kh, 2 kw, 3 stride h, 4 stride w, 5 dilation h,
 *        6 dilation w, 7 pad top, 8 pad left, 9 pad bottom, 10 pad right. */
#include "../planner.h"
#include "ops.h"

enum { S_ACC, S_BIAS, S_COL, S_WT, S_COL_DX, S_DX_ACC, S_COL_B, S_DW_PART };

/* The geometry of the convolution that this node transposes: Y's shape in, X's shape out. */
static ie_conv_geom geometry(const ie_model *m, const ie_node_desc *nd, const ie_session_config *cfg) {
    return ie_conv_geometry(m, nd, cfg, 1);
}

static ie_status convt_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->rank != 3 || y->rank != 3) {
        ie_set_err(err, "the data input and output must be [C, H, W] activations");
        return IE_ERR_FORMAT;
    }
    ie_conv_geom g = geometry(m, nd, NULL);
    return ie_conv_check_geom(m, nd, &g, g.cin, err);
}

static void convt_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    ie_conv_geom g = geometry(m, &m->nodes[node], ie_plan_config(p));
    size_t n = ie_plan_batch(p), hw = (size_t)g.h * g.w, howo = (size_t)g.ho * g.wo;
    size_t k = (size_t)g.cin_g * g.kh * g.kw, cout_g = g.cout / g.group, t = ie_plan_threads(p);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int needs = ie_conv_plan_params(p, node, g.cout * k, g.cin);
    ie_plan_node_scratch(p, node, S_ACC, IE_SIZE(n, g.cin, hw, sizeof(int32_t)), F, F);
    ie_plan_node_scratch(p, node, S_WT, IE_SIZE(g.group, k, cout_g), F, F);
    ie_plan_node_scratch(p, node, S_COL, IE_SIZE(t, ie_conv_scratch(&g, n, IE_PROF_DX)), F, F);
    if (m->nodes[node].n_in > 2) ie_plan_node_scratch(p, node, S_BIAS, IE_SIZE(g.cin, sizeof(int64_t)), F, F);
    if (needs & IE_CONV_NEEDS_DX) {
        ie_plan_node_scratch(p, node, S_COL_DX, IE_SIZE(t, ie_conv_scratch(&g, n, IE_PROF_FWD)), B, B);
        ie_plan_node_scratch(p, node, S_DX_ACC, IE_SIZE(n, g.cout, howo, sizeof(int32_t)), B, B);
    }
    if (needs & IE_CONV_NEEDS_DW) {
        size_t chunks = (n + ie_conv_chunk(&g, n) - 1) / ie_conv_chunk(&g, n);
        ie_plan_node_scratch(p, node, S_COL_B, IE_SIZE(t, ie_conv_scratch(&g, n, IE_PROF_DW)), B, B);
        if (t > 1 && chunks >= t) ie_plan_node_scratch(p, node, S_DW_PART, IE_SIZE(t, g.cout, k, sizeof(int64_t)), B, B);
    }
}

static ie_conv_node convt_open(ie_session *s, uint32_t node) {
    return ie_conv_open(s, node, geometry(s->model, &s->model->nodes[node], &s->cfg));
}

static void convt_forward(ie_session *s, uint32_t node) {
    ie_conv_node c = convt_open(s, node);
    ie_rounder r[3];
    ie_conv_fwd_start(s, node, &c, r);
    ie_conv_dx_acc(&s->ex, &c.g, s->n, c.x->q, c.pw->w8, c.sc[S_WT], c.sc[S_COL], c.sc[S_ACC]);
    size_t hw = (size_t)c.g.h * c.g.w;
    c.y->e = ie_requant_bias(&s->ex, c.sc[S_ACC], s->n * c.g.cin * hw, c.x->e + c.pw->e8, hw, c.g.cin,
                             c.pb ? c.pb->w : NULL, c.pb ? c.pb->we : 0, c.sc[S_BIAS], r, c.y->q, NULL);
}

static void convt_backward(ie_session *s, uint32_t node) {
    ie_conv_node c = convt_open(s, node);
    if (c.x->requires_grad) {
        ie_rounder r = ie_session_rounder(s, ie_node_stream(node, IE_CONV_R_DX)), rs[3] = {r, r, r}; /* no bias: r[2] alone */
        c.x->ge = ie_conv_fwd(&s->ex, &c.g, s->n, c.y->g, c.y->ge, c.pw->w8, c.pw->e8, NULL, 0, c.sc[S_COL_DX],
                              c.sc[S_DX_ACC], NULL, rs, c.x->g, NULL);
    }
    if (c.pw->trainable) {
        ie_prof_switch(s->ex.prof, IE_PROF_DW);
        c.pw->grad_e = ie_conv_bwd_dw(&s->ex, &c.g, s->n, c.x->q, c.x->e, c.y->g, c.y->ge, c.sc[S_COL_B],
                                      c.sc[S_DW_PART], c.pw->grad, &c.pw->grad32);
        ie_optim_step(s, c.wi);
    }
    ie_conv_bias_update(s, node, &c, c.g.cin, (size_t)c.g.h * c.g.w);
}

const ie_op_def ie_op_conv_transpose = {"ConvTranspose", 2, 3, 1, convt_check, convt_plan, convt_forward,
                                        convt_backward};
