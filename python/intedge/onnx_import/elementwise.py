"""Relu onto the runtime's Relu, and the views Flatten, Reshape, Squeeze and Unsqueeze onto its
Reshape (runtime/src/ops/elementwise.c). Identity needs no runtime op: its output is another
name for its input."""
import numpy as np
import onnx

from .. import iem
from .folding import BATCH
from .nodes import attrs, handles


def reshape_to(walker, n, x, shape):
    walker.emit(n, iem.OP_RESHAPE, [x], shape)


@handles("Relu")
def relu(walker, n):
    x = walker.activation(n, n.input[0])
    if x is not None:
        walker.emit(n, iem.OP_RELU, [x], walker.shapes[x])


@handles("Flatten")
def flatten(walker, n):
    x = walker.activation(n, n.input[0])
    axis = next((onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 1)
    if x is None:
        return
    if axis != 1:
        walker.problem(n, f"axis={axis}; only axis=1 (keep the batch) is supported")
        return
    reshape_to(walker, n, x, (int(np.prod(walker.shapes[x])),))


@handles("Reshape")
def reshape(walker, n):
    x = walker.activation(n, n.input[0])
    target = walker.const_value(n.input[1])
    if x is None:
        return
    if target is None:
        walker.problem(n, "the target shape must be a constant")
        return
    target = [int(t) for t in np.asarray(target).reshape(-1)]
    if attrs(n).get("allowzero", 0) and 0 in target:
        walker.problem(n, "allowzero=1 with a 0 in the target shape")
        return
    per_sample = walker.shapes[x]
    numel = int(np.prod(per_sample))
    # ONNX: 0 copies the input's dimension at that index, -1 is inferred (at most once)
    rest = [per_sample[i] if d == 0 and i < len(per_sample) else d for i, d in enumerate(target[1:])]
    if any(d < -1 for d in rest):
        walker.problem(n, f"target shape {target} uses the batch size beyond the first dimension")
        return
    batch_ok = target and (target[0] in (0, BATCH) or (target[0] == -1 and -1 not in rest))
    if not batch_ok or rest.count(-1) > 1:
        walker.problem(n, f"target shape {target} does not keep the batch as its first dimension")
        return
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1]))
        if known <= 0 or numel % known:
            walker.problem(n, f"target shape {target} does not fit {numel} values per sample")
            return
        rest[rest.index(-1)] = numel // known
    if int(np.prod(rest)) != numel or any(d <= 0 for d in rest):
        walker.problem(n, f"target shape {target} does not fit {numel} values per sample")
        return
    reshape_to(walker, n, x, tuple(rest) or (1,))


@handles("Squeeze", "Unsqueeze")
def squeeze_like(walker, n):
    """Squeeze/Unsqueeze of an activation: a view, its output shape from the axes."""
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    a = attrs(n)
    axes = walker.const_input(n, 1, a.get("axes"))
    full = [1, *walker.shapes[x]]  # the batch as 1 while counting axes
    if axes is None:
        out = [d for d in full if d != 1] if n.op_type == "Squeeze" else None
    else:
        axes = [int(v) for v in np.asarray(axes).reshape(-1)]
        if n.op_type == "Squeeze":
            rank = len(full)
            drop = {v % rank for v in axes}
            if 0 in drop or any(full[v] != 1 for v in drop):
                out = None
            else:
                out = [d for i, d in enumerate(full) if i not in drop]
        else:
            rank = len(full) + len(axes)
            ins = sorted(v % rank for v in axes)
            out = list(full)
            for v in ins:
                out.insert(v, 1)
            if 0 in ins:
                out = None
    if out is None or len(out) < 2:
        walker.problem(n, "only squeezing or unsqueezing non-batch axes is supported")
        return
    reshape_to(walker, n, x, tuple(out[1:]))


@handles("Identity")
def identity(walker, n):
    walker.same_as(n, n.output[0], n.input[0])
