"""CNN operators: conv arithmetic against PyTorch autograd, models exported by both torch
exporters against onnxruntime, gradients of residual/pooling graphs, and training fidelity."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import intedge
from intedge._ffi import ffi, lib
from step_agreement import PROBES, master_values, probe, step_agreement
from torch_models import (Activation, DropoutNet, LayoutZoo, LeNet5, MobileNetV2Small, ResidualPools, ResNet8, export,
                          export_training, mnist, torch_fit)


def p(a, t):
    return ffi.from_buffer(t + "[]", a)


# (cin, h, w, cout, k, stride, dilation, pads t,l,b,r, group)
GEOMETRIES = [
    (3, 8, 8, 4, 3, 1, 1, (1, 1, 1, 1), 1),
    (2, 9, 7, 5, 3, 2, 1, (0, 1, 2, 0), 1),   # odd sizes, stride 2, asymmetric pads
    (4, 11, 11, 4, 3, 1, 2, (2, 2, 2, 2), 2),  # dilation, groups
    (6, 7, 5, 6, 3, 2, 1, (1, 1, 1, 1), 6),   # depthwise
    (5, 6, 6, 3, 1, 1, 1, (0, 0, 0, 0), 1),   # pointwise
    (1, 17, 3, 2, 5, 3, 1, (2, 1, 2, 1), 1),
    # stride 1 with the output as large as the input: dX is computed as a convolution of dY
    (3, 7, 9, 5, 3, 1, 1, (0, 2, 2, 0), 1),   # asymmetric pads
    (2, 5, 5, 3, 2, 1, 1, (0, 0, 1, 1), 1),   # even window
    (1, 6, 6, 8, 3, 1, 1, (1, 1, 1, 1), 1),   # dY's columns larger than the general path's dcol
]


def geometry(cin, h, w, cout, k, s, d, pads, g):
    t, l, b, r = pads
    ho = (h + t + b - d * (k - 1) - 1) // s + 1
    wo = (w + l + r - d * (k - 1) - 1) // s + 1
    return np.array([g, k, k, s, s, d, d, t, l, b, r, cin, h, w, cout, ho, wo], np.uint32), ho, wo


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_conv_against_torch_autograd(geo, rng):
    cin, h, w, cout, k, s, d, pads, g = geo
    gv, ho, wo = geometry(*geo)
    n = 3
    x = rng.integers(-127, 128, (n, cin, h, w), dtype=np.int8)
    wq = rng.integers(-127, 128, (cout, cin // g, k, k), dtype=np.int8)
    bias = rng.integers(-2**20, 2**20, cout, dtype=np.int32)
    dy = rng.integers(-127, 128, (n, cout, ho, wo), dtype=np.int8)
    ex, ew, eb, edy = -7, -8, -20, -12
    xt = torch.tensor(x * 2.0**ex, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(wq * 2.0**ew, dtype=torch.float64, requires_grad=True)
    padded = torch.nn.functional.pad(xt, (pads[1], pads[3], pads[0], pads[2]))
    yt = torch.nn.functional.conv2d(padded, wt, torch.tensor(bias * 2.0**eb), stride=s, dilation=d, groups=g)
    yt.backward(torch.tensor(dy * 2.0**edy, dtype=torch.float64))

    y = np.empty((n, cout, ho, wo), np.int8)
    ey = lib.ie_test_conv_forward(p(gv, "uint32_t"), n, p(x, "int8_t"), ex, p(wq, "int8_t"), ew, p(bias, "int32_t"),
                                  eb, 1, p(y, "int8_t"))
    ref = yt.detach().numpy()
    assert np.abs(y * 2.0**ey - ref).max() < 2.0**ey and 2.0**ey <= np.abs(ref).max() / 64

    dx = np.empty_like(x)
    edx = lib.ie_test_conv_backward_dx(p(gv, "uint32_t"), n, p(dy, "int8_t"), edy, p(wq, "int8_t"), ew, 2, p(dx, "int8_t"))
    ref = xt.grad.numpy()
    assert np.abs(dx * 2.0**edx - ref).max() < 2.0**edx

    dw = np.empty(wq.shape, np.int64)
    edw = lib.ie_test_conv_backward_dw(p(gv, "uint32_t"), n, p(dy, "int8_t"), edy, p(x, "int8_t"), ex, p(dw, "int64_t"))
    np.testing.assert_array_equal(dw * 2.0**edw, wt.grad.numpy())  # exact


def ort_logits(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (True, 18)])
def test_lenet5_export_imports_agrees_and_trains(dynamo, opset):
    torch.manual_seed(0)
    model = export(LeNet5(flatten_by_view=True), torch.randn(2, 1, 28, 28), dynamo=dynamo, opset=opset)
    x, y, xv, yv = mnist(n_train=1280)
    t = intedge.Trainer(model, batch_size=32, lr=0.05, momentum=0.9, seed=0)
    ours, ref = t.predict(xv[:256]), ort_logits(model, xv[:256])
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.99
    before = t.evaluate(x, y)["loss"]
    t.fit(x, y, epochs=2, progress=False)
    assert t.evaluate(x, y)["loss"] < before / 2


def test_residual_and_pooling_gradients_match_torch():
    torch.manual_seed(1)
    net = ResidualPools()
    model = export(net, torch.randn(2, 1, 12, 12), dynamo=False, opset=13)
    x = torch.randn(16, 1, 12, 12)
    y = torch.randint(0, 10, (16,))
    # the forward arithmetic, deterministic: round to nearest (an untrained net's logits lie close
    # together, and evaluation's stochastic rounding would flip a random sample or two)
    t0 = intedge.Trainer(model, batch_size=16, rounding="nearest")
    assert (t0.predict(x.numpy()).argmax(1) == ort_logits(model, x.numpy()).argmax(1)).mean() >= 0.9
    assert np.abs(t0.predict(x.numpy()) - ort_logits(model, x.numpy())).max() < 0.05
    for name, a in step_agreement(t0, net, x.numpy(), y.numpy()).items():
        assert a.cosine > 0.9, (name, a)


class Means(torch.nn.Module):
    """Means over consecutive axes as exporters write them (ReduceMean): over the channels, over H
    and W kept, over the last axis, and over the tokens of [T, D] (a text model's x.mean(1))."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4 * 5 + 6 + 6 * 5 + 4, 10)

    def forward(self, x):
        tokens = x.flatten(1, 2)  # [N, 30, 4]
        parts = [x.mean(1), x.mean((2, 3), keepdim=True), x.mean(-1), tokens.mean(1)]
        return self.fc(torch.cat([p.flatten(1) for p in parts], 1))


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (False, 17), (True, 18)])
def test_means_over_consecutive_axes_match_torch(dynamo, opset):
    torch.manual_seed(2)
    net = Means()
    model = export(net, torch.randn(2, 6, 5, 4), dynamo=dynamo, opset=opset)
    assert sum(n.op_type == "ReduceMean" for n in model.graph.node) == 4
    x, y = torch.randn(16, 6, 5, 4), torch.randint(0, 10, (16,))
    t0 = intedge.Trainer(model, batch_size=16, rounding="nearest")
    assert np.abs(t0.predict(x.numpy()) - ort_logits(model, x.numpy())).max() < 0.05
    for name, a in step_agreement(t0, net, x.numpy(), y.numpy()).items():
        assert a.cosine > 0.9, (name, a)
    m = helper.make_model(helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[1, 3], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]), opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(intedge.IntedgeError, match=r"node 'mean'.*consecutive axes .*not axes \[1, 3\]"):
        intedge.Trainer(m)


def test_tiling_maxpool_fast_path_equals_general_walk():
    """2 x 2 / stride 2 pooling takes a vectorized route; the same pooling with a bottom/right pad
    that no window reaches takes the general walk. Inputs of few levels make many ties (the first
    maximum gets dY), so a route that differs shows in the trained conv weights."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 1), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 10))
    tiled = export(net, torch.randn(2, 2, 8, 8), dynamo=False, opset=13)
    walked = type(tiled)()
    walked.CopyFrom(tiled)
    pool = next(n for n in walked.graph.node if n.op_type == "MaxPool")
    pads = next(a for a in pool.attribute if a.name == "pads") if any(a.name == "pads" for a in pool.attribute) \
        else pool.attribute.add(name="pads", type=7)
    del pads.ints[:]
    pads.ints.extend([0, 0, 1, 1])
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (64, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    states = []
    for model in (tiled, walked):
        t = intedge.Trainer(model, batch_size=16, lr=0.05, momentum=0.9, seed=4)
        start = t.state_dict()["0.weight"]
        t.fit(x, y, epochs=2, progress=False)
        states.append(t.state_dict())
    assert np.any(states[0]["0.weight"] != start)  # the conv before the pool trained
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k], err_msg=k)


@pytest.mark.parametrize("name", sorted(Activation.FUNCTIONS))
def test_activation_forward_and_backward_match_torch(name):
    torch.manual_seed(0)
    net = Activation(name)
    model = export(net, torch.randn(2, 1, 8, 8), dynamo=False, opset=14)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    with torch.no_grad():
        ref = net(x).numpy()
    ours = intedge.Trainer(model, batch_size=32).predict(x.numpy())
    assert np.abs(ours - ref).max() < 0.04 * np.abs(ref).max()
    cos = step_agreement(intedge.Trainer(model, batch_size=32), net, x.numpy(), y.numpy())
    assert cos["c.weight"].cosine > 0.98 and cos["c.bias"].cosine > 0.98, cos


@pytest.mark.parametrize("bound", [0.0, 6.0])
def test_relu6_gradient_is_not_lost_at_a_bound(bound):
    """Pre-activations within one ulp of a bound of ReLU6 (one large input sets a coarse grid):
    SR sends them onto the bound, where the slope taken as 0 dropped their gradient (conv bias
    step 0.58 of autograd's at 0, 0.28 at 6); half a slope there keeps it (0.98, 1.03)."""
    torch.manual_seed(0)
    net = Activation("relu6")
    with torch.no_grad():
        net.c.bias.fill_(bound)
    model = export(net, torch.randn(2, 1, 8, 8), dynamo=False, opset=14)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 8, 8, generator=g) * 0.1, torch.randint(0, 10, (32,), generator=g)
    x[0, 0, 4, 4] = 40.0
    agree = step_agreement(intedge.Trainer(model, batch_size=32), net, x.numpy(), y.numpy())
    assert 0.85 <= agree["c.bias"].norm_ratio <= 1.15, agree


# Limits on step_agreement, set with a margin outside the spread over 8 initial-weight seeds
# (`python tests/python/step_agreement.py --init-seeds 8`, docs/fidelity.md): each kernel's
# (conv or linear weight) cosine and norm ratio, any parameter's cosine (biases and BatchNorm
# scales are short vectors, noisier), and the mean cosine and norm ratio over the parameters.
STEP_LIMITS = {
    "lenet5": {"kernel_cos": 0.90, "kernel_ratio": (0.85, 1.08), "any_cos": 0.70, "mean_cos": 0.95,
               "mean_ratio": (0.93, 1.03)},
    "resnet8": {"kernel_cos": 0.85, "kernel_ratio": (0.70, 1.05), "any_cos": 0.70, "mean_cos": 0.92,
                "mean_ratio": (0.85, 1.02)},
}


@pytest.mark.parametrize("name", sorted(STEP_LIMITS))
def test_step_agrees_with_autograd_per_parameter(name):
    """Each parameter's integer SGD step, averaged over 12 rounding seeds, points where autograd's
    gradient does, and is as long; ResNet-8 keeps BatchNormalization (batch statistics)."""
    lim = STEP_LIMITS[name]
    net = PROBES[name](0)[0]
    agree = probe(name)
    print(f"\n[{name} step vs autograd] " + ", ".join(f"{k} {a.cosine:.3f}/{a.norm_ratio:.3f}" for k, a in agree.items()))
    for k, a in agree.items():
        kernel = net.get_parameter(k).ndim > 1
        low, high = lim["kernel_ratio"] if kernel else (0.4, 1.25)
        assert a.cosine >= (lim["kernel_cos"] if kernel else lim["any_cos"]) and low <= a.norm_ratio <= high, (k, a)
    for k in list(agree)[-2:]:  # the classifier, next to the loss: the same step as float
        assert agree[k].cosine >= 0.999 and abs(agree[k].norm_ratio - 1) <= 0.01, (k, agree[k])
    assert np.mean([a.cosine for a in agree.values()]) >= lim["mean_cos"]
    low, high = lim["mean_ratio"]
    assert low <= np.mean([a.norm_ratio for a in agree.values()]) <= high


@pytest.mark.parametrize("arch", ["resnet8", "mobilenetv2"])
@pytest.mark.parametrize("dynamo,opset", [(False, 13), (False, 17), (True, 18), (True, 21)])
def test_cnn_exports_import_agree_and_train(arch, dynamo, opset):
    torch.manual_seed(0)
    net = ResNet8(in_ch=1, width=8) if arch == "resnet8" else MobileNetV2Small(in_ch=1)
    model = export_training(net, torch.randn(2, 1, 28, 28), dynamo=dynamo, opset=opset)
    x, y, xv, yv = mnist(n_train=256)
    t = intedge.Trainer(model, batch_size=32, lr=0.05, momentum=0.9, seed=0)
    net.eval()
    with torch.no_grad():
        ref = net(torch.tensor(xv[:256])).numpy()  # the exported graph computes eval-mode outputs
    ours = t.predict(xv[:256])
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.99
    # onnxruntime runs a kept BatchNormalization with batch statistics, so it is compared on the
    # eval-mode export of the same weights (BN folded into the convolutions)
    inference = export(net, torch.randn(2, 1, 28, 28), dynamo=dynamo, opset=opset)
    ours_inf = intedge.Trainer(inference, batch_size=32).predict(xv[:256])
    assert (ours_inf.argmax(1) == ort_logits(inference, xv[:256]).argmax(1)).mean() >= 0.99
    before = t.evaluate(x, y)["loss"]
    t.fit(x, y, epochs=3, progress=False)
    assert t.evaluate(x, y)["loss"] < before


def test_lenet5_fidelity_on_mnist(capsys):
    """LeNet-5 on builtin:mnist-5k, 3 epochs, batch 32, lr 0.1: within 1 point of PyTorch fp32."""
    torch.manual_seed(0)
    net = LeNet5(flatten_by_view=False)
    model = export(net, torch.randn(2, 1, 28, 28), dynamo=False, opset=13)
    x, y, xv, yv = mnist()
    t = intedge.Trainer(model, batch_size=32, lr=0.1, seed=0)
    ours = t.fit(x, y, xv, yv, epochs=3, progress=False)[-1]["val_acc"]
    theirs = torch_fit(net, t, x, y, xv, yv, epochs=3, lr=0.1)[-1]["val_acc"]
    with capsys.disabled():
        print(f"\n[LeNet-5 mnist-5k, 3 epochs] integer val_acc {ours:.4f}, PyTorch fp32 val_acc {theirs:.4f}")
    assert ours >= 0.93
    assert abs(ours - theirs) <= 0.010


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (True, 18)])
def test_broadcast_concat_pad_transpose_resize_match_torch(dynamo, opset):
    torch.manual_seed(0)
    net = LayoutZoo()
    model = export(net, torch.randn(2, 1, 8, 8), dynamo=dynamo, opset=opset)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.abs(intedge.Trainer(model, batch_size=16).predict(x.numpy()) - ref).max() < 0.05 * np.abs(ref).max()
    if not dynamo:
        for name, a in step_agreement(intedge.Trainer(model, batch_size=16), net, x.numpy(), y.numpy()).items():
            assert a.cosine > 0.93, (name, a)


def dropout_probe(p, hidden=128):
    """Linear(16, hidden) -> Dropout(p) -> Linear(hidden, 4) arranged so that dropout alone makes
    zeros: every hidden pre-activation is far from 0 (|bias| in [1, 2], tiny weights), and every
    hidden unit's gradient has one size (the head's only nonzero row is +-1/256, exact in int8;
    label 0 keeps that row's dz near -0.6). With batch 1 and plain SGD at a small lr (the masters
    keep their exponents, so a step's change is exact), unit i was dropped in the forward pass
    iff column i of the head did not move, and in the backward pass iff bias i did not move."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.Dropout(p), torch.nn.Linear(hidden, 4))
    signs = torch.where(torch.arange(hidden) % 2 == 0, 1.0, -1.0)
    with torch.no_grad():
        net[0].weight.mul_(0.05)
        net[0].bias.copy_(signs * (1 + torch.arange(hidden) / hidden))
        net[2].weight.zero_()
        net[2].weight[0] = signs / 256
        net[2].bias.zero_()
    return net, export_training(net, torch.randn(2, 16), dynamo=False, opset=13)


def test_dropout_mask_rate_scale_backward_and_eval():
    p, steps = 0.3, 16
    net, model = dropout_probe(p)
    assert "Dropout" in {n.op_type for n in model.graph.node}
    t = intedge.Trainer(model, batch_size=1, lr=2**-10, seed=3)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, 16)).astype(np.float32)
    dropped, scale = [], []
    for s in range(steps):
        before = master_values(t.session)
        t.session.step(t.prepare(x[s:s + 1], None, "x")[0], labels=np.zeros(1, np.int32))
        d = {k: v - before[k] for k, v in master_values(t.session).items()}
        fwd = np.all(d["2.weight"] == 0, axis=0)
        np.testing.assert_array_equal(d["0.bias"] == 0, fwd)  # backward drops what forward dropped
        dropped.append(fwd)
        # a kept unit's value after dropout, over its value before (float64 of the same masters)
        j = np.argmax(np.abs(d["2.bias"]))  # db2 = dz and dW2 = dz x hd: their ratio is hd
        h = before["0.weight"] @ x[s].astype(np.float64) + before["0.bias"]
        scale.append(d["2.weight"][j][~fwd] / d["2.bias"][j] / h[~fwd])
    rate, scale = np.mean(dropped), np.concatenate(scale)
    print(f"\n[dropout p={p}] dropped {rate:.4f} of {np.size(dropped)}; kept units scaled by {scale.mean():.4f} "
          f"(1/(1-p) = {1 / (1 - p):.4f})")
    assert abs(rate - p) < 0.04  # sd 0.010
    assert abs(scale.mean() - 1 / (1 - p)) < 0.01  # SR noise of two int8 roundings; sd of the mean ~0.0005
    # evaluation is the identity: the same bytes as the network without the Dropout node (rounding to
    # nearest: stochastic rounding's draws are keyed by node, and the Dropout node shifts them)
    plain = export_training(torch.nn.Sequential(net[0], net[2]), torch.randn(2, 16), dynamo=False, opset=13)
    np.testing.assert_array_equal(intedge.Trainer(model, batch_size=16, rounding="nearest").predict(x),
                                  intedge.Trainer(plain, batch_size=16, rounding="nearest").predict(x))


def test_dropout_training_is_deterministic_per_seed():
    net = DropoutNet(p=0.3)
    model = export_training(net, torch.randn(2, 1, 8, 8), dynamo=False, opset=13)
    a = intedge.Trainer(model, batch_size=32, lr=0.1, seed=5)
    b = intedge.Trainer(model, batch_size=32, lr=0.1, seed=5)
    xs, ys = mnist(n_train=512)[:2]
    xs = xs[:, :, ::3, ::3][:, :, :8, :8].copy()
    for t in (a, b):
        t.fit(xs, ys, epochs=2, progress=False)
    assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_resnet8_fidelity_on_mnist(capsys):
    """ResNet-8 (width 8, BatchNorm in training mode) on builtin:mnist-5k: 4 epochs at lr 0.02 and a
    fifth at 0.002, momentum 0.9, batch 32: within 1 point of PyTorch fp32."""
    torch.manual_seed(0)
    net = ResNet8(in_ch=1, width=8)
    model = export_training(net, torch.randn(2, 1, 28, 28), dynamo=False, opset=13)
    x, y, xv, yv = mnist()
    lr_at = lambda e: 0.02 if e < 4 else 0.002  # noqa: E731
    t = intedge.Trainer(model, batch_size=32, lr=0.02, momentum=0.9, seed=0)
    for e in range(5):
        t.session.set_lr(lr_at(e))
        ours = t.fit(x, y, xv, yv, epochs=e + 1, progress=False)[-1]["val_acc"]
    theirs = torch_fit(net, t, x, y, xv, yv, epochs=5, lr=0.02, momentum=0.9, lr_at=lr_at)[-1]["val_acc"]
    with capsys.disabled():
        print(f"\n[ResNet-8 mnist-5k, 5 epochs] integer val_acc {ours:.4f}, PyTorch fp32 val_acc {theirs:.4f}")
    assert ours >= 0.94
    assert abs(ours - theirs) <= 0.010


def test_bce_with_logits_matches_torch():
    import build_mlp
    from onnx import numpy_helper
    ds = intedge.load_data("builtin:digits", seed=0)
    x = ds.x_train.reshape(len(ds.x_train), -1)
    targets = np.stack([ds.y_train % 2 == 0, ds.y_train > 4, np.isin(ds.y_train, [0, 6, 8, 9])], 1).astype(np.float32)
    model = build_mlp.build_mlp([64, 32, 3], seed=0)
    w = {i.name: torch.tensor(numpy_helper.to_array(i)) for i in model.graph.initializer}
    z = torch.relu(torch.tensor(x[:64]) @ w["fc1.weight"].T + w["fc1.bias"]) @ w["fc2.weight"].T + w["fc2.bias"]
    ref = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(targets[:64])).item()
    t = intedge.Trainer(model, batch_size=32, lr=0.5, loss="bce")
    assert t.evaluate(x[:64], targets[:64])["loss"] == pytest.approx(ref, rel=0.03)
    hist = t.fit(x, targets, epochs=5, progress=False)
    assert hist[-1]["train_acc"] > 0.85 and hist[-1]["train_loss"] < hist[0]["train_loss"] / 2
    with pytest.raises(intedge.IntedgeError, match=r"\[0, 1\]"):
        t.evaluate(x[:4], targets[:4] * 2)


def test_head_only_arena_is_much_smaller_and_frozen_stays_put():
    from intedge.inspect_model import trainable_flags
    torch.manual_seed(0)
    net = ResNet8(in_ch=1, width=8)
    imported = intedge.import_onnx(export_training(net, torch.randn(2, 1, 28, 28), dynamo=False, opset=13))
    m = intedge.Model(imported.iem)
    full = m.arena_size(32)
    head = m.arena_size(32, trainable=trainable_flags(imported, ["fc.*"]))
    print(f"\n[ResNet-8 arena, batch 32] full training {full / 1024:.0f} KB, head only {head / 1024:.0f} KB")
    # the frozen prefix keeps nothing for backward; what remains is the forward pass's transient
    # peak (the largest convolution's int32 accumulator at this batch)
    assert head < 0.6 * full
    with pytest.raises(intedge.IntedgeError, match="matches no parameter"):
        trainable_flags(imported, ["nothing*"])


def test_batchnorm_evaluation_with_a_running_mean_far_beyond_the_input():
    """A running mean 2^33 and more times the batch's largest |x| lies outside the exact centring's
    int64 range; it joins the constant term (the shift used to overflow int64)."""
    mean, var = np.array([1e8, -3e7], np.float32), np.array([1.0, 4.0], np.float32)
    inits = [numpy_helper.from_array(v, n) for v, n in ((np.ones(2, np.float32), "g"), (np.zeros(2, np.float32), "b"),
                                                        (mean, "m"), (var, "v"))]
    g = helper.make_graph([helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])], "bn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4, 4])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = (np.random.default_rng(0).standard_normal((4, 2, 4, 4)) * 1e-5).astype(np.float32)
    ours = intedge.Trainer(model, batch_size=4).predict(x).reshape(x.shape)
    ref = (x - mean.reshape(1, 2, 1, 1)) / np.sqrt(var.reshape(1, 2, 1, 1) + 1e-5)
    assert np.abs(ours - ref).max() < 2 ** -6 * np.abs(ref).max()  # within one output ulp
