"""Relu onto the runtime's Relu, and the views Flatten, Reshape, Squeeze and Unsqueeze onto views of
runtime tensors (views.py), with the runtime's Reshape (runtime/src/ops/elementwise.c) where an
axis is split or the view settles batch first. Identity needs no runtime op: its output is
another name for its input."""
import numpy as np
import onnx

from .. import iem
from . import views
from .folding import BATCH
from .nodes import attrs, handles, int_values



def settle(walker, n, tensor, groups, out=None):
    """Node n's output `out` (its first by default) is the runtime tensor seen through groups. A view
    that only merges or inserts axes of a batch-first tensor becomes a runtime Reshape under the
    output's name, as before views; any other stays a view for its consumers to lay out."""
    out = out or n.output[0]
    order = [a for g in groups for a in g]
    if views.is_identity(groups) or order != sorted(order) or not groups or groups[0] != (0,):
        walker.set_view(out, tensor, groups)
        return
    d = views.dims(walker.shapes[tensor], groups)[1:]
    walker.emit(n, iem.OP_RESHAPE, [tensor], d or (1,), out=out, name=out if out != n.output[0] else None)


def drop_unit_axes(walker, tensor, groups, keep):
    """The view of ONNX axes `keep` only (the others have size 1): runtime axes in the dropped groups
    are removed with a runtime Reshape."""
    dropped = sorted((a for i, g in enumerate(groups) if i not in keep for a in g), reverse=True)
    groups = tuple(groups[i] for i in keep)
    if dropped:
        shape = [d for a, d in enumerate(walker.shapes[tensor], 1) if a not in dropped]
        tensor = walker.runtime_reshape(tensor, shape or (1,))
        for a in dropped:
            groups = views.renumber_after_drop(groups, a)
    return tensor, groups


@handles("Relu")
def relu(walker, n):
    view = walker.view(n, n.input[0])
    if view is not None:
        walker.emit_view(n, iem.OP_RELU, [view[0]], walker.shapes[view[0]], view[1])


@handles("Flatten")
def flatten(walker, n):
    view = walker.view(n, n.input[0])
    if view is None:
        return
    tensor, groups = view
    axis = attrs(n).get("axis", 1) % (len(groups) + 1)
    if axis == 0 or any(0 in g for g in groups[axis:]):
        walker.problem(n, f"axis={axis} would merge the batch with other axes; only flattening after it is supported")
        return
    settle(walker, n, tensor, (tuple(a for g in groups[:axis] for a in g), tuple(a for g in groups[axis:] for a in g)))


def reshape_view(walker, n, tensor, groups, parts):
    """Reads ONNX shape parts (views.resolve_target) off the view, splitting runtime axes where a
    target size cuts one (a Reshape of the runtime tensor: [.., 96] -> [.., 3, 32])."""
    while True:
        m = views.match_reshape(walker.shapes[tensor], groups, parts)
        if m[0] == "groups":
            settle(walker, n, tensor, m[1])
            return
        if m[0] == "no":
            walker.problem(n, f"target shape {views.shown(k * BATCH if b else k for k, b in parts)} of an input of "
                              f"shape {views.shown(views.dims(walker.shapes[tensor], groups))}: {m[1]}")
            return
        _, axis, outer = m
        shape = list(walker.shapes[tensor])
        shape[axis - 1:axis] = [outer, shape[axis - 1] // outer]
        tensor = walker.runtime_reshape(tensor, shape)
        groups = views.renumber_after_split(groups, axis)


def rebatched(walker, in_dims, target):
    """A target with the export batch baked in (a model exported without a dynamic batch axis): the
    first size that is a multiple of it, read as that multiple of the batch, when that fits."""
    b = walker.export_batch
    for i, t in enumerate(target if b else ()):
        if t > 0 and t % b == 0:
            parts = views.resolve_target(in_dims, [*target[:i], t // b * BATCH, *target[i + 1:]])
            if parts is not None:
                return parts
    return None


@handles("Reshape")
def reshape(walker, n):
    view = walker.view(n, n.input[0])
    target = walker.const_value(n.input[1])
    if view is None:
        return
    if target is None:
        walker.problem(n, "the target shape must be a constant")
        return
    target = int_values(n, target, "target shape")
    if attrs(n).get("allowzero", 0) and 0 in target:
        walker.problem(n, "allowzero=1 with a 0 in the target shape")
        return
    in_dims = walker.onnx_dims(n.input[0])
    parts = views.resolve_target(in_dims, target) or rebatched(walker, in_dims, target)
    if parts is None:
        walker.problem(n, f"target shape {views.shown(target)} does not fit an input of shape {views.shown(in_dims)}")
        return
    reshape_view(walker, n, *view, parts)


@handles("Squeeze", "Unsqueeze")
def squeeze_like(walker, n):
    """Squeeze/Unsqueeze: the view loses or gains axes of size 1."""
    view = walker.view(n, n.input[0])
    if view is None:
        return
    tensor, groups = view
    a = attrs(n)
    axes = walker.const_input(n, 1, a.get("axes"))
    dims = views.dims(walker.shapes[tensor], groups)
    if n.op_type == "Squeeze":
        rank = len(groups)
        drop = [i for i, d in enumerate(dims) if d == 1] if axes is None else \
            [int(v) % rank for v in np.asarray(axes).reshape(-1)]
        if any(dims[i] != 1 for i in drop):
            walker.problem(n, "only axes of size 1 can be squeezed (never the batch)")
            return
        tensor, groups = drop_unit_axes(walker, tensor, groups, [i for i in range(rank) if i not in drop])
    else:
        if axes is None:
            walker.problem(n, "the axes must be a constant")
            return
        rank = len(groups) + np.asarray(axes).size
        groups = list(groups)
        for v in sorted(int(v) % rank for v in np.asarray(axes).reshape(-1)):
            groups.insert(v, ())
    settle(walker, n, tensor, tuple(groups))


@handles("Identity")
def identity(walker, n):
    walker.same_as(n, n.output[0], n.input[0])
