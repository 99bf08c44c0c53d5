"""Fidelity diagnostics: where integer training and evaluation depart from float32, measured at the
same weights. Self-contained (numpy, torch, intedge), importable by the tests and by the study
(tools/fidelity/study.py --diagnostics).

- eval_agreement: intedge's evaluation against the float evaluation of the very same weights.
- step_agreement: per parameter, the cosine between intedge's mean SGD step (over SR seeds) and
  autograd's gradient, and the ratio of their norms.
- along_training: step_agreement at chosen steps of a real training run, with each BatchNorm's
  running statistics against a float shadow that saw the same batches at the same weights.
- sr_zero_share: per layer, the share of nonzero values that stochastic rounding sends to 0.
- tensor_agreement: one step walked back from the loss, per activation: intedge's data and
  gradient against autograd's at the same initial weights (where a gradient first loses scale).

The torch net and the ONNX model must share parameter names (torch's exporters keep them)."""
import numpy as np
import torch
import torch.nn as nn

import intedge
from intedge.trainer import number_format_options


def load_into(net, state):
    """Copies intedge's parameters and running statistics (a Trainer.state_dict()) into a torch
    net with the same parameter names. Returns net."""
    cur = net.state_dict()
    for k, v in state.items():
        cur[k] = torch.tensor(v).reshape(cur[k].shape)
    net.load_state_dict(cur)
    return net


def eval_agreement(trainer, net, x, y):
    """intedge's eval-mode predictions against the float32 eval-mode predictions of the same
    weights and running statistics: {'acc_gap': intedge acc - float acc, 'agreement': share of
    samples whose argmax agrees}."""
    load_into(net, trainer.state_dict())
    was_training = net.training
    net.eval()
    with torch.no_grad():
        ref = net(torch.as_tensor(x)).argmax(1).numpy()
    net.train(was_training)
    ours = trainer.predict(x).argmax(1)
    return {"acc_gap": float((ours == y).mean() - (ref == y).mean()), "agreement": float((ours == ref).mean())}


def float_loss(net, x, y):
    """autograd's mean cross-entropy of net on (x, y): per sample, or per pixel for [N, H, W]
    masks (255 ignored, as intedge's pixel_cross_entropy)."""
    from intedge.runtime import IGNORE_LABEL
    return nn.functional.cross_entropy(net(torch.as_tensor(x)), torch.as_tensor(y, dtype=torch.long),
                                       ignore_index=IGNORE_LABEL)


def copy_state(src, dst):
    """Every parameter's master (and running statistic) of trainer src into trainer dst, bit for bit."""
    for p in src.session.model.params:
        dst.session.set_param_fixed(p.index, *src.session.param_fixed(p.index))


def step_agreement(trainer, net, x, y, seeds=12, lr=0.01):
    """At trainer's current weights and on batch (x, y): for every trained parameter, the cosine
    between autograd's gradient and intedge's plain-SGD step in trainer's number format, averaged
    over `seeds` SR seeds (the step is (w_before - w_after) / lr), and ||mean step|| / ||gradient||.
    Returns {name: {'cos': .., 'norm_ratio': .., 'grad_norm': ||gradient||, 'step_norm': ||mean step||}}.
    BatchNorm runs on batch statistics on both sides."""
    load_into(net, trainer.state_dict())
    net.train()
    net.zero_grad()
    float_loss(net, x, y).backward()
    steps = {}
    for seed in range(seeds):
        t = intedge.Trainer(trainer.model, batch_size=len(x), lr=lr, seed=1000 + seed, loss=trainer.loss,
                            **number_format_options(trainer.config))
        copy_state(trainer, t)
        before = t.state_dict()
        xp, _ = t.prepare(x, None, "diagnostic")
        t.session.step(xp, labels=np.asarray(y, np.int32))
        for k, v in t.state_dict().items():
            steps.setdefault(k, []).append((before[k].astype(np.float64) - v) / lr)
    out = {}
    for name, param in net.named_parameters():
        g, mean = param.grad.numpy().astype(np.float64).ravel(), np.mean(steps[name], axis=0).ravel()
        ng, nm = np.linalg.norm(g), np.linalg.norm(mean)
        out[name] = {"cos": float(g @ mean / (ng * nm)) if ng and nm else 0.0,
                     "norm_ratio": float(nm / ng) if ng else float("nan"), "grad_norm": float(ng), "step_norm": float(nm)}
    return out


def tensor_agreement(onnx_model, net, x, y, seeds=8, loss="pixel_cross_entropy"):
    """Walks one training step back from the loss: for every activation that a torch submodule of
    `net` outputs (torch's exporter names it /a/a.b/OpType_output_0 for module a.b), intedge's data
    and gradient at the initial weights of `onnx_model` (read with keep_tensors, averaged over
    `seeds` SR seeds) against float64 autograd's: {name: {'data': proj, 'grad': proj, 'grad_cos': ..}}
    in forward order, where proj = <ours, ref> / <ref, ref> (1: no bias in scale; noise that is not
    along ref leaves it alone) and grad_cos the cosine of the seed-averaged gradient."""
    import copy

    from intedge._ffi import ffi, lib
    from intedge.onnx_import.core import Walker
    from intedge.runtime import Model, Session
    walker = Walker(onnx_model, "<model>")
    model = Model(walker.run().iem)
    tensors = {t.name: (i, t) for i, t in enumerate(walker.graph.tensors) if t.kind == 2}
    ref, hooks = {}, []
    net = copy.deepcopy(net).double().train()
    for qual, mod in net.named_modules():
        scope = "/" + "/".join(".".join(qual.split(".")[:k + 1]) for k in range(len(qual.split("."))))
        for name in tensors:
            if qual and name.startswith(scope + "/") and name.count("/") == scope.count("/") + 1:
                def keep(m, i, o, name=name):
                    o.retain_grad()
                    ref[name] = o
                hooks.append(mod.register_forward_hook(keep))
    float_loss(net, torch.as_tensor(x, dtype=torch.float64), y).backward()
    for h in hooks:
        h.remove()
    sums = {}
    for seed in range(seeds):
        s = Session(model, batch_size=len(x), lr=0.0, seed=seed, loss=loss, keep_tensors=True)
        s.step(x, labels=np.asarray(y, np.int32))
        for name in ref:
            i, t = tensors[name]
            for grad in (0, 1):
                q, e = np.empty(len(x) * int(np.prod(t.shape)), np.int8), ffi.new("int32_t *")
                if lib.ie_test_tensor(s._h, i, grad, ffi.from_buffer("int8_t[]", q), e) == lib.IE_OK:
                    sums[name, grad] = sums.get((name, grad), 0.0) + q * 2.0 ** e[0] / seeds
    out = {}
    for name, t in ref.items():
        r = {}
        for grad, key in ((0, "data"), (1, "grad")):
            want = (t.grad if grad else t).detach().numpy().ravel()
            got = sums.get((name, grad))
            if got is not None:
                r[key] = float(want @ got / (want @ want))
                if grad:
                    r["grad_cos"] = float(want @ got / np.linalg.norm(want) / np.linalg.norm(got))
        out[name] = r
    return out


def structurally_zero(params, rel=1e-4):
    """Parameters whose autograd gradient is float round-off (norm below rel times the largest
    parameter's): a BatchNorm bias whose output reaches the loss only through a later BatchNorm
    in training mode, which removes any per-channel shift (MobileNetV2's block outputs), or units
    a diverged run has killed. Cosine and norm ratio mean nothing there; their steps are
    compared by norm instead."""
    top = max(v["grad_norm"] for v in params.values())
    return {k for k, v in params.items() if v["grad_norm"] < rel * top}


def running_stat_errors(ours, ref):
    """Per running statistic in `ref` (float32's): its error per channel in the units eval-mode
    BatchNorm feels, (mean - ref mean) / ref std for a running mean and (var - ref var) / ref var
    for a running variance; {name: {'largest': largest |error|, 'mean': mean signed error}}. The
    mean shows a bias (an unbiased variance taken for a biased one is +1/(n-1) on every channel)
    that the channels' scatter hides. (A mean error relative to the mean itself says nothing
    where channel means sit near 0, as in MobileNetV2's 1x1 convolutions.)"""
    out = {}
    for k, r in ref.items():
        scale = np.sqrt(ref[k[:-len("mean")] + "var"]) if k.endswith("running_mean") else r
        err = (ours[k] - r) / np.maximum(scale, 1e-12)
        out[k] = {"largest": float(np.abs(err).max()), "mean": float(err.mean())}
    return out


def along_training(trainer, net, x, y, at_steps, seeds=12):
    """Trains `trainer` over (x, y) in its own batch order and, before each step in at_steps,
    measures step_agreement on that step's batch. A float shadow of the net takes intedge's
    weights before every step and runs the same batch in training mode, so its running
    statistics are float32's along intedge's own trajectory; each BatchNorm's running mean and
    variance are compared with it (running_stat_errors). Returns
    {step: {'params': step_agreement, 'sr_zero_share': sr_zero_share, 'running_stats': {name: error}}}."""
    import copy
    shadow = copy.deepcopy(net)
    load_into(shadow, trainer.state_dict())
    stats = [k for k in trainer.state_dict() if k.endswith(("running_mean", "running_var"))]
    xp, yp = trainer.prepare(x, y, "training")
    bs, out, step, epoch = trainer.batch_size, {}, 0, 0
    while step <= max(at_steps):
        order = trainer.batch_order(len(x), epoch)
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            if step in at_steps:
                state = trainer.state_dict()
                floats = shadow.state_dict()
                out[step] = {"params": step_agreement(trainer, net, x[idx], y[idx], seeds),
                             "sr_zero_share": sr_zero_share(net, x[idx], y[idx]),  # net holds intedge's weights
                             "running_stats": running_stat_errors(state, {k: floats[k].numpy() for k in stats})}
            if step >= max(at_steps):
                return out
            weights = {k: v for k, v in trainer.state_dict().items() if k not in stats}
            load_into(shadow, weights)
            shadow.train()
            with torch.no_grad():
                shadow(torch.as_tensor(x[idx]))
            trainer.session.step(xp[idx], labels=yp[idx].astype(np.int32))
            step += 1
        epoch += 1
    return out


def sr_zero_share(net, x, y, bits=8):
    """Per Conv/Linear/BatchNorm layer of `net` (at its current weights, training mode): the
    expected share of nonzero values that stochastic rounding to the format's per-tensor grid
    (ulp = 2^(floor(log2 max|v|) + 1 - (bits - 1))) sends to 0, for the layer's output and for
    the gradient that reaches it. Computed from the float tensors: P(0) = 1 - |v| / ulp below one
    ulp. Returns {layer: {'output': share, 'grad': share}}."""
    def share(t):
        a = t.detach().abs().double().flatten()
        a = a[a > 0]
        if not len(a):
            return 0.0
        ulp = 2.0 ** (np.floor(np.log2(float(a.max()))) + 1 - (bits - 1))
        return float(torch.clamp(1 - a / ulp, min=0).mean())

    out, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            def fwd(mod, inp, o, name=name):
                out.setdefault(name, {})["output"] = share(o)
                if o.requires_grad:
                    o.register_hook(lambda g, name=name: out[name].__setitem__("grad", share(g)))
            hooks.append(m.register_forward_hook(fwd))
    net.train()
    net.zero_grad()
    float_loss(net, x, y).backward()
    for h in hooks:
        h.remove()
    return out
