"""atheris harness of the ONNX importer: the input as a serialized ModelProto through import_onnx,
then the .iem it produces through the C loader (Model). Anything but an IntedgeError escapes and
fails the run (atheris keeps the input as crash-*).

Byte mutations of a protobuf mostly break its framing, so half of the mutations are structural
(mutate_model): the input is parsed and one field the importer reads is changed (an attribute, a
dim, an edge, an op type, a node or initializer dropped or doubled) and serialized again.
tools/fuzz/run.sh runs it with the other harnesses: python tools/fuzz/fuzz_onnx.py [libFuzzer
options] CORPUS_DIR SEED_DIR (the seeds are the tests' ONNX models, tools/fuzz/make_seeds.py)."""
import random
import sys

import atheris
import onnx
from google.protobuf.message import DecodeError

with atheris.instrument_imports(include=["intedge"]):
    from intedge import IntedgeError, Model
    from intedge.onnx_import import import_onnx

OP_TYPES = ["Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "AveragePool", "Concat", "Flatten", "Identity",
            "BatchNormalization", "Transpose", "Reshape", "Softmax", "Mul", "GlobalAveragePool", "Sigmoid"]
EDGE_INTS = [-(2**63), -(2**31) - 1, -(2**31), -1, 0, 1, 2, 3, 7, 2**16, 2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1]


def parse(data):
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None
    return m


def some_int(rng, old):
    """An edge value, or old nudged (inside int64: the field's type)."""
    v = rng.choice(EDGE_INTS) if rng.random() < 0.5 else old + rng.randint(-3, 3)
    return min(max(v, -(2**63)), 2**63 - 1)


def mutate_model(m, rng):
    """One structural edit of m, in place."""
    g = m.graph
    nodes = list(g.node)
    names = [v.name for v in (*g.input, *g.initializer)] + [o for n in nodes for o in n.output] + [""]
    kind = rng.randrange(8)
    if kind == 0 and nodes:  # an attribute's int(s)
        attrs = [a for n in nodes for a in n.attribute if a.ints or a.type == onnx.AttributeProto.INT]
        if attrs:
            a = rng.choice(attrs)
            if a.ints:
                k = rng.randrange(len(a.ints))
                a.ints[k] = some_int(rng, a.ints[k])
                if rng.random() < 0.2:
                    del a.ints[rng.randrange(len(a.ints))]
            else:
                a.i = some_int(rng, a.i)
    elif kind == 1:  # a dim of an input, output or initializer
        dims = [v.type.tensor_type.shape.dim for v in (*g.input, *g.output)]
        dims = [d for ds in dims for d in ds]
        if dims and rng.random() < 0.5:
            rng.choice(dims).dim_value = max(0, some_int(rng, 1))
        elif g.initializer:
            t = rng.choice(g.initializer)
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = some_int(rng, t.dims[0])
    elif kind == 2 and nodes:  # an edge rewired
        n = rng.choice(nodes)
        field = n.input if n.input and rng.random() < 0.7 else n.output
        if field:
            field[rng.randrange(len(field))] = rng.choice(names)
    elif kind == 3 and nodes:
        rng.choice(nodes).op_type = rng.choice(OP_TYPES)
    elif kind == 4 and nodes:
        del g.node[rng.randrange(len(nodes))]
    elif kind == 5 and nodes:
        g.node.insert(rng.randrange(len(nodes) + 1), rng.choice(nodes))
    elif kind == 6 and g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]
    elif kind == 7 and nodes:  # an input added or dropped
        n = rng.choice(nodes)
        if n.input and rng.random() < 0.5:
            del n.input[rng.randrange(len(n.input))]
        else:
            n.input.append(rng.choice(names))


def custom_mutator(data, max_size, seed):
    rng = random.Random(seed)
    m = parse(data) if rng.random() < 0.5 else None
    if m is None:
        return atheris.Mutate(data, max_size)
    try:
        for _ in range(rng.randint(1, 3)):
            mutate_model(m, rng)
        out = m.SerializeToString()
    except (UnicodeDecodeError, ValueError):  # a name that is not UTF-8, a value past its field's type
        return atheris.Mutate(data, max_size)
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


def test_one_input(data):
    m = parse(data)
    if m is None:  # load_onnx refuses what does not parse (tests/python/test_mutations.py)
        return
    try:
        Model(import_onnx(m).iem)
    except IntedgeError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
