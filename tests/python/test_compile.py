"""`intedge compile`: the generated C builds with this machine's compiler against the installed
runtime, trains, and prints exactly what the host run recorded; the #defines are the runtime's
own figures. (The same sources run on Cortex-M and aarch64 under qemu in ctest, label mcu.)"""
import re
import shutil
import subprocess

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

import intedge
from conftest import run_cli
from intedge._ffi import header_path, library_path
from intedge.runtime import Model
from build_cnn import build_cnn


def defines(header):
    return {k: int(v) for k, v in re.findall(r"#define (INTEDGE_\w+) (\d+)u?", header.read_text())}


def test_defines_are_the_runtimes_figures(tmp_path, mlp_digits):
    onnx.save(mlp_digits, tmp_path / "mlp.onnx")
    r = run_cli("compile", tmp_path / "mlp.onnx", "--target", "cortex-m3", "--batch-size", "4",
                "--trainable", "fc2.*", "-o", tmp_path / "fw")
    assert r.returncode == 0, r.stderr
    d = defines(tmp_path / "fw" / "intedge_model.h")
    model = Model(intedge.import_onnx(tmp_path / "mlp.onnx").iem)
    head_only = [False, False, True, True]
    assert d["INTEDGE_ARENA_BYTES"] == model.arena_size(4, trainable=head_only)
    assert d["INTEDGE_MODEL_MEMORY_BYTES"] == model.memory_size()
    assert d["INTEDGE_PARAM_COUNT"] == 4 and d["INTEDGE_TRAINABLE_PARAMS"] == 2 and d["INTEDGE_BATCH_SIZE"] == 4
    assert "trainable[INTEDGE_PARAM_COUNT] = {0, 0, 1, 1}" in (tmp_path / "fw" / "intedge_model.c").read_text()
    assert not (tmp_path / "fw" / "intedge_data.c").exists()  # no --data: the device supplies batches
    ram = d["INTEDGE_ARENA_BYTES"] + d["INTEDGE_MODEL_MEMORY_BYTES"]
    assert f"RAM {ram:,} B" in r.stdout
    # the op table a firmware builds with: the MLP's Flatten, Gemm and Relu, nothing else
    ops = dict(re.findall(r"#define IE_OP_USE_(\w+) ([01])", (tmp_path / "fw" / "intedge_ops.h").read_text()))
    assert {k for k, v in ops.items() if v == "1"} == {"RESHAPE", "GEMM", "RELU"}
    assert set(ops) == set(intedge.iem.OP_NAMES.values())  # every op listed: registry.c needs each one


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
@pytest.mark.parametrize("optimizer", [["--lr", "0.2"], ["--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.01"]],
                         ids=["sgd", "adamw"])
def test_generated_example_trains_like_the_host(tmp_path, optimizer):
    onnx.save(build_cnn(), tmp_path / "cnn.onnx")
    out = tmp_path / "fw"
    r = run_cli("compile", tmp_path / "cnn.onnx", "--target", "host", "--batch-size", "8", "--trainable", "fc.*",
                *optimizer, "--data", "builtin:digits", "--steps", "12", "-o", out)
    assert r.returncode == 0, r.stderr
    assert ("IE_OPTIM_ADAMW" in (out / "intedge_model.c").read_text()) == ("adamw" in optimizer)
    expected = (out / "expected_output.txt").read_text()
    assert len(re.findall(r"^step \d+: loss \d\.\d{4}, \d+/8 correct$", expected, re.M)) == 12
    losses = [float(v) for v in re.findall(r"loss (\d\.\d{4})", expected)]
    assert losses[-1] < losses[0]
    exe = tmp_path / "train"
    lib = library_path()
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", '-DINTEDGE_STATE_FILE="trained_state.ies"',
                    "-I", str(header_path().parent), "-I", str(out), *map(str, sorted(out.glob("*.c"))), str(lib),
                    f"-Wl,-rpath,{lib.parent}", "-o", str(exe)], check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path)
    assert re.match(r"kernels \S+\n", run.stdout)
    assert run.stdout.split("\n", 1)[1] == expected
    # the state it streamed out in 256-byte pieces is the host's, and comes back as the trained ONNX
    streamed = tmp_path / "trained_state.ies"
    assert streamed.read_bytes() == (out / "expected_state.ies").read_bytes()
    r = run_cli("export", out, "--state", streamed, "-o", tmp_path / "trained.onnx")
    assert r.returncode == 0, r.stderr
    trained = onnx.load(tmp_path / "trained.onnx")
    fc = {t.name: onnx.numpy_helper.to_array(t) for t in trained.graph.initializer}["fc.weight"]
    start = {t.name: onnx.numpy_helper.to_array(t) for t in build_cnn().graph.initializer}
    frozen = {t.name: onnx.numpy_helper.to_array(t) for t in trained.graph.initializer}
    assert not np.array_equal(fc, start["fc.weight"])  # the head trained ...
    np.testing.assert_array_equal(frozen["conv1.weight"], start["conv1.weight"])  # ... the rest did not
    streamed.write_bytes(streamed.read_bytes()[:-4])
    r = run_cli("export", out, "--state", streamed, "-o", tmp_path / "bad.onnx")
    assert r.returncode == 2 and "training state refused" in r.stderr and "Traceback" not in r.stderr


def test_bad_requests_are_named(tmp_path, mlp_digits):
    onnx.save(mlp_digits, tmp_path / "mlp.onnx")
    r = run_cli("compile", tmp_path / "missing.onnx", "-o", tmp_path / "fw")
    assert r.returncode == 2 and "missing.onnx" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("compile", tmp_path / "mlp.onnx", "--loss", "mse", "--data", "builtin:digits", "-o", tmp_path / "fw")
    assert r.returncode == 2 and "--loss cross_entropy" in r.stderr
    r = run_cli("compile", tmp_path / "mlp.onnx", "--data", "builtin:digits", "--samples", "5000", "--steps", "400",
                "--batch-size", "64", "-o", tmp_path / "fw")
    assert r.returncode == 0  # capped at the samples there are
    r = run_cli("compile", tmp_path / "mlp.onnx", "--target", "cortex-m99", "-o", tmp_path / "fw")
    assert r.returncode == 2 and "cortex-m99" in r.stderr


def run_example(command, cwd):
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True, cwd=cwd)
    text = out.stdout + out.stderr
    assert re.match(r"kernels \S+\n", text)
    return re.sub(r"(kernels|stack used) [^\n]*\n", "", text)


def compile_digits(tmp_path, model, target, option):
    """intedge compile of a short digits run into tmp_path/fw; returns the CLI result and the folder."""
    onnx.save(model, tmp_path / "mlp.onnx")
    out = tmp_path / "fw"
    r = run_cli("compile", tmp_path / "mlp.onnx", "--target", target, "--batch-size", "4", "--data",
                "builtin:digits", "--steps", "5", option, "-o", out)
    assert r.returncode == 0, r.stderr
    return r, out


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_runtime_copy_makes_the_folder_build_on_its_own(tmp_path, mlp_digits):
    """--runtime: DIR alone (no checkout, no library) builds and trains like the host."""
    _, out = compile_digits(tmp_path, mlp_digits, "cortex-m4", "--runtime")
    sources = sorted(out.glob("*.c")) + sorted((out / "runtime").rglob("*.c"))
    assert not any(f.name == "testing.c" for f in sources) and (out / "runtime" / "port" / "port_none.c").exists()
    subprocess.run(["cc", "-std=c11", "-O2", "-I", str(out / "runtime" / "include"), "-I", str(out),
                    *map(str, sources), "-o", str(tmp_path / "train")], check=True, capture_output=True, text=True)
    assert run_example([str(tmp_path / "train")], tmp_path) == (out / "expected_output.txt").read_text()


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm (tools/run_tests.sh requires them)")
def test_build_makes_firmware_that_trains_like_the_host(tmp_path, mlp_digits):
    r, out = compile_digits(tmp_path, mlp_digits, "cortex-m3", "--build")
    flash, ram = (int(v.replace(",", "")) for v in re.search(r"firmware .*: flash ([\d,]+) B .*RAM ([\d,]+) B",
                                                              r.stdout).groups())
    d = defines(out / "intedge_model.h")
    assert ram > d["INTEDGE_ARENA_BYTES"] + d["INTEDGE_MODEL_MEMORY_BYTES"] and flash > d["INTEDGE_MODEL_BYTES"]
    got = run_example(["qemu-system-arm", "-M", "mps2-an385", "-nographic", "-monitor", "none", "-serial", "none",
                       "-semihosting-config", "enable=on,target=native", "-kernel", str(out / "firmware.elf")], out)
    assert got == (out / "expected_output.txt").read_text()
    assert (out / "trained_state.ies").read_bytes() == (out / "expected_state.ies").read_bytes()
    r = run_cli("compile", tmp_path / "mlp.onnx", "--target", "aarch64", "--data", "builtin:digits", "--build",
                "-o", tmp_path / "a64")
    assert r.returncode == 2 and "--build makes firmware for the Cortex-M targets" in r.stderr
    r = run_cli("compile", tmp_path / "mlp.onnx", "--build", "-o", tmp_path / "nodata")
    assert r.returncode == 2 and "--build needs --data" in r.stderr


def test_firmware_arena_is_planned_lean_and_trains_to_the_same_bytes(tmp_path):
    """`intedge compile` plans the arena as a firmware runs (lean_scratch: convolutions one sample
    per GEMM, as -Os builds always do), not with the host's chunks of samples; both give the same
    bytes."""
    onnx.save(build_cnn(), tmp_path / "cnn.onnx")
    r = run_cli("compile", tmp_path / "cnn.onnx", "--target", "cortex-m4", "--batch-size", "8", "-o", tmp_path / "fw")
    assert r.returncode == 0, r.stderr
    model = Model(intedge.import_onnx(tmp_path / "cnn.onnx").iem)
    lean, chunked = model.arena_size(8, lean_scratch=True), model.arena_size(8)
    assert defines(tmp_path / "fw" / "intedge_model.h")["INTEDGE_ARENA_BYTES"] == lean < chunked
    assert "c->lean_scratch = 1;" in (tmp_path / "fw" / "intedge_model.c").read_text()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)
    digests = []
    for lean_scratch in (False, True):
        s = intedge.Session(model, batch_size=8, lr=0.05, momentum=0.9, lean_scratch=lean_scratch)
        for _ in range(3):
            s.step(x, labels=y)
        digests.append(s.digest())
    assert digests[0] == digests[1]
