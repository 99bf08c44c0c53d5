"""What the CLI prints and draws: evaluation reports, the end-of-training summary, curves."""
import numpy as np

from .errors import IntedgeError


def confusion(y_true, y_pred, n_classes):
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def evaluation_report(y_true, logits, class_names, loss=None):
    n = logits.shape[1]
    names = list(class_names or [])[:n]
    names += [str(i) for i in range(len(names), n)]  # outputs beyond the named classes keep their number
    pred = logits.argmax(axis=1)
    cm = confusion(np.asarray(y_true), pred, n)
    support = cm.sum(axis=1)
    per_class = {names[i]: (float(cm[i, i] / support[i]) if support[i] else None) for i in range(n)}
    return {"samples": int(len(pred)), "accuracy": float((pred == y_true).mean()), "loss": loss,
            "per_class_accuracy": per_class, "support": {names[i]: int(support[i]) for i in range(n)},
            "classes": names, "confusion_matrix": cm.tolist()}


def format_report(r):
    names = r["classes"]
    width = max(5, max(len(s) for s in names))
    lines = [f"samples {r['samples']}   accuracy {r['accuracy']:.4f}"
             + (f"   loss {r['loss']:.4f}" if r["loss"] is not None else ""), "",
             f"{'class':<{width}}  accuracy  support"]
    for name in names:
        acc = r["per_class_accuracy"][name]
        lines.append(f"{name:<{width}}  {'   -   ' if acc is None else f'{acc:8.4f}'}  {r['support'][name]:7d}")
    cm = np.array(r["confusion_matrix"])
    cell = max(len(str(cm.max())), len(str(len(names) - 1))) + 2
    label = [f"{i:>{len(str(len(names) - 1))}} {n}" for i, n in enumerate(names)]
    lw = max(len(s) for s in label)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class number)",
              " " * lw + "".join(f"{i:>{cell}}" for i in range(len(names)))]
    for lab, row in zip(label, cm):
        lines.append(f"{lab:<{lw}}" + "".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)


def summary_table(history):
    head = f"{'epoch':>5}  {'train_loss':>10}  {'train_acc':>9}  {'val_loss':>9}  {'val_acc':>8}  {'samples/s':>9}"
    rows = [head, "-" * len(head)]
    for m in history:
        vl = f"{m['val_loss']:9.4f}" if m.get("val_loss") is not None else f"{'-':>9}"
        va = f"{m['val_acc']:8.4f}" if m.get("val_acc") is not None else f"{'-':>8}"
        sps = f"{m['samples_per_s']:9.0f}" if m.get("samples_per_s") else f"{'-':>9}"
        rows.append(f"{m['epoch']:>5}  {m['train_loss']:10.4f}  {m['train_acc']:9.4f}  {vl}  {va}  {sps}")
    return "\n".join(rows)


def plot_curves(history, path):
    """curves.png: loss and accuracy against epoch. Returns False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ep = [m["epoch"] for m in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [m["train_loss"] for m in history], label="train")
    b.plot(ep, [m["train_acc"] for m in history], label="train")
    if history and history[0].get("val_loss") is not None:
        a.plot(ep, [m["val_loss"] for m in history], label="val")
        b.plot(ep, [m["val_acc"] for m in history], label="val")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    a.legend()
    b.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        from .checkpoint import why_not_written

        raise IntedgeError(f"cannot write {path}: {why_not_written(exc)}; free space or pass --output-dir "
                           "elsewhere (the model and checkpoints are written)") from None
    finally:
        plt.close(fig)
    return True
