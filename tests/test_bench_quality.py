"""bench.quality_bench's report of each photo: what it writes must survive every key
``ml.quality.evaluate_style`` gives a photo, the per-layer distances included."""

import json

import numpy as np
import pytest
from PIL import Image

from bench.quality_bench import _per_photo
from ml.losses import build_loss_network
from ml.quality import QUALITY_LAYERS, evaluate_style


@pytest.mark.slow
def test_each_photo_is_reported_with_its_name_rounded_scores_and_layer_distances(tmp_path):
    network = build_loss_network("vgg16", None, layers=list(QUALITY_LAYERS))
    rng = np.random.default_rng(3)
    photo = tmp_path / "harbour.png"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photo)
    painting = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    report = evaluate_style([photo], painting, network, stylize=lambda image: 255 - image,
                            photo_size=48, painting_size=32)
    (row,) = _per_photo(report)
    assert row["photo"] == "harbour.png"
    assert set(row["result_layer_distances"]) == set(QUALITY_LAYERS)
    assert sum(row["result_layer_distances"].values()) == pytest.approx(
        row["result_style_distance"], abs=1e-5)  # each rounded to 6 places
    json.dumps(row)  # what the bench writes
