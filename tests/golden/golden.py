"""Golden training digests: short training runs whose exact results are committed in
tests/golden/digests.json, so a change to the training bytes cannot pass unnoticed even when it
changes them the same way on every platform.

Each case trains a model from fixed initial weights on fixed batches of real data, then
evaluates one held-out batch. Its record holds the fixtures' CRCs (model and data: a changed
fixture is reported as such, not as changed arithmetic), the exact loss of every step (Q16) with
its correct count, the evaluation, and the CRC of the final training state (master weights,
momentum, step: ie_session_digest).

    python tests/golden/golden.py check        # every case, every kernel tier, 1 and 2 threads
    python tests/golden/golden.py regenerate   # rewrite digests.json (say why in the commit)
    python tests/golden/golden.py emit DIR     # C sources of every case for a (cross) build

tests/python/test_golden.py runs `check` in pytest; tests/golden/golden.cmake builds the emitted
cases with tests/golden/golden_main.c and compares their output under each emulator with the
committed records (docs/testing.md)."""
import argparse
import json
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DIGESTS = HERE / "digests.json"
MNIST_MEAN_STD = (0.1307, 0.3081)


@dataclass(frozen=True)
class Case:
    name: str
    model: str          # a builder in MODELS
    data: str           # builtin dataset
    batch: int
    steps: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    trainable: str = None   # glob patterns as --trainable takes them
    input_u8: bool = False  # pixels enter as uint8 through the runtime's integer mapping
    normalize: tuple = field(default=None)  # (mean, std) of [0, 1] pixels
    seed: int = 7
    optimizer: str = "sgd"
    betas: tuple = (0.9, 0.999)  # AdamW's
    eps: float = 1e-8


CASES = [
    Case("mlp_sgd", "mlp", "builtin:digits", batch=16, steps=12, lr=0.1),
    Case("mlp_momentum_weight_decay", "mlp", "builtin:digits", batch=16, steps=12, lr=0.1, momentum=0.9,
         weight_decay=1e-3),
    Case("dropout", "dropout", "builtin:digits", batch=16, steps=10, lr=0.1, momentum=0.9),
    Case("lenet5", "lenet5", "builtin:mnist-5k", batch=8, steps=5, lr=0.05, momentum=0.9,
         normalize=MNIST_MEAN_STD),
    Case("lenet5_u8_input", "lenet5", "builtin:mnist-5k", batch=8, steps=5, lr=0.05, momentum=0.9,
         input_u8=True, normalize=MNIST_MEAN_STD),
    Case("resnet8_batchnorm", "resnet8", "builtin:mnist-5k", batch=8, steps=5, lr=0.05, momentum=0.9,
         weight_decay=5e-4, normalize=MNIST_MEAN_STD),
    Case("resnet8_frozen_prefix", "resnet8", "builtin:mnist-5k", batch=8, steps=5, lr=0.05, momentum=0.9,
         trainable="s3.*,fc.*", input_u8=True, normalize=MNIST_MEAN_STD),
    Case("mobilenetv2", "mobilenetv2", "builtin:mnist-5k", batch=8, steps=5, lr=0.05, momentum=0.9,
         normalize=MNIST_MEAN_STD),
    Case("mlp_adamw", "mlp", "builtin:digits", batch=16, steps=12, lr=1e-2, weight_decay=0.01, optimizer="adamw"),
    Case("attention", "attention", "builtin:digits", batch=16, steps=10, lr=0.05, momentum=0.9, weight_decay=1e-3),
    Case("torchvision_blocks", "torchvision_blocks", "builtin:mnist-5k", batch=8, steps=5, lr=0.05, momentum=0.9,
         normalize=MNIST_MEAN_STD),
]


# ---- fixtures ------------------------------------------------------------------------------------

def _quiet_export(export, *args, **kwargs):
    """torch's exporter warns about BatchNorm's step counter, which training mode drops."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export(*args, **kwargs)


def _torch_model(build, batchnorm):
    """A torch model with seeded initial weights, exported by the TorchScript exporter (opset 13;
    training mode keeps BatchNormalization as a node)."""
    import torch

    sys.path.insert(0, str(ROOT / "models"))
    import torch_models

    torch.manual_seed(0)
    net = build(torch_models)
    example = torch.zeros(2, 1, 28, 28)
    if batchnorm:
        return _quiet_export(torch_models.export_training, net, example, dynamo=False, opset=13)
    return _quiet_export(torch_models.export, net, example, dynamo=False, opset=13)


def _mlp():
    sys.path.insert(0, str(ROOT / "models"))
    from build_mlp import build_mlp

    return build_mlp([64, 32, 10], input_shape=(1, 8, 8), seed=0)


def _dropout():
    import torch

    sys.path.insert(0, str(ROOT / "models"))
    import torch_models

    torch.manual_seed(0)
    return torch_models.export(torch_models.DropoutNet(0.3), torch.zeros(2, 1, 8, 8), dynamo=False, opset=13)


def _attention():
    """A one-block attention classifier over a digit's 8 rows as tokens (class token, positional
    embedding, Gemm on tokens, MatMul: tests/python/transformer_graphs.py), built as an .iem graph
    because the importer does not map these ops yet."""
    from intedge import iem
    from intedge.onnx_import import ImportedModel

    sys.path.insert(0, str(ROOT / "tests" / "python"))
    from transformer_graphs import attention_graph

    g = attention_graph(np.random.default_rng(0), t=9, d=4, heads=2, k0=8, classes=10)
    params = [t.name for t in g.tensors if t.kind == iem.KIND_PARAM]
    return ImportedModel(None, iem.serialize(g), "x", (8, 8), "logits", 10, params)


def _torchvision_blocks(tm):
    """torchvision's pieces at MNIST size (models/torchvision_nets.py): ResNet's stem (7 x 7 stride 2,
    3 x 3 stride-2 MaxPool with padding), a BasicBlock with a stride-2 shortcut, and MobileNetV2's
    inverted residuals (depthwise on 4 x 4 and 2 x 2 planes); small planes make chunked GEMMs."""
    import torch.nn as nn

    sys.path.insert(0, str(ROOT / "models"))
    import torchvision_nets as tv

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            self.block = tv.BasicBlock(8, 16, 2, nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16)))
            self.inv = nn.Sequential(tv.InvertedResidual(16, 16, 1, 6), tv.InvertedResidual(16, 24, 2, 6))
            self.fc = nn.Linear(24, 10)

        def forward(self, x):
            x = self.inv(self.block(self.stem(x)))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    import torch
    return Net()


MODELS = {
    "mlp": _mlp,
    "dropout": _dropout,
    "lenet5": lambda: _torch_model(lambda tm: tm.LeNet5(), False),
    "resnet8": lambda: _torch_model(lambda tm: tm.ResNet8(in_ch=1, width=8), True),
    "mobilenetv2": lambda: _torch_model(lambda tm: tm.MobileNetV2Small(), True),
    "attention": _attention,
    "torchvision_blocks": lambda: _torch_model(_torchvision_blocks, True),
}


def crc(data):
    return f"{zlib.crc32(bytes(data)) & 0xFFFFFFFF:08x}"


class Fixture:
    """A case's model, trainer config and the exact samples of its steps and of its evaluation
    batch (step i takes samples i*batch ... i*batch + batch - 1; the evaluation batch follows)."""

    def __init__(self, case):
        import intedge
        from intedge.data import InputMapping
        from intedge.inspect_model import split_patterns, trainable_flags
        from intedge.onnx_import import ImportedModel

        self.case = case
        built = MODELS[case.model]()  # an ONNX model, or one already translated
        self.model = built if isinstance(built, ImportedModel) else intedge.import_onnx(built)
        ds = intedge.load_data(case.data, seed=0, input_shape=self.model.input_shape)
        n = (case.steps + 1) * case.batch
        channels = self.model.input_shape[0] if len(self.model.input_shape) > 1 else 1
        mean, std = case.normalize or (0.0, 1.0)
        self.mapping = InputMapping(channels, (mean,) * channels, (std,) * channels)
        x = ds.x_train[:n]
        if not case.input_u8 and x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        self.flags = trainable_flags(self.model, split_patterns(case.trainable))
        trainer = self.trainer()
        self.x, self.y = trainer.prepare(x, ds.y_train[:n], "golden")
        self.x_bytes = self.x if case.input_u8 else self.x.astype(np.float32).view(np.uint32)

    def trainer(self, kernels=None, threads=1):
        from intedge import Trainer

        c = self.case
        return Trainer(self.model, batch_size=c.batch, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                       seed=c.seed, trainable=self.flags, input_format="u8" if c.input_u8 else "f32",
                       input_mapping=self.mapping, kernels=kernels, threads=threads, optimizer=c.optimizer,
                       betas=c.betas, eps=c.eps)

    def batch(self, i):
        b = self.case.batch
        return self.x[i * b:(i + 1) * b], self.y[i * b:(i + 1) * b]

    def fixtures(self):
        return {"model_crc": crc(self.model.iem), "data_crc": crc(self.x_bytes.tobytes() + self.y.astype("<i4").tobytes())}

    def run(self, kernels=None, threads=1):
        """The record of one run: every step's exact loss and hits, the evaluation, the digest."""
        s = self.trainer(kernels, threads).session
        steps = []
        for i in range(self.case.steps):
            loss, correct, count = s.step(*self.batch(i))
            steps.append([round(loss * 65536), correct, count])
        loss, correct, count = s.evaluate(*self.batch(self.case.steps))
        return {"steps": steps, "eval": [round(loss * 65536), correct, count], "digest": f"{s.digest():08x}"}


def render(record):
    """The text golden_main.c prints for one run (after its `== kernels` header)."""
    lines = [f"step {i} loss_q16 {l} correct {c}/{n}" for i, (l, c, n) in enumerate(record["steps"])]
    l, c, n = record["eval"]
    lines += [f"eval loss_q16 {l} correct {c}/{n}", f"digest {record['digest']}"]
    return "\n".join(lines) + "\n"


# ---- check / regenerate / emit ---------------------------------------------------------------------

def load():
    return json.loads(DIGESTS.read_text())


def differences(case, committed, kernels=None, threads=1):
    """What differs between a run here and the committed record (an empty list: nothing)."""
    fx = Fixture(case)
    problems = [f"{case.name}: fixture {k} is {v}, committed {committed.get(k)} (the fixture changed, not the "
                "arithmetic: regenerate only if that change is intended)"
                for k, v in fx.fixtures().items() if committed.get(k) != v]
    if problems:
        return problems
    got = fx.run(kernels, threads)
    if got != {k: committed[k] for k in got}:
        return [f"{case.name} (kernels {kernels}, {threads} thread(s)) differs from the committed record:\n"
                f"--- committed\n{render(committed)}--- here\n{render(got)}"]
    return []


def _json_text(records):
    """digests.json with one line per step, so that a diff shows the first step that changed."""
    cases = []
    for name, r in records.items():
        steps = ",\n".join(f"   {json.dumps(s)}" for s in r["steps"])
        cases.append(f' {json.dumps(name)}: {{\n  "model_crc": "{r["model_crc"]}", "data_crc": "{r["data_crc"]}",\n'
                     f'  "steps": [\n{steps}\n  ],\n  "eval": {json.dumps(r["eval"])}, "digest": "{r["digest"]}"\n }}')
    return "{\n" + ",\n".join(cases) + "\n}\n"


def regenerate():
    from intedge.runtime import kernel_tiers

    records = {}
    for case in CASES:
        fx = Fixture(case)
        runs = {(k, t): fx.run(k, t) for k in kernel_tiers() for t in (1, 2)}
        first = next(iter(runs.values()))
        if any(r != first for r in runs.values()):
            raise SystemExit(f"{case.name}: kernel tiers or thread counts disagree; fix that before regenerating")
        records[case.name] = {**fx.fixtures(), **first}
        print(f"{case.name}: digest {first['digest']}")
    DIGESTS.write_text(_json_text(records))
    print(f"wrote {DIGESTS}")


def _c_array(kind, name, values, per_line=16):
    from intedge.compile import _c_list

    return f"static const {kind} {name}[{len(values)}] = {{\n    {_c_list(values, per_line)}\n}};\n"


def emit(out_dir):
    """For each case, DIR/<case>/golden_case.c (model, config, samples) and expected.txt."""
    from intedge.runtime import dyadic

    committed = load()
    for case in CASES:
        fx = Fixture(case)
        if fx.fixtures() != {k: committed[case.name][k] for k in ("model_crc", "data_crc")}:
            raise SystemExit("\n".join(differences(case, committed[case.name])))
        d = Path(out_dir) / case.name
        d.mkdir(parents=True, exist_ok=True)
        flags = fx.flags if fx.flags is not None else [True] * len(fx.model.param_names)
        u8 = ""
        if case.input_u8:
            offsets, scales, exponent = fx.mapping.runtime_u8()
            u8 = (_c_array("int32_t", "input_offset_q8", offsets) + _c_array("int32_t", "input_scale_m", scales) +
                  f"#define GOLDEN_INPUT_U8 {fx.mapping.channels}\n#define GOLDEN_INPUT_SCALE_E {exponent}\n")
        dy = {k: dyadic(getattr(case, k)) for k in ("lr", "momentum", "weight_decay", "eps")}
        dy.update(beta1=dyadic(case.betas[0]), beta2=dyadic(case.betas[1]))
        text = (f"/* Golden case {case.name}, generated by tests/golden/golden.py emit: do not edit. */\n"
                "#include <stdint.h>\n#include \"intedge.h\"\n"
                f"#define GOLDEN_BATCH {case.batch}u\n#define GOLDEN_STEPS {case.steps}u\n"
                f"#define GOLDEN_INPUT_SIZE {fx.model.input_size}u\n#define GOLDEN_SEED {case.seed}u\n"
                f"#define GOLDEN_OPTIMIZER IE_OPTIM_{case.optimizer.upper()}\n"
                + "".join(f"#define GOLDEN_{k.upper()} {{{v.m}, {v.e}}}\n" for k, v in dy.items())
                + _c_array("uint8_t", "model_iem", list(fx.model.iem))
                + _c_array("uint8_t", "trainable", [int(bool(f)) for f in flags])
                + _c_array("uint8_t" if case.input_u8 else "uint32_t", "samples", fx.x_bytes.reshape(-1).tolist(),
                           16 if case.input_u8 else 6)
                + _c_array("int32_t", "labels", fx.y.tolist()) + u8)
        (d / "golden_case.h").write_text(text)
        (d / "expected.txt").write_text(render(committed[case.name]))
    print(f"emitted {len(CASES)} golden cases into {out_dir}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="compare every case, tier and thread count here with digests.json")
    sub.add_parser("regenerate", help="rewrite digests.json from this machine's runs")
    e = sub.add_parser("emit", help="C sources of every case for a (cross) build")
    e.add_argument("out_dir")
    args = ap.parse_args(argv)
    if args.cmd == "regenerate":
        regenerate()
    elif args.cmd == "emit":
        emit(args.out_dir)
    else:
        from intedge.runtime import kernel_tiers

        committed = load()
        problems = [p for case in CASES for k in kernel_tiers() for t in (1, 2)
                    for p in differences(case, committed[case.name], k, t)]
        print("\n".join(problems) or f"all {len(CASES)} golden cases match on tiers {', '.join(kernel_tiers())} "
                                      "with 1 and 2 threads")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
