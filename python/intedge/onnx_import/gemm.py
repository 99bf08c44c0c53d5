"""Gemm and MatMul by a weight onto the runtime's Gemm (runtime/src/ops/gemm.c), on the last axis
of any layout (a Linear on tokens); MatMul of two activations onto its MatMul (ops/matmul.c),
with a transpose of an operand's last two axes read through the op's attributes. A MatMul
followed by an Add of a bias is one Gemm: fusions.py."""
import numpy as np

from .. import iem
from .nodes import attrs, handles


def linear(walker, n, x, weight, bias, w_is_mk):
    """Y = X . W (+ bias) on X's last axis, with a 2-D initializer weight stored [M, K] (w_is_mk)
    or [K, M]."""
    view = walker.rows(n, x)
    if view is None:
        return
    x, groups = view
    wa = walker.const_value(weight)
    if wa is None or wa.ndim != 2:
        walker.problem(n, "the weight must be a 2-D initializer")
        return
    shape = walker.shapes[x]
    k, rows = shape[-1], int(np.prod(shape[:-1]))
    m_out, k_w = (wa.shape if w_is_mk else wa.shape[::-1])
    if k_w != k:
        walker.problem(n, f"the weight {list(wa.shape)} does not take {k} input features")
        return
    ins = [x, walker.param(n, weight)]
    if bias is not None:
        ba = walker.const_value(bias)
        if ba is None or ba.size != m_out:
            walker.problem(n, f"the bias must be an initializer of {m_out} values")
            return
        ins.append(walker.param(n, bias))
    if None in ins:
        return
    walker.emit_view(n, iem.OP_GEMM, ins, (*shape[:-1], m_out), groups, [w_is_mk] + ([rows] if rows > 1 else []))


@handles("Gemm")
def gemm(walker, n):
    a = attrs(n)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        walker.problem(n, "only transA=0, alpha=1 and beta=1 are supported")
        return
    bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
    linear(walker, n, n.input[0], n.input[1], bias, int(a.get("transB", 0)))


def operand(walker, n, v):
    """A MatMul operand batch first in its ONNX order, or stored with its last two axes swapped
    (the op reads it transposed). (tensor, groups, trans)."""
    view = walker.view(n, v)
    if view is None:
        return None
    tensor, groups = view
    if len(groups) < 3:
        walker.problem(n, f"input '{walker.name(v)}' has {len(groups) - 1} axes after the batch; a product of two "
                          "activations needs a matrix per sample")
        return None
    swapped = (*groups[:-2], groups[-1], groups[-2])
    order, order_t = ([a for g in gs for a in g] for gs in (groups, swapped))
    # read it transposed when that spares the Transpose, or keeps the runtime's innermost axis
    # innermost when a Transpose is due anyway (K of Q.K^T stays [.., T, d] like Q)
    innermost = len(order)
    trans = int(order != sorted(order) and (order_t == sorted(order_t) or (
        order[-1] != innermost - 1 and order_t[-1] == innermost - 1)))
    out = walker.laid_out(n, tensor, swapped if trans else groups, lead=len(groups[0]))
    return None if out is None else (*out, trans)


@handles("MatMul")
def matmul(walker, n):
    if walker.const_value(n.input[1]) is not None:
        linear(walker, n, n.input[0], n.input[1], None, 0)
        return
    a, b = operand(walker, n, n.input[0]), operand(walker, n, n.input[1])
    if a is None or b is None:
        return
    (ta, ga, trans_a), (tb, gb, trans_b) = a, b
    sa, sb = walker.shapes[ta], walker.shapes[tb]
    if len(ga[0]) != len(gb[0]) or len(ga) != len(gb):
        walker.problem(n, "the operands hold the batch differently; both must be [N, ...] or both [N * h, ...]")
        return
    m, k = (sa[-1], sa[-2]) if trans_a else (sa[-2], sa[-1])
    k_b, cols = (sb[-1], sb[-2]) if trans_b else (sb[-2], sb[-1])
    try:
        lead = np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
    except ValueError:
        lead = None
    if k != k_b or lead is None:
        walker.problem(n, f"shapes {list(sa)} and {list(sb)} (per sample) do not multiply")
        return
    walker.emit_view(n, iem.OP_MATMUL, [ta, tb], (*lead, m, cols), ga, [trans_a, trans_b])
