import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.data import (
    PhotoBatches,
    SkipCounter,
    fetch_coco2014,
    list_images,
    main,
    make_dataset,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


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
        "keras.utils = types.SimpleNamespace(PyDataset=PyDataset, Progbar=object)\n"
        "sys.modules['keras'] = keras\n"
        "import ml.data\n"
        f"batch = ml.data.PhotoBatches({str(photo_tree)!r}, size=16, batch=2)[0]\n"
        "assert batch.shape == (2, 16, 16, 3), batch.shape\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_fetch_coco2014_downloads_and_unpacks_a_zip(tmp_path, capsys):
    archive = tmp_path / "served" / "train2014.zip"
    archive.parent.mkdir()
    photo = save_image(tmp_path / "src.jpg", "RGB")
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(photo, "train2014/COCO_train2014_000000000009.jpg")
        zipped.write(photo, "train2014/COCO_train2014_000000000025.jpg")

    dest = tmp_path / "coco"
    images_dir = fetch_coco2014(dest, url=archive.as_uri())

    assert images_dir == dest / "train2014"
    assert len(list_images(images_dir)) == 2
    assert not (dest / "train2014.zip").exists()
    assert not list(dest.glob("*.part"))
    # A second call finds the images and downloads nothing.
    archive.unlink()
    assert fetch_coco2014(dest, url=archive.as_uri()) == images_dir


def test_fetch_coco_command_line(tmp_path, capsys):
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(save_image(tmp_path / "src.jpg", "RGB"), "train2014/a.jpg")
    main(["fetch-coco", str(tmp_path / "coco"), "--url", archive.as_uri(), "--keep-zip"])
    assert "1 photos in" in capsys.readouterr().out
    assert (tmp_path / "coco" / "train2014" / "a.jpg").is_file()
    assert (tmp_path / "coco" / "train2014.zip").is_file()


def test_fetch_coco2014_leaves_no_partial_file_when_the_download_fails(tmp_path):
    dest = tmp_path / "coco"
    with pytest.raises(OSError):
        fetch_coco2014(dest, url=(tmp_path / "missing.zip").as_uri())
    assert not list(dest.glob("*"))
