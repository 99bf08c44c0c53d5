"""What the Python side holds while a model trains (docs/benchmarks.md, issue 13's peak RSS): a
model imported from a file keeps no ONNX graph, the import holds the weights at most twice at
its peak, and the graph comes back from the file when export or a checkpoint needs it."""
import gc
import json
import mmap
import subprocess
import sys

import onnx
import pytest
from build_mlp import build_mlp
from conftest import ROOT

import intedge
from intedge import iem
from intedge.inspect_model import trainable_flags

# run in a fresh process: its peak (VmHWM) and its live protobuf objects are the import's alone
PROBE = """
import gc, json, sys
from pathlib import Path
import onnx
import intedge
from intedge.inspect_model import trainable_flags
from intedge.onnx_import import import_onnx

def status(key):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024

base = status("VmRSS")
imported = import_onnx(sys.argv[1])
gc.collect()
protos = sum(isinstance(o, (onnx.ModelProto, onnx.GraphProto, onnx.NodeProto, onnx.TensorProto))
             for o in gc.get_objects())
print(json.dumps({"held": imported.onnx_proto is not None, "protos": protos, "iem": len(imported.iem),
                  "peak": status("VmHWM") - base, "after": status("VmRSS") - base}))
"""


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """An MLP with 32 MB of weights (one 2048 x 4096 layer), as a file."""
    path = tmp_path_factory.mktemp("memory") / "big.onnx"
    onnx.save(build_mlp([2048, 4096, 10], seed=0), str(path))
    return path


def test_import_from_a_file_holds_no_graph_and_the_weights_at_most_twice(big_model):
    res = subprocess.run([sys.executable, "-c", PROBE, str(big_model)], capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    weights = 4 * (2048 * 4096 + 4096 + 4096 * 10 + 10)
    assert not got["held"] and got["protos"] == 0, got  # no ModelProto, nor a node or tensor keeping it alive
    assert got["iem"] > weights
    # the file's bytes and its parse, then the parse and the weights' arrays, then the arrays and the
    # .iem: two copies at a time (before: the graph, the arrays and three copies of the .iem)
    assert got["peak"] < 2.5 * weights, got
    assert got["after"] < 1.4 * weights, got  # the .iem alone


def test_the_graph_comes_back_from_the_file_and_a_changed_file_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    model = build_mlp([64, 16, 3], input_shape=(1, 8, 8), seed=0)
    onnx.save(model, str(path))
    imported = intedge.import_onnx(str(path))
    assert imported.onnx_proto is None
    assert imported.onnx_model.SerializeToString() == model.SerializeToString()
    t = intedge.Trainer(imported, batch_size=4, lr=0.1)
    t.export_onnx(str(tmp_path / "trained.onnx"))
    assert len(onnx.load(str(tmp_path / "trained.onnx")).graph.initializer) == 4
    onnx.save(build_mlp([64, 16, 3], input_shape=(1, 8, 8), seed=1), str(path))
    with pytest.raises(intedge.IntedgeError, match="changed since it was imported"):
        t.export_onnx(str(tmp_path / "again.onnx"))


def test_a_model_given_in_memory_is_kept():
    model = build_mlp([64, 16, 3], input_shape=(1, 8, 8), seed=0)
    assert intedge.import_onnx(model).onnx_model is model


def test_trainable_patterns_match_node_names_without_reading_the_file_again(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(build_mlp([64, 16, 3], input_shape=(1, 8, 8), seed=0), str(path))
    imported = intedge.import_onnx(str(path))
    path.unlink()  # the owners of the parameters were recorded by the import
    assert trainable_flags(imported, ["fc2"]) == [False, False, True, True]


# a trainer in a fresh process: what its session's creation adds to the process, with the .iem held
TRAIN_PROBE = """
import json, sys
from pathlib import Path
import intedge

def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024

imported = intedge.import_onnx(sys.argv[1])
before = rss()
t = intedge.Trainer(imported, batch_size=2, lr=0.1)
print(json.dumps({"added": rss() - before}))
"""


def test_a_trainer_gives_the_iem_weights_back_once_its_session_has_its_masters(big_model):
    res = subprocess.run([sys.executable, "-c", TRAIN_PROBE, str(big_model)], capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    weights = 4 * (2048 * 4096 + 4096 + 4096 * 10 + 10)
    # the session's int32 masters are as large as the float weights; the .iem's float pages go back,
    # so the process grows by far less than one copy of the weights (it held two before)
    assert got["added"] < 0.3 * weights, got


def test_released_weights_come_back_by_translating_again_and_borrowers_refuse_sessions(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(build_mlp([256, 64, 3], input_shape=(1, 16, 16), seed=0), str(path))
    imported = intedge.import_onnx(str(path))
    original = bytes(imported.iem)
    early = intedge.Model(imported.iem)  # loaded from the same bytes before the trainer released them
    t = intedge.Trainer(imported, batch_size=4, lr=0.1)
    assert imported.iem_blob.released
    # the pages are freed, not merely unmapped: their bytes read back as zeros (a shared map would
    # keep them, and give them back)
    off, length = max(iem.weight_spans(imported.iem_blob.view), key=lambda s: s[1])
    page = mmap.PAGESIZE
    start = -(-off // page) * page
    assert length > 2 * page and not any(imported.iem_blob.view[start:start + page])
    with pytest.raises(intedge.IntedgeError, match="weights were released"):
        intedge.Session(early, batch_size=4, lr=0.1)
    assert early.arena_size(4) > 0  # planning needs no weights
    assert bytes(imported.iem) == original  # translated again from the file
    again = intedge.Trainer(imported, batch_size=4, lr=0.1)  # a second trainer of the same import
    assert again.session.digest() == t.session.digest()


def test_the_optimizer_normalizes_a_gradient_in_its_own_buffer():
    """A trained weight's arena share at its backward: the int32 master and momentum, its int8 view
    and its exact (int64) gradient, which the optimizer normalizes in place (no int32 copy: 4 bytes
    a weight, 9 MB of ResNet-18's busiest moment)."""
    model = intedge.Model(intedge.import_onnx(build_mlp([2048, 4096, 10], seed=0)).iem)
    numel = 2048 * 4096
    arena = model.arena_size(1, momentum=0.9)
    assert arena < (4 + 4 + 1 + 8) * numel * 1.02, arena / numel


def test_intedge_train_frees_its_session_before_drawing_the_curves(monkeypatch, tmp_path):
    """matplotlib (35 MB) comes in for curves.png after training: the arena must be gone by then."""
    from intedge import cli, report
    from intedge._ffi import ffi

    def live_sessions():
        gc.collect()
        return sum(isinstance(o, intedge.Session) and o._h != ffi.NULL for o in gc.get_objects())

    before, seen = live_sessions(), []
    monkeypatch.setattr(report, "plot_curves", lambda history, path: seen.append(live_sessions()))
    cli.main(["train", str(ROOT / "models" / "mlp_digits.onnx"), "builtin:digits", "--epochs", "1", "--quiet",
              "--output-dir", str(tmp_path)])
    assert seen == [before]
