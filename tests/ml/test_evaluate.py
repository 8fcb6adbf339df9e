import numpy as np
import pytest
from PIL import Image

from ml.evaluate import contact_sheet, evaluate, keras_stylize_fn
from ml.losses import PerceptualLoss


def solid(colour, size=(24, 16)):
    return np.full((size[1], size[0], 3), colour, dtype=np.uint8)


def test_contact_sheet_has_photos_on_top_and_results_below(tmp_path):
    photos = [solid((255, 0, 0)), solid((0, 255, 0)), solid((0, 0, 255))]
    results = [solid((10, 10, 10))] * 3
    path = contact_sheet(photos, results, tmp_path / "sheets" / "sheet.png", thumb=32)

    with Image.open(path) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (3 * 32, 2 * 32)
        pixels = np.asarray(sheet.convert("RGB"))
    assert tuple(pixels[16, 16]) == (255, 0, 0)  # first photo, top row
    assert tuple(pixels[16, 2 * 32 + 16]) == (0, 0, 255)  # third photo
    assert tuple(pixels[32 + 16, 32 + 16]) == (10, 10, 10)  # second result, bottom row


def test_contact_sheet_rejects_mismatched_lists(tmp_path):
    with pytest.raises(ValueError):
        contact_sheet([solid(0)], [], tmp_path / "sheet.png")


@pytest.fixture
def held_out(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "held_out"
    folder.mkdir()
    for index, size in enumerate([(40, 32), (36, 44)]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{index}.png")
    painting = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    return folder, painting


def test_evaluate_reports_mean_losses_and_quality(held_out):
    folder, painting = held_out
    loss = PerceptualLoss(painting, network="vgg16", weights=None)

    identity = evaluate(lambda batch: batch, folder, painting, loss=loss)
    grey = evaluate(lambda batch: np.full_like(batch, 128), folder, painting, loss=loss)

    assert len(identity.photos) == 2 and len(identity.per_photo) == 2
    assert identity.losses["content"] == pytest.approx(0.0, abs=1e-3)
    assert identity.losses["tv"] > 0 and grey.losses["tv"] == 0
    assert grey.losses["content"] > 0
    assert grey.losses["total"] == pytest.approx(
        np.mean([row["total"] for row in grey.per_photo])
    )
    assert identity.quality["luminance_correlation"] == pytest.approx(1.0)
    assert grey.quality["luminance_correlation"] == 0.0
    assert set(identity.as_dict()) >= {"losses", "quality", "per_photo"}


def _in_slot_1(model, batch):
    """A lone network (``num_styles=2``) on a uint8 ``batch``, painting slot 1 (its
    style), as uint8."""
    from ml.bank import one_hot

    weights = np.repeat(one_hot([1], model.num_styles), len(batch), axis=0)
    painted = np.asarray(model(np.asarray(batch, np.float32), weights))
    return np.clip(np.round(painted), 0, 255).astype(np.uint8)


def test_evaluate_runs_a_keras_model_at_each_photo_size(held_out):
    from ml.model import TransformNet

    folder, painting = held_out
    model = TransformNet(width=0.25, num_residual_blocks=1)
    seen_shapes = []

    def stylize(batch):
        seen_shapes.append(batch.shape)
        return _in_slot_1(model, batch)

    report = evaluate(stylize, folder, painting, network="vgg16", weights=None, quality=False)
    assert seen_shapes == [(1, 32, 40, 3), (1, 44, 36, 3)]
    assert all(np.isfinite(value) for value in report.losses.values())
    assert report.quality == {}


def test_evaluate_reports_the_one_quality_measure_of_ml_quality(held_out):
    """The same numbers as ml.quality.evaluate_style (384 px photos, 256 px painting),
    whatever max_side the losses are computed at."""
    from ml.quality import SCORE_NAMES, evaluate_style

    folder, painting = held_out
    loss = PerceptualLoss(painting, network="vgg16", weights=None)

    def darker(batch):
        return (np.asarray(batch, np.float32) * 0.5 + 30).astype(np.uint8)

    report = evaluate(darker, folder, painting, loss=loss, max_side=24)
    direct = evaluate_style(str(folder), painting, loss.loss_network,
                            stylize=lambda photo: darker(photo[None])[0])
    assert set(report.quality) == set(SCORE_NAMES)
    for name in SCORE_NAMES:
        assert report.quality[name] == pytest.approx(direct[name], rel=1e-6), name
    assert report.quality["style_distance_ratio"] != pytest.approx(1.0, abs=1e-3)


def test_keras_stylize_fn_wraps_a_network_as_a_uint8_function_of_one_slot():
    from ml.bank import mix_weights
    from ml.model import TransformNet

    model = TransformNet(width=0.125, num_residual_blocks=1)
    batch = np.random.default_rng(0).integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    out = keras_stylize_fn(model, mix_weights(2, 1))(batch)
    assert out.dtype == np.uint8 and out.shape == batch.shape
    direct = np.asarray(model(batch.astype(np.float32), np.repeat(mix_weights(2, 1)[None], 2, 0)))
    assert np.abs(out.astype(int) - np.clip(np.round(direct), 0, 255)).max() <= 1
