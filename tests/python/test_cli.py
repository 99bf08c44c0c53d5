"""The `intedge` command: the happy path and every user error (exit 2, one message, no traceback)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, assert_user_error, run_cli


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
             helper.make_node("Softplus", ["n"], ["y"], name="squash")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])])
    path = tmp_path / "u.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    res = run_cli("train", path, "builtin:digits")
    assert_user_error(res, "node 'norm' (LpNormalization)", "node 'squash' (Softplus)", "2 node(s)",
                      lines=4)  # the count, a line per node, the supported operators


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


def test_inspect_lists_layers_and_arena(tmp_path):
    res = run_cli("inspect", ROOT / "models" / "mlp_digits.onnx", "--batch-size", "16", "--trainable", "fc2*")
    assert res.returncode == 0, res.stderr
    assert "Gemm" in res.stdout and "training arena at batch 16" in res.stdout and "1,290 trainable" in res.stdout
    res = run_cli("inspect", ROOT / "models" / "mlp_digits.onnx", "--json")
    info = json.loads(res.stdout)
    assert [r["op"] for r in info["rows"]] == ["Flatten", "Gemm", "Relu", "Gemm"] and info["arena"] > 0
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"), helper.make_node("Softplus", ["f"], ["y"], name="t")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "u.onnx"))
    res = run_cli("inspect", tmp_path / "u.onnx")
    assert res.returncode == 2 and "NO: operator Softplus" in res.stdout


def test_head_only_fine_tuning_from_the_cli(tmp_path):
    """Pretrain a LeNet-5 on digits 0-4, then fine-tune only its classifier on digits 5-9."""
    import torch

    from intedge import checkpoint as ckpt
    from torch_models import LeNet5, export
    torch.manual_seed(0)
    onnx.save(export(LeNet5(flatten_by_view=True), torch.randn(2, 1, 28, 28), dynamo=False, opset=13),
              str(tmp_path / "lenet.onnx"))
    import intedge
    ds = intedge.load_data("builtin:mnist-5k", seed=0)
    old, new = ds.y_train < 5, ds.y_train >= 5
    np.savez(tmp_path / "old.npz", x_train=ds.x_train[old], y_train=ds.y_train[old])
    np.savez(tmp_path / "new.npz", x_train=ds.x_train[new][:1000], y_train=ds.y_train[new][:1000],
             x_val=ds.x_val[ds.y_val >= 5], y_val=ds.y_val[ds.y_val >= 5])
    res = run_cli("train", tmp_path / "lenet.onnx", tmp_path / "old.npz", "--epochs", "2", "--normalize", "auto",
                  "--lr", "0.05", "--momentum", "0.9", "--output-dir", tmp_path / "pre", "--quiet")
    assert res.returncode == 0, res.stderr
    res = run_cli("train", tmp_path / "pre" / "model.onnx", tmp_path / "new.npz", "--epochs", "3", "--normalize",
                  "auto", "--lr", "0.05", "--momentum", "0.9", "--trainable", "f3.*,/f3/*",
                  "--output-dir", tmp_path / "ft", "--quiet")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_acc"] > 0.5  # a new class split (never predicted before) learned by the classifier alone
    pre = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "pre" / "model.onnx")).graph.initializer}
    ft = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "ft" / "model.onnx")).graph.initializer}
    assert np.array_equal(pre["c1.weight"], ft["c1.weight"]) and np.array_equal(pre["f2.weight"], ft["f2.weight"])
    assert not np.array_equal(pre["f3.weight"], ft["f3.weight"])
    assert ckpt.load_latest(tmp_path / "ft").meta["config"]["trainable"].count(True) == 2


def test_missing_data_folder_and_bad_image_policy(tmp_path):
    assert_user_error(run_cli("train", ROOT / "models" / "mlp_digits.onnx", tmp_path / "photos"),
                      "photos: no such file or folder")
    from test_data import make_folder
    make_folder(tmp_path / "d", size=8)
    (tmp_path / "d" / "train" / "digit_1" / "bad.png").write_bytes(b"\x89PNG broken")
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", tmp_path / "d", "--on-bad-image", "fail",
                  "--output-dir", tmp_path / "o")
    assert_user_error(res, "cannot decode image", "bad.png", "--on-bad-image skip")
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", tmp_path / "d", "--epochs", "1", "--output-dir",
                  tmp_path / "o", "--quiet")
    assert res.returncode == 0 and "skipped 1 unreadable image(s)" in res.stderr


def test_a_run_keeps_its_own_copy_of_the_model(tmp_path, monkeypatch):
    """The import keeps no ONNX graph in memory, so checkpoints and export read the model's file
    again: a run must not fail when the user re-exports MODEL while it trains."""
    import shutil

    from intedge import cli
    from intedge.trainer import Trainer

    model, out = tmp_path / "mlp.onnx", tmp_path / "run"
    shutil.copyfile(ROOT / "models" / "mlp_digits.onnx", model)
    fit = Trainer.fit

    def overwrite_then_fit(self, *args, **kwargs):
        model.write_bytes(b"re-exported meanwhile")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", overwrite_then_fit)
    assert cli.main(["train", str(model), "builtin:digits", "--epochs", "1", "--output-dir", str(out), "--quiet"]) == 0
    assert (out / "source.onnx").read_bytes() == (ROOT / "models" / "mlp_digits.onnx").read_bytes()
    assert list((out / "checkpoints").glob("*.iec")) and onnx.load(out / "model.onnx").graph.node
