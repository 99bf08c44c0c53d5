"""Ops that move data, onto the runtime's ops of the same names (runtime/src/ops/layout.c):
Concat, Transpose, Pad (zeros), Resize (nearest, integer scales) and Dropout. Axes are per
sample: none of them may move or resize the batch."""
import numpy as np

from .. import iem
from ..runtime import dyadic
from .nodes import attrs, handles, text


@handles("Concat")
def concat(walker, n):
    xs = [walker.activation(n, v) for v in n.input]
    if None in xs:
        return
    rank = len(walker.shapes[xs[0]]) + 1
    axis = int(attrs(n)["axis"]) % rank
    if axis == 0 or any(len(walker.shapes[v]) + 1 != rank for v in xs) or len(xs) > iem.MAX_INPUTS:
        walker.problem(n, f"only concatenating up to {iem.MAX_INPUTS} tensors along a non-batch axis is supported")
        return
    out = list(walker.shapes[xs[0]])
    out[axis - 1] = sum(walker.shapes[v][axis - 1] for v in xs)
    walker.emit(n, iem.OP_CONCAT, xs, out, [axis - 1])


@handles("Transpose")
def transpose(walker, n):
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    rank = len(walker.shapes[x]) + 1
    perm = list(attrs(n).get("perm", range(rank - 1, -1, -1)))
    if perm[0] != 0:
        walker.problem(n, f"perm {perm} moves the batch axis")
        return
    inner = [p - 1 for p in perm[1:]]
    walker.emit(n, iem.OP_TRANSPOSE, [x], [walker.shapes[x][p] for p in inner], inner)


@handles("Pad", note="zeros")
def pad(walker, n):
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    a = attrs(n)
    mode = text(a, "mode", "constant")
    pads = walker.const_input(n, 1, a.get("pads"))
    v = walker.const_input(n, 2, np.float32(a.get("value", 0.0)))
    value = None if v is None else (float(np.asarray(v).reshape(-1)[0]) if np.asarray(v).size else 0.0)
    rank = len(walker.shapes[x]) + 1
    if pads is None or mode != "constant" or value != 0.0 or (len(n.input) > 3 and n.input[3]):
        walker.problem(n, "only constant zero padding with constant pads over all axes is supported")
        return
    pads = [int(v) for v in np.asarray(pads).reshape(-1)]
    if len(pads) != 2 * rank or pads[0] or pads[rank] or min(pads) < 0:
        walker.problem(n, f"pads {pads} must leave the batch alone and not crop")
        return
    before, after = pads[1:rank], pads[rank + 1:]
    out = [d + b + e for d, b, e in zip(walker.shapes[x], before, after)]
    walker.emit(n, iem.OP_PAD, [x], out, before + [0] * (6 - len(before)) + after)


@handles("Resize", note="nearest")
def resize(walker, n):
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    a = attrs(n)
    mode = text(a, "mode", "nearest")
    scales, sizes = walker.const_input(n, 2), walker.const_input(n, 3)
    shape = walker.shapes[x]
    if len(shape) == 3 and sizes is not None and np.asarray(sizes).size == 4:
        sz = [int(v) for v in np.asarray(sizes).reshape(-1)]
        scales = [1, 1, sz[2] / shape[1], sz[3] / shape[2]]
    ok = mode == "nearest" and len(shape) == 3 and scales is not None and np.asarray(scales).size == 4
    sc = [float(v) for v in np.asarray(scales).reshape(-1)] if ok else []
    if not ok or sc[0] != 1 or sc[1] != 1 or any(v != int(v) or v < 1 for v in sc[2:]):
        walker.problem(n, "only nearest resizing of [C, H, W] by integer factors is supported")
        return
    sh, sw = int(sc[2]), int(sc[3])
    walker.emit(n, iem.OP_RESIZE, [x], (shape[0], shape[1] * sh, shape[2] * sw), [sh, sw])


@handles("Dropout")
def dropout(walker, n):
    """Dropout trains with a seeded mask and is the identity in evaluation."""
    if len(n.output) > 1 and n.output[1] and walker.consumers(n.output[1]):
        walker.problem(n, "the mask output is not supported")
        return
    r = walker.const_input(n, 1, attrs(n).get("ratio", 0.5))
    if r is None:
        walker.problem(n, "the ratio must be a constant")
        return
    ratio = float(r)
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    if ratio <= 0:
        walker.same_as(n, n.output[0], x)
        return
    if ratio >= 1:
        walker.problem(n, f"ratio {ratio} drops everything")
        return
    keep = min(max(int(round((1 - ratio) * 2**32)), 1), 2**32 - 1)
    scale = dyadic(1.0 / (1.0 - ratio))
    walker.emit(n, iem.OP_DROPOUT, [x], walker.shapes[x], [keep - 2**32 if keep >= 2**31 else keep, scale.m, scale.e])
