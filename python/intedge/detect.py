"""Object detection, CenterNet-style (anchor-free): the data layouts (COCO JSON, YOLO txt,
builtin:mnist-detect), the dense targets the runtime's CenterNet loss reads, host decoding,
COCO mAP, and prediction pictures.

The model contract: one output [C + 4, H/R, W/R] a sample for an input [ch, H, W]: channels
0..C-1 heatmap logits, C, C+1 the box width and height in output cells, C+2, C+3 the centre's
sub-cell offset (x, y). R (the stride) is read from the input and output shapes.

A box is [class, x, y, w, h] in model-input pixels (COCO's xywh, top-left corner)."""
import json
import math
from pathlib import Path

import numpy as np

from .data import IMAGE_SUFFIXES, Dataset, class_names_file, split, warn, warn_skipped
from .errors import IntedgeError
from .images import apply_plan, augment_plan
from .runtime import ffi, lib

LOSS = "centernet"
HEAT_ONE, NO_BOX, BOX_TARGET_MAX = lib.IE_HEAT_ONE, lib.IE_NO_BOX, lib.IE_BOX_TARGET_MAX
MIN_OVERLAP = 0.7
TOP_K = 100
SCORE_THRESHOLD = 0.01  # for mAP: low, so COCOeval sees the whole precision-recall curve
DRAW_THRESHOLD = 0.3  # for pictures


# ---- the head --------------------------------------------------------------------------------------

def head(input_shape, output_shape):
    """(classes, stride) of a detection model, or an IntedgeError naming what does not fit."""
    if len(input_shape) != 3 or len(output_shape) != 3:
        raise IntedgeError(f"a detection model maps an image [C, H, W] to [classes + 4, H/R, W/R]; this one maps "
                           f"{list(input_shape)} to {list(output_shape)}")
    (_, h, w), (ch, ho, wo) = input_shape, output_shape
    if ch < 5:
        raise IntedgeError(f"a detection output has classes + 4 >= 5 channels (heatmaps, then box w, h, offset x, y); "
                           f"this one has {ch}")
    if h % ho or w % wo or h // ho != w // wo:
        raise IntedgeError(f"the output {ho}x{wo} is not the input {h}x{w} divided by one integer stride R")
    return ch - 4, h // ho


def describe_head(input_shape, output_shape):
    """One line for `intedge inspect`: how a [C + 4, h, w] output reads as a CenterNet head, or None."""
    try:
        classes, stride = head(tuple(input_shape), tuple(output_shape))
    except IntedgeError:
        return None
    return (f"as a detection head (CenterNet): C = {classes} classes (channels 0..{classes - 1} heatmaps, "
            f"{classes},{classes + 1} box w,h, {classes + 2},{classes + 3} offset x,y), stride R = {stride}")


# ---- targets ---------------------------------------------------------------------------------------

def gaussian_radius(height, width, min_overlap=MIN_OVERLAP):
    """CenterNet's radius rule (after CornerNet): the largest corner shift that keeps a box of this
    size at IoU >= min_overlap with the true one, the smallest of its three cases."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 * b1 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 * b2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 * b3 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def _draw_gaussian(heat, cx, cy, radius):
    """heat = max(heat, Gaussian of sigma (2r + 1) / 6 centred on cell (cx, cy)), float64."""
    sigma = (2 * radius + 1) / 6
    h, w = heat.shape
    y0, y1, x0, x1 = max(0, cy - radius), min(h, cy + radius + 1), max(0, cx - radius), min(w, cx + radius + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma * sigma))
    np.maximum(heat[y0:y1, x0:x1], g, out=heat[y0:y1, x0:x1])


def targets(boxes, classes, out_hw, stride):
    """The CenterNet labels of one image's boxes ([k, 5] class, x, y, w, h in input pixels) in the
    runtime's encoding: int32 [C + 4, h, w], heat in Q30 (HEAT_ONE only at a centre), box w, h
    (output cells) and offset in Q16 at the centre cells, NO_BOX elsewhere."""
    ho, wo = out_hw
    heat = np.zeros((classes, ho, wo))
    reg = np.full((4, ho, wo), NO_BOX, np.int64)
    centres = []
    for cls, x, y, bw, bh in np.asarray(boxes, np.float64).reshape(-1, 5):
        w, h = bw / stride, bh / stride
        cx, cy = min((x + bw / 2) / stride, wo - 1e-6), min((y + bh / 2) / stride, ho - 1e-6)
        ix, iy = int(cx), int(cy)
        _draw_gaussian(heat[int(cls)], ix, iy, max(0, int(gaussian_radius(math.ceil(h), math.ceil(w)))))
        centres.append((int(cls), iy, ix))
        reg[:, iy, ix] = np.clip(np.round(np.array([w, h, cx - ix, cy - iy]) * 65536), 0, BOX_TARGET_MAX)
    q = np.minimum(np.round(heat * HEAT_ONE), HEAT_ONE - 1).astype(np.int64)  # 1.0 only where a centre is
    for cls, iy, ix in centres:
        q[cls, iy, ix] = HEAT_ONE
    return np.concatenate([q, reg]).astype(np.int32)


class Targets:
    """The dense labels of a set of images (int32 [N, (C + 4) h w], what the loss reads) with the
    boxes they came from (for mAP). Indexing gives label rows, as a label array would."""

    def __init__(self, boxes, classes, out_hw, stride):
        self.boxes = list(boxes)
        self.classes, self.out_hw, self.stride = classes, out_hw, stride
        self.dense = self.rows(self.boxes)

    def rows(self, boxes):
        """The label rows of other boxes (an augmented batch's) at these targets' geometry."""
        return np.stack([targets(b, self.classes, self.out_hw, self.stride).reshape(-1) for b in boxes])

    def __len__(self):
        return len(self.dense)

    def __getitem__(self, idx):
        return self.dense[idx]


def augment(x, boxes, kinds, rng):
    """images.augment's crop and flip on uint8 images [n, C, H, W] (the same draws), moving their
    boxes ([k, 5] class, x, y, w, h in pixels) with them: a box is clipped to the crop, and left
    out when less than a pixel of its width or height remains."""
    plan = augment_plan(len(x), x.shape[2], kinds, rng)
    pad, dy, dx, flip = plan
    h, w = x.shape[2:]
    moved = []
    for i, b in enumerate(boxes):
        b = np.asarray(b, np.float64).reshape(-1, 5)
        x0, y0 = np.clip(b[:, 1] + pad - dx[i], 0, w), np.clip(b[:, 2] + pad - dy[i], 0, h)
        x1, y1 = np.clip(b[:, 1] + b[:, 3] + pad - dx[i], 0, w), np.clip(b[:, 2] + b[:, 4] + pad - dy[i], 0, h)
        if flip[i]:
            x0, x1 = w - x1, w - x0
        keep = (x1 - x0 >= 1) & (y1 - y0 >= 1)
        moved.append(np.stack([b[:, 0], x0, y0, x1 - x0, y1 - y0], 1)[keep])
    return apply_plan(x, plan), moved


def check_boxes(boxes, classes, what):
    """Each image's boxes as float64 [k, 5]; a class id outside the model's C is an error."""
    out = []
    for i, b in enumerate(boxes):
        b = np.asarray(b, np.float64).reshape(-1, 5)
        bad = (b[:, 0] < 0) | (b[:, 0] >= classes) | (b[:, 0] != np.round(b[:, 0]))
        if bad.any():
            raise IntedgeError(f"{what}: image {i} has a box of class {b[bad][0, 0]:g}, outside [0, {classes}) for a "
                               f"model with {classes} heatmap channels; relabel the data or give the head more")
        out.append(b)
    return out


def targets_for(y, input_shape, output_shape, what):
    classes, stride = head(input_shape, output_shape)
    return Targets(check_boxes(y, classes, what), classes, output_shape[1:], stride)


# ---- decoding and metrics --------------------------------------------------------------------------

def decode(outputs, stride, classes=None, k=TOP_K, threshold=SCORE_THRESHOLD):
    """Detections from outputs [N, C + 4, h, w] (float): peaks of sigmoid(heatmap) that equal
    their 3x3 max (CenterNet's max-pool NMS; ties to the first in raster order), the top k by
    score, those above the threshold. Per image a dict of boxes [m, 4] (x, y, w, h in input
    pixels), scores [m] and classes [m]."""
    out = np.asarray(outputs, np.float64)
    n, ch, h, w = out.shape
    classes = ch - 4 if classes is None else classes
    heat = 1 / (1 + np.exp(-out[:, :classes]))
    padded = np.pad(heat, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1)
    # a peak is the 3x3 max; of equal neighbours (int8 outputs tie often) only the first in raster
    # order, so a plateau gives one detection, not several
    peak = np.ones(heat.shape, bool)
    for dy in range(3):
        for dx in range(3):
            other = padded[:, :, dy:dy + h, dx:dx + w]
            peak &= heat > other if (dy, dx) < (1, 1) else heat >= other
    peaks = np.where(peak, heat, 0).reshape(n, -1)
    results = []
    for i in range(n):
        top = np.argsort(-peaks[i], kind="stable")[:k]
        top = top[peaks[i, top] > threshold]
        cls, cell = top // (h * w), top % (h * w)
        cy, cx = cell // w, cell % w
        reg = out[i, classes:].reshape(4, -1)[:, cell]
        bw, bh = reg[0] * stride, reg[1] * stride
        x, y = (cx + reg[2]) * stride - bw / 2, (cy + reg[3]) * stride - bh / 2
        results.append({"boxes": np.stack([x, y, bw, bh], 1), "scores": peaks[i, top], "classes": cls})
    return results


def logit_q16(p):
    """A score threshold p as the logit threshold ie_centernet_decode takes: floor(2^16 ln(p/(1-p))),
    exact for logits on a 2^-16 grid (int8 outputs at exponents >= -16): z > it iff sigmoid(z) > p."""
    return math.floor(65536 * math.log(p / (1 - p)))


def decode_fixed(q, e, stride, classes=None, k=TOP_K, threshold=SCORE_THRESHOLD):
    """decode's detections from the runtime's integer decoder (intedge.h: ie_centernet_decode, the
    firmware's) on int8 outputs q [N, C + 4, h, w] at exponent e: boxes in 1/256 pixel, scores the
    sigmoid of the peak's logit."""
    q = np.ascontiguousarray(q, np.int8)
    n, ch, h, w = q.shape
    classes = ch - 4 if classes is None else classes
    dets, count = ffi.new("ie_detection[]", k), ffi.new("uint32_t *")
    results = []
    for image in q:
        status = lib.ie_centernet_decode(ffi.from_buffer("int8_t[]", image), e, classes, h, w, stride,
                                         logit_q16(threshold), k, dets, count)
        if status != lib.IE_OK:
            raise IntedgeError(f"ie_centernet_decode: {ffi.string(lib.ie_status_str(status)).decode()}")
        got = [dets[i] for i in range(count[0])]
        results.append({"boxes": np.array([[d.x_q8, d.y_q8, d.w_q8, d.h_q8] for d in got], np.float64).reshape(-1, 4) / 256,
                        "scores": 1 / (1 + np.exp(-np.array([d.logit_q for d in got], np.float64) * 2.0**e)),
                        "classes": np.array([d.class_id for d in got], np.int64)})
    return results


def _coco_gt(boxes, classes, image_hw):
    from pycocotools.coco import COCO

    h, w = image_hw
    images = [{"id": i + 1, "width": w, "height": h} for i in range(len(boxes))]
    flat = [(i, b) for i, bs in enumerate(boxes) for b in np.asarray(bs).reshape(-1, 5)]
    anns = [{"id": j + 1, "image_id": i + 1, "category_id": int(b[0]) + 1, "bbox": [float(v) for v in b[1:]],
             "area": float(b[3] * b[4]), "iscrowd": 0} for j, (i, b) in enumerate(flat)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(classes)]}
    gt.createIndex()
    return gt


def results_json(detections, image_ids=None):
    """Detections as COCO results: [{image_id, category_id, bbox, score}], ids from 1 (or
    image_ids), categories class + 1."""
    rows = []
    for i, d in enumerate(detections):
        for box, score, cls in zip(d["boxes"], d["scores"], d["classes"]):
            rows.append({"image_id": int(image_ids[i]) if image_ids is not None else i + 1,
                         "category_id": int(cls) + 1, "bbox": [round(float(v), 3) for v in box],
                         "score": round(float(score), 5)})
    return rows


def coco_map(detections, boxes, classes, image_hw):
    """(mAP@[.5:.95], mAP@.5) of the detections against the boxes, by pycocotools' COCOeval."""
    import contextlib
    import io

    try:
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise IntedgeError("COCO mAP needs pycocotools: pip install 'intedge[detect]' (or pycocotools)") from None

    rows = results_json(detections)
    if not rows or not any(len(np.asarray(b).reshape(-1, 5)) for b in boxes):
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        gt = _coco_gt(boxes, classes, image_hw)
        ev = COCOeval(gt, gt.loadRes(rows), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(float(ev.stats[0]), 0.0), max(float(ev.stats[1]), 0.0)


def metrics(outputs, boxes, input_shape):
    """{"map", "map50", "detections"} of float outputs [N, C + 4, h, w] against the boxes."""
    classes, stride = head(tuple(input_shape), outputs.shape[1:])
    dets = decode(outputs, stride, classes)
    m, m50 = coco_map(dets, boxes, classes, input_shape[1:])
    return {"map": m, "map50": m50, "detections": int(sum(len(d["scores"]) for d in dets))}


def report(evaluation, class_names, images):
    """`intedge eval`'s report from Trainer.evaluate_prepared's detection results."""
    return {"task": "detect", "images": int(images), "objects": int(evaluation["objects"]),
            "map": evaluation["map"], "map50": evaluation["map50"], "loss": evaluation["loss"],
            "detections": evaluation["detections"], "classes": list(class_names or [])}


def format_report(r):
    return (f"images {r['images']}   objects {r['objects']}   mAP@[.5:.95] {r['map']:.4f}   mAP@.5 {r['map50']:.4f}   "
            f"loss {r['loss']:.4f}   detections {r['detections']} (score > {SCORE_THRESHOLD}, top {TOP_K} an image)")


# ---- data ------------------------------------------------------------------------------------------

def _split_dirs(root):
    """The train folder and the val folder (None: split train with the seed)."""
    if (root / "train").is_dir():
        return root / "train", (root / "val" if (root / "val").is_dir() else None)
    return root, None


def _instances(root):
    """COCO's own layout: {split: (annotations/instances_{split}.json, root/{split})} for train*, val*."""
    found = {}
    for f in sorted((root / "annotations").glob("instances_*.json")) if (root / "annotations").is_dir() else []:
        name = f.stem[len("instances_"):]
        if (root / name).is_dir() and name.startswith(("train", "val")):
            found.setdefault(name[:3] if name.startswith("val") else "train", (f, root / name))
    return found


def layout(root):
    """'coco' (DATA/{train,val}/annotations.json beside images/), 'coco-instances' (COCO's own
    annotations/instances_{split}.json with {split}/), 'yolo' (images/ plus labels/*.txt), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    base, _ = _split_dirs(root)
    if (base / "annotations.json").is_file() and (base / "images").is_dir():
        return "coco"
    if "train" in _instances(root):
        return "coco-instances"
    if (base / "labels").is_dir() and (base / "images").is_dir():
        return "yolo"
    return None


class _Problems:
    """Boxes and images left out, counted per reason, reported in one warning each."""

    def __init__(self):
        self.counts, self.example = {}, {}

    def add(self, reason, where):
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.example.setdefault(reason, where)

    def warn(self):
        for reason, n in self.counts.items():
            warn(f"skipped {n} {reason}, e.g. {self.example[reason]}")


def _keep_box(x, y, w, h, size, where, problems):
    """True for a box of positive size inside the image (half a pixel of slack for rounding)."""
    width, height = size
    if not (w > 0 and h > 0):
        problems.add("box(es) of zero size", where)
        return False
    if x < -0.5 or y < -0.5 or x + w > width + 0.5 or y + h > height + 0.5:
        problems.add("box(es) outside their image", where)
        return False
    return True


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise IntedgeError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise IntedgeError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix the "
                           "file") from None


def _coco_records(ann_path, image_dir, problems):
    """[(image path, [[class, x, y, w, h] in its pixels])] and the categories ([(id, name)], in class
    order) of a COCO file."""
    d = _read_json(ann_path)
    try:
        cats = sorted(d["categories"], key=lambda c: c["id"])
        categories = [(c["id"], str(c.get("name", c["id"]))) for c in cats]
        index = {c["id"]: i for i, c in enumerate(cats)}
        images = {im["id"]: im for im in d["images"]}
        boxes = {i: [] for i in images}
        for a in d["annotations"]:
            where = f"{ann_path} annotation {a.get('id', '?')}"
            if a["category_id"] not in index:
                raise IntedgeError(f"{where} has category_id {a['category_id']}, which is not among the "
                                   f"categories ({', '.join(str(c) for c in index)}); fix the annotation")
            if a["image_id"] not in images:
                raise IntedgeError(f"{where} refers to image_id {a['image_id']}, which is not in \"images\"")
            if a.get("iscrowd"):
                continue
            im = images[a["image_id"]]
            x, y, w, h = (float(v) for v in a["bbox"])
            if _keep_box(x, y, w, h, (im["width"], im["height"]), where, problems):
                boxes[a["image_id"]].append([index[a["category_id"]], x, y, w, h])
        records = [(Path(image_dir) / images[i]["file_name"], boxes[i]) for i in sorted(images)]
    except (KeyError, TypeError, ValueError) as exc:
        raise IntedgeError(f"{ann_path} is not a COCO detection file ({type(exc).__name__}: {exc}); it needs "
                           "images (id, file_name, width, height), annotations (image_id, category_id, bbox) and "
                           "categories (id, name)") from None
    return records, categories


def _yolo_records(folder, problems):
    """[(image path, [[class, cx, cy, w, h] normalized])] of images/ with labels/*.txt."""
    records = []
    for img in sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = folder / "labels" / (img.stem + ".txt")
        if not label.is_file():
            problems.add("image(s) without a label file", f"{img} (no {label})")
            continue
        rows = []
        for n, line in enumerate(label.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                cls, cx, cy, w, h = (float(v) for v in line.split())
            except ValueError:
                raise IntedgeError(f"{label}:{n}: expected 'class cx cy w h' (five numbers, normalized), got "
                                   f"{line.strip()!r}") from None
            if cls != int(cls) or cls < 0:
                raise IntedgeError(f"{label}:{n}: class {cls:g} is not a class index (0, 1, ...)")
            rows.append([int(cls), cx, cy, w, h])
        records.append((img, rows))
    return records


def _decode(records, shape, normalized, on_bad_image, skipped, problems):
    """Images resized to the model input and their boxes scaled to it (COCO pixels, or YOLO's
    normalized centres); boxes of zero size or outside the image are left out with a count."""
    from PIL import Image

    from .images import decode_or_skip

    c, height, width = shape
    xs, ys = [], []
    for path, rows in records:
        x = decode_or_skip(path, shape, on_bad_image, skipped)
        if x is None:
            continue
        with Image.open(path) as im:
            size = im.size
        kept = []
        for i, (cls, a, b, w, h) in enumerate(rows):
            if normalized:  # YOLO: centre and size as fractions of the image
                a, b, w, h = (a - w / 2) * size[0], (b - h / 2) * size[1], w * size[0], h * size[1]
            if _keep_box(a, b, w, h, size, f"{path} box {i}", problems):
                a, w = max(a, 0) * width / size[0], min(w, size[0] - max(a, 0)) * width / size[0]
                b, h = max(b, 0) * height / size[1], min(h, size[1] - max(b, 0)) * height / size[1]
                kept.append([cls, a, b, w, h])
        xs.append(x)
        ys.append(np.array(kept, np.float64).reshape(-1, 5))
    if not xs:
        raise IntedgeError("no readable images with labels")
    return np.stack(xs), _objects(ys)


def _objects(items):
    """A list of per-image box arrays as a 1-D object array (indexable like labels)."""
    out = np.empty(len(items), object)
    out[:] = items
    return out


def load_folder(root, input_shape, *, seed=0, val_split=0.2, on_bad_image="skip"):
    """A detection dataset in COCO JSON (either layout) or YOLO txt, at the model's input size."""
    root = Path(root)
    if input_shape is None or len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise IntedgeError(f"{root}: images need a model input of shape [C, H, W] with C = 1 or 3; this model takes "
                           f"{list(input_shape or [])}")
    kind = layout(root)
    problems, skipped, names = _Problems(), [], None
    if kind == "yolo":
        train_dir, val_dir = _split_dirs(root)
        parts = [(_yolo_records(d, problems), True) for d in (train_dir, val_dir) if d is not None]
        names = class_names_file(root)
    else:
        if kind == "coco":
            train_dir, val_dir = _split_dirs(root)
            files = [(d / "annotations.json", d / "images") for d in (train_dir, val_dir) if d is not None]
        else:
            inst = _instances(root)
            files = [inst[k] for k in ("train", "val") if k in inst]
        parts, categories = [], None
        for ann, images in files:
            records, cats = _coco_records(ann, images, problems)
            if categories is not None and cats != categories:  # class indices come from the categories' order
                raise IntedgeError(f"{ann} has categories {cats}, but {files[0][0]} has {categories}; train and val "
                                   "need the same categories")
            categories = cats
            parts.append((records, False))
        names = [name for _, name in categories]
    decoded = [_decode(r, tuple(input_shape), normalized, on_bad_image, skipped, problems) for r, normalized in parts]
    problems.warn()
    warn_skipped(skipped)
    (x, y), rest = decoded[0], decoded[1:]
    if rest:
        xv, yv = rest[0]
    else:
        x, y, xv, yv = split(x, y, val_split, seed)
    return Dataset(x, y, xv, yv, class_names=names, source=str(root), skipped=skipped, task="detect")


def load_mnist_detect(input_shape, seed=0):
    """builtin:mnist-detect: the MNIST scenes (scenes.py) at the model's input size, the digits'
    tight boxes as the objects (10 classes)."""
    from .scenes import scenes_at

    x, xv, sc = scenes_at(input_shape, "builtin:mnist-detect", seed)
    y, yv = (_objects([b.astype(np.float64) for b in sc[k][2]]) for k in ("train", "val"))
    return Dataset(x, y, xv, yv, class_names=[str(d) for d in range(10)], source="builtin:mnist-detect", task="detect")


# ---- predictions -----------------------------------------------------------------------------------

def _colour(cls):
    """A distinct, stable colour per class (golden-angle hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((cls * 0.618034) % 1.0, 0.85, 1.0)
    return int(255 * r), int(255 * g), int(255 * b)


def write_predictions(out_dir, paths, images, outputs, class_names):
    """For `intedge predict`: each image (uint8 [N, C, H, W], the model inputs; paths name them) with
    its detections above DRAW_THRESHOLD drawn as boxes labelled "class score", as
    out_dir/<stem>.png; and out_dir/detections.json in COCO results format ([{image_id,
    category_id, bbox, score}], image_id i + 1 for paths[i], category_id class + 1, bbox x, y, w, h
    in the images' pixels) with every decoded detection (score > SCORE_THRESHOLD, top TOP_K).
    outputs: float [N, C + 4, h, w]. Returns the paths written."""
    from PIL import Image, ImageDraw

    images, outputs = np.asarray(images), np.asarray(outputs, np.float64)
    if images.ndim != 4 or outputs.ndim != 4 or len(images) != len(outputs) or len(paths) != len(images):
        raise IntedgeError(f"write_predictions takes {len(paths)} paths, images [N, C, H, W] and outputs "
                           f"[N, C + 4, h, w] of one N; got {list(images.shape)} and {list(outputs.shape)}")
    classes, stride = head(images.shape[1:], outputs.shape[1:])
    names = list(class_names or [])
    names += [str(i) for i in range(len(names), classes)]
    dets = decode(outputs, stride, classes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, img, d in zip(paths, images, dets):
        rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
        pic = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)), "RGB")
        draw = ImageDraw.Draw(pic)
        for (x, y, w, h), score, cls in zip(d["boxes"], d["scores"], d["classes"]):
            if score < DRAW_THRESHOLD:
                continue
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=_colour(int(cls)))
            draw.text((x + 1, max(y - 10, 0)), f"{names[int(cls)]} {score:.2f}", fill=_colour(int(cls)))
        target = out_dir / (Path(path).stem + ".png")
        pic.save(target)
        written.append(target)
    results = out_dir / "detections.json"
    results.write_text(json.dumps(results_json(dets)))
    return written + [results]
