"""builtin:mnist-seg and the scenes behind it: real MNIST digits placed on seeded canvases, whose
masks and boxes describe the same strokes."""
import numpy as np

from intedge.data import load_data, load_mnist_5k
from intedge.scenes import STROKE, mnist_scenes, render


def test_scenes_are_seeded_and_their_masks_and_boxes_describe_the_same_strokes():
    ds = load_mnist_5k(0)
    digits, labels = ds.x_train[:100, 0], ds.y_train[:100]
    a = render(digits, labels, 40, 48, 56, seed=3)
    b = render(digits, labels, 40, 48, 56, seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(a[:2], b[:2])) and all(map(np.array_equal, a[2], b[2]))
    images, masks, boxes = a
    assert images.shape == masks.shape == (40, 48, 56)
    counts = [len(bx) for bx in boxes]
    assert min(counts) >= 1 and max(counts) <= 4 and sum(counts) > 60
    for img, mask, bx in zip(images, masks, boxes):
        covered = np.zeros(mask.shape, bool)
        for c, x, y, w, h in bx:
            assert w > 0 and h > 0 and x + w <= 56 and y + h <= 48
            inside = mask[y:y + h, x:x + w] == c + 1
            # tight: the class's strokes touch all four sides of its box
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[y:y + h, x:x + w] = True
        # every labelled pixel is a stroke inside some box, every stroke pixel is labelled
        assert not (mask[~covered] > 0).any()
        assert np.array_equal(mask > 0, img >= STROKE)


def test_builtin_mnist_seg_fits_the_model_input_and_splits_digits_like_mnist_5k():
    ds = load_data("builtin:mnist-seg", input_shape=(3, 40, 32), task="segment")
    assert ds.task == "segment" and ds.x_train.shape == (2000, 3, 40, 32) and ds.y_val.shape == (500, 40, 32)
    assert np.array_equal(ds.x_train[:, 0], ds.x_train[:, 2]) and ds.x_train.dtype == np.uint8
    assert ds.class_names[0] == "background" and ds.y_train.max() == 10
    fg = (ds.y_train > 0).mean()
    assert 0.03 < fg < 0.2  # digits are sparse strokes, the rest is background
    sc = mnist_scenes(40, 32, seed=0)
    assert np.array_equal(sc["val"][1], ds.y_val)
