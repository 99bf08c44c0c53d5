"""Constant folding of the exporters' shape arithmetic: `x.view(x.size(0), -1)` exports as
Shape, Gather, Unsqueeze, Concat and Reshape. Everything but the Reshape computes constants once
the per-sample shapes are known, so the walker evaluates it here (with onnx's reference
evaluator) instead of asking the runtime for ops it would only ever run on constants."""
import numpy as np
import onnx
from onnx import numpy_helper

from .nodes import attrs

BATCH = -(1 << 40)  # what a folded Shape reports for the batch dimension

# op types that could only ever compute constants here (statically, before shapes are known)
FOLDABLE = ("Constant", "Shape", "Gather", "Cast", "CastLike", "Slice", "Range", "ConstantOfShape", "Div", "Floor",
            "Ceil", "Equal", "Where", "Expand", "Mod")
# the largest constant folding makes (elements): shape arithmetic is tiny, weights are stored
MAX_FOLDED = 1 << 26
# ops whose reference evaluation costs more than their output (a window or a product per element):
# not folded, since exporters fold these themselves (fuzz_onnx.py's long run: a Conv of a weight padded
# by 2^16 had a 50-million-element output, another by 2^31 - 1 an empty one, and onnx's evaluator
# allocated past 2 GB for either)
CONTRACTIONS = ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MatMul", "MatMulInteger", "QLinearMatMul",
                "Gemm", "Einsum", "MaxPool", "AveragePool", "LpPool")
# how the refusal message's list of supported operators ends
SUMMARY = "constant shape arithmetic (Shape, Gather, Concat, Unsqueeze, Constant, ...), which is folded"


def evaluator(model):
    """onnx's reference evaluator for model, with GatherElements as numpy's take_along_axis (onnx
    1.2x's reshapes the result wrongly when the indices are narrower than the data)."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        def _run(self, data, indices, axis=None):
            axis = (axis or 0) % data.ndim
            return (np.take_along_axis(data, np.where(indices < 0, indices + data.shape[axis], indices), axis),)

    return ReferenceEvaluator(model, new_ops=[GatherElements])


def constant(n):
    """The value of a Constant node."""
    a = n.attribute[0]
    return numpy_helper.to_array(a.t) if a.name == "value" else np.asarray(onnx.helper.get_attribute_value(a))


def _malformed_or_huge(model, inputs):
    """Why the reference evaluator must not run the one-node model (a fuzzed pooling's kernel of
    -2^31 made it allocate gigabytes), or None: onnx's shape inference checks the attributes and
    sizes the outputs before anything is allocated. Small inputs go in as initializers, so sizes
    that come from values (ConstantOfShape, Range, Expand) are known too."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), i) for i, v in inputs.items()
                                   if np.size(v) <= 64)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True, data_prop=True)
    except Exception as exc:
        return f"the node is malformed ({str(exc).splitlines()[-1].strip()[:200]})"
    for o in inferred.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
        if all(d is not None for d in dims) and np.prod(dims, dtype=object) > MAX_FOLDED:
            return f"its output '{o.name}' would hold {np.prod(dims, dtype=object)} elements"
    return None


def fold(w, n):
    """Evaluates n when all its inputs are constants (Shape: when its input's shape is known),
    recording its outputs in w.consts. Returns True if n was folded."""
    if n.op_type == "Constant":
        w.consts[n.output[0]] = constant(n)
        return True
    if n.op_type == "Shape":
        c = w.const_value(n.input[0])
        full = w.onnx_dims(n.input[0]) if c is None else list(np.shape(c))
        if full is None:
            return False
        a = attrs(n)
        full = np.array(full, np.int64)
        w.consts[n.output[0]] = full[a.get("start", 0):a.get("end", len(full))]
        return True
    inputs = [w.const_value(i) if i else None for i in n.input]
    if n.op_type == "CastLike" and inputs[0] is not None and w.onnx_dims(n.input[1]) is not None:
        w.consts[n.output[0]] = np.asarray(inputs[0], np.float32)  # like an activation: float
        return True
    if n.op_type == "Expand" and inputs[1] is not None and (np.asarray(inputs[1]) <= BATCH).any():
        return False  # repeated over the batch: an activation (layout.py)
    if n.op_type == "Expand" and w.name(n.input[0]) in w.inits and inputs[0].dtype.kind == "f":
        return False  # a weight (the class token) repeated over a batch a fixed-batch export baked in: layout.py
    if n.op_type == "Gather" and w.name(n.input[0]) in w.inits and inputs[0].dtype.kind == "f":
        return False  # rows of a weight table (position embeddings): trained, embedding.py
    if n.op_type in ("Identity", "Dropout") or not n.input or any(v is None for v, i in zip(inputs, n.input) if i):
        return False
    if n.op_type in CONTRACTIONS:
        w.problem(n, f"constant folding refused: {n.op_type} is not folded, it costs more than its output; fold it "
                     "when exporting (torch.onnx.export(..., do_constant_folding=True))")
        return True
    graph = onnx.helper.make_graph(
        [n], "fold", [onnx.helper.make_tensor_value_info(i, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for i, v in zip(n.input, inputs) if i],
        [onnx.helper.make_value_info(o, onnx.TypeProto()) for o in n.output])
    model = onnx.helper.make_model(graph, opset_imports=w.model.opset_import)
    too_big = _malformed_or_huge(model, {i: v for i, v in zip(n.input, inputs) if i})
    if too_big:
        w.problem(n, f"constant folding refused: {too_big}")
        return True
    try:
        outs = evaluator(model).run(None, {i: v for i, v in zip(n.input, inputs) if i})
    except Exception as exc:
        w.problem(n, f"constant folding failed ({type(exc).__name__})")
        return True
    for o, v in zip(n.output, outs):
        w.consts[o] = np.asarray(v)
    return True
