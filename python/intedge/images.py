"""Image folders in the torchvision ImageFolder layout, decoded with Pillow to uint8 CHW at the
model's input size, and seeded augmentation (random crop with padding, horizontal flip)."""
from pathlib import Path

import numpy as np

from .data import IMAGE_SUFFIXES, Dataset, split, warn_skipped
from .errors import IntedgeError


def _class_folders(folder):
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder):
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def decode_image(path, channels, height, width):
    """uint8 [C, H, W] at the model's size (bilinear)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (width, height):
            img = img.resize((width, height), Image.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def decode_or_skip(path, shape, on_bad_image, skipped):
    """decode_image, or None after noting a damaged file in `skipped` (on_bad_image 'skip'), or
    one clear error ('fail')."""
    try:
        return decode_image(path, *shape)
    except Exception as exc:  # Pillow raises many types for damaged files
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        if on_bad_image == "fail":
            raise IntedgeError(f"cannot decode image {path} ({reason}); fix or delete it, or pass "
                               "--on-bad-image skip") from None
        skipped.append((str(path), reason))
        return None


def _read_split(folder, classes, shape, on_bad_image, skipped):
    xs, ys = [], []
    for label, cls in enumerate(classes):
        d = folder / cls
        files = _images(d) if d.is_dir() else []
        if not files:
            raise IntedgeError(f"class folder {d} has no images ({', '.join(IMAGE_SUFFIXES)}); add images or "
                               "remove the folder")
        for f in files:
            x = decode_or_skip(f, shape, on_bad_image, skipped)
            if x is not None:
                xs.append(x)
                ys.append(label)
    if not xs:
        raise IntedgeError(f"{folder}: no readable images")
    return np.stack(xs), np.array(ys, np.int64)


def load_image_folder(root, input_shape, *, seed=0, val_split=0.2, on_bad_image="skip"):
    """root/train/<class>/*.png (+ root/val/<class>/...), or root/<class>/*.png. Without val/,
    a seeded val_split fraction of train becomes the validation set."""
    root = Path(root)
    if input_shape is None or len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise IntedgeError(f"{root}: images need a model input of shape [C, H, W] with C = 1 (grayscale) or 3 "
                           f"(RGB); this model takes {list(input_shape or [])}")
    train_dir = root / "train" if (root / "train").is_dir() else root
    classes = [p.name for p in _class_folders(train_dir)]
    if not classes:
        raise IntedgeError(f"{root} has no class folders; lay images out as {root}/train/<class>/*.png "
                           f"(and optionally {root}/val/<class>/*.png)")
    skipped = []
    x, y = _read_split(train_dir, classes, input_shape, on_bad_image, skipped)
    val_dir = root / "val"
    if train_dir != root and val_dir.is_dir():
        extra = sorted({p.name for p in _class_folders(val_dir)} - set(classes))
        if extra:
            raise IntedgeError(f"{val_dir} has classes missing from train/: {', '.join(extra)}")
        present = [c for c in classes if (val_dir / c).is_dir()]
        xv, yv_local = _read_split(val_dir, present, input_shape, on_bad_image, skipped)
        yv = np.array([classes.index(present[i]) for i in yv_local], np.int64)
    else:
        x, y, xv, yv = split(x, y, val_split, seed)
    warn_skipped(skipped)
    return Dataset(x, y, xv, yv, class_names=classes, source=str(root), skipped=skipped)


AUGMENTATIONS = ("crop", "flip")


def augment_plan(n, h, kinds, rng):
    """The seeded draws of augment for n images of height h: (pad, per image the crop's offsets dy,
    dx into the image padded by pad = H/8, whether it flips). No crop: pad and offsets 0."""
    pad = max(1, h // 8) if "crop" in kinds else 0
    dy, dx = (rng.integers(0, 2 * pad + 1, n) for _ in range(2)) if pad else (np.zeros(n, int), np.zeros(n, int))
    flip = rng.random(n) < 0.5 if "flip" in kinds else np.zeros(n, bool)
    return pad, dy, dx, flip


def apply_plan(x, plan, fill=0):
    """augment_plan's crop (padding with fill) and flip on images [n, C, H, W]."""
    pad, dy, dx, flip = plan
    x = x.copy()
    h, w = x.shape[2:]
    if pad:
        padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
        for i in range(len(x)):
            x[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    x[flip] = x[flip, :, :, ::-1]
    return x


def augment(x, kinds, rng):
    """Random crop with zero padding (H/8 pixels) and horizontal flip, on uint8 [n, C, H, W]."""
    return apply_plan(x, augment_plan(len(x), x.shape[2], kinds, rng)) if kinds else x
