"""LayerNormalization onto the runtime's LayerNorm (runtime/src/ops/layernorm.c): over the last
axis of any layout, or over the axes from `axis` on of the batch-first layout. The decomposed
form older exporters write (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) is one
LayerNorm too: fusions.py."""
import numpy as np

from .. import iem
from ..runtime import dyadic
from .nodes import attrs, handles


def layer_norm(walker, n, x, axis, eps, scale, bias, out_node=None):
    """LayerNorm of activation x over ONNX axes axis.. with initializer scale (and bias), written as
    out_node's output (n's by default)."""
    out_node = out_node or n
    dims = walker.onnx_dims(x)
    rank = len(dims) if dims else 0
    axis = axis % rank if rank else 0
    if dims is None:
        walker.view(n, x)  # reports why
        return
    if axis == 0:
        walker.problem(n, "it normalizes over the batch; only axes after it are supported")
        return
    d = int(np.prod(dims[axis:]))
    scale_v = walker.const_value(scale)
    bias_v = None if bias is None else walker.const_value(bias)
    if scale_v is None or scale_v.size != d or (bias is not None and (bias_v is None or bias_v.size != d)):
        walker.problem(n, f"scale and bias must be initializers of {d} values")
        return
    eps = dyadic(float(eps))
    if axis == rank - 1:
        view = walker.rows(n, x)
        if view is None:
            return
        t, groups = view
    else:
        t = walker.activation(n, x)
        groups = None
    if t is None:
        return
    ins = [t, walker.param(n, scale, (d,))] + ([walker.param(n, bias, (d,))] if bias is not None else [])
    if None in ins:
        return
    per_axis = len(walker.shapes[t]) - 1 if groups else axis - 1
    if groups:
        walker.emit_view(out_node, iem.OP_LAYERNORM, ins, walker.shapes[t], groups, [per_axis, eps.m, eps.e])
    else:
        walker.emit(out_node, iem.OP_LAYERNORM, ins, walker.shapes[t], [per_axis, eps.m, eps.e])


@handles("LayerNormalization")
def layer_normalization(walker, n):
    if any(o and walker.consumers(o) for o in n.output[1:]):
        walker.problem(n, "the Mean and InvStdDev outputs are not supported")
        return
    a = attrs(n)
    bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
    layer_norm(walker, n, n.input[0], a.get("axis", -1), a.get("epsilon", 1e-5), n.input[1], bias)
