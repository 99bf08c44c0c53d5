"""Training-step benchmark: intedge against PyTorch fp32 and ONNX Runtime on-device training, in one
run on one machine. Each framework runs in its own process (so peak RSS is its own).

    python tools/bench/bench.py                      # the toy models, 1 and 2 threads
    python tools/bench/bench.py --models lenet --threads 1 --json out.json
    python tools/bench/bench.py --models real --modes full,last --profile   # the real-size models
    python tools/bench/bench.py --models dense --threads 1   # issue 14's segmenters and detector

Models: the toys (batch 32: mlp, lenet, resnet8, mobilenetv2, and vit, issue 12's ViT trained with
AdamW in all three frameworks) and the real-size ones (batch 16:
torchvision's MobileNetV2 x0.35 and x1.0 and ResNet-18, written out in models/torchvision_nets.py,
at 96 and 128 px: mbv2x0.35@96 ... resnet18@128; `real` names all six) and the dense ones (batch
16, 64 x 64 grey images: models/torch_models.py's SegUNet and SegDeepLab with 11 classes and
per-pixel cross-entropy, CenterNetTiny with 10 classes and CenterNet's loss; `dense` names all
three; ORT's artifacts have no CenterNet loss). --modes: `full` trains
everything, `last` the last blocks and the classifier only (the model's LAST patterns, as
`intedge train --trainable` takes them; the frozen prefix gets no gradient in every framework).
--profile prints where intedge's single-threaded step goes: per op class and phase (forward, dX,
dW, optimizer), split into GEMM, packing, im2col/col2im and rounding (intedge_testing.h's
ie_test_profile).

Memory, two ways: the training state (intedge: the session's arena plus the decoded model;
PyTorch: parameters and buffers, gradients, optimizer state and the activations autograd saves
for backward, measured on a step), and each process's peak RSS.

ORT training needs its own venv (it conflicts with the onnxruntime inference package; its
training module imports torch), so it runs only by hand, never in the tests:
    python3 -m venv /opt/ortvenv && /opt/ortvenv/bin/pip install \
        onnxruntime-training==1.19.2 onnx==1.16.2 "numpy<2" torch==2.13.0
and --ort-python /opt/ortvenv/bin/python (the default; skipped with a note if absent). ORT's
step uses AdamW: its training artifacts offer AdamW and no plain SGD."""
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
TOYS = {"mlp": (1, 28, 28), "lenet": (1, 28, 28), "resnet8": (3, 32, 32), "mobilenetv2": (3, 32, 32),
        "vit": (1, 28, 28)}
# models whose recipe is AdamW in every framework (transformers train badly with SGD); the rest SGD
ADAMW = ("vit",)
# the real-size models: architecture and the last blocks plus the classifier (--modes last)
REAL = {"mbv2x0.35": ["features.17.*", "features.18.*", "classifier.*"],
        "mbv2x1.0": ["features.17.*", "features.18.*", "classifier.*"],
        "resnet18": ["layer4.*", "fc.*"]}
SIZES = (96, 128)
REAL_NAMES = [f"{a}@{px}" for a in REAL for px in SIZES]
# the dense-task models (issue 14): per-pixel cross-entropy or CenterNet's loss, 64 x 64 grey images
DENSE = {"unet": "pixel_cross_entropy", "deeplab": "pixel_cross_entropy", "centernet": "centernet"}
DENSE_CLASSES = {"unet": 11, "deeplab": 11, "centernet": 10}
CLASSES = 10
NO_ORT = "no ORT venv (see --ort-python)"


def spec(name):
    """(input shape, batch, last-blocks patterns or None) of a model name."""
    if name in TOYS:
        return TOYS[name], 32, None
    if name in DENSE:
        return (1, 64, 64), 16, None
    arch, px = name.split("@")
    return (3, int(px), int(px)), 16, REAL[arch]


def torch_model(name):
    import torch
    sys.path.insert(0, str(ROOT / "models"))
    from torch_models import MLP, CenterNetTiny, LeNet5, MobileNetV2Small, ResNet8, SegDeepLab, SegUNet, ViT, distinct_weights
    import torchvision_nets as tv
    torch.manual_seed(0)
    arch = name.split("@")[0]
    return {"mlp": lambda: MLP(784, 256), "lenet": lambda: LeNet5(flatten_by_view=False),
            "resnet8": lambda: ResNet8(in_ch=3, width=16), "mobilenetv2": lambda: MobileNetV2Small(in_ch=3),
            "vit": lambda: distinct_weights(ViT()),  # distinct: the exporters store equal tensors once
            "mbv2x0.35": lambda: tv.mobilenet_v2(CLASSES, 0.35), "mbv2x1.0": lambda: tv.mobilenet_v2(CLASSES, 1.0),
            "resnet18": lambda: tv.resnet18(CLASSES), "unet": lambda: SegUNet(classes=11),
            "deeplab": lambda: SegDeepLab(classes=11), "centernet": lambda: CenterNetTiny(classes=10)}[arch]()


def frozen(param_name, patterns):
    import fnmatch
    return patterns is not None and not any(fnmatch.fnmatchcase(param_name, p) for p in patterns)


def median_ms(step, warmup=3, reps=15, cpu=None):
    """Median, min and max step time in ms (wall clock); cpu, a list, receives each step's process
    CPU time (all of the process's threads)."""
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        ts.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return float(np.median(ts) * 1e3), float(min(ts) * 1e3), float(max(ts) * 1e3)


def timed(step, reps):
    """Wall-clock median with its spread, and the median CPU time: on a shared machine the CPU
    time of a one-thread step is the steadier figure (waiting for a core does not count)."""
    cpu = []
    ms, lo, hi = median_ms(step, warmup=3 if reps >= 15 else 2, reps=reps, cpu=cpu)
    return {"ms": ms, "min_ms": lo, "max_ms": hi, "cpu_ms": float(np.median(cpu) * 1e3)}


def batch_of(name, seed_labels=1):
    """A batch and its labels: classes; a class a pixel (segmenters); CenterNet's dense targets of
    one to four random boxes an image, in the runtime's encoding (the detector)."""
    shape, batch, _ = spec(name)
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    rng = np.random.default_rng(seed_labels)
    if DENSE.get(name) == "centernet":
        from intedge import detect
        boxes = [[[rng.integers(10), *rng.uniform(0, 40, 2), *rng.uniform(6, 24, 2)] for _ in range(rng.integers(1, 5))]
                 for _ in range(batch)]
        return x, detect.Targets(boxes, DENSE_CLASSES[name], (16, 16), 4).dense.reshape(batch, -1, 16, 16)
    return x, rng.integers(0, DENSE_CLASSES.get(name, CLASSES), (batch, *shape[1:]) if name in DENSE else batch)


def torch_loss(name):
    """loss(outputs, labels) of a model's task, as PyTorch trains it."""
    import torch
    if DENSE.get(name) == "centernet":
        from torch_models import centernet_loss
        return lambda out, y: centernet_loss(out, y, DENSE_CLASSES[name])[0]
    return lambda out, y: torch.nn.functional.cross_entropy(out, y, ignore_index=255)


# ---- workers: each prints one JSON line ------------------------------------------------------------

def op_class(onnx_model, name, op):
    """The profile's row for a node: convolutions by shape (depthwise, 1x1, k x k)."""
    if op != "Conv":
        return {"BatchNormalization": "BatchNorm"}.get(op, op)
    node = next((n for n in onnx_model.graph.node if n.name == name), None)
    if node is None:
        return "Conv"
    attrs = {a.name: a for a in node.attribute}
    group = attrs["group"].i if "group" in attrs else 1
    w = next(i for i in onnx_model.graph.initializer if i.name == node.input[1])
    k = f"{w.dims[2]}x{w.dims[3]}"
    return f"Conv dw{k}" if group > 1 and w.dims[1] == 1 else f"Conv {k}"


def profile_of(trainer, step, steps=3):
    """ms per step by op class, phase and kind (intedge_testing.h's ie_test_profile)."""
    s = trainer.session
    nodes = s.nodes() + [("", "input+loss")]
    s.profile_start()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = (time.perf_counter() - t0) / steps * 1e3, (time.process_time() - c0) / steps * 1e3
    ns = s.profile() / steps / 1e6
    rows = {}
    graph = trainer.model.onnx_model  # read once: a model imported from a file is read again for it
    for (name, op), cells in zip(nodes, ns):
        key = op_class(graph, name, op) if name else op
        rows[key] = (np.array(rows[key]) + cells).tolist() if key in rows else cells.tolist()
    return {"phases": list(s.PROFILE_PHASES), "kinds": list(s.PROFILE_KINDS), "ms": rows, "step_wall_ms": wall,
            "step_cpu_ms": cpu}


def work_intedge(model_path, name, threads, last, reps, profile):
    import intedge
    from intedge.inspect_model import trainable_flags
    from intedge.onnx_import import import_onnx
    shape, batch, patterns = spec(name)
    imported = import_onnx(str(model_path))
    flags = trainable_flags(imported, patterns) if last else None
    recipe = {"optimizer": "adamw", "lr": 0.001} if name in ADAMW else {"lr": 0.01, "momentum": 0.9}
    t = intedge.Trainer(imported, batch_size=batch, threads=threads, trainable=flags,
                        loss=DENSE.get(name, "cross_entropy"), **recipe)
    x, y = batch_of(name)
    y = y.astype(np.int32).reshape(batch, -1) if name in DENSE else y.astype(np.int32)
    xb = t.prepare(x, None if name in DENSE else y, "x")[0]
    step = lambda: t.session.step(xb, labels=y)  # noqa: E731
    res = timed(step, reps)
    arena = t.runtime_model.arena_size(batch, trainable=flags, optimizer=t.config["optimizer"],
                                       momentum=t.config["momentum"])  # the session's own (momentum's buffers)
    model = t.runtime_model.memory_size()
    # the .iem the model borrows (float weights and tables; it may sit in flash) is reported apart
    res.update(kernels=t.session.kernels, arena_mb=arena / 2**20, model_mb=model / 2**20,
               iem_mb=len(t.model.iem_blob) / 2**20, train_mb=(arena + model) / 2**20)
    if profile:
        res["profile"] = profile_of(t, step)
    return res


def torch_training_memory(net, opt, x, y, loss_fn):
    """What PyTorch holds for a training step, in MB: parameters and buffers, gradients, optimizer
    state, and the activations autograd saves for backward (the unique storages its
    saved-tensor hooks see, less the parameters'). Backward's temporaries are not counted."""
    import torch
    held = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in held:
            saved[storage.data_ptr()] = storage.nbytes()
        return t
    opt.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()
    mb = lambda tensors: sum(t.nbytes for t in tensors) / 2**20  # noqa: E731
    out = {"params_mb": mb([*net.parameters(), *net.buffers()]), "grads_mb": mb(p.grad for p in net.parameters() if p.grad is not None),
           "optimizer_mb": mb(v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)),
           "saved_mb": sum(saved.values()) / 2**20}
    out["train_mb"] = sum(out.values())
    return out


def work_torch(name, threads, last, reps):
    import torch
    torch.set_num_threads(threads)
    net = torch_model(name)
    patterns = spec(name)[2]
    for pname, p in net.named_parameters():
        p.requires_grad_(not (last and frozen(pname, patterns)))
    trained = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=0.001) if name in ADAMW else torch.optim.SGD(trained, lr=0.01, momentum=0.9)
    x, y = (torch.from_numpy(a) for a in batch_of(name))
    y = y.long()
    loss_fn = torch_loss(name)

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    return {**timed(step, reps), **torch_training_memory(net, opt, x, y, loss_fn)}


def work_ort(model_path, name, threads, last, reps):
    import onnx
    from onnxruntime.training import artifacts
    from onnxruntime.training.api import CheckpointState, Module, Optimizer
    m = onnx.load(str(model_path))
    patterns = spec(name)[2]
    params = [i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 1
              and "running" not in i.name and "num_batches" not in i.name and not (last and frozen(i.name, patterns))]
    frozen_params = [i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
                     and len(i.dims) >= 1 and i.name not in params and "running" not in i.name]
    out = tempfile.mkdtemp()
    artifacts.generate_artifacts(m, requires_grad=params, frozen_params=frozen_params,
                                 loss=artifacts.LossType.CrossEntropyLoss, optimizer=artifacts.OptimType.AdamW,
                                 artifact_directory=out)
    state = CheckpointState.load_checkpoint(f"{out}/checkpoint")
    module = Module(f"{out}/training_model.onnx", state, f"{out}/eval_model.onnx")
    opt = Optimizer(f"{out}/optimizer_model.onnx", module)
    x, y = batch_of(name)
    y = y.astype(np.int64)
    module.train()

    def step():
        module(x, y)
        opt.step()
        module.lazy_reset_grad()
    res = timed(step, reps)
    res["optimizer"] = "AdamW (ORT artifacts offer no plain SGD)"
    return res


def peak_rss_mb():
    """VmHWM: the process's own peak (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_main(args):
    t, last, reps = args.worker_threads, args.last, args.reps
    fn = {"intedge": lambda: work_intedge(args.model_path, args.model, t, last, reps, args.profile),
          "torch": lambda: work_torch(args.model, t, last, reps),
          "ort": lambda: work_ort(args.model_path, args.model, t, last, reps)}[args.worker]
    res = fn()
    res["rss_mb"] = peak_rss_mb()
    print(json.dumps(res))


# ---- the parent --------------------------------------------------------------------------------

def export_models(names, folder):
    import onnx
    import torch
    sys.path.insert(0, str(ROOT / "models"))
    from torch_models import export, export_training
    paths = {}
    for n in names:
        p = Path(folder) / f"{n}.onnx"
        example = torch.randn(2, *spec(n)[0])
        if n == "vit":  # opset 14: LayerNorm decomposed, which ORT differentiates (its gradient of opset
            # 17's one-output LayerNormalization fails); intedge fuses it back, to the same runtime graph
            onnx.save(export(torch_model(n), example, dynamo=False, opset=14), str(p))
        else:
            onnx.save(export_training(torch_model(n), example, dynamo=False, opset=13), str(p))
        paths[n] = p
    return paths


def run_worker(python, worker, model, path, threads, last, reps, profile=False):
    cmd = [python, __file__, "--worker", worker, "--model", model, "--model-path", str(path),
           "--worker-threads", str(threads), "--reps", str(reps)] + (["--last"] if last else []) + \
          (["--profile"] if profile else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
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
        ms = median_ms(lambda: lib.ie_test_gemm(tier.encode(), 0, m, n, k, pa, pb, pc), warmup=2, reps=9)[0]
        out[f"{m}x{n}x{k}"] = 2 * m * n * k / (ms * 1e-3) / 1e9
    return tier, out


PEAK_LOOPS = {"avx2": "avx2", "avx512vnni": "vnni", "neon": "neon", "neon-dot": "dotprod"}  # tier: peak.c loop


def int8_peak(tier):
    """(GOP/s, None) of the tier's own int8 multiply-add on this CPU, one thread; or (None, why)."""
    loop = PEAK_LOOPS.get(tier)
    if loop is None:
        return None, f"no peak loop for the {tier} tier: only SIMD tiers have an int8 peak to hold the GEMM to"
    exe = Path(tempfile.mkdtemp()) / "peak"
    subprocess.run(["cc", "-O2", str(HERE / "peak.c"), "-o", str(exe)], check=True)
    res = subprocess.run([str(exe), loop], capture_output=True, text=True)
    if res.returncode != 0:
        return None, res.stderr.strip()
    return float(res.stdout.strip()), None


def print_profile(key, prof):
    """Per op class: ms per step in each phase (its wall time), then the phase totals split by kind."""
    phases, kinds, rows = prof["phases"], prof["kinds"], prof["ms"]
    total = sum(r[p][0] for r in rows.values() for p in range(len(phases)))
    print(f"\nprofile {key} (ms per step, one thread, wall clock: {total:.1f} ms in all; these steps took "
          f"{prof['step_wall_ms']:.1f} ms wall and {prof['step_cpu_ms']:.1f} ms CPU each)")
    print(f"{'op class':<16}" + "".join(f"{p:>10}" for p in phases) + f"{'share':>8}")
    for name, r in sorted(rows.items(), key=lambda kv: -sum(c[0] for c in kv[1])):
        t = sum(c[0] for c in r)
        print(f"{name:<16}" + "".join(f"{c[0]:>10.1f}" for c in r) + f"{100 * t / total:>7.0f}%")
    print(f"{'phase':<16}" + "".join(f"{k:>10}" for k in kinds) + f"{'other':>10}")
    for p, ph in enumerate(phases):
        cells = [sum(r[p][k] for r in rows.values()) for k in range(len(kinds))]
        print(f"{ph:<16}" + "".join(f"{c:>10.1f}" for c in cells) + f"{cells[0] - sum(cells[1:]):>10.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(TOYS), help="names, `toys`, `real` or `dense`")
    ap.add_argument("--modes", default="full", help="full and/or last (the last blocks and the classifier)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=0, help="timed steps (default 15 for toys, 7 for real models)")
    ap.add_argument("--profile", action="store_true", help="print intedge's one-thread profile per model")
    ap.add_argument("--frameworks", default="intedge,torch,ort")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM throughput lines")
    ap.add_argument("--ort-python", default="/opt/ortvenv/bin/python")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--last", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    names = []
    for n in args.models.split(","):
        names += {"toys": list(TOYS), "real": REAL_NAMES, "dense": list(DENSE)}.get(n, [n])
    bad = [n for n in names if n not in TOYS and n not in REAL_NAMES and n not in DENSE]
    if bad:
        sys.exit(f"unknown model(s) {', '.join(bad)}; pick from {', '.join(list(TOYS) + REAL_NAMES + list(DENSE))}, toys, real, dense")
    modes = args.modes.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    frameworks = args.frameworks.split(",")
    ort_ok = Path(args.ort_python).exists()
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version()}, "models": {}}
    with tempfile.TemporaryDirectory() as d:
        paths = export_models(names, d)
        for n in names:
            reps = args.reps or (15 if n in TOYS or n in DENSE else 7)
            for mode in modes:
                last = mode == "last"
                if last and n in TOYS:
                    continue
                for t in threads:
                    run = lambda fw, py, path: run_worker(py, fw, n, path, t, last, reps,  # noqa: E731
                                                          profile=fw == "intedge" and args.profile and t == 1)
                    row = {"batch": spec(n)[1],
                           "intedge": run("intedge", sys.executable, paths[n]) if "intedge" in frameworks else {},
                           "torch": run("torch", sys.executable, paths[n]) if "torch" in frameworks else {},
                           "ort": {"error": "ORT's artifacts have no CenterNet loss"} if DENSE.get(n) == "centernet" else
                           (run("ort", args.ort_python, paths[n]) if ort_ok else {"error": NO_ORT})
                           if "ort" in frameworks else {}}
                    results["models"][f"{n}{'/last' if last else ''}/t{t}"] = row
    if not args.no_gemm:
        tier, gops = gemm_gops([(256, 256, 256), (32, 256, 784), (32, 784, 256), (256, 784, 32), (16, 784, 150)])
        peak, why = int8_peak(tier)
        results["gemm"] = {"tier": tier, "gops": gops, "int8_peak_gops": peak}
        if why:
            results["gemm"]["int8_peak_skipped"] = why
    print(f"{'model/threads':<24} {'intedge ms':>14} {'torch ms':>9} {'ort ms':>8} {'÷torch':>7} {'÷ort':>6} "
          f"{'cpu ÷torch':>10} {'cpu ÷ort':>8} {'train MB ie/torch':>17} {'peak RSS MB ie/torch/ort':>25} {'ie arena MB':>11}")
    for key, r in results["models"].items():
        ie, to, ort_ = r["intedge"], r["torch"], r["ort"]
        f = lambda v: f"{v['ms']:.1f}" if "ms" in v else "-"  # noqa: E731
        spread = f"{ie['min_ms']:.0f}-{ie['max_ms']:.0f}" if "ms" in ie else ""
        ratio = lambda a, b, k="ms": f"{a[k] / b[k]:.2f}" if k in a and k in b else "-"  # noqa: E731
        rss = "/".join(f"{v['rss_mb']:.0f}" if "rss_mb" in v else "-" for v in (ie, to, ort_))
        arena = f"{ie['arena_mb']:.2f}" if "arena_mb" in ie else "-"
        train = "/".join(f"{v['train_mb']:.2f}" if "train_mb" in v else "-" for v in (ie, to))
        print(f"{key:<24} {f(ie) + ' ' + spread:>14} {f(to):>9} {f(ort_):>8} {ratio(ie, to):>7} {ratio(ie, ort_):>6} "
              f"{ratio(ie, to, 'cpu_ms'):>10} {ratio(ie, ort_, 'cpu_ms'):>8} {train:>17} {rss:>25} {arena:>11}")
    for key, r in results["models"].items():
        if "profile" in r["intedge"]:
            print_profile(key, r["intedge"]["profile"])
    g = results.get("gemm")
    if g:
        print(f"\nint8 GEMM ({g['tier']}, 1 thread): " + ", ".join(f"{k} {v:.1f} GOP/s" for k, v in g["gops"].items())
              + (f"; measured int8 peak {g['int8_peak_gops']:.0f} GOP/s" if g["int8_peak_gops"]
                 else f"; int8 peak not measured: {g['int8_peak_skipped']}"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
