"""Where MobileNetV2's steps lose their length (docs/fidelity.md, "Diagnostics"): the number
format's forward, emulated in PyTorch (emulate.py's grid: int8, one exponent per tensor, SR), with
exact gradients and exact weights, and ReLU6's mask taken from one source or another (and, for
contrast, the exact forward with the gradients on the grid); and the candidate changes of the
format that cut the forward's noise where BatchNorm amplifies it (what a Conv read by a BatchNorm
hands it: exact sums, 16 bits, per-channel int8 exponents; every tensor at 16 bits for scale). Per
parameter at step 0 of seed 0's run (mnist-5k), the mean gradient over SR seeds against autograd's
on the exact forward: norm ratio, projection (mean . exact / |exact|^2, which zero-mean noise
leaves alone) and cosine; printed as medians and means over the parameters.

    python tools/fidelity/mask_probe.py [--seeds 32] [--rows 3,8]   # ~1 min a row on a shared, busy core
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import study  # noqa: E402  (puts models/ on the path)
from diagnostics import load_into  # noqa: E402
from emulate import Grid  # noqa: E402
from torch_models import InvertedResidual  # noqa: E402

# name: ReLU6's mask source ("rounded": the int8 value, 0 on a bound; "half": the int8 value,
# half on a bound; "pre": the value before its rounding; "float": the exact forward; None: the
# forward stays exact and the gradients go on the grid instead), whether BatchNorm normalizes
# by the exact forward's batch variance, and how a Conv whose reader is a BatchNorm hands its output
# over (the candidate format changes: "int8" per tensor as now, "exact" the int32 sums, 16 bits
# per tensor, or int8 with one exponent per channel; "all16": every tensor at 16 bits, for scale)
VARIANTS = (("exact forward, int8 gradients", None, False, "int8"),
            ("int8 forward, mask from the int8 value (slope 0 on a bound: before the fix)", "rounded", False, "int8"),
            ("int8 forward, half the slope on a bound (the runtime's default)", "half", False, "int8"),
            ("int8 forward, mask from the value before its rounding", "pre", False, "int8"),
            ("int8 forward, masks from the exact forward", "float", False, "int8"),
            ("int8 forward, masks and BatchNorm variances from the exact forward", "float", True, "int8"),
            ("half slope, Conv hands BatchNorm its exact sums", "half", False, "exact"),
            ("half slope, Conv hands BatchNorm 16 bits (one exponent): the runtime's bn_input_bits 16", "half", False, "16"),
            ("half slope, Conv hands BatchNorm int8 with one exponent per channel", "half", False, "channel"),
            ("half slope, every tensor at 16 bits (one exponent)", "half", False, "all16"))


class _OnGrid(torch.autograd.Function):
    """The int8 grid forward, the gradient passed on exactly."""

    @staticmethod
    def forward(ctx, t, grid, bits=8, channel_dim=None):
        return grid.round(t, bits, channel_dim)

    @staticmethod
    def backward(ctx, g):
        return g, None, None, None


class _GradOnGrid(torch.autograd.Function):
    """The exact forward, the gradient on the int8 grid."""

    @staticmethod
    def forward(ctx, t, grid):
        ctx.grid = grid
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        return ctx.grid.round(g, 8), None


class _Relu6(torch.autograd.Function):
    """ReLU6 of the rounded value r, its slope from `m` (halved where m sits on a bound if half)."""

    @staticmethod
    def forward(ctx, r, m, half):
        ctx.save_for_backward(m)
        ctx.half = half
        return r.clamp(0, 6)

    @staticmethod
    def backward(ctx, g):
        m, = ctx.saved_tensors
        slope = ((m > 0) & (m < 6)).to(g.dtype)
        if ctx.half:
            slope = slope + 0.5 * ((m == 0) | (m == 6)).to(g.dtype)
        return g * slope, None, None


class Probe:
    """The net with its module outputs on the grid (when `grid` is set) and ReLU6 and BatchNorm
    as the variant says; a pass with grid None records the exact forward's masks and variances."""

    def __init__(self, net):
        self.net, self.grid, self.mask, self.exact_var, self.conv_out = net, None, "rounded", False, "int8"
        self.before, self.exact_pre, self.exact_vars, self.at = {}, [], {}, 0
        # Convs whose one reader is a BatchNorm (the next module of their Sequential)
        self.feeds_bn = {id(a) for seq in net.modules() if isinstance(seq, nn.Sequential)
                         for a, b in zip(seq, list(seq)[1:]) if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)}
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, InvertedResidual, nn.Linear, nn.ReLU6)):
                m.register_forward_hook(self.round_output)
            if isinstance(m, nn.ReLU6):
                m.forward = self.relu6
            if isinstance(m, nn.BatchNorm2d):
                m.forward = self.batchnorm(m)

    def round_output(self, mod, inp, out):
        if self.grid is None:
            return None
        if self.mask is None:
            return _GradOnGrid.apply(out, self.grid)
        if self.conv_out == "all16":
            return _OnGrid.apply(out, self.grid, 16)
        if id(mod) in self.feeds_bn and self.conv_out != "int8":
            if self.conv_out == "exact":
                return None
            return _OnGrid.apply(out, self.grid, 16 if self.conv_out == "16" else 8, 1 if self.conv_out == "channel" else None)
        r = _OnGrid.apply(out, self.grid)
        self.before[id(r)] = out
        return r

    def relu6(self, x):
        if self.grid is None or self.mask is None:
            if self.grid is None:
                self.exact_pre.append(x.detach())
            return x.clamp(0, 6)
        self.at += 1
        source = {"rounded": x, "half": x, "pre": self.before.get(id(x), x), "float": self.exact_pre[self.at - 1]}
        return _Relu6.apply(x, source[self.mask], self.mask == "half")

    def batchnorm(self, m):
        def forward(x):
            mu, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
            if self.grid is None:
                self.exact_vars[id(m)] = var.detach()
            elif self.exact_var:
                var = var - (var - self.exact_vars[id(m)]).detach()
            return (x - mu) / torch.sqrt(var + m.eps) * m.weight[None, :, None, None] + m.bias[None, :, None, None]
        return forward

    def grads(self, x, y, grid):
        self.grid, self.at = grid, 0
        self.before.clear()
        if grid is None:
            self.exact_pre.clear()
        self.net.zero_grad()
        inp = x if grid is None or self.mask is None else _OnGrid.apply(x, grid)
        nn.functional.cross_entropy(self.net(inp), y).backward()
        return {k: p.grad.detach().double().ravel().clone() for k, p in self.net.named_parameters()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=32, help="SR seeds each mean is taken over")
    ap.add_argument("--rows", default=None, help="comma-separated row numbers (1-based) to run; default all")
    args = ap.parse_args(argv)
    import intedge
    x, y, _, _ = study.datasets()["mnist-5k"]()
    net, model = study.build("mobilenetv2", "mnist-5k", 0)
    trainer = intedge.Trainer(model, seed=0, **study.RECIPE)
    idx = trainer.batch_order(len(x), 0)[:trainer.batch_size]
    load_into(net, trainer.state_dict()).train()
    xb, yb = torch.tensor(x[idx]), torch.tensor(y[idx]).long()
    probe = Probe(net)
    exact = probe.grads(xb, yb, None)
    top = max(float(g.norm()) for g in exact.values())
    names = [k for k, g in exact.items() if g.norm() >= 1e-4 * top]  # leave out round-off gradients
    print("| forward, step 0 | norm ratio, median | projection, median | cosine, mean |\n|---|---|---|---|")
    rows = [int(r) for r in args.rows.split(",")] if args.rows else range(1, len(VARIANTS) + 1)
    for label, mask, exact_var, conv_out in (VARIANTS[r - 1] for r in rows):
        probe.mask, probe.exact_var, probe.conv_out = mask, exact_var, conv_out
        total = None
        for s in range(args.seeds):
            g = probe.grads(xb, yb, Grid(1000 + s))
            total = g if total is None else {k: total[k] + g[k] for k in g}
        ratio, proj, cos = [], [], []
        for k in names:
            m, e = total[k] / args.seeds, exact[k]
            ratio.append(float(m.norm() / e.norm()))
            proj.append(float(m @ e / (e @ e)))
            cos.append(float(m @ e / (m.norm() * e.norm())))
        print(f"| {label} | {np.median(ratio):.2f} | {np.median(proj):.2f} | {np.mean(cos):.3f} |")


if __name__ == "__main__":
    main()
