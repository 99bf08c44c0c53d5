"""ONNX -> .iem: maps an ONNX graph onto the runtime's ops, with errors that name every node
the runtime cannot train."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from . import iem
from .errors import IntedgeError

SUPPORTED_OPS = ("Conv", "BatchNormalization", "Gemm", "MatMul", "Relu", "Clip (ReLU6)", "LeakyRelu", "HardSigmoid",
                 "HardSwish", "Sigmoid", "Mul", "Concat", "Transpose", "Pad (zeros)", "Resize (nearest)", "Dropout",
                 "Squeeze", "Unsqueeze", "ReduceMean (over H, W)", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Sub",
                 "Flatten", "Reshape", "Identity", "and constant shape arithmetic "
                 "(Shape, Gather, Concat, Unsqueeze, Constant, ...), which is folded")


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


BATCH = -(1 << 40)  # what a folded Shape reports for the batch dimension


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(a, name, default):
    """A string attribute (ONNX stores them as bytes)."""
    v = a.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def _window(a, in_hw, kernel, ceil_ok):
    """(strides, dilations, pads [top, left, bottom, right]) of a 2-D Conv or pool node, with
    auto_pad resolved and ceil_mode turned into extra end padding. Raises ValueError."""
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    auto = _text(a, "auto_pad", "NOTSET")
    if len(strides) != 2 or len(dil) != 2 or len(pads) != 4:
        raise ValueError("only 2-D windows are supported")
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
    return strides, dil, pads


def _out_hw(in_hw, kernel, strides, dil, pads):
    return tuple((in_hw[ax] + pads[ax] + pads[ax + 2] - (kernel[ax] - 1) * dil[ax] - 1) // strides[ax] + 1
                 for ax in range(2))


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
        self.problem_nodes = {}  # node name -> reason, for inspect
        self.failed = set()  # outputs of nodes already reported: their consumers stay quiet
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
        self.problem_nodes[node.name or node.output[0]] = reason
        self.failed.update(node.output)

    def const_value(self, v):
        v = self.name(v)
        if v in self.consts:
            return self.consts[v]
        if v in self.inits:
            return numpy_helper.to_array(self.inits[v])
        return None

    def const_input(self, n, i, default=None):
        """Node n's i-th input as a constant, or default when it is absent (None when it is there
        but not constant)."""
        if len(n.input) <= i or not n.input[i]:
            return default
        return self.const_value(n.input[i])

    def param(self, node, v, shape=None, state=False):
        """Registers initializer v as a parameter (state: updated by its op, never trained)."""
        # an Identity of an initializer is an exporter's deduplication of equal values (e.g. two
        # zero biases): it becomes a parameter of its own, and export writes it back by name
        src = self.name(v)
        if src not in self.inits and src not in self.consts:
            self.problem(node, f"input '{v}' must be an initializer (a weight stored in the model)")
            return None
        if v in self.param_use:
            self.problem(node, f"weight '{v}' is shared with node '{self.param_use[v]}'; shared weights are not supported")
            return None
        self.param_use[v] = node.name
        # exporters store weights as initializers, or (folded ones) as Constant nodes
        arr = numpy_helper.to_array(self.inits[src]) if src in self.inits else np.asarray(self.consts[src])
        if not np.issubdtype(arr.dtype, np.floating):
            self.problem(node, f"weight '{v}' has dtype {arr.dtype}; only float weights train")
            return None
        arr = arr.astype(np.float32)
        self.graph.add_tensor(v, iem.KIND_PARAM, shape or arr.shape, arr, state)
        return v

    def activation(self, node, v):
        v = self.name(v)
        if v in self.failed:
            self.failed.update(node.output)
            return None
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
            self.binary(n, iem.BINARY_ADD)

    def node_Conv(self, n):
        x = self.activation(n, n.input[0])
        w = self.const_value(n.input[1])
        if x is None:
            return
        if len(self.shapes[x]) != 3 or w is None or w.ndim != 4:
            self.problem(n, "only 2-D convolutions of [C, H, W] inputs with an initializer weight are supported")
            return
        a = _attrs(n)
        cin, h, wd = self.shapes[x]
        group = int(a.get("group", 1))
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        try:
            strides, dil, pads = _window(a, (h, wd), kernel, True)
        except ValueError as exc:
            self.problem(n, str(exc))
            return
        if w.shape[1] * group != cin or w.shape[0] % group:
            self.problem(n, f"weight {list(w.shape)} with group {group} does not fit {cin} input channels")
            return
        ho, wo = _out_hw((h, wd), kernel, strides, dil, pads)
        ins = [x, self.param(n, n.input[1])]
        if len(n.input) > 2 and n.input[2]:
            ins.append(self.param(n, n.input[2]))
        if None in ins:
            return
        attrs = [group, *kernel, *strides, *dil, pads[0], pads[1], pads[2], pads[3]]
        self.graph.add_node(n.name or n.output[0], iem.OP_CONV, ins, [self.output(n.output[0], (w.shape[0], ho, wo))],
                            attrs)

    def pool(self, n, op, kernel, a, include_pad=0):
        x = self.activation(n, n.input[0])
        if x is None:
            return
        if len(self.shapes[x]) != 3:
            self.problem(n, "only 2-D pooling of [C, H, W] inputs is supported")
            return
        if len(n.output) > 1 and n.output[1]:
            self.problem(n, "the Indices output is not supported")
            return
        if a.get("storage_order", 0):
            self.problem(n, "storage_order=1 is not supported")
            return
        c, h, w = self.shapes[x]
        try:
            strides, dil, pads = _window(a, (h, w), kernel, not include_pad)
        except ValueError as exc:
            self.problem(n, str(exc))
            return
        if pads[0] >= kernel[0] or pads[2] >= kernel[0] or pads[1] >= kernel[1] or pads[3] >= kernel[1]:
            self.problem(n, "pads must be smaller than the window")
            return
        ho, wo = _out_hw((h, w), kernel, strides, dil, pads)
        attrs = [*kernel, *strides, *dil, *pads, include_pad]
        self.graph.add_node(n.name or n.output[0], op, [x], [self.output(n.output[0], (c, ho, wo))], attrs)

    def node_MaxPool(self, n):
        a = _attrs(n)
        self.pool(n, iem.OP_MAXPOOL, list(a["kernel_shape"]), a)

    def node_AveragePool(self, n):
        a = _attrs(n)
        self.pool(n, iem.OP_AVGPOOL, list(a["kernel_shape"]), a, int(a.get("count_include_pad", 0)))

    def node_GlobalAveragePool(self, n):
        x = self.activation(n, n.input[0])
        if x is None:
            return
        if len(self.shapes[x]) == 3:
            self.pool(n, iem.OP_AVGPOOL, list(self.shapes[x][1:]), {})
        else:
            self.problem(n, "only [C, H, W] inputs are supported")

    def node_ReduceMean(self, n):
        """A mean over H and W with kept dims (what exporters make of adaptive_avg_pool2d(x, 1))."""
        x = self.activation(n, n.input[0])
        if x is None:
            return
        a = _attrs(n)
        axes = self.const_input(n, 1, a.get("axes"))
        axes = sorted(int(v) % 4 for v in np.asarray(axes).reshape(-1)) if axes is not None else None
        if len(self.shapes[x]) != 3 or axes != [2, 3]:
            self.problem(n, "only a mean over the H and W axes of [C, H, W] is supported")
            return
        c, h, w = self.shapes[x]
        if a.get("keepdims", 1):
            self.pool(n, iem.OP_AVGPOOL, [h, w], {})
            return
        # keepdims=0: pool to [C, 1, 1], then view it as [C]
        pooled = n.output[0] + "/pooled"
        self.graph.add_node((n.name or n.output[0]) + "/pool", iem.OP_AVGPOOL, [x], [self.output(pooled, (c, 1, 1))],
                            [h, w, 1, 1, 1, 1, 0, 0, 0, 0, 0])
        self.reshape_to(n, pooled, (c,))

    def binary(self, n, kind):
        """Add/Sub/Mul: an activation with an activation or a constant, numpy broadcasting over
        the per-sample shapes (the batch must not broadcast)."""
        names = [self.name(v) for v in n.input[:2]]
        if any(v in self.failed for v in names):
            self.failed.update(n.output)
            return
        acts = [v in self.shapes for v in names]
        if not any(acts):
            self.problem(n, "at least one input must be an activation")
            return
        if not acts[0]:  # a constant first: swap (Sub then negates, which the runtime cannot do in place)
            if kind == iem.BINARY_SUB:
                self.problem(n, "constant minus activation is not supported")
                return
            names.reverse()
            acts.reverse()
        a, b = names
        if a == b:
            self.problem(n, "both inputs are the same tensor")
            return
        shape_a = self.shapes[a]
        if acts[1]:
            shape_b = self.shapes[b]
        else:
            const = self.const_value(b)
            if const is None:
                self.problem(n, f"input '{b}' is neither an activation nor a constant")
                return
            const = np.asarray(const, np.float32)
            if const.ndim == len(shape_a) + 1 and const.shape[0] == 1:  # a leading batch axis of 1
                const = const.reshape(const.shape[1:])
            shape_b = const.shape or (1,)
            b = f"{n.name or n.output[0]}/constant"
            self.graph.add_tensor(b, iem.KIND_PARAM, shape_b, const.reshape(shape_b), state=True)
        try:
            out = tuple(np.broadcast_shapes(tuple(shape_a), tuple(shape_b)))
        except ValueError:
            self.problem(n, f"shapes {list(shape_a)} and {list(shape_b)} do not broadcast")
            return
        if len(shape_b) > len(shape_a) and acts[1] is False:
            self.problem(n, "the constant has more dimensions than the activation")
            return
        self.graph.add_node(n.name or n.output[0], iem.OP_BINARY, [a, b], [self.output(n.output[0], out)], [kind])

    def node_Mul(self, n):
        self.binary(n, iem.BINARY_MUL)

    def node_BatchNormalization(self, n):
        from .runtime import dyadic

        x = self.activation(n, n.input[0])
        if x is None:
            return
        if any(o and self.consumers.get(o) for o in n.output[1:]):
            self.problem(n, "the running-statistics outputs are read by other nodes")
            return
        c = self.shapes[x][0]
        a = _attrs(n)
        for name in n.input[1:5]:
            arr = self.const_value(name)
            if arr is None or arr.size != c:
                self.problem(n, f"'{name}' must be an initializer of {c} values")
                return
        ins = [x, self.param(n, n.input[1]), self.param(n, n.input[2]),
               self.param(n, n.input[3], state=True), self.param(n, n.input[4], state=True)]
        if None in ins:
            return
        eps, mom = dyadic(a.get("epsilon", 1e-5)), dyadic(a.get("momentum", 0.9))
        self.graph.add_node(n.name or n.output[0], iem.OP_BATCHNORM, ins, [self.output(n.output[0], self.shapes[x])],
                            [eps.m, eps.e, mom.m, mom.e])

    def activation_node(self, n, kind, p0=None, p1=None, flags=0):
        from .runtime import dyadic

        x = self.activation(n, n.input[0])
        if x is None:
            return
        d0, d1 = dyadic(p0 or 0.0), dyadic(p1 or 0.0)
        self.graph.add_node(n.name or n.output[0], iem.OP_ACTIVATION, [x], [self.output(n.output[0], self.shapes[x])],
                            [kind, d0.m, d0.e, d1.m, d1.e, flags])

    def node_Clip(self, n):
        a = _attrs(n)
        bounds = []
        for i, name in ((1, "min"), (2, "max")):
            v = self.const_input(n, i, a.get(name))
            if v is None and len(n.input) > i and n.input[i]:
                self.problem(n, f"{name} must be a constant")
                return
            bounds.append(None if v is None else float(np.asarray(v).reshape(-1)[0]))
        lo, hi = bounds
        if lo is None and hi is None:
            self.alias[n.output[0]] = self.name(n.input[0])
            return
        if lo == 0.0 and hi is None:
            self.node_Relu(n)
            return
        self.activation_node(n, iem.ACT_CLIP, lo, hi, (lo is not None) | ((hi is not None) << 1))

    def node_LeakyRelu(self, n):
        self.activation_node(n, iem.ACT_LEAKY_RELU, _attrs(n).get("alpha", 0.01))

    def node_HardSigmoid(self, n):
        a = _attrs(n)
        self.activation_node(n, iem.ACT_HARD_SIGMOID, a.get("alpha", 0.2), a.get("beta", 0.5))

    def node_HardSwish(self, n):
        self.activation_node(n, iem.ACT_HARD_SWISH)

    def node_Sigmoid(self, n):
        self.activation_node(n, iem.ACT_SIGMOID)

    def node_Squeeze(self, n):
        self.squeeze_like(n)

    def node_Unsqueeze(self, n):
        self.squeeze_like(n)

    def squeeze_like(self, n):
        """Squeeze/Unsqueeze of an activation: a view, its output shape from the axes."""
        x = self.activation(n, n.input[0])
        if x is None:
            return
        a = _attrs(n)
        axes = self.const_input(n, 1, a.get("axes"))
        full = [1, *self.shapes[x]]  # the batch as 1 while counting axes
        if axes is None:
            out = [d for d in full if d != 1] if n.op_type == "Squeeze" else None
        else:
            axes = [int(v) for v in np.asarray(axes).reshape(-1)]
            if n.op_type == "Squeeze":
                rank = len(full)
                drop = {v % rank for v in axes}
                if 0 in drop or any(full[v] != 1 for v in drop):
                    out = None
                else:
                    out = [d for i, d in enumerate(full) if i not in drop]
            else:
                rank = len(full) + len(axes)
                ins = sorted(v % rank for v in axes)
                out = list(full)
                for v in ins:
                    out.insert(v, 1)
                if 0 in ins:
                    out = None
        if out is None or len(out) < 2:
            self.problem(n, "only squeezing or unsqueezing non-batch axes is supported")
            return
        self.reshape_to(n, x, tuple(out[1:]))

    def node_Sub(self, n):
        self.binary(n, iem.BINARY_SUB)

    def node_Dropout(self, n):
        """Dropout trains with a seeded mask and is the identity in evaluation."""
        from .runtime import dyadic

        if len(n.output) > 1 and n.output[1] and self.consumers.get(n.output[1]):
            self.problem(n, "the mask output is not supported")
            return
        r = self.const_input(n, 1, _attrs(n).get("ratio", 0.5))
        if r is None:
            self.problem(n, "the ratio must be a constant")
            return
        ratio = float(r)
        x = self.activation(n, n.input[0])
        if x is None:
            return
        if ratio <= 0:
            self.alias[n.output[0]] = x
            return
        if ratio >= 1:
            self.problem(n, f"ratio {ratio} drops everything")
            return
        keep = min(max(int(round((1 - ratio) * 2**32)), 1), 2**32 - 1)
        scale = dyadic(1.0 / (1.0 - ratio))
        self.graph.add_node(n.name or n.output[0], iem.OP_DROPOUT, [x], [self.output(n.output[0], self.shapes[x])],
                            [keep - 2**32 if keep >= 2**31 else keep, scale.m, scale.e])

    def node_Concat(self, n):
        xs = [self.activation(n, v) for v in n.input]
        if None in xs:
            return
        rank = len(self.shapes[xs[0]]) + 1
        axis = int(_attrs(n)["axis"]) % rank
        if axis == 0 or any(len(self.shapes[v]) + 1 != rank for v in xs) or len(xs) > iem.MAX_INPUTS:
            self.problem(n, f"only concatenating up to {iem.MAX_INPUTS} tensors along a non-batch axis is supported")
            return
        out = list(self.shapes[xs[0]])
        out[axis - 1] = sum(self.shapes[v][axis - 1] for v in xs)
        self.graph.add_node(n.name or n.output[0], iem.OP_CONCAT, xs, [self.output(n.output[0], out)], [axis - 1])

    def node_Transpose(self, n):
        x = self.activation(n, n.input[0])
        if x is None:
            return
        rank = len(self.shapes[x]) + 1
        perm = list(_attrs(n).get("perm", range(rank - 1, -1, -1)))
        if perm[0] != 0:
            self.problem(n, f"perm {perm} moves the batch axis")
            return
        inner = [p - 1 for p in perm[1:]]
        out = [self.shapes[x][p] for p in inner]
        self.graph.add_node(n.name or n.output[0], iem.OP_TRANSPOSE, [x], [self.output(n.output[0], out)], inner)

    def node_Pad(self, n):
        x = self.activation(n, n.input[0])
        if x is None:
            return
        a = _attrs(n)
        mode = _text(a, "mode", "constant")
        pads = self.const_input(n, 1, a.get("pads"))
        v = self.const_input(n, 2, np.float32(a.get("value", 0.0)))
        value = None if v is None else (float(np.asarray(v).reshape(-1)[0]) if np.asarray(v).size else 0.0)
        rank = len(self.shapes[x]) + 1
        if pads is None or mode != "constant" or value != 0.0 or (len(n.input) > 3 and n.input[3]):
            self.problem(n, "only constant zero padding with constant pads over all axes is supported")
            return
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        if len(pads) != 2 * rank or pads[0] or pads[rank] or min(pads) < 0:
            self.problem(n, f"pads {pads} must leave the batch alone and not crop")
            return
        before, after = pads[1:rank], pads[rank + 1:]
        out = [d + b + e for d, b, e in zip(self.shapes[x], before, after)]
        attrs = before + [0] * (6 - len(before)) + after
        self.graph.add_node(n.name or n.output[0], iem.OP_PAD, [x], [self.output(n.output[0], out)], attrs)

    def node_Resize(self, n):
        x = self.activation(n, n.input[0])
        if x is None:
            return
        a = _attrs(n)
        mode = _text(a, "mode", "nearest")
        scales, sizes = self.const_input(n, 2), self.const_input(n, 3)
        shape = self.shapes[x]
        if len(shape) == 3 and sizes is not None and np.asarray(sizes).size == 4:
            sz = [int(v) for v in np.asarray(sizes).reshape(-1)]
            scales = [1, 1, sz[2] / shape[1], sz[3] / shape[2]]
        ok = mode == "nearest" and len(shape) == 3 and scales is not None and np.asarray(scales).size == 4
        sc = [float(v) for v in np.asarray(scales).reshape(-1)] if ok else []
        if not ok or sc[0] != 1 or sc[1] != 1 or any(v != int(v) or v < 1 for v in sc[2:]):
            self.problem(n, "only nearest resizing of [C, H, W] by integer factors is supported")
            return
        sh, sw = int(sc[2]), int(sc[3])
        self.graph.add_node(n.name or n.output[0], iem.OP_RESIZE, [x],
                            [self.output(n.output[0], (shape[0], shape[1] * sh, shape[2] * sw))], [sh, sw])

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
        if _attrs(n).get("allowzero", 0) and 0 in target:
            self.problem(n, "allowzero=1 with a 0 in the target shape")
            return
        per_sample = self.shapes[x]
        numel = int(np.prod(per_sample))
        # ONNX: 0 copies the input's dimension at that index, -1 is inferred (at most once)
        rest = [per_sample[i] if d == 0 and i < len(per_sample) else d for i, d in enumerate(target[1:])]
        if any(d < -1 for d in rest):
            self.problem(n, f"target shape {target} uses the batch size beyond the first dimension")
            return
        batch_ok = target and (target[0] in (0, BATCH) or (target[0] == -1 and -1 not in rest))
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
        unknown = [n for n in g.node if not hasattr(self, f"node_{n.op_type}") and not self.foldable(n)]
        for n in unknown:
            self.problem(n, f"operator {n.op_type} (opset {self.opset(n)}) is not supported")
        if not unknown:
            for n in g.node:
                if self.fold(n):
                    continue
                handler = getattr(self, f"node_{n.op_type}", None)
                if handler is None:  # a foldable op on non-constant data
                    self.problem(n, f"operator {n.op_type} (opset {self.opset(n)}) on non-constant inputs is not "
                                    "supported")
                else:
                    handler(n)
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

    # ---- constant folding: the exporters' shape plumbing ---------------------------------------
    def foldable(self, n):
        """True if n could only ever compute constants (statically, before shapes are known)."""
        return n.op_type in ("Shape", "Gather", "Cast", "CastLike", "Slice", "Range", "ConstantOfShape", "Div", "Floor",
                             "Ceil", "Equal", "Where", "Expand")

    def fold(self, n):
        """Evaluates n when all its inputs are constants (Shape: when its input's shape is known),
        recording the outputs as constants. Returns True if n was folded."""
        if n.op_type == "Constant":
            self.node_Constant(n)
            return True
        if n.op_type == "Shape":
            x = self.name(n.input[0])
            if x not in self.shapes:
                return False
            a = _attrs(n)
            full = np.array([BATCH, *self.shapes[x]], np.int64)
            self.consts[n.output[0]] = full[a.get("start", 0):a.get("end", len(full))]
            return True
        inputs = [self.const_value(i) if i else None for i in n.input]
        if n.op_type in ("Identity",) or any(v is None for v, name in zip(inputs, n.input) if name):
            return False
        if not n.input or n.op_type in ("Dropout",):
            return False
        from onnx.reference import ReferenceEvaluator

        graph = onnx.helper.make_graph(
            [n], "fold", [onnx.helper.make_tensor_value_info(i, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                          for i, v in zip(n.input, inputs) if i],
            [onnx.helper.make_value_info(o, onnx.TypeProto()) for o in n.output])
        model = onnx.helper.make_model(graph, opset_imports=self.model.opset_import)
        try:
            outs = ReferenceEvaluator(model).run(None, {i: v for i, v in zip(n.input, inputs) if i})
        except Exception as exc:
            self.problem(n, f"constant folding failed ({type(exc).__name__})")
            return True
        for o, v in zip(n.output, outs):
            self.consts[o] = np.asarray(v)
        return True

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
