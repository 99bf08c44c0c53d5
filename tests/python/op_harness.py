"""Runs a small graph built with intedge.iem through a real session created with keep_tensors, so
a test can read any tensor's int8 data and gradient after a step whose output gradient it chose
(intedge_testing.h: ie_test_step_from_output_grad, ie_test_tensor). A new op's test compares its
integer forward and backward with float64 autograd on exactly the int8 values the op read."""
import numpy as np

from intedge import iem
from intedge._ffi import ffi, lib
from intedge.errors import IntedgeError
from intedge.runtime import Model, Session


class Harness:
    def __init__(self, graph, batch, *, lr=0.0, seed=0, kernels=None, threads=1, trainable=None, number_format=None):
        self.graph = graph
        self.batch = batch
        self.n = 0  # samples of the last step
        self.model = Model(iem.serialize(graph))
        self.session = Session(self.model, batch_size=batch, lr=lr, seed=seed, kernels=kernels, threads=threads,
                               trainable=trainable, keep_tensors=True, number_format=number_format)

    def step(self, x, dy_q, dy_e):
        """A training step (forward, backward from output gradient dy_q * 2^dy_e, optimizer). x is
        what Session.step takes: an array, or one per graph input (a list or a dict by name)."""
        n, ptrs, _lab, _tgt, _keep = self.session._inputs(x, None, None)
        self.n = n
        dy = np.ascontiguousarray(dy_q, np.int8).reshape(-1)
        status = lib.ie_test_step_from_output_grad(self.session._h, n, ptrs, ffi.from_buffer("int8_t[]", dy), int(dy_e))
        if status != lib.IE_OK:
            raise IntedgeError(ffi.string(lib.ie_session_errmsg(self.session._h)).decode() or f"status {status}")

    def tensor(self, name, grad=False):
        """(int8 array [n, *shape], exponent) of a tensor's data or gradient after the last step."""
        t = self.graph.index[name]
        shape = self.graph.tensors[t].shape
        out = np.empty((self.n, *shape), np.int8)
        e = ffi.new("int32_t *")
        status = lib.ie_test_tensor(self.session._h, t, 1 if grad else 0, ffi.from_buffer("int8_t[]", out), e)
        if status != lib.IE_OK:
            raise IntedgeError(f"tensor {name!r} ({'gradient' if grad else 'data'}) cannot be read: status {status}")
        return out, int(e[0])

    def value(self, name, grad=False):
        """The same as float64 values."""
        q, e = self.tensor(name, grad)
        return q.astype(np.float64) * 2.0**e

    def forward(self, x):
        """An evaluation-mode forward (round to nearest); tensor() then reads its data."""
        self.n = len(x)
        return self.session.forward(x)

    def master(self, name):
        """A parameter's master weights as float64 (exact: int32 mantissas times 2^e)."""
        index = next(p.index for p in self.model.params if p.name == name)
        q, e = self.session.param_fixed(index)
        return q.astype(np.float64) * 2.0**e


def gemm_upstream(graph, shape, rng, k=6, name="h"):
    """Adds the graph input x [k] and a Gemm with a parameter feeding tensor `name` of per-sample
    `shape` (through a Reshape when it has more than one axis): the op under test then reads an
    activation that requires a gradient, so its backward runs and its input gradient is readable."""
    numel = int(np.prod(shape))
    w = (rng.standard_normal((numel, k)) / np.sqrt(k)).astype(np.float32)
    graph.input = graph.add_tensor("x", iem.KIND_INPUT, (k,))
    graph.add_tensor("w_up", iem.KIND_PARAM, w.shape, w)
    flat = name if len(shape) == 1 else name + "_flat"
    graph.add_tensor(flat, iem.KIND_ACTIVATION, (numel,))
    graph.add_node("up", iem.OP_GEMM, ["x", "w_up"], [flat], [1])
    if flat != name:
        graph.add_tensor(name, iem.KIND_ACTIVATION, shape)
        graph.add_node("up_shape", iem.OP_RESHAPE, [flat], [name])
    return k


def within_ulps(got, ref, e, ulps=1.0, slack=0.0):
    """max |got - ref| in units of 2^e (the int8 result's ulp) is at most ulps, beyond slack."""
    err = np.abs(got - ref).max() if got.size else 0.0
    assert err <= ulps * 2.0**e + slack, f"error {err:.3g} = {err / 2.0**e:.3f} ulp (bound {ulps} ulp + {slack:.3g})"
    return err / 2.0**e


def digests_over_tiers_and_threads(graph, x, labels, steps=3, **session):
    """{(tier, threads): (training digest, evaluation outputs' bytes)} for a few SGD steps with
    momentum on every kernel tier of this CPU with 1 and 2 threads: one value when bit-exact.
    graph: an iem.Graph or a Model; session: Session options over the defaults (loss=...)."""
    from intedge.runtime import kernel_tiers
    model = graph if isinstance(graph, Model) else Model(iem.serialize(graph))
    options = dict(batch_size=len(x), lr=0.05, momentum=0.9, seed=5) | session
    out = {}
    for tier in kernel_tiers():
        for threads in (1, 2):
            s = Session(model, kernels=tier, threads=threads, **options)
            for _ in range(steps):
                s.step(x, labels=labels)
            out[(tier, threads)] = (s.digest(), s.forward(x).tobytes())
    return out


def dense_loss(hook, z, ez, labels, channels, seed=0, wide=None):
    """A dense loss's test hook (intedge_testing.h: ie_test_softmax_ce_pixels, ie_test_centernet)
    on int8 outputs z [n, ..., cells] at exponent ez, `channels` read per cell: (status, int8
    gradient, its exponent, summed loss in nats, correct count, counted pixels or objects, the
    exponent of `wide`); wide: an int64 array that receives the gradient before its rounding."""
    z = np.ascontiguousarray(z, np.int8)
    lab = np.ascontiguousarray(labels, np.int32)
    grad = np.empty(z.shape, np.int8)
    ge, we, loss, correct, count = (ffi.new(t) for t in ("int32_t *", "int32_t *", "int64_t *", "uint32_t *",
                                                          "uint32_t *"))
    buf = ffi.from_buffer
    st = hook(len(z), channels, int(np.prod(z.shape[2:])), buf("int8_t[]", z), ez, buf("int32_t[]", lab), seed,
              buf("int8_t[]", grad), ge, ffi.NULL if wide is None else buf("int64_t[]", wide), we, loss, correct, count)
    return st, grad, ge[0], loss[0] / 65536.0, correct[0], count[0], we[0]
