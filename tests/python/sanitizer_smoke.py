"""Every op family under AddressSanitizer + UndefinedBehaviorSanitizer: a few training steps of
each test architecture against the sanitizer build of libintedge, with threads, a saved and
restored state, and evaluation. Run by tools/run_tests.sh as

    LD_PRELOAD=<libasan>:<libubsan> INTEDGE_LIBRARY=build/asan/libintedge.so python tests/python/sanitizer_smoke.py

The C tests cover the loader, numerics and training API under the sanitizers; this covers the
operators, which the Python tests drive."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
import intedge  # noqa: E402
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


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, make, shape, exporter in CASES:
        model = exporter(make(), torch.randn(2, *shape), dynamo=False, opset=13)
        x = rng.standard_normal((12, *shape)).astype(np.float32)
        y = rng.integers(0, 10, 12)
        for threads in (1, 2):
            t = intedge.Trainer(model, batch_size=8, lr=0.05, momentum=0.9, weight_decay=1e-4, threads=threads)
            t.fit(x, y, epochs=2, progress=False)  # a full batch and a partial one
            state = t.session.save_state()
            t.session.load_state(state)
            t.evaluate(x, y)
        print(f"ok {name}", flush=True)
    print("sanitizer smoke: all op families clean")


if __name__ == "__main__":
    main()
