"""Patterns of several ONNX nodes that become one runtime op. Each starts at the node its @fuses
tag names, is tried before that node's own handler, and absorbs the other nodes it covers."""
from .gemm import linear
from .nodes import fuses


@fuses("MatMul")
def matmul_add_bias(walker, n):
    """A MatMul whose only reader adds an initializer (how exporters write nn.Linear): one Gemm
    with a bias."""
    users = walker.consumers(n.output[0])
    if len(users) != 1 or users[0].op_type != "Add" or len(users[0].input) != 2:
        return False
    add = users[0]
    bias = add.input[1] if add.input[0] == n.output[0] else add.input[0]
    if bias not in walker.inits:
        return False
    walker.absorb(add)
    linear(walker, n, n.input[0], n.input[1], bias, 0)
    if n.output[0] in walker.shapes:  # later nodes read the Add's output
        walker.same_as(add, add.output[0], n.output[0])
    else:  # the MatMul's problem covers the Add: its readers stay quiet
        walker.failed.update(add.output)
    return True
