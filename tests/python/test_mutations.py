"""Every malformed input ends in IntedgeError, never another exception: thousands of mutated .iem
models and training states (CRC recomputed, so mutations reach the parsers), checkpoints, ONNX
protobufs, and data files (npz, csv, png). Plus the importer's known traps, one test each, and
the CLI's single line with exit code 2. The C loaders get coverage-guided fuzzing in tools/fuzz/."""
import io
import json
import signal
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import intedge
from intedge import IntedgeError, Model, Session, iem
from intedge import checkpoint as ckpt
from intedge.onnx_import import import_onnx
from conftest import run_cli
from seed_models import seed_graphs, seed_onnx_models

SPECIAL = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutant(rng, blob, hot=None):
    """blob with one to four edits (a flipped bit, a random byte, a special u32, a byte that
    breaks UTF-8); half the mutants edit only the first `hot` bytes (headers and tables)."""
    b = bytearray(blob)
    span = hot if hot and rng.random() < 0.5 else len(b)
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(0, span))
        kind = rng.integers(0, 4)
        if kind == 0:
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            b[i] = int(rng.integers(0, 256))
        elif kind == 2:
            b[i:i + 4] = struct.pack("<I", int(rng.choice(SPECIAL)))[:len(b) - i]
        else:
            b[i] = int(rng.choice([0x80, 0xC3, 0xFF]))
    return b


def with_crc(b, at, start):
    """b with the CRC-32 of b[start:] written at offset `at` (the .iem and state layouts)."""
    b[at:at + 4] = struct.pack("<I", zlib.crc32(bytes(b[start:])))
    return bytes(b)


def only_intedge_errors(cases, run):
    """Runs run(case) on each case; returns how many passed (no exception). Any exception other
    than IntedgeError fails the test, naming the case's index."""
    ok = 0
    for k, case in enumerate(cases):
        try:
            run(case)
            ok += 1
        except IntedgeError:
            pass
        except Exception as exc:
            raise AssertionError(f"mutant {k} raised {type(exc).__name__}: {exc}") from exc
    return ok


@pytest.fixture(scope="module")
def models():
    return [import_onnx(m) for m in seed_onnx_models()]


def tables_end(iem_bytes):
    """Where the .iem tensor and node tables end (header fields 32 and 36: docs/format.md)."""
    n_tensors, n_nodes = struct.unpack_from("<II", iem_bytes, 16)
    return 40 + 48 * n_tensors + 120 * n_nodes


def test_mutated_models_are_refused_or_train(models):
    rng = np.random.default_rng(15)
    loaded = 0
    for blob in [m.iem for m in models] + [iem.serialize(g) for g in seed_graphs()]:
        def load_and_step(blob):
            model = Model(blob)
            s = Session(model, batch_size=2, lr=0.01, momentum=0.9)
            xs = [np.zeros((2, i.numel), np.int32 if i.ids else np.float32) for i in model.inputs]
            s.step(xs, np.zeros(2, np.int32))
        blobs = [with_crc(mutant(rng, blob, tables_end(blob)), 12, 16) for _ in range(1500)]
        loaded += only_intedge_errors(blobs, load_and_step)
    assert 0 < loaded < 6000  # some mutants load and train (names, weights), most are refused
    print(f"\n{loaded} of 6000 mutated models loaded and trained one step")


def test_model_names_that_are_not_utf8(models):
    blob = bytearray(models[0].iem)
    at = blob.index(b"fc1.weight")
    blob[at] = 0xC3
    with pytest.raises(IntedgeError, match="not valid UTF-8"):
        Model(with_crc(blob, 12, 16))


def test_mutated_states_are_refused_or_loaded(models):
    rng = np.random.default_rng(16)
    for m in models:
        s = Session(Model(m.iem), batch_size=2, lr=0.01, momentum=0.9)
        state = s.save_state()
        blobs = [with_crc(mutant(rng, state, 32 + 16), 12, 16) for _ in range(1500)]
        only_intedge_errors(blobs, s.load_state)


@pytest.fixture(scope="module")
def checkpoint_blob(models, digits):
    t = intedge.Trainer(models[0], batch_size=16, lr=0.05, momentum=0.9)
    t.fit(digits.x_train[:64], digits.y_train[:64], epochs=1)
    return ckpt.encode(t.checkpoint())


def meta_mutant(rng, blob):
    """The checkpoint with one META entry dropped or replaced by a value of another type."""
    ck = ckpt.decode(blob)
    meta = json.loads(json.dumps(ck.meta))
    target = meta["config"] if rng.random() < 0.5 else meta
    key = str(rng.choice(sorted(target)))
    if rng.random() < 0.3:
        del target[key]
    else:
        target[key] = [None, "x", -1, 1e300, [], {}, True][int(rng.integers(0, 7))]
    ck.meta = meta
    return ckpt.encode(ck)


def test_mutated_checkpoints_are_refused_or_loaded(checkpoint_blob, tmp_path):
    rng = np.random.default_rng(17)
    blobs = [with_crc(mutant(rng, checkpoint_blob, 200), 12, 24) for _ in range(150)]
    blobs += [meta_mutant(rng, checkpoint_blob) for _ in range(150)]
    only_intedge_errors(blobs, lambda b: intedge.Trainer.from_checkpoint(ckpt.decode(b, "mutant.iec")))


def test_mutated_onnx_is_refused_or_imported(models):
    rng = np.random.default_rng(18)
    imported = 0
    for m in models:
        raw = m.onnx_model.SerializeToString()
        protos = []
        while len(protos) < 700:
            p = onnx.ModelProto()
            try:
                p.ParseFromString(bytes(mutant(rng, raw)))
            except Exception:  # garbage protobuf: load_onnx's refusal, tested with a file below
                continue
            protos.append(p)
        imported += only_intedge_errors(protos, lambda p: Model(import_onnx(p).iem))
    assert 0 < imported < 2100


@contextmanager
def deadline(seconds):
    def fail(*_):
        raise AssertionError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


REGRESSIONS = Path(__file__).resolve().parents[2] / "tools" / "fuzz" / "regressions" / "onnx"


def one_node_graph(*nodes, inputs=(("x", [1, 4, 4]),), output=("y", [1, 2, 2]), inits=()):
    g = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *s])
                                             for n, s in inputs],
                          [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, ["N", *output[1]])],
                          list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_identity_cycle_is_refused_not_looped():
    m = one_node_graph(helper.make_node("Identity", ["b"], ["a"], name="i1"),
                       helper.make_node("Identity", ["a"], ["b"], name="i2"),
                       helper.make_node("Relu", ["x"], ["y"], name="r"), output=("y", [1, 4, 4]))
    with deadline(10), pytest.raises(IntedgeError, match="cycle"):
        import_onnx(m)


@pytest.mark.parametrize("node, missing", [
    (helper.make_node("MaxPool", ["x"], ["y"], name="pool"), "kernel_shape"),
    (helper.make_node("AveragePool", ["x"], ["y"], name="pool"), "kernel_shape"),
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cat"), "axis"),
])
def test_malformed_nodes_are_named(node, missing):
    with pytest.raises(IntedgeError, match=f"node '{node.name}'.*malformed.*'{missing}' is missing"):
        import_onnx(one_node_graph(node))


def test_a_failed_fusion_is_reported_once():
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")  # 3 inputs: does not fit the 16 of x
    b = numpy_helper.from_array(np.ones(2, np.float32), "b")
    m = one_node_graph(helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                       helper.make_node("MatMul", ["f", "w"], ["mm"], name="fc"),
                       helper.make_node("Add", ["mm", "b"], ["z"], name="fc_bias"),
                       helper.make_node("Relu", ["z"], ["y"], name="relu"), output=("y", [2]), inits=[w, b])
    with pytest.raises(IntedgeError, match=r"cannot train 1 node\(s\)") as err:
        import_onnx(m)
    assert "'fc'" in str(err.value) and "relu" not in str(err.value)


@pytest.mark.parametrize("add_inputs", [["mm"], ["mm", "b", "b"]])
def test_a_malformed_add_after_a_matmul(add_inputs):
    """The MatMul + Add fusion reads the Add before the Add's own schema check (fuzz_onnx.py found
    an IndexError there): the Add is refused, by name."""
    w = numpy_helper.from_array(np.ones((16, 2), np.float32), "w")
    b = numpy_helper.from_array(np.ones(2, np.float32), "b")
    m = one_node_graph(helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                       helper.make_node("MatMul", ["f", "w"], ["mm"], name="fc"),
                       helper.make_node("Add", add_inputs, ["y"], name="fc_bias"), output=("y", [2]), inits=[w, b])
    with pytest.raises(IntedgeError, match="fc_bias"):
        import_onnx(m)


def test_attributes_past_32_bits_are_refused():
    """A stride of 2^63 - 1 reached the .iem writer as a struct.error (fuzz_onnx.py)."""
    node = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2**63 - 1])
    with pytest.raises(IntedgeError, match="node 'pool'.*32 bits"):
        import_onnx(one_node_graph(node, output=("y", [1, 2, 1])))


@pytest.mark.parametrize("op", ["Reshape", "Expand"])
def test_a_float_shape_is_refused(op):
    """A shape input holding floats (NaN here) reached int() as a ValueError (fuzz_onnx.py)."""
    shape = numpy_helper.from_array(np.array([np.nan, 16], np.float32), "shape")
    with pytest.raises(IntedgeError, match=f"node 'n' \\({op}\\): its .*shape must be integers"):
        import_onnx(one_node_graph(helper.make_node(op, ["x", "shape"], ["y"], name="n"), output=("y", [16]),
                                   inits=[shape]))


def test_a_constant_without_value_is_malformed():
    """Constants are folded before the walk checks nodes: one with no attribute was an IndexError
    (fuzz_onnx.py)."""
    m = one_node_graph(helper.make_node("Constant", [], ["c"], name="const"),
                       helper.make_node("Relu", ["x"], ["y"], name="relu"), output=("y", [1, 4, 4]))
    with pytest.raises(IntedgeError, match="node 'const' \\(Constant\\): malformed"):
        import_onnx(m)


@pytest.mark.parametrize("node, needle", [
    (helper.make_node("AveragePool", ["w"], ["y"], name="n", kernel_shape=[3, -2**31]), "AveragePool is not folded"),
    (helper.make_node("Conv", ["w", "w"], ["y"], name="n", pads=[0, 0, 2**16, 0]), "Conv is not folded"),
    (helper.make_node("Gather", ["shape", "shape"], ["y"], name="n", axis=3), "malformed"),
    (helper.make_node("ConstantOfShape", ["shape"], ["y"], name="n"), "would hold 1099511627776 elements"),
])
def test_folding_checks_a_constant_node_before_it_allocates(node, needle):
    """fuzz_onnx.py: an AveragePool with a kernel of -2^31 on a weight made the reference evaluator
    allocate gigabytes (tools/fuzz/regressions/onnx/averagepool-negative-kernel-on-a-weight.onnx), and
    in its long run a Conv of a weight padded by 2^16 (conv-of-a-weight-padded-by-65536.onnx): windows
    and products are not folded, and shape inference sizes a constant's output before folding evaluates it."""
    w = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "shape")
    m = one_node_graph(node, helper.make_node("Relu", ["x"], ["r"], name="relu"), output=("r", [1, 4, 4]),
                       inits=[w, shape])
    with pytest.raises(IntedgeError, match=f"node 'n' .*constant folding refused: .*{needle}"):
        import_onnx(m)


@pytest.mark.parametrize("name", ["conv-of-a-weight-padded-by-65536", "conv-of-a-pooled-weight-padded-to-an-empty-width"])
def test_windows_of_constants_are_not_folded(name):
    """fuzz_onnx.py's long run: a Conv of a weight padded by 2^16, and a Conv of a max-pooled weight
    padded by 2^31 - 1 to an empty output, made onnx's reference evaluator allocate past 2 GB."""
    with deadline(10), pytest.raises(IntedgeError, match=r"\((Conv|MaxPool)\): constant folding refused: .* not folded"):
        import_onnx(onnx.load(str(REGRESSIONS / f"{name}.onnx")))


def test_fusions_skip_malformed_readers():
    """fuzz_onnx.py's long run: the GELU fusion read the output of a Mul without outputs (x * x's
    reader) as an IndexError (tools/fuzz/regressions/onnx/gelu-cube-read-from-a-node-without-outputs.onnx).
    Fusions now only follow readers that keep their schema; the LayerNorm one reads d's square."""
    with pytest.raises(IntedgeError, match=r"node 'fc' \(Mul\): malformed"):
        import_onnx(onnx.load(str(REGRESSIONS / "gelu-cube-read-from-a-node-without-outputs.onnx")))
    mean = helper.make_node("ReduceMean", ["x"], ["m"], name="mean", axes=[-1])
    m = one_node_graph(mean, helper.make_node("Sub", ["x", "m"], ["d"], name="sub"),
                       helper.make_node("Mul", ["d", "d"], [], name="square"),
                       helper.make_node("Relu", ["d"], ["y"], name="relu"), output=("y", [1, 4, 4]))
    with pytest.raises(IntedgeError, match=r"node 'square' \(Mul\): malformed"):
        import_onnx(m)


def test_an_add_of_an_integer_input_is_refused():
    """fuzz_onnx.py's long run: an Add of an integer (token id) input and an activation reached
    the handler's shape comparison as a TypeError."""
    with pytest.raises(IntedgeError, match=r"node 'id' \(Add\): it reads the integer input 'x'"):
        import_onnx(onnx.load(str(REGRESSIONS / "add-of-an-integer-input-and-an-activation.onnx")))


def test_float_gather_indices_are_refused():
    """fuzz_onnx.py's long run: a Gather whose constant indices are floats (NaN among them) reached
    np.arange as a ValueError (tools/fuzz/regressions/onnx/gather-with-float-indices.onnx)."""
    idx = numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "idx")
    m = one_node_graph(helper.make_node("Gather", ["x", "idx"], ["y"], name="g", axis=1), output=("y", [2, 4]),
                       inits=[idx])
    with pytest.raises(IntedgeError, match=r"node 'g' \(Gather\): its indices must be integers"):
        import_onnx(m)
    with pytest.raises(IntedgeError, match=r"node 'fc' \(Gather\): its indices must be integers"):
        import_onnx(onnx.load(str(REGRESSIONS / "gather-with-float-indices.onnx")))


@pytest.mark.parametrize("writes", ["r", "x"])
def test_a_value_written_twice_is_refused(writes):
    """fuzz_onnx.py: a Flatten writing a value a Transpose wrote (or the graph's input) sent the walker
    an IndexError (tools/fuzz/regressions/onnx/view-axes-beyond-shape.onnx)."""
    m = one_node_graph(helper.make_node("Transpose", ["x"], ["r"], name="t", perm=[0, 2, 1]),
                       helper.make_node("Flatten", ["x"], [writes], name="f"),
                       helper.make_node("Relu", ["r"], ["y"], name="relu"), output=("y", [4, 4]))
    first = "the graph's inputs" if writes == "x" else "node 't'"
    with pytest.raises(IntedgeError, match=f"value '{writes}' is written by node 'f' and by {first}"):
        import_onnx(m)
    with pytest.raises(IntedgeError, match="assigns each value once"):
        import_onnx(onnx.load(str(REGRESSIONS / "view-axes-beyond-shape.onnx")))


def test_node_input_counts_and_old_opsets_are_refused():
    """fuzz_onnx.py: an opset-4 Reshape (its shape an attribute, one input) reached the handler,
    which reads the shape input, as an IndexError. Opsets before 7 are refused; at a newer opset
    the same node is malformed by its schema."""
    with pytest.raises(IntedgeError, match="uses ONNX opset 4; intedge reads opset 7 and later"):
        import_onnx(onnx.load(str(REGRESSIONS / "reshape-of-opset-4.onnx")))
    m = one_node_graph(helper.make_node("Reshape", ["x"], ["y"], name="r"), output=("y", [16]))
    with pytest.raises(IntedgeError, match="node 'r' \\(Reshape\\): malformed node: .*input size 1 not in range"):
        import_onnx(m)


def test_a_node_the_checker_cannot_reread_is_malformed():
    """fuzz_onnx.py: a node whose bytes onnx's checker cannot parse again raised a ValueError."""
    with pytest.raises(IntedgeError, match="node 'concat'.*fields are damaged"):
        import_onnx(onnx.load(str(REGRESSIONS / "node-that-does-not-reparse.onnx")))


@pytest.mark.parametrize("field", ["ir_version", "opset"])
def test_versions_past_32_bits_are_refused(field):
    """The ONNX checker takes 32-bit versions: a larger one was a TypeError (fuzz_onnx.py)."""
    m = one_node_graph(helper.make_node("Relu", ["x"], ["y"], name="relu"), output=("y", [1, 4, 4]))
    if field == "ir_version":
        m.ir_version = 2**40
    else:
        m.opset_import[0].version = 2**40
    with pytest.raises(IntedgeError, match="version .*out of range"):
        import_onnx(m)


def test_damaged_files_through_the_cli(models, tmp_path):
    """One line on stderr, exit code 2: an ONNX name that is not UTF-8, a file that is not a
    protobuf, a damaged checkpoint."""
    raw = models[0].onnx_model.SerializeToString()
    (tmp_path / "name.onnx").write_bytes(raw.replace(b"fc1.weight", b"fc1.w\xc3ight"))
    (tmp_path / "garbage.onnx").write_bytes(raw[:len(raw) // 3] + b"\xff" * 40)
    for path in ("name.onnx", "garbage.onnx"):
        res = run_cli("train", tmp_path / path, "builtin:digits", "--epochs", "1", "--output-dir", tmp_path / "o")
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "UTF-8" in run_cli("inspect", tmp_path / "name.onnx").stderr


def data_files(tmp_path, digits):
    """A good npz, csv and png, as bytes, with the name each is read under."""
    buf = io.BytesIO()
    np.savez(buf, x_train=digits.x_train[:20], y_train=digits.y_train[:20])
    flat = digits.x_train[:20].reshape(20, -1)
    rows = ["a,b,c,label"] + [f"{x[20]},{x[21]},{x[22]},{y}" for x, y in zip(flat, digits.y_train[:20])]
    png = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(png, format="PNG")
    return {"d.npz": buf.getvalue(), "d.csv": "\n".join(rows).encode(), "img.png": png.getvalue()}


def test_mutated_data_files(tmp_path, digits):
    rng = np.random.default_rng(19)
    for name, good in data_files(tmp_path, digits).items():
        def load(blob):
            if name == "img.png":  # an image folder with one class of two images
                for split in ("train", "val"):
                    (tmp_path / "imgs" / split / "a").mkdir(parents=True, exist_ok=True)
                    (tmp_path / "imgs" / split / "a" / name).write_bytes(blob)
                intedge.load_data(str(tmp_path / "imgs"), input_shape=(1, 8, 8), on_bad_image="error")
            else:
                (tmp_path / name).write_bytes(blob)
                intedge.load_data(str(tmp_path / name), input_shape=(3,), label_column="label")
        cases = [bytes(mutant(rng, good, 64)) for _ in range(150)] + [good[:n] for n in range(0, len(good), 97)]
        only_intedge_errors(cases, load)
