"""Checkpoints: atomic writes, SIGKILL at several points (one mid-write), bit-identical resume,
fallback past a corrupt checkpoint, and a full disk that loses nothing already written."""
import errno
import json
import os
import signal
import zlib

import numpy as np
import pytest

import intedge
from intedge import checkpoint as ckpt
from intedge import cli
from conftest import ROOT, run_cli

MODEL = ROOT / "models" / "mlp_digits.onnx"
TRAIN = ["train", MODEL, "builtin:digits", "--epochs", "3", "--batch-size", "16", "--momentum", "0.9",
         "--weight-decay", "1e-4", "--seed", "11", "--checkpoint-every", "25", "--quiet"]


def final_state(run_dir):
    return ckpt.load_latest(run_dir).state


def stable_metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]


def run_with_faults(out, env, *extra):
    os.environ.update(env)
    try:
        return run_cli(*TRAIN, "--output-dir", out, *extra)
    finally:
        for k in env:
            os.environ.pop(k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    res = run_cli(*TRAIN, "--output-dir", out)
    assert res.returncode == 0, res.stderr
    return out


def test_kill_and_resume_is_bit_identical(tmp_path, uninterrupted):
    out = tmp_path / "run"
    # 1) killed right after step 40, between checkpoints (the last one is at step 25)
    r = run_with_faults(out, {"INTEDGE_FAULT_KILL_AT_STEP": "40"})
    assert r.returncode == -signal.SIGKILL
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["ckpt-00000025.iec"]
    # 2) resumed, then killed halfway through its second checkpoint write (step 75)
    r = run_with_faults(out, {"INTEDGE_FAULT_KILL_IN_CHECKPOINT": "2"}, "--resume", out)
    assert r.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".ckpt-") for p in (out / "checkpoints").iterdir())  # the torn temp file
    assert ckpt.list_checkpoints(out / "checkpoints")[-1].name == "ckpt-00000050.iec"
    # 3) resumed again, killed at the end of epoch 2's last step
    r = run_with_faults(out, {"INTEDGE_FAULT_KILL_AT_STEP": "180"}, "--resume", out)
    assert r.returncode == -signal.SIGKILL
    # 4) resumed to the end
    r = run_cli(*TRAIN, "--output-dir", out, "--resume", out)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout
    assert final_state(out) == final_state(uninterrupted)
    assert (out / "model.onnx").read_bytes() == (uninterrupted / "model.onnx").read_bytes()
    assert stable_metrics(out) == stable_metrics(uninterrupted)


def test_corrupt_checkpoint_falls_back(tmp_path, uninterrupted):
    out = tmp_path / "run"
    r = run_with_faults(out, {"INTEDGE_FAULT_KILL_AT_STEP": "120"})
    assert r.returncode == -signal.SIGKILL
    newest = ckpt.list_checkpoints(out / "checkpoints")[-1]
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    newest.write_bytes(bytes(blob))
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load(newest)
    r = run_cli(*TRAIN, "--output-dir", out, "--resume", out)
    assert r.returncode == 0, r.stderr
    assert "corrupt" in r.stderr and "falling back" in r.stderr
    assert final_state(out) == final_state(uninterrupted)


def test_truncated_checkpoint_is_refused(tmp_path, uninterrupted):
    good = ckpt.list_checkpoints(uninterrupted / "checkpoints")[-1].read_bytes()
    for n in (0, 10, 23, 24, 100, len(good) - 1):
        (tmp_path / "t.iec").write_bytes(good[:n])
        with pytest.raises(ckpt.CheckpointError, match="truncated|not an intedge checkpoint"):
            ckpt.load(tmp_path / "t.iec")
    res = run_cli("export", tmp_path / "t.iec", "-o", tmp_path / "x.onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "truncated" in res.stderr


def test_keeps_the_newest_k(uninterrupted):
    names = [p.name for p in ckpt.list_checkpoints(uninterrupted / "checkpoints")]
    # every 25 steps plus each epoch's end (90, 180, 270); the default keeps the newest 3
    assert names == ["ckpt-00000225.iec", "ckpt-00000250.iec", "ckpt-00000270.iec"]


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = {"n": 0}
    real = ckpt._write_all

    def filling_disk(f, data):
        calls["n"] += 1
        if calls["n"] >= 3:
            f.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(ckpt, "_write_all", filling_disk)
    code = cli.main([str(a) for a in TRAIN] + ["--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "the disk is full" in err and "Traceback" not in err
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["ckpt-00000025.iec", "ckpt-00000050.iec"]  # no temp file left behind
    ck = ckpt.load(out / "checkpoints" / "ckpt-00000050.iec")
    assert ck.meta["step"] == 50
    t = intedge.Trainer.from_checkpoint(ck)
    assert t.session.step_count == 50


def test_resume_refuses_another_model(tmp_path, uninterrupted, mlp_digits):
    import onnx
    other = tmp_path / "other.onnx"
    m = onnx.ModelProto()
    m.CopyFrom(mlp_digits)
    m.graph.initializer[0].float_data[:] = []
    arr = np.zeros(tuple(m.graph.initializer[0].dims), np.float32)
    m.graph.initializer[0].raw_data = arr.tobytes()
    onnx.save(m, str(other))
    res = run_cli("train", other, "builtin:digits", "--resume", uninterrupted, "--output-dir", tmp_path / "o")
    assert res.returncode == 2 and "different model" in res.stderr


@pytest.fixture
def small_disk(tmp_path):
    """mount(size, read_only=False): a tmpfs of `size` bytes (root only; skipped where mounting
    is not permitted), unmounted afterwards."""
    import subprocess

    mounts = []

    def mount(size, read_only=False):
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not root'})")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=True)


def one_line_error(res, *words):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), res.stderr


def test_read_only_output_folder_is_refused_at_start(small_disk):
    disk = small_disk(1 << 20, read_only=True)
    # the data does not exist either: the output folder is checked first, before any work
    res = run_cli("train", MODEL, disk / "no-such-data", "--output-dir", disk / "run")
    one_line_error(res, "cannot write to output dir", "Read-only file system")


def test_full_tmpfs_stops_the_run_and_keeps_the_previous_checkpoint(small_disk):
    # a checkpoint of this model is about 117 KB: 300 KB hold two, and the third's temp file fills it
    out = small_disk(300 << 10) / "run"
    res = run_cli(*TRAIN, "--output-dir", out)
    one_line_error(res, "ckpt-00000075.iec", "the disk is full", "earlier checkpoints are intact")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-00000025.iec", "ckpt-00000050.iec"]
    t = intedge.Trainer.from_checkpoint(ckpt.load_latest(out))
    assert t.session.step_count == 50


def test_export_to_a_full_tmpfs_leaves_nothing(small_disk, uninterrupted):
    disk = small_disk(64 << 10)
    (disk / "filler").write_bytes(b"\0" * (40 << 10))  # the 39 KB model no longer fits
    res = run_cli("export", uninterrupted, "-o", disk / "model.onnx")
    one_line_error(res, "model.onnx", "the disk is full")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_version_1_checkpoint_holding_the_iem_itself_still_resumes():
    from sklearn.datasets import load_digits

    digits = load_digits()
    t = intedge.Trainer(str(MODEL), batch_size=16, momentum=0.9, seed=3)
    t.fit(digits.data[:64], digits.target[:64], epochs=1)
    ck = t.checkpoint()
    assert len(ckpt.encode(ck)) < len(ck.onnx) + len(ck.state) + 1024  # the .iem's digest, not its bytes
    sections = (json.dumps(ck.meta).encode(), ck.onnx, bytes(t.model.iem), ck.state)
    body = b"".join(ckpt.SECTION.pack(tag, len(d)) + d for tag, d in zip(ckpt.TAGS_V1, sections))
    old = ckpt.decode(ckpt.HEADER.pack(ckpt.MAGIC, 1, 4, ckpt.HEADER.size + len(body), zlib.crc32(body), 0) + body)
    assert old.iem_sha256 == ck.iem_sha256
    assert intedge.Trainer.from_checkpoint(old).session.digest() == t.session.digest()
