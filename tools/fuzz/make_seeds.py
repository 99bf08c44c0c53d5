"""Seed corpus of the fuzz harnesses, from the models the tests build (tests/python/seed_models.py):
each model's .iem for fuzz_model, the ONNX ones for fuzz_onnx.py, and for fuzz_state the states of
a small MLP's sessions (SGD, SGD with momentum and AdamW, before and after a few steps) plus that
model as state_model.iem (small, so that each run is cheap; the state parser's paths are the same
at any size), and for fuzz_checkpoint.py the checkpoints of that MLP's trainers. Usage: python
tools/fuzz/make_seeds.py OUT_DIR (needs the installed package; run from anywhere)."""
import sys
from pathlib import Path

import numpy as np

import intedge
from intedge import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "models"), str(ROOT / "tests" / "python")]

from intedge import Model, Session, iem  # noqa: E402
from intedge.onnx_import import import_onnx  # noqa: E402
from build_mlp import build_mlp  # noqa: E402
from seed_models import seed_graphs, seed_onnx_models  # noqa: E402


def main(out):
    out = Path(out)
    for harness in ("model", "state", "onnx", "checkpoint"):
        (out / harness).mkdir(parents=True, exist_ok=True)
    onnx_models = seed_onnx_models()
    for k, m in enumerate(onnx_models):
        (out / "onnx" / f"seed-{k}.onnx").write_bytes(m.SerializeToString())
    blobs = [import_onnx(m).iem for m in onnx_models] + [iem.serialize(g) for g in seed_graphs()]
    for k, blob in enumerate(blobs):
        (out / "model" / f"seed-{k}.iem").write_bytes(blob)
    mlp = build_mlp([6, 5, 4], input_shape=(1, 2, 3))
    state_model = import_onnx(mlp).iem
    (out / "state_model.iem").write_bytes(state_model)
    model = Model(state_model)
    rng = np.random.default_rng(0)
    # the sessions of tools/fuzz/fuzz_state.c (fuzz_config in fuzz_common.h)
    optimizers = {"sgd": {}, "momentum": {"momentum": 0.9}, "adamw": {"optimizer": "adamw"}}
    for name, kwargs in optimizers.items():
        s = Session(model, batch_size=2, lr=0.01, weight_decay=1e-4, seed=7, **kwargs)
        for steps in (0, 3):
            for _ in range(steps):
                s.step(rng.standard_normal((2, model.input_size)).astype(np.float32), rng.integers(0, 4, 2))
            (out / "state" / f"seed-{name}-s{s.step_count}.ies").write_bytes(s.save_state())
        t = intedge.Trainer(mlp, batch_size=4, lr=0.05, weight_decay=1e-4, seed=7, **kwargs)
        t.fit(rng.standard_normal((8, 1, 2, 3)).astype(np.float32), rng.integers(0, 4, 8), epochs=1, progress=False)
        (out / "checkpoint" / f"seed-{name}.iec").write_bytes(ckpt.encode(t.checkpoint()))
    print(f"seeds: {len(blobs)} models ({len(onnx_models)} ONNX), {2 * len(optimizers)} states, "
          f"{len(optimizers)} checkpoints in {out}")


if __name__ == "__main__":
    main(sys.argv[1])
