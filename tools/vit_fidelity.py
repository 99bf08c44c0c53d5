"""Issue 12's ViT fidelity study: the ViT of models/torch_models.py trained on builtin:mnist-5k
with AdamW, in integers through the importer and in float32 PyTorch, from the same initial weights,
on the same batches in the same order, printing each epoch's training loss and validation
accuracy side by side (the target: within 1.5 points of val accuracy at 5 epochs).

    python tools/vit_fidelity.py [--epochs 5] [--lr 0.003] [--exporter torchscript|dynamo]
    python tools/vit_fidelity.py --seeds 0,1 --plot docs/fidelity/vit-curves.png --json docs/fidelity/vit.json
    python tools/vit_fidelity.py --agreement   # untrained forward vs onnxruntime, by token scale

docs/fidelity.md records the runs. About 40 s per epoch here, nearly all of it PyTorch's."""
import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
import intedge  # noqa: E402
from torch_models import ViT, distinct_weights, export, mnist  # noqa: E402


def torch_epoch(net, opt, trainer, x, y, epoch):
    """One epoch of float32 AdamW over the trainer's batches; the mean training loss."""
    bs, total = trainer.batch_size, 0.0
    order = trainer.batch_order(len(x), epoch)
    for i in range(0, len(x), bs):
        idx = order[i:i + bs]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(torch.tensor(x[idx])), torch.tensor(y[idx], dtype=torch.long))
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(x)


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        acc = float((net(torch.tensor(x)).argmax(1).numpy() == y).mean())
    net.train()
    return acc


def agreement(exporter, seed):
    """The untrained model's logits against onnxruntime on 64 validation digits, with the class
    token and positional embedding drawn at std 1 (vit-pytorch) and 0.02 (timm), 1 and 2 layers."""
    import onnxruntime as ort
    from intedge.runtime import Model, Session
    x = mnist()[2][:64]
    dynamo = exporter == "dynamo"
    for std in (1.0, 0.02):
        for depth in (1, 2):
            torch.manual_seed(seed)
            net = distinct_weights(ViT(depth=depth, token_std=std), seed=seed)
            model = export(net, torch.zeros(2, 1, 28, 28), dynamo=dynamo, opset=18 if dynamo else 17)
            got = Session(Model(intedge.import_onnx(model).iem), batch_size=len(x), lr=0.0).forward(x)
            ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
            cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
            print(f"token std {std}, {depth} layer(s): max error {np.abs(got - ref).max() / np.abs(ref).max():.3f} "
                  f"of max |logit|, lowest cosine {cos.min():.4f}, top-1 agreement "
                  f"{(got.argmax(1) == ref.argmax(1)).mean():.3f}")


def run(args, seed):
    """One seed: both trainings side by side, printed as they go; the per-epoch rows."""
    torch.manual_seed(seed)
    net = distinct_weights(ViT(), seed=seed)
    start = copy.deepcopy(net)
    dynamo = args.exporter == "dynamo"
    model = export(start, torch.zeros(2, 1, 28, 28), dynamo=dynamo, opset=18 if dynamo else 17)
    x, y, x_val, y_val = mnist()
    t = intedge.Trainer(model, batch_size=args.batch_size, lr=args.lr, optimizer="adamw",
                        weight_decay=args.weight_decay, seed=seed, threads=args.threads)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    print(f"ViT ({sum(p.numel() for p in net.parameters())} parameters, {args.exporter} export) on builtin:mnist-5k "
          f"({len(x)} train / {len(x_val)} val), AdamW lr {args.lr} wd {args.weight_decay}, batch "
          f"{args.batch_size}, seed {seed}")
    print("epoch | intedge train loss | intedge val acc | torch fp32 train loss | torch val acc | gap (pp)")
    rows = []
    for e in range(args.epochs):
        m = t.fit(x, y, x_val, y_val, epochs=e + 1, progress=False)[-1]
        loss = torch_epoch(net, opt, t, x, y, e)
        acc = accuracy(net, x_val, y_val)
        rows.append({"epoch": e + 1, "intedge_train_loss": m["train_loss"], "intedge_val_acc": m["val_acc"],
                     "torch_train_loss": loss, "torch_val_acc": acc})
        print(f"{e + 1} | {m['train_loss']:.4f} | {m['val_acc']:.4f} | {loss:.4f} | {acc:.4f} | "
              f"{100 * (m['val_acc'] - acc):+.1f}", flush=True)
    return rows


def plot(runs, path):
    """Training loss and validation accuracy per epoch: intedge solid, PyTorch dashed, a colour
    per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for k, (seed, rows) in enumerate(runs.items()):
        ep, c = [r["epoch"] for r in rows], f"C{k}"
        for side, style in (("intedge", "-"), ("torch", "--")):
            label = f"{'intedge' if side == 'intedge' else 'PyTorch fp32'}, seed {seed}"
            a.plot(ep, [r[f"{side}_train_loss"] for r in rows], style, color=c, marker="o", ms=3, label=label)
            b.plot(ep, [r[f"{side}_val_acc"] for r in rows], style, color=c, marker="o", ms=3, label=label)
    a.set(xlabel="epoch", ylabel="training loss (mean over the epoch)", title="ViT on mnist-5k: training loss")
    b.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1")
    ap.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, default=None, metavar="PNG", help="draw the curves of every seed here")
    ap.add_argument("--json", type=Path, default=None, help="write the per-epoch rows of every seed here")
    ap.add_argument("--agreement", action="store_true", help="only compare the untrained forward with onnxruntime")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.agreement:
        agreement(args.exporter, seeds[0])
        return 0
    runs = {seed: run(args, seed) for seed in seeds}
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in runs.items()}, indent=1))
    if args.plot:
        plot(runs, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
