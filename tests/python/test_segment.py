"""Semantic segmentation: the per-pixel cross-entropy in integers against float64, and sessions
that train with it (bit-exact across kernel tiers and thread counts)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import intedge
from intedge._ffi import ffi, lib
from intedge.runtime import IGNORE_LABEL, kernel_tiers
from torch_models import export


def p(a, t):
    return ffi.from_buffer(t + "[]", a)


def pixel_ce(z, ez, labels, seed=0, wide=None):
    """The runtime's loss on int8 logits [n, c, ...]: (status, int8 gradient, its exponent, summed
    loss, argmax hits, counted pixels); wide: an int64 array that receives the gradient before
    rounding, whose exponent is returned last."""
    n, c = z.shape[:2]
    px = int(np.prod(z.shape[2:]))
    z = np.ascontiguousarray(z, np.int8)
    grad = np.empty(z.shape, np.int8)
    lab = np.ascontiguousarray(labels, np.int32)
    ge, we, loss, correct, count = (ffi.new(t) for t in ("int32_t *", "int32_t *", "int64_t *", "uint32_t *",
                                                          "uint32_t *"))
    st = lib.ie_test_softmax_ce_pixels(n, c, px, p(z, "int8_t"), ez, p(lab, "int32_t"), seed, p(grad, "int8_t"), ge,
                                       ffi.NULL if wide is None else p(wide, "int64_t"), we, loss, correct, count)
    return st, grad, ge[0], loss[0] / 65536.0, correct[0], count[0], we[0]


def reference(z, ez, labels):
    """float64 torch: summed loss over counted pixels, and d(mean loss)/dz."""
    zt = torch.tensor(z * 2.0**ez, dtype=torch.float64, requires_grad=True)
    lab = torch.tensor(labels, dtype=torch.long)
    mean = nn.functional.cross_entropy(zt, lab, ignore_index=IGNORE_LABEL)
    mean.backward()
    counted = int((lab != IGNORE_LABEL).sum())
    return float(mean) * counted, zt.grad.numpy(), counted


@pytest.mark.parametrize("ez", [-6, -3, 0])
def test_pixel_cross_entropy_against_float64(rng, ez):
    """Odd shapes, a quarter of the pixels ignored: the loss within 1e-4 nats a pixel (the exp2 and
    log2 of test_ops' classifier bound), the gradient within one int8 ulp plus 2e-6 / counted,
    argmax hits exact."""
    n, c, h, w = 3, 5, 7, 9
    z = rng.integers(-127, 128, size=(n, c, h, w), dtype=np.int8)
    y = rng.integers(0, c, size=(n, h, w))
    y[rng.random((n, h, w)) < 0.25] = IGNORE_LABEL
    loss_ref, g_ref, counted = reference(z, ez, y)
    st, g, ge, loss, correct, count, _ = pixel_ce(z, ez, y, seed=5)
    assert st == lib.IE_OK and count == counted
    assert abs(loss - loss_ref) < 1e-4 * counted
    keep = y != IGNORE_LABEL
    assert correct == int((z.argmax(axis=1) == y)[keep].sum())
    assert np.abs(g * 2.0**ge - g_ref).max() < 2.0**ge + 2e-6 / counted
    assert not g.transpose(0, 2, 3, 1)[~keep].any()  # ignored pixels get no gradient


def test_pixel_cross_entropy_mean_keeps_32_bits_at_large_counts(rng):
    """2^20 + 1 counted pixels of two tied logits, where softmax is exactly 1/2: before rounding,
    the gradient is +-1/2 times a reciprocal of the count with 32 significant bits, within 2^-31
    relative (a Q31 reciprocal, 2048 for this count, would be 1e-6 off)."""
    n, c, px = 1, 2, (1 << 20) + 4
    z = np.zeros((n, c, px), np.int8)
    y = rng.integers(0, c, size=(n, px))
    y[0, :3] = IGNORE_LABEL
    wide = np.empty(z.shape, np.int64)
    st, g, ge, loss, _, count, we = pixel_ce(z, -5, y, wide=wide)
    assert st == lib.IE_OK and count == px - 3
    assert loss == pytest.approx(np.log(2) * count, rel=2.0**-16)  # ln 2 in Q16
    ref = np.where(np.arange(c)[None, :, None] == y[:, None, :], -0.5, 0.5) / count
    ref[:, :, :3] = 0
    np.testing.assert_allclose(wide * 2.0**we, ref, rtol=2.0**-31, atol=0)


def test_pixel_cross_entropy_with_nothing_counted(rng):
    z = rng.integers(-127, 128, size=(2, 4, 3, 5), dtype=np.int8)
    st, g, _, loss, correct, count, _ = pixel_ce(z, -4, np.full((2, 3, 5), IGNORE_LABEL))
    assert st == lib.IE_OK and (loss, correct, count) == (0, 0, 0)
    assert not g.any()


@pytest.mark.parametrize("bad", [-1, 4, 254, 256])
def test_pixel_cross_entropy_rejects_labels_out_of_range(rng, bad):
    y = np.zeros((1, 3, 3), np.int32)
    y[0, 2, 1] = bad
    st, *_ = pixel_ce(rng.integers(-127, 128, size=(1, 4, 3, 3), dtype=np.int8), 0, y)
    assert st == lib.IE_ERR_VALUE


class TinyFCN(nn.Module):
    """Two convolutions (the second dilated), a 1x1 head: an [N, 3, H, W] output."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, padding=2, dilation=2)
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.head(torch.relu(self.c2(torch.relu(self.c1(x)))))


def fcn_session(**kw):
    torch.manual_seed(0)
    model = intedge.Model(intedge.import_onnx(export(TinyFCN(), torch.randn(2, 2, 7, 5), dynamo=False, opset=13)).iem)
    return model, intedge.Session(model, batch_size=4, lr=0.05, momentum=0.9, loss="pixel_cross_entropy", seed=3, **kw)


def seg_batch(rng, n=3):
    x = rng.standard_normal((n, 2, 7, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=(n, 7, 5))
    y[:, 0, :] = IGNORE_LABEL
    return x, y


def test_session_trains_per_pixel_and_is_bit_exact_across_tiers_and_threads(rng):
    """The session's loss counts the labelled pixels and agrees with the float64 loss of its own
    float outputs; five steps end in the same digest on every kernel tier and thread count."""
    x, y = seg_batch(rng)
    model, s = fcn_session()
    assert model.output_shape == (3, 7, 5)
    z = s.forward(x).reshape(3, 3, 7, 5)
    loss, correct, count = s.evaluate(x, labels=y)
    ref, _, counted = reference(z.astype(np.float64), 0, y)
    assert count == counted == 3 * 6 * 5
    assert abs(loss - ref) < 1e-3 * counted
    assert correct == int(((z.argmax(1) == y) & (y != IGNORE_LABEL)).sum())
    digests = set()
    for tier in kernel_tiers():
        for threads in (1, 2):
            _, s = fcn_session(kernels=tier, threads=threads)
            losses = [s.step(x, labels=y)[0] / count for _ in range(5)]
            digests.add(s.digest())
    assert len(digests) == 1
    assert losses[-1] < losses[0]


def test_session_checks_the_label_count(rng):
    x, y = seg_batch(rng)
    _, s = fcn_session()
    with pytest.raises(intedge.IntedgeError, match="the batch has 3 labels; 3 samples take 105"):
        s.step(x, labels=y[:, 0, 0])
