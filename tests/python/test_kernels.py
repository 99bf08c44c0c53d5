"""Every kernel tier this CPU runs gives the scalar reference's bytes: per GEMM on random and odd
shapes, and over a whole training run."""
import hashlib

import numpy as np
import pytest
import torch

import intedge
from intedge._ffi import ffi, lib
from intedge.runtime import kernel_tiers
from torch_models import LeNet5, export, mnist

TIERS = kernel_tiers()
# the SIMD tiers to hold against the scalar reference; on a CPU with none, a skip that says so
# (comparing scalar with itself would report kernels green that never ran)
SIMD_TIERS = TIERS[1:] or [pytest.param(None, marks=pytest.mark.skip(
    reason="only the scalar tier runs on this CPU: no SIMD kernel to compare with the scalar reference"))]
SHAPES = [(1, 1, 1), (3, 5, 17), (17, 3, 255), (2, 7, 31), (5, 9, 33), (64, 64, 64), (33, 17, 1000), (4, 4, 0),
          (1, 3, 64 + 63), (256, 255, 257),
          # short reductions (the column-vectorized path): odd k, partial column groups, k = 256
          (6, 784, 25), (100, 150, 16), (5, 17, 3), (1, 16, 1), (7, 65, 256), (9, 130, 255), (3, 1000, 150), (4, 80, 1024), (3, 33, 1021)]


def gemm(tier, wide, a, b):
    m, k = a.shape
    n = b.shape[0]
    c = np.zeros((m, n), np.int64 if wide else np.int32)
    assert lib.ie_test_gemm(tier.encode(), wide, m, n, k, ffi.from_buffer("int8_t[]", a),
                            ffi.from_buffer("int8_t[]", b), ffi.from_buffer(c)) == lib.IE_OK
    return c


def test_tiers_listed():
    assert TIERS[0] == "scalar"
    print(f"\nkernel tiers on this CPU: {TIERS}")


@pytest.mark.parametrize("tier", SIMD_TIERS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_gemm_matches_scalar(tier, m, n, k, rng):
    a = rng.integers(-127, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (n, k), dtype=np.int8)
    for wide in (0, 1):
        np.testing.assert_array_equal(gemm(tier, wide, a, b), gemm("scalar", wide, a, b))
    # extremes: every product at +-127^2
    a[:] = 127
    b[:] = -127
    np.testing.assert_array_equal(gemm(tier, 0, a, b), gemm("scalar", 0, a, b))


@pytest.mark.parametrize("tier", SIMD_TIERS)
def test_gemm_s64_long_reduction_matches_scalar(tier, rng):
    k = (1 << 17) + 77  # past one exact int32 block
    a = rng.integers(-127, 128, (2, k), dtype=np.int8)
    b = np.full((3, k), 127, np.int8)
    np.testing.assert_array_equal(gemm(tier, 1, a, b), gemm("scalar", 1, a, b))


def test_training_bytes_identical_across_tiers_and_threads():
    torch.manual_seed(0)
    model = export(LeNet5(flatten_by_view=False), torch.randn(2, 1, 28, 28), dynamo=False, opset=13)
    x, y, _, _ = mnist(n_train=96)
    digests = {}
    for tier, threads in [(t, 1) for t in TIERS] + [(TIERS[-1], 2), (TIERS[-1], 3), ("scalar", 4)]:
        t = intedge.Trainer(model, batch_size=32, lr=0.05, momentum=0.9, seed=1, kernels=tier, threads=threads)
        assert t.session.kernels == tier and t.session.threads == threads
        t.fit(x, y, epochs=1, progress=False)
        h = hashlib.sha256()
        for p in t.session.model.params:
            q, e = t.session.param_fixed(p.index)
            h.update(q.tobytes() + np.int16(e).tobytes())
        digests[(tier, threads)] = h.hexdigest()
    assert len(set(digests.values())) == 1, digests


def test_unknown_tier_is_refused(mlp_digits):
    with pytest.raises(intedge.IntedgeError, match="does not run here"):
        intedge.Trainer(mlp_digits, kernels="quantum")
