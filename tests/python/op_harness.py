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
    def __init__(self, graph, batch, *, lr=0.0, seed=0, kernels=None, threads=1, trainable=None):
        self.graph = graph
        self.batch = batch
        self.n = 0  # samples of the last step
        self.model = Model(iem.serialize(graph))
        self.session = Session(self.model, batch_size=batch, lr=lr, seed=seed, kernels=kernels, threads=threads,
                               trainable=trainable, keep_tensors=True)

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
