"""The training loop: batches, progress, metrics. Every multiply-add runs in the C runtime."""
import time

import numpy as np

from .data import check_labels, fit_samples
from .errors import IntedgeError
from .export import export_onnx
from .onnx_import import ImportedModel, import_onnx
from .runtime import Model, Session


class Trainer:
    """Trains an ONNX model in integer arithmetic.

    >>> t = Trainer("mlp.onnx", batch_size=32, lr=0.1)
    >>> history = t.fit(x_train, y_train, x_val, y_val, epochs=10)
    >>> t.export_onnx("trained.onnx")
    """

    def __init__(self, model, *, batch_size=32, lr=0.1, momentum=0.0, weight_decay=0.0, seed=0,
                 loss="cross_entropy", trainable=None):
        if batch_size < 1:
            raise IntedgeError(f"batch size must be at least 1, got {batch_size}")
        self.model = model if isinstance(model, ImportedModel) else import_onnx(model)
        self.runtime_model = Model(self.model.iem)
        self.batch_size = batch_size
        self.seed = seed
        self.loss = loss
        self.session = Session(self.runtime_model, batch_size=batch_size, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, seed=seed, loss=loss, trainable=trainable)
        self.epoch = 0

    def batch_order(self, n, epoch):
        """The sample order of an epoch: a seeded permutation, identical on every machine."""
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def _prepare(self, x, y, what):
        x = fit_samples(x, self.model.input_shape, f"{what} samples")
        if len(x) == 0:
            raise IntedgeError(f"{what} set is empty")
        if y is not None and self.loss == "cross_entropy":
            y = check_labels(y, self.model.output_size, f"{what} labels")
            if len(y) != len(x):
                raise IntedgeError(f"{what}: {len(x)} samples but {len(y)} labels")
        return x, y

    def _step(self, xb, yb, train):
        if self.loss == "cross_entropy":
            f = self.session.step if train else self.session.evaluate
            return f(xb, labels=yb)
        f = self.session.step if train else self.session.evaluate
        return f(xb, targets=yb)

    def evaluate(self, x, y):
        """Loss (mean, nats for cross-entropy) and accuracy over a dataset, in eval mode."""
        x, y = self._prepare(x, y, "evaluation")
        loss = correct = count = 0
        for i in range(0, len(x), self.batch_size):
            l, c, n = self._step(x[i:i + self.batch_size], y[i:i + self.batch_size], train=False)
            loss, correct, count = loss + l, correct + c, count + n
        return {"loss": loss / count, "acc": correct / count}

    def predict(self, x):
        """Eval-mode outputs (logits) as float32."""
        x = fit_samples(x, self.model.input_shape, "prediction samples")
        return np.concatenate([self.session.forward(x[i:i + self.batch_size])
                               for i in range(0, len(x), self.batch_size)])

    def fit(self, x_train, y_train, x_val=None, y_val=None, *, epochs=10, progress=True, on_epoch=None):
        """Trains for `epochs` epochs; returns one metrics dict per epoch. on_epoch(metrics) is
        called after each."""
        x_train, y_train = self._prepare(x_train, y_train, "training")
        if x_val is not None:
            x_val, y_val = self._prepare(x_val, y_val, "validation")
        history = []
        for _ in range(epochs):
            history.append(self._epoch(x_train, y_train, x_val, y_val, epochs, progress))
            if on_epoch:
                on_epoch(history[-1])
        return history

    def _epoch(self, x, y, x_val, y_val, epochs, progress):
        order = self.batch_order(len(x), self.epoch)
        start = time.perf_counter()
        loss = correct = count = 0
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(x), desc=f"epoch {self.epoch + 1}/{epochs}", unit="sample", leave=False)
        for i in range(0, len(x), self.batch_size):
            idx = order[i:i + self.batch_size]
            l, c, n = self._step(x[idx], y[idx], train=True)
            loss, correct, count = loss + l, correct + c, count + n
            if bar:
                bar.update(n)
                bar.set_postfix(loss=f"{loss / count:.4f}", acc=f"{correct / count:.3f}")
        if bar:
            bar.close()
        seconds = time.perf_counter() - start
        self.epoch += 1
        m = {"epoch": self.epoch, "train_loss": loss / count, "train_acc": correct / count,
             "val_loss": None, "val_acc": None, "seconds": round(seconds, 4),
             "samples_per_s": round(count / seconds, 1) if seconds > 0 else None}
        if x_val is not None:
            v = self.evaluate(x_val, y_val)
            m["val_loss"], m["val_acc"] = v["loss"], v["acc"]
        return m

    def state_dict(self):
        return self.session.state_dict()

    def export_onnx(self, path):
        """Writes the original graph with the trained float32 initializers."""
        return export_onnx(self.model, self.state_dict(), path)
