"""Tests of ml.quality acceptance metrics on constructed images."""

import keras
import numpy as np
import pytest

from ml.losses import build_loss_network
from ml.quality import (
    QUALITY_LAYERS,
    edge_correlation,
    luminance_correlation,
    quality_report,
    style_distance,
)


def _scene(height=64, width=80, seed=0):
    """A 'photo': smooth gradient plus a bright square and a dark disc."""
    y, x = np.mgrid[0:height, 0:width]
    base = 40 + 120 * x / width + 40 * y / height
    image = np.stack([base, base * 0.8, base * 0.6], axis=-1)
    image[10:30, 15:40] = [250, 240, 200]
    image[(y - 45) ** 2 + (x - 60) ** 2 < 120] = [10, 20, 30]
    noise = np.random.default_rng(seed).normal(0, 2, image.shape)
    return np.clip(image + noise, 0, 255).astype("uint8")


def _stripes(height=64, width=80):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 16) % 256, (y * 8) % 256, ((x + y) * 4) % 256], axis=-1).astype("uint8")


@pytest.fixture(scope="module")
def vgg16_quality():
    keras.utils.set_random_seed(3)
    return build_loss_network("vgg16", weights=None, layers=list(QUALITY_LAYERS))


def test_luminance_correlation_identical_inverted_and_flat():
    photo = _scene()
    assert luminance_correlation(photo, photo) == pytest.approx(1.0)
    assert luminance_correlation(photo, photo.astype("float32") * 0.5 + 20) == pytest.approx(1.0)
    assert luminance_correlation(photo, 255 - photo) == pytest.approx(-1.0, abs=1e-6)
    assert luminance_correlation(photo, np.full_like(photo, 128)) == 0.0


def test_luminance_correlation_ignores_fine_texture_but_not_layout():
    photo = _scene()
    textured = np.clip(photo.astype("float32") + _stripes() * 0.3 - 38, 0, 255)
    assert luminance_correlation(photo, textured) > 0.8
    assert abs(luminance_correlation(photo, _stripes())) < 0.5


def test_luminance_resizes_to_the_given_size():
    # Different input sizes of the same picture still compare position by position.
    photo = _scene(64, 80)
    from PIL import Image

    small = np.asarray(Image.fromarray(photo).resize((40, 32), Image.BILINEAR))
    assert luminance_correlation(photo, small, size=32) > 0.98


def test_edge_correlation_identical_inverted_and_unrelated():
    photo = _scene()
    assert edge_correlation(photo, photo) == pytest.approx(1.0)
    # Edge magnitude does not care about the sign of the step.
    assert edge_correlation(photo, 255 - photo) == pytest.approx(1.0, abs=1e-6)
    noise = np.random.default_rng(5).uniform(0, 255, photo.shape)
    assert abs(edge_correlation(photo, noise)) < 0.3
    assert edge_correlation(photo, np.full_like(photo, 7)) == 0.0


def test_edge_correlation_drops_when_structure_moves():
    photo = _scene()
    shifted = np.roll(photo, 20, axis=1)
    assert edge_correlation(photo, shifted) < 0.6 * edge_correlation(photo, photo)


def test_style_distance_is_zero_for_the_painting_and_grows_away(vgg16_quality):
    painting = _stripes()
    photo = _scene()
    at_painting = style_distance([painting, painting], painting, vgg16_quality)
    away = style_distance(photo, painting, vgg16_quality)
    assert away > 0
    assert at_painting < 1e-6 * away
    halfway = style_distance([photo, painting], painting, vgg16_quality)
    assert halfway == pytest.approx(away / 2, rel=1e-4)  # mean over images


def test_style_distance_needs_the_quality_layers():
    net = build_loss_network("vgg16", weights=None, layers=["block1_conv2"])
    with pytest.raises(ValueError, match="block2_conv2"):
        style_distance(_scene(), _stripes(), net)


def test_quality_report(vgg16_quality):
    photos = [_scene(seed=1), _scene(seed=2)]
    painting = _stripes()
    same = quality_report(photos, photos, painting, vgg16_quality)
    assert same["num_images"] == 2
    assert same["style_distance_ratio"] == pytest.approx(1.0)
    assert same["luminance_correlation"] == pytest.approx(1.0)
    assert same["edge_correlation"] == pytest.approx(1.0)

    painted = quality_report(photos, [painting, painting], painting, vgg16_quality)
    assert painted["result_style_distance"] < 1e-6 * painted["photo_style_distance"]
    assert painted["style_distance_ratio"] < 1e-6
    assert painted["luminance_correlation"] < 0.5
    assert set(painted) == set(same)

    with pytest.raises(ValueError, match="as many results"):
        quality_report(photos, photos[:1], painting, vgg16_quality)
