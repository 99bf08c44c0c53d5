"""Conv onto the runtime's Conv (runtime/src/ops/conv.c): 2-D, grouped and depthwise, with
explicit pads."""
from .. import iem
from .nodes import attrs, handles
from .window import out_hw, window


@handles("Conv")
def conv(walker, n):
    x = walker.activation(n, n.input[0])
    weight = walker.const_value(n.input[1])
    if x is None:
        return
    if len(walker.shapes[x]) != 3 or weight is None or weight.ndim != 4:
        walker.problem(n, "only 2-D convolutions of [C, H, W] inputs with an initializer weight are supported")
        return
    a = attrs(n)
    cin, h, wd = walker.shapes[x]
    group = int(a.get("group", 1))
    kernel = list(a.get("kernel_shape", weight.shape[2:]))
    try:
        strides, dil, pads = window(a, (h, wd), kernel, True)
    except ValueError as exc:
        walker.problem(n, str(exc))
        return
    if group < 1 or weight.shape[1] * group != cin or weight.shape[0] % group:
        walker.problem(n, f"weight {list(weight.shape)} with group {group} does not fit {cin} input channels")
        return
    ho, wo = out_hw((h, wd), kernel, strides, dil, pads)
    ins = [x, walker.param(n, n.input[1])]
    if len(n.input) > 2 and n.input[2]:
        ins.append(walker.param(n, n.input[2]))
    if None in ins:
        return
    walker.emit(n, iem.OP_CONV, ins, (weight.shape[0], ho, wo), [group, *kernel, *strides, *dil, *pads])
