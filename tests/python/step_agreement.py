"""How intedge's integer SGD step compares with PyTorch autograd at one training state.

Per parameter: the cosine between intedge's step (averaged over stochastic-rounding seeds) and
autograd's float gradient at the same weights, and the ratio of their norms. The tests probe the
initial weights of the cases in PROBES; a study over a run calls step_agreement with the trainer
as it stands after any number of steps (the trainer is not changed). Run as a script, it prints
the spread of both figures over initial-weight seeds (docs/fidelity.md):

    python tests/python/step_agreement.py --init-seeds 8
"""
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import intedge  # noqa: E402
from torch_models import LeNet5, ResNet8, export, export_training, mnist  # noqa: E402


def master_values(session):
    """{parameter name: float64 array}: the int32 master mantissas times 2^exponent, decoded
    here (exact in float64), not through the runtime's own float conversion."""
    out = {}
    for p in session.model.params:
        q, e = session.param_fixed(p.index)
        out[p.name] = np.ldexp(q.astype(np.float64), e)
    return out


@dataclass(frozen=True)
class Agreement:
    cosine: float      # cos(mean integer step, autograd gradient)
    norm_ratio: float  # |mean integer step| / |autograd gradient|


def step_agreement(trainer, net, x, y, *, seeds=12, lr=0.01):
    """{name: Agreement} for each trainable parameter of `net`, a PyTorch module of the trainer's
    architecture whose parameter names are the model's initializer names.

    The integer step is (w_before - w_after) / lr of one plain SGD step (no momentum, no weight
    decay) on the whole batch (x float32 as the net takes it, y labels), from the trainer's
    masters, averaged over `seeds` rounding seeds. The gradient is autograd's, of the mean
    cross-entropy in training mode, with the net's parameters set to the same masters."""
    session = trainer.session
    fixed = {p.name: session.param_fixed(p.index) for p in session.model.params}
    weights = master_values(session)
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(torch.tensor(weights[name].reshape(param.shape)))
    net.train()
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(y, dtype=torch.int64)).backward()

    trainable = trainer.config["trainable"]
    frozen = {p.name for p in session.model.params if trainable is not None and not trainable[p.index]}
    total = {}
    for seed in range(seeds):
        probe = intedge.Trainer(trainer.model, batch_size=len(x), lr=lr, seed=seed, trainable=trainable)
        for p in probe.session.model.params:
            probe.session.set_param_fixed(p.index, *fixed[p.name])
        xb, yb = probe.prepare(x, y, "probe")
        probe.session.step(xb, labels=yb)
        for name, after in master_values(probe.session).items():
            total[name] = total.get(name, 0.0) + (weights[name] - after) / lr
    out = {}
    for name, param in params.items():
        if name in frozen:
            continue
        g, step = param.grad.numpy().astype(np.float64).ravel(), total[name].ravel() / seeds
        norm_g = np.linalg.norm(g)
        out[name] = Agreement(float(g @ step / norm_g / np.linalg.norm(step)), float(np.linalg.norm(step) / norm_g))
    return out



def lenet5_probe(seed):
    """LeNet-5 at initial weights drawn with `seed`, on 16 real MNIST-5k images."""
    torch.manual_seed(seed)
    net = LeNet5(flatten_by_view=False)
    model = export(net, torch.randn(2, 1, 28, 28), dynamo=False, opset=13)
    x, y = mnist(n_train=16 * (seed + 1))[:2]
    return net, model, x[-16:], y[-16:]


def resnet8_probe(seed):
    """ResNet-8 (width 8, BatchNormalization kept: batch statistics) at initial weights drawn
    with `seed`, on 16 random 16 x 16 images and labels."""
    torch.manual_seed(seed)
    net = ResNet8(in_ch=1, width=8)
    model = export_training(net, torch.randn(2, 1, 16, 16), dynamo=False, opset=13)
    return net, model, torch.randn(16, 1, 16, 16).numpy(), torch.randint(0, 10, (16,)).numpy()


PROBES = {"lenet5": lenet5_probe, "resnet8": resnet8_probe}


def probe(name, seed=0):
    """step_agreement of PROBES[name] at its initial weights."""
    net, model, x, y = PROBES[name](seed)
    return step_agreement(intedge.Trainer(model, batch_size=len(x)), net, x, y)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init-seeds", type=int, default=8, help="initial-weight (and data) seeds 0..N-1")
    args = ap.parse_args()
    for name in PROBES:
        runs = [probe(name, seed) for seed in range(args.init_seeds)]
        print(f"{name}: per parameter, min-max over {args.init_seeds} initial-weight seeds (12 rounding seeds each)")
        for p in runs[0]:
            cos, ratio = [r[p].cosine for r in runs], [r[p].norm_ratio for r in runs]
            print(f"  {p:<20} cosine {min(cos):.3f}-{max(cos):.3f}   norm ratio {min(ratio):.3f}-{max(ratio):.3f}")
        means = [(np.mean([a.cosine for a in r.values()]), np.mean([a.norm_ratio for a in r.values()])) for r in runs]
        print(f"  mean over parameters: cosine {min(m[0] for m in means):.3f}-{max(m[0] for m in means):.3f}, "
              f"norm ratio {min(m[1] for m in means):.3f}-{max(m[1] for m in means):.3f}")


if __name__ == "__main__":
    main()
