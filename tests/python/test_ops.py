"""Each op's integer arithmetic against float64 numpy on random tensors.

Bounds (docs/number-format.md derives them):
- Gemm forward and dX: inputs are exact (q * 2^e), the int32 sum is exact, and only the final
  requantization rounds. SR moves each element by less than one output ulp 2^e_out, and
  max|acc| >= 2^(s+6) makes that ulp at most max|ref| / 64.
- dW and dB: summed exactly in int64, so they equal the float64 reference exactly.
- Relu backward: a mask, exact.
- Softmax cross-entropy: probabilities carry < 2e-6 absolute error (exp2 polynomial 5e-9,
  Q16 exponent rounding 2^-17 * ln2 relative); the int8 gradient adds < 1 ulp.
- Unbiasedness: over S seeds the SR mean of an element sits within 5 * (ulp/2) / sqrt(S) of
  the reference (SR variance is at most ulp^2 / 4). The number format clamps to +-127, so an
  element above 127 ulps (only possible within 1/128 of the tensor's max) is biased by < 1 ulp;
  those are checked against that bound instead.
"""
import numpy as np
import pytest

from intedge import iem
from intedge._ffi import ffi, lib
from intedge.runtime import Model, NumberFormat


def p(a, t):
    return ffi.from_buffer(t + "[]", a)


def rand_q8(rng, *shape):
    return rng.integers(-127, 128, size=shape, dtype=np.int8)


def gemm_forward(x, ex, w, ew, bias=None, eb=0, seed=0, nearest=0):
    n, k = x.shape
    m = w.shape[0]
    y = np.empty((n, m), np.int8)
    b = p(bias, "int32_t") if bias is not None else ffi.NULL
    e = lib.ie_test_gemm_forward(n, m, k, p(x, "int8_t"), ex, p(w, "int8_t"), ew, b, eb, seed, nearest, p(y, "int8_t"))
    return y, e


def gemm_dx(dy, edy, w, ew, seed=0):
    n, m = dy.shape
    k = w.shape[1]
    dx = np.empty((n, k), np.int8)
    e = lib.ie_test_gemm_backward_dx(n, m, k, p(dy, "int8_t"), edy, p(w, "int8_t"), ew, seed, p(dx, "int8_t"))
    return dx, e


def assert_unbiased(mean, ref, ulp, seeds, slack=0.0):
    inside = np.abs(ref) <= 127 * ulp
    assert inside.mean() > 0.9
    assert np.abs(mean - ref)[inside].max() < 5 * (ulp / 2) / np.sqrt(seeds) + slack
    assert np.all(np.abs(mean - ref)[~inside] < ulp)


SHAPES = [(1, 1, 1), (3, 5, 17), (32, 10, 64), (17, 255, 3), (64, 128, 33)]


@pytest.mark.parametrize("n,m,k", SHAPES)
def test_gemm_forward_within_one_ulp(rng, n, m, k):
    x, w = rand_q8(rng, n, k), rand_q8(rng, m, k)
    bias = rng.integers(-(1 << 29), 1 << 29, size=m, dtype=np.int32)
    ex, ew, eb = -7, -9, -34
    ref = (x.astype(np.float64) * 2.0**ex) @ (w.astype(np.float64) * 2.0**ew).T + bias * 2.0**eb
    y, ey = gemm_forward(x, ex, w, ew, bias, eb, seed=3)
    assert y.min() >= -127
    err = np.abs(y * 2.0**ey - ref)
    assert err.max() < 2.0**ey
    assert 2.0**ey <= np.abs(ref).max() / 64 + 1e-300


@pytest.mark.parametrize("n,m,k", SHAPES)
def test_gemm_backward_dx_within_one_ulp(rng, n, m, k):
    dy, w = rand_q8(rng, n, m), rand_q8(rng, m, k)
    ref = (dy * 2.0**-20) @ (w * 2.0**-8)
    dx, e = gemm_dx(dy, -20, w, -8, seed=5)
    assert np.abs(dx * 2.0**e - ref).max() < 2.0**e
    assert 2.0**e <= np.abs(ref).max() / 64


@pytest.mark.parametrize("n,m,k", SHAPES)
@pytest.mark.parametrize("w_is_mk", [1, 0])
def test_gemm_backward_dw_db_exact(rng, n, m, k, w_is_mk):
    dy, x = rand_q8(rng, n, m), rand_q8(rng, n, k)
    dw = np.empty((m, k) if w_is_mk else (k, m), np.int64)
    e = lib.ie_test_gemm_backward_dw(n, m, k, p(dy, "int8_t"), -11, p(x, "int8_t"), -6, w_is_mk, p(dw, "int64_t"))
    ref = (dy.astype(np.float64) * 2.0**-11).T @ (x.astype(np.float64) * 2.0**-6)
    np.testing.assert_array_equal(dw * 2.0**e, ref if w_is_mk else ref.T)
    db = np.empty(m, np.int64)
    e = lib.ie_test_gemm_backward_db(n, m, p(dy, "int8_t"), -11, p(db, "int64_t"))
    np.testing.assert_array_equal(db * 2.0**e, (dy.astype(np.float64) * 2.0**-11).sum(axis=0))


def test_gemm_dw_long_reduction_is_exact():
    """More than 2^17 terms: int32 would overflow, the int64 path must not."""
    n = (1 << 17) + 3
    dy = np.full((n, 1), 127, np.int8)
    x = np.full((n, 2), -127, np.int8)
    dw = np.empty((1, 2), np.int64)
    lib.ie_test_gemm_backward_dw(n, 1, 2, p(dy, "int8_t"), 0, p(x, "int8_t"), 0, 1, p(dw, "int64_t"))
    assert dw[0, 0] == -127 * 127 * n


def test_gemm_backward_unbiased_over_seeds(rng):
    dy, w = rand_q8(rng, 8, 16), rand_q8(rng, 16, 12)
    ref = (dy * 2.0**-10) @ (w * 2.0**-7)
    seeds = 400
    outs = []
    for s in range(seeds):
        dx, e = gemm_dx(dy, -10, w, -7, seed=s)
        outs.append(dx * 2.0**e)
    assert_unbiased(np.mean(outs, axis=0), ref, 2.0**e, seeds)
    # and a single draw really is stochastic: the seeds disagree somewhere
    assert np.ptp(np.stack(outs), axis=0).max() > 0


def test_gemm_forward_nearest_is_deterministic(rng):
    x, w = rand_q8(rng, 4, 9), rand_q8(rng, 6, 9)
    a = gemm_forward(x, -7, w, -7, seed=1, nearest=1)
    b = gemm_forward(x, -7, w, -7, seed=2, nearest=1)
    np.testing.assert_array_equal(a[0], b[0])
    ref = (x.astype(np.float64) @ w.T.astype(np.float64)) * 2.0**-14
    assert np.abs(a[0] * 2.0**a[1] - ref).max() <= 2.0**a[1] / 2


def test_relu_backward_is_a_mask(rng):
    y = np.maximum(rand_q8(rng, 300), 0).astype(np.int8)
    dy = rand_q8(rng, 300)
    dx = np.empty(300, np.int8)
    lib.ie_test_relu_backward(300, p(y, "int8_t"), p(dy, "int8_t"), p(dx, "int8_t"))
    np.testing.assert_array_equal(dx, np.where(y > 0, dy, 0))


def softmax_ce(z, ez, labels, seed=0):
    n, c = z.shape
    grad = np.empty((n, c), np.int8)
    ge, loss, correct = ffi.new("int32_t *"), ffi.new("int64_t *"), ffi.new("uint32_t *")
    lab = np.ascontiguousarray(labels, np.int32)
    st = lib.ie_test_softmax_ce(n, c, p(z, "int8_t"), ez, p(lab, "int32_t"), seed, p(grad, "int8_t"), ge, loss, correct)
    return st, grad, ge[0], loss[0] / 65536.0, correct[0]


@pytest.mark.parametrize("ez", [-7, -4, -2, 0])
def test_softmax_cross_entropy_against_float64(rng, ez):
    n, c = 32, 10
    z = rand_q8(rng, n, c)
    y = rng.integers(0, c, n)
    zf = z * 2.0**ez
    zs = zf - zf.max(axis=1, keepdims=True)
    prob = np.exp(zs) / np.exp(zs).sum(axis=1, keepdims=True)
    loss_ref = -np.log(prob[np.arange(n), y]).sum()
    g_ref = prob.copy()
    g_ref[np.arange(n), y] -= 1
    g_ref /= n
    st, g, ge, loss, correct = softmax_ce(z, ez, y, seed=9)
    assert st == lib.IE_OK
    assert abs(loss - loss_ref) < 1e-4 * n
    assert correct == int((z.argmax(axis=1) == y).sum())
    assert np.abs(g * 2.0**ge - g_ref).max() < 2.0**ge + 2e-6 / n


def test_softmax_gradient_unbiased(rng):
    z = rand_q8(rng, 4, 5)
    y = np.array([0, 1, 2, 3])
    zf = z * 2.0**-5
    prob = np.exp(zf - zf.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    ref = prob.copy()
    ref[np.arange(4), y] -= 1
    ref /= 4
    runs = [softmax_ce(z, -5, y, seed=s) for s in range(400)]
    assert len({r[2] for r in runs}) == 1  # the exponent depends on max|grad| only
    assert_unbiased(np.mean([r[1] * 2.0**r[2] for r in runs], axis=0), ref, 2.0 ** runs[0][2], 400, slack=2e-6)


@pytest.mark.parametrize("ez", [9, 10, 14, 20, 60])
def test_softmax_loss_saturates_on_huge_logits(ez):
    """Logits at exponent 9 and up put the gap of 103 past 2^-65536: the wrong label costs
    65536 ln 2 nats (the cap), a label tied with one other maximum ln 2, and nothing overflows.
    (Exponents 9..14 once escaped the cap: tools/fuzz/fuzz_model found the signed overflow.)"""
    z = np.array([[100, -3, 5], [7, 9, 9]], np.int8)
    st, g, ge, loss, correct = softmax_ce(z, ez, [1, 1])
    assert st == lib.IE_OK and correct == 1
    assert loss == pytest.approx(65537 * np.log(2), rel=1e-9)
    assert np.array_equal(g, softmax_ce(z, 60, [1, 1])[1])  # the gradient never saw the cap


def test_softmax_rejects_bad_label(rng):
    st, *_ = softmax_ce(rand_q8(rng, 2, 3), 0, [0, 3])
    assert st == lib.IE_ERR_VALUE


def test_exp2_and_log2_fixed_point():
    t = np.arange(0, 31 << 16, 977, dtype=np.int64)
    got = np.array([lib.ie_test_exp2_neg_q16(int(v)) for v in t], dtype=np.float64) / 2.0**30
    ref = 2.0 ** (-t / 65536.0)
    assert np.all(np.abs(got - ref) <= 1e-8 * ref + 2.0**-30)
    xs = [1, 2, 3, 10, 12345, 2**30, 2**40 + 7, 2**62 + 12345]
    for x in xs:
        assert abs(lib.ie_test_log2_q16(x) / 65536.0 - np.log2(float(x))) < 2.0**-15


def test_log2_is_its_bit_by_bit_definition(rng):
    """ie_log2_q16 is exactly the repeated squaring it states (the loss's value, in every digest):
    the mantissa in Q30, squared and rounded half up 16 times, each time a bit when it passes 2."""
    def log2_q16(x):
        k = x.bit_length() - 1
        y, r = x >> (k - 30) if k > 30 else x << (30 - k), k << 16
        for b in range(15, -1, -1):
            y = (y * y + (1 << 29)) >> 30
            if y >= 2 << 30:
                y, r = y >> 1, r | 1 << b
        return r
    xs = [1, 2, 3, (1 << 31) - 1, 1 << 31, (1 << 62) + 5] + [int(v) for v in rng.integers(1 << 30, 11 << 30, 3000)]
    assert [lib.ie_test_log2_q16(x) for x in xs] == [log2_q16(x) for x in xs]


def test_float_boundary_round_trip(rng):
    v = (rng.standard_normal(1000) * np.exp2(rng.integers(-20, 20, 1000))).astype(np.float32)
    bits = v.view(np.uint32).copy()
    out = np.empty(1000, np.int32)
    e = ffi.new("int32_t *")
    assert lib.ie_test_f32_to_fixed(p(bits, "uint32_t"), 1000, 29, 0, 1, p(out, "int32_t"), e) == lib.IE_OK
    # with 29 bits, elements within 2^5 of the max keep all 24 mantissa bits
    back = np.array([lib.ie_test_fixed_to_f32(int(m), e[0]) for m in out], np.uint32).view(np.float32)
    big = np.abs(v) >= np.abs(v).max() / 32
    np.testing.assert_array_equal(back[big], v[big])
    assert np.all(np.abs(back - v) <= 2.0 ** e[0])
    bits[3] = np.float32(np.nan).view(np.uint32)
    assert lib.ie_test_f32_to_fixed(p(bits, "uint32_t"), 1000, 29, 0, 1, p(out, "int32_t"), e) == lib.IE_ERR_VALUE


def test_keep_tensors_exposes_every_tensor_and_changes_no_byte(rng):
    """The op harness (op_harness.py): after a step driven by a chosen output gradient, a hidden
    tensor's data and gradient read back equal a float64 reference computed from the int8 values
    the ops read (within the one rounding each op adds); keep_tensors changes no training byte."""
    from intedge import iem
    from op_harness import Harness

    w1 = (rng.standard_normal((9, 12)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((5, 9)) * 0.3).astype(np.float32)
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (12,))
    g.add_tensor("w1", iem.KIND_PARAM, w1.shape, w1)
    g.add_tensor("w2", iem.KIND_PARAM, w2.shape, w2)
    for name, shape in (("h", (9,)), ("r", (9,)), ("y", (5,))):
        g.add_tensor(name, iem.KIND_ACTIVATION, shape)
    g.add_node("fc1", iem.OP_GEMM, ["x", "w1"], ["h"], [1])
    g.add_node("relu", iem.OP_RELU, ["h"], ["r"])
    g.add_node("fc2", iem.OP_GEMM, ["r", "w2"], ["y"], [1])
    g.output = g.index["y"]

    h = Harness(g, batch=7)
    x = rng.standard_normal((7, 12)).astype(np.float32)
    dy = rng.integers(-127, 128, (7, 5), dtype=np.int8)
    h.step(x, dy, -10)
    r, dr = h.value("r"), h.value("r", grad=True)
    hq, hq_e = h.tensor("h")
    np.testing.assert_array_equal(r, np.maximum(hq, 0) * 2.0**hq_e)  # Relu is exact
    dh, dh_e = h.tensor("h", grad=True)
    np.testing.assert_array_equal(dh * 2.0**dh_e, np.where(r > 0, dr, 0))  # and so is its backward
    # fc2's dX is one rounding of the exact dY . W8 (W8: the step's int8 view of the master)
    ref = (dy * 2.0**-10) @ w2.astype(np.float64)
    assert np.abs(dr - ref).max() < 2.0**h.tensor("r", grad=True)[1] + np.abs(ref).max() / 32

    # the same graph and seed trained with and without keep_tensors: the same bytes
    from intedge.runtime import Session
    labels = rng.integers(0, 5, 7)
    digests = []
    for keep in (False, True):
        s = Session(h.model, batch_size=7, lr=0.1, momentum=0.9, seed=3, keep_tensors=keep)
        for _ in range(3):
            s.step(x, labels=labels)
        digests.append(s.digest())
    assert digests[0] == digests[1]


def conv_batchnorm(w, side):
    """x [cin, side, side] -> Conv (w, 'same' padding) -> c -> BatchNormalization (gamma 1, beta 0,
    eps 2^-20, momentum 0.875) -> y, the graph output."""
    from intedge import iem
    cout, cin, k, _ = w.shape
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (cin, side, side))
    g.add_tensor("w", iem.KIND_PARAM, w.shape, w.astype(np.float32))
    for name, value, state in (("gamma", 1.0, False), ("beta", 0.0, False), ("mean", 0.0, True), ("var", 1.0, True)):
        g.add_tensor(name, iem.KIND_PARAM, (cout,), np.full(cout, value, np.float32), state=state)
    for name in ("c", "y"):
        g.add_tensor(name, iem.KIND_ACTIVATION, (cout, side, side))
    p = k // 2
    g.add_node("conv", iem.OP_CONV, ["x", "w"], ["c"], [1, k, k, 1, 1, 1, 1, p, p, p, p])
    g.add_node("bn", iem.OP_BATCHNORM, ["c", "gamma", "beta", "mean", "var"], ["y"], [1, -20, 7, -3])
    g.output = g.index["y"]
    return g


WIDE_BN = {"bn_input_bits": 16}


def running_var(h):
    """BatchNorm's batch variance (unbiased) as its running var recorded it after one step from 1."""
    return (h.master("var") - 0.875) / 0.125  # running = 0.875 running + 0.125 unbiased batch var


def unbiased(var, count):
    return var.ravel() * count / (count - 1)


def test_batchnorm_reads_its_convs_output_at_16_bits(rng):
    """With bn_input_bits 16, a Conv whose one reader is a training-mode BatchNormalization hands it
    int16 values (ie_tensor_is_q16), so a channel whose spread is small next to the tensor's largest
    values keeps its statistics. Channel 1 is x, channel 0 is 100 x (integers: every sum is exact). On the int8 grid
    (ulp 128 for a max of 12,700) channel 1's batch variance came out about 50% too large and its
    normalized output and gradient were noise; at 16 bits the Conv's sums arrive exactly."""
    from op_harness import Harness, within_ulps
    n, side = 8, 8
    g = conv_batchnorm(np.array([100.0, 1.0]).reshape(2, 1, 1, 1), side)
    x = rng.integers(-127, 128, (n, 1, side, side)).astype(np.float32)
    x.reshape(-1)[0] = 127  # the input's exponent is 0: x is exact on its int8 grid
    lr = 2.0**-10
    h = Harness(g, batch=n, lr=lr, number_format=NumberFormat(**WIDE_BN))
    dy = rng.integers(-127, 128, (n, 2, side, side), dtype=np.int8)
    h.step(x, dy, -10)
    c = np.concatenate([100 * x, x], axis=1).astype(np.float64)
    mu, var = c.mean(axis=(0, 2, 3), keepdims=True), c.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(running_var(h), unbiased(var, n * side * side), rtol=1e-3)
    xhat = (c - mu) / np.sqrt(var + 2.0**-20)
    within_ulps(h.value("y"), xhat, h.tensor("y")[1])
    d = dy * 2.0**-10  # BatchNorm's input gradient, float64 on the exact Conv output
    dc = (d - d.mean(axis=(0, 2, 3), keepdims=True) - xhat * (d * xhat).mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(var + 2.0**-20)
    dce = h.tensor("c", grad=True)[1]
    within_ulps(h.value("c", grad=True), dc, dce, ulps=1.0, slack=2.0**dce)
    dgamma = (1 - h.master("gamma")) / lr  # plain SGD from gamma = 1
    np.testing.assert_allclose(dgamma, (d * xhat).sum(axis=(0, 2, 3)), rtol=1e-3)


def test_wide_conv_batchnorm_is_bit_exact_over_tiers_and_threads(rng):
    """The int16 hand-over (the Conv's rounding, BatchNorm's sums, map and backward, training and
    evaluation) gives the same bytes on every kernel tier with 1 and 2 threads, on tensors large
    enough to split over the pool (2^15 elements) and sums long enough to need rounding to 16 bits."""
    from op_harness import digests_over_tiers_and_threads
    n, side = 16, 16
    g = conv_batchnorm(rng.uniform(-1, 1, (8, 16, 3, 3)), side)  # sums up to about 2^18 of int8 units
    x = rng.uniform(-1, 1, (n, 16, side, side)).astype(np.float32)
    runs = digests_over_tiers_and_threads(g, x, rng.integers(0, 8 * side * side, n),
                                          number_format=NumberFormat(**WIDE_BN))
    assert len(set(runs.values())) == 1, runs


def test_batchnorm_reads_int8_by_default(rng):
    """By default (bn_input_bits 8) the Conv hands BatchNorm the number format's int8: no int16
    tensor in the plan (the arena is smaller by the Conv's output, at least), and the narrow
    channel of test_batchnorm_reads_its_convs_output_at_16_bits reads int8 rounding noise: its
    batch variance comes out well off, where 16 bits give it within 0.1%."""
    from op_harness import Harness
    n, side = 8, 8
    g = conv_batchnorm(np.array([100.0, 1.0]).reshape(2, 1, 1, 1), side)
    model = Model(iem.serialize(g))
    extra = model.arena_size(n, number_format=NumberFormat(**WIDE_BN)) - model.arena_size(n)
    assert extra >= n * 2 * side * side  # c's int8 bytes, held again as int16
    x = rng.integers(-127, 128, (n, 1, side, side)).astype(np.float32)
    h = Harness(g, batch=n, lr=2.0**-10)
    h.step(x, rng.integers(-127, 128, (n, 2, side, side), dtype=np.int8), -10)
    c = np.concatenate([100 * x, x], axis=1).astype(np.float64)
    exact = unbiased(c.var(axis=(0, 2, 3)), n * side * side)
    got = running_var(h)
    np.testing.assert_allclose(got[0], exact[0], rtol=1e-2)  # the wide channel is fine on int8
    assert abs(got[1] / exact[1] - 1) > 0.1  # the narrow one reads int8's noise


def test_relu_after_batchnorm_masks_by_the_unrounded_sign():
    """Relu's backward after a training-mode BatchNormalization passes dy where the BatchNorm output
    was > 0 before its rounding (recomputed in float64 here from the int8 input it read), not
    where its rounded output is: a channel's bulk sits at 0.03, half an ulp above 0 under its
    outliers, and rounds to 0 about half the time; the rounded mask would drop that half."""
    from intedge import iem
    from op_harness import Harness
    c, side, n = 3, 8, 4
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (c, side, side))
    for name, value, state in (("gamma", 1.0, False), ("beta", -0.2, False), ("mean", 0.0, True), ("var", 1.0, True)):
        g.add_tensor(name, iem.KIND_PARAM, (c,), np.full(c, value, np.float32), state=state)
    for name in ("y", "r"):
        g.add_tensor(name, iem.KIND_ACTIVATION, (c, side, side))
    g.add_node("bn", iem.OP_BATCHNORM, ["x", "gamma", "beta", "mean", "var"], ["y"], [1, -20, 7, -3])  # eps 2^-20, momentum 0.875
    g.add_node("relu", iem.OP_RELU, ["y"], ["r"])
    g.output = g.index["r"]
    x = np.zeros((n, c, side, side), np.float32)
    x.reshape(-1)[::20] = -8.0  # outliers below a bulk of zeros: the bulk normalizes to about +0.23
    h = Harness(g, batch=n)
    dy = np.full((n, c, side, side), 5, np.int8)
    h.step(x, dy, -10)
    xq, xe = h.tensor("x")
    v = xq.astype(np.float64) * 2.0**xe
    mu, var = v.mean(axis=(0, 2, 3), keepdims=True), v.var(axis=(0, 2, 3), keepdims=True)
    unrounded = (v - mu) / np.sqrt(var + 2.0**-20) - 0.2
    yq = h.tensor("y")[0]
    assert ((yq == 0) & (unrounded > 0)).mean() > 0.3  # the case guarded: rounded to 0 from above
    dyq, dye = h.tensor("r", grad=True)
    dx, dxe = h.tensor("y", grad=True)
    assert dxe == dye
    np.testing.assert_array_equal(dx, np.where(unrounded > 0, dyq, 0))
