"""Semantic segmentation: the data layout, the per-pixel targets, augmentation that moves image
and mask together, and the metrics (mIoU, pixel accuracy, per-class IoU).

Layout: DATA/{train,val}/images/* and DATA/{train,val}/masks/* as PNG with the same stem (or
DATA/images + DATA/masks, split with the seed), or Pascal VOC's (JPEGImages/, SegmentationClass/
palette PNGs, ImageSets/Segmentation/{train,val}.txt). A mask pixel is a class index; 255 is ignored.
DATA/classes.txt (optional) names the classes, one a line. Images are resized bilinearly to the
model input, masks by nearest neighbour. The loss is the runtime's per-pixel cross-entropy."""
from pathlib import Path

import numpy as np

from .images import apply_plan, augment_plan
from .data import IMAGE_SUFFIXES, Dataset, class_names_file, split, warn_skipped
from .errors import IntedgeError
from .runtime import IGNORE_LABEL

LOSS = "pixel_cross_entropy"


VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def is_voc(root):
    """Pascal VOC's layout: JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/."""
    root = Path(root)
    return all((root / d).is_dir() for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"))


def is_layout(root):
    """A folder holding images/ and masks/, itself or under train/; or Pascal VOC's layout."""
    root = Path(root)
    base = root / "train" if (root / "train").is_dir() else root
    return ((base / "masks").is_dir() and (base / "images").is_dir()) or is_voc(root)


def _decode_mask(path, height, width):
    from PIL import Image

    with Image.open(path) as m:
        m.load()
        if m.mode not in ("L", "P", "I", "I;16"):  # palette PNGs keep their indices in mode P
            raise IntedgeError(f"mask {path} is {m.mode}; a mask is a single-channel PNG of class indices")
        size = m.size
        a = np.asarray(m.resize((width, height), Image.NEAREST) if size != (width, height) else m)
    return size, a.astype(np.int32)


def _folder_pairs(folder):
    """{stem: (image, mask)} of DATA/<split>/images and masks."""
    images = {p.stem: p for p in sorted((folder / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted((folder / "masks").iterdir()) if p.suffix.lower() == ".png"}
    missing = sorted(set(images) - set(masks))
    if missing:
        raise IntedgeError(f"{folder / 'images'}: {len(missing)} image(s) without a mask, e.g. {missing[0]}; "
                           f"add {folder / 'masks' / (missing[0] + '.png')} or remove the image")
    if not images:
        raise IntedgeError(f"{folder / 'images'} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return {stem: (path, masks[stem]) for stem, path in images.items()}


def _voc_pairs(root, split_name):
    """{stem: (image, mask)} of the stems listed in ImageSets/Segmentation/<split>.txt."""
    listing = root / "ImageSets" / "Segmentation" / f"{split_name}.txt"
    stems = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not stems:
        raise IntedgeError(f"{listing} lists no images; one image stem a line, as in Pascal VOC")
    images = {p.stem: p for p in sorted((root / "JPEGImages").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = {}
    for stem in stems:
        image = images.get(stem)
        mask = root / "SegmentationClass" / f"{stem}.png"
        if image is None or not mask.is_file():
            what = mask if image is not None else root / "JPEGImages" / f"{stem}.jpg"
            raise IntedgeError(f"{listing} lists {stem}, but {what} is missing; add it or remove {stem} from the list")
        pairs[stem] = (image, mask)
    return pairs


def _read_split(pairs, shape, on_bad_image, skipped, where):
    from PIL import Image

    from .images import decode_or_skip

    c, h, w = shape
    xs, ys = [], []
    for path, mask in pairs.values():
        x = decode_or_skip(path, shape, on_bad_image, skipped)
        if x is None:
            continue
        with Image.open(path) as img:
            size = img.size
        msize, y = _decode_mask(mask, h, w)
        if msize != size:
            raise IntedgeError(f"mask {mask} is {msize[0]}x{msize[1]} but its image is {size[0]}x{size[1]}; "
                               "a mask must have its image's size")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise IntedgeError(f"{where}: no readable images")
    return np.stack(xs), np.stack(ys)


def load_folder(root, input_shape, *, seed=0, val_split=0.2, on_bad_image="skip"):
    root = Path(root)
    if input_shape is None or len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise IntedgeError(f"{root}: images need a model input of shape [C, H, W] with C = 1 or 3; this model takes "
                           f"{list(input_shape or [])}")
    skipped = []
    if is_voc(root):
        sets = root / "ImageSets" / "Segmentation"
        if not (sets / "train.txt").is_file():
            raise IntedgeError(f"{sets} has no train.txt; list the training image stems there, one a line")
        x, y = _read_split(_voc_pairs(root, "train"), input_shape, on_bad_image, skipped, sets / "train.txt")
        val = (sets / "val.txt").is_file()
        if val:
            xv, yv = _read_split(_voc_pairs(root, "val"), input_shape, on_bad_image, skipped, sets / "val.txt")
    else:
        train_dir = root / "train" if (root / "train").is_dir() else root
        x, y = _read_split(_folder_pairs(train_dir), input_shape, on_bad_image, skipped, train_dir)
        val = train_dir != root and (root / "val").is_dir() and is_layout(root / "val")
        if val:
            xv, yv = _read_split(_folder_pairs(root / "val"), input_shape, on_bad_image, skipped, root / "val")
    if not val:
        x, y, xv, yv = split(x, y, val_split, seed)
    names = class_names_file(root, VOC_CLASSES if is_voc(root) else None)
    warn_skipped(skipped)
    return Dataset(x, y, xv, yv, class_names=names, source=str(root), skipped=skipped, task="segment")


def masks_for(y, output_shape, what):
    """Masks [N, H, W] as the loss reads them: int32 [N, Ho * Wo] at the output's size (nearest),
    every pixel a class index below the output's channel count or IGNORE_LABEL."""
    y = np.asarray(y)
    if y.ndim != 3:
        raise IntedgeError(f"{what}: masks must be [N, H, W] class indices, got shape {list(y.shape)}")
    classes, ho, wo = output_shape[0], output_shape[-2], output_shape[-1]
    if y.shape[1:] != (ho, wo):
        y = y[:, (np.arange(ho) * y.shape[1]) // ho][:, :, (np.arange(wo) * y.shape[2]) // wo]
    bad = (y != IGNORE_LABEL) & ((y < 0) | (y >= classes))
    if bad.any():
        i = np.argwhere(bad)[0]
        raise IntedgeError(f"{what}: mask {i[0]} has class {int(y[tuple(i)])} at pixel ({i[1]}, {i[2]}), outside "
                           f"[0, {classes}) for a model with {classes} output channels (255 marks ignored pixels); "
                           "relabel the masks or give the model more channels")
    return np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.int32)


def augment_pair(x, y, kinds, rng):
    """Random crop with zero padding (H/8 pixels; the mask pads with IGNORE_LABEL) and horizontal
    flip, on uint8 images [n, C, H, W] and their masks [n, H, W], moving both the same way."""
    if not kinds:
        return x, y
    plan = augment_plan(len(x), x.shape[2], kinds, rng)
    return apply_plan(x, plan), apply_plan(y[:, None], plan, fill=IGNORE_LABEL)[:, 0]


def confusion(logits, labels, classes):
    """[classes, classes] counts (row: label, column: predicted) over the labelled pixels;
    logits [N, C * P] (channel-major), labels [N, P]."""
    pred = np.asarray(logits).reshape(len(labels), classes, -1).argmax(axis=1).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    keep = lab != IGNORE_LABEL
    return np.bincount(lab[keep] * classes + pred[keep], minlength=classes * classes).reshape(classes, classes)


def metrics(conf):
    """mIoU (over classes present in the labels or the predictions), pixel accuracy and per-class
    IoU (None for a class absent from both)."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union)]
    present = [v for v in iou if v is not None]
    total = conf.sum()
    return {"miou": float(np.mean(present)) if present else 0.0, "pixel_acc": float(tp.sum() / total) if total else 0.0,
            "iou": iou}


def report(evaluation, class_names, images):
    """`intedge eval`'s report from Trainer.evaluate_prepared's segmentation results."""
    conf = evaluation["confusion"]
    n = len(conf)
    names = list(class_names or [])[:n]
    names += [str(i) for i in range(len(names), n)]
    return {"task": "segment", "images": int(images), "pixels": int(conf.sum()), "miou": evaluation["miou"],
            "pixel_accuracy": evaluation["pixel_acc"], "loss": evaluation["loss"],
            "per_class_iou": dict(zip(names, evaluation["iou"])), "classes": names, "confusion_matrix": conf.tolist()}


def format_report(r):
    width = max(5, max(len(s) for s in r["classes"]))
    lines = [f"images {r['images']}   pixels {r['pixels']}   mIoU {r['miou']:.4f}   pixel accuracy "
             f"{r['pixel_accuracy']:.4f}   loss {r['loss']:.4f}", "", f"{'class':<{width}}     IoU"]
    for name in r["classes"]:
        iou = r["per_class_iou"][name]
        lines.append(f"{name:<{width}}  {'   -  ' if iou is None else f'{iou:6.4f}'}")
    return "\n".join(lines)


def palette(classes):
    """A colour per class index, Pascal VOC's bit-interleaved palette (class 0 black), as uint8
    [max(classes, 256), 3]: the same colours as VOC's own SegmentationClass PNGs."""
    pal = np.zeros((max(classes, 256), 3), np.uint8)
    for i in range(len(pal)):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def write_predictions(out_dir, paths, images, outputs, class_names):
    """`intedge predict` for segmentation: for each image, OUT/<stem>_mask.png (a palette PNG of
    class indices, the argmax of the output, at the output's size) and OUT/<stem>_overlay.png (the
    image with the mask's colours blended in where the class is not 0, at the image's size).
    images: uint8 [N, C, H, W]; outputs: float [N, classes, h, w]. Returns the files written."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = np.asarray(outputs)
    pal = palette(outputs.shape[1])
    written = []
    for path, img, out in zip(paths, images, outputs):
        mask = out.argmax(0).astype(np.uint8)
        m = Image.fromarray(mask, mode="P")
        m.putpalette(pal.reshape(-1).tolist())
        stem = Path(path).stem
        m.save(out_dir / f"{stem}_mask.png")
        rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
        rgb = rgb.transpose(1, 2, 0).astype(np.float32)
        big = np.asarray(Image.fromarray(mask).resize(rgb.shape[1::-1], Image.NEAREST))
        colour = pal[big].astype(np.float32)
        blend = np.where((big > 0)[..., None], 0.5 * rgb + 0.5 * colour, rgb)
        Image.fromarray(blend.round().astype(np.uint8)).save(out_dir / f"{stem}_overlay.png")
        written += [out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png"]
    return written
