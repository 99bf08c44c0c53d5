"""Seed corpus of the libFuzzer harnesses, from the models the tests build
(tests/python/seed_models.py): each model's .iem for fuzz_model, and for fuzz_state the states of
the first model's sessions (with and without momentum, before and after a few steps) plus that
model as state_model.iem. Usage: python tools/fuzz/make_seeds.py OUT_DIR (needs the installed
package; run from anywhere)."""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "models"), str(ROOT / "tests" / "python")]

from intedge import Model, Session, iem  # noqa: E402
from intedge.onnx_import import import_onnx  # noqa: E402
from seed_models import seed_graphs, seed_onnx_models  # noqa: E402


def main(out):
    out = Path(out)
    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "state").mkdir(parents=True, exist_ok=True)
    blobs = [import_onnx(m).iem for m in seed_onnx_models()] + [iem.serialize(g) for g in seed_graphs()]
    for k, blob in enumerate(blobs):
        (out / "model" / f"seed-{k}.iem").write_bytes(blob)
    (out / "state_model.iem").write_bytes(blobs[0])
    model = Model(blobs[0])
    rng = np.random.default_rng(0)
    for momentum in (0.0, 0.9):
        s = Session(model, batch_size=2, lr=0.01, momentum=momentum, weight_decay=1e-4, seed=7)
        for steps in (0, 3):
            for _ in range(steps):
                s.step(rng.standard_normal((2, model.input_size)).astype(np.float32), rng.integers(0, 10, 2))
            (out / "state" / f"seed-m{momentum}-s{s.step_count}.ies").write_bytes(s.save_state())
    print(f"seeds: {len(blobs)} models, 4 states in {out}")


if __name__ == "__main__":
    main(sys.argv[1])
