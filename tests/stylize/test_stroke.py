"""Stroke size: painting at a working size and the guided upsampling back."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from stylize.imaging.stroke_size import guided_upsample, stylize_at_working_size
from stylize.strokes import STROKE_WORKING_SIDES
from tests.helpers import identity


class Recorder:
    """A ``run`` that records the (H, W) of every image it is handed."""

    def __init__(self, inner=identity):
        self.inner = inner
        self.sizes = []

    def __call__(self, batch):
        self.sizes.extend(image.shape[:2] for image in batch)
        return self.inner(batch)


def recolour(batch: np.ndarray) -> np.ndarray:
    """A per-pixel colour map (inverted, channels rotated): edges stay where the photo's are."""
    return (255 - batch[..., [1, 2, 0]]).astype(np.uint8)


def slanted_edge(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo with one sharp slanted step edge, and the edge's column in every row."""
    rows, cols = np.mgrid[0:height, 0:width]
    position = 0.37 * width + 0.1 * rows
    light, dark = np.uint8([200, 180, 160]), np.uint8([40, 60, 90])
    photo = np.where((cols > position)[..., None], light, dark)
    return photo.astype(np.uint8), position[:, 0]


def detailed_photo(height: int, width: int, seed: int = 0, shapes=(50.0, 40.0, 30.0)) -> np.ndarray:
    """Smooth gradients, hard-edged blocks (colour step ``shapes``) and a little noise."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        60 + 140 * cols / width,
        50 + 150 * rows / height,
        128 + 60 * np.sin(rows / 29 + cols / 41),
    ]
    base = np.stack(channels, -1)
    blocks = ((rows // 23 + cols // 31) % 2)[..., None] * np.array(shapes)
    noise = np.random.default_rng(seed).normal(0, 2, (height, width, 3))
    return np.clip(base + blocks + noise, 0, 255).astype(np.uint8)


def downscaled(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``size`` is (width, height), as Pillow's."""
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


# --------------------------------------------------------------------------- the options


# --------------------------------------------------------------------------- guided_upsample


def test_guided_upsample_shape_and_dtype():
    photo = detailed_photo(301, 457)
    small = downscaled(photo, (100, 66))
    out = guided_upsample(photo, small, recolour(small[None])[0])
    assert out.shape == photo.shape and out.dtype == np.uint8


def test_identity_gives_back_the_photo():
    photo = detailed_photo(512, 640)
    small = downscaled(photo, (160, 128))  # a quarter of each side
    out = guided_upsample(photo, small, small)
    plain = mean_error(bilinear(small, (640, 512)), photo)
    guided = mean_error(out, photo)  # measured 1.9 (bilinear 5.3); noise is lost either way
    assert guided < 2.5, guided
    assert guided < 0.5 * plain, (guided, plain)


def test_sharp_edge_stays_sharp():
    photo, position = slanted_edge(512, 512)
    small = downscaled(photo, (128, 128))
    small_result = recolour(small[None])[0]
    guided = guided_upsample(photo, small, small_result).astype(np.float64)
    plain = bilinear(small_result, (512, 512)).astype(np.float64)
    truth = recolour(photo[None])[0].astype(np.float64)

    def step_at_edge(image):
        """Per row, the largest jump between neighbouring pixels within 3 px of the edge."""
        steps = np.abs(np.diff(image.mean(axis=2), axis=1))
        columns = np.round(position).astype(int)[:, None] + np.arange(-3, 3)[None]
        return float(np.take_along_axis(steps, np.clip(columns, 0, 510), axis=1).max(axis=1).mean())

    full_step = step_at_edge(truth)  # the edge's whole height in one pixel: ~133 levels
    guided_step, plain_step = step_at_edge(guided), step_at_edge(plain)
    assert guided_step > 0.6 * full_step
    assert guided_step > 2 * plain_step, (guided_step, plain_step)
    assert mean_error(guided, truth) < 0.5 * mean_error(plain, truth)


def test_strokes_the_photo_lacks_are_kept():
    # On a flat photo the network's own texture is all there is: it must survive the
    # upsampling (as bilinear keeps it), not be averaged away as a guided filter would.
    photo = np.full((256, 256, 3), 120, dtype=np.uint8)
    small = downscaled(photo, (64, 64))
    rows, cols = np.mgrid[0:64, 0:64]
    strokes = 25 * np.sin(cols / 1.5 + 2 * np.sin(rows / 3.0))
    small_result = np.clip(small + strokes[..., None], 0, 255).astype(np.uint8)
    out = guided_upsample(photo, small, small_result).astype(np.float64)
    plain = bilinear(small_result, (256, 256)).astype(np.float64)
    assert mean_error(out, plain) < 1.0
    assert out.std() > 0.9 * plain.std()


def test_rgb_guide_sees_edges_of_equal_luminance():
    # Blocks that differ in colour but hardly in luminance (+50, -40, +30: -5 in Y):
    # the luminance guide cannot place them, the RGB guide can.
    photo = detailed_photo(200, 300, shapes=(50.0, -40.0, 30.0))
    small = downscaled(photo, (75, 50))
    plain = mean_error(bilinear(small, (300, 200)), photo)
    rgb = mean_error(guided_upsample(photo, small, small, guide="rgb"), photo)
    luma = mean_error(guided_upsample(photo, small, small, guide="luma"), photo)
    assert rgb < 0.5 * plain and rgb < 0.5 * luma, (rgb, luma, plain)


def test_memory_stays_in_strips():
    photo = detailed_photo(2048, 2048)
    small = downscaled(photo, (512, 512))
    tracemalloc.start()
    try:
        guided_upsample(photo, small, small)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The uint8 output is 12.6 MB; six float32 coefficient maps at full size would be
    # 100 MB on their own (measured: 39 MB in all).
    assert peak < 60e6, peak


# ---------------------------------------------------------------------- stylize_at_working_size


@pytest.mark.parametrize("stroke", sorted(STROKE_WORKING_SIDES))
def test_runs_at_the_working_size(stroke):
    photo = detailed_photo(900, 1100)
    run = Recorder()
    out = stylize_at_working_size(photo, run, working_side=STROKE_WORKING_SIDES[stroke], tile=1024)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert len(run.sizes) == 1
    assert max(run.sizes[0]) == STROKE_WORKING_SIDES[stroke]
    height, width = run.sizes[0]
    assert abs(width / height - 1100 / 900) < 0.01  # aspect kept


def test_bold_on_a_1024_photo_runs_at_512():
    run = Recorder()
    photo = detailed_photo(1024, 1024)
    stylize_at_working_size(photo, run, working_side=STROKE_WORKING_SIDES["bold"], tile=1088)
    assert run.sizes == [(512, 512)]


@pytest.mark.parametrize("working_side", [512, 300, None])
def test_small_photos_run_as_they_are(working_side):
    photo = detailed_photo(300, 200)
    run = Recorder(recolour)
    out = stylize_at_working_size(photo, run, working_side=working_side, tile=1024)
    assert run.sizes == [(300, 200)]
    np.testing.assert_array_equal(out, recolour(photo[None])[0])


def test_photos_bigger_than_a_tile_are_tiled_at_the_working_size():
    run = Recorder()
    out = stylize_at_working_size(detailed_photo(1000, 800), run, working_side=500, tile=256)
    assert out.shape == (1000, 800, 3)
    assert len(run.sizes) > 1 and all(max(size) <= 256 for size in run.sizes)


@pytest.mark.parametrize("height,width", [(37, 1500), (1500, 37), (1, 2000), (999, 1001), (613, 7)])
def test_odd_sizes_and_extreme_aspect_ratios(height, width):
    photo = detailed_photo(height, width)
    run = Recorder()
    out = stylize_at_working_size(photo, run, working_side=512, tile=1024)
    assert out.shape == photo.shape and out.dtype == np.uint8
    if max(height, width) > 512:
        assert max(run.sizes[0]) == 512
    assert mean_error(out, photo) < 10


def test_identity_at_working_size_gives_back_the_photo():
    photo = detailed_photo(1024, 768)
    out = stylize_at_working_size(photo, identity, working_side=512, tile=1024)
    plain = mean_error(bilinear(downscaled(photo, (384, 512)), (768, 1024)), photo)
    assert mean_error(out, photo) < min(2.5, 0.7 * plain)  # measured 1.6 (bilinear 3.3)


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    "photo",
    [
        np.zeros((64, 64, 3), np.float32),
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
    ],
)
def test_invalid_photos_are_refused(photo):
    with pytest.raises(ValueError):
        stylize_at_working_size(photo, identity, working_side=32, tile=1024)
    with pytest.raises(ValueError):
        guided_upsample(photo, np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8))


def test_invalid_arguments_are_refused():
    photo = detailed_photo(64, 64)
    small = downscaled(photo, (16, 16))
    with pytest.raises(ValueError):
        guided_upsample(photo, small, downscaled(photo, (16, 15)))
    with pytest.raises(ValueError):
        guided_upsample(photo, small, small, radius=-1)
    with pytest.raises(ValueError):
        guided_upsample(photo, small, small, eps=0)
    with pytest.raises(ValueError):
        guided_upsample(photo, small, small, guide="hsv")
    with pytest.raises(ValueError):
        stylize_at_working_size(photo, identity, working_side=0, tile=1024)
    with pytest.raises(ValueError):
        stylize_at_working_size(photo, lambda batch: batch[:, :-1], working_side=32, tile=1024)


def test_every_job_stroke_choice_has_a_working_size_and_the_default_is_one():
    from stylize.models import Stroke

    assert set(Stroke.values) == set(STROKE_WORKING_SIDES)
