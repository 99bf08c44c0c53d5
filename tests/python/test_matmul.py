"""The matrix products of a transformer against float64 autograd (runtime/src/ops/gemm.c on tokens,
runtime/src/ops/matmul.c), on exactly the int8 values each op read (op_harness.py):

- forward and input gradients: exact int32 sums and one SR, so every element lies within one
  output ulp of autograd's;
- weight and bias gradients: exact integer sums over every row of the batch (int64 past 2^17
  terms), checked through an SGD step (lr a power of two, momentum 0: w1 = w0 - lr * g);
- the same training bytes on every kernel tier and thread count;
- a whole attention block follows float64 SGD.

The Gemm tests use grid weights (grid_weights), so the int8 view the op read is known exactly."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge.errors import IntedgeError
from intedge.runtime import Model, Session, kernel_tiers
from op_harness import Harness
from transformer_graphs import add_gemm, applied_gradient, assert_within_one_ulp, attention_autograd, attention_graph, \
    matmul_graph, param_index


# ---- Gemm on tokens ---------------------------------------------------------------------------

@pytest.mark.parametrize("lead,k0,hidden,m", [((17,), 3, 65, 1), ((3, 17), 65, 3, 17), ((1,), 129, 1, 3),
                                               ((65,), 1, 17, 129)])
def test_gemm_on_tokens_matches_autograd(rng, lead, k0, hidden, m):
    """x [*lead, k0] -> Gemm -> h [*lead, hidden] -> Gemm -> y [*lead, m], both with bias, applied
    to the last axis of every row (rows per sample = prod(lead))."""
    rows, batch, lr = int(np.prod(lead)), 3, 2.0**-6
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (*lead, k0))
    g.add_tensor("h", iem.KIND_ACTIVATION, (*lead, hidden))
    g.add_tensor("y", iem.KIND_ACTIVATION, (*lead, m))
    add_gemm(g, rng, "x", "h", k0, hidden, rows, bias=True)
    add_gemm(g, rng, "h", "y", hidden, m, rows, bias=True)
    g.output = g.index["y"]
    h = Harness(g, batch=batch, lr=lr)
    names = ["h.w", "h.b", "y.w", "y.b"]
    before = {n: h.session.param_fixed(param_index(h.model, n)) for n in names}
    w = {n: torch.tensor(before[n][0] * 2.0**before[n][1], requires_grad=True) for n in names}
    x = rng.standard_normal((batch, *lead, k0)).astype(np.float32)
    dy = rng.integers(-127, 128, (batch, *lead, m), dtype=np.int8)
    h.step(x, dy, -9)

    # forward and dX from the int8 values each Gemm read; W's view is the grid itself
    hv = torch.tensor(h.value("h"), requires_grad=True)
    h_ref = torch.tensor(h.value("x")) @ w["h.w"].T + w["h.b"]
    y_ref = hv @ w["y.w"].T + w["y.b"]
    for name, ref in (("h", h_ref), ("y", y_ref)):
        # the bias joins the exact sum at the accumulator's exponent: one more rounding far below an ulp
        assert_within_one_ulp("Gemm tokens forward", *h.tensor(name), ref.detach().numpy())
    y_ref.backward(torch.tensor(dy * 2.0**-9))
    dh, dh_e = h.tensor("h", grad=True)
    assert_within_one_ulp("Gemm tokens dX", dh, dh_e, hv.grad.numpy())

    # dW and dB: exact sums over batch x rows, seen through the optimizer
    h_ref.backward(torch.tensor(dh * 2.0**dh_e))
    for n in names:
        got, tol = applied_gradient(h.session, param_index(h.model, n), before[n], lr)
        ref = w[n].grad.numpy()
        assert np.abs(got - ref).max() <= tol(ref), n


def test_gemm_rows_default_keeps_the_flattened_layout(rng):
    """attrs[1] = 0 (every existing .iem file) and 1 are today's Gemm: the same weights and losses
    (the state digests differ only because the model bytes, which they cover, differ)."""
    runs = []
    w = rng.standard_normal((3, 20)).astype(np.float32)
    for rows in (0, 1):
        g = iem.Graph()
        g.input = g.add_tensor("x", iem.KIND_INPUT, (4, 5))
        g.add_tensor("y", iem.KIND_ACTIVATION, (3,))
        g.add_tensor("w", iem.KIND_PARAM, w.shape, w)
        g.add_node("fc", iem.OP_GEMM, ["x", "w"], ["y"], [1, rows])
        g.output = g.index["y"]
        s = Session(Model(iem.serialize(g)), batch_size=4, lr=0.1)
        losses = [s.step(np.arange(80, dtype=np.float32).reshape(4, 4, 5) / 80, labels=[0, 1, 2, 0]) for _ in range(3)]
        w8, e = s.param_fixed(0)
        runs.append((losses, w8.tobytes(), e))
    assert runs[0] == runs[1]


def test_gemm_weight_gradient_sums_more_than_2_17_rows_exactly():
    """3 samples x 50,000 tokens = 150,000 rows of +127 x +127: 2.4e9, past int32, so the sum
    must go in int64 (chunked); the gradient is exactly rows x 127^2 x 2^(ex + edy)."""
    rng = np.random.default_rng(0)
    batch, t, lr = 3, 50_000, 2.0**-6
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (t, 2))
    g.add_tensor("y", iem.KIND_ACTIVATION, (t, 3))
    add_gemm(g, rng, "x", "y", 2, 3, t, bias=True)
    g.output = g.index["y"]
    h = Harness(g, batch=batch, lr=lr)
    before = {n: h.session.param_fixed(param_index(h.model, n)) for n in ("y.w", "y.b")}
    h.step(np.full((batch, t, 2), 127 / 64, np.float32), np.full((batch, t, 3), 127, np.int8), -30)
    xq, ex = h.tensor("x")
    assert np.all(xq == 127)
    rows = batch * t
    for n, ref in (("y.w", np.full((3, 2), rows * 127 * 127 * 2.0**(ex - 30))),
                   ("y.b", np.full(3, rows * 127 * 2.0**-30))):
        got, tol = applied_gradient(h.session, param_index(h.model, n), before[n], lr)
        assert np.abs(got - ref).max() <= tol(ref), n


def test_gemm_rows_must_divide_and_match_the_last_axis(rng):
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (6, 4))
    g.add_tensor("y", iem.KIND_ACTIVATION, (6, 3))
    w = rng.standard_normal((3, 4)).astype(np.float32)
    g.add_tensor("w", iem.KIND_PARAM, w.shape, w)
    g.add_node("fc", iem.OP_GEMM, ["x", "w"], ["y"], [1, 4])
    g.output = g.index["y"]
    with pytest.raises(IntedgeError, match="4 rows per sample do not divide"):
        Model(iem.serialize(g))
    g.nodes[0].attrs = [1, 3]  # divides, but makes rows of 8 inputs: the last axis is not a row
    with pytest.raises(IntedgeError, match="with 3 rows per sample the last axes must hold the 8 inputs"):
        Model(iem.serialize(g))


# ---- MatMul of two activations ----------------------------------------------------------------

# stored shapes of A and B per sample, and whether each is read transposed
MATMUL_CASES = [
    ((17, 3), (3, 65), 0, 0),             # plain, no leading axes
    ((4, 17, 3), (4, 17, 3), 0, 1),       # Q . K^T per head, K read transposed
    ((3, 65, 65), (3, 65, 1), 0, 0),      # attention . V, d = 1
    ((17, 3), (4, 3, 17), 0, 0),          # A broadcast over 4 heads: dA sums them
    ((4, 17, 5), (17, 5), 0, 1),          # B broadcast, and read transposed
    ((2, 1, 5, 3), (1, 3, 5, 129), 1, 0), # both broadcast, on different axes; A transposed
    ((17, 1), (4, 129, 17), 1, 1),        # M = 1, both transposed, B's K = 17
    ((1, 1), (1, 1), 0, 0),               # 1 x 1 x 1
]


def batched(v, rank):
    """[n, *s] as [n, 1, ..., *s] of the output's rank (the batch never broadcasts)."""
    return v.reshape(v.shape[0], *(1,) * (rank - v.ndim + 1), *v.shape[1:])


def matmul_reference(h, ta, tb, out, dy, edy):
    """Autograd's Y, dA and dB (shaped as stored) from the int8 A, B and dY of the last step."""
    a = torch.tensor(batched(h.value("A"), len(out)), requires_grad=True)
    b = torch.tensor(batched(h.value("B"), len(out)), requires_grad=True)
    y = torch.matmul(a.transpose(-1, -2) if ta else a, b.transpose(-1, -2) if tb else b)
    y.backward(torch.tensor(dy * 2.0**edy))
    n = dy.shape[0]
    return y.detach().numpy(), a.grad.numpy().reshape(n, -1), b.grad.numpy().reshape(n, -1)


@pytest.mark.parametrize("a_shape,b_shape,ta,tb", MATMUL_CASES)
def test_matmul_matches_autograd(rng, a_shape, b_shape, ta, tb):
    g, t0, out = matmul_graph(rng, a_shape, b_shape, ta, tb)
    h = Harness(g, batch=3)
    dy = rng.integers(-127, 128, (3, *out), dtype=np.int8)
    h.step(rng.standard_normal((3, t0, 5)).astype(np.float32), dy, -8)
    y_ref, da_ref, db_ref = matmul_reference(h, ta, tb, out, dy, -8)
    assert_within_one_ulp("MatMul forward", *h.tensor("Y"), y_ref)
    da, da_e = h.tensor("A", grad=True)
    db, db_e = h.tensor("B", grad=True)
    assert_within_one_ulp("MatMul dA", da.reshape(3, -1), da_e, da_ref)
    assert_within_one_ulp("MatMul dB", db.reshape(3, -1), db_e, db_ref)


def test_matmul_broadcast_gradient_past_2_17_terms_is_exact(rng):
    """A [3, 1] broadcast over 1,060 heads of B [1060, 1, 129]: dA sums 136,740 products of
    +127 x ~+127 per element, past int32, so the sum goes in int64 before its one rounding."""
    g, t0, out = matmul_graph(rng, (3, 1), (1060, 1, 129), 0, 0, k0=1)
    for t in g.tensors:  # every weight +127 (grid), so B is a positive constant near 127
        if t.kind == iem.KIND_PARAM:
            t.data = np.full(t.shape, 127 / 64, np.float32)
    h = Harness(g, batch=2)
    dy = np.full((2, *out), 127, np.int8)
    h.step(np.full((2, t0, 1), 127 / 64, np.float32), dy, -20)
    bq, be = h.tensor("B")
    assert bq.min() >= 126
    _, da_ref, _ = matmul_reference(h, 0, 0, out, dy, -20)
    assert np.all(da_ref * 2.0**(20 - be) > 2**31)  # each integer sum is past int32
    da, da_e = h.tensor("A", grad=True)
    assert_within_one_ulp("MatMul dA (int64 broadcast sum)", da.reshape(2, -1), da_e, da_ref)


@pytest.mark.parametrize("a_shape,b_shape,y_shape,message", [
    ((4, 3), (5, 6), (4, 6), r"\[4, 3\] x \[5, 6\] does not give the output's \[4, 6\]"),
    ((2, 4, 3), (3, 3, 6), (3, 4, 6), "input 0 does not broadcast"),
    ((2, 4, 3), (2, 3, 6), (1, 4, 6), "not the inputs' broadcast shape"),
    ((4, 3), (3, 6), (1, 4, 6), "output of the larger rank"),
])
def test_matmul_refuses_shapes_that_do_not_multiply(rng, a_shape, b_shape, y_shape, message):
    """x (as A) times a Gemm's output reshaped (as B), into an output of the shape claimed."""
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, a_shape)
    nb = int(np.prod(b_shape))
    g.add_tensor("B.flat", iem.KIND_ACTIVATION, (nb,))
    add_gemm(g, rng, "x", "B.flat", int(np.prod(a_shape)), nb, 1)
    g.add_tensor("B", iem.KIND_ACTIVATION, b_shape)
    g.add_node("B.reshape", iem.OP_RESHAPE, ["B.flat"], ["B"])
    g.add_tensor("Y", iem.KIND_ACTIVATION, y_shape)
    g.add_node("matmul", iem.OP_MATMUL, ["x", "B"], ["Y"], [0, 0])
    g.output = g.index["Y"]
    with pytest.raises(IntedgeError, match=message):
        Model(iem.serialize(g))


def test_attention_block_trains_bit_exactly_on_every_tier_and_thread_count():
    """Every new op in one block at attention size (N = 16, 4 heads, 65 tokens, d = 16, large
    enough that the products, their gradients and the token Gemms split over two threads)."""
    rng = np.random.default_rng(3)
    model = Model(iem.serialize(attention_graph(rng)))
    data = np.random.default_rng(4)
    x = data.standard_normal((16, 64, 64)).astype(np.float32)
    labels = data.integers(0, 10, 16)
    digests, curves = {}, {}
    for tier in kernel_tiers():
        for threads in (1, 2):
            s = Session(model, batch_size=16, lr=5e-4, momentum=0.9, weight_decay=1e-3, seed=5, kernels=tier,
                        threads=threads)
            curves[tier, threads] = [s.step(x, labels=labels)[0] for _ in range(6)]
            digests[tier, threads] = s.digest()
    assert len(set(digests.values())) == 1, digests
    losses = next(iter(curves.values()))
    assert losses[-1] < losses[0] / 4  # and it learns the batch


def test_attention_block_follows_float64_autograd():
    """The same block, initial weights and batch trained by SGD in float64 torch: the integer
    loss curve follows autograd's (every op's rounding is unbiased, so the trajectories agree)."""
    rng = np.random.default_rng(3)
    g = attention_graph(rng)
    data = np.random.default_rng(4)
    x = data.standard_normal((16, 64, 64)).astype(np.float32)
    labels = data.integers(0, 10, 16)
    lr = 2e-4
    s = Session(Model(iem.serialize(g)), batch_size=16, lr=lr, seed=5)
    ours = [s.step(x, labels=labels)[0] / 16 for _ in range(8)]
    params, forward = attention_autograd(g, heads=4)
    opt = torch.optim.SGD(params.values(), lr=lr)
    ref = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(forward(x), torch.tensor(labels))
        ref.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("\nattention block, loss per sample: intedge", np.round(ours, 4), "float64", np.round(ref, 4))
    assert ref[-1] < ref[0] / 10  # a curve worth comparing
    np.testing.assert_allclose(ours, ref, rtol=0.1, atol=0.03)
