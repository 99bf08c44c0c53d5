"""Values computed from integer graph inputs (an attention mask): exporters build the additive mask
of the attention scores and the weights of a masked mean through long integer subgraphs (Cast,
Unsqueeze, Range, GatherElements, Equal, Where, And, Expand, Sub, Mul by -10000, ...), which differ
from one exporter and library version to the next. The importer does not run them node by node:
it evaluates such a value on probe masks (onnx's reference evaluator, at import time) and checks
what it computes, so fusions.py can map it onto the runtime's Softmax mask or masked mean."""
import numpy as np
import onnx

from .. import iem
from . import folding, views

PROBES = 3  # random masks each recognized value is checked on


def integer_derived(graph, id_inputs, inits):
    """(the values computed from integer inputs and constants only, not through a weight table
    (embedding.py); the values computed from constants only: a Shape reads only a shape)."""
    derived, static = set(id_inputs), set(inits)
    for n in graph.node:
        if n.op_type == "Constant" or (n.op_type == "Shape" and (n.input[0] in id_inputs or n.input[0] not in derived)):
            static.update(n.output)
            continue
        ins = [i for i in n.input if i]
        if n.op_type == "Gather" and ins and ins[0] in inits:
            continue  # an embedding: an activation
        if all(i in static or i in derived for i in ins):
            (derived if any(i in derived for i in ins) else static).update(n.output)
    return derived - set(id_inputs), static


def probe_masks(walker, inputs, seed):
    """A random 0/1 mask for each integer input, every row holding a 1 (a row with no token is
    degenerate in every library), at the export batch or 3."""
    rng = np.random.default_rng(seed)
    batch = walker.export_batch or 3
    feeds = {}
    for name in inputs:
        m = (rng.random((batch, *walker.shapes[name])) < 0.6).astype(np.int64)
        m.reshape(batch, -1)[:, 0] = 1
        feeds[name] = m
    return feeds


def _batch(d, batch):
    k, b = views.split_batch(int(d))
    return k * batch ** b


def evaluate(walker, v, seed=0):
    """(value of v, the integer inputs fed) for probe masks; None when v reads an activation other
    than through its Shape, or the evaluator cannot run it."""
    producer = {o: n for n in walker.model.graph.node for o in n.output}
    nodes, feeds, seen, stack = [], {}, set(), [walker.name(v)]
    inputs = set()
    while stack:
        x = stack.pop()
        if x in seen or not x or x in walker.inits:
            continue
        seen.add(x)
        if x in walker.id_inputs:
            inputs.add(x)
            continue
        n = producer.get(x)
        if n is None:
            return None
        if n.op_type == "Shape" and walker.onnx_dims(n.input[0]) is not None:  # of an activation or an input
            if x not in walker.consts:
                return None
            feeds[x] = np.array([_batch(d, walker.export_batch or 3) for d in np.asarray(walker.consts[x])], np.int64)
            continue
        if x not in walker.mask_values and x not in walker.consts and n.op_type != "Constant":
            return None  # an activation
        nodes.append(n)
        stack.extend(n.input)
    feeds.update(probe_masks(walker, sorted(inputs), seed))
    order = {id(n): i for i, n in enumerate(walker.model.graph.node)}
    nodes = sorted({id(n): n for n in nodes}.values(), key=lambda n: order[id(n)])
    used = {i for n in nodes for i in n.input}
    graph = onnx.helper.make_graph(
        nodes, "probe",
        [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for k, a in feeds.items()],
        [onnx.helper.make_value_info(walker.name(v), onnx.TypeProto())],
        [walker.inits[i] for i in used if i in walker.inits])
    model = onnx.helper.make_model(graph, opset_imports=walker.model.opset_import)
    try:
        out = folding.evaluator(model).run(None, {k: a for k, a in feeds.items()})[0]
    except Exception:  # noqa: BLE001 - whatever the evaluator cannot run is not recognized
        return None
    return np.asarray(out), {k: feeds[k] for k in inputs}


def recognized(walker, n, v, what, computes):
    """The integer input that value v (read by node n) is computed from, when v reads exactly one
    integer input of per-sample shape [T] and computes(value, mask [B, T]) holds on every probe
    mask; else a problem naming node n (what v should be) and None."""
    runs = [evaluate(walker, v, seed) for seed in range(PROBES)]
    if any(r is None for r in runs):
        walker.problem(n, f"'{walker.name(v)}' ({what}) is computed from an integer input by nodes the importer "
                          "cannot evaluate")
        return None
    names = list(runs[0][1])
    if len(names) != 1 or len(walker.shapes[names[0]]) != 1:
        walker.problem(n, f"'{walker.name(v)}' ({what}) reads the integer inputs {names}; one mask input of shape "
                          "[batch, tokens] is supported")
        return None
    if not all(computes(value, feeds[names[0]]) for value, feeds in runs):
        walker.problem(n, f"'{walker.name(v)}' is not {what} of input '{names[0]}'; only that is supported")
        return None
    return names[0]


def cast(walker, name):
    """The integer input `name` as an int8 activation (its values 0/1: a mask), once per input."""
    out = f"{name}/int8"
    if out not in walker.shapes:
        walker.output(out, walker.shapes[name])
        walker.graph.add_node(out, iem.OP_CAST, [name], [out])
    return out


def batch_dims(walker, v):
    """v's ONNX dims with the probes' batch in place of N."""
    return [_batch(d, walker.export_batch or 3) for d in walker.onnx_dims(v)]


def is_additive_padding_mask(value, mask, dims):
    """value, broadcast to the scores' dims [B, ..., T], is 0 where mask[b, t] is 1 and at most
    -10^4 (or -inf) where it is 0, along the keys (the last axis), the same for every head and query."""
    try:
        value = np.broadcast_to(value, dims)
    except ValueError:
        return False
    if dims[0] != mask.shape[0] or dims[-1] != mask.shape[1]:
        return False
    keep = np.broadcast_to(mask.reshape(mask.shape[0], *[1] * (len(dims) - 2), mask.shape[1]) != 0, dims)
    return bool((value[keep] == 0).all() and (value[~keep] <= -1e4).all())

