"""Writer of .iem model files (docs/format.md). The C loader is the authority on validity;
this module only lays out bytes."""
import mmap
import struct
import weakref
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import IntedgeError

MAGIC = b"IEM1"
VERSION = 1
HEADER_SIZE = 40
TENSOR_SIZE = 48
NODE_SIZE = 120
MAX_INPUTS = 8
MAX_ATTRS = 16
MAX_RANK = 6

KIND_INPUT, KIND_PARAM, KIND_ACTIVATION = 0, 1, 2
# the op set, numbered as runtime/src/internal.h numbers it
(OP_GEMM, OP_RELU, OP_RESHAPE, OP_CONV, OP_MAXPOOL, OP_AVGPOOL, OP_BINARY, OP_CONCAT, OP_BATCHNORM, OP_ACTIVATION,
 OP_TRANSPOSE, OP_PAD, OP_RESIZE, OP_DROPOUT) = range(1, 15)
OP_LAYERNORM = 15  # X, scale, [bias]; attrs: per-sample axis, epsilon (m, e)
OP_SOFTMAX = 16  # X, [mask]; attrs: per-sample axis, mask offset, mask flags (ops/softmax.c)
SOFTMAX_MASK_KEEPS_NONZERO = 1  # mask flag: its nonzero elements attend (else they are masked)
OP_MATMUL, OP_PARAM_BROADCAST, OP_EMBEDDING, OP_CAST = 17, 18, 19, 20
OP_SLICE = 21  # X; attrs: per-sample axis, start (the output's length along the axis)
OP_CONV_TRANSPOSE = 22  # X, W [Cin, Cout/group, kh, kw], [B]; attrs as OP_CONV's
# the op enum's names (IE_OP_<NAME>), for firmware that registers only its model's ops
OP_NAMES = {OP_GEMM: "GEMM", OP_RELU: "RELU", OP_RESHAPE: "RESHAPE", OP_CONV: "CONV", OP_MAXPOOL: "MAXPOOL",
            OP_AVGPOOL: "AVGPOOL", OP_BINARY: "BINARY", OP_CONCAT: "CONCAT", OP_BATCHNORM: "BATCHNORM",
            OP_ACTIVATION: "ACTIVATION", OP_TRANSPOSE: "TRANSPOSE", OP_PAD: "PAD", OP_RESIZE: "RESIZE",
            OP_DROPOUT: "DROPOUT", OP_LAYERNORM: "LAYERNORM", OP_SOFTMAX: "SOFTMAX", OP_MATMUL: "MATMUL",
            OP_PARAM_BROADCAST: "PARAM_BROADCAST", OP_EMBEDDING: "EMBEDDING", OP_CAST: "CAST",
            OP_SLICE: "SLICE", OP_CONV_TRANSPOSE: "CONV_TRANSPOSE"}
BINARY_ADD, BINARY_SUB, BINARY_MUL = range(3)
# OP_ACTIVATION kinds, as runtime/src/ops/ops.h numbers them (Pow: p0 = the exponent)
(ACT_CLIP, ACT_LEAKY_RELU, ACT_HARD_SIGMOID, ACT_HARD_SWISH, ACT_SIGMOID, ACT_GELU, ACT_GELU_TANH, ACT_TANH, ACT_ERF,
 ACT_SQRT, ACT_RECIPROCAL, ACT_POW) = range(12)


@dataclass
class Tensor:
    name: str
    kind: int
    shape: tuple  # per-sample for inputs and activations, full for parameters
    data: np.ndarray = None  # parameters: float32
    state: bool = False  # a parameter its op updates, never trained (BatchNorm running statistics)
    ids: bool = False  # an input of int32 integers (token ids, attention masks)


@dataclass
class Node:
    name: str
    op: int
    inputs: list
    outputs: list
    attrs: list = field(default_factory=list)


@dataclass
class Graph:
    tensors: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    index: dict = field(default_factory=dict)
    input: int = 0  # the first graph input; every KIND_INPUT tensor is one, in table order
    output: int = 0

    def add_tensor(self, name, kind, shape, data=None, state=False, ids=False):
        if name in self.index:
            return self.index[name]
        shape = tuple(int(d) for d in shape) or (1,)
        self.index[name] = len(self.tensors)
        self.tensors.append(Tensor(name, kind, shape, data, state, ids))
        return self.index[name]

    def add_node(self, name, op, inputs, outputs, attrs=()):
        self.nodes.append(Node(name, op, [self.index[i] for i in inputs], [self.index[o] for o in outputs], list(attrs)))


def serialize(g, releasable=False):
    """The .iem bytes for graph g. The weights are copied once, into the result: the pieces are
    joined by one bytes.join (ResNet-18's 45 MB would otherwise be held two or three times at the
    import's peak), or written into a ReleasableBlob."""
    base = HEADER_SIZE + TENSOR_SIZE * len(g.tensors) + NODE_SIZE * len(g.nodes)
    pieces, end = [], base  # the string area: names and weights, in order, from offset base

    def put(blob, align=1):
        nonlocal end
        if end % align:
            pieces.append(bytes(align - end % align))
            end += align - end % align
        pieces.append(blob)
        off, end = end, end + len(blob)
        return off

    def put_name(name):
        raw = name.encode()
        return put(raw + b"\0"), len(raw)

    trecs = bytearray()
    for t in g.tensors:
        if len(t.shape) > MAX_RANK:
            raise ValueError(f"tensor {t.name}: rank {len(t.shape)} above {MAX_RANK}")
        name_off, name_len = put_name(t.name)
        data_off = data_len = 0
        if t.kind == KIND_PARAM:
            raw = memoryview(np.ascontiguousarray(t.data, dtype="<f4")).cast("B")
            data_off, data_len = put(raw, 4), len(raw)
        if not all(0 <= d < 2**32 for d in t.shape):
            raise IntedgeError(f"tensor '{t.name}': shape {list(t.shape)} does not fit the runtime's 32-bit dims")
        dims = list(t.shape) + [0] * (MAX_RANK - len(t.shape))
        flags = int(t.state) | int(t.ids) << 1
        trecs += struct.pack("<BBH6IIIIII", t.kind, len(t.shape), flags, *dims, name_off, name_len, data_off, data_len, 0)
    nrecs = bytearray()
    for n in g.nodes:
        name_off, name_len = put_name(n.name)
        ins = n.inputs + [0] * (MAX_INPUTS - len(n.inputs))
        outs = n.outputs + [0] * (2 - len(n.outputs))
        if not all(-(2**31) <= a < 2**31 for a in n.attrs):  # a stride or an axis from a damaged file
            raise IntedgeError(f"node '{n.name}': an attribute in {n.attrs} does not fit the runtime's 32 bits")
        attrs = n.attrs + [0] * (MAX_ATTRS - len(n.attrs))
        nrecs += struct.pack("<HBB8I2I16iIII", n.op, len(n.inputs), len(n.outputs), *ins, *outs, *attrs,
                             name_off, name_len, 0)
    body = [struct.pack("<IIIIII", len(g.tensors), len(g.nodes), g.input, g.output, HEADER_SIZE,
                        HEADER_SIZE + TENSOR_SIZE * len(g.tensors)), trecs, nrecs, *pieces]
    crc = 0
    for piece in body:
        crc = zlib.crc32(piece, crc)
    pieces = [MAGIC, struct.pack("<HHII", VERSION, HEADER_SIZE, end, crc), *body]
    return ReleasableBlob(pieces, end) if releasable else b"".join(pieces)


class _WeightsMap(mmap.mmap):
    """The map behind a ReleasableBlob; runtime.Model records itself in `borrowers` when it
    loads from it (a memoryview's .obj), so that the release reaches every C model reading it."""

    def __init__(self, *args, **kwargs):
        self.borrowers = weakref.WeakSet()


def backing_map(buffer):
    """The map behind a ReleasableBlob's view, else None. runtime.Model keeps the map itself and
    records itself in its borrowers: a memoryview exported to cffi cannot be cleared by the
    garbage collector (tearing down a cycle, it crashed the interpreter at exit)."""
    owner = buffer.obj if isinstance(buffer, memoryview) else None
    return owner if isinstance(owner, _WeightsMap) and buffer.nbytes == len(owner) else None


class ReleasableBlob:
    """.iem bytes in their own anonymous memory map, so that the pages of the trained parameters'
    float weights can go back to the OS once the sessions have their masters (release_weights;
    the runtime's ie_model_release_weights). `view` is a read-only memoryview (compares, hashes
    and joins like bytes)."""

    def __init__(self, pieces, size):
        # private: MADV_DONTNEED frees its pages (a shared map would only unmap them, its pages kept)
        private = {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_PRIVATE") else {}
        self._map = _WeightsMap(-1, size, **private)
        for piece in pieces:
            self._map.write(piece)
        self.view = memoryview(self._map).toreadonly()
        self.released = False

    def __len__(self):
        return len(self._map)

    def release_weights(self):
        """Gives back every whole page inside a trained parameter's data (the float weights the
        sessions copied). Reading them afterwards gives zeros, so every runtime model loaded from
        these bytes releases them first (it then refuses new sessions). Where madvise is missing
        (not Linux) the pages stay."""
        for model in list(self._map.borrowers):
            model.release_weights()
        self.released = True
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        for off, length in weight_spans(self.view):
            start, stop = -(-off // mmap.PAGESIZE) * mmap.PAGESIZE, (off + length) // mmap.PAGESIZE * mmap.PAGESIZE
            if stop > start:
                self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _tables(blob):
    """(tensor count, node count, tensor table offset, node table offset) from an .iem header:
    serialize's six counts and offsets after the magic, version, header size, end and CRC."""
    n_tensors, n_nodes, _, _, tensor_table, node_table = struct.unpack_from("<IIIIII", blob, 16)
    return n_tensors, n_nodes, tensor_table, node_table


def weight_spans(blob):
    """(offset, length) of the float data of every parameter a session copies into its masters:
    all but the state ones, which ops may read while they run (constant token ids)."""
    n_tensors, _, table, _ = _tables(blob)
    spans = []
    for i in range(n_tensors):
        rec = table + i * TENSOR_SIZE
        kind, flags = blob[rec], struct.unpack_from("<H", blob, rec + 2)[0]
        off, length = struct.unpack_from("<II", blob, rec + 36)
        if kind == KIND_PARAM and not flags & 1:
            spans.append((off, length))
    return spans


def op_codes(blob):
    """The op codes the nodes of an .iem buffer (written by serialize) use."""
    _, n_nodes, _, node_table = _tables(blob)
    return {struct.unpack_from("<H", blob, node_table + i * NODE_SIZE)[0] for i in range(n_nodes)}
