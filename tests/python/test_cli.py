"""The `intedge` command: the happy path and every user error (exit 2, one message, no traceback)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from conftest import ROOT, run_cli


def assert_user_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("intedge: error:")
    for n in needles:
        assert n in res.stderr, res.stderr


def test_train_bundled_model_writes_metrics_and_onnx(tmp_path):
    out = tmp_path / "run"
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", "--epochs", "3", "--output-dir", out)
    assert res.returncode == 0, res.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    for key in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
        assert key in rows[-1]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_acc"] > 0.85
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    from sklearn.datasets import load_digits
    d = load_digits()
    pred = sess.run(None, {"input": (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)})[0].argmax(1)
    assert (pred == d.target).mean() > 0.85


def test_npz_features_reshape_to_image_input(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)  # [N, 64] feeds the [N, 1, 8, 8] input
    np.savez(tmp_path / "d.npz", x_train=x[:1400], y_train=d.target[:1400], x_val=x[1400:], y_val=d.target[1400:])
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", tmp_path / "d.npz", "--epochs", "2",
                  "--momentum", "0.9", "--lr", "0.05", "--output-dir", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "o" / "metrics.jsonl").read_text().splitlines()[-1])["val_acc"] > 0.85


def test_default_output_dir_increments(tmp_path):
    for expected in ("train-1", "train-2"):
        res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", "--epochs", "1", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "runs" / expected / "model.onnx").exists()


def test_missing_model_file(tmp_path):
    assert_user_error(run_cli("train", tmp_path / "nope.onnx", "builtin:digits"), "nope.onnx", "no such file")


def test_non_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffthis is not protobuf" * 10)
    assert_user_error(run_cli("train", bad, "builtin:digits"), "not a valid ONNX model")


def test_unsupported_ops_listed(tmp_path):
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("LpNormalization", ["f"], ["n"], name="norm"),
             helper.make_node("Tanh", ["n"], ["y"], name="squash")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])])
    path = tmp_path / "u.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    res = run_cli("train", path, "builtin:digits")
    assert_user_error(res, "node 'norm' (LpNormalization)", "node 'squash' (Tanh)", "2 node(s)")


def test_labels_out_of_range(tmp_path):
    x = np.random.default_rng(0).random((40, 64)).astype(np.float32)
    y = np.arange(40) % 12  # 10 outputs, labels up to 11
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    assert_user_error(run_cli("train", ROOT / "models" / "mlp_digits.onnx", tmp_path / "d.npz"),
                      "label 11 is outside [0, 10)")


def test_feature_size_mismatch(tmp_path):
    x = np.zeros((40, 63), np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(40, np.int64))
    assert_user_error(run_cli("train", ROOT / "models" / "mlp_digits.onnx", tmp_path / "d.npz"),
                      "63 values", "[1, 8, 8] = 64")


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", "--epochs", "1",
                              "--output-dir", blocker / "sub"), "cannot write to output dir")


def test_bad_numbers_and_unknown_data(tmp_path):
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", "--epochs", "0")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert_user_error(run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:nothing"), "unknown dataset")
    csv = tmp_path / "d.txt"
    csv.write_text("1,2")
    assert_user_error(run_cli("train", ROOT / "models" / "mlp_digits.onnx", csv), "unsupported data format")


def test_help_shows_examples():
    res = run_cli("train", "--help")
    assert res.returncode == 0 and "intedge train models/mlp_digits.onnx builtin:digits" in res.stdout
