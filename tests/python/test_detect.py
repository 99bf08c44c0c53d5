"""Object detection: CenterNet's loss in integers against float64 torch, sessions that train with
it (bit-exact across kernel tiers and thread counts)."""
import numpy as np
import pytest
import torch

from intedge._ffi import ffi, lib
from torch_models import centernet_loss

HEAT_ONE, NO_BOX = lib.IE_HEAT_ONE, lib.IE_NO_BOX


def p(a, t):
    return ffi.from_buffer(t + "[]", a)


def centernet_c(z, ez, labels, classes, seed=0, wide=None):
    """The runtime's loss on int8 logits [n, C + 4, h, w]: (status, int8 gradient, its exponent,
    summed loss, centres with a positive logit, objects, the exponent of `wide`); wide: an int64
    array that receives the gradient before its rounding to int8."""
    n = len(z)
    cells = int(np.prod(z.shape[2:]))
    z = np.ascontiguousarray(z, np.int8)
    lab = np.ascontiguousarray(labels, np.int32)
    grad = np.empty(z.shape, np.int8)
    ge, we, loss, correct, count = (ffi.new(t) for t in ("int32_t *", "int32_t *", "int64_t *", "uint32_t *",
                                                          "uint32_t *"))
    st = lib.ie_test_centernet(n, classes, cells, p(z, "int8_t"), ez, p(lab, "int32_t"), seed, p(grad, "int8_t"), ge,
                               ffi.NULL if wide is None else p(wide, "int64_t"), we, loss, correct, count)
    return st, grad, ge[0], loss[0] / 65536.0, correct[0], count[0], we[0]


def centernet_reference(z, labels, classes):
    """float64 torch (torch_models.centernet_loss): the loss and its gradient from float outputs
    [n, C + 4, h, w] and labels in the runtime's encoding."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss, objects = centernet_loss(zt, torch.tensor(np.asarray(labels, np.int64)), classes)
    loss.backward()
    return loss.item(), zt.grad.numpy(), objects


def random_targets(rng, n, classes, h, w, objects=5):
    """Labels [n, C + 4, h, w]: heat below 1 everywhere (a quarter of it 0), `objects` centres at 1
    per sample with random box targets, IE_NO_BOX elsewhere."""
    lab = np.full((n, classes + 4, h, w), NO_BOX, np.int64)
    heat = rng.random((n, classes, h, w)) * 0.999
    heat[rng.random(heat.shape) < 0.25] = 0
    lab[:, :classes] = np.round(heat * HEAT_ONE)
    for i in range(n):
        for cell in rng.choice(h * w, objects, replace=False):
            y, x = divmod(int(cell), w)
            lab[i, rng.integers(classes), y, x] = HEAT_ONE
            lab[i, classes:, y, x] = np.round(np.r_[rng.uniform(0.5, 12, 2), rng.random(2)] * 65536)
    return lab


@pytest.mark.parametrize("ez", [-5, -3, 0])
def test_centernet_loss_against_float64(rng, ez):
    """Odd shapes: the loss within 2e-4 a cell of the float64 loss; the gradient before its rounding
    within 2e-5 of the largest and after it within one int8 ulp; the objects and the positive
    centres exact."""
    n, classes, h, w = 3, 3, 5, 7
    z = rng.integers(-127, 128, size=(n, classes + 4, h, w), dtype=np.int8)
    lab = random_targets(rng, n, classes, h, w)
    ref, g_ref, objects = centernet_reference(z * 2.0**ez, lab, classes)
    wide = np.empty(z.shape, np.int64)
    st, g, ge, loss, correct, count, we = centernet_c(z, ez, lab, classes, seed=3, wide=wide)
    assert st == lib.IE_OK and count == objects == 15
    err_loss = abs(loss / count - ref)
    err_grad = np.abs(g * 2.0**ge - g_ref).max()
    err_wide = np.abs(wide * 2.0**we - g_ref).max() / np.abs(g_ref).max()
    print(f"ez {ez}: loss {ref:.6f} error {err_loss:.2e}; gradient max {np.abs(g_ref).max():.2e}, relative error "
          f"before rounding {err_wide:.2e}, after {err_grad:.2e} (int8 ulp {2.0**ge:.2e})")
    assert err_wide < 2e-5
    assert err_loss < 2e-4 * n * (classes + 4) * h * w / objects
    assert err_grad < 2.0**ge + 1e-6
    assert correct == int((z[:, :classes] > 0)[lab[:, :classes] == HEAT_ONE].sum())


def test_centernet_without_objects_divides_by_one(rng):
    """A batch without centres: CenterNet's loss is the negatives' focal sum (divided by 1)."""
    z = rng.integers(-127, 128, size=(2, 6, 3, 5), dtype=np.int8)
    lab = random_targets(rng, 2, 2, 3, 5, objects=0)
    ref, g_ref, objects = centernet_reference(z * 2.0**-4, lab, 2)
    st, g, ge, loss, correct, count, _ = centernet_c(z, -4, lab, 2)
    assert st == lib.IE_OK and (objects, count, correct) == (0, 0, 0)
    assert abs(loss - ref) < 1e-3 and np.abs(g * 2.0**ge - g_ref).max() < 2.0**ge + 1e-6
    assert not g[:, 2:].any()  # no box targets, no regression gradient


@pytest.mark.parametrize("where,value", [("heat", -1), ("heat", HEAT_ONE + 1), ("box", -2), ("box", (1 << 24) + 1),
                                         ("partial", 0)])
def test_centernet_rejects_bad_targets(rng, where, value):
    lab = random_targets(rng, 1, 2, 3, 3, objects=1)
    cell = np.argwhere(lab[0, 2] != NO_BOX)[0]
    if where == "heat":
        lab[0, 1, 2, 2] = value
    elif where == "box":
        lab[0, 3, cell[0], cell[1]] = value
    else:  # a cell with only some of its four box targets
        lab[0, 2:, cell[0], cell[1]] = [5, 5, NO_BOX, 0]
    st, *_ = centernet_c(rng.integers(-127, 128, size=(1, 6, 3, 3), dtype=np.int8), -3, lab, 2)
    assert st == lib.IE_ERR_VALUE


def centernet_session(**kw):
    import intedge
    from torch_models import CenterNetTiny, export

    torch.manual_seed(0)
    onnx_model = export(CenterNetTiny(classes=2, width=4), torch.randn(2, 1, 12, 20), dynamo=False, opset=13)
    model = intedge.Model(intedge.import_onnx(onnx_model).iem)
    return model, intedge.Session(model, batch_size=4, lr=0.05, momentum=0.9, loss="centernet", seed=3, **kw)


def test_session_trains_centernet_and_is_bit_exact_across_tiers_and_threads(rng):
    """The session's loss is CenterNet's on its own float outputs; five steps lower it and end in
    the same digest on every kernel tier and thread count."""
    from intedge.runtime import kernel_tiers

    x = rng.standard_normal((3, 1, 12, 20)).astype(np.float32)
    lab = random_targets(rng, 3, 2, 3, 5, objects=2)
    model, s = centernet_session()
    assert model.output_shape == (6, 3, 5)
    z = s.forward(x).reshape(3, 6, 3, 5)
    loss, correct, count = s.evaluate(x, labels=lab)
    ref, _, objects = centernet_reference(z.astype(np.float64), lab, 2)
    assert count == objects == 6
    assert abs(loss / count - ref) < 1e-3 * ref
    digests = set()
    for tier in kernel_tiers():
        for threads in (1, 2):
            _, s = centernet_session(kernels=tier, threads=threads)
            losses = [s.step(x, labels=lab)[0] / count for _ in range(5)]
            digests.add(s.digest())
    assert len(digests) == 1
    assert losses[-1] < losses[0]
