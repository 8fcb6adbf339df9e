import io

import numpy as np
import pytest
from PIL import Image

from stylize.imaging import encoding, loading, postprocessing, tiling
from tests.helpers import identity


def saved(image: Image.Image, format: str, **params) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    buffer.seek(0)
    return buffer


def textured_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients (so tiles differ in their statistics) plus fine texture."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    channels = [
        40 + 170 * cols / width,
        30 + 190 * rows / height,
        128 + 90 * np.sin(rows / 37 + cols / 53),
    ]
    return np.clip(np.stack(channels, axis=-1) + noise, 0, 255).astype(np.uint8)


def instance_norm_like(batch: np.ndarray) -> np.ndarray:
    """A tone that depends on the input's own statistics, like an instance-normalised net."""
    values = batch.astype(np.float64)
    mean = values.mean(axis=(1, 2), keepdims=True)
    std = values.std(axis=(1, 2), keepdims=True) + 1e-6
    return np.clip(128 + 50 * (values - mean) / std, 0, 255).round().astype(np.uint8)


def naive_tiles(photo: np.ndarray, run, tile: int) -> np.ndarray:
    out = np.empty_like(photo)
    for top in range(0, photo.shape[0], tile):
        for left in range(0, photo.shape[1], tile):
            window = photo[None, top : top + tile, left : left + tile]
            out[top : top + tile, left : left + tile] = run(window)[0]
    return out


def error_against_whole(result: np.ndarray, whole: np.ndarray) -> float:
    return float(np.abs(result.astype(np.float64) - whole).mean())


# --------------------------------------------------------------------------- load_photo


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90° clockwise
    source = saved(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)

    photo = loading.load_photo(source, max_side=100)

    assert photo.shape == (40, 20, 3)
    assert photo[2, 10, 0] > 200 and photo[2, 10, 2] < 60  # the red half is now on top
    assert photo[-3, 10, 2] > 200 and photo[-3, 10, 0] < 60


@pytest.mark.parametrize(
    ("image", "format", "expected"),
    [
        (Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "PNG", (255, 255, 255)),  # transparent -> white
        (Image.new("RGBA", (8, 6), (255, 0, 0, 255)), "PNG", (255, 0, 0)),
        (Image.new("LA", (8, 6), (0, 0)), "PNG", (255, 255, 255)),
        (Image.new("L", (8, 6), 100), "PNG", (100, 100, 100)),
        (
            Image.new("RGB", (8, 6), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE),
            "PNG",
            (10, 200, 30),
        ),
        (Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (Image.new("I;16", (8, 6), 65535), "PNG", (255, 255, 255)),
        (Image.new("I;16", (8, 6), 32896), "PNG", (128, 128, 128)),
    ],
    ids=["rgba-clear", "rgba-opaque", "la-clear", "l", "p", "cmyk", "16bit-white", "16bit-mid"],
)
def test_any_mode_loads_as_rgb_uint8(image, format, expected):
    photo = loading.load_photo(saved(image, format), max_side=100)

    assert photo.dtype == np.uint8 and photo.shape == (6, 8, 3)
    assert np.abs(photo.astype(int) - expected).max() <= 3


def test_palette_with_transparent_index_is_composited_on_white():
    image = Image.new("P", (8, 6), 0)
    image.putpalette([0, 0, 0] * 256)
    photo = loading.load_photo(saved(image, "PNG", transparency=0), max_side=100)

    assert (photo == 255).all()


def test_large_photo_is_downscaled_keeping_aspect(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(textured_photo(300, 800)).save(path)

    photo = loading.load_photo(path, max_side=200)

    assert photo.shape == (75, 200, 3)


def test_large_jpeg_is_downscaled_to_exact_size():
    source = saved(Image.fromarray(textured_photo(1000, 600)), "JPEG")
    photo = loading.load_photo(source, max_side=130)

    assert photo.shape == (130, 78, 3)


def test_small_photo_is_never_upscaled():
    photo = loading.load_photo(saved(Image.new("RGB", (30, 20)), "PNG"), max_side=500)

    assert photo.shape == (20, 30, 3)


def test_animated_gif_gives_its_first_frame():
    colors = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    frames = [Image.new("RGB", (10, 10), color) for color in colors]
    source = saved(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    source.seek(0)
    assert Image.open(source).n_frames == 3
    source.seek(0)

    photo = loading.load_photo(source, max_side=100)

    assert tuple(photo[5, 5]) == (255, 0, 0)


def test_load_photo_rejects_a_non_positive_max_side():
    with pytest.raises(ValueError):
        loading.load_photo(saved(Image.new("RGB", (4, 4)), "PNG"), max_side=0)


# --------------------------------------------------------------------------- stylize_tiled


class Recorder:
    def __init__(self, run):
        self.run = run
        self.shapes = []

    def __call__(self, batch):
        self.shapes.append(batch.shape)
        return self.run(batch)


@pytest.mark.parametrize("size", [(100, 120), (128, 128), (300, 500), (129, 700)])
@pytest.mark.parametrize("match_tone", [True, False])
def test_identity_run_returns_the_photo(size, match_tone):
    photo = textured_photo(*size)
    recorder = Recorder(identity)

    result = tiling.stylize_tiled(photo, recorder, tile=128, overlap=32, match_tone=match_tone)

    assert result.dtype == np.uint8
    assert np.abs(result.astype(int) - photo).max() <= 1
    assert all(shape[0] == 1 and shape[1] <= 128 and shape[2] <= 128 for shape in recorder.shapes)


def test_photo_that_fits_one_tile_goes_through_in_one_pass():
    recorder = Recorder(instance_norm_like)
    photo = textured_photo(128, 100)

    result = tiling.stylize_tiled(photo, recorder, tile=128, overlap=32)

    assert recorder.shapes == [(1, 128, 100, 3)]
    assert np.array_equal(result, instance_norm_like(photo[None])[0])


def test_big_photo_is_sent_as_overlapping_tiles_that_cover_it():
    recorder = Recorder(identity)

    photo = textured_photo(300, 500)
    tiling.stylize_tiled(photo, recorder, tile=128, overlap=32, match_tone=False)

    butt_joined = (300 // 128 + 1) * (500 // 128 + 1)
    assert len(recorder.shapes) > butt_joined
    assert all(shape[1] <= 128 and shape[2] <= 128 for shape in recorder.shapes)


def test_tone_matching_removes_instance_norm_seams():
    photo = textured_photo(300, 500)
    whole = instance_norm_like(photo[None])[0].astype(np.float64)

    naive = error_against_whole(naive_tiles(photo, instance_norm_like, 128), whole)
    feathered = error_against_whole(
        tiling.stylize_tiled(photo, instance_norm_like, tile=128, overlap=32, match_tone=False),
        whole,
    )
    matched = error_against_whole(
        tiling.stylize_tiled(photo, instance_norm_like, tile=128, overlap=32), whole
    )

    assert matched * 10 < naive
    assert matched * 10 < feathered
    assert matched < 2.0


def worst_column_step(image: np.ndarray) -> float:
    """The biggest mean |step| between neighbouring columns, over the median one.

    A seam stands out.
    """
    steps = np.abs(np.diff(image.astype(np.float64), axis=1)).mean(axis=(0, 2))
    return float(steps.max() / np.median(steps))


def test_tiled_result_has_no_column_that_stands_out_as_a_seam():
    photo = textured_photo(120, 500)
    naive = naive_tiles(photo, instance_norm_like, 128)
    ours = tiling.stylize_tiled(photo, instance_norm_like, tile=128, overlap=32)
    feathered_only = tiling.stylize_tiled(
        photo, instance_norm_like, tile=128, overlap=32, match_tone=False
    )
    whole = instance_norm_like(photo[None])[0]

    assert worst_column_step(naive) > 2.5
    assert worst_column_step(ours) < worst_column_step(whole) + 0.1
    assert worst_column_step(feathered_only) < worst_column_step(whole) + 0.1


def test_tiles_must_leave_a_stride():
    with pytest.raises(ValueError):
        tiling.stylize_tiled(textured_photo(300, 300), identity, tile=64, overlap=64)


def test_run_returning_a_wrong_shape_is_an_error():
    with pytest.raises(ValueError):
        tiling.stylize_tiled(textured_photo(20, 20), lambda batch: batch[:, :10], tile=64)


# --------------------------------------------------------------------------- post-processing


def test_preserve_colors_keeps_photo_chroma_and_result_luminance():
    photo = np.full((4, 4, 3), (200, 30, 30), dtype=np.uint8)
    result = np.full((4, 4, 3), 90, dtype=np.uint8)

    kept = postprocessing.preserve_colors(photo, result).astype(np.float64)

    red, green, blue = kept[0, 0]
    assert red > green + 60 and red > blue + 60  # reddish
    assert abs(kept[0, 0] @ [0.299, 0.587, 0.114] - 90) < 1.0  # the result's luminance


def test_preserve_colors_of_a_photo_with_itself_is_the_photo():
    photo = textured_photo(16, 16)

    assert np.abs(postprocessing.preserve_colors(photo, photo).astype(int) - photo).max() <= 1


def test_colors_kept_only_where_the_job_asks():
    photo = np.full((2, 2, 3), (200, 30, 30), dtype=np.uint8)
    result = np.full((2, 2, 3), 90, dtype=np.uint8)

    assert postprocessing.colors_kept(photo, result, False) is result
    assert np.array_equal(postprocessing.colors_kept(photo, result, True),
                          postprocessing.preserve_colors(photo, result))


# --------------------------------------------------------------------------- encoding


def test_png_round_trip_is_lossless():
    photo = textured_photo(20, 30)

    data = encoding.encode_image(photo, format="PNG")

    assert data.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), photo)


def test_jpeg_round_trip_is_close_and_honours_quality():
    rows, cols = np.mgrid[0:64, 0:64]
    photo = np.stack([rows * 4, cols * 4, (rows + cols) * 2], axis=-1).astype(np.uint8)

    data = encoding.encode_image(photo)
    low = encoding.encode_image(photo, quality=30)

    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert data.startswith(b"\xff\xd8") and decoded.shape == photo.shape
    assert np.abs(decoded - photo).mean() < 6
    assert len(low) < len(data)


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError):
        encoding.encode_image(textured_photo(4, 4), format="BMP")
