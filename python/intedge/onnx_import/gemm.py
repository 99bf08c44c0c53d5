"""Gemm and MatMul onto the runtime's Gemm (runtime/src/ops/gemm.c). A MatMul followed by an Add
of a bias is one Gemm too: fusions.py."""
import numpy as np

from .. import iem
from .nodes import attrs, handles


def linear(walker, n, x, weight, bias, w_is_mk):
    """Y = X . W (+ bias) with a 2-D initializer weight stored [M, K] (w_is_mk) or [K, M]."""
    x = walker.activation(n, x)
    if x is None:
        return
    wa = walker.const_value(weight)
    if wa is None or wa.ndim != 2:
        walker.problem(n, "the weight must be a 2-D initializer")
        return
    k = int(np.prod(walker.shapes[x]))
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
    walker.emit(n, iem.OP_GEMM, ins, (m_out,), [w_is_mk])


@handles("Gemm")
def gemm(walker, n):
    a = attrs(n)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        walker.problem(n, "only transA=0, alpha=1 and beta=1 are supported")
        return
    bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
    linear(walker, n, n.input[0], n.input[1], bias, int(a.get("transB", 0)))


@handles("MatMul")
def matmul(walker, n):
    linear(walker, n, n.input[0], n.input[1], None, 0)
