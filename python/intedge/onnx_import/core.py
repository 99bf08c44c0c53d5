"""The graph walker: reads an ONNX graph once, in node order, hands each node to the handler its
op family registered, and collects every problem before refusing, so that a user sees all the
nodes the runtime cannot train at once."""
import ctypes
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import checker, numpy_helper

from .. import iem
from ..errors import IntedgeError
from . import folding, masks, views
from .registry import COVERED, FUSIONS, HANDLERS, SUPPORTED


@dataclass
class ImportedModel:
    """An ONNX model translated for the runtime, with what export needs to write it back.

    A model imported from a file does not keep its ONNX graph while it trains (for ResNet-18 that
    is 45 MB beside a 99 MB arena): onnx_model reads the file again when export or a checkpoint
    asks, and refuses a file that changed since (onnx_sha256)."""
    onnx_proto: onnx.ModelProto  # None: read from source on demand
    iem_blob: object  # the .iem: bytes, or an iem.ReleasableBlob (then `iem` can give its weights back)
    input_name: str
    input_shape: tuple  # per sample, e.g. (1, 8, 8)
    output_name: str
    output_size: int
    param_names: list = field(default_factory=list)
    source: str = "<memory>"
    input_names: list = field(default_factory=list)  # every graph input, input_name first
    export_batch: int = None  # the batch fixed at export, re-batched by the importer (None: dynamic)
    constants: frozenset = frozenset()  # parameters made of the graph's constants: not in the file, not exported
    onnx_sha256: str = None  # the source file's digest when onnx_proto is None
    param_owners: dict = field(default_factory=dict)  # parameter -> name of the node that reads it
    metadata: dict = field(default_factory=dict)  # the model's metadata_props (export.read_metadata)

    def __post_init__(self):
        self.iem_sha256 = hashlib.sha256(self.iem).hexdigest()  # what a checkpoint records of it

    @property
    def input_size(self):
        return int(np.prod(self.input_shape))

    @property
    def iem(self):
        """The .iem bytes. Once a trainer's session holds its masters, the weights' pages are given
        back (release_weights) and this translates the graph again: what compile or a second
        trainer read, not a step."""
        blob = self.iem_blob
        if not isinstance(blob, iem.ReleasableBlob):
            return blob
        if not blob.released:
            return blob.view
        again = Walker(self.onnx_model, self.source).run().iem
        if hashlib.sha256(again).hexdigest() != self.iem_sha256:
            raise IntedgeError(f"{self.source}: translating it again gave a different .iem; import it again")
        return again

    def release_weights(self):
        """Gives the .iem's weight pages back (see `iem`); True if it could (the .iem came from
        import_onnx, which can translate the graph again)."""
        if not isinstance(self.iem_blob, iem.ReleasableBlob):
            return False
        self.iem_blob.release_weights()
        return True

    @property
    def onnx_model(self):
        """The ONNX graph (a fresh copy read from source when the import dropped it)."""
        if self.onnx_proto is not None:
            return self.onnx_proto
        model, digest = _read_onnx(self.source)
        if digest != self.onnx_sha256:
            raise IntedgeError(f"{self.source} changed since it was imported; import it again (export and "
                               "checkpoints read the original graph from it)")
        return model


def load_onnx(path):
    """Reads an ONNX file; a missing or non-ONNX file is an IntedgeError."""
    return _read_onnx(path)[0]


def _read_onnx(path):
    """(model, sha256 of the file's bytes) of an ONNX file; errors as load_onnx's."""
    p = Path(path)
    if not p.exists():
        raise IntedgeError(f"{path}: no such file; pass the path of an .onnx model")
    if p.is_dir():
        raise IntedgeError(f"{path} is a directory; pass the path of an .onnx model")
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise IntedgeError(f"{path} is not a valid ONNX model ({type(exc).__name__}); "
                           "export it with torch.onnx.export or onnx.save") from None
    if not model.graph.node:
        raise IntedgeError(f"{path} is not a valid ONNX model: its graph has no nodes")
    return model, digest


def import_onnx(model_or_path):
    """Translates an ONNX model (a path or a ModelProto) for the runtime. A model read from a path
    is released before the .iem is written, so its graph and the .iem's weights are not held at
    once (the import's peak memory), and the result reads it again on demand (onnx_model).

    Raises IntedgeError listing every node that cannot be trained (name, op_type, opset)."""
    if isinstance(model_or_path, onnx.ModelProto):
        return Walker(model_or_path, "<model>").run()
    model, digest = _read_onnx(model_or_path)
    walker = Walker(model, str(model_or_path))
    del model
    imported = walker.run(release=digest)
    del walker
    _return_freed_heap()
    return imported


def _return_freed_heap():
    """glibc keeps the heap the import freed (the parsed graph's small blocks: 8 MB of MobileNetV2's
    peak while it trains) unless asked to give it back; elsewhere nothing to do."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _check_text(model, source):
    """Every name the importer reads is text: protobuf hands over the bytes of a string field that
    is not valid UTF-8, which would otherwise surface deep in the walk."""
    g = model.graph
    names = [o.domain for o in model.opset_import] + [v.name for v in (*g.input, *g.output, *g.initializer)]
    for n in g.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)]
    if any(isinstance(v, bytes) for v in names):
        raise IntedgeError(f"{source}: a name in the graph is not valid UTF-8 text; the file is damaged")


MIN_OPSET = 7  # the oldest default-domain opset whose schemas the handlers read
INTEGER_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)  # inputs of token ids or masks
INTEGER_USES = ("integer inputs are read as token ids (Gather on a weight table), as an attention mask added to "
                "the scores before a Softmax, or as the weights of a masked mean pooling")


def _to_array(tensor):
    """An initializer's values; a tensor whose stored bytes do not fit its shape is damaged."""
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError) as exc:  # KeyError: an unknown data type
        raise IntedgeError(f"initializer '{tensor.name}' is malformed ({exc!r}); the file is damaged") from None


def _dims(value_info):
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


class Walker:
    """Builds the runtime graph from an ONNX graph. Handlers are called as handler(walker, node)
    and use what this class offers between its "for handlers" markers:

    reading: shapes (runtime tensor -> its per-sample shape), inits (initializers by name), name,
      const_value, const_input, consumers, onnx_dims;
    claiming a node's inputs: activation (laid out batch first as ONNX shapes it), rows (any
      arrangement with the ONNX last axis last: row-wise ops), view (as it is: views.py),
      batch_led (batch first, possibly merged with the next axes), param, upstream_failed;
    writing: emit (the usual one runtime node per ONNX node), emit_view (an output in a view),
      set_view, output, frozen_constant, same_as, runtime_reshape;
    refusing: problem; for fusions: absorb.

    Problems do not stop the walk: a refused node's outputs are marked failed, and its consumers
    fail quietly instead of reporting the same cause again. `inspect` reads shapes, name,
    problems and problem_nodes after run()."""

    def __init__(self, model, source):
        _check_text(model, source)
        self.model = model
        self.source = source
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self._arrays = {}  # initializer name -> its values, read once
        self.consts = {}  # value name -> numpy value known at import time (Constant nodes, folding)
        self.alias = {}  # ONNX value name -> name it stands for (Identity)
        self._consumers = {}
        for n in g.node:
            for i in n.input:
                self._consumers.setdefault(i, []).append(n)
        self.problems = []
        self.problem_nodes = {}  # node name -> reason, for inspect
        self.failed = set()  # outputs of nodes already reported: their consumers stay quiet
        self.graph = iem.Graph()
        self.shapes = {}  # runtime tensor name -> per-sample shape
        self.views = {}  # ONNX value -> (runtime tensor, groups) when it is not the tensor itself (views.py)
        self._made = 0  # runtime tensors the walker added for layouts
        self._rows = {}  # ONNX value -> what rows() laid out for it, shared by its readers
        self.absorbed = set()  # ids of nodes a fusion already emitted
        self.param_use = {}
        self.id_inputs = set()  # graph inputs of integers (token ids, attention masks): flagged ids
        self.export_batch = None  # the batch an input was exported with, when it is fixed
        self.mask_values = set()  # values computed from integer inputs (masks.py)
        self.constants = set()  # parameters frozen_constant made
        self.batch_consts = {}  # value -> a per-sample integer constant repeated over the batch (layout.expand)

    # ---- for handlers: reading ------------------------------------------------------------------
    def name(self, v):
        """The value v stands for, through aliases (Identity, a fused Add, ...)."""
        while v in self.alias:
            v = self.alias[v]
        return v

    def const_value(self, v):
        v = self.name(v)
        if v in self.consts:
            return self.consts[v]
        if v in self.inits:  # read once: a handler's look and param() share the one copy of a weight
            if v not in self._arrays:
                self._arrays[v] = _to_array(self.inits[v])
            return self._arrays[v]
        return None

    def const_input(self, n, i, default=None):
        """Node n's i-th input as a constant, or default when it is absent (None when it is there
        but not constant)."""
        if len(n.input) <= i or not n.input[i]:
            return default
        return self.const_value(n.input[i])

    def consumers(self, v):
        """The nodes that read value v."""
        return self._consumers.get(v, [])

    # ---- for handlers: claiming a node's inputs --------------------------------------------------
    def upstream_failed(self, node, names):
        """True if one of names comes from a refused node; node's outputs then fail too."""
        if any(v in self.failed for v in names):
            self.failed.update(node.output)
            return True
        return False

    def onnx_dims(self, v):
        """v's ONNX shape (the batch as folding.BATCH, possibly times other sizes), None if v is not an
        activation."""
        v = self.name(v)
        if v in self.views:
            tensor, groups = self.views[v]
            return views.dims(self.shapes[tensor], groups)
        return [folding.BATCH, *self.shapes[v]] if v in self.shapes else None

    def view(self, node, v):
        """(runtime tensor, groups) of activation v as it stands, or None."""
        v = self.name(v)
        if self.upstream_failed(node, [v]):
            return None
        if v in self.views:
            return self.views[v]
        if v in self.id_inputs:
            self.problem(node, f"it reads the integer input '{v}'; {INTEGER_USES}")
            return None
        if v not in self.shapes:
            self.problem(node, f"input '{v}' is not produced by a supported node")
            return None
        return v, views.identity(len(self.shapes[v]))

    def activation(self, node, v):
        """v as a batch-first runtime tensor whose per-sample shape is v's ONNX shape after the batch
        (one runtime Transpose and a Reshape when an exporter moved the batch), or None when node
        cannot use it."""
        view = self.view(node, v)
        if view is None:
            return None
        tensor, groups = view
        if views.is_identity(groups):
            return tensor
        out = self.laid_out(node, tensor, groups, lead=1)
        if out is None:
            return None
        tensor, groups = out
        self.views.pop(self.name(v))
        self.alias[self.name(v)] = tensor
        return tensor

    def batch_led(self, node, v):
        """v laid out in its ONNX order with the batch as the outermost part of ONNX axis 0: either
        batch first (groups[0] == (0,)) or merged with the heads (groups[0] == (0, 1): [N * h, ...]
        is runtime [N, h, ...]). Returns (tensor, groups) or None."""
        view = self.view(node, v)
        return None if view is None else self.laid_out(node, *view, lead=len(view[1][0]))

    def rows(self, node, v):
        """v as a runtime tensor whose last axis is v's last ONNX axis, the other axes in any
        arrangement: what an op on rows reads (a Linear on tokens, LayerNorm, Softmax on the last
        axis). Returns (tensor, groups), groups[-1] being that one runtime axis, or None."""
        if self.name(v) in self._rows:
            return self._rows[self.name(v)]
        view = self.view(node, v)
        if view is None:
            return None
        tensor, groups = view
        last, rank = groups[-1], len(self.shapes[tensor])
        if 0 in last or not last:
            self.problem(node, f"input '{self.name(v)}' has {'the batch in' if last else 'no'} runtime axis in its "
                               "last axis; this op works on the last axis")
            return None
        order = [a for g in groups for a in g]
        if order[-len(last):] != list(range(rank - len(last) + 1, rank + 1)):
            order = [0] + [a for a in order if a != 0]
            tensor = self._transpose(tensor, order)
            groups = views.laid_out(groups, order)
        if len(last) > 1:
            merged = (*self.shapes[tensor][:rank - len(last)], int(np.prod(self.shapes[tensor][rank - len(last):])))
            tensor = self.runtime_reshape(tensor, merged)
            groups = (*groups[:-1], (len(merged),))
        self._rows[self.name(v)] = tensor, groups
        return tensor, groups

    def laid_out(self, node, tensor, groups, lead):
        """The runtime tensor in the view's ONNX order, batch first, its first `lead` runtime axes
        making ONNX axis 0 and every other ONNX axis one runtime axis."""
        g0 = groups[0] if groups else ()
        if not g0 or g0[0] != 0 or len(g0) != lead:
            where = next((i for i, g in enumerate(groups) if 0 in g), None)
            self.problem(node, f"the batch is {'merged into' if where == 0 else 'at'} axis {where} of an input "
                               f"of ONNX shape {views.shown(views.dims(self.shapes[tensor], groups))}; this op "
                               "needs it alone as axis 0")
            return None
        order = [a for g in groups for a in g]
        if order != sorted(order):
            tensor = self._transpose(tensor, order)
            groups = views.laid_out(groups, order)
        full = views.full_shape(self.shapes[tensor])
        shape = [full[a] for a in groups[0][1:]] + [int(np.prod([full[a] for a in g])) for g in groups[1:]]
        if tuple(shape) != self.shapes[tensor]:
            tensor = self.runtime_reshape(tensor, shape or (1,))
        return tensor, ((0, *range(1, lead)), *((a,) for a in range(lead, len(shape) + 1)))

    def fresh(self, tensor, what):
        """A new runtime tensor name derived from `tensor`."""
        self._made += 1
        return f"{tensor}/{what}{self._made}"

    def _transpose(self, tensor, order):
        """A runtime Transpose of `tensor` to the runtime axis order `order` (order[0] == 0)."""
        perm = [a - 1 for a in order[1:]]
        out = self.output(self.fresh(tensor, "transposed"), [self.shapes[tensor][p] for p in perm])
        self.graph.add_node(out, iem.OP_TRANSPOSE, [tensor], [out], perm)
        return out

    def runtime_reshape(self, tensor, shape):
        """A runtime Reshape of `tensor` to the per-sample `shape` (same size)."""
        out = self.output(self.fresh(tensor, "reshaped"), shape)
        self.graph.add_node(out, iem.OP_RESHAPE, [tensor], [out])
        return out

    def param(self, node, v, shape=None, state=False):
        """Registers initializer v as a parameter (state: updated by its op, never trained)."""
        # an Identity of an initializer is an exporter's deduplication of equal values (e.g. two
        # zero biases): it becomes a parameter of its own, and export writes it back by name
        src = self.name(v)
        if src not in self.inits and src not in self.consts:
            self.problem(node, f"input '{v}' must be an initializer (a weight stored in the model)")
            return None
        if v in self.param_use:
            self.problem(node, f"weight '{v}' is shared with node '{self.param_use[v]}'; shared weights are not "
                               "supported (exporters store equal weights once, as in a fresh model: export with "
                               "torch.onnx.export(..., dynamo=True, optimize=False) or the TorchScript exporter)")
            return None
        self.param_use[v] = node.name or node.output[0]  # its owner, matched by --trainable patterns
        # exporters store weights as initializers, or (folded ones) as Constant nodes
        arr = np.asarray(self.const_value(src))
        if not np.issubdtype(arr.dtype, np.floating):
            self.problem(node, f"weight '{v}' has dtype {arr.dtype}; only float weights train")
            return None
        arr = arr.astype(np.float32, copy=False)  # one copy of the weights, not two
        self.graph.add_tensor(v, iem.KIND_PARAM, shape or arr.shape, arr, state)
        return v

    # ---- for handlers: writing -----------------------------------------------------------------
    def output(self, v, shape):
        """Declares activation v with its per-sample shape."""
        self.shapes[v] = tuple(int(d) for d in shape)
        self.graph.add_tensor(v, iem.KIND_ACTIVATION, self.shapes[v])
        return v

    def emit(self, node, op, inputs, shape, attrs=(), name=None, out=None):
        """Adds runtime op `op` for node, reading inputs and writing its first output (or `out`,
        for a piece of a node, under `name`) with the per-sample shape."""
        out = self.output(out or node.output[0], shape)
        self.graph.add_node(name or node.name or node.output[0], op, inputs, [out], attrs)
        return out

    def set_view(self, v, tensor, groups):
        """ONNX value v is runtime tensor `tensor` seen through groups."""
        if views.is_identity(groups):
            if tensor != v:
                self.alias[v] = tensor
        else:
            self.views[v] = (tensor, tuple(tuple(g) for g in groups))

    def emit_view(self, node, op, inputs, shape, groups, attrs=()):
        """Adds runtime op `op` for node writing a runtime tensor of per-sample `shape` that node's
        first output sees through groups."""
        v = node.output[0]
        out = v if views.is_identity(groups) else self.fresh(v, "runtime")
        self.output(out, shape)
        self.graph.add_node(node.name or v, op, inputs, [out], attrs)
        self.set_view(v, out, groups)
        return out

    def frozen_constant(self, v, array):
        """A constant operand as a parameter its op never trains."""
        self.graph.add_tensor(v, iem.KIND_PARAM, array.shape, array, state=True)
        self.constants.add(v)
        return v

    def same_as(self, node, v, other):
        """v is another name for other: no runtime node (Identity, a Dropout that drops nothing).
        A value that would stand for itself (Identity nodes in a cycle) is refused."""
        if self.name(other) == v:
            self.problem(node, f"'{v}' is computed from itself (the graph has a cycle)")
            return
        self.alias[v] = self.name(other)

    # ---- for handlers: refusing ----------------------------------------------------------------
    def malformed(self, node):
        """The reason node breaks its ONNX schema (a required attribute missing, an attribute of
        the wrong type, too few inputs...), or None. Handlers only ever see well-formed nodes."""
        ctx = checker.C.CheckerContext()
        try:
            ctx.ir_version = self.model.ir_version
            ctx.opset_imports = {o.domain: o.version for o in self.model.opset_import}
        except TypeError:  # the checker takes 32-bit versions (fuzz_onnx.py found one past them)
            raise IntedgeError(f"{self.source}: IR version {self.model.ir_version} or an opset version is out "
                               "of range; the file is damaged") from None
        try:
            checker.check_node(node, ctx)
        except checker.ValidationError as exc:
            return str(exc).splitlines()[0]
        except ValueError:  # the checker re-reads the node's bytes; a damaged field fails there (fuzz_onnx.py)
            return "the node's fields are damaged (the ONNX checker cannot read it)"
        if node.op_type == "Constant" and len(node.attribute) != 1:  # the checker lets this pass
            return f"a Constant holds exactly one value attribute, not {len(node.attribute)}"
        return None

    def problem(self, node, reason):
        self.problems.append(f"node '{node.name or '(unnamed)'}' ({node.op_type}): {reason}")
        self.problem_nodes[node.name or next(iter(node.output), node.op_type)] = reason
        self.failed.update(node.output)

    def absorb(self, node):
        """A fusion took node into the pattern it emitted: the walk skips it."""
        self.absorbed.add(id(node))

    # ---- the whole graph -----------------------------------------------------------------------
    def add_input(self, inp):
        """A graph input as a runtime input: float data, or integers (token ids, an attention mask)
        flagged ids. A batch fixed at export (no dynamic axis) is re-batched: export_batch."""
        dims = _dims(inp)
        ids = inp.type.tensor_type.elem_type in INTEGER_TYPES
        if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            shown = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                     for d in inp.type.tensor_type.shape.dim]
            if ids:  # token ids: text is padded to the length the model fixes
                raise IntedgeError(f"{self.source}: input '{inp.name}' has shape {shown}, so its sequence length is "
                                   "unknown; export the model with a fixed sequence length (a dynamic batch axis only)")
            raise IntedgeError(f"{self.source}: input '{inp.name}' has shape {shown}; it must be [batch, ...] with "
                               "every other dimension fixed")
        if dims[0] is not None:
            self.export_batch = dims[0]
        self.graph.add_tensor(inp.name, iem.KIND_INPUT, dims[1:], ids=ids)
        self.shapes[inp.name] = tuple(dims[1:])
        if ids:
            self.id_inputs.add(inp.name)

    def check_single_assignment(self):
        """ONNX graphs assign each value once; a value written twice (fuzz_onnx.py wrote an input
        over) would leave the walker's shapes and views describing the wrong tensor."""
        g = self.model.graph
        writer = {i.name: "the graph's inputs" for i in g.input} | {i: "the initializers" for i in self.inits}
        for n in g.node:
            for o in n.output:
                if o and o in writer:
                    raise IntedgeError(f"{self.source}: value '{o}' is written by node '{n.name or n.op_type}' and by "
                                       f"{writer[o]}; an ONNX graph assigns each value once (re-export the model)")
                writer[o] = f"node '{n.name or n.op_type}'"

    def run(self, release=None):
        """The ImportedModel; release (the source file's sha256) drops the ONNX graph before the
        .iem is written (import_onnx of a path)."""
        g = self.model.graph
        data_inputs = [i for i in g.input if i.name not in self.inits]
        if not data_inputs:
            raise IntedgeError(f"{self.source}: the graph has no data input")
        self.check_single_assignment()
        opset = next((o.version for o in self.model.opset_import if (o.domain or "") in ("", "ai.onnx")), None)
        if opset is not None and opset < MIN_OPSET:  # older schemas differ (Reshape's shape attribute, broadcast flags)
            raise IntedgeError(f"{self.source}: the model uses ONNX opset {opset}; intedge reads opset {MIN_OPSET} and "
                               "later: re-export it (torch.onnx.export(..., opset_version=17))")
        for inp in data_inputs:
            self.add_input(inp)
        inp, dims = data_inputs[0], _dims(data_inputs[0])
        self.graph.input = self.graph.index[inp.name]
        self.mask_values, static = masks.integer_derived(g, self.id_inputs, self.inits)
        evaluated = self.mask_values | static  # by folding.py or masks.py, whatever their op types
        unknown = [n for n in g.node if n.op_type not in HANDLERS and n.op_type not in folding.FOLDABLE
                   and n.op_type not in FUSIONS and n.op_type not in COVERED
                   and not all(o in evaluated for o in n.output)]
        for n in unknown:
            self.problem(n, f"operator {n.op_type} (opset {self.opset(n)}) is not supported")
        for n in g.node:  # constants first: fusions read the ones written after their first node
            if n.op_type == "Constant" and self.malformed(n) is None:  # the walk below names a malformed one
                folding.fold(self, n)
        if not unknown:
            for n in g.node:
                if id(n) in self.absorbed:
                    continue
                if (reason := self.malformed(n)) is not None:
                    self.problem(n, f"malformed node: {reason}")
                    continue
                if all(o in self.mask_values for o in n.output):
                    continue  # evaluated where a fusion reads it (masks.py)
                if self.upstream_failed(n, [self.name(i) for i in n.input if i]):
                    continue  # its cause is reported once, at the node that was refused
                if folding.fold(self, n):
                    continue
                if any(fusion(self, n) for fusion in FUSIONS.get(n.op_type, ())):
                    continue
                if reads := [i for i in n.input if self.name(i) in self.mask_values]:
                    self.problem(n, f"it reads '{reads[0]}', computed from an integer input; {INTEGER_USES}")
                    continue
                handler = HANDLERS.get(n.op_type)
                if handler is None and n.op_type in COVERED:
                    self.problem(n, f"operator {n.op_type} (opset {self.opset(n)}) is supported only as part of: "
                                    + "; ".join(f.__doc__.split(":")[0].strip() for f in COVERED[n.op_type]))
                elif handler is None:  # a foldable op on non-constant data
                    self.problem(n, f"operator {n.op_type} (opset {self.opset(n)}) on non-constant inputs is not "
                                    "supported")
                else:
                    handler(self, n)
        if self.problems:
            raise IntedgeError(f"{self.source}: intedge cannot train {len(self.problems)} node(s):\n  "
                               + "\n  ".join(self.problems)
                               + f"\nSupported operators: {', '.join(SUPPORTED)}, and {folding.SUMMARY}.")
        if len(g.output) != 1:
            raise IntedgeError(f"{self.source}: the graph has {len(g.output)} outputs; intedge trains models with one")
        out = self.name(g.output[0].name)
        if (out not in self.shapes and out not in self.views) or out == inp.name:
            raise IntedgeError(f"{self.source}: output '{g.output[0].name}' is not computed by the graph's nodes")
        if out in self.views:  # the graph's output is read batch first
            out = self.activation(next(n for n in g.node if g.output[0].name in n.output), out)
        if out is None:
            raise IntedgeError(f"{self.source}: " + self.problems[-1])
        self.graph.output = self.graph.index[out]
        params = [t.name for t in self.graph.tensors if t.kind == iem.KIND_PARAM]
        fields = (inp.name, tuple(dims[1:]), out, int(np.prod(self.shapes[out])), params, self.source,
                  [i.name for i in data_inputs], self.export_batch, frozenset(self.constants))
        metadata = {p.key: p.value for p in self.model.metadata_props}
        model = self.model
        if release is not None:  # the walker's own references to the graph go with it
            model = data_inputs = inp = g = n = None  # n: a NodeProto keeps the whole graph alive
            self.release()
        return ImportedModel(model, iem.serialize(self.graph, releasable=True), *fields, onnx_sha256=release,
                             param_owners=dict(self.param_use), metadata=metadata)

    def release(self):
        """Drops every reference to the ONNX graph; the walker keeps only the runtime graph."""
        self.model = None
        self.inits, self._arrays, self.consts, self._consumers, self.absorbed = {}, {}, {}, {}, set()

    def opset(self, n):
        domain = n.domain or ""
        for o in self.model.opset_import:
            if (o.domain or "") in (domain, "ai.onnx" if domain == "" else domain):
                return o.version
        return "?"
