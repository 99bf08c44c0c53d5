"""A PyTorch emulation of intedge's number format, for the ablations the int8 kernels cannot run:
per-channel weight exponents and backward tensors wider than 8 bits. It is an emulation, and the
study labels it so: float arithmetic on values placed on the format's grids.

What it keeps: every tensor a traced op produces (and the input) is rounded to int8 with one
power-of-two exponent per tensor (ulp = 2^(floor(log2 max|t|) + 1 - 7), stochastic rounding,
clamp at +-127); the gradient reaching every such tensor is rounded the same way to `grad_bits`
bits; Conv and Linear read an int8 view of their weights, rebuilt by stochastic rounding at every
step, with one exponent per tensor or (the ablation) per output channel. What it does not: the
masters, biases, BatchNorm parameters and the optimizer stay float32 (intedge: int32 dyadic
fixed point, 30 bits), and products accumulate in float32 (intedge: exact integers).

study.py --emulate per-tensor is the check of the emulation against the runtime itself."""
import torch
import torch.fx
import torch.nn as nn


class Grid:
    """Rounding to the format's grids with draws from one generator (seeded per run)."""

    def __init__(self, seed, stochastic=True):
        self.gen = torch.Generator().manual_seed(seed)
        self.stochastic = stochastic

    def round(self, t, bits, channel_dim=None):
        """t on a grid of signed `bits`-bit integers times a power of two: one exponent for the
        tensor, or one per index of channel_dim."""
        a = t.detach().abs()
        top = a.amax(dim=[d for d in range(t.dim()) if d != channel_dim], keepdim=True) if channel_dim is not None \
            else a.max()
        ulp = torch.exp2(torch.floor(torch.log2(torch.clamp(top, min=1e-30))) + 1 - (bits - 1))
        draw = torch.rand(t.shape, generator=self.gen) if self.stochastic else 0.5
        lim = 2 ** (bits - 1) - 1
        return torch.clamp(torch.floor(t.detach() / ulp + draw), -lim, lim) * ulp


class _Act(torch.autograd.Function):
    """Forward: the int8 grid. Backward: the gradient on the grad_bits grid."""

    @staticmethod
    def forward(ctx, t, grid, grad_bits):
        ctx.grid, ctx.grad_bits = grid, grad_bits
        return grid.round(t, 8)

    @staticmethod
    def backward(ctx, g):
        return ctx.grid.round(g, ctx.grad_bits), None, None


class _OnGrid(nn.Module):
    def __init__(self, grid, grad_bits):
        super().__init__()
        self.grid, self.grad_bits = grid, grad_bits

    def forward(self, t):
        return _Act.apply(t, self.grid, self.grad_bits)


class _WeightView(torch.autograd.Function):
    """The int8 view of a master; its gradient goes to the master unchanged."""

    @staticmethod
    def forward(ctx, w, grid, per_channel):
        return grid.round(w, 8, 0 if per_channel else None)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


def emulate(net, grid, grad_bits=8, per_channel=False):
    """An fx copy of `net` whose op outputs sit on the format's grids, and whose Conv and Linear
    layers read int8 weight views. Parameters are shared with `net` (the masters)."""
    gm = torch.fx.symbolic_trace(net)
    for m in gm.modules():
        if isinstance(m, nn.Conv2d):
            m.forward = lambda x, m=m: m._conv_forward(x, _WeightView.apply(m.weight, grid, per_channel), m.bias)
        elif isinstance(m, nn.Linear):
            m.forward = lambda x, m=m: nn.functional.linear(x, _WeightView.apply(m.weight, grid, per_channel), m.bias)
    graph = gm.graph
    for i, node in enumerate(list(graph.nodes)):
        if node.op in ("placeholder", "call_module", "call_function", "call_method"):
            gm.add_submodule(f"_grid{i}", _OnGrid(grid, grad_bits))
            with graph.inserting_after(node):
                q = graph.call_module(f"_grid{i}", (node,))
            node.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)
    graph.lint()
    gm.recompile()
    return gm


def emulated_fit(net, trainer, x, y, x_val, y_val, epochs, lr_at, weights="per-tensor", rounding="stochastic",
                 grad_bits=8, sgd_bits=32, bn_input_bits=8):
    """torch_fit (models/torch_models.py) through the emulation: the same batches, order, recipe
    (taken from `trainer`) and per-epoch metrics. sgd_bits and bn_input_bits are not emulated
    (float32 masters; every activation on the int8 grid)."""
    from torch_models import torch_fit
    if sgd_bits != 32:
        raise ValueError("the emulation keeps float32 masters: --sgd-bits runs on the runtime only")
    if bn_input_bits != 8:
        raise ValueError("the emulation rounds every activation to int8: --bn-input-bits runs on the runtime only")
    grid = Grid(trainer.seed, stochastic=rounding == "stochastic")
    model = emulate(net, grid, grad_bits, per_channel=weights == "per-channel")
    c = trainer.config
    return torch_fit(model, trainer, x, y, x_val, y_val, epochs, c["lr"], c["momentum"], c["weight_decay"], lr_at)
