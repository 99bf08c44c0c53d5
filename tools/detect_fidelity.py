"""Issue 14's detection acceptance run: the CenterNet-style net of models/torch_models.py
(CenterNetTiny, stride 4) trained on builtin:mnist-detect in integers through the importer and in
float32 PyTorch, from the same initial weights, with the same recipe, the same dense targets
(detect.Targets) and the same batches in the same order; val mAP@[.5:.95] and mAP@.5 by COCOeval
after each epoch, side by side (the target: mAP@.5 within 3 points of PyTorch).

    python tools/detect_fidelity.py [--epochs 8] [--lr 0.05] [--momentum 0.9] [--write-docs]

--write-docs puts the table into docs/fidelity.md (between its detection markers) and the curves
into docs/fidelity/detect_curves.png. The test suite runs a short version
(tests/python/test_detect.py::test_detection_trains_like_pytorch)."""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
import intedge  # noqa: E402
from intedge import detect  # noqa: E402
from intedge.trainer import Trainer  # noqa: E402
from torch_models import CenterNetTiny, centernet_loss, export  # noqa: E402

BEGIN, END = "<!-- detect-fidelity:begin -->", "<!-- detect-fidelity:end -->"


def torch_outputs(net, x, batch=256):
    net.eval()
    with torch.no_grad():
        out = np.concatenate([net(torch.tensor(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])
    net.train()
    return out


def run(epochs, lr, momentum, batch_size, width, seed, input_size=64, n_train=None, log=print):
    """Both runs: (per-epoch rows {epoch, intedge/torch train loss, map, map50, seconds}, the
    intedge Trainer, the validation images, their prepared samples and targets)."""
    torch.set_num_threads(1)  # both runs on one core, as intedge's trainer runs by default
    torch.manual_seed(seed)
    net = CenterNetTiny(classes=10, in_channels=1, width=width)
    onnx_model = export(copy.deepcopy(net), torch.zeros(2, 1, input_size, input_size), dynamo=False, opset=13)
    ds = intedge.load_data("builtin:mnist-detect", seed=seed, input_shape=(1, input_size, input_size))
    x, y = (ds.x_train, ds.y_train) if n_train is None else (ds.x_train[:n_train], ds.y_train[:n_train])
    trainer = Trainer(intedge.import_onnx(onnx_model), batch_size=batch_size, lr=lr, momentum=momentum, seed=seed,
                      loss=detect.LOSS, input_format="u8", class_names=ds.class_names)
    xt, yt = trainer.prepare(x, y, "training")
    xv, yv = trainer.prepare(ds.x_val, ds.y_val, "validation")
    xf, xvf = (a.reshape((len(a), 1, input_size, input_size)).astype(np.float32) / 255 for a in (xt, xv))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    rows, clock = [], [time.perf_counter()]

    def torch_epoch(im):  # after each intedge epoch, PyTorch's over the same batches
        e, t_int = im["epoch"] - 1, time.perf_counter() - clock[0]
        start, loss_sum, objects = time.perf_counter(), 0.0, 0
        for idx in np.array_split(trainer.batch_order(len(xt), e), range(batch_size, len(xt), batch_size)):
            opt.zero_grad()
            out = net(torch.tensor(xf[idx]))
            loss, n = centernet_loss(out, torch.tensor(yt[idx].astype(np.int64)).view(out.shape), 10)
            loss.backward()
            opt.step()
            loss_sum, objects = loss_sum + loss.item() * max(n, 1), objects + n
        tm = detect.metrics(torch_outputs(net, xvf).reshape((len(xvf),) + trainer.runtime_model.output_shape),
                            yv.boxes, (1, input_size, input_size))
        t_torch = time.perf_counter() - start
        row = {"epoch": e + 1, "intedge_train_loss": im["train_loss"], "torch_train_loss": loss_sum / max(objects, 1),
               "intedge_map": im["val_map"], "intedge_map50": im["val_map50"], "torch_map": tm["map"],
               "torch_map50": tm["map50"], "intedge_seconds": round(t_int, 1), "torch_seconds": round(t_torch, 1)}
        rows.append(row)
        log(json.dumps(row))
        clock[0] = time.perf_counter()

    # one fit: the dense targets are built once, not once an epoch
    trainer.fit(x, y, ds.x_val, ds.y_val, epochs=epochs, progress=False, on_epoch=torch_epoch)
    return rows, trainer, ds.x_val, xv, yv


def table(rows):
    lines = ["| epoch | train loss intedge | train loss PyTorch | mAP@.5 intedge | mAP@.5 PyTorch | "
             "mAP@[.5:.95] intedge | mAP@[.5:.95] PyTorch |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['epoch']} | {r['intedge_train_loss']:.4f} | {r['torch_train_loss']:.4f} | "
                     f"{r['intedge_map50']:.4f} | {r['torch_map50']:.4f} | {r['intedge_map']:.4f} | {r['torch_map']:.4f} |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for who, style in (("intedge", "-o"), ("torch", "--s")):
        label = "intedge (integers)" if who == "intedge" else "PyTorch float32"
        ax[0].plot(ep, [r[f"{who}_train_loss"] for r in rows], style, label=label)
        ax[1].plot(ep, [r[f"{who}_map50"] for r in rows], style, label=f"{label} mAP@.5")
        ax[1].plot(ep, [r[f"{who}_map"] for r in rows], style, alpha=0.5, label=f"{label} mAP@[.5:.95]")
    ax[0].set(xlabel="epoch", ylabel="CenterNet loss (train)", title="training loss")
    ax[1].set(xlabel="epoch", ylabel="val mAP (COCOeval)", title="builtin:mnist-detect, CenterNetTiny")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    rows = run(a.epochs, a.lr, a.momentum, a.batch_size, a.width, a.seed)[0]
    print(table(rows))
    last = rows[-1]
    print(f"final mAP@.5: intedge {last['intedge_map50']:.4f}, PyTorch {last['torch_map50']:.4f} "
          f"(gap {100 * (last['intedge_map50'] - last['torch_map50']):+.1f} points)")
    if a.write_docs:
        plot(rows, ROOT / "docs" / "fidelity" / "detect_curves.png")
        cmd = (f"python tools/detect_fidelity.py --epochs {a.epochs} --lr {a.lr} --momentum {a.momentum} "
               f"--batch-size {a.batch_size} --width {a.width} --seed {a.seed} --write-docs")
        block = f"{BEGIN}\n{table(rows)}\n\n![curves](fidelity/detect_curves.png)\n\n`{cmd}`\n{END}"
        doc = ROOT / "docs" / "fidelity.md"
        text = doc.read_text()
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        doc.write_text(text)


if __name__ == "__main__":
    main()
