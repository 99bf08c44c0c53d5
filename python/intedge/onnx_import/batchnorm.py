"""BatchNormalization onto the runtime's BatchNorm (runtime/src/ops/batchnorm.c): scale and bias
train, the running statistics are state the op updates."""
from .. import iem
from ..runtime import dyadic
from .nodes import attrs, handles


@handles("BatchNormalization")
def batch_normalization(walker, n):
    x = walker.activation(n, n.input[0])
    if x is None:
        return
    if any(o and walker.consumers(o) for o in n.output[1:]):
        walker.problem(n, "the running-statistics outputs are read by other nodes")
        return
    c = walker.shapes[x][0]
    a = attrs(n)
    for name in n.input[1:5]:
        arr = walker.const_value(name)
        if arr is None or arr.size != c:
            walker.problem(n, f"'{name}' must be an initializer of {c} values")
            return
    ins = [x, walker.param(n, n.input[1]), walker.param(n, n.input[2]),
           walker.param(n, n.input[3], state=True), walker.param(n, n.input[4], state=True)]
    if None in ins:
        return
    eps, mom = dyadic(a.get("epsilon", 1e-5)), dyadic(a.get("momentum", 0.9))
    walker.emit(n, iem.OP_BATCHNORM, ins, walker.shapes[x], [eps.m, eps.e, mom.m, mom.e])
