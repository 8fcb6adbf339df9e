"""Tests of ml.quality acceptance metrics on constructed images."""

import keras
import numpy as np
import pytest
from PIL import Image

from ml.losses import build_loss_network, gram_matrix
from ml.quality import (
    PAINTING_SIZE,
    PHOTO_SIZE,
    QUALITY_LAYERS,
    SCORE_NAMES,
    edge_correlation,
    evaluate_style,
    fit_longer_side,
    luminance_correlation,
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


def _photos():
    return [_scene(seed=1), _scene(48, 72, seed=2)]


# Small working sizes keep these tests fast; the defaults are checked on their own.
SMALL = {"photo_size": 64, "painting_size": 48}


def test_the_defaults_are_384_px_photos_and_a_256_px_painting():
    assert (PHOTO_SIZE, PAINTING_SIZE) == (384, 256)


def test_the_photo_itself_scores_ratio_1_and_shapes_1(vgg16_quality):
    score = evaluate_style(_photos(), _stripes(), vgg16_quality, stylize=lambda photo: photo,
                           **SMALL)
    assert score["num_images"] == 2 and len(score["per_photo"]) == 2
    assert score["style_distance_ratio"] == pytest.approx(1.0)
    assert score["luminance_correlation"] == pytest.approx(1.0)
    assert score["edge_correlation"] == pytest.approx(1.0)
    assert score["photo_style_distance"] > 0
    assert set(SCORE_NAMES) <= set(score)
    assert all(isinstance(score[name], float) for name in SCORE_NAMES)


def test_the_painting_itself_as_result_scores_a_ratio_below_1(vgg16_quality):
    painting = _stripes()  # the photos' 4:5 aspect
    photos = [_scene(seed=1), _scene(seed=2)]
    score = evaluate_style(photos, painting, vgg16_quality, stylize=lambda photo: painting, **SMALL)
    assert score["style_distance_ratio"] < 0.5
    assert score["result_style_distance"] < score["photo_style_distance"]


def test_the_layer_ratios_split_the_ratio_and_show_which_layer_a_result_misses(vgg16_quality):
    photos, painting = _photos(), _stripes()
    itself = evaluate_style(photos, painting, vgg16_quality, stylize=lambda photo: photo, **SMALL)
    ratios = itself["layer_ratios"]
    assert tuple(ratios) == QUALITY_LAYERS
    assert sum(ratios.values()) == pytest.approx(itself["style_distance_ratio"])
    # The photos' own distances, layer by layer: each photo's split adds up to its total.
    for row in itself["per_photo"]:
        assert sum(row["result_layer_distances"].values()) == pytest.approx(
            row["photo_style_distance"])

    def blurred(photo):  # the same colours, the fine texture gone
        small = Image.fromarray(photo).resize((photo.shape[1] // 4, photo.shape[0] // 4))
        return np.asarray(small.resize((photo.shape[1], photo.shape[0]), Image.BILINEAR))

    blur = evaluate_style(photos, painting, vgg16_quality, stylize=blurred, **SMALL)
    assert sum(blur["layer_ratios"].values()) == pytest.approx(blur["style_distance_ratio"])
    changed = {name: abs(blur["layer_ratios"][name] - ratios[name]) for name in QUALITY_LAYERS}
    assert max(changed.values()) > 0
    assert changed["block4_conv3"] < max(changed["block1_conv2"], changed["block2_conv2"])


def test_a_flat_image_scores_shapes_0(vgg16_quality):
    score = evaluate_style(_photos(), _stripes(), vgg16_quality,
                           stylize=lambda photo: np.full_like(photo, 128), **SMALL)
    assert score["luminance_correlation"] == 0.0
    assert score["edge_correlation"] == 0.0


def test_photos_are_stylized_at_384_px_on_their_longer_side(vgg16_quality):
    seen = []

    def identity(photo):
        seen.append((photo.shape, photo.dtype))
        return photo

    small_painting = _stripes(24, 30)  # one cheap painting pass at 256 px
    evaluate_style([_scene(64, 80), _scene(90, 45)], small_painting, vgg16_quality,
                   stylize=identity)
    assert seen == [((307, 384, 3), np.uint8), ((384, 192, 3), np.uint8)]


def test_photos_and_painting_are_scored_at_the_working_sizes_whatever_their_own(vgg16_quality):
    big_photo, big_painting = _scene(128, 160), _stripes(96, 120)
    at_size = evaluate_style([fit_longer_side(big_photo, 64)], fit_longer_side(big_painting, 48),
                             vgg16_quality, stylize=lambda photo: photo, **SMALL)
    raw = evaluate_style([big_photo], big_painting, vgg16_quality,
                         stylize=lambda photo: photo, **SMALL)
    assert raw["photo_style_distance"] == pytest.approx(at_size["photo_style_distance"], rel=1e-6)
    # ... and the sizes do matter: not resizing the painting would give another number.
    unscaled = evaluate_style([big_photo], big_painting, vgg16_quality,
                              stylize=lambda photo: photo, photo_size=64, painting_size=120)
    assert unscaled["photo_style_distance"] != pytest.approx(raw["photo_style_distance"], rel=1e-3)


def test_the_style_distance_is_the_mean_over_photos_of_summed_gram_errors(vgg16_quality):
    """Gram / (C·H·W) as ml.losses.gram_matrix, squared error averaged per layer, summed."""
    photos, painting = _photos(), _stripes()

    def grams(image):
        features = vgg16_quality(image[None].astype("float32"))
        out = {}
        for name in QUALITY_LAYERS:
            f = np.asarray(features[name], dtype="float64")[0]
            h, w, c = f.shape
            flat = f.reshape(h * w, c)
            out[name] = flat.T @ flat / (c * h * w)
        return out

    target = grams(fit_longer_side(painting, 48))
    expected = np.mean([
        sum(np.mean((grams(fit_longer_side(p, 64))[n] - target[n]) ** 2) for n in QUALITY_LAYERS)
        for p in photos
    ])
    score = evaluate_style(photos, painting, vgg16_quality, stylize=lambda photo: photo, **SMALL)
    assert score["photo_style_distance"] == pytest.approx(expected, rel=1e-4)
    assert np.allclose(np.asarray(gram_matrix(np.ones((1, 2, 2, 3), "float32")))[0], 1 / 3)


def test_precomputed_results_score_the_same_as_a_stylize_function(vgg16_quality, tmp_path):
    photo_dir, result_dir = tmp_path / "photos", tmp_path / "results"
    photo_dir.mkdir(), result_dir.mkdir()
    photos = _photos()
    for index, photo in enumerate(photos):
        Image.fromarray(photo).save(photo_dir / f"p{index}.png")

    def paint(photo):
        return np.clip(photo.astype("float32") * 0.6 + _stripes(*photo.shape[:2]) * 0.4, 0, 255)

    painted = []
    from_function = evaluate_style(
        photo_dir, _stripes(), vgg16_quality,
        stylize=lambda photo: painted.append(paint(photo).round().astype("uint8")) or painted[-1],
        **SMALL,
    )
    as_list = evaluate_style(photo_dir, _stripes(), vgg16_quality, results=painted, **SMALL)
    for index, result in enumerate(painted):
        Image.fromarray(result).save(result_dir / f"p{index}.png")
    from_folder = evaluate_style(photo_dir, _stripes(), vgg16_quality, results=result_dir, **SMALL)
    for name in SCORE_NAMES:
        assert from_folder[name] == pytest.approx(from_function[name], rel=1e-6)
        assert as_list[name] == pytest.approx(from_function[name], rel=1e-6)
    assert from_folder["style_distance_ratio"] != pytest.approx(1.0, abs=0.01)  # really scored
    assert [row["photo"] for row in from_folder["per_photo"]] == [
        str(photo_dir / "p0.png"), str(photo_dir / "p1.png")]

    # A result made at the photo's own size is brought to the working size.
    bigger = evaluate_style(photo_dir, _stripes(), vgg16_quality,
                            results=[paint(photo) for photo in photos], **SMALL)
    assert bigger["luminance_correlation"] == pytest.approx(
        from_folder["luminance_correlation"], abs=0.02)

    (result_dir / "p1.png").unlink()
    with pytest.raises(FileNotFoundError, match="p1"):
        evaluate_style(photo_dir, _stripes(), vgg16_quality, results=result_dir, **SMALL)


def test_evaluate_style_refuses_mismatched_results(vgg16_quality):
    photos = _photos()
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_style(photos, _stripes(), vgg16_quality, **SMALL)
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_style(photos, _stripes(), vgg16_quality, stylize=lambda p: p, results=photos)
    with pytest.raises(ValueError, match="as many results"):
        evaluate_style(photos, _stripes(), vgg16_quality, results=photos[:1], **SMALL)
    with pytest.raises(ValueError, match="another photo"):
        evaluate_style(photos, _stripes(), vgg16_quality,
                       results=[photos[0], photos[0].transpose(1, 0, 2)], **SMALL)
