"""Clip, LeakyRelu, HardSigmoid, HardSwish, Sigmoid, Gelu, Tanh, Erf, Sqrt, Reciprocal and Pow
(a constant exponent) onto the runtime's Activation (runtime/src/ops/activation.c, the smooth
kinds in smooth.c), their parameters as dyadic constants. GELU written out with Erf or Tanh is
one Activation too: fusions.py. A Clip that is a ReLU
becomes the runtime's Relu; one with no bounds is no op at all."""
import numpy as np

from .. import iem
from ..runtime import dyadic
from .elementwise import relu
from .nodes import attrs, handles, text


def activation(walker, n, kind, p0=None, p1=None, flags=0, x=None):
    """The runtime's Activation of `kind` on n's input (or on x), elementwise on any layout."""
    view = walker.view(n, x or n.input[0])
    if view is None:
        return
    d0, d1 = dyadic(p0 or 0.0), dyadic(p1 or 0.0)
    walker.emit_view(n, iem.OP_ACTIVATION, [view[0]], walker.shapes[view[0]], view[1],
                     [kind, d0.m, d0.e, d1.m, d1.e, flags])


@handles("Clip", note="ReLU6")
def clip(walker, n):
    a = attrs(n)
    bounds = []
    for i, name in ((1, "min"), (2, "max")):
        v = walker.const_input(n, i, a.get(name))
        if v is None and len(n.input) > i and n.input[i]:
            walker.problem(n, f"{name} must be a constant")
            return
        bounds.append(None if v is None else float(np.asarray(v).reshape(-1)[0]))
    lo, hi = bounds
    if lo is None and hi is None:
        walker.same_as(n, n.output[0], n.input[0])
        return
    if lo == 0.0 and hi is None:
        relu(walker, n)
        return
    activation(walker, n, iem.ACT_CLIP, lo, hi, (lo is not None) | ((hi is not None) << 1))


@handles("LeakyRelu")
def leaky_relu(walker, n):
    activation(walker, n, iem.ACT_LEAKY_RELU, attrs(n).get("alpha", 0.01))


@handles("HardSigmoid")
def hard_sigmoid(walker, n):
    a = attrs(n)
    activation(walker, n, iem.ACT_HARD_SIGMOID, a.get("alpha", 0.2), a.get("beta", 0.5))


@handles("HardSwish")
def hard_swish(walker, n):
    activation(walker, n, iem.ACT_HARD_SWISH)


@handles("Sigmoid")
def sigmoid(walker, n):
    activation(walker, n, iem.ACT_SIGMOID)


@handles("Gelu")
def gelu(walker, n):
    approx = text(attrs(n), "approximate", "none")
    activation(walker, n, iem.ACT_GELU_TANH if approx == "tanh" else iem.ACT_GELU)


@handles("Tanh", "Erf", "Sqrt", "Reciprocal")
def smooth(walker, n):
    activation(walker, n, getattr(iem, f"ACT_{n.op_type.upper()}"))


@handles("Pow", note="constant exponent")
def power(walker, n):
    p = walker.const_input(n, 1)
    if p is None or np.asarray(p).size != 1:
        walker.problem(n, "the exponent must be a scalar constant")
        return
    activation(walker, n, iem.ACT_POW, float(np.asarray(p).reshape(-1)[0]))
