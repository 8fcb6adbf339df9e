"""train_bank, and train_style / the admin's Retrain on bank styles (tiny, random VGG)."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from ml.bank import one_hot
from ml.export import load_savedmodel_fn, read_slots
from stylize.models import Style
from tests.factories import StyleFactory
from tests.helpers import TrainingCaptured, read_models_config

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TINY = ("--steps", "3", "--size", "32", "--batch", "2", "--loss-network", "vgg16",
        "--width", "0.125", "--residual-blocks", "1")


def run(command, *args, photos, weights):
    out = io.StringIO()
    call_command(command, *args, "--data", str(photos), "--loss-weights", str(weights), *TINY,
                 stdout=out)
    return out.getvalue()


def outputs(version_dir, images):
    stylize = load_savedmodel_fn(version_dir)
    return {slot: stylize(images, one_hot([slot] * len(images), stylize.num_styles))
            for slot in range(stylize.num_styles)}


@pytest.fixture
def bank_of_two(serving_dir, photos, vgg16_random_weights):
    red = StyleFactory(slug="red", model_name="red", status="draft", live_version=None)
    blue = StyleFactory(slug="blue", model_name="blue", status="draft", live_version=None)
    printed = run("train_bank", "duo", "--styles", "red,blue", photos=photos,
                  weights=vgg16_random_weights)
    assert "Bank duo version 1 is live" in printed
    red.refresh_from_db()
    blue.refresh_from_db()
    return red, blue


def test_train_bank_makes_one_network_live_for_every_style(bank_of_two, serving_dir):
    red, blue = bank_of_two
    for style, slot in ((red, 1), (blue, 2)):
        assert (style.model_name, style.bank_index, style.bank_slots) == ("duo", slot, 3)
        assert style.status == Style.Status.READY and style.live_version == 1
        assert style.training_settings["steps_done"] == 3
    version_dir = serving_dir / "models" / "duo" / "1"
    slots = read_slots(version_dir)
    assert [s["slug"] for s in slots["slots"]] == [None, "red", "blue"]
    assert slots["slots"][0]["identity"] and slots["slots"][1]["settings"]["steps_done"] == 3
    [entry] = read_models_config(serving_dir)  # one Serving model for the whole bank
    assert entry.name == "duo" and list(entry.model_version_policy.specific.versions) == [1]
    images = np.random.default_rng(0).integers(0, 256, (1, 24, 24, 3), dtype=np.uint8)
    painted = outputs(version_dir, images)
    assert not np.array_equal(painted[1], painted[2])


def test_retraining_a_bank_style_changes_only_its_slot(bank_of_two, serving_dir, photos,
                                                       vgg16_random_weights):
    red, blue = bank_of_two
    run("train_style", "blue", photos=photos, weights=vgg16_random_weights)
    red.refresh_from_db()
    blue.refresh_from_db()
    assert red.live_version == blue.live_version == 2  # the bank moved as one
    assert (blue.bank_index, blue.bank_slots) == (2, 3)
    images = np.random.default_rng(1).integers(0, 256, (2, 28, 20, 3), dtype=np.uint8)
    before = outputs(serving_dir / "models" / "duo" / "1", images)
    after = outputs(serving_dir / "models" / "duo" / "2", images)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])  # red: bit-identical
    assert not np.array_equal(after[2], before[2])
    assert [s["slug"] for s in read_slots(serving_dir / "models" / "duo" / "2")["slots"]] == [
        None, "red", "blue"]


def test_a_new_style_joins_the_default_bank_as_its_next_slot(
    bank_of_two, serving_dir, photos, vgg16_random_weights, settings
):
    red, _ = bank_of_two
    settings.DEFAULT_BANK = "duo"
    green = StyleFactory(slug="green", model_name="green", status="draft", live_version=None)
    run("train_style", "green", photos=photos, weights=vgg16_random_weights)
    green.refresh_from_db()
    red.refresh_from_db()
    assert (green.model_name, green.bank_index, green.bank_slots, green.live_version) == (
        "duo", 3, 4, 2)
    assert (red.bank_slots, red.live_version) == (4, 2)
    images = np.random.default_rng(2).integers(0, 256, (1, 20, 20, 3), dtype=np.uint8)
    before = outputs(serving_dir / "models" / "duo" / "1", images)
    after = outputs(serving_dir / "models" / "duo" / "2", images)
    for slot in (0, 1, 2):
        np.testing.assert_array_equal(after[slot], before[slot])
    assert read_slots(serving_dir / "models" / "duo" / "2")["slots"][3]["slug"] == "green"


def test_with_no_live_default_bank_a_new_style_gets_its_own_network(
    serving_dir, photos, vgg16_random_weights, settings
):
    settings.DEFAULT_BANK = "not-trained-yet"
    style = StyleFactory(slug="solo", model_name="solo", status="draft", live_version=None)
    run("train_style", "solo", photos=photos, weights=vgg16_random_weights)
    style.refresh_from_db()
    # A bank of its own: the identity and itself, under its own model name.
    assert (style.model_name, style.bank_index, style.bank_slots) == ("solo", 1, 2)
    assert style.live_version == 1
    slots = read_slots(serving_dir / "models" / "solo" / "1")
    assert slots["num_styles"] == 2 and slots["slots"][1]["slug"] == "solo"


def test_train_bank_refuses_a_style_of_another_bank(serving_dir):
    StyleFactory(slug="other", model_name="elsewhere", bank_index=1, bank_slots=2)
    with pytest.raises(CommandError, match="is in the bank elsewhere"):
        call_command("train_bank", "duo", "--styles", "other")
    with pytest.raises(CommandError, match="No style with slug"):
        call_command("train_bank", "duo", "--styles", "nope")


def test_admin_retrain_of_a_bank_style_fine_tunes_its_slot(bank_of_two, captured_configs,
                                                          serving_dir):
    from stylize.tasks import style_train as train_task

    _, blue = bank_of_two
    with pytest.raises(TrainingCaptured):
        train_task(blue.pk, {})  # what the "Retrain" action queues
    [config] = captured_configs
    assert config.train_slot == 2
    assert config.init_weights == str(serving_dir / "models" / "duo" / "1" / "transform_net.keras")
    blue.refresh_from_db()
    assert blue.live_version == 1 and blue.status == Style.Status.READY  # unchanged on failure
    assert "stopped by the test" in blue.status_reason


def test_a_style_alone_in_its_bank_is_retrained_whole_not_moved_into_the_default_bank(
    bank_of_two, captured_configs, settings
):
    from stylize.tasks import style_train as train_task

    settings.DEFAULT_BANK = "duo"
    shipped = StyleFactory(slug="shipped", model_name="shipped", live_version=3)  # slot 1 of 2
    with pytest.raises(TrainingCaptured):
        train_task(shipped.pk, {})
    [config] = captured_configs
    # Its own network again, now a bank of its own: its painting alone, trained whole.
    assert config.train_slot is None and config.init_weights is None
    assert [Path(p).stem for p in config.paintings] == ["shipped"]
    assert "duo" not in config.out_dir


def test_a_bank_cannot_take_the_name_a_draft_style_will_train_under(serving_dir):
    # Never trained: trained alone, it gets a bank of its own named "starry".
    StyleFactory(slug="starry", model_name="starry", status="draft", live_version=None)
    StyleFactory(slug="wave", model_name="wave", status="draft", live_version=None)
    with pytest.raises(CommandError, match="model name of the style"):
        call_command("train_bank", "starry", "--styles", "wave")
    with pytest.raises(CommandError, match="is a slug"):
        call_command("train_bank", "../outside", "--styles", "wave")


def test_a_slot_retrain_does_not_go_live_over_a_newer_bank_version(
    bank_of_two, monkeypatch, photos, vgg16_random_weights
):
    import ml.train

    red, blue = bank_of_two
    real_train = ml.train.train

    def train_while_another_run_goes_live(config, **kwargs):
        result = real_train(config, **kwargs)
        Style.objects.filter(model_name="duo").update(live_version=7)  # the other run
        return result

    monkeypatch.setattr("ml.train.train", train_while_another_run_goes_live)
    with pytest.raises(CommandError, match="went from version 1 to 7"):
        run("train_style", "blue", photos=photos, weights=vgg16_random_weights)
    blue.refresh_from_db()
    red.refresh_from_db()
    assert blue.live_version == red.live_version == 7  # the other run's version stands
    assert blue.status == Style.Status.READY and "Train again" in blue.status_reason


def test_a_slot_fine_tune_keeps_the_slot_count_of_the_network_even_with_a_slot_unclaimed(
    bank_of_two, photos, vgg16_random_weights, settings
):
    """Green joined duo as slot 3, then its row went (staff deleted it): red's fine-tune
    still exports, and records on every member, a network of 4 slots, so their weights
    rows keep the network's length."""
    red, blue = bank_of_two
    settings.DEFAULT_BANK = "duo"
    green = StyleFactory(slug="green", model_name="green", status="draft", live_version=None)
    run("train_style", "green", photos=photos, weights=vgg16_random_weights)
    green.refresh_from_db()
    assert (green.model_name, green.bank_index, green.bank_slots) == ("duo", 3, 4)
    green.delete()

    run("train_style", "red", photos=photos, weights=vgg16_random_weights)

    for style in (red, blue):
        style.refresh_from_db()
        assert (style.live_version, style.bank_slots) == (3, 4)
        assert style.paint_slot.inputs().style_weights.shape == (4,)
