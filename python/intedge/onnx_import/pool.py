"""MaxPool, AveragePool, GlobalAveragePool and a ReduceMean over consecutive axes onto the runtime's pools
(runtime/src/ops/pool.c): the global forms are an AveragePool whose window is the whole plane."""
import numpy as np

from .. import iem
from .nodes import attrs, handles
from .window import out_hw, window


def pool(walker, n, op, kernel, a, include_pad=0):
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    if len(walker.shapes[x]) != 3:
        walker.problem(n, "only 2-D pooling of [C, H, W] inputs is supported")
        return
    if len(n.output) > 1 and n.output[1]:
        walker.problem(n, "the Indices output is not supported")
        return
    if a.get("storage_order", 0):
        walker.problem(n, "storage_order=1 is not supported")
        return
    c, h, w = walker.shapes[x]
    try:
        strides, dil, pads = window(a, (h, w), kernel, not include_pad)
    except ValueError as exc:
        walker.problem(n, str(exc))
        return
    if pads[0] >= kernel[0] or pads[2] >= kernel[0] or pads[1] >= kernel[1] or pads[3] >= kernel[1]:
        walker.problem(n, "pads must be smaller than the window")
        return
    ho, wo = out_hw((h, w), kernel, strides, dil, pads)
    walker.emit(n, op, [x], (c, ho, wo), [*kernel, *strides, *dil, *pads, include_pad])


@handles("MaxPool")
def maxpool(walker, n):
    a = attrs(n)
    pool(walker, n, iem.OP_MAXPOOL, list(a["kernel_shape"]), a)


@handles("AveragePool")
def avgpool(walker, n):
    a = attrs(n)
    pool(walker, n, iem.OP_AVGPOOL, list(a["kernel_shape"]), a, int(a.get("count_include_pad", 0)))


@handles("GlobalAveragePool")
def global_avgpool(walker, n):
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    if len(walker.shapes[x]) == 3:
        pool(walker, n, iem.OP_AVGPOOL, list(walker.shapes[x][1:]), {})
    else:
        walker.problem(n, "only [C, H, W] inputs are supported")


@handles("ReduceMean", note="over consecutive per-sample axes")
def reduce_mean(walker, n):
    """A mean over consecutive per-sample axes: H and W (adaptive_avg_pool2d(x, 1)), the tokens of
    [T, D] (x.mean(1)), or any other run. The input is seen as [A, R, B] (the axes before, the
    reduced ones, the ones after: a view, no copy) and pooled by an R x 1 window to [A, 1, B]."""
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    a = attrs(n)
    shape = walker.shapes[x]
    rank = len(shape) + 1  # with the batch
    axes = walker.const_input(n, 1, a.get("axes"))
    axes = sorted({int(v) % rank for v in np.asarray(axes).reshape(-1)}) if axes is not None else None
    if not axes or axes[0] == 0 or axes != list(range(axes[0], axes[-1] + 1)):
        walker.problem(n, f"only a mean over consecutive axes other than the batch is supported, not axes {axes} of "
                          f"[N, {', '.join(map(str, shape))}]")
        return
    first, last = axes[0] - 1, axes[-1]  # per-sample axes [first, last)
    before, reduced, after = (int(np.prod(shape[:first])), int(np.prod(shape[first:last])),
                              int(np.prod(shape[last:])))
    kept = shape[:first] + ((1,) * (last - first) if a.get("keepdims", 1) else ()) + shape[last:]
    if len(shape) == 3 and (first, last) == (1, 3):  # over H, W: the pool reads the tensor as it is
        pooled_in, window = x, list(shape[1:])
    else:
        pooled_in, window = walker.runtime_reshape(x, (before, reduced, after)), [reduced, 1]
    pool_attrs = window + [1, 1, 1, 1, 0, 0, 0, 0, 0]  # strides, dilations, pads, count_include_pad
    if kept == (before, 1, after):
        walker.emit(n, iem.OP_AVGPOOL, [pooled_in], kept, pool_attrs)
        return
    pooled = walker.emit(n, iem.OP_AVGPOOL, [pooled_in], (before, 1, after), pool_attrs,
                         name=(n.name or n.output[0]) + "/pool", out=n.output[0] + "/pooled")
    walker.emit(n, iem.OP_RESHAPE, [pooled], kept)
