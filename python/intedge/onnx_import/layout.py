"""Ops that move data, onto the runtime's ops of the same names (runtime/src/ops/layout.c):
Concat, Pad (zeros), Resize and Upsample (nearest and bilinear, rational scales), Dropout; Slice, Split and
Gather of constant indices on activations onto its Slice (Gather on a weight table: embedding.py);
Expand of a weight over the batch onto its ParamBroadcast (of integer ids: a constant for
embedding.py); Transpose as a view (views.py). None of them may resize the batch."""
from fractions import Fraction

import numpy as np

from .. import iem
from ..runtime import dyadic
from . import views
from .elementwise import drop_unit_axes, settle
from .embedding import embedding
from .nodes import attrs, handles, int_values, text


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
    """A new view (runtime Transposes happen where an op needs a layout, at most one per input)."""
    view = walker.view(n, n.input[0])
    if view is None:
        return
    tensor, groups = view
    perm = list(attrs(n).get("perm", range(len(groups) - 1, -1, -1)))
    settle(walker, n, tensor, tuple(groups[p] for p in perm))


def window(walker, n, tensor, groups, axis, start, length):
    """A runtime Slice of ONNX axis `axis` (one runtime axis, not the batch). Returns the runtime
    tensor, or None after a problem."""
    g = groups[axis]
    if len(g) != 1 or g[0] == 0:
        walker.problem(n, f"axis {axis} of an input of shape {views.shown(views.dims(walker.shapes[tensor], groups))} "
                          f"is {'the batch' if 0 in g else 'several axes merged'}; only a single non-batch axis can be "
                          "sliced")
        return None
    shape = list(walker.shapes[tensor])
    if start == 0 and length == shape[g[0] - 1]:
        return tensor
    shape[g[0] - 1] = length
    out = walker.output(walker.fresh(n.output[0], "slice"), shape)
    walker.graph.add_node(out, iem.OP_SLICE, [tensor], [out], [g[0] - 1, start])
    return out


@handles("Gather", note="constant indices on an activation; integer ids on a weight table")
def gather(walker, n):
    """Gather of constant consecutive indices along one axis (the class token: x[:, 0]; a third of
    a fused qkv projection) is a Slice; a scalar index also drops the axis. On a weight table it is
    an embedding (embedding.py)."""
    if walker.const_value(n.input[0]) is not None:
        embedding(walker, n)
        return
    view = walker.view(n, n.input[0])
    idx = walker.const_input(n, 1)
    if view is None:
        return
    tensor, groups = view
    axis = attrs(n).get("axis", 0) % len(groups)
    size = views.dims(walker.shapes[tensor], groups)[axis]
    idx = None if idx is None else np.asarray(idx)
    if idx is not None and idx.dtype.kind not in "iu":  # NaN reached np.arange (fuzz_onnx.py)
        walker.problem(n, f"its indices must be integers (int32 or int64), not {idx.dtype}")
        return
    flat = None if idx is None or idx.ndim > 1 or idx.size == 0 else np.asarray(idx).reshape(-1) % max(size, 1)
    if flat is None or any(flat != np.arange(flat[0], flat[0] + flat.size)):
        walker.problem(n, "only constant indices that are a run of consecutive values (a scalar or 1-D) are supported")
        return
    out = window(walker, n, tensor, groups, axis, int(flat[0]), int(flat.size))
    if out is None:
        return
    if idx.ndim == 0:
        out, groups = drop_unit_axes(walker, out, groups, [i for i in range(len(groups)) if i != axis])
    settle(walker, n, out, groups)


@handles("Slice", note="step 1, on an activation")
def slice_(walker, n):
    view = walker.view(n, n.input[0])
    c = [walker.const_input(n, i) for i in range(1, 5)]
    if view is None:
        return
    if any(v is None and len(n.input) > i + 1 and n.input[i + 1] for i, v in enumerate(c)) or c[0] is None:
        walker.problem(n, "starts, ends, axes and steps must be constants")
        return
    tensor, groups = view
    dims = views.dims(walker.shapes[tensor], groups)
    starts, ends = (np.asarray(v).reshape(-1) for v in c[:2])
    axes = np.arange(len(starts)) if c[2] is None else np.asarray(c[2]).reshape(-1) % len(dims)
    steps = np.ones(len(starts), np.int64) if c[3] is None else np.asarray(c[3]).reshape(-1)
    for axis, st, en, step in zip(axes, starts, ends, steps):
        d = dims[axis]
        if views.split_batch(d)[1]:
            if st == 0 and en >= (1 << 62) and step == 1:  # the whole batch
                continue
            walker.problem(n, f"it slices axis {axis}, which holds the batch")
            return
        st, en = (int(min(max(v + d if v < 0 else v, 0), d)) for v in (st, en))
        if step != 1 or en <= st:
            walker.problem(n, f"only non-empty slices with step 1 are supported (axis {axis}: {st}:{en}:{step})")
            return
        tensor = window(walker, n, tensor, groups, int(axis), st, en - st)
        if tensor is None:
            return
    settle(walker, n, tensor, groups)


@handles("Split")
def split(walker, n):
    """Split along a single non-batch axis: one Slice per output (the fused qkv projection)."""
    view = walker.view(n, n.input[0])
    if view is None:
        return
    tensor, groups = view
    a = attrs(n)
    axis = a.get("axis", 0) % len(groups)
    size = views.dims(walker.shapes[tensor], groups)[axis]
    sizes = walker.const_input(n, 1, a.get("split"))
    if sizes is None:
        parts = a.get("num_outputs", len(n.output))
        sizes = [-(-size // parts)] * (parts - 1)
        sizes.append(size - sum(sizes))
    sizes = int_values(n, sizes, "split sizes")
    if len(sizes) != len(n.output) or sum(sizes) != size or min(sizes) <= 0:
        walker.problem(n, f"split sizes {sizes} do not cut axis {axis} of {size} into {len(n.output)} parts")
        return
    start = 0
    for out, length in zip(n.output, sizes):
        piece = window(walker, n, tensor, groups, axis, start, length)
        if piece is None:
            return
        settle(walker, n, piece, groups, out=out)
        start += length


@handles("Expand", note="of a weight over the batch")
def expand(walker, n):
    """A weight repeated over the batch (the class token) is the runtime's ParamBroadcast; an
    activation expanded to its own shape is itself."""
    target = walker.const_input(n, 1)
    if target is None:
        walker.problem(n, "the shape must be a constant")
        return
    target = int_values(n, target, "shape")
    data = walker.const_value(n.input[0])
    if data is None:
        dims = walker.onnx_dims(n.input[0])
        if dims is not None and len(target) <= len(dims) and all(
                t in (1, d) or views.split_batch(t) == views.split_batch(d) for t, d in zip(target[::-1], dims[::-1])):
            walker.same_as(n, n.output[0], n.input[0])
            return
        walker.problem(n, "only a weight expanded over the batch, or an activation to its own shape, is supported")
        return
    # the batch: a folded Shape's, or the batch a fixed-batch export baked in (re-batched, as Reshape)
    over_batch = views.split_batch(target[0]) == (1, 1) or (walker.export_batch is not None and
                                                             target[0] == walker.export_batch)
    if np.issubdtype(data.dtype, np.integer) and over_batch:  # ids: embedding.py
        walker.batch_consts[n.output[0]] = np.broadcast_to(data, [1] + [max(t, 1) for t in target[1:]])[0]
        return
    per_sample = data.shape[1:] if data.ndim == len(target) and data.shape[:1] == (1,) else None
    try:
        fits = per_sample is not None and over_batch and \
            tuple(np.broadcast_shapes(per_sample, tuple(max(t, 1) for t in target[1:]))) == per_sample
    except ValueError:
        fits = False
    if not fits:
        walker.problem(n, f"it expands a weight of shape {list(data.shape)} to {views.shown(target)}; only repeating "
                          "it over the batch is supported")
        return
    p = walker.param(n, n.input[0])
    if p is not None:
        walker.emit(n, iem.OP_PARAM_BROADCAST, [p], per_sample or (1,))


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
    pads = int_values(n, pads, "pads")
    if len(pads) != 2 * rank or pads[0] or pads[rank] or min(pads) < 0:
        walker.problem(n, f"pads {pads} must leave the batch alone and not crop")
        return
    before, after = pads[1:rank], pads[rank + 1:]
    out = [d + b + e for d, b, e in zip(walker.shapes[x], before, after)]
    walker.emit(n, iem.OP_PAD, [x], out, before + [0] * (6 - len(before)) + after)


RESIZE_COORDS = {"half_pixel": 1, "align_corners": 2, "asymmetric": 3, "pytorch_half_pixel": 4, "tf_half_pixel_for_nn": 5}
NEAREST_ROUNDING = {"floor": 0, "ceil": 1, "round_prefer_floor": 2, "round_prefer_ceil": 3}
MAX_SCALE_TERM = 16384  # the runtime's bound on a scale's numerator and denominator (ops/layout.c)


def scale_fraction(s):
    """The rational a float scale stands for: the one of smallest denominator (up to MAX_SCALE_TERM)
    that rounds to the same float32, so 1.5 is 3/2 and float32(2/3) is 2/3. None if there is none."""
    s = np.float32(s)
    if not np.isfinite(s) or s <= 0:
        return None
    f = Fraction(float(s)).limit_denominator(MAX_SCALE_TERM)
    return f if np.float32(f.numerator / f.denominator) == s and f.numerator <= MAX_SCALE_TERM else None


def resize_scales(walker, n, shape, legacy):
    """(the H and W scales as fractions, the output's H and W) from the node's scales or sizes, or
    (None, the reason). Sizes give out / in exactly; scales give onnxruntime's floor(in * scale)."""
    scales = walker.const_input(n, 1 if legacy else 2, attrs(n).get("scales"))
    sizes = None if legacy else walker.const_input(n, 3)
    if sizes is not None and np.asarray(sizes).size == 4:
        sz = int_values(n, sizes, "sizes")
        if sz[1] != shape[0] or min(sz[2:]) < 1:
            return None, f"sizes {sz} must keep the channels"
        return [Fraction(o, i) for o, i in zip(sz[2:], shape[1:])], sz[2:]
    if scales is None or np.asarray(scales).size != 4:
        return None, "the scales or sizes must be constants over the 4 axes of [N, C, H, W]"
    sc = np.asarray(scales, np.float32).reshape(-1)
    fr = [scale_fraction(v) for v in sc[2:]]
    if sc[0] != 1 or sc[1] != 1 or None in fr:
        return None, f"scales {sc.tolist()} must keep N and C and be ratios of integers up to {MAX_SCALE_TERM}"
    out = [int(np.float32(i) * v) for i, v in zip(shape[1:], sc[2:])]
    if out != [i * f.numerator // f.denominator for i, f in zip(shape[1:], fr)] or min(out) < 1:
        return None, f"scales {sc[2:].tolist()} of {shape[1:]} give {out} only in float32 rounding; give sizes instead"
    return fr, out


@handles("Resize", "Upsample", note="nearest or bilinear, rational scales")
def resize(walker, n):
    """[C, H, W] at rational scales (ops/layout.c computes every source coordinate exactly). Before
    opset 11 (and in Upsample) coordinates are asymmetric and nearest is onnxruntime's "simple":
    the floor when enlarging, the ceiling when shrinking."""
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    a = attrs(n)
    legacy = n.op_type == "Upsample" or walker.opset(n) < 11
    mode = text(a, "mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode  # Upsample-7's spelling
    coords = "asymmetric" if legacy else text(a, "coordinate_transformation_mode", "half_pixel")
    shape = walker.shapes[x]
    if mode not in ("nearest", "linear") or len(shape) != 3:
        walker.problem(n, f"only nearest or bilinear resizing of [C, H, W] is supported, not {mode} of {shape}")
        return
    if coords not in RESIZE_COORDS:
        walker.problem(n, f"coordinate_transformation_mode '{coords}' is not supported; use half_pixel, "
                          "pytorch_half_pixel, align_corners, asymmetric or tf_half_pixel_for_nn")
        return
    scales, out = resize_scales(walker, n, shape, legacy)
    if scales is None:
        walker.problem(n, out)
        return
    if "axes" in a or text(a, "keep_aspect_ratio_policy", "stretch") != "stretch" or (
            a.get("antialias", 0) and min(scales) < 1):
        walker.problem(n, "axes, keep_aspect_ratio_policy and antialiased shrinking are not supported")
        return
    rounding = text(a, "nearest_mode", "round_prefer_floor")
    if legacy:
        rounding = "floor" if min(scales) >= 1 else "ceil" if max(scales) <= 1 else None
    if mode == "nearest" and rounding not in NEAREST_ROUNDING:
        walker.problem(n, f"nearest_mode '{rounding}' is not supported (in opset {walker.opset(n)}: one way for both axes)")
        return
    near = mode == "nearest"
    walker.emit(n, iem.OP_RESIZE, [x], (shape[0], *out),
                [scales[0].numerator, scales[1].numerator, 0 if near else RESIZE_COORDS[coords],
                 scales[0].denominator, scales[1].denominator, RESIZE_COORDS[coords] if near else 0,
                 NEAREST_ROUNDING[rounding] if near else 0])


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
