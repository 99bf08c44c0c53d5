"""Small .iem graphs and reference helpers for the transformer ops' tests (test_matmul.py,
test_param_broadcast.py) and the sanitizer smoke run: Gemm on tokens, MatMul of two activations,
parameters broadcast over the batch (positional embeddings, the class token)."""
import numpy as np

from intedge import iem

ERRORS = {}  # check -> worst |error| in output ulps seen this session (conftest prints it)


def assert_within_one_ulp(check, q, e, ref):
    """int8 q * 2^e against the float64 reference: one SR leaves every element within one ulp."""
    err = np.abs(q * 2.0**e - ref).max() / 2.0**e
    ERRORS[check] = max(ERRORS.get(check, 0.0), float(err))
    assert err < 1, f"{check}: {err} ulp"


def grid_weights(rng, shape, e=-6):
    """float32 weights q * 2^e with q int8 and max|q| = 127: their int8 view is exactly q (the
    29-bit master holds them exactly and the view is an exact shift), so a test knows the int8
    values the op read. Returns (weights, q)."""
    q = rng.integers(-127, 128, shape)
    q.flat[0] = 127
    return (q * 2.0**e).astype(np.float32), q


def applied_gradient(session, index, before, lr):
    """The gradient the optimizer applied to parameter `index` in the last step (SGD, momentum 0,
    no weight decay: w1 = w0 - lr * g), and how far it may sit from the exact gradient `ref`:
    the update rounds each of its two terms once at the new master's exponent, and the gradient
    enters at 29 bits. Returns (g, tolerance(ref))."""
    w0, e0 = before
    w1, e1 = session.param_fixed(index)
    g = (w0 * 2.0**e0 - w1 * 2.0**e1) / lr
    return g, lambda ref: 2.0**(e1 + 1) / lr + np.abs(ref).max() * 2.0**-28


def param_index(model, name):
    return next(p.index for p in model.params if p.name == name)


def add_gemm(g, rng, x, y, k, m, rows, bias=False, grid=True, scale=1.0):
    """y = x . W^T (+ b) on the last axis, rows per sample; the output tensor must exist. Grid
    weights (exact int8 views) unless grid=False: then normal, scaled by scale / sqrt(k)."""
    if grid:
        w, _ = grid_weights(rng, (m, k))
    else:
        w = (rng.standard_normal((m, k)) * scale / np.sqrt(k)).astype(np.float32)
    g.add_tensor(f"{y}.w", iem.KIND_PARAM, w.shape, w)
    ins = [x, f"{y}.w"]
    if bias:
        b = (rng.standard_normal(m) * 0.5).astype(np.float32)
        g.add_tensor(f"{y}.b", iem.KIND_PARAM, b.shape, b)
        ins.append(f"{y}.b")
    g.add_node(f"{y}.gemm", iem.OP_GEMM, ins, [y], [1, rows])


def logical(shape, trans):
    """The matrix shape a MatMul operand stored with `shape` stands for."""
    return (*shape[:-2], shape[-1], shape[-2]) if trans else tuple(shape)


def matmul_graph(rng, a_shape, b_shape, ta=0, tb=0, k0=5):
    """x [T0, k0] -> two Gemm nodes on tokens -> Reshape to the stored shapes of A and B ->
    MatMul (the output). T0 divides both operands' sizes. Returns (graph, T0, output shape)."""
    t0 = int(np.gcd(int(np.prod(a_shape)), int(np.prod(b_shape))))
    out = np.matmul(np.zeros(logical(a_shape, ta)), np.zeros(logical(b_shape, tb))).shape
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (t0, k0))
    for name, shape in (("A", a_shape), ("B", b_shape)):
        f = int(np.prod(shape)) // t0
        g.add_tensor(f"{name}.tokens", iem.KIND_ACTIVATION, (t0, f))
        add_gemm(g, rng, "x", f"{name}.tokens", k0, f, t0, grid=False)
        g.add_tensor(name, iem.KIND_ACTIVATION, shape)
        g.add_node(f"{name}.reshape", iem.OP_RESHAPE, [f"{name}.tokens"], [name])
    g.add_tensor("Y", iem.KIND_ACTIVATION, out)
    g.add_node("matmul", iem.OP_MATMUL, ["A", "B"], ["Y"], [ta, tb])
    g.output = g.index["Y"]
    return g, t0, out


def attention_graph(rng, t=65, d=16, heads=4, k0=64, classes=10):
    """A one-block attention classifier with every new op: x [t - 1, k0] patches -> Gemm on tokens
    -> (ParamBroadcast class token, Concat) -> Add a positional embedding (a trained parameter) ->
    Q, K, V Gemm on tokens -> heads -> S = Q . K^T (MatMul reading K transposed) -> Relu (stands in
    for Softmax, another branch's op) -> O = S . V (MatMul) -> Gemm -> flattened Gemm to logits."""
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (t - 1, k0))
    width = heads * d
    g.add_tensor("emb", iem.KIND_ACTIVATION, (t - 1, width))
    add_gemm(g, rng, "x", "emb", k0, width, t - 1, bias=True, grid=False)
    cls = (rng.standard_normal((1, 1, width)) * 0.5).astype(np.float32)
    g.add_tensor("cls_token", iem.KIND_PARAM, cls.shape, cls)
    g.add_tensor("cls", iem.KIND_ACTIVATION, (1, width))
    g.add_node("cls.expand", iem.OP_PARAM_BROADCAST, ["cls_token"], ["cls"])
    g.add_tensor("tokens", iem.KIND_ACTIVATION, (t, width))
    g.add_node("cls.concat", iem.OP_CONCAT, ["cls", "emb"], ["tokens"], [0])
    pos = (rng.standard_normal((t, width)) * 0.5).astype(np.float32)
    g.add_tensor("pos_embed", iem.KIND_PARAM, pos.shape, pos)
    g.add_tensor("h0", iem.KIND_ACTIVATION, (t, width))
    g.add_node("pos.add", iem.OP_BINARY, ["tokens", "pos_embed"], ["h0"], [iem.BINARY_ADD])
    for name in "qkv":
        g.add_tensor(f"{name}.tokens", iem.KIND_ACTIVATION, (t, width))
        # scores / (sqrt(d) t): the Relu standing in for Softmax then averages about t values
        scale = 1 / (np.sqrt(d) * t) if name == "q" else 1
        add_gemm(g, rng, "h0", f"{name}.tokens", width, width, t, grid=False, scale=scale)
        g.add_tensor(f"{name}.split", iem.KIND_ACTIVATION, (t, heads, d))
        g.add_node(f"{name}.reshape", iem.OP_RESHAPE, [f"{name}.tokens"], [f"{name}.split"])
        g.add_tensor(name, iem.KIND_ACTIVATION, (heads, t, d))
        g.add_node(f"{name}.heads", iem.OP_TRANSPOSE, [f"{name}.split"], [name], [1, 0, 2])
    for name, shape in (("scores", (heads, t, t)), ("probs", (heads, t, t)), ("o", (heads, t, d)),
                        ("o.merged", (t, heads, d)), ("o.tokens", (t, width)), ("proj", (t, width)),
                        ("flat", (t * width,)), ("logits", (classes,))):
        g.add_tensor(name, iem.KIND_ACTIVATION, shape)
    g.add_node("qk", iem.OP_MATMUL, ["q", "k"], ["scores"], [0, 1])
    g.add_node("probs.relu", iem.OP_RELU, ["scores"], ["probs"])
    g.add_node("pv", iem.OP_MATMUL, ["probs", "v"], ["o"], [0, 0])
    g.add_node("o.merge", iem.OP_TRANSPOSE, ["o"], ["o.merged"], [1, 0, 2])
    g.add_node("o.reshape", iem.OP_RESHAPE, ["o.merged"], ["o.tokens"])
    add_gemm(g, rng, "o.tokens", "proj", width, width, t, grid=False)
    g.add_node("flatten", iem.OP_RESHAPE, ["proj"], ["flat"])
    add_gemm(g, rng, "flat", "logits", t * width, classes, 1, bias=True, grid=False)
    g.output = g.index["logits"]
    return g


def attention_autograd(graph, heads):
    """attention_graph in float64 torch: (its parameters by name, leaves for autograd; a function
    from a batch x to the logits)."""
    import torch

    p = {t.name: torch.tensor(t.data.astype(np.float64), requires_grad=True)
         for t in graph.tensors if t.kind == iem.KIND_PARAM}

    def forward(x):
        n = x.shape[0]
        emb = torch.tensor(x, dtype=torch.float64) @ p["emb.w"].T + p["emb.b"]
        h0 = torch.cat([p["cls_token"].reshape(1, 1, -1).expand(n, 1, -1), emb], 1) + p["pos_embed"]
        t, width = h0.shape[1:]
        q, k, v = [(h0 @ p[f"{c}.tokens.w"].T).reshape(n, t, heads, -1).transpose(1, 2) for c in "qkv"]
        o = (torch.relu(q @ k.transpose(-1, -2)) @ v).transpose(1, 2).reshape(n, t, width)
        return (o @ p["proj.w"].T).reshape(n, -1) @ p["logits.w"].T + p["logits.b"]

    return p, forward
