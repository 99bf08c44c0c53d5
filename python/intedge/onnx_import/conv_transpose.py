"""ConvTranspose onto the runtime's ConvTranspose (runtime/src/ops/conv_transpose.c): 2-D, grouped,
with explicit pads, dilation and output padding (below the stride)."""
from .. import iem
from .conv import data_and_weight, params
from .nodes import handles, text
from .window import window_attrs


@handles("ConvTranspose")
def conv_transpose(walker, n):
    found = data_and_weight(walker, n, "transposed convolutions")
    if found is None:
        return
    x, weight, a, group, kernel = found
    cin, h, wd = walker.shapes[x]
    if text(a, "auto_pad", "NOTSET") != "NOTSET" or "output_shape" in a:
        walker.problem(n, "auto_pad and output_shape are not supported; export with explicit pads and output_padding")
        return
    try:
        strides, dil, pads = window_attrs(a, kernel)
    except ValueError as exc:
        walker.problem(n, str(exc))
        return
    extra = [int(v) for v in a.get("output_padding", [0, 0])]
    if len(extra) != 2 or min(extra) < 0:
        walker.problem(n, f"output_padding {extra} must be two values, not negative")
        return
    if any(e >= s for e, s in zip(extra, strides)):
        walker.problem(n, f"output_padding {extra} must be below the strides {strides}")
        return
    if group < 1 or weight.shape[0] != cin or cin % group:
        walker.problem(n, f"weight {list(weight.shape)} with group {group} does not fit {cin} input channels")
        return
    out = [(size - 1) * strides[ax] - pads[ax] - pads[ax + 2] + dil[ax] * (kernel[ax] - 1) + 1 + extra[ax]
           for ax, size in enumerate((h, wd))]
    if min(out) < 1:
        walker.problem(n, f"the pads {pads} leave no output")
        return
    ins = params(walker, n, x)
    if ins is None:
        return
    walker.emit(n, iem.OP_CONV_TRANSPOSE, ins, (weight.shape[1] * group, *out),
                [group, *kernel, *strides, *dil, *pads])
