"""The styles shipped under serving/ work out of the box (what `make run` registers).

Every check runs on every shipped style as ``ml.shipped.shipped_styles`` lists them (the
benches use the same listing): each painted slot of a shipped network, painted with its
one-hot ``style_weights``.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.quality_bench import DEFAULT_WEIGHTS
from ml.images import LUMA_WEIGHTS
from ml.quality import (
    PHOTO_SIZE,
    QUALITY_LAYERS,
    edge_correlation,
    evaluate_style,
    fit_longer_side,
    luminance_correlation,
)
from ml.shipped import shipped_styles
from stylize.backends.local import LocalBackend
from stylize.models import Style
from stylize.services import styles
from tests.helpers import BASE_DIR, read_models_config

SERVING_DIR = BASE_DIR / "serving"
SHIPPED = shipped_styles(SERVING_DIR)  # one entry per style (a bank: one per painted slot)
SHIPPED_MODELS = sorted({style.model for style in SHIPPED})  # a bank counts once
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no styles shipped yet")

# A held-out photo (scikit-image's "chelsea", 451x300: one of the eight that tools.photos
# keeps out of training and style.json's numbers are measured on).
HELD_OUT_PHOTO = BASE_DIR / "tests" / "data" / "chelsea.jpg"
# The quality bar every shipped style is held to (serving/STYLES.md): shapes kept on
# every photo ...
MIN_LUMINANCE_CORR, MIN_EDGE_CORR = 0.7, 0.5
# ... and a style distance ratio of at most 0.2 over the held-out set. One photo's ratio
# is not the set's (a ratio of sums, which the photos far from the painting's style
# dominate): on chelsea alone the shipped styles measure 0.08 to 0.44 (the set: 0.06 to
# 0.13), so one photo is held to half its own distance.
MAX_STYLE_RATIO_ONE_PHOTO = 0.5
# The ImageNet VGG16 of the style distance (`make vgg16-weights`, as make bench-quality).
VGG16_WEIGHTS = Path(os.environ.get("PRISMA_VGG16_WEIGHTS", DEFAULT_WEIGHTS))


def _ids(style):
    return style.key


def _paint(backend, style, images):
    """``images`` through the local backend, as a job paints ``style`` at full strength."""
    return backend.stylize(
        model_name=style.model, version=style.version, images=images,
        style_weights=np.repeat(style.style_weights()[None], len(images), 0))


@needs_shipped
def test_shipped_models_are_all_listed():
    """The listing covers every model folder with an exported version, a bank slot by slot."""
    exported = sorted(path.name for path in (SERVING_DIR / "models").iterdir()
                      if path.is_dir() and styles.shipped_versions(path))
    assert SHIPPED_MODELS == exported
    for style in SHIPPED:
        assert style.version == styles.shipped_versions(SERVING_DIR / "models" / style.model)[-1]
    assert len({style.key for style in SHIPPED}) == len({style.slug for style in SHIPPED}) == len(
        SHIPPED)


def test_at_least_six_styles_ship_including_starry_night_and_the_great_wave():
    """Never skipped: an empty serving/models is a failure."""
    assert len(SHIPPED) >= 6, f"{len(SHIPPED)} styles ship under {SERVING_DIR / 'models'}"
    names = {style.slug.replace("-", "_") for style in SHIPPED}
    assert {"starry_night", "great_wave"} <= names


@pytest.mark.parametrize("style", SHIPPED, ids=_ids)
def test_each_shipped_style_records_its_settings_and_held_out_numbers(style):
    meta = json.loads(style.meta_file.read_text())
    training = meta["training"]
    for setting in ("steps", "size", "batch", "width", "content_weight", "style_weight", "where"):
        assert setting in training
    heldout = meta["metrics"]["heldout"]
    assert heldout["photos"] >= 8
    assert {"style_distance_ratio", "luminance_correlation", "edge_correlation"} <= set(
        heldout["quality"])  # the numbers themselves are measured again below
    assert style.painting is not None and Image.open(style.painting).size[0] >= 256
    styles_md = (SERVING_DIR / "STYLES.md").read_text()
    assert style.model in styles_md and style.slug in styles_md


@pytest.mark.parametrize("style", SHIPPED, ids=_ids)
def test_each_shipped_style_keeps_the_shapes_of_a_held_out_photo(style):
    """ml.quality's shape numbers, measured now on the shipped model: the photo at the
    measure's size (384 px), as ``evaluate_style`` scores it."""
    photo = fit_longer_side(HELD_OUT_PHOTO, PHOTO_SIZE)
    result = style.load_stylize()(photo)
    assert luminance_correlation(photo, result) >= MIN_LUMINANCE_CORR
    assert edge_correlation(photo, result) >= MIN_EDGE_CORR


@pytest.fixture(scope="module")
def quality_network():
    if not VGG16_WEIGHTS.is_file():
        pytest.skip(f"no ImageNet VGG16 at {VGG16_WEIGHTS} for the style distance: "
                    "`make vgg16-weights` (or PRISMA_VGG16_WEIGHTS=<file>)")
    from ml.losses import build_loss_network

    return build_loss_network("vgg16", str(VGG16_WEIGHTS), layers=list(QUALITY_LAYERS))


@pytest.mark.parametrize("style", SHIPPED, ids=_ids)
def test_each_shipped_style_paints_a_held_out_photo_in_its_style(style, quality_network):
    """ml.quality.evaluate_style, the measure of style.json, run now on the shipped model
    and the held-out photo: its results moved towards the painting, shapes kept."""
    report = evaluate_style([HELD_OUT_PHOTO], style.painting, quality_network,
                            stylize=style.load_stylize())
    assert report["style_distance_ratio"] <= MAX_STYLE_RATIO_ONE_PHOTO
    assert report["luminance_correlation"] >= MIN_LUMINANCE_CORR
    assert report["edge_correlation"] >= MIN_EDGE_CORR


@needs_shipped
def test_shipped_models_are_small():
    for name in SHIPPED_MODELS:
        version_dir = SERVING_DIR / "models" / name / str(styles.shipped_versions(
            SERVING_DIR / "models" / name)[-1])
        size = sum(path.stat().st_size for path in version_dir.rglob("*") if path.is_file())
        assert size < 20 * 1000**2, f"{name}: {size} bytes"


@needs_shipped
@pytest.mark.django_db
def test_every_shipped_model_registers_as_a_ready_public_style():
    registered = styles.styles_register_shipped(serving_dir=SERVING_DIR)
    assert sorted(style.model_name for style in registered) == sorted(s.model for s in SHIPPED)
    assert sorted((style.slug, style.model_name, style.bank_index, style.live_version)
                  for style in registered) == sorted(
        (s.slug, s.model, s.slot, s.version) for s in SHIPPED)
    for style in Style.objects.all():
        assert style.is_ready and style.is_public and style.description
        assert Image.open(style.painting).size[0] >= 256
        assert style.sample and Image.open(style.sample).size[0] >= 256


@needs_shipped
def test_models_config_lists_every_shipped_model_for_serving():
    listed = {entry.name: entry for entry in read_models_config(SERVING_DIR)}
    assert sorted(listed) == SHIPPED_MODELS
    for name, entry in listed.items():
        assert entry.base_path == f"/models/models/{name}"
        versions = list(entry.model_version_policy.specific.versions)
        assert versions == [styles.shipped_versions(SERVING_DIR / "models" / name)[-1]]


@pytest.mark.parametrize("style", SHIPPED, ids=_ids)
def test_each_shipped_model_paints_a_photo(style):
    backend = LocalBackend(serving_dir=SERVING_DIR)
    y, x = np.mgrid[0:65, 0:97]
    photo = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)[None]
    result = _paint(backend, style, photo)
    assert result.shape == photo.shape and result.dtype == np.uint8
    assert np.abs(result.astype(int) - photo).mean() > 10  # it really repaints


@pytest.mark.parametrize("style", SHIPPED, ids=_ids)
def test_each_shipped_style_repaints_a_held_out_photo_keeping_it_recognisable(style):
    """At upload size (the photo doubled to 902x600): subject kept, no white blobs."""
    backend = LocalBackend(serving_dir=SERVING_DIR)
    with Image.open(HELD_OUT_PHOTO) as image:
        photo = np.asarray(image.convert("RGB").resize((902, 600), Image.Resampling.BICUBIC))
    result = _paint(backend, style, photo[None])[0]
    assert np.abs(result.astype(int) - photo).mean() > 8  # visibly repainted
    assert luminance_correlation(photo, result) >= MIN_LUMINANCE_CORR
    assert edge_correlation(photo, result) >= MIN_EDGE_CORR
    # White blobs: near-white patches where the photo is mid-tone or dark. (Light
    # regions may go white: Composition VIII's cream ground turns the photo's light
    # grey background white, a tone, not a blob.)
    luminance = photo.astype(float) @ np.array(LUMA_WEIGHTS)
    blobs = (result.min(axis=-1) > 240) & (luminance < 170)
    assert blobs.mean() < 0.001
    # Border artefact: the outer 4 px stay as close to the photo as the interior does.
    error = np.abs(result.astype(float) - photo).mean(axis=-1)
    border = np.concatenate([error[:4].ravel(), error[-4:].ravel(), error[:, :4].ravel(),
                             error[:, -4:].ravel()]).mean()
    assert border < 1.5 * error[8:-8, 8:-8].mean() + 5
    # Checkerboard: the 2x2 alternating pattern that upsampling artefacts leave. Brush
    # texture puts about a third of its local contrast there (0.33-0.51 measured on
    # these styles); a checkerboard puts all of it (1.0).
    assert _checker_share(result) < 0.6


def _checker_share(image):
    """Energy of the 2x2 checker pattern relative to the mean neighbour difference."""
    grey = image.astype(float).mean(axis=-1)
    height, width = (grey.shape[0] // 2) * 2, (grey.shape[1] // 2) * 2
    grey = grey[:height, :width]
    checker = np.abs(grey[::2, ::2] + grey[1::2, 1::2] - grey[1::2, ::2] - grey[::2, 1::2]).mean()
    contrast = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    return checker / max(contrast, 1e-9)


def test_the_checkerboard_measure_tells_a_grid_from_brush_texture():
    with Image.open(HELD_OUT_PHOTO) as image:
        photo = np.asarray(image.convert("RGB"), dtype=float)
    grid = photo.copy()
    grid[::2, ::2] += 20
    grid[1::2, 1::2] += 20
    assert _checker_share(np.clip(grid, 0, 255)) > 0.8
    assert _checker_share(photo) < 0.6


@needs_shipped
def test_each_shipped_style_has_a_contact_sheet_and_the_readme_shows_the_gallery():
    docs = SERVING_DIR.parent / "docs"
    for style in SHIPPED:
        with Image.open(docs / f"contact-sheet-{style.slug}.jpg") as sheet:
            assert sheet.width >= 8 * 200  # eight held-out photos side by side
    assert "](docs/gallery.jpg)" in (SERVING_DIR.parent / "README.md").read_text()
    with Image.open(docs / "gallery.jpg") as gallery:
        assert gallery.width > gallery.height
