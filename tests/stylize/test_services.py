import json
import shutil

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from stylize import selectors
from stylize.models import Style, StyleJob
from stylize.services import jobs, styles, training
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import png_bytes

pytestmark = pytest.mark.django_db


def test_job_create_stores_the_photo_and_options(photo_upload):
    job = jobs.job_create(
        owner=UserFactory(), style=StyleFactory(), input_image=photo_upload,
        strength=0.5, preserve_colors=True, max_side=512,
    )
    job.refresh_from_db()
    assert job.status == StyleJob.Status.QUEUED
    assert (job.strength, job.preserve_colors, job.max_side) == (0.5, True, 512)
    assert job.input_image.read() == png_bytes()


def test_job_create_refuses_bad_options(photo_upload):
    with pytest.raises(ValidationError):
        jobs.job_create(
            owner=UserFactory(), style=StyleFactory(), input_image=photo_upload, strength=2
        )
    assert StyleJob.objects.count() == 0


def test_job_start_is_guarded_so_a_duplicate_delivery_does_nothing():
    job = StyleJobFactory()
    assert jobs.job_start(job_id=job.pk) is True
    assert jobs.job_start(job_id=job.pk) is False
    job.refresh_from_db()
    assert job.status == StyleJob.Status.RUNNING
    assert job.attempts == 1 and job.started_at is not None


def test_job_succeed_only_from_running():
    job = StyleJobFactory()
    assert jobs.job_succeed(
        job_id=job.pk, result_name="r.png", result_file=ContentFile(b"x")
    ) is False
    jobs.job_start(job_id=job.pk)
    assert jobs.job_succeed(
        job_id=job.pk, result_name="r.png", result_file=ContentFile(png_bytes())
    ) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED and job.finished_at is not None
    assert job.result_image.read() == png_bytes()
    assert jobs.job_fail(job_id=job.pk, error="late failure") is False
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED


def test_job_fail_records_the_reason_and_retry_requeues():
    job = StyleJobFactory()
    jobs.job_start(job_id=job.pk)
    assert jobs.job_requeue(job_id=job.pk) is True
    assert jobs.job_requeue(job_id=job.pk) is False
    jobs.job_start(job_id=job.pk)
    assert jobs.job_fail(job_id=job.pk, error="The model server is down.") is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error == "The model server is down." and job.attempts == 2


def test_failed_training_keeps_the_live_version():
    style = StyleFactory(live_version=3)
    training.style_training_start(style=style)
    assert style.status == Style.Status.TRAINING
    training.style_training_fail(style=style, reason="Loss became NaN at step 120.")
    style.refresh_from_db()
    assert style.live_version == 3 and style.status == Style.Status.READY
    assert "NaN" in style.status_reason

    untrained = StyleFactory(live_version=None, status=Style.Status.DRAFT)
    training.style_training_fail(style=untrained, reason="No photos found.")
    untrained.refresh_from_db()
    assert untrained.status == Style.Status.FAILED


def test_successful_training_makes_the_version_live():
    style = StyleFactory(live_version=None, status=Style.Status.DRAFT)
    style.bank_index, style.bank_slots = 1, 2  # its slot, as the run that trained it gives it
    training.style_training_succeed(
        style=style, version=2, training_settings={"steps": 200}, metrics={"style": 1.5}
    )
    style.refresh_from_db()
    assert style.is_ready and style.live_version == 2
    assert style.training_settings == {"steps": 200} and style.metrics == {"style": 1.5}


def test_only_public_ready_styles_are_offered():
    offered = StyleFactory()
    StyleFactory(is_public=False)
    StyleFactory(status=Style.Status.DRAFT, live_version=None)
    StyleFactory(status=Style.Status.TRAINING, live_version=None)
    assert list(selectors.style_list_offered()) == [offered]


def _ship_model(serving_dir, name, version, meta=True):
    """A lone style's network shipped as ``models/<name>/<version>``: the identity and the
    style ``name`` (slot 1); returns the folder of its ``style.json``."""
    version_dir = serving_dir / "models" / name / str(version)
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"")
    (version_dir / "slots.json").write_text(json.dumps({"num_styles": 2, "slots": [
        {"slot": 0, "slug": None, "identity": True}, {"slot": 1, "slug": name}]}))
    meta_dir = serving_dir / "styles" / name / name
    if meta:
        meta_dir.mkdir(parents=True, exist_ok=True)
        (meta_dir / "painting.png").write_bytes(png_bytes(color=(10, 20, 200)))
        (meta_dir / "sample.png").write_bytes(png_bytes(color=(90, 20, 20)))
        (meta_dir / "style.json").write_text(json.dumps({
            "name": name.replace("_", " ").title(), "description": "Swirls.",
            "painting": "painting.png", "sample": "sample.png",
            "training": {"steps": 100}, "metrics": {"style_ratio": 0.1},
        }))
    return meta_dir


def test_register_shipped_styles(tmp_path):
    _ship_model(tmp_path, "starry_night", 1)
    _ship_model(tmp_path, "no_metadata", 1, meta=False)
    (tmp_path / "models" / "half_written" / "1").mkdir(parents=True)  # no saved_model.pb
    # Exported before every network was a bank: no slots.json, nothing paints with it.
    _ship_model(tmp_path, "single_style", 1)
    (tmp_path / "models" / "single_style" / "1" / "slots.json").unlink()

    registered = styles.styles_register_shipped(serving_dir=tmp_path)

    assert [s.model_name for s in registered] == ["starry_night"]
    style = Style.objects.get()
    assert style.name == "Starry Night" and style.slug == "starry_night"
    assert style.is_ready and style.live_version == 1 and style.is_public
    assert (style.bank_index, style.bank_slots) == (1, 2)  # a bank of the identity and itself
    assert style.painting.read() == png_bytes(color=(10, 20, 200))
    assert style.sample and style.training_settings == {"steps": 100}


def test_register_again_keeps_staff_edits_and_takes_newer_versions(tmp_path):
    _ship_model(tmp_path, "starry_night", 1)
    styles.styles_register_shipped(serving_dir=tmp_path)
    Style.objects.update(description="Edited by staff")

    styles.styles_register_shipped(serving_dir=tmp_path)
    assert Style.objects.count() == 1
    assert Style.objects.get().description == "Edited by staff"

    shutil.copytree(tmp_path / "models/starry_night/1", tmp_path / "models/starry_night/2")
    styles.styles_register_shipped(serving_dir=tmp_path)
    style = Style.objects.get()
    assert style.live_version == 2 and style.description == "Edited by staff"


def test_a_shipped_style_retrained_into_a_bank_stays_there(tmp_path):
    _ship_model(tmp_path, "starry_night", 1)
    styles.styles_register_shipped(serving_dir=tmp_path)
    # Staff retrained it while the default bank was live: it is slot 3 of that bank now,
    # whose version 7 that training exported beside the shipped networks.
    Style.objects.update(model_name="paintings", bank_index=3, bank_slots=4, live_version=7)
    (tmp_path / "models" / "paintings" / "7").mkdir(parents=True)
    (tmp_path / "models" / "paintings" / "7" / "saved_model.pb").write_bytes(b"")

    [style] = styles.styles_register_shipped(serving_dir=tmp_path)  # the next `make run`

    assert Style.objects.count() == 1
    assert (style.model_name, style.bank_index, style.live_version) == ("paintings", 3, 7)


def _ship_bank(serving_dir, bank, version, slugs):
    version_dir = serving_dir / "models" / bank / str(version)
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"")
    slots = [{"slot": 0, "slug": None, "identity": True}] + [
        {"slot": i, "slug": slug} for i, slug in enumerate(slugs, start=1)]
    (version_dir / "slots.json").write_text(json.dumps({"num_styles": len(slots), "slots": slots}))
    for slug in slugs:
        meta_dir = serving_dir / "styles" / bank / slug
        meta_dir.mkdir(parents=True, exist_ok=True)
        (meta_dir / "painting.png").write_bytes(png_bytes(color=(200, 20, 20)))
        (meta_dir / "style.json").write_text(json.dumps({
            "name": slug.replace("-", " ").title(), "painting": "painting.png"}))


def test_a_shipped_bank_registers_every_slot_and_takes_over_rows_of_other_networks(tmp_path):
    _ship_model(tmp_path, "starry_night", 1)
    styles.styles_register_shipped(serving_dir=tmp_path)
    _ship_bank(tmp_path, "paintings", 1, ["starry_night", "great-wave", "no-meta"])
    shutil.rmtree(tmp_path / "styles" / "paintings" / "no-meta")
    shutil.rmtree(tmp_path / "models" / "starry_night")  # its own network, replaced by the bank

    registered = styles.styles_register_shipped(serving_dir=tmp_path)

    assert sorted(s.slug for s in registered) == ["great-wave", "starry_night"]
    starry = Style.objects.get(slug="starry_night")
    assert (starry.model_name, starry.bank_index, starry.bank_slots, starry.live_version) == (
        "paintings", 1, 4, 1)
    assert starry.description == "Swirls."  # the row moved; what it had stays
    wave = Style.objects.get(slug="great-wave")
    assert (wave.model_name, wave.bank_index, wave.is_ready) == ("paintings", 2, True)
    assert wave.painting.read() == png_bytes(color=(200, 20, 20))
    assert not Style.objects.filter(slug="no-meta").exists()

    Style.objects.filter(slug="great-wave").update(live_version=3)  # retrained here since
    styles.styles_register_shipped(serving_dir=tmp_path)
    assert Style.objects.get(slug="great-wave").live_version == 3
    assert Style.objects.count() == 2


def test_a_broken_shipped_folder_does_not_stop_the_others_registering(tmp_path):
    _ship_model(tmp_path, "starry_night", 1)
    (_ship_model(tmp_path, "bad_json", 1) / "style.json").write_text("{not json")
    (_ship_model(tmp_path, "no_painting", 1) / "painting.png").unlink()
    (_ship_model(tmp_path, "nameless", 1) / "style.json").write_text(
        '{"painting": "painting.png"}')
    _ship_bank(tmp_path, "broken_bank", 1, ["a"])
    (tmp_path / "models" / "broken_bank" / "1" / "slots.json").write_text('{"slots": 3}')

    registered = styles.styles_register_shipped(serving_dir=tmp_path)

    assert [s.model_name for s in registered] == ["starry_night"]
    assert list(Style.objects.values_list("model_name", flat=True)) == ["starry_night"]


def test_a_shipped_style_with_the_default_painting_name_registers(tmp_path):
    meta_dir = _ship_model(tmp_path, "plain", 1)
    (meta_dir / "painting.png").rename(meta_dir / "painting.jpg")  # ml.shipped's default name
    (meta_dir / "style.json").write_text(json.dumps({"name": "Plain"}))
    [style] = styles.styles_register_shipped(serving_dir=tmp_path)
    assert style.name == "Plain" and style.painting.name.endswith(".jpg")
