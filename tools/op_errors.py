"""Measured errors of the transformer ops against float64 PyTorch autograd: the figures in
docs/number-format.md and in the docstrings of tests/python/test_layernorm.py, test_softmax.py
and test_activation.py. It runs those tests' cases with many seeds (the tests run one):

    pip install . && python tools/op_errors.py [--seeds 20]

LayerNorm and Softmax: the largest error of y and dX in units of their int8 ulp, and what lies
beyond that ulp; the smooth activations: the tables' error over all int8 inputs at exponents
-12..3, against max|f| and (above 2^-50 max|f|) against |f|."""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import test_activation as act  # noqa: E402
import test_layernorm as ln  # noqa: E402
import test_softmax as sm  # noqa: E402
from op_harness import Harness  # noqa: E402


def layernorm(seeds):
    worst = dict(y=0.0, y_beyond=0.0, dx=0.0, dx_beyond=0.0, dgamma=0.0, dgamma_bound=0.0)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        for shape, axis in ln.CASES:
            for bias in (True, False):
                g, k, gamma, beta = ln.layernorm_graph(shape, axis, rng, bias)
                h = Harness(g, batch=3, lr=1.0, seed=seed)
                dy = rng.integers(-127, 128, (3, *shape), dtype=np.int8)
                h.step(rng.standard_normal((3, k)).astype(np.float32), dy, -8)
                y_ref, dx_ref, dgamma, _ = ln.reference(h.value("h"), shape, axis, gamma, beta, dy * 2.0**-8, 1e-5)
                for key, (q, e), ref in (("y", h.tensor("y"), y_ref), ("dx", h.tensor("h", grad=True), dx_ref)):
                    err = np.abs(q * 2.0**e - ref)
                    worst[key] = max(worst[key], err.max() / 2.0**e)
                    if np.abs(ref).max() > 0:
                        beyond = np.maximum(err - 2.0**e, 0).max() / np.abs(ref).max()
                        worst[key + "_beyond"] = max(worst[key + "_beyond"], beyond)
                if np.abs(dgamma).max() > 1e-12:  # D = 1: autograd's dgamma is float noise around 0
                    err = np.abs(gamma.astype(np.float64) - h.master("gamma") - dgamma).max()
                    worst["dgamma"] = max(worst["dgamma"], err / np.abs(dgamma).max())
                    bound = ln.dgamma_bound(h, shape, axis, dy * 2.0**-8, 1e-5, gamma, dgamma)
                    worst["dgamma_bound"] = max(worst["dgamma_bound"], err / bound)
    print(f"LayerNorm ({seeds} seeds x {2 * len(ln.CASES)} cases): y within {worst['y']:.4f} ulp "
          f"(beyond the ulp {worst['y_beyond']:.1e} max|y|), dX within {worst['dx']:.4f} ulp "
          f"(beyond {worst['dx_beyond']:.1e} max|dX|), dgamma within {worst['dgamma']:.1e} max|dgamma| "
          f"({worst['dgamma_bound']:.2f} of its bound)")


def softmax(seeds):
    worst = dict(y=0.0, formula=0.0, allowance=0.0)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        for name, (shape, axis, mask, offset, flags) in sorted(sm.CASES.items()):
            g, k = sm.softmax_graph(shape, axis, mask, offset, flags, rng)
            h = Harness(g, batch=3, seed=seed)
            dy = rng.integers(-127, 128, (3, *shape), dtype=np.int8)
            h.step((rng.standard_normal((3, k)) * 3).astype(np.float32), dy, -8)
            y_ref, dx_ref = sm.reference(h.value("h"), sm.out_mask(shape, mask, offset, flags), axis, dy * 2.0**-8)
            y, ye = h.tensor("y")
            dx, dxe = h.tensor("h", grad=True)
            yv, dxv, dyv = y * 2.0**ye, dx * 2.0**dxe, dy * 2.0**-8
            worst["y"] = max(worst["y"], np.abs(yv - y_ref).max() / 2.0**ye)
            exact = yv * (dyv - (dyv * yv).sum(axis=axis + 1, keepdims=True))
            worst["formula"] = max(worst["formula"], np.abs(dxv - exact).max() / 2.0**dxe)
            s_p = np.abs((dyv * y_ref).sum(axis=axis + 1, keepdims=True))
            allowance = 2.0**ye * (np.abs(dyv) + s_p + yv * np.abs(dyv).sum(axis=axis + 1, keepdims=True))
            beyond = np.maximum(np.abs(dxv - dx_ref) - 2.0**dxe, 0)
            if np.any(allowance > 0):
                worst["allowance"] = max(worst["allowance"], (beyond[allowance > 0] / allowance[allowance > 0]).max())
    print(f"Softmax ({seeds} seeds x {len(sm.CASES)} cases): y within {worst['y']:.4f} ulp; dX within "
          f"{worst['formula']:.4f} ulp of y (dy - sum(dy y)) on the int8 y; against autograd at most "
          f"{worst['allowance']:.2f} of the allowance u_y (|dy| + |sum(dy p)| + y sum|dy|) beyond the ulp")


def tables():
    q = np.arange(-127, 128)
    for name in sorted(act.SMOOTH):
        kind, p, fn = act.SMOOTH[name]
        of_max = rel = 0.0
        for ex in range(-12, 4):
            ref = act.reference(fn, q * 2.0**ex)
            for slope in (0, 1):
                got, want = act.table(kind, p, ex, slope), ref[slope]
                err, big = np.abs(got - want), np.abs(want).max()
                of_max = max(of_max, err.max() / big)
                above = np.abs(want) > 2.0**-50 * big
                rel = max(rel, (np.maximum(err - 2.0**-50 * big, 0)[above] / np.abs(want[above])).max())
        print(f"  {name:10s} |table - f| <= {of_max:.1e} max|f|, and <= {rel:.1e} |f| above 2^-50 max|f|")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    layernorm(args.seeds)
    softmax(args.seeds)
    print("Smooth activation tables (f and f', all int8 inputs, exponents -12..3):")
    tables()


if __name__ == "__main__":
    main()
