"""What every op module shares: the tags the registry collects from its handlers, and reading a
node's attributes. Kept apart from the walker so that op modules never import it."""
import numpy as np
import onnx

from ..errors import IntedgeError


def handles(*op_types, note=None):
    """Tags fn(walker, node) as the handler of these ONNX op types. `note` qualifies the op in the
    refusal message's list of supported operators, e.g. "Pad (zeros)"."""
    def tag(fn):
        fn.onnx_ops = [(t, f"{t} ({note})" if note else t) for t in op_types]
        return fn
    return tag


def fuses(op_type, covers=()):
    """Tags fn(walker, node) -> bool as a pattern that starts at an op_type node. The walker tries
    it before that op's handler; it returns True when it matched and took the node, claiming the
    pattern's other nodes with walker.absorb. `covers`: op types the runtime has no op for that
    the pattern absorbs (ReduceSum in a masked mean): supported there only."""
    def tag(fn):
        fn.fuses = op_type
        fn.covers = covers
        return fn
    return tag


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def text(a, name, default):
    """A string attribute (ONNX stores them as bytes; bytes that are not UTF-8 become U+FFFD, a
    value no handler accepts)."""
    v = a.get(name, default)
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def int_values(n, value, what):
    """A constant the schema types as integers (a shape, sizes, pads) as a list of ints; a float
    one, NaN or not, is a damaged file (fuzz_onnx.py found int(nan) raising ValueError)."""
    a = np.asarray(value)
    if a.dtype.kind not in "iub":
        raise IntedgeError(f"node '{n.name}' ({n.op_type}): its {what} must be integers, not {a.dtype}; "
                           "the file is damaged")
    return [int(v) for v in a.reshape(-1)]
