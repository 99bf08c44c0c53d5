"""The optimizer alone: time per parameter of intedge's SGD and AdamW against torch.optim (SGD
with momentum, AdamW foreach and fused, float32) on one 1024 x 1024 weight, one thread; then why
AdamW's v is int64: how an int32 v (the top 31 bits at v's per-tensor exponent) would round the
v of a real training run, and what that does to the step direction m / (sqrt(v) + eps).

    python tools/bench/optimizer.py                  # both
    python tools/bench/optimizer.py --only timing    # or: --only v

intedge's time comes from ie_test_optimizer_step (intedge_testing.h), which runs only the
optimizer, on a gradient it copies in first (the step normalizes the gradient in place; the copy,
8 bytes a parameter, is in the time). Best of --repeats runs of --steps steps each."""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
N_OUT, N_IN = 1024, 1024


def intedge_time(optimizer, steps, repeats, **kw):
    from intedge import iem
    from intedge._ffi import ffi, lib
    from intedge.runtime import Model, Session

    rng = np.random.default_rng(0)
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (N_IN,))
    g.add_tensor("w", iem.KIND_PARAM, (N_OUT, N_IN), (rng.standard_normal((N_OUT, N_IN)) * 0.03).astype(np.float32))
    g.add_tensor("y", iem.KIND_ACTIVATION, (N_OUT,))
    g.add_node("fc", iem.OP_GEMM, ["x", "w"], ["y"], [1])
    g.output = g.index["y"]
    s = Session(Model(iem.serialize(g)), batch_size=1, optimizer=optimizer, threads=1, **kw)
    grad = (rng.standard_normal(N_OUT * N_IN) * 2**20).astype(np.int64)  # an exact gradient of ~21 bits
    buf = ffi.from_buffer("int64_t[]", grad)
    s._check(lib.ie_test_optimizer_step(s._h, 0, buf, -40))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            s._check(lib.ie_test_optimizer_step(s._h, 0, buf, -40))
        best = min(best, (time.perf_counter() - t0) / steps)
    return best / (N_OUT * N_IN) * 1e9, s.kernels


def torch_time(make, steps, repeats):
    import torch

    torch.set_num_threads(1)
    p = torch.nn.Parameter(torch.randn(N_OUT * N_IN) * 0.03)
    opt = make([p])
    p.grad = torch.randn(N_OUT * N_IN) * 1e-3
    opt.step()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best / (N_OUT * N_IN) * 1e9


def timing(steps, repeats):
    import torch

    rows = []
    for name, opt, kw in (("SGD", "sgd", dict(lr=0.1)), ("SGD momentum 0.9, weight decay", "sgd",
                                                          dict(lr=0.1, momentum=0.9, weight_decay=1e-4)),
                          ("AdamW, weight decay", "adamw", dict(lr=1e-3, weight_decay=0.01))):
        ns, tier = intedge_time(opt, steps, repeats, **kw)
        rows.append((f"intedge {name} ({tier})", ns))
    rows += [("torch SGD momentum 0.9 (foreach, fp32)", torch_time(
                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True), steps, repeats)),
             ("torch AdamW (foreach, fp32)", torch_time(
                 lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, foreach=True), steps, repeats)),
             ("torch AdamW (fused, fp32)", torch_time(
                 lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, fused=True), steps, repeats))]
    print(f"optimizer step on {N_OUT * N_IN:,} parameters, one thread, best of {repeats} x {steps} steps")
    for name, ns in rows:
        print(f"  {name:55s} {ns:6.2f} ns/parameter")


def adamw_state(blob):
    """Per parameter (exponent of m, m, exponent of v, v) from an AdamW training state (version 2,
    docs/format.md)."""
    count = int(np.frombuffer(blob, "<u4", 1, 20)[0])
    off, out = 40, []
    for _ in range(count):
        numel, arrays, _we, me, ve, _ = np.frombuffer(blob, "<i4", 6, off)
        off += 24 + 4 * numel
        m = v = None
        if arrays & 1:
            m = np.frombuffer(blob, "<i4", numel, off).astype(np.float64)
            off += 4 * numel
        if arrays & 2:
            v = np.frombuffer(blob, "<i8", numel, off)
            off += 8 * numel
        out.append((me, m, ve, v))
    return out


def v_study(epochs):
    """Real runs with AdamW (an MLP on MNIST, whose border pixels are almost always 0, so their
    weights see rare, small gradients; and the digits MLP), then their v held as int32 instead."""
    import intedge

    sys.path.insert(0, str(ROOT / "models"))
    from build_mlp import build_mlp

    for data_name, sizes, shape in (("builtin:mnist-5k", [784, 128, 10], (1, 28, 28)),
                                    ("builtin:digits", [64, 128, 10], (1, 8, 8))):
        data = intedge.load_data(data_name, seed=0)
        x = data.x_train.astype(np.float32) / (255.0 if data.x_train.dtype == np.uint8 else 16.0)
        t = intedge.Trainer(build_mlp(sizes, input_shape=shape, seed=0), batch_size=32, optimizer="adamw", lr=1e-3,
                            weight_decay=0.01, seed=0)
        t.fit(x, data.y_train, epochs=epochs, progress=False)
        steps = t.session.step_count
        eps = 1e-8 * np.sqrt(1 - 0.999**steps)  # eps as the step uses it (docs/number-format.md)
        rng = np.random.default_rng(0)
        print(f"AdamW's v after {epochs} epochs ({steps} steps) of the MLP {'-'.join(map(str, sizes))} on {data_name}, "
              "lr 1e-3: its int64 form against an int32 one (its top 31 bits, SR)")
        for p, (me, m, ve, v) in zip(t.session.model.params, adamw_state(t.session.save_state())):
            shift = max(int(v.max()).bit_length() - 31, 0)
            v32 = np.floor((v.astype(np.float64) + rng.random(v.size) * 2**shift) / 2**shift) * 2**shift
            u64 = m * 2.0**me / (np.sqrt(v * 2.0**ve) + eps)
            u32 = m * 2.0**me / (np.sqrt(v32 * 2.0**ve) + eps)
            nz = v > 0
            span = np.log2(v.max() / v[nz].min()) if nz.any() else 0
            off = np.abs(u32 - u64) > 0.01 * np.abs(u64)
            print(f"  {p.name:11s} v spans 2^{span:4.1f}: int32 flushes {np.mean(v32[nz] == 0):6.2%} of v to 0, "
                  f"{np.mean(off[nz]):6.2%} of the step directions move by > 1%, the largest |u| is "
                  f"{np.abs(u32).max():.3g} (int64: {np.abs(u64).max():.3g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("timing", "v"), default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5, help="of the v study's run")
    args = ap.parse_args()
    if args.only in (None, "timing"):
        timing(args.steps, args.repeats)
    if args.only in (None, "v"):
        v_study(args.epochs)


if __name__ == "__main__":
    main()
