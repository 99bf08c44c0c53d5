"""Add, Sub and Mul onto the runtime's Binary (runtime/src/ops/binary.c). An Add that only adds a
bias to a MatMul never gets here: fusions.py makes the pair one Gemm."""
import numpy as np

from .. import iem
from .nodes import handles

KINDS = {"Add": iem.BINARY_ADD, "Sub": iem.BINARY_SUB, "Mul": iem.BINARY_MUL}


@handles("Add", "Sub", "Mul")
def binary(walker, n):
    """An activation with an activation or a constant, numpy broadcasting over the per-sample
    shapes (the batch must not broadcast). A constant operand is frozen state, never trained."""
    kind = KINDS[n.op_type]
    names = [walker.name(v) for v in n.input[:2]]
    if walker.upstream_failed(n, names):
        return
    acts = [v in walker.shapes for v in names]
    if not any(acts):
        walker.problem(n, "at least one input must be an activation")
        return
    if not acts[0]:  # a constant first: swap (Sub then negates, which the runtime cannot do in place)
        if kind == iem.BINARY_SUB:
            walker.problem(n, "constant minus activation is not supported")
            return
        names.reverse()
        acts.reverse()
    a, b = names
    if a == b:
        walker.problem(n, "both inputs are the same tensor")
        return
    shape_a = walker.shapes[a]
    if acts[1]:
        shape_b = walker.shapes[b]
    else:
        const = walker.const_value(b)
        if const is None:
            walker.problem(n, f"input '{b}' is neither an activation nor a constant")
            return
        const = np.asarray(const, np.float32)
        if const.ndim == len(shape_a) + 1 and const.shape[0] == 1:  # a leading batch axis of 1
            const = const.reshape(const.shape[1:])
        shape_b = const.shape or (1,)
        b = walker.frozen_constant(f"{n.name or n.output[0]}/constant", const.reshape(shape_b))
    try:
        out = tuple(np.broadcast_shapes(tuple(shape_a), tuple(shape_b)))
    except ValueError:
        walker.problem(n, f"shapes {list(shape_a)} and {list(shape_b)} do not broadcast")
        return
    if len(shape_b) > len(shape_a) and acts[1] is False:
        walker.problem(n, "the constant has more dimensions than the activation")
        return
    walker.emit(n, iem.OP_BINARY, [a, b], out, [kind])
