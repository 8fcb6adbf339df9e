"""ml.shipped: the one listing of shipped styles (every painted slot of every network)."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.bank import mix_weights
from ml.export import BANK_MODEL_FILE, SLOTS_FILE, load_savedmodel_fn
from ml.shipped import select_styles, shipped_models, shipped_styles
from tests.helpers import BASE_DIR
from tests.model_fixtures import export_tiny_bank, export_tiny_model


def _meta(meta_dir: Path, name: str, painting: str = "painting.png", **extra) -> None:
    meta_dir.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(meta_dir / painting)
    (meta_dir / "style.json").write_text(json.dumps({"name": name, "painting": painting,
                                                     **extra}))


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """models/: a lone style (a bank of the identity and ``starry``), a bank of three
    styles (v1, and v2 naming other slugs), a SavedModel without ``slots.json`` (exported
    before every network was a bank), a model with no exported version; styles/: their
    metadata, one slot without."""
    serving = tmp_path_factory.mktemp("serving")
    models = serving / "models"
    export_tiny_bank(models, name="lone", num_styles=2, slugs=["starry"])
    _meta(serving / "styles" / "lone" / "starry", "Starry Night")
    _, old = export_tiny_model(models, name="old")
    (old / SLOTS_FILE).unlink()
    (old / BANK_MODEL_FILE).unlink()
    _meta(serving / "styles" / "old" / "old", "Old")
    _, v1 = export_tiny_bank(models, name="bank", num_styles=4,
                             slugs=["old-a", "old-b", "old-c"])
    v2 = models / "bank" / "2"
    shutil.copytree(v1, v2)  # same weights, the slots renamed: only v2's slots count
    slots = json.loads((v2 / SLOTS_FILE).read_text())
    for slot, slug in zip(slots["slots"][1:], ["alpha", "beta", "gamma"]):
        slot["slug"] = slug
    slots["slots"][3]["name"] = "Gamma (slots.json)"
    (v2 / SLOTS_FILE).write_text(json.dumps(slots))
    _meta(serving / "styles" / "bank" / "alpha", "Alpha")
    _meta(serving / "styles" / "bank" / "beta", "Beta", painting="beta.jpg")
    # gamma: no style.json (the listing keeps it; the callers skip or fail it)
    (models / "half_written" / "1").mkdir(parents=True)  # no saved_model.pb
    return serving


def test_lists_every_painted_slot_of_a_lone_style_and_of_a_bank(serving):
    styles = shipped_styles(serving)

    assert [(s.key, s.model, s.version, s.slot, s.num_styles, s.slug, s.name) for s in styles] == [
        ("bank/alpha", "bank", 2, 1, 4, "alpha", "Alpha"),
        ("bank/beta", "bank", 2, 2, 4, "beta", "Beta"),
        ("bank/gamma", "bank", 2, 3, 4, "gamma", "Gamma (slots.json)"),
        ("lone/starry", "lone", 1, 1, 2, "starry", "Starry Night"),
    ]
    by_key = {s.key: s for s in styles}
    assert by_key["bank/alpha"].painting == serving / "styles/bank/alpha/painting.png"
    assert by_key["bank/beta"].painting == serving / "styles/bank/beta/beta.jpg"
    assert by_key["lone/starry"].painting == serving / "styles/lone/starry/painting.png"
    assert by_key["bank/gamma"].painting is None and by_key["bank/gamma"].meta == {}
    assert by_key["bank/gamma"].meta_file == serving / "styles/bank/gamma/style.json"
    assert by_key["bank/beta"].meta["name"] == "Beta"
    assert by_key["bank/beta"].version_dir == serving / "models/bank/2"
    assert all(isinstance(s.slot, int) for s in styles)
    np.testing.assert_array_equal(by_key["lone/starry"].style_weights(), [0, 1])
    np.testing.assert_array_equal(by_key["lone/starry"].style_weights(), mix_weights(2, 1))
    np.testing.assert_array_equal(by_key["bank/beta"].style_weights(), mix_weights(4, 2))
    assert by_key["bank/beta"].label == "bank v2 slot 2 (beta)"
    assert by_key["lone/starry"].label == "lone v1 slot 1 (starry)"


def test_a_model_without_slots_json_is_left_out_with_a_warning(serving, caplog):
    # It is exported (a SavedModel), so it counts as a model; it lists no style.
    assert shipped_models(serving) == [("bank", 2), ("lone", 1), ("old", 1)]
    with caplog.at_level(logging.WARNING, logger="ml.shipped"):
        styles = shipped_styles(serving)
    assert "old" not in {s.model for s in styles}
    assert {s.model for s in styles} == {"bank", "lone"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "old" in w] == [
        "Leaving out old: it has no slots.json (exported before every network was a bank; "
        "train it again)."]


def test_an_empty_or_missing_serving_dir_ships_nothing(tmp_path):
    assert shipped_styles(tmp_path) == [] and shipped_styles(tmp_path / "none") == []


def test_a_bank_entry_paints_its_own_slot_and_each_slot_differently(serving):
    styles = shipped_styles(serving)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    batch = np.stack([photo, photo[::-1]])

    results = {}
    for style in styles:
        stylize = style.load_stylize()
        one = stylize(photo)
        assert one.shape == photo.shape and one.dtype == np.uint8
        many = stylize(batch)
        assert many.shape == batch.shape and many.dtype == np.uint8
        # every image gets the slot's weights; a batch may round one pixel the other way
        np.testing.assert_allclose(many[0].astype(int), one.astype(int), atol=1, rtol=0)
        results[style.key] = one

    bank = load_savedmodel_fn(serving / "models" / "bank" / "2")
    for slot, key in enumerate(["bank/alpha", "bank/beta", "bank/gamma"], start=1):
        np.testing.assert_array_equal(results[key], bank(photo, mix_weights(4, slot))[0])
    painted = [results[key].astype(int) for key in ("bank/alpha", "bank/beta", "bank/gamma")]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(painted[i] - painted[j]).mean() > 1, (i, j)
    lone = load_savedmodel_fn(serving / "models" / "lone" / "1")
    np.testing.assert_array_equal(results["lone/starry"], lone(photo, [0, 1])[0])
    assert np.abs(results["lone/starry"].astype(int) - photo).mean() > 1  # it paints


def test_select_by_key_slug_or_bank_name(serving):
    styles = shipped_styles(serving)
    keys = lambda chosen: [s.key for s in chosen]  # noqa: E731

    assert keys(select_styles(styles, ["bank"])) == ["bank/alpha", "bank/beta", "bank/gamma"]
    assert keys(select_styles(styles, ["starry", "bank/beta"])) == ["bank/beta", "lone/starry"]
    assert keys(select_styles(styles, ["lone", "alpha", "bank/alpha"])) == [
        "bank/alpha", "lone/starry"]
    assert keys(select_styles(styles, ["lone/starry"])) == ["lone/starry"]
    with pytest.raises(KeyError, match="old"):  # no slots.json: no style to select
        select_styles(styles, ["old"])
    with pytest.raises(KeyError, match="nope"):
        select_styles(styles, ["alpha", "nope"])


def test_importing_the_listing_loads_neither_django_nor_tensorflow():
    code = ("import sys, ml.shipped, bench.quality_bench; "
            "heavy = {'django', 'tensorflow', 'keras'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, check=True, timeout=120)
