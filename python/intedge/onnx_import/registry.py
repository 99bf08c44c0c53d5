"""Every ONNX op type the importer handles, collected from the @handles and @fuses tags of the op
family modules: one module per runtime/src/ops/ file, under the same name, plus the pattern
fusions. Adding an op: a tagged handler in its family module. Adding a family: one entry here."""
from . import (activation, batchnorm, binary, conv, conv_transpose, elementwise, embedding, fusions, gemm, layernorm,
               layout, pool, softmax)

FAMILIES = (activation, batchnorm, binary, conv, conv_transpose, elementwise, embedding, gemm, layernorm, layout, pool,
            softmax, fusions)


def _tagged(family, tag):
    """The functions family defines (not those it imports) that carry tag, in definition order."""
    return [(fn, getattr(fn, tag)) for fn in vars(family).values()
            if hasattr(fn, tag) and getattr(fn, "__module__", None) == family.__name__]


def build(families):
    """(handlers: op type -> handler, supported: the qualified names the refusal message lists,
    fusions: op type -> the patterns that may start at such a node, in the order they are tried,
    covered: op type without a handler -> the patterns that absorb it).
    An op type claimed by two handlers is a ValueError."""
    handlers, supported, fusions, covered = {}, [], {}, {}
    for family in families:
        for fn, ops in _tagged(family, "onnx_ops"):
            for op_type, shown in ops:
                if op_type in handlers:
                    raise ValueError(f"{op_type} is handled by both {handlers[op_type].__module__}."
                                     f"{handlers[op_type].__name__} and {fn.__module__}.{fn.__name__}")
                handlers[op_type] = fn
                supported.append(shown)
        for fn, op_type in _tagged(family, "fuses"):
            fusions.setdefault(op_type, []).append(fn)
            for other in fn.covers:
                covered.setdefault(other, []).append(fn)
    return handlers, supported, fusions, covered


HANDLERS, SUPPORTED, FUSIONS, COVERED = build(FAMILIES)
