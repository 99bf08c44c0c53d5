"""Every op family under AddressSanitizer + UndefinedBehaviorSanitizer: a few training steps of
each test architecture with each optimizer (SGD with momentum, AdamW) against the sanitizer
build of libintedge, with threads, a saved and restored state, and evaluation. Run by tools/run_tests.sh as

    LD_PRELOAD=<libasan>:<libubsan> INTEDGE_LIBRARY=build/asan/libintedge.so python tests/python/sanitizer_smoke.py

The C tests cover the loader, numerics and training API under the sanitizers; this covers the
operators, which the Python tests drive."""
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import intedge  # noqa: E402
from intedge import iem  # noqa: E402
from torch_models import (Activation, DropoutNet, LayoutZoo, LeNet5, MobileNetV2Small, ResidualPools,  # noqa: E402
                          ResNet8, export, export_training)

CASES = [
    ("lenet5", lambda: LeNet5(flatten_by_view=True), (1, 28, 28), export),
    ("resnet8", lambda: ResNet8(in_ch=3, width=4), (3, 16, 16), export_training),
    ("mobilenetv2", lambda: MobileNetV2Small(in_ch=1), (1, 16, 16), export_training),
    ("residual-pools", ResidualPools, (1, 12, 12), export),
    ("layout", LayoutZoo, (1, 8, 8), export),
    ("dropout", DropoutNet, (1, 8, 8), export_training),
] + [(f"activation-{a}", (lambda a=a: Activation(a)), (1, 8, 8), export) for a in sorted(Activation.FUNCTIONS)]


def iem_cases(rng):
    """Ops the importer does not map yet, as .iem graphs: (name, graph, inputs, labels)."""
    from test_embedding import T, V, embedding_graph

    ids = rng.integers(0, V, (12, T))
    yield "embedding", embedding_graph(rng, const_positions=True), ids, rng.integers(0, 4, 12)


OPTIMIZERS = [dict(lr=0.05, momentum=0.9, weight_decay=1e-4), dict(lr=1e-3, optimizer="adamw", weight_decay=0.01)]


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, make, shape, exporter in CASES:
        model = exporter(make(), torch.randn(2, *shape), dynamo=False, opset=13)
        x = rng.standard_normal((12, *shape)).astype(np.float32)
        y = rng.integers(0, 10, 12)
        for threads, opt in itertools.product((1, 2), OPTIMIZERS):
            t = intedge.Trainer(model, batch_size=8, threads=threads, **opt)
            t.fit(x, y, epochs=2, progress=False)  # a full batch and a partial one
            state = t.session.save_state()
            t.session.load_state(state)
            t.evaluate(x, y)
        print(f"ok {name}", flush=True)
    for name, graph, x, y in iem_cases(rng):
        model = intedge.Model(iem.serialize(graph))
        for threads, opt in itertools.product((1, 2), OPTIMIZERS):
            s = intedge.Session(model, batch_size=8, threads=threads, **opt)
            for b in (slice(0, 8), slice(8, 12)):  # a full batch and a partial one
                s.step(x[b], labels=y[b])
            s.load_state(s.save_state())
            s.evaluate(x[:8], labels=y[:8])
        print(f"ok {name}", flush=True)
    print("sanitizer smoke: all op families clean")


if __name__ == "__main__":
    main()
