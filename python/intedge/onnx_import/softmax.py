"""Softmax onto the runtime's Softmax (runtime/src/ops/softmax.c): on the last axis of any layout
(attention scores [N, heads, T, T]), or along another axis of the batch-first layout."""
from .. import iem
from .nodes import attrs, handles


@handles("Softmax")
def softmax(walker, n):
    view = walker.view(n, n.input[0])
    if view is None:
        return
    rank = len(view[1])
    # opset < 13 normalizes the flattened axes from `axis` on (default 1): the same on the last axis
    axis = attrs(n).get("axis", -1 if walker.opset(n) >= 13 else 1) % rank
    if axis == 0 or (walker.opset(n) < 13 and axis != rank - 1):
        walker.problem(n, f"axis {axis} {'is the batch' if axis == 0 else 'with opset < 13 spans several axes'}; "
                          "a softmax along one axis after the batch is supported")
        return
    if axis == rank - 1:
        x, groups = walker.rows(n, n.input[0]) or (None, None)
        if x is not None:
            walker.emit_view(n, iem.OP_SOFTMAX, [x], walker.shapes[x], groups, [len(walker.shapes[x]) - 1, 0, 0])
        return
    x = walker.activation(n, n.input[0])
    if x is not None:
        walker.emit(n, iem.OP_SOFTMAX, [x], walker.shapes[x], [axis - 1, 0, 0])
