"""Fidelity study (issue 11): does integer training follow float training, over seeds and epochs?

Each run trains one model twice from the same initial weights, in the same data order, with the
same recipe (SGD, lr 0.05, momentum 0.9, batch 32, for every model): float32 PyTorch and intedge.
Per epoch it records train loss and accuracy (over the epoch's steps) and val loss and accuracy
(eval mode). Results go to OUT/results.json (float runs are cached there and reused by the
ablations), one figure per model (OUT/fidelity-<model>.png), and a markdown table on stdout.

    python tools/fidelity/study.py --control [--lr-drop]         # the study in docs/fidelity.md
    python tools/fidelity/study.py --models resnet8 --data mnist-5k --seeds 1 --epochs 2 --out /tmp/f
    python tools/fidelity/study.py --models lenet5,resnet8 --data mnist-5k --lr-drop --rounding nearest  # ablations
    python tools/fidelity/study.py --models lenet5,resnet8 --data mnist-5k --lr-drop --grad-bits 6
    python tools/fidelity/study.py --models lenet5,resnet8 --data mnist-5k --lr-drop --sgd-bits 16
    python tools/fidelity/study.py --models resnet8,mobilenetv2 --data mnist-5k --lr-drop --bn-input-bits 16
    python tools/fidelity/study.py --models lenet5,resnet8 --data mnist-5k --lr-drop --emulate per-channel
    python tools/fidelity/study.py --models lenet5,resnet8 --data mnist-5k --lr-drop --ablations  # their table
    python tools/fidelity/study.py --diagnostics --data mnist-5k [--rounding nearest]   # gradients, statistics

--control adds a second float32 run whose initial weights carry a relative perturbation of 2^-10
(far below one int8 step): how far two float runs drift apart by chaos alone. --emulate runs a
labelled PyTorch emulation of the number format (tools/fidelity/emulate.py) instead of intedge, for
what the int8 kernels cannot do (per-channel weight exponents, 16-bit backward tensors)."""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(HERE))

RECIPE = {"batch_size": 32, "lr": 0.05, "momentum": 0.9}
EPOCHS = {"mnist-5k": 5, "digits": 10}
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
DEFAULT_FORMAT = {"rounding": "stochastic", "grad_bits": 8, "sgd_bits": 32, "bn_input_bits": 8}


def number_format(args):
    """The number-format options of parsed arguments, as the Trainer takes them."""
    return {k: getattr(args, k) for k in DEFAULT_FORMAT}


def datasets():
    from torch_models import digits, mnist
    return {"mnist-5k": mnist, "digits": digits}


def build(name, data, seed):
    """(torch net seeded by `seed`, the ONNX export that intedge trains), or None where the
    model does not fit the data (LeNet-5's 5x5 convolutions need 28x28 images)."""
    import torch

    from torch_models import MLP, LeNet5, MobileNetV2Small, ResNet8, export_training
    side = 28 if data == "mnist-5k" else 8
    makers = {"mlp": lambda: MLP(side * side, 128), "lenet5": lambda: LeNet5(flatten_by_view=False),
              "resnet8": lambda: ResNet8(in_ch=1, width=16), "mobilenetv2": lambda: MobileNetV2Small(in_ch=1)}
    if name == "lenet5" and side != 28:
        return None
    torch.manual_seed(seed)
    net = makers[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the export runs one training-mode forward, which moves BatchNorm's running statistics:
        # the ONNX initializers and the net hold the same values afterwards
        model = export_training(net, torch.randn(2, 1, side, side), dynamo=False, opset=13)
    return net, model


def perturb(net, seed, scale=2.0 ** -10):
    import torch
    g = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1 + scale * torch.randn(p.shape, generator=g))
    return net


def run_pair(name, data, seed, epochs, fmt, emulate, control, cache, lr_drop=False, eval_agreement=False):
    """Histories of one seed: 'float', 'integer' (intedge, or the emulation) and optionally
    'control'. Float histories come from `cache` when present. lr_drop: the last epoch runs at a
    tenth of the learning rate (every model alike). eval_agreement: each intedge epoch also
    records the float32 evaluation of its weights (float_eval_val_acc) and the share of val
    samples whose argmax agrees with it (agreement)."""
    import torch

    import intedge
    from torch_models import torch_fit
    x, y, xv, yv = datasets()[data]()
    built = build(name, data, seed)
    if built is None:
        return None
    net, model = built
    # the emulation takes only the batch order and the recipe from the trainer
    trainer = intedge.Trainer(model, seed=seed, **RECIPE, **({} if emulate else fmt))
    key = f"{name}/{data}/{seed}/{epochs}" + ("/lr-drop" if lr_drop else "")
    lr_at = lambda e: RECIPE["lr"] / (10 if lr_drop and e == epochs - 1 else 1)  # noqa: E731
    out = {}
    if emulate:
        from emulate import emulated_fit
        out["integer"] = emulated_fit(build(name, data, seed)[0], trainer, x, y, xv, yv, epochs, lr_at, emulate, **fmt)
    else:
        out["integer"], twin = [], build(name, data, seed)[0]
        for e in range(epochs):
            trainer.session.set_lr(lr_at(e))
            m = trainer.fit(x, y, xv, yv, epochs=e + 1, progress=False)[-1]
            out["integer"].append({k: m[k] for k in ("epoch",) + METRICS})
            if eval_agreement:
                from diagnostics import eval_agreement as agree
                a = agree(trainer, twin, xv, yv)
                out["integer"][-1].update(float_eval_val_acc=m["val_acc"] - a["acc_gap"], agreement=a["agreement"])
    fit = lambda n: torch_fit(n, trainer, x, y, xv, yv, epochs, RECIPE["lr"], RECIPE["momentum"], lr_at=lr_at)  # noqa: E731
    out["float"] = cache.get("float", {}).get(key) or fit(net)
    cache.setdefault("float", {})[key] = out["float"]
    if control:
        out["control"] = cache.get("control", {}).get(key) or fit(perturb(build(name, data, seed)[0], seed))
        cache.setdefault("control", {})[key] = out["control"]
    return out


def summarize(runs, metric="val_acc"):
    """Mean and spread (min, max) per epoch over seeds, per kind; gaps of the integer mean."""
    kinds = runs[0].keys()
    s = {k: np.array([[e[metric] for e in r[k]] for r in runs]) for k in kinds}
    out = {k: {"mean": v.mean(0).tolist(), "min": v.min(0).tolist(), "max": v.max(0).tolist()} for k, v in s.items()}
    for kind in ("integer", "control"):
        if kind in s:
            gap = s[kind].mean(0) - s["float"].mean(0)
            later = gap[1:] if len(gap) > 1 else gap
            prefix = "" if kind == "integer" else "control_"
            out[prefix + "gap"] = gap.tolist()
            out[prefix + "largest_gap_from_epoch_2"] = float(later[np.argmax(np.abs(later))])
            out[prefix + "last_gap"] = float(gap[-1])
    return out


def plot(name, results, path, label):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datas = [d for d in results if results[d]]
    fig, axes = plt.subplots(len(datas), 2, figsize=(11, 3.6 * len(datas)), squeeze=False)
    colors = {"float": "tab:blue", "integer": "tab:orange", "control": "tab:gray"}
    names = {"float": "float32 PyTorch", "integer": label, "control": "float32, perturbed start"}
    for row, data in zip(axes, datas):
        runs = results[data]
        for ax, what in zip(row, ("loss", "acc")):
            for kind in runs[0]:
                for part, style in (("train", "--"), ("val", "-")):
                    v = np.array([[e[f"{part}_{what}"] for e in r[kind]] for r in runs])
                    ep = np.arange(1, v.shape[1] + 1)
                    ax.plot(ep, v.mean(0), style, color=colors[kind], label=f"{names[kind]} {part}")
                    ax.fill_between(ep, v.min(0), v.max(0), color=colors[kind], alpha=0.15)
            ax.set_title(f"{name}, {data}: {'loss' if what == 'loss' else 'accuracy'} (mean, min-max of "
                         f"{len(runs)} seeds)", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_xticks(np.arange(1, len(runs[0]["float"]) + 1))
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def diagnose(names, data, seed, at_steps, seeds, out, fmt, tag):
    """The diagnostics (tools/fidelity/diagnostics.py) along one run per model in number format
    `fmt`: per parameter, the cosine and norm ratio of intedge's mean step (over `seeds` SR seeds)
    against autograd; each BatchNorm's running statistics against a float shadow; per layer, the
    expected share of nonzero values that SR rounds to 0 (outputs and gradients). Prints per-layer
    tables and a summary; writes OUT/diagnostics-TAG.json."""
    import intedge
    from diagnostics import along_training, structurally_zero
    x, y, _, _ = datasets()[data]()
    report = {}
    for name in names:
        built = build(name, data, seed)
        if built is None:
            print(f"{name} on {data}: skipped (the model does not take {data}'s images)", file=sys.stderr)
            continue
        net, model = built
        t = intedge.Trainer(model, seed=seed, **RECIPE, **fmt)
        res = along_training(t, net, x, y, at_steps, seeds)
        report[name] = {str(k): v for k, v in res.items()}
        print(f"\n{name} on {data}, seed {seed}, {tag}: per parameter, cosine / norm ratio of the mean step ({seeds} SR "
              f"seeds) against autograd at steps {', '.join(map(str, at_steps))}\n")
        print("| parameter | " + " | ".join(f"step {k}" for k in at_steps) + " |")
        print("|---|" + "---|" * len(at_steps))
        for p in res[at_steps[0]]["params"]:
            print(f"| {p} | " + " | ".join(f"{res[k]['params'][p]['cos']:.3f} / {res[k]['params'][p]['norm_ratio']:.2f}"
                                           for k in at_steps) + " |")
        print("\nexpected share of nonzero values SR rounds to 0 (outputs / gradients), at each step on its batch:\n")
        print("| layer | " + " | ".join(f"step {k}" for k in at_steps) + " |\n|---|" + "---|" * len(at_steps))
        for layer in res[at_steps[0]]["sr_zero_share"]:
            print(f"| {layer} | " + " | ".join(f"{res[k]['sr_zero_share'][layer].get('output', 0):.2f} / "
                                               f"{res[k]['sr_zero_share'][layer].get('grad', 0):.2f}" for k in at_steps) + " |")
    print(f"\nsummary, {data}, seed {seed}, {tag} ({seeds} SR seeds per step)\n")
    print("| model | step | lowest cosine (parameter) | mean cosine | norm ratio, range | BatchNorm running "
          "statistics, error (mean: in SDs, variance: relative), largest / largest mean over channels "
          "| SR zero share, outputs (mean of layers) | SR zero share, "
          "gradients (mean of layers) | float gradient is round-off: parameters, their largest step / "
          "median step of the others |\n|---|---|---|---|---|---|---|---|---|")
    for name, res in report.items():
        for k, r in res.items():
            zero_grad = structurally_zero(r["params"])
            rest = {p: v for p, v in r["params"].items() if p not in zero_grad}
            cos = {p: v["cos"] for p, v in rest.items()}
            ratio = [v["norm_ratio"] for v in rest.values()]
            low = min(cos, key=cos.get)
            stats = r["running_stats"].values()
            bn = (f"{100 * max(e['largest'] for e in stats):.2f}% / {100 * max(abs(e['mean']) for e in stats):.2f}%"
                  if stats else "-")
            zero = {w: np.mean([v.get(w, 0.0) for v in r["sr_zero_share"].values()]) for w in ("output", "grad")}
            if zero_grad:
                largest = max(r['params'][p]['step_norm'] for p in zero_grad)
                stray = f"{len(zero_grad)}, {largest / np.median([v['step_norm'] for v in rest.values()]):.3f}"
            else:
                stray = "-"
            print(f"| {name} | {k} | {cos[low]:.3f} ({low}) | {np.mean(list(cos.values())):.3f} | {min(ratio):.2f}-"
                  f"{max(ratio):.2f} | {bn} | {zero['output']:.2f} | {zero['grad']:.2f} | {stray} |")
    (out / f"diagnostics-{tag}.json").write_text(json.dumps(report, indent=1))


# The ablation rows of docs/fidelity.md: (label, option flags); the first is the reference.
ABLATIONS = (("default: SR, 8-bit gradients, int32 SGD", []), ("rounding nearest", ["--rounding", "nearest"]),
             ("grad_bits 6", ["--grad-bits", "6"]), ("grad_bits 4", ["--grad-bits", "4"]),
             ("sgd_bits 16", ["--sgd-bits", "16"]), ("BatchNorm inputs 16 bits", ["--bn-input-bits", "16"]),
             ("emulation: per-tensor weights", ["--emulate", "per-tensor"]),
             ("emulation: per-channel weights", ["--emulate", "per-channel"]),
             ("emulation: per-tensor, grad_bits 16", ["--emulate", "per-tensor", "--grad-bits", "16"]))


def run_tag(emulate, changed, lr_drop):
    """The key prefix of a configuration's runs in results.json."""
    return (("emulated-" + emulate if emulate else "intedge") + "".join(f"-{k}={v}" for k, v in changed.items())
            + ("-lr-drop" if lr_drop else ""))


def print_ablations(parser, argv, cache, names, data, seeds, epochs):
    """One table of the stored ablation runs (each row: its flags added to argv): per model, the
    mean val accuracy at the last epoch (each seed's), the gap to float there and the largest gap
    from epoch 2; '-' where a row was not run."""
    print("\n| setting | " + " | ".join(f"{n}: val acc (seeds) | gap at last epoch | largest gap from epoch 2"
                                        for n in names) + " |\n|---|" + "---|---|---|" * len(names))
    for label, flags in ABLATIONS:
        a = parser.parse_args(argv + flags)
        fmt = number_format(a)
        tag = run_tag(a.emulate, {k: v for k, v in fmt.items() if v != DEFAULT_FORMAT[k]}, a.lr_drop)
        cells = []
        for name in names:
            stored = cache.get("runs", {}).get(f"{tag}/{name}/{data}/{seeds}x{epochs}")
            if stored is None:
                cells.append("- | - | -")
                continue
            last = [r["integer"][-1]["val_acc"] for r in stored["runs"]]
            s = stored["val_acc"]
            cells.append(f"{np.mean(last):.4f} ({', '.join(f'{v:.3f}' for v in last)}) | "
                         f"{100 * s['last_gap']:+.2f} | {100 * s['largest_gap_from_epoch_2']:+.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def print_eval_agreement(rows_runs):
    """intedge's evaluation against the float32 evaluation of its own weights, over every epoch of
    every seed: the gap in val accuracy and the argmax agreement."""
    print("\nintedge's evaluation against the float32 evaluation of the same weights (every epoch, every seed)\n")
    print("| model | data | per-epoch gaps, mean | mean \\|gap\\| | largest \\|gap\\| | agreement, mean | lowest |")
    print("|---|---|---|---|---|---|---|")
    for name, data, runs in rows_runs:
        gap = np.array([e["val_acc"] - e["float_eval_val_acc"] for r in runs for e in r["integer"]])
        agree = np.array([e["agreement"] for r in runs for e in r["integer"]])
        print(f"| {name} | {data} | {100 * gap.mean():+.2f} pp | {100 * np.abs(gap).mean():.2f} pp | "
              f"{100 * np.abs(gap).max():.1f} pp | {agree.mean():.3f} | {agree.min():.3f} |")


def print_per_epoch(rows_runs, side="intedge"):
    """Per epoch: the mean over seeds of train and val accuracy for both sides (and the float32
    evaluation of intedge's weights where recorded), and the spread (SD) of val accuracy."""
    for name, data, runs in rows_runs:
        n = len(runs[0]["integer"])
        print(f"\n{name} on {data}, {len(runs)} seeds: mean per epoch (SD over seeds)\n")
        print("| | " + " | ".join(f"epoch {e + 1}" for e in range(n)) + " |\n|---|" + "---|" * n)
        series = [(f"train acc, {side}", "integer", "train_acc"), ("train acc, float32", "float", "train_acc"),
                  (f"val acc, {side}", "integer", "val_acc"), ("val acc, float32", "float", "val_acc")]
        if "float_eval_val_acc" in runs[0]["integer"][0]:
            series.append(("intedge's weights evaluated in float32", "integer", "float_eval_val_acc"))
        for label, kind, metric in series:
            v = np.array([[e[metric] for e in r[kind]] for r in runs])
            print(f"| {label} | " + " | ".join(f"{m:.3f} ({sd:.3f})" for m, sd in zip(v.mean(0), v.std(0, ddof=1)))
                  + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,lenet5,resnet8,mobilenetv2")
    ap.add_argument("--data", default="mnist-5k,digits")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: 5 on mnist-5k, 10 on digits")
    ap.add_argument("--rounding", choices=("stochastic", "nearest"), default="stochastic")
    ap.add_argument("--grad-bits", type=int, default=8)
    ap.add_argument("--sgd-bits", type=int, default=32)
    ap.add_argument("--bn-input-bits", type=int, choices=(8, 16), default=8)
    ap.add_argument("--emulate", choices=("per-tensor", "per-channel"), default=None,
                    help="train the integer side in a PyTorch emulation of the number format, with per-tensor or "
                         "per-channel weight exponents (--grad-bits then reaches 16)")
    ap.add_argument("--control", action="store_true", help="also a float32 run from a perturbed start")
    ap.add_argument("--lr-drop", action="store_true", help="the last epoch at a tenth of the learning rate")
    ap.add_argument("--eval-agreement", action="store_true",
                    help="per epoch, also evaluate intedge's weights in float32 (a table of the evaluation's own gap)")
    ap.add_argument("--per-epoch", action="store_true", help="also a per-epoch table of means and spreads per model")
    ap.add_argument("--report", action="store_true",
                    help="no training: the table and figures of the runs stored in OUT/results.json")
    ap.add_argument("--ablations", action="store_true",
                    help="no training: one table of the stored ablation runs (ABLATIONS) of --models on the first data set")
    ap.add_argument("--diagnostics", action="store_true",
                    help="instead of the curves: gradient cosines and step-norm ratios per parameter, BatchNorm "
                         "statistics and SR zero shares along one run per model (first data set, seed 0)")
    ap.add_argument("--at-steps", default="0,50,200,500", help="steps the diagnostics measure at")
    ap.add_argument("--sr-seeds", type=int, default=32, help="SR seeds the diagnostics average a step over")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "fidelity")
    ap.add_argument("--plots", type=Path, default=None, help="folder of the figures (default: --out)")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)  # the study shares small machines; intedge runs one thread too
    fmt = number_format(args)
    changed = {k: v for k, v in fmt.items() if v != DEFAULT_FORMAT[k]}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.diagnostics:
        if args.emulate:
            ap.error("--diagnostics measures the runtime, not the emulation")
        return diagnose(args.models.split(","), args.data.split(",")[0], 0,
                        tuple(int(s) for s in args.at_steps.split(",")), args.sr_seeds, args.out, fmt,
                        run_tag(None, changed, False))
    if args.ablations:
        data = args.data.split(",")[0]
        return print_ablations(ap, [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--ablations"],
                               json.loads((args.out / "results.json").read_text()), args.models.split(","), data,
                               args.seeds, args.epochs or EPOCHS[data])
    tag = run_tag(args.emulate, changed, args.lr_drop)
    label = (f"emulation ({args.emulate} weights)" if args.emulate else "intedge") + "".join(
        f", {k} {v}" for k, v in changed.items()) + (", lr/10 in the last epoch" if args.lr_drop else "")
    store = args.out / "results.json"
    cache = json.loads(store.read_text()) if store.exists() else {}
    rows, rows_runs = [], []
    for name in args.models.split(","):
        results = {}
        for data in args.data.split(","):
            epochs = args.epochs or EPOCHS[data]
            t0 = time.time()
            key = f"{tag}/{name}/{data}/{args.seeds}x{epochs}"
            if args.report:
                if key not in cache.get("runs", {}):
                    print(f"{name} on {data}: no stored runs under {key}", file=sys.stderr)
                    continue
                runs = cache["runs"][key]["runs"]
            else:
                runs = [run_pair(name, data, s, epochs, fmt, args.emulate, args.control, cache, args.lr_drop,
                                 args.eval_agreement) for s in range(args.seeds)]
            if runs[0] is None:
                print(f"{name} on {data}: skipped (the model does not take {data}'s images)", file=sys.stderr)
                continue
            results[data] = runs
            summ = summarize(runs)
            if not args.report:
                cache.setdefault("runs", {})[key] = {"runs": runs, "val_acc": summ}
                store.write_text(json.dumps(cache, indent=1))
            rows.append((name, data, epochs, summ, summarize(runs, "train_acc")))
            rows_runs.append((name, data, runs))
            print(f"{name} on {data}: {time.time() - t0:.0f} s", file=sys.stderr)
        if results:
            folder = args.plots or args.out
            folder.mkdir(parents=True, exist_ok=True)
            plot(name, results, folder / f"fidelity-{name}{'' if tag == 'intedge' else '-' + tag}.png", label)
    print(f"\n{label} against float32 PyTorch, {args.seeds} seeds; val accuracy in points (integer - float)\n")
    head = "| model | data | epochs | float val acc (last) | integer val acc (last) | largest gap from epoch 2 | " \
           "gap at last epoch | train acc gap (largest) |"
    control = rows and all("control_last_gap" in r[3] for r in rows)
    if control:
        head += " control: largest gap from epoch 2 | control: gap at last epoch |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, data, epochs, s, tr in rows:
        line = (f"| {name} | {data} | {epochs} | {s['float']['mean'][-1]:.4f} | {s['integer']['mean'][-1]:.4f} | "
                f"{100 * s['largest_gap_from_epoch_2']:+.2f} | {100 * s['last_gap']:+.2f} | "
                f"{100 * max(tr['gap'], key=abs):+.2f} |")
        if control:
            line += f" {100 * s['control_largest_gap_from_epoch_2']:+.2f} | {100 * s['control_last_gap']:+.2f} |"
        print(line)
    if args.eval_agreement:
        print_eval_agreement(rows_runs)
    if args.per_epoch:
        print_per_epoch(rows_runs, "emulation" if args.emulate else "intedge")


if __name__ == "__main__":
    main()
