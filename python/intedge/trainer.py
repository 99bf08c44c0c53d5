"""The training loop: batches, augmentation, progress, metrics, checkpoints and resume. Every
multiply-add runs in the C runtime.

Resume is bit-exact because everything random is counter-based: the sample order of an epoch
is a permutation seeded by (seed, epoch), augmentation draws from (seed, epoch, batch), and the
runtime's stochastic rounding from (seed, stream, step). A checkpoint stores the runtime state
and the position (epoch, batch); nothing else is needed."""
import hashlib
import time

import numpy as np

from . import checkpoint as ckpt
from . import faults
from . import detect, segment
from .data import InputMapping, Inputs, check_labels, fit_inputs, fit_samples
from .errors import IntedgeError
from .export import export_onnx
from .images import augment
from .onnx_import import ImportedModel, import_onnx
from .runtime import ADAMW_DEFAULTS, Model, NumberFormat, Session

DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}


def number_format_options(config):
    """The number-format options a trainer config records (older checkpoints: the defaults)."""
    defaults = (("rounding", "stochastic"), ("grad_bits", 8), ("sgd_bits", 32), ("bn_input_bits", 8))
    return {k: config.get(k, v) for k, v in defaults}


class Trainer:
    """Trains an ONNX model in integer arithmetic.

    >>> t = Trainer("mlp.onnx", batch_size=32, lr=0.1)
    >>> history = t.fit(x_train, y_train, x_val, y_val, epochs=10)
    >>> t.export_onnx("trained.onnx")

    uint8 samples ([N, C, H, W] images) enter the runtime as integers; `input_mapping` gives the
    per-channel normalization, folded into the runtime's input mapping. Float samples are
    normalized in numpy.

    A model with several inputs, or integer ones (a text encoder's input_ids and attention_mask),
    takes x as a dict of arrays by input name, one row per sample; integer inputs must hold
    integers, float inputs go in as they are (no input mapping, no augmentation).

    optimizer: 'sgd' (lr, momentum, weight_decay; PyTorch's SGD) or 'adamw' (lr, betas, eps,
    weight_decay; PyTorch's AdamW, whose own default weight_decay is 0.01). lr defaults to 0.1 for
    SGD and 0.001 for AdamW.

    rounding, grad_bits, sgd_bits and bn_input_bits change the number format for ablation studies
    (docs/fidelity.md); their defaults are the method's format."""

    def __init__(self, model, *, batch_size=32, lr=None, momentum=0.0, weight_decay=0.0, seed=0,
                 loss="cross_entropy", trainable=None, input_format="f32", input_mapping=None, augment=(),
                 class_names=None, kernels=None, threads=1, optimizer="sgd", betas=ADAMW_DEFAULTS["betas"],
                 eps=ADAMW_DEFAULTS["eps"], rounding="stochastic", grad_bits=8, sgd_bits=32,
                 bn_input_bits=8):
        if batch_size < 1:
            raise IntedgeError(f"batch size must be at least 1, got {batch_size}")
        if input_format not in ("f32", "u8"):
            raise IntedgeError(f"input_format must be 'f32' or 'u8', not {input_format!r}")
        if optimizer not in DEFAULT_LR:
            raise IntedgeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(DEFAULT_LR)}")
        lr = DEFAULT_LR[optimizer] if lr is None else lr
        betas = tuple(betas)
        self.model = model if isinstance(model, ImportedModel) else import_onnx(model)
        self.runtime_model = Model(self.model.iem)
        channels = self.model.input_shape[0] if len(self.model.input_shape) > 1 else 1
        self.input_mapping = input_mapping or InputMapping(channels, (0.0,) * channels, (1.0,) * channels)
        self.input_format = input_format
        self.number_format = NumberFormat(rounding, grad_bits, sgd_bits, bn_input_bits)
        self.config = {"batch_size": batch_size, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                       "seed": seed, "loss": loss, "trainable": list(trainable) if trainable is not None else None,
                       "input_format": input_format, "augment": list(augment), "optimizer": optimizer,
                       "betas": list(betas), "eps": eps, "rounding": rounding, "grad_bits": grad_bits,
                       "sgd_bits": sgd_bits, "bn_input_bits": bn_input_bits}
        self.batch_size = batch_size
        self.seed = seed
        self.loss = loss
        # what the labels are: classes, masks (metrics add mIoU) or boxes (metrics add mAP)
        self.task = {segment.LOSS: "segment", detect.LOSS: "detect"}.get(loss, "classify")
        self.augment = tuple(augment)
        self.class_names = class_names
        u8 = None
        if input_format == "u8":
            offsets, scales, exp = self.input_mapping.runtime_u8()
            u8 = (self.input_mapping.channels, offsets, scales, exp)
        self.session = Session(self.runtime_model, batch_size=batch_size, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, seed=seed, loss=loss, trainable=trainable, input_u8=u8,
                               kernels=kernels, threads=threads, optimizer=optimizer, betas=betas, eps=eps,
                               number_format=self.number_format)
        self.model.release_weights()  # the session's masters are its copy: the .iem's weights may go
        # the position: completed epochs, next batch in the current epoch, partial-epoch sums
        self.epoch = 0
        self.batch = 0
        self.partial = {"loss": 0.0, "correct": 0, "count": 0, "samples": 0, "seconds": 0.0}
        self.history = []

    # ---- data ----------------------------------------------------------------------------------
    def batch_order(self, n, epoch):
        """The sample order of an epoch: a seeded permutation, identical on every machine."""
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def _takes_inputs(self):
        """True for a model with several inputs or integer inputs: samples go as Inputs."""
        infos = self.runtime_model.inputs
        return len(infos) > 1 or any(i.ids for i in infos)

    def prepare(self, x, y, what):
        if self._takes_inputs():
            if self.input_format == "u8" or self.augment:
                raise IntedgeError("uint8 input and augmentation are for one image input; this model takes "
                                   f"{', '.join(i.name for i in self.runtime_model.inputs)}")
            flat = fit_inputs(x, self.runtime_model.inputs, f"{what} samples")
            return flat, self._check_targets(y, len(flat), what)
        x = np.asarray(x)
        if self.input_format == "u8" and x.dtype != np.uint8:
            raise IntedgeError(f"{what} samples are {x.dtype}; this trainer takes uint8 images")
        if self.input_format == "f32":
            x = x.astype(np.float32)
            if x.ndim > 1:
                x = self.input_mapping.apply_float(x.reshape((len(x), self.input_mapping.channels, -1)))
        flat = fit_samples(x, self.model.input_shape, f"{what} samples")
        return flat, self._check_targets(y, len(flat), what)

    def _check_targets(self, y, n, what):
        if n == 0:
            raise IntedgeError(f"{what} set is empty")
        if y is not None and self.task == "detect":
            y = detect.targets_for(y, tuple(self.model.input_shape), self.runtime_model.output_shape, f"{what} boxes")
            if len(y) != n:
                raise IntedgeError(f"{what}: {n} images but {len(y)} box lists")
        elif y is not None and self.task == "segment":
            y = segment.masks_for(y, self.runtime_model.output_shape, f"{what} masks")
            if len(y) != n:
                raise IntedgeError(f"{what}: {n} images but {len(y)} masks")
        elif y is not None and self.loss == "cross_entropy":
            y = check_labels(y, self.model.output_size, f"{what} labels")
            if len(y) != n:
                raise IntedgeError(f"{what}: {n} samples but {len(y)} labels")
        elif y is not None:  # regression / multi-label targets: one row of outputs per sample
            y = np.asarray(y, np.float32).reshape(len(y), -1)
            if y.shape != (n, self.model.output_size):
                raise IntedgeError(f"{what}: targets have shape {list(y.shape)}; the model gives "
                                   f"[{n}, {self.model.output_size}]")
            if self.loss == "bce" and (y.min() < 0 or y.max() > 1):
                raise IntedgeError(f"{what}: BCE targets must lie in [0, 1]")
        return y

    def _augment(self, xb, y, idx, epoch, batch):
        """The batch (samples, labels) of rows idx, augmented; y: every label (detection: Targets,
        whose boxes move with the images and give the batch's label rows again)."""
        yb = y[idx]
        if not self.augment:
            return xb, yb
        rng = np.random.default_rng([self.seed, epoch, batch, 7])
        shape = tuple(self.model.input_shape)
        shaped = xb.reshape((len(xb),) + shape)
        if self.task == "detect":
            xa, boxes = detect.augment(shaped, [y.boxes[i] for i in idx], self.augment, rng)
            return xa.reshape(len(xb), -1), y.rows(boxes)
        if self.task != "segment":
            return augment(shaped, self.augment, rng).reshape(len(xb), -1), yb
        if tuple(self.runtime_model.output_shape[1:]) != shape[1:]:
            raise IntedgeError("augmenting segmentation data needs a model whose output has its input's H x W")
        xa, ya = segment.augment_pair(shaped, yb.reshape((len(yb),) + shape[1:]), self.augment, rng)
        return xa.reshape(len(xb), -1), ya.reshape(len(yb), -1)

    def _run(self, xb, yb, train):
        """(summed loss, correct, count) of one batch; for BCE, correct counts outputs, so it is
        scaled to samples' worth to keep accuracy = correct / count."""
        f = self.session.step if train else self.session.evaluate
        xb = xb.arrays if isinstance(xb, Inputs) else xb
        if self.loss in ("cross_entropy", segment.LOSS, detect.LOSS):
            return f(xb, labels=yb)
        loss, correct, count = f(xb, targets=yb)
        return loss, (correct / self.model.output_size if self.loss == "bce" else correct), count

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, x, y):
        """Loss (mean, nats for cross-entropy) and accuracy over a dataset, in eval mode."""
        return self.evaluate_prepared(*self.prepare(x, y, "evaluation"))

    def evaluate_prepared(self, x, y):
        """evaluate() on samples already through prepare. Segmentation adds mIoU, pixel accuracy
        (= acc) and per-class IoU; detection mAP@[.5:.95] (map), mAP@.5 (map50) and the objects."""
        loss = correct = count = 0
        classes = self.runtime_model.output_shape[0]
        conf = np.zeros((classes, classes), np.int64) if self.task == "segment" else None
        outputs = [] if self.task == "detect" else None
        for i in range(0, len(x), self.batch_size):
            xb, yb = x[i:i + self.batch_size], y[i:i + self.batch_size]
            l, c, n = self._run(xb, yb, train=False)
            loss, correct, count = loss + l, correct + c, count + n
            if conf is not None:
                conf += segment.confusion(self.session.forward(xb), yb, classes)
            if outputs is not None:
                outputs.append(self.session.forward(xb))
        out = {"loss": loss / count if count else 0.0, "acc": correct / count if count else 0.0}
        if conf is not None:
            out.update(segment.metrics(conf), confusion=conf)
        if outputs is not None:
            shape = (len(x),) + tuple(self.runtime_model.output_shape)
            out.update(detect.metrics(np.concatenate(outputs).reshape(shape), y.boxes, self.model.input_shape),
                       objects=count)
        return out

    def predict_prepared(self, x):
        batch = (lambda b: b.arrays) if isinstance(x, Inputs) else (lambda b: b)  # noqa: E731
        return np.concatenate([self.session.forward(batch(x[i:i + self.batch_size]))
                               for i in range(0, len(x), self.batch_size)])

    def predict(self, x):
        """Eval-mode outputs (logits) as float32."""
        return self.predict_prepared(self.prepare(x, None, "prediction")[0])

    # ---- training ------------------------------------------------------------------------------
    def fit(self, x_train, y_train, x_val=None, y_val=None, *, epochs=10, progress=True, on_epoch=None,
            checkpoint_dir=None, checkpoint_every=0, keep=3, log=None):
        """Trains until `epochs` epochs are complete (a resumed trainer continues where it was).
        Returns the metrics of every epoch. on_epoch(metrics) is called after each epoch; with
        checkpoint_dir, a checkpoint is written every `checkpoint_every` steps and after each
        epoch, keeping the newest `keep`."""
        x_train, y_train = self.prepare(x_train, y_train, "training")
        if x_val is not None:
            x_val, y_val = self.prepare(x_val, y_val, "validation")
        self._n_train = len(x_train)
        while self.epoch < epochs:
            m = self._epoch(x_train, y_train, x_val, y_val, epochs, progress, checkpoint_dir, checkpoint_every,
                            keep, log)
            self.history.append(m)
            if on_epoch:
                on_epoch(m)
            if checkpoint_dir:
                self.save_checkpoint(checkpoint_dir, keep)
        return self.history

    def _epoch(self, x, y, x_val, y_val, epochs, progress, ckpt_dir, every, keep, log):
        order = self.batch_order(len(x), self.epoch)
        n_batches = (len(x) + self.batch_size - 1) // self.batch_size
        p = self.partial
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(x), initial=min(self.batch * self.batch_size, len(x)), unit="sample",
                       desc=f"epoch {self.epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
        while self.batch < n_batches:
            start = time.perf_counter()
            idx = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
            l, c, n = self._run(*self._augment(x[idx], y, idx, self.epoch, self.batch), train=True)
            self.batch += 1
            faults.kill_if(faults.KILL_AT_STEP, self.session.step_count)
            p["loss"] += l
            p["correct"] += c
            p["count"] += n
            p["samples"] = p.get("samples", 0) + len(idx)  # count is pixels when segmenting
            p["seconds"] += time.perf_counter() - start
            if bar:
                bar.update(len(idx))
                bar.set_postfix(loss=f"{p['loss'] / max(p['count'], 1):.4f}", acc=f"{p['correct'] / max(p['count'], 1):.3f}")
            if ckpt_dir and every and self.session.step_count % every == 0 and self.batch < n_batches:
                self.save_checkpoint(ckpt_dir, keep)
        if bar:
            bar.close()
        self.epoch += 1
        self.batch = 0
        counted = max(p["count"], 1)
        m = {"epoch": self.epoch, "train_loss": p["loss"] / counted, "train_acc": p["correct"] / counted,
             "val_loss": None, "val_acc": None, "seconds": round(p["seconds"], 4),
             "samples_per_s": round(p.get("samples", p["count"]) / p["seconds"], 1) if p["seconds"] > 0 else None}
        self.partial = {"loss": 0.0, "correct": 0, "count": 0, "samples": 0, "seconds": 0.0}
        if x_val is not None:
            v = self.evaluate_prepared(x_val, y_val)
            m["val_loss"], m["val_acc"] = v["loss"], v["acc"]
            if self.task == "detect":
                m.update(val_map=v["map"], val_map50=v["map50"])
            if self.task == "segment":
                m.update(val_miou=v["miou"], val_pixel_acc=v["pixel_acc"], val_iou=v["iou"])
        return m

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self):
        onnx_bytes = self.model.onnx_model.SerializeToString()
        meta = {"format": "intedge-checkpoint", "epoch": self.epoch, "batch": self.batch,
                "step": int(self.session.step_count), "partial": dict(self.partial), "history": list(self.history),
                "config": self.config, "input_mapping": self.input_mapping.to_json(),
                "class_names": self.class_names, "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                "n_train": getattr(self, "_n_train", None)}
        return ckpt.Checkpoint(meta, onnx_bytes, self.model.iem_sha256, self.session.save_state())

    def save_checkpoint(self, folder, keep=3):
        return ckpt.save(folder, self.checkpoint(), keep)

    @classmethod
    def from_checkpoint(cls, ck, batch_size=None, threads=1):
        """A trainer in the exact state of checkpoint `ck` (a Checkpoint or a path)."""
        import onnx

        if not isinstance(ck, ckpt.Checkpoint):
            ck = ckpt.load(ck)
        try:
            onnx_model = onnx.load_model_from_string(ck.onnx)
        except Exception as exc:  # protobuf raises several types for garbage input
            raise ckpt.CheckpointError(f"{ck.path}: its model is not valid ONNX ({type(exc).__name__})") from None
        try:
            model = import_onnx(onnx_model)
        except IntedgeError as exc:
            raise ckpt.CheckpointError(f"{ck.path}: its model cannot be imported: {exc}") from None
        if model.iem_sha256 != ck.iem_sha256:
            raise ckpt.CheckpointError(f"{ck.path} was written by an intedge whose model translation differs; "
                                       "export it with that version")
        c = dict(ck.meta["config"])
        if batch_size:
            c["batch_size"] = batch_size
        try:  # the configuration as the run recorded it; decode checked only its outline
            t = cls(model, batch_size=c["batch_size"], lr=c["lr"], momentum=c["momentum"],
                    weight_decay=c["weight_decay"], seed=c["seed"], loss=c["loss"], trainable=c["trainable"],
                    input_format=c["input_format"], input_mapping=InputMapping.from_json(ck.meta["input_mapping"]),
                    augment=c["augment"], class_names=ck.meta.get("class_names"), threads=threads,
                    **optimizer_args(c), **number_format_options(c))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ckpt.CheckpointError(f"{ck.path}: its recorded configuration is malformed ({exc!r})") from None
        t.config = c  # everything the run recorded, including how its data was loaded
        t.session.load_state(ck.state)
        t.epoch, t.batch = ck.meta["epoch"], ck.meta["batch"]
        t.partial = dict(ck.meta["partial"])
        t.history = list(ck.meta["history"])
        return t

    def with_input_format(self, fmt):
        """The same weights behind a session that reads the other input format ('u8' or 'f32')."""
        c = self.config
        t = Trainer(self.model, batch_size=self.batch_size, lr=c["lr"], momentum=c["momentum"],
                    weight_decay=c["weight_decay"], seed=self.seed, loss=self.loss, trainable=c["trainable"],
                    input_format=fmt, input_mapping=self.input_mapping, class_names=self.class_names,
                    **optimizer_args(c), **number_format_options(c))
        for p in self.session.model.params:
            t.session.set_param_fixed(p.index, *self.session.param_fixed(p.index))
        return t

    def float_inputs(self, x):
        """Samples as the exported float model takes them: [0,1] pixels, normalized, input-shaped."""
        x = np.asarray(x)
        xf = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        xf = self.input_mapping.apply_float(xf.reshape((len(x), self.input_mapping.channels, -1)))
        return xf.reshape((len(x),) + tuple(self.model.input_shape))

    # ---- results -------------------------------------------------------------------------------
    def state_dict(self):
        return self.session.state_dict()

    def export_onnx(self, path):
        """Writes the original graph with the trained float32 initializers (and the class names,
        input mapping and loss, which tell `intedge eval` and `intedge predict` how to read it)."""
        return export_onnx(self.model, self.state_dict(), path, class_names=self.class_names,
                           input_mapping=self.input_mapping, loss=self.loss)


def optimizer_args(config):
    """The optimizer settings a trainer config recorded (checkpoints from before AdamW: SGD)."""
    return {"optimizer": config.get("optimizer", "sgd"), "betas": tuple(config.get("betas", ADAMW_DEFAULTS["betas"])),
            "eps": config.get("eps", ADAMW_DEFAULTS["eps"])}
