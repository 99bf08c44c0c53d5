"""Softmax in the graph (ops/softmax.c) against float64 PyTorch autograd, in a training step driven
by a chosen int8 output gradient (op_harness.py), on the int8 values the op read. A masked element
is compared with an additive -inf mask; a row with every element masked with zeros (where PyTorch
gives NaN).

Bounds (docs/number-format.md): y within one ulp (its SR) plus 2e-6 (the exp2 and the Q16 gaps).
The backward works from the saved int8 y: dX is within one ulp of y (dy - sum(dy y)) on those y,
and within one ulp plus u_y (|dy_j| + |sum(dy p)| + y_j sum|dy|) of autograd's (u_y: y's ulp,
which the int8 y carries into the backward). Measured over these cases and 20 seeds
(`python tools/op_errors.py`): y within 1.0 ulp, dX within 0.995 ulp of the formula on the int8
y, and against autograd at most 0.75 of that allowance beyond the ulp."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge.errors import IntedgeError
from intedge.runtime import Model, NumberFormat
from op_harness import Harness, digests_over_tiers_and_threads, gemm_upstream, within_ulps

KEEPS_NONZERO = iem.SOFTMAX_MASK_KEEPS_NONZERO


def causal(t, dead_row=None):
    m = np.triu(np.ones((t, t), np.float32), 1)  # 1 = masked: a query sees keys up to itself
    if dead_row is not None:
        m[dead_row] = 1
    return m


# name: per-sample shape, axis, constant mask (or None), its offset, flags
CASES = {
    "one": ((1,), 0, None, 0, 0),
    "three": ((3,), 0, None, 0, 0),
    "seventeen": ((17,), 0, None, 0, 0),
    "wide": ((768,), 0, None, 0, 0),
    "first-axis": ((4, 3), 0, None, 0, 0),
    "causal-dead-row": ((2, 5, 5), 2, causal(5, dead_row=2), 1, 0),
    "middle-axis-dead-head": ((2, 5, 7), 1, np.array([0, 1], np.float32).reshape(2, 1, 1) * np.ones((2, 5, 1), np.float32), 0, 0),
    "keys-kept-where-nonzero": ((3, 4, 6), 2, np.array([1, 1, 0, 1, 0, 1], np.float32), 2, KEEPS_NONZERO),
}


def softmax_graph(shape, axis, mask, offset, flags, rng):
    g = iem.Graph()
    k = gemm_upstream(g, shape, rng)
    ins = ["h"]
    if mask is not None:
        g.add_tensor("mask", iem.KIND_PARAM, mask.shape, mask, state=True)
        ins.append("mask")
    g.add_tensor("y", iem.KIND_ACTIVATION, shape)
    g.add_node("softmax", iem.OP_SOFTMAX, ins, ["y"], [axis, offset, flags])
    g.output = g.index["y"]
    return g, k


def out_mask(shape, mask, offset, flags):
    """Boolean [*shape]: True where the element is masked."""
    if mask is None:
        return np.zeros(shape, bool)
    m = mask.reshape((1,) * offset + mask.shape + (1,) * (len(shape) - offset - mask.ndim)) != 0
    return np.broadcast_to(m != bool(flags & KEEPS_NONZERO), shape)


def reference(hv, masked, axis, dy):
    """Softmax with -inf at masked elements (fully masked rows: 0), and its autograd dX."""
    t = torch.tensor(hv, requires_grad=True)
    p = torch.softmax(t.masked_fill(torch.tensor(masked), float("-inf")), dim=axis + 1)
    p = torch.nan_to_num(p, nan=0.0)
    p.backward(torch.tensor(dy))
    return p.detach().numpy(), torch.nan_to_num(t.grad, nan=0.0).numpy()


def check_step(h, shape, axis, masked, dy, edy):
    """Forward and backward of the step just run against float64; returns the errors in ulps."""
    y_ref, dx_ref = reference(h.value("h"), masked, axis, dy * 2.0**edy)
    y, ye = h.tensor("y")
    yv = y * 2.0**ye
    errs = [within_ulps(yv, y_ref, ye, slack=2e-6)]
    assert np.all(y[np.broadcast_to(masked, y.shape)] == 0)
    dx, dxe = h.tensor("h", grad=True)
    dxv = dx * 2.0**dxe
    assert np.all(dx[np.broadcast_to(masked, dx.shape)] == 0)
    # the integer formula on the saved int8 y: exact but for the final SR
    dyv = dy * 2.0**edy
    exact = yv * (dyv - (dyv * yv).sum(axis=axis + 1, keepdims=True))
    errs.append(within_ulps(dxv, exact, dxe))
    # against autograd: y's own rounding (at most one ulp u_y per element) propagates
    uy = 2.0**ye
    s_p = np.abs((dyv * y_ref).sum(axis=axis + 1, keepdims=True))
    allowance = uy * (np.abs(dyv) + s_p + yv * np.abs(dyv).sum(axis=axis + 1, keepdims=True))
    assert np.all(np.abs(dxv - dx_ref) <= 2.0**dxe + allowance + 1e-12)
    return errs


@pytest.mark.parametrize("name", sorted(CASES))
def test_softmax_against_autograd(name, rng):
    shape, axis, mask, offset, flags = CASES[name]
    g, k = softmax_graph(shape, axis, mask, offset, flags, rng)
    h = Harness(g, batch=3)
    x = (rng.standard_normal((3, k)) * 3).astype(np.float32)
    dy = rng.integers(-127, 128, (3, *shape), dtype=np.int8)
    h.step(x, dy, -8)
    check_step(h, shape, axis, out_mask(shape, mask, offset, flags), dy, -8)
    if name == "one":  # a single element: probability 1, no gradient
        assert np.all(h.value("y") == 1) and np.all(h.tensor("h", grad=True)[0] == 0)


def test_softmax_activation_mask_gets_no_gradient(rng):
    """The mask an activation (per sample [T], over heads and queries): masked where it is
    nonzero, here Relu of a trained Gemm; its gradient is zero, so that Gemm does not move."""
    shape = (2, 4, 6)
    g, k = softmax_graph(shape, 2, None, 0, 0, rng)
    wm = rng.standard_normal((6, k)).astype(np.float32)
    g.add_tensor("w_mask", iem.KIND_PARAM, wm.shape, wm)
    g.add_tensor("m_lin", iem.KIND_ACTIVATION, (6,))
    g.add_tensor("m", iem.KIND_ACTIVATION, (6,))
    softmax = g.nodes.pop()
    g.add_node("mask_fc", iem.OP_GEMM, ["x", "w_mask"], ["m_lin"], [1])
    g.add_node("mask_relu", iem.OP_RELU, ["m_lin"], ["m"])
    softmax.inputs.append(g.index["m"])
    softmax.attrs = [2, 2, 0]
    g.nodes.append(softmax)
    h = Harness(g, batch=8, lr=0.5)
    x = rng.standard_normal((8, k)).astype(np.float32)
    x[0] = np.linalg.solve(wm, np.ones(6))  # sample 0: every key masked (wm x > 0)
    x[0] *= 2 / np.abs(x[0]).max()
    dy = rng.integers(-127, 128, (8, *shape), dtype=np.int8)
    h.step(x, dy, -8)
    mq = h.tensor("m")[0]
    assert np.all(mq[0] != 0) and 0 < np.count_nonzero(mq) < mq.size
    check_step(h, shape, 2, (mq != 0)[:, None, None, :], dy, -8)
    assert np.all(h.tensor("m", grad=True)[0] == 0)
    np.testing.assert_array_equal(h.master("w_mask"), wm)


def test_softmax_evaluation_rounds_to_nearest(rng):
    """With the rounding option 'nearest' (evaluation rounds stochastically by default): within
    half an ulp, and the same bytes for every seed."""
    shape, axis, mask, offset, flags = CASES["causal-dead-row"]
    g, k = softmax_graph(shape, axis, mask, offset, flags, rng)
    x = (rng.standard_normal((4, k)) * 3).astype(np.float32)
    nearest = NumberFormat(rounding="nearest")
    h = Harness(g, batch=4, number_format=nearest)
    out = h.forward(x)
    y_ref = reference(h.value("h"), out_mask(shape, mask, offset, flags), axis, np.zeros((4, *shape)))[0]
    y, ye = h.tensor("y")
    within_ulps(y * 2.0**ye, y_ref, ye, ulps=0.5, slack=2e-6)
    np.testing.assert_array_equal(out, Harness(g, batch=4, seed=9, number_format=nearest).forward(x))


def test_softmax_bit_exact_over_tiers_and_threads(rng):
    shape, axis, mask, offset, flags = CASES["causal-dead-row"]
    g, k = softmax_graph(shape, axis, mask, offset, flags, rng)
    x = (rng.standard_normal((16, k)) * 3).astype(np.float32)
    runs = digests_over_tiers_and_threads(g, x, rng.integers(0, 50, 16))
    assert len(set(runs.values())) == 1, runs.keys()


def test_softmax_refuses_bad_masks(rng):
    g, _ = softmax_graph((2, 5, 5), 2, causal(5), 1, 0, rng)
    g.tensors[g.index["mask"]].state = False
    with pytest.raises(IntedgeError, match="constant mask must be marked as state"):
        Model(iem.serialize(g))
    g, _ = softmax_graph((2, 5, 5), 2, np.ones((3, 5), np.float32), 1, 0, rng)
    with pytest.raises(IntedgeError, match="does not broadcast"):
        Model(iem.serialize(g))
    g, _ = softmax_graph((2, 5, 5), 2, causal(5), 2, 0, rng)
    with pytest.raises(IntedgeError, match="do not fit"):
        Model(iem.serialize(g))
