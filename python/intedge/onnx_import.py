"""ONNX -> .iem: maps an ONNX graph onto the runtime's ops, with errors that name every node
the runtime cannot train."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from . import iem
from .errors import IntedgeError

SUPPORTED_OPS = ("Gemm", "MatMul", "Add (as a MatMul bias)", "Relu", "Flatten", "Reshape", "Identity", "Constant")


@dataclass
class ImportedModel:
    """An ONNX model translated for the runtime, with what export needs to write it back."""
    onnx_model: onnx.ModelProto
    iem: bytes
    input_name: str
    input_shape: tuple  # per sample, e.g. (1, 8, 8)
    output_name: str
    output_size: int
    param_names: list = field(default_factory=list)
    source: str = "<memory>"

    @property
    def input_size(self):
        return int(np.prod(self.input_shape))


def load_onnx(path):
    """Reads an ONNX file; a missing or non-ONNX file is an IntedgeError."""
    p = Path(path)
    if not p.exists():
        raise IntedgeError(f"{path}: no such file; pass the path of an .onnx model")
    if p.is_dir():
        raise IntedgeError(f"{path} is a directory; pass the path of an .onnx model")
    try:
        model = onnx.load_model(str(p))
    except Exception as exc:  # protobuf raises several types for garbage input
        raise IntedgeError(f"{path} is not a valid ONNX model ({type(exc).__name__}); "
                           "export it with torch.onnx.export or onnx.save") from None
    if not model.graph.node:
        raise IntedgeError(f"{path} is not a valid ONNX model: its graph has no nodes")
    return model


def _dims(value_info):
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


class _Importer:
    def __init__(self, model, source):
        self.model = model
        self.source = source
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.consts = {}
        self.alias = {}  # ONNX value name -> name it stands for (Identity)
        self.consumers = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.problems = []
        self.graph = iem.Graph()
        self.shapes = {}  # value name -> per-sample shape
        self.fused = set()  # names of Add nodes folded into a MatMul
        self.param_use = {}

    def name(self, v):
        while v in self.alias:
            v = self.alias[v]
        return v

    def problem(self, node, reason):
        self.problems.append(f"node '{node.name or '(unnamed)'}' ({node.op_type}): {reason}")

    def const_value(self, v):
        v = self.name(v)
        if v in self.consts:
            return self.consts[v]
        if v in self.inits:
            return numpy_helper.to_array(self.inits[v])
        return None

    def param(self, node, v, shape=None):
        """Registers initializer v as a trainable parameter."""
        if v not in self.inits:
            self.problem(node, f"input '{v}' must be an initializer (a weight stored in the model)")
            return None
        if v in self.param_use:
            self.problem(node, f"weight '{v}' is shared with node '{self.param_use[v]}'; shared weights are not supported")
            return None
        self.param_use[v] = node.name
        arr = numpy_helper.to_array(self.inits[v])
        if not np.issubdtype(arr.dtype, np.floating):
            self.problem(node, f"weight '{v}' has dtype {arr.dtype}; only float weights train")
            return None
        arr = arr.astype(np.float32)
        self.graph.add_tensor(v, iem.KIND_PARAM, shape or arr.shape, arr)
        return v

    def activation(self, node, v):
        v = self.name(v)
        if v not in self.shapes:
            self.problem(node, f"input '{v}' is not produced by a supported node")
            return None
        return v

    def output(self, v, shape):
        self.shapes[v] = tuple(int(d) for d in shape)
        self.graph.add_tensor(v, iem.KIND_ACTIVATION, self.shapes[v])
        return v

    # ---- ops -----------------------------------------------------------------------------------
    def gemm(self, n, x, w, b, w_is_mk):
        x = self.activation(n, x)
        if x is None:
            return
        wa = self.const_value(w)
        if wa is None or wa.ndim != 2:
            self.problem(n, "the weight must be a 2-D initializer")
            return
        k = int(np.prod(self.shapes[x]))
        m_out, k_w = (wa.shape if w_is_mk else wa.shape[::-1])
        if k_w != k:
            self.problem(n, f"the weight {list(wa.shape)} does not take {k} input features")
            return
        ins = [x, self.param(n, w)]
        if b is not None:
            ba = self.const_value(b)
            if ba is None or ba.size != m_out:
                self.problem(n, f"the bias must be an initializer of {m_out} values")
                return
            ins.append(self.param(n, b))
        if None in ins:
            return
        self.graph.add_node(n.name or n.output[0], iem.OP_GEMM, ins, [self.output(n.output[0], (m_out,))], [w_is_mk])

    def node_Gemm(self, n):
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            self.problem(n, "only transA=0, alpha=1 and beta=1 are supported")
            return
        self.gemm(n, n.input[0], n.input[1], n.input[2] if len(n.input) > 2 and n.input[2] else None,
                  int(a.get("transB", 0)))

    def node_MatMul(self, n):
        bias = None
        users = self.consumers.get(n.output[0], [])
        if len(users) == 1 and users[0].op_type == "Add":
            add = users[0]
            other = add.input[1] if add.input[0] == n.output[0] else add.input[0]
            if other in self.inits:
                bias = other
                self.fused.add(id(add))
        if bias is None:
            self.gemm(n, n.input[0], n.input[1], None, 0)
            return
        self.gemm(n, n.input[0], n.input[1], bias, 0)
        # the fused Add's output is what later nodes read
        if n.output[0] in self.shapes:
            self.alias[add.output[0]] = n.output[0]

    def node_Add(self, n):
        if id(n) not in self.fused:
            self.problem(n, "Add is supported only as the bias of a MatMul (residual Add comes with CNN support)")

    def node_Relu(self, n):
        x = self.activation(n, n.input[0])
        if x is not None:
            self.graph.add_node(n.name or n.output[0], iem.OP_RELU, [x], [self.output(n.output[0], self.shapes[x])])

    def reshape_to(self, n, x, shape):
        self.graph.add_node(n.name or n.output[0], iem.OP_RESHAPE, [x], [self.output(n.output[0], shape)])

    def node_Flatten(self, n):
        x = self.activation(n, n.input[0])
        axis = next((onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 1)
        if x is None:
            return
        if axis != 1:
            self.problem(n, f"axis={axis}; only axis=1 (keep the batch) is supported")
            return
        self.reshape_to(n, x, (int(np.prod(self.shapes[x])),))

    def node_Reshape(self, n):
        x = self.activation(n, n.input[0])
        target = self.const_value(n.input[1])
        if x is None:
            return
        if target is None:
            self.problem(n, "the target shape must be a constant")
            return
        target = [int(t) for t in np.asarray(target).reshape(-1)]
        per_sample = self.shapes[x]
        numel = int(np.prod(per_sample))
        # ONNX: 0 copies the input's dimension at that index, -1 is inferred (at most once)
        rest = [per_sample[i] if d == 0 and i < len(per_sample) else d for i, d in enumerate(target[1:])]
        batch_ok = target and (target[0] == 0 or (target[0] == -1 and -1 not in rest))
        if not batch_ok or rest.count(-1) > 1:
            self.problem(n, f"target shape {target} does not keep the batch as its first dimension")
            return
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            if known <= 0 or numel % known:
                self.problem(n, f"target shape {target} does not fit {numel} values per sample")
                return
            rest[rest.index(-1)] = numel // known
        if int(np.prod(rest)) != numel or any(d <= 0 for d in rest):
            self.problem(n, f"target shape {target} does not fit {numel} values per sample")
            return
        self.reshape_to(n, x, tuple(rest) or (1,))

    def node_Identity(self, n):
        self.alias[n.output[0]] = self.name(n.input[0])

    def node_Constant(self, n):
        self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t) if n.attribute[0].name == "value" else \
            np.asarray(onnx.helper.get_attribute_value(n.attribute[0]))

    # ---- the whole graph -----------------------------------------------------------------------
    def run(self):
        g = self.model.graph
        data_inputs = [i for i in g.input if i.name not in self.inits]
        if len(data_inputs) != 1:
            raise IntedgeError(f"{self.source}: the graph has {len(data_inputs)} data inputs; intedge trains "
                               "models with exactly one")
        inp = data_inputs[0]
        dims = _dims(inp)
        if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            raise IntedgeError(f"{self.source}: input '{inp.name}' has shape {dims}; it must be [batch, ...] with "
                               "every other dimension fixed")
        self.graph.input = self.graph.add_tensor(inp.name, iem.KIND_INPUT, dims[1:])
        self.shapes[inp.name] = tuple(dims[1:])
        unknown = [n for n in g.node if not hasattr(self, f"node_{n.op_type}")]
        for n in unknown:
            self.problem(n, f"operator {n.op_type} (opset {self.opset(n)}) is not supported")
        if not unknown:
            for n in g.node:
                getattr(self, f"node_{n.op_type}")(n)
        if self.problems:
            raise IntedgeError(f"{self.source}: intedge cannot train {len(self.problems)} node(s):\n  "
                               + "\n  ".join(self.problems)
                               + f"\nSupported operators: {', '.join(SUPPORTED_OPS)}.")
        if len(g.output) != 1:
            raise IntedgeError(f"{self.source}: the graph has {len(g.output)} outputs; intedge trains models with one")
        out = self.name(g.output[0].name)
        if out not in self.shapes or out == inp.name:
            raise IntedgeError(f"{self.source}: output '{g.output[0].name}' is not computed by the graph's nodes")
        self.graph.output = self.graph.index[out]
        params = [t.name for t in self.graph.tensors if t.kind == iem.KIND_PARAM]
        return ImportedModel(self.model, iem.serialize(self.graph), inp.name, tuple(dims[1:]), out,
                             int(np.prod(self.shapes[out])), params, self.source)

    def opset(self, n):
        domain = n.domain or ""
        for o in self.model.opset_import:
            if (o.domain or "") in (domain, "ai.onnx" if domain == "" else domain):
                return o.version
        return "?"


def import_onnx(model_or_path):
    """Translates an ONNX model (a path or a ModelProto) for the runtime.

    Raises IntedgeError listing every node that cannot be trained (name, op_type, opset)."""
    if isinstance(model_or_path, onnx.ModelProto):
        model, source = model_or_path, "<model>"
    else:
        model, source = load_onnx(model_or_path), str(model_or_path)
    return _Importer(model, source).run()
