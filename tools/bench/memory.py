"""Where a training process's memory goes (docs/benchmarks.md, issue 13's peak RSS): the arena of a
bench model's session by category, at the planner's busiest schedule position, and the process's
resident memory at each stage of `bench.py`'s intedge worker.

    python tools/bench/memory.py --models resnet18@96 --modes full,last

The arena: the fixed part (int32 masters, SGD momentum, tables) and the planned region, whose
buffers live over schedule positions (ie_test_plan): activations kept for backward (produced in
the forward, read after the loss), activations that die in the forward, activation gradients and
fan-out shares, node scratch (im2col columns, GEMM chunks, BatchNorm sums), the weights' int8
views and weight gradients (int64, or int32 in their first half; the optimizer normalizes them in
place). The region
is the placement's peak, at least the busiest position's sum. Each stage's RSS is measured in a
fresh process, as the bench measures a framework."""
import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402

KINDS = ["activation", "activation grad", "node scratch", "int8 weight view", "weight grad", "loss sums", "targets",
         "fan-out grad share"]
MB = 2 ** 20


def plan_breakdown(runtime_model, n_nodes, batch, flags):
    """The region's buffers at its busiest position, by category (MB), and the region's size."""
    from intedge._ffi import ffi, lib
    cfg, _keep = runtime_model._config(batch, 0.01, 0.9, 0.0, 0, "cross_entropy", flags)
    count = ffi.new("uint32_t *")
    assert lib.ie_test_plan(runtime_model._h, cfg, ffi.NULL, 0, count) == lib.IE_OK, runtime_model.errmsg()
    rows = ffi.new("uint64_t[]", 6 * count[0])
    assert lib.ie_test_plan(runtime_model._h, cfg, rows, count[0], count) == lib.IE_OK
    bufs = [tuple(rows[6 * i + k] for k in range(6)) for i in range(count[0])]
    loss = n_nodes + 1
    positions = range(0, 2 * n_nodes + 2)

    def category(b):
        kind, _index, first, last = b[:4]
        if kind == 0:
            return "activation kept for backward" if first < loss < last else "activation (forward only)"
        return KINDS[kind]

    live = {p: sum(b[4] for b in bufs if b[2] <= p <= b[3]) for p in positions}
    peak = max(live, key=live.get)
    cats = {}
    for b in bufs:
        if b[2] <= peak <= b[3]:
            cats[category(b)] = cats.get(category(b), 0) + b[4] / MB
    region = max(b[4] + b[5] for b in bufs) / MB
    where = "forward" if peak < loss else ("loss" if peak == loss else "backward")
    return {"region_mb": region, "peak_position": f"{where} (position {peak} of {2 * n_nodes + 1})",
            "busiest_mb": live[peak] / MB, "at_peak_mb": cats}


# a fresh process per stage list, as bench.py's worker runs: VmRSS after each stage
STAGES = """
import json, sys
from pathlib import Path
import numpy as np
def rss():
    return {k: int(v.split()[0]) / 1024 for k, v in (l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines())
            if k in ("VmRSS", "VmHWM")}
out = {"interpreter and numpy": rss()}
sys.path.insert(0, sys.argv[3])
import intedge, bench
from intedge.inspect_model import trainable_flags
from intedge.onnx_import import import_onnx
out["imports (numpy, onnx, intedge)"] = rss()
imported = import_onnx(sys.argv[1])
out["import_onnx"] = rss()
flags = trainable_flags(imported, bench.spec(sys.argv[2])[2]) if sys.argv[4] == "last" else None
t = intedge.Trainer(imported, batch_size=bench.spec(sys.argv[2])[1], trainable=flags, lr=0.01, momentum=0.9)
out["Trainer (session created)"] = rss()
x, y = bench.batch_of(sys.argv[2])
xb = t.prepare(x, y.astype(np.int32), "x")[0]
out["a batch prepared"] = rss()
for _ in range(2):
    t.session.step(xb, labels=y.astype(np.int32))
out["two steps"] = rss()
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18@96")
    ap.add_argument("--modes", default="full,last")
    args = ap.parse_args()
    import intedge
    from intedge.inspect_model import trainable_flags
    from intedge.onnx_import import import_onnx
    names = args.models.split(",")
    with tempfile.TemporaryDirectory() as d:
        paths = bench.export_models(names, d)
        for n in names:
            for mode in args.modes.split(","):
                imported = import_onnx(str(paths[n]))
                flags = trainable_flags(imported, bench.spec(n)[2]) if mode == "last" else None
                m = intedge.Model(imported.iem)
                batch = bench.spec(n)[1]
                trained = [p for p, f in zip(m.params, flags or [True] * len(m.params)) if f]
                masters = sum(4 * p.numel for p in m.params) / MB
                momentum = sum(4 * p.numel for p in trained) / MB
                arena = m.arena_size(batch, trainable=flags, momentum=0.9) / MB
                n_nodes = struct.unpack_from("<I", imported.iem, 20)[0]  # the .iem header's node count
                plan = plan_breakdown(m, n_nodes, batch, flags)
                res = subprocess.run([sys.executable, "-c", STAGES, str(paths[n]), n, str(HERE), mode],
                                     capture_output=True, text=True, check=True)
                stages = json.loads(res.stdout.strip().splitlines()[-1])
                print(f"\n{n} {mode}, batch {batch}: arena {arena:.1f} MB = int32 masters {masters:.1f} "
                      f"(all {len(m.params)} parameters) + momentum {momentum:.1f} ({len(trained)} trained) + "
                      f"tables {max(0.0, arena - masters - momentum - plan['region_mb']):.1f} + region {plan['region_mb']:.1f}")
                print(f"  region's busiest position: {plan['peak_position']}, {plan['busiest_mb']:.1f} MB live:")
                for k, v in sorted(plan["at_peak_mb"].items(), key=lambda kv: -kv[1]):
                    print(f"    {k:<32} {v:7.1f} MB")
                print(f"  .iem {len(imported.iem_blob) / MB:.1f} MB; process, VmRSS / VmHWM MB:")
                for k, v in stages.items():
                    print(f"    {k:<32} {v['VmRSS']:7.0f} {v['VmHWM']:7.0f}")


if __name__ == "__main__":
    main()
