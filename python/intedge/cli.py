"""The `intedge` command. User errors print one line and exit with code 2, never a traceback."""
import argparse
import json
import os
import sys
from pathlib import Path

from .errors import IntedgeError

EXAMPLES = """examples:
  intedge train models/mlp_digits.onnx builtin:digits --epochs 10
  intedge train model.onnx data.npz --batch-size 64 --lr 0.05 --momentum 0.9 --output-dir runs/exp1
"""


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _non_negative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return v


def build_parser():
    p = argparse.ArgumentParser(prog="intedge", description="Train neural networks in integer arithmetic.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    t = sub.add_parser("train", help="train an ONNX model on a dataset", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train MODEL.onnx on DATA and write the trained ONNX model.")
    t.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to train")
    t.add_argument("data", metavar="DATA", help="a .npz (x_train, y_train[, x_val, y_val]) or builtin:digits")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=_non_negative_float, default=0.1, help="learning rate (default 0.1)")
    t.add_argument("--momentum", type=_non_negative_float, default=0.0)
    t.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    t.add_argument("--seed", type=int, default=0, help="drives data order, splits and stochastic rounding")
    t.add_argument("--output-dir", type=Path, default=None,
                   help="where metrics.jsonl and model.onnx go (default: runs/train-N)")
    t.add_argument("--quiet", action="store_true", help="no progress bar; one plain line per epoch")
    return p


def _next_run_dir(root=Path("runs")):
    n = 1
    while (root / f"train-{n}").exists():
        n += 1
    return root / f"train-{n}"


def _prepare_output(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise IntedgeError(f"cannot write to output dir {path}: {exc.strerror}; pass --output-dir with a "
                           "writable folder") from None
    return path


def cmd_train(args):
    from .data import load_data
    from .trainer import Trainer

    trainer = Trainer(args.model, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                      weight_decay=args.weight_decay, seed=args.seed)
    ds = load_data(args.data, seed=args.seed)
    out = _prepare_output(args.output_dir or _next_run_dir())
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")

    def on_epoch(m):
        try:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(m) + "\n")
        except OSError as exc:
            raise IntedgeError(f"cannot append to {metrics_path}: {exc.strerror}") from None
        val = f"  val_loss {m['val_loss']:.4f}  val_acc {m['val_acc']:.4f}" if m["val_acc"] is not None else ""
        print(f"epoch {m['epoch']:>3}/{args.epochs}  train_loss {m['train_loss']:.4f}  "
              f"train_acc {m['train_acc']:.4f}{val}  {m['samples_per_s']:.0f} samples/s", flush=True)

    print(f"training {args.model} on {ds.source}: {len(ds.x_train)} train / {len(ds.x_val)} val samples, "
          f"batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs", flush=True)
    history = trainer.fit(ds.x_train, ds.y_train, ds.x_val, ds.y_val, epochs=args.epochs,
                          progress=not args.quiet and sys.stderr.isatty(), on_epoch=on_epoch)
    model_path = trainer.export_onnx(out / "model.onnx")
    last = history[-1]
    print(f"done: val_acc {last['val_acc']:.4f}; wrote {model_path} and {metrics_path}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train}[args.command](args)
    except IntedgeError as exc:
        print(f"intedge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("intedge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
