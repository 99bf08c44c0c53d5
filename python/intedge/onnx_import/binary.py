"""Add, Sub, Mul and Div onto the runtime's Binary (runtime/src/ops/binary.c). An Add that only
adds a bias to a MatMul never gets here: fusions.py makes the pair one Gemm."""
import numpy as np

from .. import iem
from . import views
from .nodes import handles

KINDS = {"Add": iem.BINARY_ADD, "Sub": iem.BINARY_SUB, "Mul": iem.BINARY_MUL, "Div": iem.BINARY_MUL}


@handles("Add", "Sub", "Mul", "Div")
def binary(walker, n):
    """An activation with an activation or a constant, numpy broadcasting over the ONNX shapes
    (the batch must not broadcast). A scalar works on any layout (views.py); two activations seen
    the same way combine as they are; anything else is laid out batch first. A weight (an
    initializer of several values: a positional embedding) trains, broadcast over the batch; other
    constants are frozen state. Div is a Mul by the constant's reciprocal."""
    kind = KINDS[n.op_type]
    names = [walker.name(v) for v in n.input[:2]]
    if walker.upstream_failed(n, names):
        return
    acts = [walker.onnx_dims(v) is not None for v in names]
    if not any(acts):
        walker.problem(n, "at least one input must be an activation")
        return
    if not acts[0]:  # a constant first: swap (Sub then negates, which the runtime cannot do in place)
        if n.op_type in ("Sub", "Div"):
            walker.problem(n, f"constant {'minus' if n.op_type == 'Sub' else 'divided by'} activation is not supported")
            return
        names.reverse()
        acts.reverse()
        n_inputs = list(reversed(n.input[:2]))
    else:
        n_inputs = list(n.input[:2])
    a, b = names
    if a == b:
        walker.problem(n, "both inputs are the same tensor")
        return
    if acts[1]:
        if n.op_type == "Div":
            walker.problem(n, "an activation divided by an activation is not supported")
            return
        va, vb = walker.view(n, a), walker.view(n, b)
        if va is None or vb is None:  # view reported why (an integer input: fuzz_onnx.py)
            return
        if va[1] == vb[1] and walker.shapes[va[0]] == walker.shapes[vb[0]]:
            walker.emit_view(n, iem.OP_BINARY, [va[0], vb[0]], walker.shapes[va[0]], va[1], [kind])
            return
        a, b = walker.activation(n, a), walker.activation(n, b)
        if a is None or b is None:
            return
        shape_a, shape_b = walker.shapes[a], walker.shapes[b]
    else:
        const = walker.const_value(b)
        if const is None:
            walker.problem(n, f"input '{b}' is neither an activation nor a constant")
            return
        const = np.asarray(const, np.float32)
        if n.op_type == "Div":
            const = 1 / const
        lead = next((i for i, d in enumerate(const.shape) if d != 1), const.ndim)
        if const.ndim - lead <= 1:  # a scalar works on any layout, a vector along the last axis on rows
            view = walker.view(n, a) if const.size == 1 else walker.rows(n, a)
            if view is None:
                return
            const = const.reshape(-1)
            if const.size not in (1, walker.shapes[view[0]][-1]):
                walker.problem(n, f"a constant of {const.size} values does not broadcast along the last axis")
                return
            weight = n_inputs[1]
            if const.size > 1 and walker.name(weight) in walker.inits and n.op_type != "Div":
                c = walker.param(n, weight, const.shape)
            else:
                c = walker.frozen_constant(f"{n.name or n.output[0]}/constant", const)
            if c is not None:
                walker.emit_view(n, iem.OP_BINARY, [view[0], c], walker.shapes[view[0]], view[1], [kind])
            return
        a = walker.activation(n, a)
        if a is None:
            return
        shape_a = walker.shapes[a]
        if const.ndim == len(shape_a) + 1 and const.shape[0] == 1:  # a leading batch axis of 1
            const = const.reshape(const.shape[1:])
        shape_b = const.shape
        if len(shape_b) > len(shape_a):
            walker.problem(n, "the constant has more dimensions than the activation")
            return
        weight = n_inputs[1]
        if walker.name(weight) in walker.inits and n.op_type != "Div":
            b = walker.param(n, weight, shape_b)
            if b is None:
                return
        else:
            b = walker.frozen_constant(f"{n.name or n.output[0]}/constant", const)
    try:
        out = tuple(np.broadcast_shapes(tuple(shape_a), tuple(shape_b)))
    except ValueError:
        walker.problem(n, f"shapes {views.shown([1, *shape_a])} and {views.shown([1, *shape_b])} do not broadcast")
        return
    walker.emit(n, iem.OP_BINARY, [a, b], out, [kind])
