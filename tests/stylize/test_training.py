"""train_style / evaluate_style on tiny photos with a random-weights VGG16 file."""

import io
import re

import numpy as np
import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from PIL import Image

from ml.export import read_slots
from stylize.models import Style
from tests.factories import StyleFactory
from tests.helpers import TrainingCaptured, read_models_config

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def architecture(config):
    return (config.width, config.num_residual_blocks, config.output_kernel_size,
            config.init_weights, config.max_seconds)


SHIPPED = (0.5, 3, 3, None, None)  # TransformNet(width=0.5, 3 blocks, 3x3 output conv)


def train(slug, photos, weights, *extra):
    out = io.StringIO()
    call_command(
        "train_style", slug, "--data", str(photos), "--steps", "3", "--size", "32",
        "--batch", "2", "--loss-network", "vgg16", "--loss-weights", str(weights),
        "--width", "0.25", *extra, stdout=out,
    )
    return out.getvalue()


def test_train_style_exports_a_live_version_and_lists_it_for_serving(
    serving_dir, photos, vgg16_random_weights
):
    style = StyleFactory(slug="starry", model_name="starry", status="draft", live_version=None)

    printed = train("starry", photos, vgg16_random_weights)

    style.refresh_from_db()
    assert style.status == Style.Status.READY and style.live_version == 1
    assert "version 1 is live" in printed
    assert (serving_dir / "models" / "starry" / "1" / "saved_model.pb").is_file()
    # Every network is a bank: a style of its own is slot 1 of a bank of the identity
    # and itself, so strength and the identity work in the network for it too.
    assert (style.bank_index, style.bank_slots) == (1, 2)
    slots = read_slots(serving_dir / "models" / "starry" / "1")["slots"]
    assert [slot.get("identity", False) for slot in slots] == [True, False]
    assert slots[1]["slug"] == "starry"
    assert style.training_settings["steps_done"] == 3
    assert style.training_settings["loss_network"] == "vgg16"
    assert set(style.metrics["train"]["final"]) >= {"content", "style", "tv", "total"}
    [entry] = read_models_config(serving_dir)
    assert entry.name == "starry" and entry.base_path == "/models/models/starry"
    assert list(entry.model_version_policy.specific.versions) == [1]

    # Evaluation of the live version on held-out photos.
    out = io.StringIO()
    sheet = serving_dir.parent / "sheet.png"
    call_command("evaluate_style", "starry", "--images", str(photos), "--sheet", str(sheet),
                 stdout=out)
    style.refresh_from_db()
    heldout = style.metrics["heldout"]
    assert heldout["photos"] == 6 and heldout["version"] == 1
    assert all(np.isfinite(heldout["losses"][k]) for k in ("content", "style", "tv"))
    assert "content" in out.getvalue() and "style" in out.getvalue()
    width, height = Image.open(sheet).size
    assert width > height  # photos above, results below, side by side

    # A second run trains its bank whole again: the next version, the one served.
    train("starry", photos, vgg16_random_weights)
    style.refresh_from_db()
    assert style.live_version == 2 and (style.bank_index, style.bank_slots) == (1, 2)
    assert read_slots(serving_dir / "models" / "starry" / "2")["num_styles"] == 2
    assert list(read_models_config(serving_dir)[0].model_version_policy.specific.versions) == [2]


def test_failed_training_says_why_and_keeps_the_live_version(serving_dir, tmp_path,
                                                             vgg16_random_weights):
    style = StyleFactory(slug="wave", model_name="wave", live_version=4)
    empty = tmp_path / "no-photos"
    empty.mkdir()
    with pytest.raises(CommandError, match="failed"):
        train("wave", empty, vgg16_random_weights)
    style.refresh_from_db()
    assert style.live_version == 4 and style.status == Style.Status.READY
    assert style.status_reason
    assert not (serving_dir / "models" / "wave").exists()


def test_unknown_style_is_a_clear_error():
    with pytest.raises(CommandError, match="No style with slug"):
        call_command("train_style", "nope", "--data", "/tmp")


def test_admin_retrain_queues_on_the_training_queue(
    admin_client, django_capture_on_commit_callbacks, settings, photos
):
    settings.TRAINING_OVERRIDES = {**settings.TRAINING_OVERRIDES, "data_dir": str(photos)}
    style = StyleFactory()
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("training", "celery")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/stylize/style/", {"action": "retrain", "_selected_action": [style.pk]},
            follow=True,
        )
    assert b"Queued training for 1 style" in response.content
    assert broker.llen("training") == 1 and broker.llen("celery") == 0
    broker.delete("training")


@pytest.mark.parametrize("missing", ["photo folder", "photos", "loss weights"])
def test_admin_retrain_without_photos_or_weights_queues_nothing_and_says_what_to_run(
    admin_client, django_capture_on_commit_callbacks, settings, photos, tmp_path, missing
):
    """A fresh stack has no var/photos/train: Retrain used to queue 40,000 steps that
    failed at once. Now nothing is queued and the page says what to run."""
    overrides = {"data_dir": str(photos), "loss_weights": "imagenet"}
    if missing == "photo folder":
        overrides["data_dir"] = str(tmp_path / "photos" / "train")
    elif missing == "photos":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("no photos here")
        overrides["data_dir"] = str(tmp_path / "empty")
    else:
        overrides["loss_weights"] = str(tmp_path / "vgg16_imagenet_notop.weights.h5")
    settings.TRAINING_OVERRIDES = {**settings.TRAINING_OVERRIDES, **overrides}
    style = StyleFactory()
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("training")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/stylize/style/", {"action": "retrain", "_selected_action": [style.pk]},
            follow=True,
        )
    page = response.content.decode()
    assert "Queued training" not in page and "Nothing was queued" in page
    assert ("make vgg16-weights" if missing == "loss weights" else "make photos") in page
    assert broker.llen("training") == 0


def _fake_export(serving_dir, name, version):
    folder = serving_dir / "models" / name / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    return folder


def test_a_new_version_is_listed_beside_the_live_one_until_serving_has_it(serving_dir):
    from stylize.services.serving import serving_config_write

    for name, version in [("starry", 1), ("starry", 2), ("brand_new", 1)]:
        _fake_export(serving_dir, name, version)
    StyleFactory(model_name="starry", live_version=1)
    serving_config_write(preload={"starry": 2, "brand_new": 1})
    entries = {entry.name: entry for entry in read_models_config(serving_dir)}
    assert list(entries["starry"].model_version_policy.specific.versions) == [1, 2]
    assert list(entries["brand_new"].model_version_policy.specific.versions) == [1]

    serving_config_write()
    [entry] = read_models_config(serving_dir)
    assert list(entry.model_version_policy.specific.versions) == [1]


def test_models_config_leaves_out_what_serving_could_not_load_and_lists_the_rest(
    serving_dir, caplog
):
    from stylize.services.serving import serving_config_write

    _fake_export(serving_dir, "starry", 1)
    StyleFactory(slug="starry", model_name="starry", live_version=1)
    StyleFactory(slug="gone", model_name="gone", live_version=2)  # folder deleted
    _fake_export(serving_dir, "half", 1)
    (serving_dir / "models" / "half" / "1" / "saved_model.pb").unlink()  # export cut short
    StyleFactory(slug="half", model_name="half", live_version=1)

    serving_config_write(preload={"starry": 5})

    assert [entry.name for entry in read_models_config(serving_dir)] == ["starry"]
    [entry] = read_models_config(serving_dir)
    assert list(entry.model_version_policy.specific.versions) == [1]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("leaves out gone version 2" in w and "does not exist" in w for w in warnings)
    assert any("leaves out half version 1" in w for w in warnings)
    assert any("leaves out starry version 5 (not live yet)" in w for w in warnings)


def test_register_styles_starts_despite_a_row_whose_model_is_gone(serving_dir):
    from django.core.management import call_command

    StyleFactory(slug="orphan", model_name="orphan", live_version=3)
    call_command("register_styles")  # raised before: make run did not start
    assert list(read_models_config(serving_dir)) == []


def test_admin_retrain_trains_the_shipped_architecture_by_default(captured_configs):
    from stylize.tasks import style_train as train_task

    style = StyleFactory()
    with pytest.raises(TrainingCaptured):
        train_task(style.pk, {})  # what the "Retrain" action queues
    [config] = captured_configs
    assert architecture(config) == SHIPPED
    assert config.preset == "fast" and config.loss_network == "vgg16"


def test_train_style_architecture_comes_from_settings_or_flags(captured_configs, settings,
                                                               tmp_path):
    StyleFactory(slug="starry")
    start = tmp_path / "wave.weights.h5"
    start.write_bytes(b"")

    def run(*flags):
        with pytest.raises(CommandError, match="stopped by the test"):
            call_command("train_style", "starry", "--data", str(tmp_path), *flags)
        return architecture(captured_configs[-1])

    assert run() == SHIPPED
    chosen = run("--width", "1", "--residual-blocks", "5", "--output-kernel", "9",
                 "--init-weights", str(start), "--max-seconds", "90")
    assert chosen == (1.0, 5, 9, str(start), 90.0)
    assert run("--preset", "balanced") == (0.5, 5, 9, None, None)
    settings.TRAINING_OVERRIDES = {
        **settings.TRAINING_OVERRIDES, "width": 0.25, "num_residual_blocks": 1,
        "output_kernel_size": 5,
    }
    assert run() == (0.25, 1, 5, None, None)


def test_one_config_drives_both_command_lines_and_the_admin(captured_configs, settings, tmp_path):
    """A setting changed in one place (settings or a flag) reaches all three front ends."""
    from ml.train import parse_args
    from stylize.tasks import style_train as train_task

    style = StyleFactory(slug="starry")
    settings.TRAINING_OVERRIDES = {"data_dir": str(tmp_path), "content_weight": 2.5,
                                   "preset": "balanced"}
    flags = ["--style-layer-weights", "1,1,2,2", "--size", "96", "--tv-weight", "0.1"]

    with pytest.raises(CommandError, match="stopped by the test"):
        call_command("train_style", "starry", *flags)
    with pytest.raises(TrainingCaptured):
        train_task(style.pk, {})
    from_command, from_admin = captured_configs
    # A style of its own trains as a bank of the identity and itself: --paintings.
    from_cli = parse_args(["--paintings", *from_command.paintings, "--out", from_command.out_dir,
                           "--data", str(tmp_path), "--preset", "balanced",
                           "--content-weight", "2.5", *flags])

    # Same settings everywhere: the flags' changes where flags were given ...
    assert from_cli == from_command
    # ... and the settings' values under the admin's retrain.
    assert from_admin.content_weight == from_command.content_weight == 2.5
    assert from_admin.preset == "balanced" and from_admin.num_residual_blocks == 5
    assert from_admin.style_layer_weights is None
    assert from_command.style_layer_weights == (1, 1, 2, 2)


def test_train_style_has_a_flag_for_every_training_setting():
    from django.core.management import load_command_class

    from ml.config import FLAG_FIELDS

    parser = load_command_class("stylize", "train_style").create_parser("manage.py", "train_style")
    actions = {action.dest: action for action in parser._actions}
    for spec in FLAG_FIELDS:
        # The style's painting, run folder and bank slot.
        if spec.name in ("painting", "out_dir", "paintings", "train_slot"):
            assert spec.name not in actions
            continue
        assert spec.metadata["flag"] in actions[spec.name].option_strings


@pytest.mark.parametrize("flag, value, message", [
    ("--output-kernel", "4", "--output-kernel: must be an odd whole number"),
    ("--output-kernel", "0", "--output-kernel: must be an odd whole number"),
    ("--output-kernel", "x", "--output-kernel: must be an odd whole number"),
    ("--residual-blocks", "-1", "--residual-blocks: must be a whole number >= 0"),
    ("--width", "0", "--width: must be a number > 0"),
    ("--max-seconds", "0", "--max-seconds: must be a number > 0"),
    ("--init-weights", "/no/such/net.weights.h5", "--init-weights: no such file"),
])
def test_bad_training_flags_are_a_usage_error_before_the_style_is_touched(
    captured_configs, flag, value, message
):
    style = StyleFactory(slug="wave")
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("train_style", "wave", flag, value)
    assert captured_configs == []
    style.refresh_from_db()
    assert style.status == Style.Status.READY and style.status_reason == ""


def test_train_style_checks_its_inputs_before_training(serving_dir, photos, vgg16_random_weights,
                                                       monkeypatch):
    from django.core.files.base import ContentFile

    style = StyleFactory(slug="broken", model_name="broken", status="draft", live_version=None)
    style.painting.save("broken.png", ContentFile(b"not an image"))
    built = []
    monkeypatch.setattr("ml.train.build_trainer", lambda *a, **k: built.append(1))
    with pytest.raises(CommandError, match="cannot be read"):
        train("broken", photos, vgg16_random_weights)
    style.refresh_from_db()
    assert style.status == Style.Status.FAILED and "cannot be read" in style.status_reason
    assert not built  # nothing was built, let alone trained
