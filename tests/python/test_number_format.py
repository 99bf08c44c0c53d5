"""The number format's ablation options (rounding, grad_bits, sgd_bits, bn_input_bits; docs/fidelity.md): each
setting is bit-exact across kernel tiers and thread counts, each does what it says, bad values
are refused in one line, and checkpoints carry them."""
import hashlib
import json

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import intedge
from conftest import ROOT, run_cli
from intedge.runtime import kernel_tiers
from torch_models import ResNet8, export_training

TIERS = kernel_tiers()
ABLATIONS = [{"rounding": "nearest"}, {"grad_bits": 4}, {"sgd_bits": 16}, {"bn_input_bits": 16}]


def digest(trainer):
    h = hashlib.sha256()
    for p in trainer.session.model.params:
        q, e = trainer.session.param_fixed(p.index)
        h.update(q.tobytes() + np.int16(e).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def resnet():
    """A small ResNet-8: BatchNorm, fan-out (gradient slots summed), a strided shortcut."""
    torch.manual_seed(0)
    model = export_training(ResNet8(in_ch=1, width=4), torch.randn(2, 1, 12, 12), dynamo=False, opset=13)
    rng = np.random.default_rng(0)
    return model, rng.standard_normal((64, 1, 12, 12)).astype(np.float32), rng.integers(0, 10, 64)


def train(model, x, y, **kw):
    t = intedge.Trainer(model, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-4, seed=2, **kw)
    t.fit(x, y, epochs=2, progress=False)
    return t


@pytest.mark.parametrize("fmt", ABLATIONS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_each_setting_is_bit_exact_across_tiers_and_threads(resnet, fmt):
    model, x, y = resnet
    runs = {(tier, threads): train(model, x, y, kernels=tier, threads=threads, **fmt)
            for tier, threads in [(t, 1) for t in TIERS] + [(TIERS[-1], 3)]}
    digests = {k: digest(t) for k, t in runs.items()}
    assert len(set(digests.values())) == 1, digests
    predictions = {k: t.predict(x).tobytes() for k, t in runs.items()}
    assert len(set(predictions.values())) == 1
    assert digests[("scalar", 1)] != digest(train(model, x, y))  # the setting changes the arithmetic


def one_gemm(inputs=4, classes=10):
    w = np.random.default_rng(0).uniform(-0.5, 0.5, (classes, inputs)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", inputs])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), w


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_grad_bits_narrow_the_gradient_that_reaches_the_weights(bits):
    """One sample x = e0 through one Gemm: column 0 of the weight step is -lr times the logit
    gradient itself, so its distinct magnitudes are the gradient's integer levels."""
    model, w0 = one_gemm()
    counts = []
    for seed in range(6):
        t = intedge.Trainer(model, batch_size=1, lr=1.0, seed=seed, grad_bits=bits)
        before = t.state_dict()["w"][:, 0]
        t.fit(np.eye(4, dtype=np.float32)[:1], np.array([3]), epochs=1, progress=False)
        step = np.abs(before - t.state_dict()["w"][:, 0])
        counts.append(len(np.unique(np.round(step[step > 1e-6] / step.max(), 4))))
    if bits < 8:
        assert max(counts) <= 2 ** (bits - 1) - 1, counts
    else:
        assert max(counts) > 3, counts  # int8's levels


def test_sgd_bits_16_keeps_master_weights_within_int16(resnet):
    model, x, y = resnet
    for bits, limit in ((16, 1 << 14), (32, 1 << 30)):
        t = train(model, x, y, sgd_bits=bits)
        widest = max(np.abs(t.session.param_fixed(p.index)[0]).max() for p in t.session.model.params
                     if "running" not in p.name)
        assert limit // 4 <= widest < limit, (bits, widest)


def test_stochastic_rounding_keeps_updates_below_the_master_resolution():
    """Steps of 1/20 of a master ulp (int16 masters): rounding to nearest drops every one,
    stochastic rounding moves the weights by the right amount on average (over 8 seeds)."""
    model, w0 = one_gemm()
    x, y = np.repeat(np.eye(4, dtype=np.float32)[:1], 1000, 0), np.full(1000, 3)
    ulp = 2.0 ** (np.floor(np.log2(np.abs(w0).max())) + 1 - 13)  # 13-bit terms
    moved = {}
    for rounding in ("nearest", "stochastic"):
        for seed in range(8 if rounding == "stochastic" else 1):
            t = intedge.Trainer(model, batch_size=1, lr=ulp / 20, seed=seed, rounding=rounding, sgd_bits=16)
            before = t.state_dict()["w"][:, 0]  # the int16 master of w0
            t.fit(x, y, epochs=1, progress=False)
            moved.setdefault(rounding, []).append(before - t.state_dict()["w"][:, 0])
    assert np.all(np.array(moved["nearest"]) == 0)
    # the float gradient at x = e0 is softmax(w[:, 0]) - onehot(3) (w barely moves): 1000 steps of it
    z = w0[:, 0]
    expect = 1000 * ulp / 20 * (np.exp(z - z.max()) / np.exp(z - z.max()).sum() - np.eye(10)[3])
    mean = np.mean(moved["stochastic"], axis=0)
    assert mean @ expect / np.linalg.norm(mean) / np.linalg.norm(expect) > 0.98
    assert 0.85 < np.linalg.norm(mean) / np.linalg.norm(expect) < 1.15


@pytest.mark.parametrize("kw,needle", [({"grad_bits": 9}, "grad_bits must lie in 2..8"),
                                       ({"sgd_bits": 8}, "sgd_bits must lie in 16..32"),
                                       ({"bn_input_bits": 12}, "bn_input_bits must be 8 or 16"),
                                       ({"rounding": "up"}, "rounding must be one of")])
def test_bad_settings_are_refused(mlp_digits, kw, needle):
    with pytest.raises(intedge.IntedgeError, match=needle):
        intedge.Trainer(mlp_digits, **kw)


def test_the_runtime_refuses_bad_settings_itself(mlp_digits):
    from intedge._ffi import ffi, lib
    m = intedge.Trainer(mlp_digits).runtime_model
    for field, value, needle in (("grad_bits", 1, "grad_bits 1 is outside 2..8"),
                                 ("sgd_bits", 33, "sgd_bits 33 is outside 16..32"), ("rounding", 7, "unknown rounding"),
                                 ("bn_input_bits", 12, "bn_input_bits 12 is neither 8 nor 16")):
        cfg, _keep = m._config(32, 0.1, 0.0, 0.0, 0, "cross_entropy", None)
        setattr(cfg, field, value)
        handle = ffi.new("ie_session **")
        assert lib.ie_session_create(m._h, cfg, ffi.NULL, 0, handle) == lib.IE_ERR_ARG
        assert needle in m.errmsg()


def test_cli_takes_the_settings_and_a_resume_keeps_them(tmp_path):
    model = ROOT / "models" / "mlp_digits.onnx"
    res = run_cli("train", model, "builtin:digits", "--grad-bits", "9")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--grad-bits" in res.stderr
    res = run_cli("train", model, "builtin:digits", "--bn-input-bits", "12")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--bn-input-bits" in res.stderr
    out = tmp_path / "run"
    res = run_cli("train", model, "builtin:digits", "--epochs", "1", "--quiet", "--rounding", "nearest",
                  "--grad-bits", "6", "--sgd-bits", "20", "--bn-input-bits", "16", "--output-dir", out)
    assert res.returncode == 0, res.stderr
    ck = intedge.Trainer.from_checkpoint(sorted((out / "checkpoints").glob("*.iec"))[-1])
    assert ck.number_format == intedge.NumberFormat("nearest", 6, 20, 16)
    res = run_cli("train", model, "builtin:digits", "--epochs", "2", "--quiet", "--resume", out,
                  "--output-dir", tmp_path / "resumed")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 2
    resumed = intedge.Trainer.from_checkpoint(sorted((tmp_path / "resumed" / "checkpoints").glob("*.iec"))[-1])
    assert resumed.number_format == intedge.NumberFormat("nearest", 6, 20, 16)
