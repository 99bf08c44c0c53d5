"""Training-step benchmark: intedge against PyTorch fp32 and ONNX Runtime on-device training, in one
run on one machine. Each framework runs in its own process (so peak RSS is its own).

    python tools/bench/bench.py                      # all models, 1 and 2 threads
    python tools/bench/bench.py --models lenet --threads 1 --json out.json

ORT training needs its own venv (it conflicts with the onnxruntime inference package; its
training module imports torch):
    python3 -m venv /opt/ortvenv && /opt/ortvenv/bin/pip install onnxruntime-training==1.19.2 onnx==1.16.2 \
        "numpy<2" torch==2.13.0
and --ort-python /opt/ortvenv/bin/python (the default; skipped with a note if absent)."""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = {"mlp": (1, 28, 28), "lenet": (1, 28, 28), "resnet8": (3, 32, 32), "mobilenetv2": (3, 32, 32)}
BATCH = 32


def torch_model(name):
    import torch
    sys.path.insert(0, str(ROOT / "models"))
    from torch_models import MLP, LeNet5, MobileNetV2Small, ResNet8
    torch.manual_seed(0)
    return {"mlp": lambda: MLP(784, 256), "lenet": lambda: LeNet5(flatten_by_view=False),
            "resnet8": lambda: ResNet8(in_ch=3, width=16), "mobilenetv2": lambda: MobileNetV2Small(in_ch=3)}[name]()


def median_ms(step, warmup=3, reps=15):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


# ---- workers: each prints one JSON line ------------------------------------------------------------

def work_intedge(model_path, shape, threads):
    import intedge
    t = intedge.Trainer(str(model_path), batch_size=BATCH, lr=0.01, momentum=0.9, threads=threads)
    x = np.random.default_rng(0).standard_normal((BATCH, *shape)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, BATCH).astype(np.int32)
    xb = t.prepare(x, y, "x")[0]
    ms = median_ms(lambda: t.session.step(xb, labels=y))
    return {"ms": ms, "kernels": t.session.kernels, "arena_mb": t.runtime_model.arena_size(BATCH) / 2**20}


def work_torch(name, shape, threads):
    import torch
    torch.set_num_threads(threads)
    net = torch_model(name)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH, *shape)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return {"ms": median_ms(step)}


def work_ort(model_path, shape, threads):
    import onnx
    from onnxruntime.training import artifacts
    from onnxruntime.training.api import CheckpointState, Module, Optimizer
    m = onnx.load(str(model_path))
    params = [i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 1
              and "running" not in i.name and "num_batches" not in i.name]
    out = tempfile.mkdtemp()
    artifacts.generate_artifacts(m, requires_grad=params, loss=artifacts.LossType.CrossEntropyLoss,
                                 optimizer=artifacts.OptimType.AdamW, artifact_directory=out)
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    state = CheckpointState.load_checkpoint(f"{out}/checkpoint")
    module = Module(f"{out}/training_model.onnx", state, f"{out}/eval_model.onnx")
    opt = Optimizer(f"{out}/optimizer_model.onnx", module)
    x = np.random.default_rng(0).standard_normal((BATCH, *shape)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, BATCH).astype(np.int64)
    module.train()

    def step():
        module(x, y)
        opt.step()
        module.lazy_reset_grad()
    return {"ms": median_ms(step), "optimizer": "AdamW (ORT artifacts offer no plain SGD)"}


def peak_rss_mb():
    """VmHWM: the process's own peak (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_main(args):
    shape = MODELS[args.model]
    t = args.worker_threads
    fn = {"intedge": lambda: work_intedge(args.model_path, shape, t),
          "torch": lambda: work_torch(args.model, shape, t),
          "ort": lambda: work_ort(args.model_path, shape, t)}[args.worker]
    res = fn()
    res["rss_mb"] = peak_rss_mb()
    print(json.dumps(res))


# ---- the parent --------------------------------------------------------------------------------

def export_models(names, folder):
    import torch
    sys.path.insert(0, str(ROOT / "models"))
    from torch_models import export_training
    paths = {}
    for n in names:
        p = Path(folder) / f"{n}.onnx"
        import onnx
        onnx.save(export_training(torch_model(n), torch.randn(2, *MODELS[n]), dynamo=False, opset=13), str(p))
        paths[n] = p
    return paths


def run_worker(python, worker, model, path, threads):
    cmd = [python, __file__, "--worker", worker, "--model", model, "--model-path", str(path),
           "--worker-threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def gemm_gops(shapes):
    """intedge's best tier on GEMM shapes, single thread, GOP/s (2 ops per multiply-add)."""
    from intedge._ffi import ffi, lib
    from intedge.runtime import kernel_tiers
    tier = kernel_tiers()[-1]
    rng = np.random.default_rng(0)
    out = {}
    for m, n, k in shapes:
        a = rng.integers(-127, 128, (m, k), dtype=np.int8)
        b = rng.integers(-127, 128, (n, k), dtype=np.int8)
        c = np.zeros((m, n), np.int32)
        pa, pb, pc = ffi.from_buffer("int8_t[]", a), ffi.from_buffer("int8_t[]", b), ffi.from_buffer(c)
        ms = median_ms(lambda: lib.ie_test_gemm(tier.encode(), 0, m, n, k, pa, pb, pc), warmup=2, reps=9)
        out[f"{m}x{n}x{k}"] = 2 * m * n * k / (ms * 1e-3) / 1e9
    return tier, out


def int8_peak(tier):
    exe = Path(tempfile.mkdtemp()) / "peak"
    subprocess.run(["cc", "-O2", str(HERE / "peak.c"), "-o", str(exe)], check=True)
    return float(subprocess.run([str(exe), "avx2" if tier == "avx2" else "vnni"], capture_output=True,
                                text=True).stdout.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--ort-python", default="/opt/ortvenv/bin/python")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    names = args.models.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    ort_ok = Path(args.ort_python).exists()
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version()}, "batch": BATCH, "models": {}}
    with tempfile.TemporaryDirectory() as d:
        paths = export_models(names, d)
        for n in names:
            for t in threads:
                row = {"intedge": run_worker(sys.executable, "intedge", n, paths[n], t),
                       "torch": run_worker(sys.executable, "torch", n, paths[n], t),
                       "ort": run_worker(args.ort_python, "ort", n, paths[n], t) if ort_ok else {"error": "no ORT venv"}}
                results["models"][f"{n}/t{t}"] = row
    tier, gops = gemm_gops([(256, 256, 256), (32, 256, 784), (32, 784, 256), (256, 784, 32), (16, 784, 150)])
    results["gemm"] = {"tier": tier, "gops": gops, "int8_peak_gops": int8_peak(tier)}
    print(f"{'model/threads':<16} {'intedge ms':>10} {'torch ms':>9} {'ort ms':>8} {'÷torch':>7} {'÷ort':>6} "
          f"{'peak RSS MB ie/torch/ort':>25} {'ie arena MB':>11}")
    for key, r in results["models"].items():
        ie, to, ort_ = r["intedge"], r["torch"], r["ort"]
        f = lambda v: f"{v['ms']:.2f}" if "ms" in v else "-"  # noqa: E731
        ratio = lambda a, b: f"{a['ms'] / b['ms']:.2f}" if "ms" in a and "ms" in b else "-"  # noqa: E731
        rss = "/".join(f"{v['rss_mb']:.0f}" if "rss_mb" in v else "-" for v in (ie, to, ort_))
        arena = f"{ie['arena_mb']:.2f}" if "arena_mb" in ie else "-"
        print(f"{key:<16} {f(ie):>10} {f(to):>9} {f(ort_):>8} {ratio(ie, to):>7} {ratio(ie, ort_):>6} {rss:>25} {arena:>11}")
    g = results["gemm"]
    print(f"\nint8 GEMM ({g['tier']}, 1 thread): " + ", ".join(f"{k} {v:.1f} GOP/s" for k, v in g["gops"].items())
          + f"; measured int8 peak {g['int8_peak_gops']:.0f} GOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
