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
from .data import InputMapping, check_labels, fit_samples
from .errors import IntedgeError
from .export import export_onnx
from .images import augment
from .onnx_import import ImportedModel, import_onnx
from .runtime import Model, Session


class Trainer:
    """Trains an ONNX model in integer arithmetic.

    >>> t = Trainer("mlp.onnx", batch_size=32, lr=0.1)
    >>> history = t.fit(x_train, y_train, x_val, y_val, epochs=10)
    >>> t.export_onnx("trained.onnx")

    uint8 samples ([N, C, H, W] images) enter the runtime as integers; `input_mapping` gives the
    per-channel normalization, folded into the runtime's input mapping. Float samples are
    normalized in numpy."""

    def __init__(self, model, *, batch_size=32, lr=0.1, momentum=0.0, weight_decay=0.0, seed=0,
                 loss="cross_entropy", trainable=None, input_format="f32", input_mapping=None, augment=(),
                 class_names=None, kernels=None, threads=1):
        if batch_size < 1:
            raise IntedgeError(f"batch size must be at least 1, got {batch_size}")
        if input_format not in ("f32", "u8"):
            raise IntedgeError(f"input_format must be 'f32' or 'u8', not {input_format!r}")
        self.model = model if isinstance(model, ImportedModel) else import_onnx(model)
        self.runtime_model = Model(self.model.iem)
        channels = self.model.input_shape[0] if len(self.model.input_shape) > 1 else 1
        self.input_mapping = input_mapping or InputMapping(channels, (0.0,) * channels, (1.0,) * channels)
        self.input_format = input_format
        self.config = {"batch_size": batch_size, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                       "seed": seed, "loss": loss, "trainable": list(trainable) if trainable is not None else None,
                       "input_format": input_format, "augment": list(augment)}
        self.batch_size = batch_size
        self.seed = seed
        self.loss = loss
        self.augment = tuple(augment)
        self.class_names = class_names
        u8 = None
        if input_format == "u8":
            offsets, scales, exp = self.input_mapping.runtime_u8()
            u8 = (self.input_mapping.channels, offsets, scales, exp)
        self.session = Session(self.runtime_model, batch_size=batch_size, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, seed=seed, loss=loss, trainable=trainable, input_u8=u8,
                               kernels=kernels, threads=threads)
        # the position: completed epochs, next batch in the current epoch, partial-epoch sums
        self.epoch = 0
        self.batch = 0
        self.partial = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
        self.history = []

    # ---- data ----------------------------------------------------------------------------------
    def batch_order(self, n, epoch):
        """The sample order of an epoch: a seeded permutation, identical on every machine."""
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def prepare(self, x, y, what):
        x = np.asarray(x)
        if self.input_format == "u8" and x.dtype != np.uint8:
            raise IntedgeError(f"{what} samples are {x.dtype}; this trainer takes uint8 images")
        if self.input_format == "f32":
            x = x.astype(np.float32)
            if x.ndim > 1:
                x = self.input_mapping.apply_float(x.reshape((len(x), self.input_mapping.channels, -1)))
        flat = fit_samples(x, self.model.input_shape, f"{what} samples")
        if len(flat) == 0:
            raise IntedgeError(f"{what} set is empty")
        if y is not None and self.loss == "cross_entropy":
            y = check_labels(y, self.model.output_size, f"{what} labels")
            if len(y) != len(flat):
                raise IntedgeError(f"{what}: {len(flat)} samples but {len(y)} labels")
        elif y is not None:  # regression / multi-label targets: one row of outputs per sample
            y = np.asarray(y, np.float32).reshape(len(y), -1)
            if y.shape != (len(flat), self.model.output_size):
                raise IntedgeError(f"{what}: targets have shape {list(y.shape)}; the model gives "
                                   f"[{len(flat)}, {self.model.output_size}]")
            if self.loss == "bce" and (y.min() < 0 or y.max() > 1):
                raise IntedgeError(f"{what}: BCE targets must lie in [0, 1]")
        return flat, y

    def _augment(self, xb, epoch, batch):
        if not self.augment:
            return xb
        rng = np.random.default_rng([self.seed, epoch, batch, 7])
        shaped = xb.reshape((len(xb),) + tuple(self.model.input_shape))
        return augment(shaped, self.augment, rng).reshape(len(xb), -1)

    def _run(self, xb, yb, train):
        """(summed loss, correct, count) of one batch; for BCE, correct counts outputs, so it is
        scaled to samples' worth to keep accuracy = correct / count."""
        f = self.session.step if train else self.session.evaluate
        if self.loss == "cross_entropy":
            return f(xb, labels=yb)
        loss, correct, count = f(xb, targets=yb)
        return loss, (correct / self.model.output_size if self.loss == "bce" else correct), count

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, x, y):
        """Loss (mean, nats for cross-entropy) and accuracy over a dataset, in eval mode."""
        return self.evaluate_prepared(*self.prepare(x, y, "evaluation"))

    def evaluate_prepared(self, x, y):
        """evaluate() on samples already through prepare."""
        loss = correct = count = 0
        for i in range(0, len(x), self.batch_size):
            l, c, n = self._run(x[i:i + self.batch_size], y[i:i + self.batch_size], train=False)
            loss, correct, count = loss + l, correct + c, count + n
        return {"loss": loss / count, "acc": correct / count}

    def predict_prepared(self, x):
        return np.concatenate([self.session.forward(x[i:i + self.batch_size])
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
            l, c, n = self._run(self._augment(x[idx], self.epoch, self.batch), y[idx], train=True)
            self.batch += 1
            faults.kill_if(faults.KILL_AT_STEP, self.session.step_count)
            p["loss"] += l
            p["correct"] += c
            p["count"] += n
            p["seconds"] += time.perf_counter() - start
            if bar:
                bar.update(n)
                bar.set_postfix(loss=f"{p['loss'] / p['count']:.4f}", acc=f"{p['correct'] / p['count']:.3f}")
            if ckpt_dir and every and self.session.step_count % every == 0 and self.batch < n_batches:
                self.save_checkpoint(ckpt_dir, keep)
        if bar:
            bar.close()
        self.epoch += 1
        self.batch = 0
        m = {"epoch": self.epoch, "train_loss": p["loss"] / p["count"], "train_acc": p["correct"] / p["count"],
             "val_loss": None, "val_acc": None, "seconds": round(p["seconds"], 4),
             "samples_per_s": round(p["count"] / p["seconds"], 1) if p["seconds"] > 0 else None}
        self.partial = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
        if x_val is not None:
            v = self.evaluate_prepared(x_val, y_val)
            m["val_loss"], m["val_acc"] = v["loss"], v["acc"]
        return m

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self):
        onnx_bytes = self.model.onnx_model.SerializeToString()
        meta = {"format": "intedge-checkpoint", "epoch": self.epoch, "batch": self.batch,
                "step": int(self.session.step_count), "partial": dict(self.partial), "history": list(self.history),
                "config": self.config, "input_mapping": self.input_mapping.to_json(),
                "class_names": self.class_names, "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                "n_train": getattr(self, "_n_train", None)}
        return ckpt.Checkpoint(meta, onnx_bytes, self.model.iem, self.session.save_state())

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
        if model.iem != ck.iem:
            raise ckpt.CheckpointError(f"{ck.path} was written by an intedge whose model translation differs; "
                                       "export it with that version")
        c = dict(ck.meta["config"])
        if batch_size:
            c["batch_size"] = batch_size
        try:  # the configuration as the run recorded it; decode checked only its outline
            t = cls(model, batch_size=c["batch_size"], lr=c["lr"], momentum=c["momentum"],
                    weight_decay=c["weight_decay"], seed=c["seed"], loss=c["loss"], trainable=c["trainable"],
                    input_format=c["input_format"], input_mapping=InputMapping.from_json(ck.meta["input_mapping"]),
                    augment=c["augment"], class_names=ck.meta.get("class_names"), threads=threads)
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
                    input_format=fmt, input_mapping=self.input_mapping, class_names=self.class_names)
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
        """Writes the original graph with the trained float32 initializers (and class names)."""
        return export_onnx(self.model, self.state_dict(), path, class_names=self.class_names,
                           input_mapping=self.input_mapping)
