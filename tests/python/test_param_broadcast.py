"""Parameters without a batch axis that meet activations, trained (runtime/src/ops/binary.c,
runtime/src/ops/layout.c's ParamBroadcast), against float64 autograd on the int8 values read:

- a positional embedding (or a layer scale) as Add/Sub/Mul's second operand: forward and the
  activation's gradient within one output ulp; the parameter's gradient is dY (Mul: dY * x)
  summed exactly over the batch and every broadcast axis, seen through an SGD step;
- the class token (ParamBroadcast, then Concat): every sample reads the parameter's int8 view
  (a copy), and its gradient is dY summed exactly over the batch;
- frozen parameters stay frozen and cost what a constant costs."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge.errors import IntedgeError
from intedge.runtime import Model
from op_harness import Harness
from transformer_graphs import add_gemm, applied_gradient, assert_within_one_ulp, grid_weights, param_index

T, D, K0 = 17, 3, 5
KINDS = {"add": iem.BINARY_ADD, "sub": iem.BINARY_SUB, "mul": iem.BINARY_MUL}


def binary_graph(rng, kind, p_shape, state=False, t=T, d=D):
    """x [t, K0] -> Gemm on tokens -> a [t, d] -> a (+, -, *) P -> y [t, d]."""
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (t, K0))
    g.add_tensor("a", iem.KIND_ACTIVATION, (t, d))
    add_gemm(g, rng, "x", "a", K0, d, t)
    p, _ = grid_weights(rng, p_shape, e=-5)
    g.add_tensor("P", iem.KIND_PARAM, p_shape, p, state=state)
    g.add_tensor("y", iem.KIND_ACTIVATION, (t, d))
    g.add_node("op", iem.OP_BINARY, ["a", "P"], ["y"], [KINDS[kind]])
    g.output = g.index["y"]
    return g


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("p_shape", [(T, D), (D,), (T, 1), (1, D)])
def test_parameter_operand_trains_like_autograd(rng, kind, p_shape):
    lr, batch, edy = 2.0**-4, 3, -7
    g = binary_graph(rng, kind, p_shape)
    h = Harness(g, batch=batch, lr=lr)
    pi = param_index(h.model, "P")
    before = h.session.param_fixed(pi)
    dy = rng.integers(-127, 128, (batch, T, D), dtype=np.int8)
    h.step(rng.standard_normal((batch, T, K0)).astype(np.float32), dy, edy)

    a = torch.tensor(h.value("a"), requires_grad=True)
    p = torch.tensor(before[0] * 2.0**before[1], requires_grad=True)  # the grid: its int8 view exactly
    y = {"add": a + p, "sub": a - p, "mul": a * p}[kind]
    y.backward(torch.tensor(dy * 2.0**edy))
    assert_within_one_ulp(f"{kind} parameter forward", *h.tensor("y"), y.detach().numpy())
    assert_within_one_ulp(f"{kind} parameter dX", *h.tensor("a", grad=True), a.grad.numpy())
    got, tol = applied_gradient(h.session, pi, before, lr)
    ref = p.grad.numpy()
    assert np.abs(got - ref).max() <= tol(ref)
    assert np.abs(ref).max() > 2**-6  # a gradient the test can see


def test_frozen_parameter_operand_stays_and_costs_what_a_constant_costs(rng):
    g = binary_graph(rng, "add", (T, D))
    model = Model(iem.serialize(g))
    pi = param_index(model, "P")
    trainable = [i != pi for i in range(len(model.params))]
    h = Harness(g, batch=4, lr=0.1, trainable=trainable)
    before = h.session.param_fixed(pi)
    h.step(rng.standard_normal((4, T, K0)).astype(np.float32), rng.integers(-127, 128, (4, T, D), dtype=np.int8), -7)
    after = h.session.param_fixed(pi)
    assert np.array_equal(before[0], after[0]) and before[1] == after[1]
    assert h.tensor("a", grad=True)[0].any()  # the activation still gets its gradient
    # a table large next to the activations of a small batch: its momentum would show (its int64
    # gradient, normalized in place by the optimizer, fits beside the activations' buffers here)
    big = {state: Model(iem.serialize(binary_graph(np.random.default_rng(0), "add", (65, 129), state, 65, 129)))
           for state in (False, True)}
    for batch in (1, 8):
        assert big[False].arena_size(batch, trainable=trainable, momentum=0.9) == big[True].arena_size(batch, momentum=0.9)
    assert big[False].arena_size(1, momentum=0.9) > big[True].arena_size(1, momentum=0.9)  # trained


def class_token_graph(rng, state=False):
    """cls [1, D] (a parameter [1, 1, D], ParamBroadcast) concatenated before x's Gemm tokens."""
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (T, K0))
    g.add_tensor("a", iem.KIND_ACTIVATION, (T, D))
    add_gemm(g, rng, "x", "a", K0, D, T)
    p, _ = grid_weights(rng, (1, 1, D), e=-3)
    g.add_tensor("cls_token", iem.KIND_PARAM, p.shape, p, state=state)
    g.add_tensor("cls", iem.KIND_ACTIVATION, (1, D))
    g.add_node("expand", iem.OP_PARAM_BROADCAST, ["cls_token"], ["cls"])
    g.add_tensor("y", iem.KIND_ACTIVATION, (T + 1, D))
    g.add_node("concat", iem.OP_CONCAT, ["cls", "a"], ["y"], [0])
    g.output = g.index["y"]
    return g


def test_class_token_is_a_copy_and_its_gradient_sums_the_batch(rng):
    lr, batch, edy = 2.0**-3, 5, -6
    h = Harness(class_token_graph(rng), batch=batch, lr=lr)
    pi = param_index(h.model, "cls_token")
    before = h.session.param_fixed(pi)
    dy = rng.integers(-127, 128, (batch, T + 1, D), dtype=np.int8)
    h.step(rng.standard_normal((batch, T, K0)).astype(np.float32), dy, edy)
    cls, ce = h.tensor("cls")
    np.testing.assert_array_equal(cls * 2.0**ce, np.broadcast_to(before[0].reshape(1, 1, D) * 2.0**before[1],
                                                                  (batch, 1, D)))
    dcls, dcls_e = h.tensor("cls", grad=True)
    np.testing.assert_array_equal(dcls * 2.0**dcls_e, dy[:, :1] * 2.0**edy)  # Concat's backward: slices
    got, tol = applied_gradient(h.session, pi, before, lr)
    ref = (dy[:, 0].astype(np.int64).sum(0) * 2.0**edy).reshape(1, 1, D)
    assert np.abs(got - ref).max() <= tol(ref)


def test_frozen_class_token_is_not_differentiated(rng):
    g = class_token_graph(rng)
    model = Model(iem.serialize(g))
    pi = param_index(model, "cls_token")
    trainable = [i != pi for i in range(len(model.params))]
    h = Harness(g, batch=2, lr=0.1, trainable=trainable)
    before = h.session.param_fixed(pi)
    h.step(rng.standard_normal((2, T, K0)).astype(np.float32), np.ones((2, T + 1, D), np.int8), 0)
    assert np.array_equal(h.session.param_fixed(pi)[0], before[0])
    with pytest.raises(IntedgeError, match="gradient"):
        h.tensor("cls", grad=True)  # no gradient is planned for it: its backward does not run


def test_param_broadcast_refuses_an_activation_or_another_size(rng):
    g = class_token_graph(rng)
    g.tensors[g.index["cls_token"]].shape = (1, 2, D)
    g.tensors[g.index["cls_token"]].data = np.zeros((1, 2, D), np.float32)
    with pytest.raises(IntedgeError, match="ParamBroadcast.*a parameter of the output's per-sample size"):
        Model(iem.serialize(g))
