"""intedge eval and intedge export (float32 and int8 QDQ) against onnxruntime."""
import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import ROOT, run_cli
from test_data import make_folder
from test_training import assert_export_matches_eval, ort_logits

MODEL = ROOT / "models" / "mlp_digits.onnx"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ev") / "run"
    res = run_cli("train", MODEL, "builtin:digits", "--epochs", "4", "--momentum", "0.9", "--lr", "0.05",
                  "--output-dir", out, "--quiet")
    assert res.returncode == 0, res.stderr
    return out


def eval_json(*args):
    res = run_cli("eval", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def digits_val():
    import intedge
    ds = intedge.load_data("builtin:digits", seed=0)
    return ds.x_val, ds.y_val


def test_eval_report(run):
    r = eval_json(run, "builtin:digits")
    assert r["samples"] == 359 and r["accuracy"] > 0.9
    cm = np.array(r["confusion_matrix"])
    assert cm.sum() == 359 and np.trace(cm) / 359 == pytest.approx(r["accuracy"])
    assert set(r["per_class_accuracy"]) == set(str(i) for i in range(10))
    text = run_cli("eval", run, "builtin:digits").stdout
    assert "confusion matrix" in text and "accuracy" in text


def run_trainer(run_dir):
    """The trainer `intedge eval` builds from the run's newest checkpoint."""
    import intedge
    from intedge import checkpoint as ckpt
    return intedge.Trainer.from_checkpoint(ckpt.load_latest(run_dir))


def test_float_export_agrees_with_eval(run, tmp_path):
    out = tmp_path / "m.onnx"
    res = run_cli("export", run, "-o", out)
    assert res.returncode == 0, res.stderr
    x, y = digits_val()
    worst, agree = assert_export_matches_eval(run_trainer(run), out, x)
    print(f"\n[float32 export] logits within {worst:.2f} units of intedge's last place; same class on {agree:.4f} "
          "of val samples")
    # intedge eval reads the exported file's weights, and the checkpoint's, to the same accuracy
    assert abs(eval_json(out, "builtin:digits")["accuracy"] - eval_json(run, "builtin:digits")["accuracy"]) <= 0.01


def test_int8_qdq_export_runs_in_onnxruntime(run, tmp_path):
    out = tmp_path / "m8.onnx"
    res = run_cli("export", run, "-o", out, "--int8")
    assert res.returncode == 0, res.stderr
    import onnx
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x, y = digits_val()
    worst, agree = assert_export_matches_eval(run_trainer(run), out, x)
    print(f"\n[int8 QDQ export] logits within {worst:.2f} units of intedge's last place; same class on {agree:.4f} "
          f"of val samples; accuracy {(ort_logits(out, x).argmax(1) == y).mean():.4f}")


def test_image_run_class_names_reach_eval(tmp_path):
    import onnx

    from build_mlp import build_mlp
    make_folder(tmp_path / "d", n_classes=3, size=8)
    onnx.save(build_mlp([64, 32, 3], input_shape=(1, 8, 8), seed=0), str(tmp_path / "m3.onnx"))
    out = tmp_path / "run"
    res = run_cli("train", tmp_path / "m3.onnx", tmp_path / "d", "--epochs", "3", "--normalize", "auto", "--augment", "flip",
                  "--output-dir", out, "--quiet")
    assert res.returncode == 0, res.stderr
    assert (out / "curves.png").stat().st_size > 1000
    r = eval_json(out / "model.onnx", tmp_path / "d")
    assert r["classes"] == ["digit_0", "digit_1", "digit_2"]
    r2 = eval_json(out, tmp_path / "d")
    assert r2["accuracy"] == pytest.approx(r["accuracy"], abs=0.02)
    x = res.stdout
    assert "train_loss" in x and "epoch" in x  # the summary table


def test_eval_export_errors(tmp_path):
    res = run_cli("export", tmp_path / "none", "-o", tmp_path / "x.onnx")
    assert res.returncode == 2 and "no checkpoints found" in res.stderr
    for sub in ("train", "eval", "export"):
        h = run_cli(sub, "--help")
        assert h.returncode == 0 and "examples:" in h.stdout


def test_export_of_a_training_mode_graph_runs_batchnorm_on_running_statistics():
    """A graph exported with BatchNormalization in training mode (its running-statistics outputs)
    comes out of intedge's export as an inference graph: one output a BatchNormalization node, and
    onnxruntime's outputs are the eval-mode float outputs of the same weights."""
    import tempfile

    import onnx
    import torch

    import intedge
    from torch_models import ResNet8, export_training
    torch.manual_seed(0)
    net = ResNet8(in_ch=1, width=8)
    model = export_training(net, torch.randn(2, 1, 12, 12), dynamo=False, opset=13)
    assert max(len(n.output) for n in model.graph.node if n.op_type == "BatchNormalization") == 5
    t = intedge.Trainer(model, batch_size=4)
    with tempfile.TemporaryDirectory() as d:
        out = onnx.load(t.export_onnx(f"{d}/m.onnx"))
    assert {len(n.output) for n in out.graph.node if n.op_type == "BatchNormalization"} == {1}
    x = np.random.default_rng(0).standard_normal((3, 1, 12, 12)).astype(np.float32) * 3 + 1
    s = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    net.eval()
    with torch.no_grad():
        ref = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(s.run(None, {s.get_inputs()[0].name: x})[0], ref, rtol=1e-3, atol=1e-3)
