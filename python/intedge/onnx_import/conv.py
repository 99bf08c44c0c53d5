"""Conv onto the runtime's Conv (runtime/src/ops/conv.c): 2-D, grouped and depthwise, with
explicit pads."""
from .. import iem
from .nodes import attrs, handles
from .window import out_hw, window


def data_and_weight(walker, n, what):
    """(the [C, H, W] activation, the rank-4 initializer weight, the attributes, group, kernel)
    of a Conv-like node, or None after reporting the problem."""
    x = walker.activation(n, n.input[0])
    weight = walker.const_value(n.input[1])
    if x is None:
        return None
    if len(walker.shapes[x]) != 3 or weight is None or weight.ndim != 4:
        walker.problem(n, f"only 2-D {what} of [C, H, W] inputs with an initializer weight are supported")
        return None
    a = attrs(n)
    return x, weight, a, int(a.get("group", 1)), [int(v) for v in a.get("kernel_shape", weight.shape[2:])]


def params(walker, n, x):
    """The node's inputs as the runtime takes them: X, W and the bias if there is one (None
    after a problem)."""
    ins = [x, walker.param(n, n.input[1])]
    if len(n.input) > 2 and n.input[2]:
        ins.append(walker.param(n, n.input[2]))
    return None if None in ins else ins


@handles("Conv")
def conv(walker, n):
    found = data_and_weight(walker, n, "convolutions")
    if found is None:
        return
    x, weight, a, group, kernel = found
    cin, h, wd = walker.shapes[x]
    try:
        strides, dil, pads = window(a, (h, wd), kernel, True)
    except ValueError as exc:
        walker.problem(n, str(exc))
        return
    if group < 1 or weight.shape[1] * group != cin or weight.shape[0] % group:
        walker.problem(n, f"weight {list(weight.shape)} with group {group} does not fit {cin} input channels")
        return
    ho, wo = out_hw((h, wd), kernel, strides, dil, pads)
    ins = params(walker, n, x)
    if ins is None:
        return
    walker.emit(n, iem.OP_CONV, ins, (weight.shape[0], ho, wo), [group, *kernel, *strides, *dil, *pads])
