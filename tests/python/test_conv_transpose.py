"""ConvTranspose in integers: forward, input gradient and weight and bias gradients against
float64 torch autograd on the int8 values the op read (odd shapes: groups, stride, asymmetric
pads, output padding, dilation), bit-exact over kernel tiers and thread counts, imported from
torch's export, and a U-Net whose upsampling is ConvTranspose trains.

Bounds: the forward and dX are exact integer sums rounded once to int8 (within one ulp); dW and
dB are exact int64 sums, which one SGD step (lr 1, no momentum) moves the int32 master by, within
the master's resolution."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import intedge
from intedge import iem
from op_harness import Harness, digests_over_tiers_and_threads, gemm_upstream, within_ulps
from torch_models import SegUNet, export, export_training

# (cin, h, w, cout, k, stride, dilation, pads t,l,b,r, output padding, group)
GEOMETRIES = [
    (4, 3, 5, 6, 2, 2, 1, (0, 0, 0, 0), (0, 0), 1),    # U-Net's 2x upsampling
    (3, 4, 3, 5, 3, 2, 1, (1, 0, 2, 1), (1, 0), 1),    # asymmetric pads, output padding
    (4, 5, 4, 6, 3, 3, 2, (2, 1, 0, 3), (2, 1), 2),    # groups, dilation, stride 3
    (6, 3, 4, 6, 3, 2, 1, (1, 1, 1, 1), (1, 1), 6),    # depthwise
    (5, 4, 6, 3, 1, 1, 1, (0, 0, 0, 0), (0, 0), 1),    # pointwise
    (2, 5, 5, 3, 3, 1, 1, (1, 1, 1, 1), (0, 0), 1),    # stride 1 'same': dX of a same-size conv
]


def out_size(n, k, s, d, p0, p1, extra):
    return (n - 1) * s - p0 - p1 + d * (k - 1) + 1 + extra


def convt_graph(geo, rng, bias=True):
    cin, h, w, cout, k, s, d, pads, extra, group = geo
    t, l, b, r = pads
    ho, wo = out_size(h, k, s, d, t, b, extra[0]), out_size(w, k, s, d, l, r, extra[1])
    g = iem.Graph()
    n_up = gemm_upstream(g, (cin, h, w), rng)
    wq = rng.integers(-127, 128, (cin, cout // group, k, k))
    wq.flat[0] = 127  # the int8 view of the master is then exact
    weight = (wq * 2.0**-7).astype(np.float32)
    g.add_tensor("w", iem.KIND_PARAM, weight.shape, weight)
    ins = ["h", "w"]
    bv = (rng.integers(-127, 128, cout) * 2.0**-9).astype(np.float32)
    if bias:
        g.add_tensor("b", iem.KIND_PARAM, bv.shape, bv)
        ins.append("b")
    g.add_tensor("y", iem.KIND_ACTIVATION, (cout, ho, wo))
    g.add_node("convt", iem.OP_CONV_TRANSPOSE, ins, ["y"], [group, k, k, s, s, d, d, t, l, b, r])
    g.output = g.index["y"]
    return g, n_up, weight.astype(np.float64), bv.astype(np.float64), (cout, ho, wo)


def torch_convt(x, w, b, geo):
    cin, h, wd, cout, k, s, d, (t, l, bt, r), extra, group = geo
    full = nn.functional.conv_transpose2d(x, w, None, stride=s, dilation=d, groups=group)
    # explicit (possibly asymmetric) pads crop the full output; output padding adds rows at the end
    ho, wo = out_size(h, k, s, d, t, bt, extra[0]), out_size(wd, k, s, d, l, r, extra[1])
    full = nn.functional.pad(full, (0, max(0, l + wo - full.shape[3]), 0, max(0, t + ho - full.shape[2])))
    return full[:, :, t:t + ho, l:l + wo] + b[None, :, None, None]  # the bias covers the output padding too


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_conv_transpose_against_float64_autograd(geo, rng):
    g, k, weight, bv, out = convt_graph(geo, rng)
    h = Harness(g, batch=3, lr=1.0)
    x = rng.standard_normal((3, k)).astype(np.float32)
    dy = rng.integers(-127, 128, (3, *out), dtype=np.int8)
    h.step(x, dy, -8)
    xt = torch.tensor(h.value("h"), requires_grad=True)
    wt = torch.tensor(weight, requires_grad=True)
    bt = torch.tensor(bv, requires_grad=True)
    ref = torch_convt(xt, wt, bt, geo)
    ref.backward(torch.tensor(dy * 2.0**-8))
    y, ye = h.tensor("y")
    within_ulps(y * 2.0**ye, ref.detach().numpy(), ye)
    assert 2.0**ye <= np.abs(ref.detach().numpy()).max() / 64  # the output uses its 8 bits
    dx, dxe = h.tensor("h", grad=True)
    within_ulps(dx * 2.0**dxe, xt.grad.numpy(), dxe)
    for name, before, grad in (("w", weight, wt.grad.numpy()), ("b", bv, bt.grad.numpy())):
        step = before - h.master(name)  # lr 1, no momentum: the step is the exact gradient
        assert np.abs(step - grad).max() <= 2.0**-26 * max(np.abs(before).max(), np.abs(grad).max()), name


@pytest.mark.parametrize("geo", [GEOMETRIES[1], GEOMETRIES[2], GEOMETRIES[3]])
def test_conv_transpose_bit_exact_over_tiers_and_threads(geo, rng):
    g, k, *_, out = convt_graph(geo, rng)
    x = rng.standard_normal((6, k)).astype(np.float32)
    runs = digests_over_tiers_and_threads(g, x, rng.integers(0, int(np.prod(out)), 6))
    assert len(set(runs.values())) == 1, runs.keys()


class Up(nn.Module):
    def __init__(self, group, extra):
        super().__init__()
        self.c = nn.Conv2d(2, 4, 3, padding=1)
        self.t = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=extra, groups=group, dilation=1)

    def forward(self, x):
        return self.t(torch.relu(self.c(x)))


@pytest.mark.parametrize("group,extra", [(1, 1), (2, 0)])
def test_torch_conv_transpose_imports_and_matches(rng, group, extra):
    """torch's export runs in the runtime with torch's output shape and values (round to nearest:
    a few output ulps of the float result)."""
    torch.manual_seed(0)
    net = Up(group, extra)
    model = export(net, torch.randn(2, 2, 5, 7), dynamo=False, opset=13)
    x = rng.standard_normal((4, 2, 5, 7)).astype(np.float32)
    t = intedge.Trainer(model, batch_size=4, rounding="nearest", loss="mse")
    with torch.no_grad():
        ref = net(torch.tensor(x)).numpy()
    got = t.predict(x).reshape(ref.shape)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_unet_with_conv_transpose_upsampling_trains():
    """SegUNet with ConvTranspose upsampling on builtin:mnist-seg (300 scenes, 24 x 24): the
    per-pixel loss falls by a third in three epochs, as float32 PyTorch's does from the same start."""
    from torch_models import torch_segment_fit
    ds = intedge.load_data("builtin:mnist-seg", input_shape=(1, 24, 24))
    x, y = (ds.x_train[:300] / 255.0).astype(np.float32), ds.y_train[:300]
    xv, yv = (ds.x_val[:100] / 255.0).astype(np.float32), ds.y_val[:100]
    torch.manual_seed(0)
    net = SegUNet(width=8, up="transpose")
    model = export_training(net, torch.randn(2, 1, 24, 24), dynamo=False, opset=13)  # BatchNormalization kept
    assert "ConvTranspose" in {n.op_type for n in model.graph.node}
    t = intedge.Trainer(model, batch_size=16, lr=0.1, momentum=0.9, loss="pixel_cross_entropy")
    before = t.evaluate(xv, yv)["loss"]
    ours = t.fit(x, y, xv, yv, epochs=3, progress=False)
    ref = torch_segment_fit(net, t, x, y, xv, yv, 3, 0.1, 0.9)
    print(f"\nval loss {before:.4f} -> intedge {ours[-1]['val_loss']:.4f}, PyTorch {ref[-1]['val_loss']:.4f}")
    assert ours[-1]["val_loss"] < before * 2 / 3
    assert abs(ours[-1]["val_loss"] - ref[-1]["val_loss"]) < 0.15 * ref[-1]["val_loss"]
