"""Patterns of several ONNX nodes that become one runtime op. Each starts at the node its @fuses
tag names, is tried before that node's own handler, and absorbs the other nodes it covers.
Constants are compared with a relative tolerance of 1e-3: exporters write sqrt(2), 1/sqrt(2) and
sqrt(2/pi) in float32, or computed."""
import math

import numpy as np

from .. import iem
from .activation import activation
from .folding import BATCH
from . import masks
from .gemm import linear
from .layernorm import layer_norm
from .nodes import attrs, fuses


def only_reader(walker, v, op_types):
    """The one node reading v, if it has one of op_types and keeps its schema (a fusion looks at
    nodes before the walk checks them: fuzz_onnx.py found a reader without outputs)."""
    users = walker.consumers(v)
    return users[0] if len(users) == 1 and users[0].op_type in op_types and walker.malformed(users[0]) is None else None


def other_input(n, v):
    """The operand of the binary node n beside v; None if n does not read v or is malformed (a
    fusion looks at nodes before their own schema check)."""
    if len(n.input) != 2:
        return None
    a, b = n.input
    return b if a == v else a if b == v else None


def scalar(walker, v, value):
    """v is a constant scalar near value."""
    c = walker.const_value(v)
    return c is not None and np.asarray(c).size == 1 and math.isclose(float(np.asarray(c).reshape(-1)[0]), value,
                                                                      rel_tol=1e-3)


def scaled_by(walker, n, v, value):
    """n computes v * value (Mul) or v / (1 / value) (Div), with v as its first operand for Div."""
    if n.op_type == "Mul":
        return scalar(walker, other_input(n, v), value) if other_input(n, v) else False
    return n.op_type == "Div" and n.input[0] == v and scalar(walker, n.input[1], 1 / value)


def half_times(walker, first, x, inner):
    """first and its reader compute 0.5 * x * inner in either order ((x * inner) * 0.5, or
    x * (inner * 0.5), or (0.5 * inner) * x). Returns the last node, or None."""
    second = only_reader(walker, first.output[0], ("Mul",))
    if second is None:
        return None
    o = other_input(first, inner)
    if o == x and scaled_by(walker, second, first.output[0], 0.5):
        return second
    if o is not None and scalar(walker, o, 0.5) and other_input(second, first.output[0]) == x:
        return second
    return None


@fuses("MatMul")
def matmul_add_bias(walker, n):
    """A MatMul by a weight whose only reader adds an initializer (how exporters write nn.Linear):
    one Gemm with a bias."""
    add = only_reader(walker, n.output[0], ("Add",))
    if add is None or walker.const_value(n.input[1]) is None:
        return False
    bias = other_input(add, n.output[0])
    if bias is None or walker.name(bias) not in walker.inits:
        return False
    walker.absorb(add)
    linear(walker, n, n.input[0], n.input[1], bias, 0)
    if walker.onnx_dims(n.output[0]) is not None:  # later nodes read the Add's output
        walker.same_as(add, add.output[0], n.output[0])
    else:  # the MatMul's problem covers the Add: its readers stay quiet
        walker.failed.update(add.output)
    return True


def gelu_erf_at(walker, n):
    """x / sqrt(2) (or x * (1/sqrt(2))) -> Erf -> + 1 -> * x -> * 0.5, in the orders exporters write:
    the nodes after n, or None."""
    x = n.input[0] if n.op_type == "Div" else next((v for v in n.input if walker.onnx_dims(v) is not None), None)
    if x is None or not scaled_by(walker, n, x, 1 / math.sqrt(2)):
        return None
    return gelu_tail(walker, n, x, "Erf")


@fuses("Div")
def gelu_erf_div(walker, n):
    return gelu(walker, n, gelu_erf_at(walker, n), iem.ACT_GELU)


@fuses("Mul")
def gelu_mul(walker, n):
    """x * (1/sqrt(2)) starting the Erf form, or x * x starting the tanh form's cube."""
    erf = gelu_erf_at(walker, n)
    return gelu(walker, n, erf, iem.ACT_GELU) if erf else gelu(walker, n, gelu_tanh_at(walker, n), iem.ACT_GELU_TANH)


def cube_at(walker, n):
    """x^3 as Pow(x, 3) or Mul(x, x) then Mul(x, .): (x, the node writing x^3, its nodes after n)."""
    x = n.input[0]
    if walker.onnx_dims(x) is None:
        return None
    if n.op_type == "Pow":
        return (x, n, []) if scalar(walker, n.input[1], 3.0) else None
    if list(n.input) != [x, x]:
        return None
    cube = only_reader(walker, n.output[0], ("Mul",))
    return (x, cube, [cube]) if cube is not None and other_input(cube, n.output[0]) == x else None


def gelu_tanh_at(walker, n):
    """x^3 -> * 0.044715 -> + x -> * sqrt(2/pi) -> Tanh -> + 1 -> * x -> * 0.5."""
    found = cube_at(walker, n)
    if found is None:
        return None
    x, cubed, first_nodes = found
    cube = only_reader(walker, cubed.output[0], ("Mul",))
    if cube is None or not scaled_by(walker, cube, cubed.output[0], 0.044715):
        return None
    inner = only_reader(walker, cube.output[0], ("Add",))
    if inner is None or other_input(inner, cube.output[0]) != x:
        return None
    scale = only_reader(walker, inner.output[0], ("Mul",))
    if scale is None or not scaled_by(walker, scale, inner.output[0], math.sqrt(2 / math.pi)):
        return None
    tail = gelu_tail(walker, scale, x, "Tanh")
    return (x, [*first_nodes, cube, inner, scale, *tail[1]]) if tail else None


def gelu_tail(walker, n, x, fn):
    """n's output -> fn (Erf or Tanh) -> + 1 -> times x and 0.5: (x, the nodes after n), or None."""
    f = only_reader(walker, n.output[0], (fn,))
    add = f and only_reader(walker, f.output[0], ("Add",))
    if add is None or not scalar(walker, other_input(add, f.output[0]), 1.0):
        return None
    first = only_reader(walker, add.output[0], ("Mul",))
    last = first and half_times(walker, first, x, add.output[0])
    return (x, [f, add, first, last]) if last else None


@fuses("Pow")
def gelu_tanh(walker, n):
    return gelu(walker, n, gelu_tanh_at(walker, n), iem.ACT_GELU_TANH)


def gelu(walker, n, match, kind):
    """One Activation of `kind` on x for the matched nodes, written as the last one's output."""
    if match is None:
        return False
    x, nodes = match
    for m in nodes:
        walker.absorb(m)
    activation(walker, nodes[-1], kind, x=x)
    return True


@fuses("ReduceMean")
def layer_norm_decomposed(walker, n):
    """mean = ReduceMean(x, last axis); d = x - mean; var = ReduceMean(d^2 (Pow 2 or d * d));
    y = d / Sqrt(var + eps) (or d * Reciprocal(Sqrt(..))), then * scale and + bias (initializers):
    one LayerNorm over the last axis."""
    x = n.input[0]
    dims = walker.onnx_dims(x)
    if dims is None or not last_axis_mean(walker, n, len(dims)):
        return False
    sub = only_reader(walker, n.output[0], ("Sub",))
    if sub is None or sub.input[0] != x or sub.input[1] != n.output[0]:
        return False
    d = sub.output[0]
    readers = walker.consumers(d)
    square = next((r for r in readers if walker.malformed(r) is None and (
                   (r.op_type == "Pow" and r.input[0] == d and scalar(walker, r.input[1], 2.0))
                   or (r.op_type == "Mul" and list(r.input) == [d, d]))), None)
    var = square and only_reader(walker, square.output[0], ("ReduceMean",))
    if var is None or not last_axis_mean(walker, var, len(dims)):
        return False
    add_eps = only_reader(walker, var.output[0], ("Add",))
    eps = add_eps and walker.const_value(other_input(add_eps, var.output[0]) or "")
    sqrt = add_eps and only_reader(walker, add_eps.output[0], ("Sqrt",))
    if sqrt is None or eps is None or np.asarray(eps).size != 1:
        return False
    div = only_reader(walker, sqrt.output[0], ("Div", "Reciprocal"))
    if div is not None and div.op_type == "Reciprocal":
        recip = div
        div = only_reader(walker, recip.output[0], ("Mul",))
        if div is None or other_input(div, recip.output[0]) != d:
            return False
        nodes = [recip, div]
    elif div is not None and list(div.input) == [d, sqrt.output[0]]:
        nodes = [div]
    else:
        return False
    if sorted(id(r) for r in readers) != sorted(id(r) for r in (square, nodes[-1])):
        return False
    mul = only_reader(walker, nodes[-1].output[0], ("Mul",))
    scale = mul and other_input(mul, nodes[-1].output[0])
    if scale is None or walker.name(scale) not in walker.inits:
        return False
    add = only_reader(walker, mul.output[0], ("Add",))
    bias = add and other_input(add, mul.output[0])
    bias = bias if bias and walker.name(bias) in walker.inits else None
    last = add if bias else mul
    for m in [sub, square, var, add_eps, sqrt, *nodes, mul] + ([add] if bias else []):
        walker.absorb(m)
    layer_norm(walker, n, x, -1, float(np.asarray(eps).reshape(-1)[0]), scale, bias, out_node=last)
    return True


def last_axis_mean(walker, n, rank):
    """n is a ReduceMean over the last axis only, keeping dims."""
    a = attrs(n)
    axes = walker.const_input(n, 1, a.get("axes"))
    return a.get("keepdims", 1) == 1 and axes is not None and \
        [int(v) % rank for v in np.asarray(axes).reshape(-1)] == [rank - 1]


def mask_operand(walker, n):
    """(activation, mask value) when node n combines an activation with a value computed from an
    integer input (masks.py), else None."""
    a, b = n.input[0], n.input[1]
    if walker.name(b) in walker.mask_values and walker.onnx_dims(a) is not None:
        return a, b
    if walker.name(a) in walker.mask_values and walker.onnx_dims(b) is not None:
        return b, a
    return None


@fuses("Add")
def attention_mask(walker, n):
    """scores + M -> Softmax on the last axis, M computed from an integer attention_mask [N, T]:
    whatever nodes build M (Where(mask4d, 0, -3.4e38), (1 - m) * -10000, ...), when it is 0 on the
    kept keys and at most -10^4 on the others for every head and query (masks.py checks it on probe
    masks), it is the runtime Softmax's mask input: the Cast mask, keeping its nonzero keys."""
    pair = mask_operand(walker, n)
    softmax = only_reader(walker, n.output[0], ("Softmax",))
    if pair is None:
        return False
    scores, m = pair
    if softmax is None or attrs(softmax).get("axis", -1) not in (-1, len(walker.onnx_dims(scores)) - 1):
        walker.problem(n, f"it adds '{walker.name(m)}', computed from an integer input, to an activation not "
                          "read by one Softmax on its last axis; only an attention mask on the scores is supported")
        return True
    dims = masks.batch_dims(walker, scores)
    mask = masks.recognized(walker, n, m, "a padding mask (0 on kept keys, at most -1e4 on masked ones, the same "
                            "for every head and query)", lambda v, p: masks.is_additive_padding_mask(v, p, dims))
    if mask is None:
        return True
    view = walker.rows(n, scores)
    if view is None:
        return True
    x, groups = view
    walker.absorb(softmax)
    rank = len(walker.shapes[x])
    walker.emit_view(softmax, iem.OP_SOFTMAX, [x, masks.cast(walker, mask)], walker.shapes[x], groups,
                     [rank - 1, rank - 1, iem.SOFTMAX_MASK_KEEPS_NONZERO])
    walker.failed.add(n.output[0])  # read by the Softmax only, which took it
    return True


@fuses("IsNaN")
def softmax_nan_guard(walker, n):
    """Where(IsNaN(p), 0, p) after a Softmax zeroes rows with every key masked (NaN in float); the
    runtime's masked Softmax already gives zeros there, so the pair is p itself."""
    where = only_reader(walker, n.output[0], ("Where",))
    if where is None or where.input[0] != n.output[0] or where.input[2] != n.input[0] or \
            not scalar(walker, where.input[1], 0.0) or walker.onnx_dims(n.input[0]) is None:
        return False
    walker.absorb(where)
    walker.same_as(where, where.output[0], n.input[0])
    return True


@fuses("Mul", covers=("ReduceSum",))
def masked_mean(walker, n):
    """a masked mean pooling: sum(h * m, tokens) / clip(sum(m, tokens)) over h [N, T, D] and the mask m [N, T] (Unsqueeze,
    Cast, Mul, ReduceSum, Clip, Div: sentence-transformers' mean pooling): the weights m / sum(m) are
    the runtime Softmax of the Cast mask with itself as its mask (equal logits on the kept tokens), and
    the mean is the MatMul of those weights by h."""
    pair = mask_operand(walker, n)
    if pair is None:
        return False
    h, m = pair
    total = only_reader(walker, n.output[0], ("ReduceSum",))
    dims = walker.onnx_dims(h)
    axes = None if total is None else (walker.const_input(total, 1) if walker.opset(total) >= 13
                                       else attrs(total).get("axes"))
    div = None if total is None else only_reader(walker, total.output[0], ("Div",))
    if div is None or len(dims) != 3 or dims[0] != BATCH or axes is None or \
            [int(a) % 3 for a in np.asarray(axes).reshape(-1)] != [1] or div.input[0] != total.output[0] or \
            walker.name(div.input[1]) not in walker.mask_values:
        walker.problem(n, f"it multiplies an activation by '{walker.name(m)}', computed from an integer input; only "
                          "a masked mean over the tokens (h * m summed over axis 1, divided by the sum of m) is "
                          "supported")
        return True
    b = masks.batch_dims(walker, h)
    mask = masks.recognized(walker, n, m, "the mask over the tokens",
                            lambda v, p: np.array_equal(np.broadcast_to(v, b), np.broadcast_to(p[:, :, None], b)))
    count = mask and masks.recognized(walker, n, div.input[1], "the count of kept tokens", lambda v, p: np.allclose(
        np.asarray(v, np.float64).reshape(b[0], -1), p.sum(1, keepdims=True), rtol=1e-6))
    if count not in (None, mask):
        walker.problem(n, f"the mean is weighted by input '{mask}' and divided by a count of input '{count}'")
    if count is None or count != mask:
        return True
    x = walker.activation(n, h)
    if x is None:
        return True
    for node in (total, div):
        walker.absorb(node)
    t, d = walker.shapes[x]
    cm = masks.cast(walker, mask)
    logits = walker.runtime_reshape(cm, (1, t))
    weights = walker.output(walker.fresh(n.output[0], "weights"), (1, t))
    walker.graph.add_node(weights, iem.OP_SOFTMAX, [logits, cm], [weights], [1, 1, iem.SOFTMAX_MASK_KEEPS_NONZERO])
    mean = walker.output(walker.fresh(n.output[0], "mean"), (1, d))
    walker.graph.add_node(n.name or mean, iem.OP_MATMUL, [weights, x], [mean], [0, 0])
    keep = attrs(total).get("keepdims", 1)
    walker.emit(div, iem.OP_RESHAPE, [mean], (1, d) if keep else (d,))
    return True
