"""CPU time of the per-pixel cross-entropy and of a DeepLab training step (docs/benchmarks.md,
dense tasks): the loss on a 16 x 11 x 64 x 64 batch of random int8 logits through its test hook
(ie_test_softmax_ce_pixels, gradient included), and bench.py's `deeplab` (SegDeepLab, batch 16 of
64 x 64, SGD with momentum) stepping on one thread; process time, median of 15 after 3 warm-ups.
To compare two builds, point INTEDGE_LIBRARY at the other one's libintedge.so:

    python tools/bench/dense_loss.py
    INTEDGE_LIBRARY=/path/to/old/build/libintedge.so python tools/bench/dense_loss.py"""
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))


def cpu_ms(fn, reps=15, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def loss_call():
    from intedge._ffi import ffi, lib
    rng = np.random.default_rng(0)
    n, c, p = 16, 11, 64 * 64
    z = np.ascontiguousarray(rng.integers(-127, 128, size=(n, c, p)), np.int8)
    labels = np.ascontiguousarray(rng.integers(0, c, size=(n, p)), np.int32)
    grad = np.empty(z.shape, np.int8)
    ge, loss, correct, count = (ffi.new(t) for t in ("int32_t *", "int64_t *", "uint32_t *", "uint32_t *"))
    buf = ffi.from_buffer
    return lambda: lib.ie_test_softmax_ce_pixels(n, c, p, buf("int8_t[]", z), -3, buf("int32_t[]", labels), 7,
                                                 buf("int8_t[]", grad), ge, ffi.NULL, ffi.NULL, loss, correct, count)


def deeplab_step():
    import torch

    import intedge
    from torch_models import SegDeepLab, export_training
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = export_training(SegDeepLab(classes=11), torch.randn(2, 1, 64, 64), dynamo=False, opset=13)
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 64, 64)).astype(np.float32)
    y = rng.integers(0, 11, size=(16, 64, 64))
    t = intedge.Trainer(model, batch_size=16, lr=0.01, momentum=0.9, loss="pixel_cross_entropy", threads=1)
    return lambda: t.session.step(x, labels=y)


def main():
    print(f"per-pixel cross-entropy, 16 x 11 x 64 x 64: {cpu_ms(loss_call()):.1f} ms CPU")
    print(f"DeepLab training step, batch 16 of 64 x 64, one thread: {cpu_ms(deeplab_step()):.1f} ms CPU")


if __name__ == "__main__":
    main()
