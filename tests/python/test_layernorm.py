"""LayerNormalization (ops/layernorm.c) against float64 PyTorch autograd, in a training step
driven by a chosen int8 output gradient (op_harness.py), on the int8 values the op read.

Bounds (docs/number-format.md derives them): y and dX carry one SR each, so they land within one
output ulp of the exact values; the rest is the statistics' fixed point (the mean's 16 fraction
bits, r's 31 bits, xhat's 30, gamma's 31 - bitlen(D) in dX), allowed 2^-14 max|ref| beyond the
ulp. The parameter gradients reach the optimizer exact but for xhat's fixed point: with lr = 1
and no momentum, (w_before - w_after) matches autograd's dgamma within the bound dgamma_bound
derives, and dbeta = sum(dy) within the master's resolution. Measured over these cases and 20
seeds (`python tools/op_errors.py`): y within 0.9992 ulp and dX within 0.9965 ulp, nothing beyond
the ulp; dgamma within 1.8e-6 max|dgamma|, at most 0.3 of its bound."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge.errors import IntedgeError
from intedge.runtime import Model, NumberFormat, dyadic
from op_harness import Harness, digests_over_tiers_and_threads, gemm_upstream, within_ulps

# per-sample shape, per-sample axis: rows of 1, 3, 17 and BERT's 768; several trailing axes
CASES = [((1,), 0), ((3,), 0), ((17,), 0), ((768,), 0), ((3, 17), 1), ((4, 3, 5), 1), ((2, 3, 5), 0)]


def layernorm_graph(shape, axis, rng, bias=True, eps=1e-5):
    norm = shape[axis:]
    gamma = (1 + 0.3 * rng.standard_normal(norm)).astype(np.float32)
    beta = (0.2 * rng.standard_normal(norm)).astype(np.float32)
    g = iem.Graph()
    k = gemm_upstream(g, shape, rng)
    g.add_tensor("gamma", iem.KIND_PARAM, norm, gamma)
    inputs = ["h", "gamma"]
    if bias:
        g.add_tensor("beta", iem.KIND_PARAM, norm, beta)
        inputs.append("beta")
    g.add_tensor("y", iem.KIND_ACTIVATION, shape)
    e = dyadic(eps)
    g.add_node("ln", iem.OP_LAYERNORM, inputs, ["y"], [axis, e.m, e.e])
    g.output = g.index["y"]
    return g, k, gamma, beta if bias else None


def reference(hv, shape, axis, gamma, beta, dy, eps):
    t = torch.tensor(hv, requires_grad=True)
    gt = torch.tensor(gamma.astype(np.float64), requires_grad=True)
    bt = torch.tensor(beta.astype(np.float64), requires_grad=True) if beta is not None else None
    out = torch.nn.functional.layer_norm(t, shape[axis:], gt, bt, eps=eps)
    out.backward(torch.tensor(dy))
    return out.detach().numpy(), t.grad.numpy(), gt.grad.numpy(), bt.grad.numpy() if bt is not None else None


def dgamma_bound(h, shape, axis, dy, eps, gamma, dgamma):
    """dgamma = sum over rows of dy xhat is exact but for xhat: the mean's 16 fraction bits move
    it by up to r 2^(e_x - 17) (the rest, 2^-30, is far below); the optimizer adds the master's
    resolution, 2^-26 of the larger of gamma and its step."""
    hv = h.value("h")
    norm = tuple(range(1 + axis, 1 + len(shape)))
    r = 1 / np.sqrt(hv.var(axis=norm, keepdims=True) + eps)
    rows = tuple(range(1 + axis))
    mean_part = (np.abs(dy) * r).sum(axis=rows) * 2.0 ** (h.tensor("h")[1] - 17)
    return mean_part.max() + 2.0**-26 * max(np.abs(gamma).max(), np.abs(dgamma).max())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,axis", CASES)
def test_layernorm_against_autograd(shape, axis, bias, rng):
    eps = 1e-5
    g, k, gamma, beta = layernorm_graph(shape, axis, rng, bias, eps)
    h = Harness(g, batch=3, lr=1.0)
    x = rng.standard_normal((3, k)).astype(np.float32)
    dy = rng.integers(-127, 128, (3, *shape), dtype=np.int8)
    h.step(x, dy, -8)
    y_ref, dx_ref, dgamma, dbeta = reference(h.value("h"), shape, axis, gamma, beta, dy * 2.0**-8, eps)
    y, ye = h.tensor("y")
    within_ulps(y * 2.0**ye, y_ref, ye, slack=2.0**-14 * np.abs(y_ref).max())
    dx, dxe = h.tensor("h", grad=True)
    within_ulps(dx * 2.0**dxe, dx_ref, dxe, slack=2.0**-14 * np.abs(dx_ref).max())
    # the parameters moved by lr * gradient (lr = 1, no momentum)
    step = gamma.astype(np.float64) - h.master("gamma")
    assert np.abs(step - dgamma).max() <= dgamma_bound(h, shape, axis, dy * 2.0**-8, 1e-5, gamma, dgamma)
    if bias:
        step = beta.astype(np.float64) - h.master("beta")
        assert np.abs(step - dbeta).max() <= 2.0**-26 * max(np.abs(beta).max(), np.abs(dbeta).max())


def test_layernorm_evaluation_rounds_to_nearest(rng):
    """Evaluation with the rounding option 'nearest' (evaluation rounds stochastically by
    default, like training): the same arithmetic rounded to nearest, so within half an ulp (plus
    the statistics' fixed point) and the same bytes for every seed."""
    shape, axis = (5, 17), 1
    g, k, gamma, beta = layernorm_graph(shape, axis, rng)
    nearest = NumberFormat(rounding="nearest")
    h = Harness(g, batch=4, number_format=nearest)
    x = rng.standard_normal((4, k)).astype(np.float32)
    out = h.forward(x)
    y_ref = reference(h.value("h"), shape, axis, gamma, beta, np.zeros((4, *shape)), 1e-5)[0]
    y, ye = h.tensor("y")
    within_ulps(y * 2.0**ye, y_ref, ye, ulps=0.5, slack=2.0**-14 * np.abs(y_ref).max())
    np.testing.assert_array_equal(out, Harness(g, batch=4, seed=9, number_format=nearest).forward(x))


def test_layernorm_constant_rows_and_zero_epsilon(rng):
    """A row of equal values with eps = 0: y = beta and no gradient (PyTorch gives NaN there)."""
    shape = (2, 6)
    g, k, gamma, beta = layernorm_graph(shape, 1, rng, eps=0.0)
    g.tensors[g.index["w_up"]].data[6:] = 0  # the second row of h is all zeros
    h = Harness(g, batch=2, lr=1.0)
    h.step(rng.standard_normal((2, k)).astype(np.float32), rng.integers(-127, 128, (2, *shape), dtype=np.int8), -7)
    y = h.value("y")
    assert np.abs(y[:, 1] - beta).max() <= np.abs(y).max() / 64
    assert np.all(h.tensor("h", grad=True)[0][:, 1] == 0)
    assert np.any(h.tensor("h", grad=True)[0][:, 0] != 0)


def test_layernorm_bit_exact_over_tiers_and_threads(rng):
    """768-wide rows over a batch of 48 (above the size at which the backward splits over threads)."""
    g, k, _, _ = layernorm_graph((768,), 0, rng)
    x = rng.standard_normal((48, k)).astype(np.float32)
    runs = digests_over_tiers_and_threads(g, x, rng.integers(0, 768, 48))
    assert len(set(runs.values())) == 1, runs.keys()


@pytest.mark.parametrize("change,message", [
    (lambda g: g.nodes[-1].attrs.__setitem__(0, 2), "axis 2 is outside"),
    (lambda g: setattr(g.tensors[g.index["gamma"]], "shape", (16,)), "scale and bias must be parameters of 17"),
])
def test_layernorm_refuses_bad_nodes(change, message, rng):
    g, *_ = layernorm_graph((3, 17), 1, rng)
    change(g)
    if g.tensors[g.index["gamma"]].shape == (16,):
        g.tensors[g.index["gamma"]].data = g.tensors[g.index["gamma"]].data[:16]
    with pytest.raises(IntedgeError, match=message):
        Model(iem.serialize(g))
