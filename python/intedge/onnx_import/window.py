"""The 2-D sliding-window geometry Conv and the pools share: ONNX's auto_pad and ceil_mode become
the explicit pads the runtime takes (runtime/src/ops/ops.h: ie_window_check)."""
from .nodes import text


def window_attrs(a, kernel):
    """(strides, dilations, pads [top, left, bottom, right]) as the node states them, checked:
    2-D, positive, pads not negative (ValueError otherwise). ConvTranspose reads its own so."""
    strides = [int(v) for v in a.get("strides", [1, 1])]
    dil = [int(v) for v in a.get("dilations", [1, 1])]
    pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    if len(kernel) != 2 or len(strides) != 2 or len(dil) != 2 or len(pads) != 4:
        raise ValueError("only 2-D windows are supported")
    if min(*kernel, *strides, *dil) < 1 or min(pads) < 0:
        raise ValueError(f"kernel {kernel}, strides {strides} and dilations {dil} must be positive, pads {pads} not "
                         "negative")
    return strides, dil, pads


def window(a, in_hw, kernel, ceil_ok):
    """(strides, dilations, pads [top, left, bottom, right]) of a 2-D Conv or pool node, with
    auto_pad resolved and ceil_mode turned into extra end padding. Raises ValueError for a window
    that is not 2-D or does not fit the input."""
    strides, dil, pads = window_attrs(a, kernel)
    auto = text(a, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for ax in range(2):
            out = -(-in_hw[ax] // strides[ax])
            total = max(0, (out - 1) * strides[ax] + (kernel[ax] - 1) * dil[ax] + 1 - in_hw[ax])
            small, big = total // 2, total - total // 2
            pads[ax], pads[ax + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto != "NOTSET":
        raise ValueError(f"auto_pad={auto}")
    if a.get("ceil_mode", 0):
        for ax in range(2):
            span = (kernel[ax] - 1) * dil[ax] + 1
            padded = in_hw[ax] + pads[ax] + pads[ax + 2]
            out = -(-(padded - span) // strides[ax]) + 1
            if (out - 1) * strides[ax] >= in_hw[ax] + pads[ax]:  # a last window starting in the pad is dropped
                out -= 1
            extra = (out - 1) * strides[ax] + span - padded
            if extra > 0:
                if not ceil_ok:
                    raise ValueError("ceil_mode with count_include_pad")
                pads[ax + 2] += extra
    if min(out_hw(in_hw, kernel, strides, dil, pads)) < 1:
        raise ValueError(f"the {kernel[0]}x{kernel[1]} window does not fit the {in_hw[0]}x{in_hw[1]} input")
    return strides, dil, pads


def out_hw(in_hw, kernel, strides, dil, pads):
    return tuple((in_hw[ax] + pads[ax] + pads[ax + 2] - (kernel[ax] - 1) * dil[ax] - 1) // strides[ax] + 1
                 for ax in range(2))
