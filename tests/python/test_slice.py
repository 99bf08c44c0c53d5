"""Slice (runtime/src/ops/layout.c): a window along one per-sample axis, what the importer makes of
ONNX Slice, Split and Gather of one index (the fused qkv projection's thirds, the class token).
Forward and backward move int8 values without arithmetic, so both must equal float64 autograd
exactly on the values the op read. A tensor read by two overlapping slices gets the sum of their
gradients, which the fan-out rounds once (one ulp)."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge.errors import IntedgeError
from intedge.runtime import Model
from op_harness import Harness, gemm_upstream, within_ulps

SHAPE = (3, 5, 7)


def slice_graph(rng, windows):
    """x -> Gemm -> h [3, 5, 7] -> one Slice per (axis, start, length) window -> y (the windows
    flattened and concatenated, so that one output gradient reaches every slice)."""
    g = iem.Graph()
    gemm_upstream(g, SHAPE, rng)
    flats = []
    for i, (axis, start, length) in enumerate(windows):
        out = list(SHAPE)
        out[axis] = length
        g.add_tensor(f"s{i}", iem.KIND_ACTIVATION, out)
        g.add_node(f"slice{i}", iem.OP_SLICE, ["h"], [f"s{i}"], [axis, start])
        g.add_tensor(f"f{i}", iem.KIND_ACTIVATION, (int(np.prod(out)),))
        g.add_node(f"flat{i}", iem.OP_RESHAPE, [f"s{i}"], [f"f{i}"])
        flats.append(f"f{i}")
    total = sum(int(np.prod(SHAPE)) // SHAPE[a] * n for a, _, n in windows)
    g.add_tensor("y", iem.KIND_ACTIVATION, (total,))
    g.add_node("cat", iem.OP_CONCAT, flats, ["y"], [0])
    g.output = g.index["y"]
    return g, total


def overlapping(windows):
    seen = np.zeros(SHAPE, int)
    for a, s, n in windows:
        idx = [slice(None)] * 3
        idx[a] = slice(s, s + n)
        seen[tuple(idx)] += 1
    return seen.max() > 1


@pytest.mark.parametrize("windows", [[(0, 1, 1)], [(1, 2, 3)], [(2, 0, 7)], [(2, 6, 1), (2, 0, 3)],
                                     [(0, 0, 1), (0, 1, 1), (0, 2, 1)], [(1, 1, 2), (2, 3, 4)]])
def test_slice_is_exact_against_autograd(rng, windows):
    g, total = slice_graph(rng, windows)
    batch, edy = 3, -6
    h = Harness(g, batch=batch)
    dy = rng.integers(-127, 128, (batch, total), dtype=np.int8)
    h.step(rng.standard_normal((batch, 6)).astype(np.float32), dy, edy)
    x = torch.tensor(h.value("h"), requires_grad=True)
    pieces = [x.narrow(a + 1, s, n) for a, s, n in windows]
    y = torch.cat([p.reshape(batch, -1) for p in pieces], 1)
    y.backward(torch.tensor(dy * 2.0**edy))
    for i, p in enumerate(pieces):
        assert np.array_equal(h.value(f"s{i}"), p.detach().numpy())
    if overlapping(windows):
        within_ulps(h.value("h", grad=True), x.grad.numpy(), h.tensor("h", grad=True)[1])
    else:
        assert np.array_equal(h.value("h", grad=True), x.grad.numpy())
    assert np.abs(x.grad.numpy()).max() > 0


@pytest.mark.parametrize("axis, start, length, why", [(3, 0, 1, "axis"), (1, 4, 2, "leaves the axis"),
                                                      (1, -1, 1, "leaves the axis")])
def test_slice_refuses_windows_outside_the_tensor(rng, axis, start, length, why):
    g = iem.Graph()
    gemm_upstream(g, SHAPE, rng)
    out = list(SHAPE)
    out[min(axis, 2)] = length
    g.add_tensor("y", iem.KIND_ACTIVATION, out)
    g.add_node("slice", iem.OP_SLICE, ["h"], ["y"], [axis, start])
    g.output = g.index["y"]
    with pytest.raises(IntedgeError, match=why):
        Model(iem.serialize(g))
