import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.data import (
    Augmentation,
    Draw,
    PhotoBatches,
    SkipCounter,
    apply_draw,
    augment_photo,
    colour_jitter_array,
    list_images,
    make_dataset,
    resized_size,
    rotation_margin,
)
from tests.helpers import BASE_DIR


def save_image(path: Path, mode: str, size=(48, 40), seed=0, format=None) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format)
    return path


@pytest.fixture
def photo_tree(tmp_path):
    """COCO-like folder: colour JPEGs, a greyscale PNG, an RGBA PNG, one corrupt file."""
    root = tmp_path / "train2014"
    save_image(root / "COCO_1.jpg", "RGB", seed=1)
    save_image(root / "COCO_2.JPG", "RGB", seed=2)
    save_image(root / "nested" / "grey.png", "L", seed=3)
    save_image(root / "nested" / "alpha.png", "RGBA", seed=4)
    (root / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_list_images_finds_jpeg_and_png_recursively_and_sorted(photo_tree):
    names = [Path(path).relative_to(photo_tree).as_posix() for path in list_images(photo_tree)]
    assert names == sorted(names)
    assert set(names) == {
        "COCO_1.jpg", "COCO_2.JPG", "nested/grey.png", "nested/alpha.png", "nested/corrupt.jpg",
    }


def test_list_images_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


def test_make_dataset_skips_and_counts_the_corrupt_file(photo_tree):
    skips = SkipCounter()
    dataset = make_dataset(photo_tree, size=32, batch=1, repeat=False, shuffle=False, skips=skips)
    images = [batch[0] for batch in dataset.as_numpy_iterator()]
    assert len(images) == 4
    assert list(skips.skipped) == [str(photo_tree / "nested" / "corrupt.jpg")]
    assert skips.count == 1


def test_make_dataset_counts_files_the_decoder_drops_when_not_validated(photo_tree):
    skips = SkipCounter()
    dataset = make_dataset(
        photo_tree, size=32, batch=1, repeat=False, validate=False, skips=skips
    )
    assert len(list(dataset.as_numpy_iterator())) == 4
    assert skips.skipped == {}
    assert skips.late_failures == 1
    assert skips.count == 1


def test_make_dataset_batches_have_shape_dtype_and_range(photo_tree):
    dataset = make_dataset(photo_tree, size=32, batch=3, seed=7)
    for batch in dataset.take(3).as_numpy_iterator():
        assert batch.shape == (3, 32, 32, 3)
        assert batch.dtype == np.float32
        assert 0.0 <= batch.min() and batch.max() <= 255.0
        assert batch.max() > 1.0  # [0, 255], not [0, 1]


def test_make_dataset_turns_greyscale_and_rgba_into_rgb(tmp_path):
    save_image(tmp_path / "grey" / "g.png", "L")
    save_image(tmp_path / "alpha" / "a.png", "RGBA")
    grey = next(make_dataset(tmp_path / "grey", size=24, batch=1).as_numpy_iterator())[0]
    alpha = next(make_dataset(tmp_path / "alpha", size=24, batch=1).as_numpy_iterator())[0]
    assert grey.shape == alpha.shape == (24, 24, 3)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 1], grey[..., 2])


def test_make_dataset_is_reproducible_for_a_seed(photo_tree):
    first = next(make_dataset(photo_tree, size=32, batch=2, seed=3).as_numpy_iterator())
    again = next(make_dataset(photo_tree, size=32, batch=2, seed=3).as_numpy_iterator())
    np.testing.assert_array_equal(first, again)


def test_photo_batches_shapes_and_skips(photo_tree):
    batches = PhotoBatches(photo_tree, size=32, batch=2, seed=5)
    assert len(batches) == 2  # 4 readable photos
    assert list(batches.skips.skipped) == [str(photo_tree / "nested" / "corrupt.jpg")]
    for index in range(len(batches)):
        batch = batches[index]
        assert batch.shape == (2, 32, 32, 3)
        assert batch.dtype == np.float32
        assert 0.0 <= batch.min() and batch.max() <= 255.0


def test_photo_batches_replaces_and_counts_a_file_that_breaks_later(photo_tree):
    batches = PhotoBatches(photo_tree, size=32, batch=4, shuffle=False)
    broken = batches.paths[0]
    Path(broken).write_bytes(b"truncated")
    assert batches[0].shape == (4, 32, 32, 3)
    assert broken in batches.skips.skipped


def test_photo_batches_reshuffle_each_epoch_reproducibly(photo_tree):
    one = PhotoBatches(photo_tree, size=32, batch=2, seed=9)
    two = PhotoBatches(photo_tree, size=32, batch=2, seed=9)
    np.testing.assert_array_equal(one[0], two[0])
    one.on_epoch_end()
    assert one.epoch == 1
    assert not np.array_equal(one[0], two[0])


def test_data_module_imports_and_batches_without_tensorflow(photo_tree):
    # The GPU machine runs Keras on jax/torch with no TensorFlow installed. No
    # such backend is installed here, so a stand-in keras module plays Keras
    # while TensorFlow is made unimportable.
    script = (
        "import sys, types\n"
        "class BlockTensorflow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ImportError('tensorflow blocked')\n"
        "sys.meta_path.insert(0, BlockTensorflow())\n"
        "class PyDataset:\n"
        "    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):\n"
        "        pass\n"
        "keras = types.ModuleType('keras')\n"
        "keras.utils = types.SimpleNamespace(PyDataset=PyDataset)\n"
        "sys.modules['keras'] = keras\n"
        "import ml.data\n"
        f"batch = ml.data.PhotoBatches({str(photo_tree)!r}, size=16, batch=2)[0]\n"
        "assert batch.shape == (2, 16, 16, 3), batch.shape\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(BASE_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


# --------------------------------------------------------------------------- augmentation


def smooth_photo(size=(64, 64), seed=0) -> Image.Image:
    """Smooth colour shapes (interpolation-friendly) with a little noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    base = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    return Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))


def test_augment_photo_changes_the_image_and_keeps_shape_dtype_and_range():
    image = smooth_photo((80, 60), seed=1)
    plain = augment_photo(image, 48, np.random.default_rng(3), Augmentation().plain())
    augmented = augment_photo(image, 48, np.random.default_rng(3))  # on by default
    assert augmented.shape == plain.shape == (48, 48, 3)
    assert augmented.dtype == np.float32
    assert 0.0 <= augmented.min() and augmented.max() <= 255.0
    assert np.abs(augmented - plain).mean() > 1.0
    # Still the same photo: mild changes only.
    assert np.abs(augmented - plain).mean() < 25.0


def test_augment_off_is_exactly_scale_crop_and_flip():
    # A photo of exactly the crop size at scale 1 comes back as itself or its mirror.
    image = smooth_photo((32, 32), seed=2)
    pixels = np.asarray(image, dtype=np.float32)
    mirrored = pixels[:, ::-1]
    flips = 0
    augmentation = Augmentation(scale_range=(1.0, 1.0))
    for seed in range(8):
        out = augment_photo(image, 32, np.random.default_rng(seed), augmentation.plain())
        assert np.array_equal(out, pixels) or np.array_equal(out, mirrored)
        flips += np.array_equal(out, mirrored)
        on = augment_photo(image, 32, np.random.default_rng(seed), augmentation)
        assert not (np.array_equal(on, pixels) or np.array_equal(on, mirrored))
    assert 0 < flips < 8


def test_rotation_leaves_no_empty_corners():
    image = Image.new("RGB", (50, 40), (200, 180, 160))
    for seed in range(6):
        out = augment_photo(image, 40, np.random.default_rng(seed), Augmentation(
            scale_range=(1.0, 1.2), max_rotation=10.0, colour_jitter=0.0))
        np.testing.assert_allclose(out, np.broadcast_to([200, 180, 160], out.shape), atol=1.0)


def test_rotation_turns_the_crop_by_a_few_degrees():
    # A vertical edge leans by at most tan(max_rotation) across the crop.
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, 32:] = 255
    image = Image.fromarray(pixels)

    def edge(row):  # column where the row crosses from one side to the other
        return int(np.argmax(np.abs(np.diff(row[:, 0])) > 60))

    leans = []
    for seed in range(8):
        out = augment_photo(image, 64, np.random.default_rng(seed), Augmentation(
            scale_range=(1.0, 1.0), max_rotation=8.0, colour_jitter=0.0))
        leans.append(abs(edge(out[4]) - edge(out[59])))
    assert max(leans) >= 3  # rotated
    assert max(leans) <= int(np.ceil(np.tan(np.radians(8.0)) * 55)) + 1  # a few degrees only


def test_colour_jitter_scales_brightness_contrast_and_saturation():
    pixels = np.asarray(smooth_photo((16, 16), seed=3), dtype=np.float32)
    np.testing.assert_allclose(colour_jitter_array(pixels, 1, 1, 1), pixels, atol=1e-3)
    brighter = colour_jitter_array(pixels, 1.05, 1, 1)
    assert brighter.mean() == pytest.approx(np.clip(pixels * 1.05, 0, 255).mean(), rel=1e-4)
    grey = colour_jitter_array(pixels, 1, 1, 0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-3)
    flat = colour_jitter_array(pixels, 1, 0, 1)
    assert flat.std() < pixels.std() / 2
    assert colour_jitter_array(pixels * 0 + 250, 1.1, 1.1, 1.1).max() <= 255.0


def test_photo_batches_augment_by_default_and_can_switch_it_off(photo_tree):
    on = PhotoBatches(photo_tree, size=32, batch=2, seed=5)
    off = PhotoBatches(photo_tree, size=32, batch=2, seed=5,
                       augmentation=Augmentation().plain())
    assert on.augmentation == Augmentation() and off.augmentation.max_rotation == 0.0
    assert not np.array_equal(on[0], off[0])
    assert 0.0 <= on[0].min() and on[0].max() <= 255.0


def single_photo_folder(folder: Path, image: Image.Image) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / "photo.png")
    return folder


def test_make_dataset_augment_off_is_exactly_scale_crop_and_flip(tmp_path):
    image = smooth_photo((32, 32), seed=4)
    pixels = np.asarray(image, dtype=np.float32)
    root = single_photo_folder(tmp_path / "one", image)
    augmentation = Augmentation(scale_range=(1.0, 1.0))
    plain = make_dataset(root, size=32, batch=1, augmentation=augmentation.plain())
    for batch in plain.take(6).as_numpy_iterator():
        assert np.array_equal(batch[0], pixels) or np.array_equal(batch[0], pixels[:, ::-1])
    augmented = make_dataset(root, size=32, batch=1, augmentation=augmentation)
    for batch in augmented.take(6).as_numpy_iterator():
        out = batch[0]
        assert out.shape == (32, 32, 3) and 0.0 <= out.min() and out.max() <= 255.0
        assert not (np.array_equal(out, pixels) or np.array_equal(out, pixels[:, ::-1]))
        assert np.abs(out - pixels).mean() < 40.0 or np.abs(out - pixels[:, ::-1]).mean() < 40.0


def test_make_dataset_rotation_leaves_no_empty_corners(tmp_path):
    root = single_photo_folder(tmp_path / "flat", Image.new("RGB", (50, 40), (200, 180, 160)))
    dataset = make_dataset(root, size=40, batch=1, augmentation=Augmentation(
        scale_range=(1.0, 1.2), max_rotation=10.0, colour_jitter=0.0))
    for batch in dataset.take(6).as_numpy_iterator():
        np.testing.assert_allclose(batch[0], np.broadcast_to([200, 180, 160], batch[0].shape),
                                   atol=1.0)


def test_make_dataset_colour_jitter_changes_colours_within_range(tmp_path):
    root = single_photo_folder(tmp_path / "one", smooth_photo((32, 32), seed=6))
    base = Augmentation(scale_range=(1.0, 1.0), max_rotation=0.0, colour_jitter=0.0)
    jittered = make_dataset(root, size=32, batch=1, seed=2,
                            augmentation=replace(base, colour_jitter=0.2))
    base = make_dataset(root, size=32, batch=1, seed=2, augmentation=base)
    for a, b in zip(base.take(4).as_numpy_iterator(), jittered.take(4).as_numpy_iterator()):
        assert not np.allclose(a, b, atol=0.5)
        assert 0.0 <= b.min() and b.max() <= 255.0


def test_make_dataset_rotation_turns_the_crop_by_a_few_degrees(tmp_path):
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, 32:] = 255
    root = single_photo_folder(tmp_path / "edge", Image.fromarray(pixels))
    dataset = make_dataset(root, size=64, batch=1, augmentation=Augmentation(
        scale_range=(1.0, 1.0), max_rotation=8.0, colour_jitter=0.0))

    def edge(row):
        return int(np.argmax(np.abs(np.diff(row[:, 0])) > 60))

    leans = [abs(edge(batch[0][4]) - edge(batch[0][59]))
             for batch in dataset.take(8).as_numpy_iterator()]
    assert max(leans) >= 3
    assert max(leans) <= int(np.ceil(np.tan(np.radians(8.0)) * 55)) + 1


def test_crushing_blacks_makes_the_darks_flat_black_and_keeps_white():
    from ml.data import crush_blacks_array

    pixels = np.linspace(0, 255, 256, dtype=np.float32).reshape(16, 16, 1).repeat(3, -1)
    crushed = crush_blacks_array(pixels, 60.0)
    assert (crushed[pixels < 60] == 0).all() and (crushed[pixels > 61] > 0).all()
    assert crushed.max() == pytest.approx(255.0) and np.all(np.diff(crushed[..., 0].ravel()) >= 0)
    np.testing.assert_allclose(crush_blacks_array(pixels, 0.0), pixels)


def test_both_pipelines_crush_the_darks_when_asked(tmp_path):
    # A photo with a dark half: crushed, the dark half is darker, flat black when the
    # random level is over its 30 levels; the bright half stays light.
    pixels = np.full((40, 40, 3), 200, np.uint8)
    pixels[:, :20] = 30
    root = single_photo_folder(tmp_path / "dark", Image.fromarray(pixels))
    never = Augmentation(scale_range=(1.0, 1.0), max_rotation=0.0, colour_jitter=0.0)
    always = replace(never, crush_blacks=1.0)
    options = dict(size=32, batch=1)
    flat_black = 0
    for plain, crushed in zip(make_dataset(root, **options, augmentation=never).take(16)
                              .as_numpy_iterator(),
                              make_dataset(root, **options, augmentation=always).take(16)
                              .as_numpy_iterator()):
        assert plain.min() >= 29 and plain.max() <= 201
        assert crushed.min() <= 30.0 and crushed.max() >= 174  # 200 at a level of 80
        flat_black += bool((crushed == 0).mean() > 0.2)
    assert flat_black >= 2  # the level is drawn up to 80: over 30 five times in eight
    plain = PhotoBatches(root, **options, seed=3, augmentation=never)[0]
    crushed = PhotoBatches(root, **options, seed=3, augmentation=always)[0]
    dark = plain < 100
    assert dark.mean() > 0.2 and (crushed[dark] < plain[dark]).all()


def test_crushing_never_makes_a_dark_photo_wholly_flat():
    """A photo darker than the drawn level all over would go flat black, and a flat
    input makes every instance norm of the net divide by its epsilon: gradients of
    1e37 and NaN (the bank run at step 19,819). The level is capped by the photo's
    brightest quarter, in both pipelines' arithmetic."""
    import tensorflow as tf

    from ml.data import CRUSH_MAX_LEVEL, crush_blacks_array

    rng = np.random.default_rng(0)
    dark = rng.uniform(5, 60, (32, 32, 3)).astype(np.float32)  # all under 80
    for crushed in (crush_blacks_array(dark, CRUSH_MAX_LEVEL),
                    crush_blacks_array(tf.constant(dark), CRUSH_MAX_LEVEL).numpy()):
        assert (crushed > 0).mean() > 0.25 and crushed.std() > 10
    # A photo with light in it is crushed at the drawn level, as before.
    light = dark.copy()
    light[:, 8:] += 150
    expected = np.maximum(light - 60.0, 0) * (255.0 / 195.0)
    np.testing.assert_allclose(crush_blacks_array(light, 60.0), expected, rtol=1e-5)
    np.testing.assert_allclose(crush_blacks_array(tf.constant(light), 60.0).numpy(), expected,
                               rtol=1e-5)


# --------------------------------------------------------------------------- one augmentation


def test_an_augmentation_is_checked_and_plain_keeps_only_scale_crop_and_flip():
    augmentation = Augmentation(scale_range=[1, 2], crush_blacks=0.3)
    assert augmentation.scale_range == (1.0, 2.0)
    assert augmentation.plain() == Augmentation(scale_range=(1.0, 2.0), max_rotation=0.0,
                                                colour_jitter=0.0)
    for wrong in (dict(scale_range=(0.9, 1.2)), dict(scale_range=(1.3, 1.2)),
                  dict(max_rotation=-1.0), dict(colour_jitter=1.0), dict(crush_blacks=1.5),
                  dict(crush_max_level=255.0)):
        with pytest.raises(ValueError):
            Augmentation(**wrong)


@pytest.mark.parametrize("draw", [
    Draw(32, 0, 5, False),
    Draw(40, 3, 11, True),
    Draw(36, 2, 4, False, rotation_margin(32, 8.0), 6.0),
    Draw(36, 2, 4, True, rotation_margin(32, 8.0), -7.5),
    Draw(32, 0, 9, False, jitter=(1.1, 0.85, 1.2)),
    Draw(32, 0, 9, False, crush_level=60.0),
    Draw(45, 10, 20, True, rotation_margin(32, 8.0), 4.0, (0.9, 1.15, 0.8), 70.0),
], ids=["crop", "scale-flip", "rotate", "rotate-back-flip", "jitter", "crush", "all"])
def test_both_executions_carry_out_a_draw_alike(draw):
    """The same draw, carried out by Pillow + NumPy and by TensorFlow, gives the same
    pixels but for rounding (Pillow keeps uint8 between its resize and its rotation):
    a rotation the other way, a flip, a jitter or crush applied differently is tens
    of levels off."""
    import tensorflow as tf

    from ml.data import tf_apply_draw

    image = smooth_photo((80, 60), seed=1)
    pillow = apply_draw(image, 32, draw)
    tensorflow = tf_apply_draw(tf.constant(np.asarray(image), tf.float32), 32, draw).numpy()
    assert pillow.shape == tensorflow.shape == (32, 32, 3)
    assert pillow.dtype == tensorflow.dtype == np.float32
    assert 0.0 <= pillow.min() and pillow.max() <= 255.0
    assert np.abs(pillow - tensorflow).mean() < 1.0
    assert np.abs(pillow - tensorflow).max() < 4.0


def test_both_pipelines_resize_to_the_same_shape():
    import tensorflow as tf

    from ml.data import _tf_resized_shape

    for width, height, target in [(80, 60, 32), (21, 23, 22), (23, 21, 46), (640, 427, 333),
                                  (500, 375, 299), (427, 640, 256), (100, 100, 130)]:
        expected = resized_size((width, height), target)
        assert min(expected) == target and max(expected) >= target
        resized = _tf_resized_shape(tf.constant([height, width]), tf.constant(target)).numpy()
        assert (int(resized[1]), int(resized[0])) == expected


def check_draws(draws: list[Draw], augmentation: Augmentation, size: int, photo_size):
    """A run of one pipeline's draws shows each field of ``augmentation``."""
    low, high = (int(np.ceil(size * scale)) for scale in augmentation.scale_range)
    targets = [int(d.target) for d in draws]
    assert low <= min(targets) and max(targets) <= high
    assert max(targets) - min(targets) >= 0.8 * (high - low)
    for d in draws:
        width, height = resized_size(photo_size, int(d.target))
        assert 0 <= int(d.left) <= width - size and 0 <= int(d.top) <= height - size
    assert 0.35 < np.mean([bool(d.flip) for d in draws]) < 0.65
    assert {int(d.margin) for d in draws} == {augmentation.margin(size)}
    angles = np.array([float(d.angle) for d in draws])
    most = augmentation.max_rotation
    assert np.abs(angles).max() <= most and (angles.min() < -0.9 * most or most == 0)
    assert angles.max() > 0.9 * most or most == 0 == angles.max()
    if augmentation.colour_jitter:
        factors = np.array([[float(f) for f in d.jitter] for d in draws])
        lowest, highest = augmentation.jitter_range
        assert lowest <= factors.min() < lowest + 0.1 * (highest - lowest)
        assert highest - 0.1 * (highest - lowest) < factors.max() <= highest
    else:
        assert all(d.jitter is None for d in draws)
    if augmentation.crush_blacks:
        levels = np.array([float(d.crush_level) if d.crush_level is not None else 0.0
                           for d in draws])
        crushed = levels[levels > 0]
        assert abs(len(crushed) / len(draws) - augmentation.crush_blacks) < 0.1
        assert 0.8 * augmentation.crush_max_level < crushed.max()
        assert crushed.max() <= augmentation.crush_max_level
    else:
        assert all(d.crush_level is None for d in draws)


@pytest.mark.parametrize("augmentation", [
    Augmentation(),
    Augmentation(scale_range=(1.2, 1.5), max_rotation=8.0, colour_jitter=0.2, crush_blacks=0.5),
    Augmentation(colour_jitter=0.0, crush_blacks=1.0, crush_max_level=40.0),
    Augmentation(scale_range=(1.1, 1.1), max_rotation=0.0),
    Augmentation().plain(),
], ids=["default", "strong", "no-jitter-crush-40", "no-rotation", "plain"])
def test_both_pipelines_draw_what_one_augmentation_says(augmentation):
    """Both pipelines take their random numbers from the one Augmentation: each field,
    changed or zeroed, shows in the NumPy draws (PhotoBatches) and in the stateless tf
    draws (make_dataset) alike."""
    import tensorflow as tf

    from ml.data import tf_draw

    size, photo_size, count = 32, (80, 60), 300
    numpy = [augmentation.draw(np.random.default_rng(i), photo_size, size) for i in range(count)]
    draw = tf.function(lambda seed: vars(tf_draw(augmentation, size, seed, [60, 80])))
    tensorflow = [Draw(**draw(tf.constant([i, 7 * i + 1], tf.int32))) for i in range(count)]
    for draws in (numpy, tensorflow):
        check_draws(draws, augmentation, size, photo_size)


def test_both_pipelines_built_from_one_augmentation_agree_on_a_photo_of_the_crop_size(
    tmp_path,
):
    """A photo exactly the crop's size at scale 1: plain, both pipelines give it back as
    it is or mirrored; with only the colour jitter on, both keep its layout and change
    its colours within the jitter's reach."""
    image = smooth_photo((32, 32), seed=8)
    pixels = np.asarray(image, dtype=np.float32)
    root = single_photo_folder(tmp_path / "one", image)
    plain = Augmentation(scale_range=(1.0, 1.0)).plain()
    jitter = replace(plain, colour_jitter=0.1)

    def batches(augmentation):
        tf_data = [b[0] for b in make_dataset(root, size=32, batch=1, seed=4,
                                              augmentation=augmentation)
                   .take(6).as_numpy_iterator()]
        py_dataset = PhotoBatches(root, size=32, batch=1, seed=4, augmentation=augmentation)
        for _ in range(6):
            yield from py_dataset[0]
            py_dataset.on_epoch_end()
        yield from tf_data

    for out in batches(plain):
        assert np.array_equal(out, pixels) or np.array_equal(out, pixels[:, ::-1])
    for out in batches(jitter):
        unflipped = out if np.abs(out - pixels).mean() < np.abs(out - pixels[:, ::-1]).mean() \
            else out[:, ::-1]
        assert not np.allclose(unflipped, pixels, atol=0.5)
        # Brightness, contrast and saturation each within 10 %: about 3 x 10 % at most.
        assert np.abs(unflipped - pixels).max() < 0.35 * 255
        assert np.corrcoef(unflipped.mean(-1).ravel(), pixels.mean(-1).ravel())[0, 1] > 0.95


def test_both_pipelines_take_one_photo_feed_and_refuse_what_it_does_not_know(photo_tree):
    from ml.data import PhotoFeed

    feed = PhotoFeed(size=32, batch=2, seed=4, shuffle=False)
    batches = PhotoBatches(photo_tree, workers=2, **vars(feed))
    assert (batches.size, batch_shape := batches[0].shape) == (32, (2, 32, 32, 3))
    assert batches.workers == 2  # the rest goes to keras.utils.PyDataset
    dataset = make_dataset(photo_tree, repeat=False, **vars(feed))
    assert next(dataset.as_numpy_iterator()).shape == batch_shape
    for pipeline in (make_dataset, PhotoBatches):
        with pytest.raises(TypeError):
            pipeline(photo_tree, sise=32)
