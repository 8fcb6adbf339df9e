import numpy as np
from PIL import Image

from ml.photos import collect, is_colour_photo


def noisy_colour(size=(256, 240), seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_colour_photos_are_kept_and_grey_flat_or_tiny_images_are_not():
    assert is_colour_photo(noisy_colour())
    assert not is_colour_photo(noisy_colour().convert("L"))
    assert not is_colour_photo(Image.new("RGB", (300, 300), (200, 30, 30)))  # one flat colour
    assert not is_colour_photo(noisy_colour(size=(120, 90)))


def test_collect_splits_held_out_photos_and_writes_rgb_png(tmp_path):
    sources = [
        ("a.jpg", noisy_colour(seed=1)),
        ("b.png", noisy_colour(seed=2).convert("RGBA")),
        ("grey.png", noisy_colour(seed=3).convert("L")),
    ]
    counts = collect(tmp_path, iter(sources), holdout={"b.png"})
    assert counts == {"train": 1, "holdout": 1, "skipped": 1}
    assert Image.open(tmp_path / "train" / "a.png").mode == "RGB"
    assert Image.open(tmp_path / "holdout" / "b.png").mode == "RGB"
