"""Datasets for `intedge train`: a .npz file or a builtin real dataset. Samples are float32
arrays of any shape; they are flattened to the model input when the element counts match."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IntedgeError

BUILTINS = ("builtin:digits",)


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list = None
    source: str = ""


def split(x, y, val_fraction, seed):
    """A seeded shuffle split, the same on every machine (numpy's PCG64)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def load_digits_dataset(seed=0, val_fraction=0.2):
    """scikit-learn's 1,797 real 8x8 digits, pixels scaled to [0, 1], split 80/20 with the seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    return Dataset(*split(x, y, val_fraction, seed), class_names=[str(c) for c in range(10)], source="builtin:digits")


def load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = {"x_train", "y_train"} - keys
            if missing:
                raise IntedgeError(f"{path} lacks {', '.join(sorted(missing))}; a dataset .npz holds x_train, "
                                   "y_train and optionally x_val, y_val")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_val", "y_val") if k in keys}
    except (OSError, ValueError) as exc:
        raise IntedgeError(f"{path} is not a readable .npz file ({exc})") from None
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise IntedgeError(f"{path} has only one of x_val and y_val; give both or neither")
    for k, v in arrays.items():
        if v.dtype.kind not in "fiub":
            raise IntedgeError(f"{path}: {k} has dtype {v.dtype}; it must be numeric")
    x, y = arrays["x_train"], arrays["y_train"]
    if len(x) != len(y):
        raise IntedgeError(f"{path}: x_train has {len(x)} samples but y_train has {len(y)}")
    if "x_val" in arrays:
        xv, yv = arrays["x_val"], arrays["y_val"]
        if len(xv) != len(yv):
            raise IntedgeError(f"{path}: x_val has {len(xv)} samples but y_val has {len(yv)}")
    else:
        x, y, xv, yv = split(x, y, 0.2, 0)
    return Dataset(x.astype(np.float32), y, xv.astype(np.float32), yv, source=str(path))


def load_data(spec, seed=0):
    """DATA as the CLI takes it: builtin:digits or a .npz path."""
    spec = str(spec)
    if spec == "builtin:digits":
        return load_digits_dataset(seed)
    if spec.startswith("builtin:"):
        raise IntedgeError(f"unknown dataset {spec}; builtins are: {', '.join(BUILTINS)}")
    p = Path(spec)
    if not p.exists():
        raise IntedgeError(f"{spec}: no such file; DATA is a .npz file or one of {', '.join(BUILTINS)}")
    if p.suffix.lower() != ".npz":
        raise IntedgeError(f"{spec}: unsupported data format; use a .npz (x_train, y_train, x_val, y_val) "
                           f"or one of {', '.join(BUILTINS)}")
    return load_npz(p)


def fit_samples(x, input_shape, what="x"):
    """Flattens samples to the model's input size; the element counts must match."""
    x = np.asarray(x, dtype=np.float32)
    want = int(np.prod(input_shape))
    per = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per != want:
        raise IntedgeError(f"{what}: each sample has {per} values {list(x.shape[1:])}, but the model input takes "
                           f"{list(input_shape)} = {want}; resize the data or pick a matching model")
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)).any(axis=1))[0][0])
        raise IntedgeError(f"{what}: sample {bad} holds NaN or Inf")
    return x.reshape(len(x), want)


def check_labels(y, num_classes, what="y"):
    y = np.asarray(y)
    if y.ndim != 1:
        raise IntedgeError(f"{what}: labels must be one integer per sample, got shape {list(y.shape)}")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise IntedgeError(f"{what}: labels must be integers (class indices)")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.max()) if y.max() >= num_classes else int(y.min())
        raise IntedgeError(f"{what}: label {bad} is outside [0, {num_classes}) for a model with {num_classes} outputs; "
                           "relabel the data or give the model more outputs")
    return y.astype(np.int32)
