"""MaxPool, AveragePool, GlobalAveragePool and a ReduceMean over H, W onto the runtime's pools
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


@handles("ReduceMean", note="over H, W")
def reduce_mean(walker, n):
    """A mean over H and W with kept dims (what exporters make of adaptive_avg_pool2d(x, 1))."""
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    a = attrs(n)
    axes = walker.const_input(n, 1, a.get("axes"))
    axes = sorted(int(v) % 4 for v in np.asarray(axes).reshape(-1)) if axes is not None else None
    if len(walker.shapes[x]) != 3 or axes != [2, 3]:
        walker.problem(n, "only a mean over the H and W axes of [C, H, W] is supported")
        return
    c, h, w = walker.shapes[x]
    if a.get("keepdims", 1):
        pool(walker, n, iem.OP_AVGPOOL, [h, w], {})
        return
    # keepdims=0: pool to [C, 1, 1], then view it as [C]
    pooled = walker.emit(n, iem.OP_AVGPOOL, [x], (c, 1, 1), [h, w, 1, 1, 1, 1, 0, 0, 0, 0, 0],
                         name=(n.name or n.output[0]) + "/pool", out=n.output[0] + "/pooled")
    walker.emit(n, iem.OP_RESHAPE, [pooled], (c,))
