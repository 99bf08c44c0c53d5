"""Data sources: image folders (Pillow), CSV, MNIST-5k, normalization and augmentation."""
import numpy as np
import pytest
from PIL import Image

import intedge
from intedge.data import InputMapping, load_data, parse_normalize
from intedge.images import augment


def make_folder(root, n_classes=3, size=16, val=True, fmt="png", mode="L", limit=None):
    """Real digits (8x8, upscaled) saved as image files, torchvision ImageFolder layout."""
    from sklearn.datasets import load_digits
    d = load_digits()
    count = 0
    for i, (img, t) in enumerate(zip(d.images, d.target)):
        if t >= n_classes or (limit and count >= limit):
            continue
        split = "val" if (val and i % 5 == 0) else "train"
        folder = root / split / f"digit_{t}"
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray((img * 16).clip(0, 255).astype(np.uint8)).resize((size, size))
        im.convert(mode).save(folder / f"{i}.{fmt}")
        count += 1
    return root


def test_image_folder_layout_and_classes(tmp_path):
    make_folder(tmp_path / "d")
    ds = load_data(tmp_path / "d", input_shape=(1, 16, 16))
    assert ds.class_names == ["digit_0", "digit_1", "digit_2"]
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (1, 16, 16)
    assert set(np.unique(ds.y_val)) == {0, 1, 2}
    assert len(ds.x_train) > 3 * len(ds.x_val) > 0


def test_image_folder_resizes_and_converts_channels(tmp_path):
    make_folder(tmp_path / "d", fmt="jpg", mode="RGB", size=20)
    ds = load_data(tmp_path / "d", input_shape=(3, 12, 10))
    assert ds.x_train.shape[1:] == (3, 12, 10)
    gray = load_data(tmp_path / "d", input_shape=(1, 8, 8))
    assert gray.x_train.shape[1:] == (1, 8, 8)


def test_val_split_without_val_folder_is_seeded(tmp_path):
    make_folder(tmp_path / "d", val=False, fmt="bmp")
    a = load_data(tmp_path / "d", input_shape=(1, 16, 16), seed=3, val_split=0.25)
    b = load_data(tmp_path / "d", input_shape=(1, 16, 16), seed=3, val_split=0.25)
    c = load_data(tmp_path / "d", input_shape=(1, 16, 16), seed=4, val_split=0.25)
    assert len(a.x_val) == round(0.25 * (len(a.x_train) + len(a.x_val)))
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.y_val, c.y_val)


def test_folder_errors(tmp_path):
    with pytest.raises(intedge.IntedgeError, match="no class folders"):
        (tmp_path / "empty").mkdir()
        load_data(tmp_path / "empty", input_shape=(1, 8, 8))
    make_folder(tmp_path / "d")
    (tmp_path / "d" / "train" / "hollow").mkdir()
    with pytest.raises(intedge.IntedgeError, match=r"class folder .*hollow has no images"):
        load_data(tmp_path / "d", input_shape=(1, 8, 8))
    (tmp_path / "d" / "train" / "hollow").rmdir()
    with pytest.raises(intedge.IntedgeError, match=r"need a model input of shape \[C, H, W\]"):
        load_data(tmp_path / "d", input_shape=(64,))


def test_corrupt_images_skip_or_fail(tmp_path, capsys):
    make_folder(tmp_path / "d")
    (tmp_path / "d" / "train" / "digit_1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "d" / "train" / "digit_2" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    ds = load_data(tmp_path / "d", input_shape=(1, 16, 16))
    assert len(ds.skipped) == 2
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().err
    with pytest.raises(intedge.IntedgeError, match="cannot decode image .*(bad.png|cut.jpg)"):
        load_data(tmp_path / "d", input_shape=(1, 16, 16), on_bad_image="fail")


def test_csv_with_label_column(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,species,c"] + [f"{x:.3f},{y:.3f},{'cat' if x > y else 'dog'},1.0" for x, y in rng.random((50, 2))]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    ds = load_data(tmp_path / "d.csv", label_column="species")
    assert ds.class_names == ["cat", "dog"] and ds.x_train.shape[1] == 3
    with pytest.raises(intedge.IntedgeError, match="no column named 'kind'"):
        load_data(tmp_path / "d.csv", label_column="kind")
    with pytest.raises(intedge.IntedgeError, match="--label-column"):
        load_data(tmp_path / "d.csv")


def test_mnist_5k_builtin():
    ds = load_data("builtin:mnist-5k", seed=0)
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_val.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
    assert np.bincount(ds.y_train, minlength=10).min() > 300


def test_normalize_parsing_and_auto():
    m = parse_normalize("0.5,0.25", 3)
    assert m.mean == (0.5,) * 3 and m.std == (0.25,) * 3
    with pytest.raises(intedge.IntedgeError, match="3 channel"):
        parse_normalize("1,2,3", 3)
    with pytest.raises(intedge.IntedgeError, match="positive"):
        parse_normalize("0.5,0", 1)
    x = np.random.default_rng(0).integers(0, 256, (100, 2, 4, 4)).astype(np.uint8)
    auto = parse_normalize("auto", 2, x)
    ref = (x / 255.0).reshape(100, 2, -1)
    np.testing.assert_allclose(auto.mean, ref.mean(axis=(0, 2)), rtol=1e-9)
    np.testing.assert_allclose(auto.std, ref.std(axis=(0, 2)), rtol=1e-9)


def test_uint8_input_mapping_matches_float_normalization():
    """Pixels through the runtime's integer mapping land where (p/255 - mean)/std does."""
    import build_mlp
    ds = load_data("builtin:mnist-5k", seed=0)
    mapping = InputMapping(1, (0.1307,), (0.3081,))
    model = build_mlp.build_mlp([784, 64, 10], input_shape=(1, 28, 28), seed=0)
    t8 = intedge.Trainer(model, input_format="u8", input_mapping=mapping)
    tf = intedge.Trainer(model, input_format="f32")
    x = ds.x_val[:256]
    a = t8.predict(x)
    b = tf.predict(t8.float_inputs(x))
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97
    assert np.abs(a - b).max() < 0.1 * np.abs(b).max()


def random_images(n, c=2, h=8, w=8):
    """uint8 images of nonzero pixels (zero marks padding) that no mirror or shift leaves as
    they were."""
    return np.random.default_rng(7).integers(1, 256, (n, c, h, w)).astype(np.uint8)


def test_augmentation_is_seeded_and_shape_preserving():
    x = random_images(16)
    a = augment(x, ("crop", "flip"), np.random.default_rng([1, 2]))
    b = augment(x, ("crop", "flip"), np.random.default_rng([1, 2]))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert not np.array_equal(a, augment(x, ("crop", "flip"), np.random.default_rng([1, 3])))


def test_flip_mirrors_about_half_the_samples():
    x = random_images(400)
    out = augment(x, ("flip",), np.random.default_rng(0))
    mirrored = np.array([np.array_equal(o, s[:, :, ::-1]) for o, s in zip(out, x)])
    kept = np.array([np.array_equal(o, s) for o, s in zip(out, x)])
    assert np.all(mirrored ^ kept)  # each sample is itself or exactly its mirror
    assert 160 <= mirrored.sum() <= 240, mirrored.sum()  # Binomial(400, 1/2): 200 +- 10 sd


def test_crop_shifts_content_by_the_drawn_offsets():
    """Crop pads by H/8 (2 here) with zeros and cuts the H x W window at offsets (dy, dx) drawn
    uniformly in [0, 2 pad]: the sample moves by (pad - dy, pad - dx), zeros where it left."""
    n, h, w, pad = 300, 16, 16, 2
    x = random_images(n, c=1, h=h, w=w)
    out = augment(x, ("crop",), np.random.default_rng(5))
    replica = np.random.default_rng(5)  # the same draws, in the same order
    dy, dx = replica.integers(0, 2 * pad + 1, n), replica.integers(0, 2 * pad + 1, n)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for i in range(n):
        windows = [(oy, ox) for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)
                   if np.array_equal(out[i], padded[i, :, oy:oy + h, ox:ox + w])]
        assert windows == [(dy[i], dx[i])], (i, windows)
    assert len(set(zip(dy, dx))) == (2 * pad + 1) ** 2  # every offset occurs
