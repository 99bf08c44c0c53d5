"""Segmentation fidelity (issue 14's acceptance): a U-Net-style and a DeepLab-style net, exported
by torch, trained on builtin:mnist-seg twice from the same initial weights, in the same batch
order, with the same recipe: by intedge (integers only) and by float32 PyTorch. Per epoch it
records train loss and pixel accuracy and val mIoU and pixel accuracy (eval mode), writes
OUT/segment-results.json and OUT/fidelity-segment.png (the curves) and prints a markdown table.

    python tools/segment_fidelity.py                                   # the study in docs/fidelity.md
    python tools/segment_fidelity.py --models unet --epochs 2 --train 400 --out /tmp/seg   # a quick look
    python tools/segment_fidelity.py --report                          # redraw from the stored results
    python tools/segment_fidelity.py --walk --models unet              # one step walked back from the loss
    python tools/segment_fidelity.py --export-agreement                # exported ONNX against intedge eval

The models are models/torch_models.py's SegUNet and SegDeepLab; inputs are the scenes' pixels / 255."""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))

RECIPE = {"side": 32, "batch_size": 16, "optimizer": "adamw", "lr": 0.003, "epochs": 8}
MODELS = ("unet", "deeplab")


def scenes(side, n_train=None):
    """builtin:mnist-seg at side x side, one gray channel, pixels / 255 as float32."""
    import intedge
    ds = intedge.load_data("builtin:mnist-seg", input_shape=(1, side, side), seed=0)
    f = lambda a: (a / 255.0).astype(np.float32)  # noqa: E731
    return f(ds.x_train[:n_train]), ds.y_train[:n_train], f(ds.x_val), ds.y_val


def richest(data, n):
    """The n train scenes of `data` (scenes()'s tuple) with the most digit pixels, in their order,
    and the val scenes unchanged: 15% of the pixels are digits instead of 9%, so both nets leave
    the all-background stage within a few hundred steps (the suite's short study)."""
    x, y, xv, yv = data
    share = ((y > 0) & (y != 255)).mean(axis=(1, 2))
    keep = np.sort(np.argsort(-share, kind="stable")[:n])
    return x[keep], y[keep], xv, yv


def build(name, side, seed=0, **kw):
    """(torch net seeded by `seed`, its ONNX export with BatchNormalization kept as nodes: an
    eval-mode export would fold it into the convolutions, and intedge would train another net)."""
    import torch

    from torch_models import SegDeepLab, SegUNet, export_training
    torch.manual_seed(seed)
    net = {"unet": SegUNet, "deeplab": SegDeepLab, "unet-transpose": lambda: SegUNet(up="transpose")}[name](**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return net, export_training(net, torch.randn(2, 1, side, side), dynamo=False, opset=13)


def run_pair(name, data, *, side, batch_size, optimizer, lr, epochs, seed=0, log=print, **number_format):
    """Trains `name` by intedge and by float32 PyTorch; {"intedge": [...], "float": [...]} per
    epoch (train_loss, train_acc, val_miou, val_pixel_acc, val_iou, seconds). number_format:
    the Trainer's ablation options (grad_bits, rounding, sgd_bits, bn_input_bits) for intedge's side."""
    import torch

    import intedge
    from torch_models import torch_segment_fit
    x, y, xv, yv = data
    net, onnx_model = build(name, side, seed)
    momentum = 0.9 if optimizer == "sgd" else 0.0
    trainer = intedge.Trainer(onnx_model, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
                              seed=seed, loss="pixel_cross_entropy", **number_format)
    keep = ("epoch", "train_loss", "train_acc", "val_miou", "val_pixel_acc", "val_iou", "seconds")
    ours = [{k: m[k] for k in keep} for m in trainer.fit(
        x, y, xv, yv, epochs=epochs, progress=False,
        on_epoch=lambda m: log(f"  {name} intedge epoch {m['epoch']}: val mIoU {m['val_miou']:.4f}"))]
    torch.set_num_threads(1)
    start = time.perf_counter()
    ref = torch_segment_fit(net, trainer, x, y, xv, yv, epochs, lr, momentum, optimizer=optimizer)
    for m in ref:
        log(f"  {name} PyTorch epoch {m['epoch']}: val mIoU {m['val_miou']:.4f}")
    ref[-1]["seconds_total"] = time.perf_counter() - start
    return {"intedge": ours, "float": ref, "trainer": trainer, "net": net}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 3.4 * len(results)), squeeze=False)
    colors = {"float": "tab:blue", "intedge": "tab:orange"}
    labels = {"float": "float32 PyTorch", "intedge": "intedge (integers)"}
    for row, (name, runs) in zip(axes, results.items()):
        for kind, hist in runs.items():
            ep = [m["epoch"] for m in hist]
            row[0].plot(ep, [m["train_loss"] for m in hist], color=colors[kind], label=f"{labels[kind]} train")
            row[1].plot(ep, [m["val_miou"] for m in hist], color=colors[kind], label=f"{labels[kind]} val mIoU")
            row[1].plot(ep, [m["val_pixel_acc"] for m in hist], "--", color=colors[kind],
                        label=f"{labels[kind]} val pixel acc")
        row[0].set_title(f"{name}: train loss (nats a pixel)", fontsize=9)
        row[1].set_title(f"{name}: val mIoU and pixel accuracy", fontsize=9)
        for ax in row:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(results):
    lines = ["| model | epoch | val mIoU intedge | val mIoU PyTorch | gap (points) | pixel acc intedge | pixel acc PyTorch |",
             "|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        for a, b in zip(runs["intedge"], runs["float"]):
            lines.append(f"| {name} | {a['epoch']} | {a['val_miou']:.4f} | {b['val_miou']:.4f} | "
                         f"{100 * (a['val_miou'] - b['val_miou']):+.2f} | {a['val_pixel_acc']:.4f} | "
                         f"{b['val_pixel_acc']:.4f} |")
    return "\n".join(lines)


def walk(models, data, side):
    """Prints tensor_agreement (tools/fidelity/diagnostics.py) for each model on the scenes `data`."""
    sys.path.insert(0, str(ROOT / "tools" / "fidelity"))
    from diagnostics import tensor_agreement
    x, y = data[:2]
    for name in models:
        net, onnx_model = build(name, side)
        print(f"{name}: <ours, ref> / <ref, ref> per activation (8 SR seeds), and the mean gradient's cosine")
        for t, r in tensor_agreement(onnx_model, net, x, y).items():
            print(f"  {t:<46} data {r['data']:.3f}  grad {r.get('grad', float('nan')):.3f}  "
                  f"cos {r.get('grad_cos', float('nan')):.3f}")


def along(models, data, side, steps, optimizer, lr, batch_size):
    """Trains each model by intedge with the study's recipe and, before each step in `steps`,
    prints per parameter the cosine of its mean SGD step (6 SR seeds) with autograd's gradient and
    their norm ratio (diagnostics.along_training)."""
    sys.path.insert(0, str(ROOT / "tools" / "fidelity"))
    import intedge
    from diagnostics import along_training
    x, y = data[:2]
    for name in models:
        net, onnx_model = build(name, side)
        trainer = intedge.Trainer(onnx_model, batch_size=batch_size, optimizer=optimizer, lr=lr,
                                  loss="pixel_cross_entropy")
        for step, r in along_training(trainer, net, x, y, steps, seeds=6).items():
            print(f"{name} step {step}: " + ", ".join(f"{k} {v['cos']:.3f}/{v['norm_ratio']:.3f}"
                                                      for k, v in r["params"].items()))


def export_pair(name, data, side, *, fold_bn=False, epochs=3):
    """name's width-8 net (BatchNorm kept as nodes, or folded into the convolutions by an eval-mode
    export), trained `epochs` epochs by intedge (AdamW lr 0.01), then exported: (the trainer,
    onnxruntime's val logits [n, C, side, side] from the export)."""
    import onnxruntime as ort
    import torch

    import intedge
    from torch_models import SegDeepLab, SegUNet, export, export_training
    x, y, xv, yv = data
    torch.manual_seed(0)
    net = {"unet": SegUNet, "deeplab": SegDeepLab}[name](width=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = (export if fold_bn else export_training)(net, torch.randn(2, 1, side, side), dynamo=False, opset=13)
    trainer = intedge.Trainer(model, batch_size=16, optimizer="adamw", lr=0.01, loss="pixel_cross_entropy")
    trainer.fit(x, y, xv, yv, epochs=epochs, progress=False)
    s = ort.InferenceSession(_exported(trainer), providers=["CPUExecutionProvider"])
    return trainer, s.run(None, {s.get_inputs()[0].name: xv})[0]


def export_agreement(trainer, xv, theirs):
    """How often onnxruntime's val mask (`theirs`, from export_pair) agrees with intedge's: with
    the logits intedge eval and predict read (finer than int8 where the output's node has an
    accumulator: ie_session_forward_f32_bits), and with the int8 outputs of ie_session_forward;
    the share of pixels whose two largest int8 logits tie, and of the int8 path's disagreements
    that are such ties."""
    shape = theirs.shape
    ours = trainer.predict(xv).reshape(shape)
    int8 = np.concatenate([trainer.session.forward_fixed(xv[i:i + trainer.batch_size])[0]
                           for i in range(0, len(xv), trainer.batch_size)]).reshape(shape)
    top8 = np.sort(int8, axis=1)
    ties = top8[:, -1] == top8[:, -2]
    differ8 = int8.argmax(1) != theirs.argmax(1)
    return {"agree": float((ours.argmax(1) == theirs.argmax(1)).mean()), "agree_int8": float(1 - differ8.mean()),
            "int8_ties": float(ties.mean()), "ties_of_int8_differences": float(ties[differ8].mean()) if differ8.any() else 0.0,
            "digits": float((theirs.argmax(1) > 0).mean())}


def export_agreements(data, side):
    """export_agreement for both nets, BatchNorm kept and folded (docs/fidelity.md's table); DeepLab
    trains 6 epochs, as in 3 its masks are still background alone."""
    print("| model | BatchNorm | epochs | digit pixels (onnxruntime) | mask pixels agreeing | with int8 outputs | "
          "int8 ties (all pixels) | ties among the int8 differences |\n|---|---|---|---|---|---|---|---|")
    for name, epochs in (("unet", 3), ("deeplab", 6)):
        for fold_bn in (False, True):
            trainer, theirs = export_pair(name, data, side, fold_bn=fold_bn, epochs=epochs)
            r = export_agreement(trainer, data[2], theirs)
            print(f"| {name} | {'folded' if fold_bn else 'kept'} | {epochs} | {100 * r['digits']:.2f}% | "
                  f"{100 * r['agree']:.2f}% | {100 * r['agree_int8']:.2f}% | {100 * r['int8_ties']:.2f}% | "
                  f"{100 * r['ties_of_int8_differences']:.1f}% |", flush=True)


def _exported(trainer):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.onnx"
        trainer.export_onnx(path)
        return path.read_bytes()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--optimizer", default=RECIPE["optimizer"], choices=("sgd", "adamw"))
    ap.add_argument("--lr", type=float, default=RECIPE["lr"])
    ap.add_argument("--train", type=int, default=None, help="use the first N train scenes (default all 2,000)")
    ap.add_argument("--side", type=int, default=RECIPE["side"])
    ap.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "fidelity")
    ap.add_argument("--report", action="store_true", help="redraw the figure and table from OUT's results")
    ap.add_argument("--walk", action="store_true", help="per activation of each model, one step at its initial weights "
                    "on 16 train scenes: intedge's data and gradient against autograd's (tensor_agreement)")
    ap.add_argument("--along", metavar="STEPS", help="e.g. 0,375,560: per parameter, cosine / norm ratio of intedge's "
                    "mean step with autograd's gradient before those steps of the study's run")
    ap.add_argument("--export-agreement", action="store_true", help="each net's exported ONNX (BatchNorm kept and "
                    "folded) against intedge's evaluation, and how many pixels int8 outputs would tie")
    args = ap.parse_args(argv)
    if args.along:
        return along(args.models.split(","), scenes(args.side, args.train), args.side,
                     [int(v) for v in args.along.split(",")], args.optimizer, args.lr, args.batch_size)
    if args.export_agreement:
        return export_agreements(scenes(args.side, args.train), args.side)
    if args.walk:
        return walk(args.models.split(","), scenes(args.side, 16), args.side)
    store = args.out / "segment-results.json"
    if args.report:
        results = json.loads(store.read_text())["results"]
    else:
        data = scenes(args.side, args.train)
        results = {}
        for name in args.models.split(","):
            r = run_pair(name, data, side=args.side, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         epochs=args.epochs)
            results[name] = {"intedge": r["intedge"], "float": r["float"]}
        args.out.mkdir(parents=True, exist_ok=True)
        recipe = dict(RECIPE, side=args.side, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      epochs=args.epochs,
                      train=args.train or len(data[0]), val=len(data[2]))
        store.write_text(json.dumps({"recipe": recipe, "results": results}, indent=1))
    plot(results, args.out / "fidelity-segment.png")
    print(table(results))


if __name__ == "__main__":
    main()
