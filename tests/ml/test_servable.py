"""Training → a servable version folder (``ml.train.train_servable``, ``ml.servable``,
``python -m ml.train --export-to``)."""

import json

import numpy as np
import pytest

from ml.bank import mix_weights
from ml.export import load_savedmodel_fn, read_slots
from ml.servable import IDENTITY_SLOT, described_slots, painted_slot, painting_slug
from ml.train import main, train_servable
from tests.helpers import TRAIN_SIZE as SIZE
from tests.helpers import noise_photos
from tests.ml.test_train import tiny_config


def test_the_command_line_trains_and_exports_what_serving_loads(painting, tmp_path, capsys):
    photos = noise_photos(tmp_path / "photos", 4, seed=1)
    models = tmp_path / "serving" / "models" / "mine"
    main(["--style", str(painting), "--data", str(photos), "--out", str(tmp_path / "run"),
          "--loss-weights", "random", "--steps", "2", "--size", str(SIZE), "--batch", "2",
          "--width", "0.25", "--residual-blocks", "1", "--precision", "float32",
          "--export-to", str(models)])

    assert "exported version 1 (2 slots)" in capsys.readouterr().out
    slots = read_slots(models / "1")
    assert slots["num_styles"] == 2
    identity, mine = slots["slots"]
    # The fixture's file is called painting.png: the slot is named after its folder.
    assert identity["identity"] and mine["slug"] == painting_slug(painting) == painting.parent.name
    assert mine["painting"] == painting.name and mine["settings"]["steps_done"] == 2
    assert "out_dir" not in mine["settings"]  # this machine's paths stay out
    stylize = load_savedmodel_fn(models / "1")
    photo = np.random.default_rng(0).integers(0, 256, (1, 20, 24, 3), dtype=np.uint8)
    assert stylize(photo, mix_weights(2, 1)).shape == photo.shape


def test_train_servable_describes_the_slots_its_caller_names(painting, tmp_path):
    config = tiny_config(painting, tmp_path / "run", steps=2)
    photos = [np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")]
    seen = []

    def slots(record):
        seen.append(record)
        return [IDENTITY_SLOT, painted_slot("starry", "The Starry Night", "p.png", record)]

    servable = train_servable(config, tmp_path / "models" / "starry", slots=slots,
                              dataset=photos)
    assert (servable.version, servable.num_styles) == (1, 2)  # the slots it exported
    assert servable.path == tmp_path / "models" / "starry" / "1"
    [record] = seen
    assert record is servable.record and record["steps_done"] == 2
    assert read_slots(servable.path)["slots"][1]["name"] == "The Starry Night"


def test_a_slot_fine_tune_describes_the_bank_it_came_from_with_its_slot_anew(tmp_path):
    bank_dir = tmp_path / "bank" / "3"
    bank_dir.mkdir(parents=True)
    (bank_dir / "slots.json").write_text(json.dumps({"num_styles": 3, "slots": [
        {"slot": 0, "identity": True, "slug": None},
        {"slot": 1, "slug": "wave", "settings": {"steps_done": 10}},
        {"slot": 2, "slug": "old", "settings": {"steps_done": 10}}]}))
    config = tiny_config(tmp_path / "new.png", tmp_path / "run", train_slot=2,
                         init_weights=str(bank_dir / "transform_net.keras"))

    slots = described_slots(config, {"steps_done": 4})

    # The slot keeps its style's slug; its painting and settings are the run's.
    assert [slot.get("slug") for slot in slots] == [None, "wave", "old"]
    assert (slots[2]["painting"], slots[2]["settings"]) == ("new.png", {"steps_done": 4})
    assert slots[1]["settings"]["steps_done"] == 10
    assert all("slot" not in slot for slot in slots)  # export numbers them again
    grown = described_slots(config.replace(train_slot=3), {"steps_done": 4})
    assert [slot.get("slug") for slot in grown] == [None, "wave", "old", "new"]
    with pytest.raises(ValueError, match="share a slug"):  # a new slot named like an old one
        described_slots(config.replace(train_slot=3, painting=str(tmp_path / "wave.png")), {})


def test_paintings_in_folders_of_their_own_are_named_after_the_folder(tmp_path):
    paintings = [str(tmp_path / slug / "painting.png") for slug in ("starry-night", "great-wave")]
    config = tiny_config(tmp_path / "x.png", tmp_path / "run", paintings=tuple(paintings))
    slots = described_slots(config, {})
    assert [slot.get("slug") for slot in slots] == [None, "starry-night", "great-wave"]
    assert slots[1]["painting"] == "painting.png"


def test_exporting_a_fine_tune_without_its_banks_slots_is_refused_before_training(tmp_path):
    start = tmp_path / "loose" / "transform_net.keras"
    start.parent.mkdir()
    start.write_bytes(b"")
    with pytest.raises(SystemExit, match="no slots.json beside it"):
        main(["--style", "p.png", "--data", "d", "--out", str(tmp_path / "run"),
              "--train-slot", "2", "--init-weights", str(start),
              "--export-to", str(tmp_path / "models" / "bank")])
    assert not (tmp_path / "models").exists()
