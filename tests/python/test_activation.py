"""The smooth activations (ops/activation.c): GELU (erf and tanh forms), Tanh, Erf, Sqrt,
Reciprocal and Pow. Each tabulates f and f' at the 256 int8 inputs of the call's input exponent
with integer elementary functions (ops/smooth.c), so the tables are compared with float64 over all
255 inputs at exponents -12..3, then the op in a session with float64 autograd.

Measured (this file's tables test, over kinds and exponents): |table - f| <= 5.6e-9 max|f| and,
above 2^-50 max|f|, <= 1.1e-6 |f| (GELU's far negative tail, where e^(-x^2/2) carries the
rounding of x^2 log2(e)); the asserted bound is 2^-18 |f| + 2^-26 max|f|. In a session the op adds
one stochastic rounding: y and dX are within one output ulp (plus that table error)."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge._ffi import ffi, lib
from intedge.errors import IntedgeError
from intedge.runtime import Model, dyadic
from op_harness import Harness, gemm_upstream, within_ulps

# kind, Pow's exponent, the float64 function (torch, differentiable)
SMOOTH = {
    "gelu": (iem.ACT_GELU, None, torch.nn.functional.gelu),
    "gelu_tanh": (iem.ACT_GELU_TANH, None, lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
    "tanh": (iem.ACT_TANH, None, torch.tanh),
    "erf": (iem.ACT_ERF, None, torch.erf),
    "sqrt": (iem.ACT_SQRT, None, lambda t: t.clamp(min=0) ** 0.5),
    "reciprocal": (iem.ACT_RECIPROCAL, None, lambda t: 1 / t),
    "pow2": (iem.ACT_POW, 2.0, lambda t: t**2),
    "pow3": (iem.ACT_POW, 3.0, lambda t: t**3),
    "pow0.5": (iem.ACT_POW, 0.5, lambda t: t.clamp(min=0) ** 0.5),
    "pow-0.5": (iem.ACT_POW, -0.5, lambda t: t.clamp(min=0) ** -0.5),
    "pow-1": (iem.ACT_POW, -1.0, lambda t: 1 / t),
}


def dyadic_call(fn, a, b=1.0):
    def dy(v):
        m, e = np.frexp(v)
        d = ffi.new("ie_dyadic *")
        d.m, d.e = int(round(m * 2**31)), int(e) - 31
        return d[0]
    r = lib.ie_test_dyadic(fn.encode(), dy(a), dy(b))
    return r.m * 2.0**r.e


def test_dyadic_elementary_functions():
    """The dyadic elementary functions (ops/smooth.c) against math (float64): exp with a relative error of at most 2^-31 |x| + 1e-8
    (the rounding of x log2(e)), and erfc with its relative precision in the tail (the continued
    fraction from 2 on), where 1 - erf would lose it."""
    import math
    for x in (1e-9, 1e-4, 0.01, 0.3, 0.5, 0.7, 1, 1.5, 1.99, 2, 2.4, 3, 5, 10, 20, 26):
        assert abs(dyadic_call("exp", -x * x) / math.exp(-x * x) - 1) <= 2.0**-31 * x * x + 1e-8
        assert abs(dyadic_call("expm1", -x) / math.expm1(-x) - 1) <= 1e-8
        assert abs(dyadic_call("erf", x) / math.erf(x) - 1) <= 1e-8
        assert abs(dyadic_call("erf", -x) / math.erf(-x) - 1) <= 1e-8
        assert abs(dyadic_call("erfc", x) / math.erfc(x) - 1) <= 2.0**-31 * x * x + 1e-7
        assert abs(dyadic_call("sqrt", x) / math.sqrt(x) - 1) <= 2.0**-29
        assert abs(dyadic_call("rsqrt", x) * math.sqrt(x) - 1) <= 2.0**-29
        assert abs(dyadic_call("div", 1.0, x) * x - 1) <= 2.0**-29
    assert dyadic_call("erfc", -1.0) == pytest.approx(math.erfc(-1.0), rel=1e-8)
    assert dyadic_call("exp2", 3.25) == pytest.approx(2**3.25, rel=1e-8)
    assert dyadic_call("sqrt", -1.0) == 0 and dyadic_call("div", 1.0, 0.0) == 0


def attrs_of(kind, p):
    attrs = np.zeros(16, np.int32)
    attrs[0] = kind
    if p is not None:
        d = dyadic(p)
        attrs[1], attrs[2] = d.m, d.e
    return attrs


def table(kind, p, ex, slope):
    """f (slope 0) or f' (slope 1) at q = -127..127 (q 2^ex) as float64."""
    tab = np.empty(256, np.int64)
    e = lib.ie_test_activation_table(ffi.from_buffer("int32_t[]", attrs_of(kind, p)), ex, slope,
                                     ffi.from_buffer("int64_t[]", tab))
    return tab[1:].astype(np.float64) * 2.0**e


def reference(fn, x):
    """f(x) and f'(x) by float64 autograd, with the runtime's definitions where f has none: Sqrt and
    half-integer powers are 0 (slope 0) below 0, negative powers are 0 (slope 0) at 0, and the
    slope of a root at 0 is 0."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    f, d = y.detach().numpy().copy(), t.grad.numpy().copy()
    undefined = ~np.isfinite(f) | ~np.isfinite(d)
    f[undefined] = 0.0
    d[undefined] = 0.0
    return f, d


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_tables_match_float64(name):
    kind, p, fn = SMOOTH[name]
    q = np.arange(-127, 128)
    for ex in range(-12, 4):
        ref = reference(fn, q * 2.0**ex)
        for slope in (0, 1):
            got, want = table(kind, p, ex, slope), ref[slope]
            bound = 2.0**-18 * np.abs(want) + 2.0**-26 * np.abs(want).max()
            assert np.all(np.abs(got - want) <= bound), (name, ex, slope, np.abs(got - want).max())


def test_smooth_definitions_where_the_function_has_none():
    q = np.arange(-127, 128)
    for kind, p in ((iem.ACT_SQRT, None), (iem.ACT_POW, 0.5), (iem.ACT_POW, -0.5), (iem.ACT_POW, 1.5)):
        for slope in (0, 1):
            got = table(kind, p, -4, slope)
            assert np.all(got[q < 0] == 0) and np.all(got[q > 0] != 0)
            if slope or (p is not None and p < 0):
                assert got[q == 0][0] == 0  # 1/sqrt(0) := 0, sqrt'(0) := 0
    for kind, p in ((iem.ACT_RECIPROCAL, None), (iem.ACT_POW, -1.0)):
        assert table(kind, p, -3, 0)[127] == 0 and table(kind, p, -3, 1)[127] == 0  # 1/0 := 0
    assert table(iem.ACT_POW, 3.0, -2, 0)[0] == -(127 * 0.25) ** 3  # odd integer powers keep the sign


def test_pow_exponent_must_be_a_half_integer():
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (4,))
    g.add_tensor("y", iem.KIND_ACTIVATION, (4,))
    g.add_node("pow", iem.OP_ACTIVATION, ["x"], ["y"], list(attrs_of(iem.ACT_POW, 0.3))[:6])
    g.output = g.index["y"]
    with pytest.raises(IntedgeError, match="exponent of Pow must be a multiple of 1/2"):
        Model(iem.serialize(g))


def smooth_graph(kind, p, width, rng):
    g = iem.Graph()
    k = gemm_upstream(g, (width,), rng)
    g.add_tensor("y", iem.KIND_ACTIVATION, (width,))
    g.add_node("act", iem.OP_ACTIVATION, ["h"], ["y"], list(attrs_of(kind, p))[:6])
    g.output = g.index["y"]
    return g, k


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_activation_in_a_session_against_autograd(name, rng):
    """Forward and backward of the op in a training step, against float64 autograd on the int8
    values the op read: each within one ulp of its int8 result (plus the table's error)."""
    kind, p, fn = SMOOTH[name]
    g, k = smooth_graph(kind, p, 33, rng)
    h = Harness(g, batch=5)
    x = rng.standard_normal((5, k)).astype(np.float32) * 2
    dy = rng.integers(-127, 128, (5, 33), dtype=np.int8)
    h.step(x, dy, -9)
    hv = h.value("h")
    f, d = reference(fn, hv)
    y, ye = h.tensor("y")
    within_ulps(y * 2.0**ye, f, ye, slack=1e-6 * np.abs(f).max())
    dh, dhe = h.tensor("h", grad=True)
    ref = dy * 2.0**-9 * d
    within_ulps(dh * 2.0**dhe, ref, dhe, slack=1e-6 * np.abs(ref).max())
    assert np.abs(y).max() >= 64 and np.abs(dh).max() >= 64  # the ulp is at most max / 64


def clip_attrs(lo, hi):
    """Clip's attrs: p0 = min, p1 = max (None: that side unbounded), flags bit 0 / bit 1."""
    attrs = np.zeros(16, np.int32)
    attrs[0] = iem.ACT_CLIP
    for slot, bound, flag in ((1, lo, 1), (3, hi, 2)):
        if bound is not None:
            d = dyadic(bound)
            attrs[slot], attrs[slot + 1] = d.m, d.e
            attrs[5] |= flag
    return attrs


def run_activation(attrs, ex, q, dy, seed, nearest, path):
    y = np.empty(len(q), np.int8)
    e = ffi.new("int32_t *")
    dyp = ffi.NULL if dy is None else ffi.from_buffer("int8_t[]", dy)
    assert lib.ie_test_activation(ffi.from_buffer("int32_t[]", attrs), ex, ffi.from_buffer("int8_t[]", q), dyp,
                                  len(q), seed, nearest, path, ffi.from_buffer("int8_t[]", y), e) == lib.IE_OK
    return y, e[0]


# (min, max): ReLU6 and ReLU, symmetric, one-sided, bounds at units far finer than x's (the shift
# then rounds some bound values, and x 2^k leaves 16 bits past 2^7), a bound beyond 16 bits
CLIPS = [(0.0, 6.0), (0.0, None), (-1.0, 1.0), (None, 0.75), (-3.0, 0.0), (5 * 2.0**-7, 6.0),
         (-0.3, 0.3), (0.0, 2.0**-9 * 3), (-2.0**20, 2.0**20)]


@pytest.mark.parametrize("lo,hi", CLIPS)
def test_clip_closed_forms_give_the_definitions_bytes(lo, hi):
    """Clip's 32-bit and 16-bit closed forms (activation.c) against its definition (the 256-entry
    tables, int64 rounding), forward and dX, both rounding modes, on odd lengths around the
    16-bit dX's blocks of 64, with inputs crowding the bounds (where dY slope rounds) and spread
    over the activations' range, +-127 (dY also -128, which takes the 16-bit dX to a shift of 2)."""
    rng = np.random.default_rng(7)
    attrs = clip_attrs(lo, hi)
    for ex in (-9, -5, -4, 0, 2):
        on_bounds = [v for v in (lo, hi) if v is not None and abs(v * 2.0**-ex) < 128 and (v * 2.0**-ex) % 1 == 0]
        for n in (0, 1, 65, 200, 1031):
            spread = rng.integers(-127, 128, n).astype(np.int8)
            crowd = rng.choice(np.array(on_bounds + [1, -1, 0, 127, -127], np.int8), n)
            for q in (spread, crowd):
                for dy in (None, rng.integers(-128, 128, n).astype(np.int8), rng.integers(-20, 21, n).astype(np.int8)):
                    for nearest in (0, 1):
                        want = run_activation(attrs, ex, q, dy, 11, nearest, 0)
                        for path in (1, 2):
                            got = run_activation(attrs, ex, q, dy, 11, nearest, path)
                            assert got[1] == want[1] and np.array_equal(got[0], want[0]), (ex, n, path, nearest, dy is None)
