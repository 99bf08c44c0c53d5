"""Resize in integers: bilinear (half_pixel, align_corners, asymmetric) and nearest at integer
and rational scales (every coordinate transform and nearest rounding), forward against
onnxruntime or float64 torch and backward against float64 torch autograd on the int8 values the
op read, bit-exact over tiers and threads, and imported from torch's own export and ONNX graphs.

Bounds: a bilinear output is an exact integer sum of its four taps over den_h * den_w; one
stochastic division leaves 8 fractional bits (an error below 2^-8 of the input's ulp), then the
requantization rounds once (below one ulp of the output). The backward is the same with dY."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import intedge
from intedge import iem
from op_harness import Harness, digests_over_tiers_and_threads, gemm_upstream, within_ulps
from torch_models import export

MODES = {"nearest": 0, "half_pixel": 1, "align_corners": 2, "asymmetric": 3}


def resize_graph(shape, scales, mode, rng):
    g = iem.Graph()
    k = gemm_upstream(g, shape, rng)
    out = (shape[0], shape[1] * scales[0], shape[2] * scales[1])
    g.add_tensor("y", iem.KIND_ACTIVATION, out)
    g.add_node("resize", iem.OP_RESIZE, ["h"], ["y"], [scales[0], scales[1], MODES[mode]])
    g.output = g.index["y"]
    return g, k


def torch_resize(x, scales, mode):
    """float64 reference; asymmetric bilinear is written out (torch has no such mode)."""
    if mode == "nearest":
        return nn.functional.interpolate(x, scale_factor=scales, mode="nearest")
    if mode != "asymmetric":
        return nn.functional.interpolate(x, scale_factor=scales, mode="bilinear", align_corners=mode == "align_corners")
    h, w = x.shape[2:]

    def taps(n, s):
        src = torch.arange(n * s, dtype=torch.float64) / s
        i0 = src.floor().long()
        return i0, (i0 + 1).clamp(max=n - 1), src - i0

    (a0, a1, la), (b0, b1, lb) = taps(h, scales[0]), taps(w, scales[1])
    rows = x[:, :, a0] * (1 - la)[:, None] + x[:, :, a1] * la[:, None]
    return rows[..., b0] * (1 - lb) + rows[..., b1] * lb


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("scales", [(2, 2), (3, 2), (1, 4)])
def test_resize_against_float64(rng, mode, scales):
    shape = (3, 5, 4)
    g, k = resize_graph(shape, scales, mode, rng)
    h = Harness(g, batch=2)
    x = rng.standard_normal((2, k)).astype(np.float32)
    out = (3, 5 * scales[0], 4 * scales[1])
    dy = rng.integers(-127, 128, size=(2, *out), dtype=np.int8)
    h.step(x, dy, -9)
    hq, he = h.tensor("h")
    t = torch.tensor(hq * 2.0**he, requires_grad=True)
    ref = torch_resize(t, scales, mode)
    ref.backward(torch.tensor(dy * 2.0**-9))
    y, ye = h.tensor("y")
    within_ulps(y * 2.0**ye, ref.detach().numpy(), ye, slack=2.0 ** (he - 8))
    dx, dxe = h.tensor("h", grad=True)
    within_ulps(dx * 2.0**dxe, t.grad.numpy(), dxe, slack=2.0 ** (-9 - 8))
    if mode == "nearest":  # copies and sums: exact
        assert ye == he and np.array_equal(y * 2.0**ye, ref.detach().numpy())


def test_bilinear_resize_rounds_without_bias(rng):
    """Over 300 seeds, the mean of a bilinear output sits within 5 sigma of the float value."""
    g, k = resize_graph((1, 3, 3), (3, 3), "half_pixel", rng)
    x = rng.standard_normal((1, k)).astype(np.float32)
    dy = np.zeros((1, 1, 9, 9), np.int8)
    errs = []
    for seed in range(300):  # each seed rounds the upstream Gemm too: compare with this run's input
        h = Harness(g, batch=1, seed=seed)
        h.step(x, dy, 0)
        hq, he = h.tensor("h")
        y, ye = h.tensor("y")
        errs.append(y * 2.0**ye - torch_resize(torch.tensor(hq * 2.0**he), (3, 3), "half_pixel").numpy())
    assert np.abs(np.mean(errs, axis=0)).max() < 5 * 2.0**ye / 2 / np.sqrt(300) + 2.0 ** (he - 8)


@pytest.mark.parametrize("mode", ["half_pixel", "align_corners"])
def test_bilinear_resize_bit_exact_over_tiers_and_threads(rng, mode):
    g, k = resize_graph((2, 3, 5), (2, 3), mode, rng)
    x = rng.standard_normal((6, k)).astype(np.float32)
    runs = digests_over_tiers_and_threads(g, x, rng.integers(0, 2 * 6 * 15, 6))
    assert len(set(runs.values())) == 1, runs.keys()


class Upsampler(nn.Module):
    def __init__(self, mode, align_corners, scale=2):
        super().__init__()
        self.mode, self.align_corners, self.scale = mode, align_corners, scale
        self.c = nn.Conv2d(2, 3, 3, padding=1)
        self.d = nn.Conv2d(3, 3, 3, padding=2, dilation=2)  # DeepLab's dilated convolution

    def forward(self, x):
        y = nn.functional.interpolate(self.c(x), scale_factor=self.scale, mode=self.mode, align_corners=self.align_corners)
        return self.d(y)


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (True, 18)])
@pytest.mark.parametrize("scale", [2, 1.5, 0.75])
@pytest.mark.parametrize("mode,align_corners", [("bilinear", False), ("bilinear", True), ("nearest", None)])
def test_torch_upsampling_imports_and_matches(rng, mode, align_corners, scale, dynamo, opset):
    """torch's export of interpolate (and a dilated convolution after it), at integer and rational
    scale factors, runs in the runtime within the int8 format's error of torch's float32 forward."""
    torch.manual_seed(0)
    net = Upsampler(mode, align_corners, scale)
    imported = intedge.import_onnx(export(net, torch.randn(2, 2, 5, 6), dynamo=dynamo, opset=opset))
    resize = [n for n in imported.onnx_model.graph.node if n.op_type == "Resize"]
    assert resize
    s = intedge.Session(intedge.Model(imported.iem), batch_size=3, lr=0.0)
    x = rng.standard_normal((3, 2, 5, 6)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.tensor(x)).numpy()
    got = s.forward(x).reshape(ref.shape)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


class SkipUpsampler(nn.Module):
    """U-Net's decoder step: the coarse map resized to its skip's size, `interpolate(size=
    skip.shape[-2:])`, which exporters write as Shape, Slice and Concat into Resize's sizes."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.enc, self.down = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, stride=2, padding=1)

    def forward(self, x):
        skip = self.enc(x)
        kw = {} if self.mode == "nearest" else {"align_corners": False}
        return skip + nn.functional.interpolate(self.down(skip), size=skip.shape[-2:], mode=self.mode, **kw)


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (True, 18)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_sized_to_another_tensor_imports_and_matches(rng, mode, dynamo, opset):
    torch.manual_seed(0)
    net = SkipUpsampler(mode)
    model = export(net, torch.randn(2, 2, 6, 8), dynamo=dynamo, opset=opset)
    assert any(n.op_type == "Shape" for n in model.graph.node)  # the sizes come from the skip, not constants
    s = intedge.Session(intedge.Model(intedge.import_onnx(model).iem), batch_size=3, lr=0.0)
    x = rng.standard_normal((3, 2, 6, 8)).astype(np.float32)
    got = s.forward(x).reshape(3, 3, 6, 8)
    with torch.no_grad():
        ref = net(torch.tensor(x)).numpy()
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def onnx_resize(mode, coords, scales=(2, 3), shape=(2, 3, 4)):
    """An ONNX graph: a 1x1 Conv (something to train), then Resize with these attributes."""
    from onnx import TensorProto, helper
    c = shape[0]
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]),
             helper.make_node("Resize", ["h", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode=coords)]
    out = [c, shape[1] * scales[0], shape[2] * scales[1]]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out])],
                              [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, *scales]),
                               helper.make_tensor("w", TensorProto.FLOAT, [c, c, 1, 1], np.eye(c).reshape(-1))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("coords", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
def test_onnx_coordinate_modes_match_onnxruntime(rng, coords):
    import onnxruntime as ort
    model = onnx_resize("linear", coords)
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    s = intedge.Session(intedge.Model(intedge.import_onnx(model).iem), batch_size=2, lr=0.0)
    got = s.forward(x).reshape(ref.shape)
    # the input's and the output's int8 steps, each rounded stochastically in evaluation too (below one
    # step each, where rounding to nearest gave half): 2.3 steps measured
    assert np.abs(got - ref).max() < 3 * np.abs(ref).max() / 127


def test_resize_refuses_unknown_coordinate_modes():
    with pytest.raises(intedge.IntedgeError, match="coordinate_transformation_mode 'tf_crop_and_resize'"):
        intedge.import_onnx(onnx_resize("linear", "tf_crop_and_resize"))


# ---- rational scales: 1.5, 0.75, float32(2/3), sizes that are no multiple; every ONNX coordinate
# transform and nearest rounding. Source coordinates are exact rationals in the runtime; the
# references below compute them with Fraction.

COORDS = {"half_pixel": 1, "align_corners": 2, "asymmetric": 3, "pytorch_half_pixel": 4, "tf_half_pixel_for_nn": 5}
ROUNDING = {"floor": 0, "ceil": 1, "round_prefer_floor": 2, "round_prefer_ceil": 3}
# (input [C, H, W], the scales or sizes of H and W): down- and up-sampling, non-square, odd
GEOMETRIES = [((3, 5, 7), ("scales", 1.5, 0.75)), ((2, 6, 9), ("scales", 2 / 3, 1.25)),
              ((3, 5, 7), ("sizes", 8, 3)), ((2, 7, 4), ("sizes", 3, 10)), ((2, 5, 7), ("sizes", 1, 2))]
# (mode, coordinates, nearest rounding)
KINDS = [("linear", c, None) for c in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")] + [
    ("nearest", "asymmetric", "floor"), ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "half_pixel", "round_prefer_ceil"), ("nearest", "align_corners", "round_prefer_floor"),
    ("nearest", "tf_half_pixel_for_nn", "ceil"), ("nearest", "pytorch_half_pixel", "floor")]


def axis_scales(shape, geometry):
    """([Fraction] scales of H and W as the runtime holds them, output H and W)."""
    from fractions import Fraction
    kind, *v = geometry
    if kind == "sizes":
        return [Fraction(o, i) for o, i in zip(v, shape[1:])], list(v)
    fr = [Fraction(float(np.float32(s))).limit_denominator(1000) for s in v]
    return fr, [i * f.numerator // f.denominator for i, f in zip(shape[1:], fr)]


def resize_matrix(n, out, scale, coords, rounding=None):
    """float64 [out, n]: ONNX Resize along one axis (linear taps, or the nearest pixel), from the
    source coordinate computed exactly."""
    from fractions import Fraction
    import math
    a = np.zeros((out, n))
    for i in range(out):
        x = {"half_pixel": (i + Fraction(1, 2)) / scale - Fraction(1, 2),
             "pytorch_half_pixel": (i + Fraction(1, 2)) / scale - Fraction(1, 2) if out > 1 else Fraction(0),
             "align_corners": Fraction(i * (n - 1), out - 1) if out > 1 else Fraction(0),
             "asymmetric": i / scale, "tf_half_pixel_for_nn": (i + Fraction(1, 2)) / scale}[coords]
        if rounding is not None:
            k = {"floor": math.floor(x), "ceil": math.ceil(x), "round_prefer_floor": math.ceil(x - Fraction(1, 2)),
                 "round_prefer_ceil": math.floor(x + Fraction(1, 2))}[rounding]
            a[i, min(max(k, 0), n - 1)] = 1
            continue
        x = min(max(x, Fraction(0)), Fraction(n - 1))
        i0 = math.floor(x)
        a[i, i0] += float(1 - (x - i0))
        a[i, min(i0 + 1, n - 1)] += float(x - i0)
    return a


def onnx_resize_only(shape, geometry, mode, coords, rounding):
    """An ONNX graph x [N, C, H, W] -> Resize, with its scales or sizes and attributes."""
    from onnx import TensorProto, helper
    kind, *v = geometry
    extra = {} if rounding is None else {"nearest_mode": rounding}
    inputs = ["x", "", "scales"] if kind == "scales" else ["x", "", "", "sizes"]
    const = (helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, *v]) if kind == "scales" else
             helper.make_tensor("sizes", TensorProto.INT64, [4], [2, shape[0], *v]))  # a batch of 2
    node = helper.make_node("Resize", inputs, ["y"], mode=mode, coordinate_transformation_mode=coords, **extra)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [const])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def ort_run(model, x):
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def rational_resize_graph(shape, geometry, mode, coords, rounding, rng):
    g = iem.Graph()
    k = gemm_upstream(g, shape, rng)
    fr, out = axis_scales(shape, geometry)
    g.add_tensor("y", iem.KIND_ACTIVATION, (shape[0], *out))
    near = mode == "nearest"
    g.add_node("resize", iem.OP_RESIZE, ["h"], ["y"],
               [fr[0].numerator, fr[1].numerator, 0 if near else COORDS[coords], fr[0].denominator, fr[1].denominator,
                COORDS[coords] if near else 0, ROUNDING[rounding] if near else 0])
    g.output = g.index["y"]
    return g, k, out


@pytest.mark.parametrize("mode,coords,rounding", KINDS)
@pytest.mark.parametrize("shape,geometry", GEOMETRIES)
def test_rational_resize_against_onnxruntime_and_float64_autograd(rng, shape, geometry, mode, coords, rounding):
    """The forward against onnxruntime's Resize on the int8 values the op read, the input gradient
    against torch float64 autograd of the same map (A_h X A_w^T, its forward checked against
    onnxruntime too). Nearest is exact both ways."""
    g, k, out = rational_resize_graph(shape, geometry, mode, coords, rounding, rng)
    h = Harness(g, batch=2)
    dy = rng.integers(-127, 128, size=(2, shape[0], *out), dtype=np.int8)
    h.step(rng.standard_normal((2, k)).astype(np.float32), dy, -9)
    xq, xe = h.tensor("h")
    x = xq * 2.0**xe
    ref = ort_run(onnx_resize_only(shape, geometry, mode, coords, rounding), x.astype(np.float32))
    y, ye = h.tensor("y")
    assert ref.shape == y.shape
    fr, _ = axis_scales(shape, geometry)
    ah, aw = (torch.tensor(resize_matrix(n, o, f, coords, rounding)) for n, o, f in zip(shape[1:], out, fr))
    t = torch.tensor(x, requires_grad=True)
    mapped = ah @ t @ aw.T
    mapped.backward(torch.tensor(dy * 2.0**-9))
    assert np.abs(mapped.detach().numpy() - ref).max() <= 1e-6 * np.abs(ref).max()  # the reference is onnxruntime's map
    dx, dxe = h.tensor("h", grad=True)
    if mode == "nearest":  # copies, and sums of copies
        assert ye == xe and np.array_equal(y * 2.0**ye, ref)
        assert np.array_equal(dx * 2.0**dxe, t.grad.numpy()) or within_ulps(dx * 2.0**dxe, t.grad.numpy(), dxe) <= 1
        return
    fe = within_ulps(y * 2.0**ye, ref, ye, slack=2.0 ** (xe - 8) + 1e-6 * np.abs(ref).max())
    ge = within_ulps(dx * 2.0**dxe, t.grad.numpy(), dxe, slack=2.0 ** (-9 - 8))
    print(f"resize {mode} {coords} {shape}->{out}: forward {fe:.3f} ulp, dX {ge:.3f} ulp")  # docs/operators.md


@pytest.mark.parametrize("mode,coords,rounding", [("linear", "half_pixel", None), ("nearest", "half_pixel", "round_prefer_ceil")])
def test_torch_interpolate_agrees_with_the_reference_map(mode, coords, rounding):
    """The Fraction-built map is torch's own interpolate at rational scale factors (half_pixel is
    torch's bilinear without align_corners; tf_half_pixel_for_nn with floor is its nearest-exact)."""
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    fr, out = axis_scales((2, 6, 9), ("scales", 1.5, 0.75))
    ref = nn.functional.interpolate(x, scale_factor=(1.5, 0.75), mode="bilinear" if mode == "linear" else "nearest-exact",
                                    **({"align_corners": False} if mode == "linear" else {}))
    coords, rounding = (coords, rounding) if mode == "linear" else ("tf_half_pixel_for_nn", "floor")
    ah, aw = (torch.tensor(resize_matrix(n, o, f, coords, rounding)) for n, o, f in zip((6, 9), out, fr))
    assert torch.allclose(ah @ x @ aw.T, ref, atol=1e-12)


@pytest.mark.parametrize("mode,coords,rounding", KINDS)
@pytest.mark.parametrize("shape,geometry", GEOMETRIES)
def test_rational_resize_imports_and_matches_onnxruntime(shape, geometry, mode, coords, rounding):
    """The importer's reading of scales, sizes and attributes: a Resize-only graph on whole
    numbers (exact in int8) gives onnxruntime's output: nearest exactly, bilinear within one step."""
    x = np.random.default_rng(1).integers(-127, 128, size=(2, *shape)).astype(np.float32)
    model = onnx_resize_only(shape, geometry, mode, coords, rounding)
    ref = ort_run(model, x)
    got = intedge.Session(intedge.Model(intedge.import_onnx(model).iem), batch_size=2, lr=0.0).forward(x).reshape(ref.shape)
    if mode == "nearest":
        assert np.array_equal(got, ref)
    else:
        assert np.abs(got - ref).max() <= 2 * np.abs(ref).max() / 127


@pytest.mark.parametrize("mode,coords,rounding", [("linear", "half_pixel", None), ("nearest", "half_pixel", "round_prefer_floor")])
def test_rational_resize_bit_exact_over_tiers_and_threads(rng, mode, coords, rounding):
    g, k, out = rational_resize_graph((2, 5, 7), ("scales", 1.5, 0.75), mode, coords, rounding, rng)
    x = rng.standard_normal((6, k)).astype(np.float32)
    runs = digests_over_tiers_and_threads(g, x, rng.integers(0, 2 * int(np.prod(out)), 6))
    assert len(set(runs.values())) == 1, runs.keys()


@pytest.mark.parametrize("op,opset,mode,scales", [("Upsample", 9, "nearest", (1.5, 2.0)), ("Upsample", 9, "linear", (1.5, 1.0)),
                                                  ("Resize", 10, "nearest", (1.5, 2.0)), ("Resize", 10, "nearest", (0.75, 0.5)),
                                                  ("Resize", 10, "linear", (1.5, 0.75))])
def test_legacy_upsample_and_resize_match_onnxruntime(op, opset, mode, scales):
    """Before opset 11: (X, scales), asymmetric coordinates, and onnxruntime's "simple" nearest
    (the floor when enlarging, the ceiling when shrinking)."""
    from onnx import TensorProto, helper
    x = np.random.default_rng(2).integers(-127, 128, size=(2, 2, 5, 7)).astype(np.float32)
    graph = helper.make_graph([helper.make_node(op, ["x", "scales"], ["y"], mode=mode)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, *scales])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    ref = ort_run(model, x)
    got = intedge.Session(intedge.Model(intedge.import_onnx(model).iem), batch_size=2, lr=0.0).forward(x).reshape(ref.shape)
    assert np.abs(got - ref).max() <= (0 if mode == "nearest" else 2 * np.abs(ref).max() / 127)


@pytest.mark.parametrize("scales,match", [((1, 1, 1.2345678, 1), "ratios of integers"), ((1, 2, 1.5, 1.5), "keep N and C"),
                                          ((1, 1, 1e-5, 1), "ratios of integers")])
def test_resize_refuses_scales_it_cannot_hold(scales, match):
    from onnx import numpy_helper
    model = onnx_resize("linear", "half_pixel")
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
    with pytest.raises(intedge.IntedgeError, match=match):
        intedge.import_onnx(model)
