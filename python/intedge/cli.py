"""The `intedge` command. User errors print one line and exit with code 2, never a traceback."""
import argparse
import json
import os
import sys
from pathlib import Path

from .compile import TARGETS
from .data import warn, warn_skipped
from .errors import IntedgeError

TRAIN_EXAMPLES = """examples:
  intedge train models/mlp_digits.onnx builtin:digits --epochs 10
  intedge train lenet.onnx photos/ --normalize auto --augment crop,flip --checkpoint-every 100
  intedge train lenet.onnx photos/ --resume runs/train-3          # continue after a power cut
  intedge train vit.onnx builtin:mnist-5k --optimizer adamw --lr 1e-3 --weight-decay 0.01
  intedge train encoder.onnx reviews.csv --text-column text --label-column label --tokenizer tokenizer.json
"""
EVAL_EXAMPLES = """examples:
  intedge eval runs/train-1/model.onnx builtin:digits
  intedge eval runs/train-1 photos/ --json > report.json            # newest checkpoint of a run
"""
PREDICT_EXAMPLES = """examples:
  intedge predict runs/train-1 photos/ -o predictions/       # masks and overlays of a segmentation run
  intedge predict model.onnx a.png b.png -o out/
  intedge predict detector.onnx photos/ -o out/    # boxes drawn, detections.json (COCO results format)
"""
INSPECT_EXAMPLES = """examples:
  intedge inspect models/mlp_digits.onnx
  intedge inspect resnet8.onnx --batch-size 16 --trainable 'fc.*'   # the arena for head-only training
"""
EXPORT_EXAMPLES = """examples:
  intedge export runs/train-1 -o model.onnx
  intedge export runs/train-1/checkpoints/ckpt-00000450.iec -o model_int8.onnx --int8
  intedge export fw/ --state trained_state.ies -o trained.onnx      # a state a microcontroller sent back
"""
COMPILE_EXAMPLES = """examples:
  intedge compile models/mlp_digits_mcu.onnx --target cortex-m4 --batch-size 16 -o fw/
  intedge compile cnn.onnx --target cortex-m7 --trainable 'fc.*' --data builtin:digits --steps 30 -o fw/
"""


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _int_in(lo, hi):
    def parse(text):
        v = _positive_int(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v
    return parse


def _non_negative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return v


def _fraction(text):
    v = _non_negative_float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 1")
    return v


def _optimizer_options(p, what):
    p.add_argument("--optimizer", default="sgd", metavar="sgd|adamw",
                   help=f"sgd (PyTorch's SGD: --momentum, --weight-decay) or adamw (PyTorch's AdamW: --betas, --eps, "
                        f"decoupled --weight-decay){what}")
    p.add_argument("--betas", default="0.9,0.999", metavar="B1,B2", help="AdamW's beta1,beta2 (default 0.9,0.999)")
    p.add_argument("--eps", default="1e-8", help="AdamW's eps (default 1e-8)")


def optimizer_settings(args, sgd_lr=None):
    """(optimizer, lr, betas, eps) from the options, or an IntedgeError naming the fix (one line).
    Without --lr: sgd_lr, or the Trainer's default for the optimizer."""
    from .runtime import check_adamw
    from .trainer import DEFAULT_LR

    if args.optimizer not in DEFAULT_LR:
        raise IntedgeError(f"unknown --optimizer {args.optimizer!r}; choose one of {', '.join(DEFAULT_LR)}")
    try:
        betas = tuple(float(b) for b in args.betas.split(","))
        eps = float(args.eps)
    except ValueError:
        raise IntedgeError(f"--betas takes two numbers B1,B2 and --eps a number; got --betas {args.betas} --eps "
                           f"{args.eps}") from None
    if len(betas) != 2:
        raise IntedgeError(f"--betas takes two numbers B1,B2, not {args.betas!r}")
    if args.optimizer == "adamw":
        try:
            check_adamw(betas, eps, args.momentum)
        except IntedgeError as exc:
            raise IntedgeError(f"--optimizer adamw: {exc}") from None
    lr = args.lr if args.lr is not None else sgd_lr if sgd_lr and args.optimizer == "sgd" else DEFAULT_LR[args.optimizer]
    return args.optimizer, lr, betas, eps


def _augmentations(text):
    from .images import AUGMENTATIONS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in AUGMENTATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {', '.join(bad)}; choose from {', '.join(AUGMENTATIONS)}")
    return kinds


def _sub(sub, name, help_, description, examples):
    return sub.add_parser(name, help=help_, description=description, epilog=examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _data_options(p):
    p.add_argument("--normalize", metavar="auto|MEAN,STD", default=None,
                   help="per-channel (x - mean) / std on [0,1] pixels: 'auto' (from the training set), MEAN,STD, "
                        "or C means then C stds")
    p.add_argument("--val-split", type=_fraction, default=0.2,
                   help="fraction of train used for validation when DATA has none (default 0.2)")
    p.add_argument("--label-column", default=None, help="the label column of a .csv")
    p.add_argument("--text-column", default=None,
                   help="a .csv column of text, tokenized with --tokenizer for a text model's integer inputs")
    p.add_argument("--tokenizer", default=None, metavar="tokenizer.json",
                   help="a Hugging Face tokenizers file; text is padded or truncated to the model's sequence length "
                        "(needs: pip install 'intedge[text]')")
    p.add_argument("--on-bad-image", choices=("skip", "fail"), default="skip",
                   help="a corrupt image is skipped with a warning (default) or stops the run")
    p.add_argument("--task", choices=("classify", "segment", "detect"), default=None,
                   help="default: from DATA's layout (images/ with masks/: segment; annotations.json, COCO's "
                        "annotations/instances_*.json or YOLO labels/: detect; class folders: classify)")


def build_parser():
    p = argparse.ArgumentParser(prog="intedge", description="Train neural networks in integer arithmetic.",
                                epilog=TRAIN_EXAMPLES + EVAL_EXAMPLES + INSPECT_EXAMPLES + EXPORT_EXAMPLES + COMPILE_EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = _sub(sub, "train", "train an ONNX model on a dataset",
             "Train MODEL.onnx on DATA; write metrics, checkpoints and the trained ONNX model.", TRAIN_EXAMPLES)
    t.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to train")
    t.add_argument("data", metavar="DATA",
                   help="an image folder (train/<class>/*.png, optional val/), a .npz (x_train, y_train[, x_val, "
                        "y_val]; or input_ids, labels for a text model), a .csv, or builtin:digits, builtin:mnist-5k, "
                        "builtin:mnist-seg, builtin:mnist-detect (MNIST digit scenes); detection: COCO JSON or YOLO txt "
                        "folders")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=_non_negative_float, default=None,
                   help="learning rate (default 0.1 for sgd, 0.001 for adamw)")
    t.add_argument("--momentum", type=_non_negative_float, default=0.0, help="SGD's momentum")
    t.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    _optimizer_options(t, "; a resumed run keeps its checkpoint's")
    t.add_argument("--seed", type=int, default=0, help="drives data order, splits, augmentation and rounding")
    t.add_argument("--trainable", metavar="PATTERN[,PATTERN]", default=None,
                   help="train only parameters whose initializer or node name matches a glob (default: all); "
                        "a frozen prefix keeps nothing for backward")
    t.add_argument("--loss", choices=("cross_entropy", "mse", "bce"), default=None,
                   help="default cross_entropy; bce: binary cross-entropy with logits, for multi-label targets "
                        "[N, outputs]. Segmentation data takes the per-pixel cross-entropy")
    t.add_argument("--augment", type=_augmentations, default=[], metavar="crop,flip",
                   help="seeded augmentation of image data: random crop with padding, horizontal flip")
    _data_options(t)
    t.add_argument("--output-dir", type=Path, default=None,
                   help="metrics.jsonl, model.onnx, checkpoints/ and curves.png go here (default: runs/train-N)")
    t.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps (there is always one per epoch)")
    t.add_argument("--keep-checkpoints", type=_positive_int, default=3, metavar="K", help="keep the newest K")
    t.add_argument("--resume", type=Path, default=None, metavar="DIR|FILE",
                   help="continue from a run folder's newest good checkpoint, or from a checkpoint file")
    t.add_argument("--threads", type=_positive_int, default=1,
                   help="worker threads (results are bit-identical for every count; default 1)")
    t.add_argument("--quiet", action="store_true", help="no progress bar; one plain line per epoch")
    f = t.add_argument_group("number format (ablations; the defaults are the method, see docs/fidelity.md)")
    f.add_argument("--rounding", choices=("stochastic", "nearest"), default="stochastic",
                   help="how training rounds when it narrows an integer (default stochastic)")
    f.add_argument("--grad-bits", type=_int_in(2, 8), default=8, metavar="2..8",
                   help="width of the activation gradients (default 8: int8)")
    f.add_argument("--sgd-bits", type=_int_in(16, 32), default=32, metavar="16..32",
                   help="width of the master weights and momentum (default 32; 16: the paper's int16 SGD)")
    f.add_argument("--bn-input-bits", type=int, choices=(8, 16), default=8,
                   help="width of a BatchNorm's input fed by a Conv alone (default 8; 16: slower, more memory)")

    e = _sub(sub, "eval", "evaluate a model or checkpoint on a dataset",
             "Accuracy, per-class accuracy and the confusion matrix of MODEL (an .onnx, a checkpoint, or a run "
             "folder's newest checkpoint) on DATA's validation split.", EVAL_EXAMPLES)
    e.add_argument("model", metavar="MODEL|CKPT")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--split", choices=("val", "train", "all"), default="val")
    e.add_argument("--batch-size", type=_positive_int, default=64)
    e.add_argument("--seed", type=int, default=None, help="the split seed (default: the checkpoint's, else 0)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    _data_options(e)

    r = _sub(sub, "predict", "run a trained model on images and write its predictions as pictures",
             "Runs RUN's newest checkpoint (or a checkpoint, or an exported .onnx) on IMAGES (a folder, or "
             "files) and writes what its task draws into OUT: for segmentation a colour-palette mask PNG and an "
             "overlay per image; for detection the image with its boxes and labels drawn, and detections.json in COCO "
             "results format.", PREDICT_EXAMPLES)
    r.add_argument("model", metavar="RUN|CKPT|MODEL.onnx")
    r.add_argument("images", metavar="IMAGES", nargs="+")
    r.add_argument("-o", "--output", type=Path, required=True, metavar="OUT")
    r.add_argument("--batch-size", type=_positive_int, default=16)
    r.add_argument("--task", choices=("segment", "detect"), default=None,
                   help="what a model exported by another tool predicts (intedge's runs, checkpoints and exports know "
                        "their task; default: segment)")

    i = _sub(sub, "inspect", "show a model's layers, what trains, and the training memory",
             "Each node with its op, output shape and parameters, whether it trains and whether intedge "
             "supports it, and the arena bytes training needs (computed by the C planner).", INSPECT_EXAMPLES)
    i.add_argument("model", metavar="MODEL.onnx")
    i.add_argument("--batch-size", type=_positive_int, default=32)
    i.add_argument("--trainable", metavar="PATTERN[,PATTERN]", default=None)
    i.add_argument("--json", action="store_true")

    x = _sub(sub, "export", "write a checkpoint's trained model as ONNX",
             "Write the original graph with the checkpoint's trained weights (float32, or int8 QDQ).", EXPORT_EXAMPLES)
    x.add_argument("checkpoint", metavar="CKPT", help="a checkpoint file or a run folder")
    x.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx")
    x.add_argument("--int8", action="store_true", help="QDQ int8 weights and activations, power-of-two scales")
    x.add_argument("--state", type=Path, default=None, metavar="FILE",
                   help="a training state a device streamed out (ie_session_read_state), paired with the "
                        "checkpoint `intedge compile` wrote into its output folder")
    x.add_argument("--calibration", metavar="DATA", default=None,
                   help="data whose validation split calibrates --int8 (default: the data the run trained on)")

    c = _sub(sub, "compile", "emit C sources that train a model on a microcontroller",
             "Write the model as a const array, its exact RAM needs as #defines and an embedded training "
             "loop (train_example.c) for a bare-metal target. With --data, samples go into flash and "
             "expected_output.txt records what the loop prints, from the same run on this machine.",
             COMPILE_EXAMPLES)
    c.add_argument("model", metavar="MODEL.onnx")
    c.add_argument("--target", choices=sorted(TARGETS), default="cortex-m4")
    c.add_argument("--batch-size", type=_positive_int, default=8)
    c.add_argument("--trainable", metavar="PATTERN[,PATTERN]", default=None,
                   help="train only matching parameters: a frozen prefix keeps nothing for backward")
    c.add_argument("--lr", type=_non_negative_float, default=None,
                   help="learning rate (default 0.05 for sgd, 0.001 for adamw)")
    c.add_argument("--momentum", type=_non_negative_float, default=0.0, help="SGD's momentum")
    c.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    _optimizer_options(c, "")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--loss", choices=("cross_entropy", "mse", "bce"), default="cross_entropy")
    c.add_argument("--data", metavar="DATA", default=None, help="embed training samples (as for train)")
    c.add_argument("--steps", type=_positive_int, default=20, help="steps the example trains (default 20)")
    c.add_argument("--samples", type=_positive_int, default=None,
                   help="samples to embed (default: steps x batch size)")
    c.add_argument("--normalize", metavar="auto|MEAN,STD", default=None)
    c.add_argument("--runtime", action="store_true",
                   help="also copy the runtime's C sources into DIR/runtime, so the folder builds on its own")
    c.add_argument("--build", action="store_true",
                   help="also build DIR/firmware.elf for qemu's MPS2 board of the target and report its flash and "
                        "RAM (needs --data and arm-none-eabi-gcc)")
    c.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    return p


def _version():
    from . import __version__
    return f"intedge {__version__}"


def _next_run_dir(root=Path("runs")):
    n = 1
    while (root / f"train-{n}").exists():
        n += 1
    return root / f"train-{n}"


def _prepare_output(path):
    """The output folder, made and probed before any work: a read-only or full disk is refused at
    the start, not at the first checkpoint."""
    from .checkpoint import why_not_written

    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise IntedgeError(f"cannot write to output dir {path}: {why_not_written(exc)}; pass --output-dir with a "
                           "writable folder") from None
    return path


def _write_metrics(path, rows, mode):
    try:
        with open(path, mode) as f:
            f.write("".join(json.dumps(m) + "\n" for m in rows))
    except OSError as exc:
        from .checkpoint import why_not_written

        raise IntedgeError(f"cannot write {path}: {why_not_written(exc)}; free space or pass --output-dir "
                           "elsewhere (earlier checkpoints are intact)") from None


def _load_data_for(model, spec, args, seed):
    from .data import load_data

    return load_data(spec, seed=seed, input_shape=model.input_shape, val_split=args.val_split,
                     label_column=args.label_column, on_bad_image=args.on_bad_image, task=args.task,
                     text_column=args.text_column, tokenizer=args.tokenizer, model=model)


def _loss_for(ds, loss):
    from . import detect, segment

    task_loss = {"segment": (segment.LOSS, "segmentation data trains with the per-pixel cross-entropy"),
                 "detect": (detect.LOSS, "detection data trains with CenterNet's loss")}.get(ds.task)
    if task_loss:
        if loss not in (None, task_loss[0]):
            raise IntedgeError(f"{task_loss[1]}, not --loss {loss}; drop --loss")
        return task_loss[0]
    return loss or "cross_entropy"


def _input_settings(model, ds, normalize):
    from .data import parse_normalize

    channels = model.input_shape[0] if len(model.input_shape) > 1 else 1
    return ("u8" if ds.is_uint8 else "f32"), parse_normalize(normalize, channels, ds.x_train)


def _resume(args):
    import hashlib

    from . import checkpoint as ckpt
    from .onnx_import import load_onnx
    from .trainer import Trainer

    ck = ckpt.load_latest(args.resume, warn=warn)
    onnx_sha = hashlib.sha256(load_onnx(args.model).SerializeToString()).hexdigest()
    if onnx_sha != ck.meta.get("onnx_sha256"):
        raise IntedgeError(f"{ck.path} was made for a different model than {args.model}; pass the same MODEL")
    trainer = Trainer.from_checkpoint(ck, threads=args.threads)
    if args.output_dir is None:
        folder = ck.path.parent
        args.output_dir = folder.parent if folder.name == "checkpoints" else folder
    print(f"resuming from {ck.path} (epoch {ck.meta['epoch']}, batch {ck.meta['batch']}, step {ck.meta['step']})",
          flush=True)
    return trainer, ck.meta["config"]


def _keep_source(model, out):
    """Copies the imported ONNX file into the run folder and points the model at the copy: the
    import keeps no graph in memory (onnx_model reads its file again for checkpoints and export),
    so a user who re-exports MODEL while a run trains must not stop the run's checkpoints."""
    import hashlib
    import shutil

    if model.onnx_proto is not None:
        return model
    copy, digest = out / "source.onnx", hashlib.sha256()
    try:
        shutil.copyfile(model.source, copy)
        with open(copy, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise IntedgeError(f"could not copy {model.source} into {out} ({exc.strerror}); free some space or pass "
                           "another --output-dir") from None
    if digest.hexdigest() != model.onnx_sha256:
        raise IntedgeError(f"{model.source} changed while it was imported; train again once it is written")
    model.source = str(copy)
    return model


def cmd_train(args):
    from .onnx_import import import_onnx
    from .report import plot_curves, summary_table
    from .trainer import Trainer

    if args.resume:
        trainer, cfg = _resume(args)
        out = _prepare_output(args.output_dir)
        data_cfg = cfg["data"]
        for k in ("val_split", "label_column", "on_bad_image", "text_column", "tokenizer"):
            setattr(args, k, data_cfg.get(k))
        args.task = data_cfg.get("task")
        ds = _load_data_for(trainer.model, args.data, args, cfg["seed"])
    else:
        out = _prepare_output(args.output_dir or _next_run_dir())
        optimizer, lr, betas, eps = optimizer_settings(args)
        model = _keep_source(import_onnx(args.model), out)
        ds = _load_data_for(model, args.data, args, args.seed)
        fmt, mapping = _input_settings(model, ds, args.normalize)
        if args.augment and (len(model.input_shape) != 3 or not ds.is_uint8):
            raise IntedgeError("--augment works on image data (uint8 samples) with a [C, H, W] model input")
        from .inspect_model import split_patterns, trainable_flags

        trainer = Trainer(model, batch_size=args.batch_size, lr=lr, momentum=args.momentum,
                          weight_decay=args.weight_decay, seed=args.seed, input_format=fmt, input_mapping=mapping,
                          augment=args.augment, class_names=ds.class_names, loss=_loss_for(ds, args.loss),
                          threads=args.threads,
                          trainable=trainable_flags(model, split_patterns(args.trainable)), optimizer=optimizer,
                          betas=betas, eps=eps, rounding=args.rounding, grad_bits=args.grad_bits,
                          sgd_bits=args.sgd_bits, bn_input_bits=args.bn_input_bits)
        trainer.config["data"] = {"source": str(args.data), "val_split": args.val_split,
                                  "label_column": args.label_column, "on_bad_image": args.on_bad_image,
                                  "task": ds.task, "text_column": args.text_column, "tokenizer": args.tokenizer}
    metrics_path = out / "metrics.jsonl"
    # on resume the file is rewritten from the checkpoint, so it never holds epochs that were undone
    _write_metrics(metrics_path, trainer.history, "w")

    def on_epoch(m):
        _write_metrics(metrics_path, [m], "a")
        val = f"  val_loss {m['val_loss']:.4f}  val_acc {m['val_acc']:.4f}" if m["val_acc"] is not None else ""
        val += f"  val_miou {m['val_miou']:.4f}" if m.get("val_miou") is not None else ""
        val += f"  val_map {m['val_map']:.4f}  val_map50 {m['val_map50']:.4f}" if m.get("val_map") is not None else ""
        print(f"epoch {m['epoch']:>3}/{args.epochs}  train_loss {m['train_loss']:.4f}  "
              f"train_acc {m['train_acc']:.4f}{val}  {m['samples_per_s'] or 0:.0f} samples/s", flush=True)

    if not args.resume:
        print(f"training {args.model} on {ds.source}: {len(ds.x_train)} train / {len(ds.x_val)} val samples, "
              f"batch {args.batch_size}, {optimizer} lr {lr}, {args.epochs} epochs", flush=True)
    history = trainer.fit(ds.x_train, ds.y_train, ds.x_val, ds.y_val, epochs=args.epochs,
                          progress=not args.quiet and sys.stderr.isatty(), on_epoch=on_epoch,
                          checkpoint_dir=out / "checkpoints", checkpoint_every=args.checkpoint_every or 0,
                          keep=args.keep_checkpoints)
    model_path = trainer.export_onnx(out / "model.onnx")
    trainer.session.close()  # the arena goes before matplotlib comes (35 MB) for the curves
    if not args.quiet:
        print("\n" + summary_table(history))
    drew = plot_curves(history, out / "curves.png")
    last = history[-1] if history else {}
    miou = f", val_miou {last['val_miou']:.4f}" if last.get("val_miou") is not None else ""
    miou += f", val_map {last['val_map']:.4f}, val_map50 {last['val_map50']:.4f}" if last.get("val_map") is not None else ""
    print(f"\ndone: val_acc {last.get('val_acc') or 0:.4f}{miou}; wrote {model_path}, {metrics_path}"
          + (f", {out / 'curves.png'}" if drew else "") + f" and checkpoints in {out / 'checkpoints'}")
    return 0


def cmd_eval(args):
    import numpy as np

    from . import checkpoint as ckpt
    from .data import InputMapping, concat
    from .export import read_metadata
    from .onnx_import import import_onnx
    from .report import evaluation_report, format_report
    from .trainer import Trainer

    p = Path(args.model)
    trainer = None
    if p.is_dir() or p.suffix == ".iec":
        ck = ckpt.load_latest(p, warn=warn)
        trainer = Trainer.from_checkpoint(ck, batch_size=args.batch_size)
        model, names, seed = trainer.model, trainer.class_names, ck.meta["config"]["seed"]
    else:
        model = import_onnx(args.model)
        names, mapping, _ = read_metadata(model.metadata)  # the loss comes from DATA's layout
        seed = 0
    ds = _load_data_for(model, args.data, args, args.seed if args.seed is not None else seed)
    fmt = "u8" if ds.is_uint8 else "f32"
    if trainer is None:
        im = InputMapping.from_json(mapping) if mapping and not args.normalize else \
            _input_settings(model, ds, args.normalize)[1]
        trainer = Trainer(model, batch_size=args.batch_size, input_format=fmt, input_mapping=im, class_names=names,
                          loss=_loss_for(ds, None))
    elif trainer.input_format != fmt:
        trainer = trainer.with_input_format(fmt)
    x, y = {"val": (ds.x_val, ds.y_val), "train": (ds.x_train, ds.y_train),
            "all": (concat(ds.x_train, ds.x_val), np.concatenate([ds.y_train, ds.y_val]))}[args.split]
    xp, yp = trainer.prepare(x, y, args.split)
    if trainer.task != "classify":  # the task's module reports (mIoU, mAP)
        task = _task_module(trainer.task)
        report = task.report(trainer.evaluate_prepared(xp, yp), names or ds.class_names, len(xp))
        report.update(model=str(args.model), data=str(args.data), split=args.split)
        print(json.dumps(report, indent=2) if args.json else task.format_report(report))
        return 0
    report = evaluation_report(yp, trainer.predict_prepared(xp), names or ds.class_names,
                               trainer.evaluate_prepared(xp, yp)["loss"])
    report.update(model=str(args.model), data=str(args.data), split=args.split)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _task_module(task):
    """The module that reports and draws a dense task (segment.py, detect.py)."""
    from . import detect, segment

    return {"segment": segment, "detect": detect}[task]


def _image_paths(specs):
    from .data import IMAGE_SUFFIXES

    paths = []
    for spec in map(Path, specs):
        if spec.is_dir():
            paths += sorted(p for p in spec.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif spec.is_file():
            paths.append(spec)
        else:
            raise IntedgeError(f"{spec} is neither an image nor a folder; pass image files or a folder of them")
    if not paths:
        raise IntedgeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, specs))}")
    return paths


def cmd_predict(args):
    import numpy as np

    from . import checkpoint as ckpt
    from .data import InputMapping
    from .export import read_metadata
    from .images import decode_or_skip
    from .onnx_import import import_onnx
    from .trainer import Trainer

    p = Path(args.model)
    if p.is_dir() or p.suffix == ".iec":
        trainer = Trainer.from_checkpoint(ckpt.load_latest(p, warn=warn), batch_size=args.batch_size)
        names = trainer.class_names
    else:
        model = import_onnx(args.model)
        names, mapping, loss = read_metadata(model.metadata)
        trainer = Trainer(model, batch_size=args.batch_size, class_names=names, loss=loss,
                          input_mapping=InputMapping.from_json(mapping) if mapping else None)
    task = trainer.task
    if args.task and task != "classify" and args.task != task:
        raise IntedgeError(f"{args.model} was trained for {task}, not --task {args.task}")
    if task == "classify":  # a model exported by another tool says nothing: --task, or masks by its shape
        task = args.task or ("segment" if len(trainer.runtime_model.output_shape) == 3 else "classify")
    if task == "classify":
        raise IntedgeError(f"{args.model} is a classifier; predict draws segmentation and detection models")
    shape = tuple(trainer.model.input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise IntedgeError(f"predict takes images: a model input of [C, H, W] with C = 1 or 3, not {list(shape)}")
    skipped, paths, images = [], [], []
    for path in _image_paths(args.images):
        x = decode_or_skip(path, shape, "skip", skipped)
        if x is not None:
            paths.append(path)
            images.append(x)
    warn_skipped(skipped)
    if not images:
        raise IntedgeError("no readable images")
    images = np.stack(images)
    if trainer.input_format != "u8":
        trainer = trainer.with_input_format("u8")
    outputs = trainer.predict(images).reshape((len(images),) + tuple(trainer.runtime_model.output_shape))
    written = _task_module(task).write_predictions(args.output, paths, images, outputs, names)
    print(f"wrote {len(written)} files for {len(images)} images to {args.output}")
    return 0


def cmd_inspect(args):
    from .inspect_model import format_inspect, inspect, split_patterns

    info = inspect(args.model, args.batch_size, split_patterns(args.trainable))
    print(json.dumps(info, indent=2) if args.json else format_inspect(info, args.batch_size))
    return 0 if info["arena"] is not None else 2


def cmd_export(args):
    from . import checkpoint as ckpt
    from .data import load_data
    from .export import export_onnx
    from .trainer import Trainer

    ck = ckpt.load_latest(args.checkpoint, warn=warn)
    if args.state is not None:
        try:
            ck.state = args.state.read_bytes()
        except OSError as exc:
            raise IntedgeError(f"cannot read the training state {args.state}: {exc.strerror}") from None
    t = Trainer.from_checkpoint(ck)
    calibration = None
    if args.int8:
        data_cfg = ck.meta["config"].get("data") or {}
        spec = args.calibration or data_cfg.get("source")
        if not spec:
            raise IntedgeError("--int8 needs --calibration DATA (this checkpoint does not record its data)")
        ds = load_data(spec, seed=ck.meta["config"]["seed"], input_shape=t.model.input_shape,
                       val_split=data_cfg.get("val_split", 0.2), label_column=data_cfg.get("label_column"),
                       on_bad_image="skip")
        calibration = t.float_inputs(ds.x_val)
    path = export_onnx(t.model, t.state_dict(), args.output, class_names=t.class_names,
                       input_mapping=t.input_mapping, int8=args.int8, calibration=calibration, loss=t.loss)
    print(f"wrote {path} ({'int8 QDQ' if args.int8 else 'float32'}) from {ck.path}")
    return 0


def cmd_compile(args):
    from .compile import compile_model, format_figures

    optimizer, lr, betas, eps = optimizer_settings(args, sgd_lr=0.05)
    figures = compile_model(args.model, args.output, target=args.target, batch_size=args.batch_size,
                            trainable=args.trainable, lr=lr, momentum=args.momentum, optimizer=optimizer,
                            betas=betas, eps=eps,
                            weight_decay=args.weight_decay, seed=args.seed, loss=args.loss, data=args.data,
                            steps=args.steps, samples=args.samples, normalize=args.normalize,
                            runtime=args.runtime, build=args.build)
    written = ["intedge_model.h", "intedge_model.c", "train_example.c"]
    written += ["intedge_data.c", "expected_output.txt", "expected_state.ies"] if args.data else []
    written += ["runtime/"] if args.runtime else []
    written += ["firmware.elf"] if args.build else []
    print(f"wrote {args.output}/: {', '.join(written)}")
    print(format_figures(figures, args.target))
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except IntedgeError as exc:
        print(f"intedge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("intedge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "export": cmd_export, "inspect": cmd_inspect,
            "compile": cmd_compile}

if __name__ == "__main__":
    sys.exit(main())
