"""Paint with your own painting (docs/design/own-styles.md): a signed-in user's painting
learnt as one new row of the live bank's maps (γ and β only, every shared weight
frozen), kept on their style and painted through the bank's ``style_params`` signature.
The API and the pages, the refusals, the per-user limits, privacy (another user's 404,
never public), the bank and every other style left bit-identical, both model backends,
the bank moving to a new version, deletion, and the whole flow on real workers."""

import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from stylize.models import PreviewImage, Style, StyleJob
from stylize.selectors import style_list_offered, style_list_usable
from stylize.services import events, own_styles, previews, styles
from stylize.services.stylizing import photo_stylize
from tests.factories import OwnStyleFactory, StyleJobFactory, UserFactory
from tests.helpers import (
    PASSWORD,
    gradient,
    gradient_upload,
    painting_upload,
    png_bytes,
    wait_until,
)
from tests.stylize.conftest import OWN_BANK

API = "/api/v1/styles/"


@pytest.fixture
def sent(monkeypatch):
    """The tasks sent once committed (name, queue, args), recorded instead of sent."""
    calls = []

    def record(self, args=(), **kwargs):
        calls.append((self.name, kwargs.get("queue"), tuple(args)))

    monkeypatch.setattr("prisma_site.celery.Task.apply_async_on_commit", record)
    return calls


def api(user=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def bank_dir(version=1) -> Path:
    return django_settings.SERVING_DIR / "models" / OWN_BANK / str(version)


def params_size() -> int:
    return json.loads((bank_dir() / "slots.json").read_text())["style_params_size"]


def own_style(owner, **kwargs):
    """A learnt own style of ``owner`` on the test bank's version 1."""
    return OwnStyleFactory(owner=owner, model_name=OWN_BANK, params_size=params_size(),
                           **kwargs)


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def stored(field) -> bytes:
    with field.open("rb") as handle:
        return handle.read()


# --------------------------------------------------------------------------- creating


@pytest.mark.django_db
def test_a_painting_becomes_a_queued_own_style_stored_privately(own_bank, sent, settings):
    owner = UserFactory()
    made = api(owner).post(API, {"painting": painting_upload(), "name": "  My  cat "},
                           format="multipart")
    assert made.status_code == 201, made.content
    data = made.json()
    assert (data["name"], data["own"], data["status"], data["bank"]) == (
        "My cat", True, "queued", OWN_BANK)
    assert data["painting"].endswith(f"/api/v1/styles/{data['slug']}/painting/")
    assert made["Location"].endswith(f"/api/v1/styles/{data['slug']}/")
    assert sent == [("stylize.tasks.own_style_learn", "own-styles",
                     (Style.objects.get(slug=data["slug"]).pk,))]

    style = Style.objects.get(slug=data["slug"])
    assert style.owner == owner and style.is_own and not style.is_public
    assert style.published_at is None and not style.painting and style.bank_index is None
    assert style.private_painting.name.startswith("own-styles/")
    kept = Path(settings.PRIVATE_MEDIA_ROOT) / style.private_painting.name
    assert kept.is_file()
    public = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert all(p.read_bytes() != kept.read_bytes() for p in public)  # the shipped ones'
    assert style not in style_list_offered() and style not in style_list_usable(owner)

    again = api(owner).get(f"{API}{style.slug}/").json()
    assert again["status"] == "queued" and again["progress"] is None
    painting = api(owner).get(f"{API}{style.slug}/painting/")
    assert painting.status_code == 200 and painting["Cache-Control"] == "private, no-store"
    assert b"".join(painting.streaming_content) == stored(style.private_painting)


@pytest.mark.django_db
@pytest.mark.parametrize("case, status, message", [
    ("no bank", 503, "Own styles need a live bank"),
    ("bank exported before own styles", 503, "Own styles need a live bank"),
    ("no training photos", 503, "training photos or weights are missing"),
    ("too small", 400, "too small to learn a style from"),
    ("not an image", 400, "not a supported photo"),
    ("no name", 400, "name"),
    ("a name already used", 400, "already have a style called"),
])
def test_a_painting_that_cannot_be_learnt_is_refused_before_anything_is_kept(
    own_bank, sent, settings, case, status, message
):
    owner = UserFactory()
    form = {"painting": painting_upload(), "name": "Sunflowers"}
    if case == "no bank":
        settings.DEFAULT_BANK = "not-trained-yet"
    elif case == "bank exported before own styles":
        slots = json.loads((bank_dir() / "slots.json").read_text())
        del slots["style_params_size"]
        (bank_dir() / "slots.json").write_text(json.dumps(slots))
    elif case == "no training photos":
        settings.TRAINING_OVERRIDES = {**settings.TRAINING_OVERRIDES, "data_dir": "/nowhere"}
    elif case == "too small":
        form["painting"] = painting_upload(size=(48, 200))
    elif case == "not an image":
        form["painting"] = SimpleUploadedFile("painting.png", b"GIF89a not really",
                                              content_type="image/png")
    elif case == "no name":
        form["name"] = "   "
    elif case == "a name already used":
        own_style(owner, name="Sunflowers")
    before = Style.objects.count()
    refused = api(owner).post(API, form, format="multipart")
    assert refused.status_code == status, refused.content
    assert message.lower() in refused.content.decode().lower()
    assert Style.objects.count() == before and sent == []

    page = Client()
    page.force_login(owner)
    form["painting"].seek(0)
    shown = page.post(reverse("stylize:own_style_list"), form)
    if case in ("no bank", "bank exported before own styles", "no training photos"):
        # The page says so without offering the form at all.
        assert shown.status_code == 503
        assert "own-styles-unavailable" in page.get(reverse("stylize:own_style_list")
                                                    ).content.decode()
    else:
        assert shown.status_code == 400
    assert Style.objects.count() == before and sent == []


@pytest.mark.django_db
def test_one_painting_is_learnt_at_a_time_and_a_few_a_day(own_bank, sent, settings):
    settings.OWN_STYLE_DAILY_LIMIT = 2
    owner, other = UserFactory(), UserFactory()
    client = api(owner)
    first = client.post(API, {"painting": painting_upload(), "name": "One"}, format="multipart")
    assert first.status_code == 201
    second = client.post(API, {"painting": painting_upload(), "name": "Two"}, format="multipart")
    assert second.status_code == 429
    assert "still being learnt" in second.json()["detail"]
    # Someone else is not held up by it.
    assert api(other).post(API, {"painting": painting_upload(), "name": "One"},
                           format="multipart").status_code == 201

    # Once learnt, the next one may go; the third of the day may not.
    Style.objects.filter(pk=Style.objects.get(slug=first.json()["slug"]).pk).update(
        status="ready", live_version=1, bank_slots=3,
        style_params=np.zeros(params_size(), "<f4").tobytes())
    assert client.post(API, {"painting": painting_upload(), "name": "Two"},
                       format="multipart").status_code == 201
    Style.objects.filter(owner=owner, name="Two").update(status="failed")
    third = client.post(API, {"painting": painting_upload(), "name": "Three"},
                        format="multipart")
    assert third.status_code == 429 and "the most a day" in third.json()["detail"]
    # A painting refused before any training does not count; deleting one does not help.
    Style.objects.filter(owner=owner, name="Two").update(
        training_progress={"state": "refused"})
    assert client.post(API, {"painting": painting_upload(), "name": "Three"},
                       format="multipart").status_code == 201
    client.delete(f"{API}{first.json()['slug']}/")
    Style.objects.filter(owner=owner, name="Three").update(status="failed")
    assert client.post(API, {"painting": painting_upload(), "name": "Four"},
                       format="multipart").status_code == 429


# --------------------------------------------------------------------------- privacy


@pytest.mark.django_db
def test_nobody_else_sees_uses_or_deletes_it(own_bank, empty_cache):
    owner, stranger = UserFactory(), UserFactory()
    mine = own_style(owner, name="My cat")
    shipped = {style.slug for style in own_bank}

    # The owner: in their list, usable, mixable with the bank's shipped styles.
    listed = {row["slug"]: row for row in api(owner).get(API).json()}
    assert set(listed) == shipped | {mine.slug}
    assert listed[mine.slug]["status"] == "ready" and listed[mine.slug]["own"]
    assert sorted(listed[mine.slug]["mixes_with"]) == sorted(shipped)
    assert all(not listed[slug]["own"] for slug in shipped)

    # Anyone else, signed in or not: it does not exist.
    for client in (api(stranger), api()):
        assert {row["slug"] for row in client.get(API).json()} == shipped
        assert client.get(f"{API}{mine.slug}/").status_code == 404
        assert client.get(f"{API}{mine.slug}/painting/").status_code in (401, 403, 404)
    assert api(stranger).get(f"{API}{mine.slug}/painting/").status_code == 404
    assert api(stranger).get(f"{API}{mine.slug}/sample/").status_code == 404
    assert api(stranger).delete(f"{API}{mine.slug}/").status_code == 404
    assert api(owner).delete(f"{API}{own_bank[0].slug}/").status_code == 404  # not theirs
    refused = api(stranger).post("/api/v1/jobs/", {"image": gradient_upload(), "style": mine.slug},
                                 format="multipart")
    assert refused.status_code == 400 and "style" in refused.json()
    assert mine not in style_list_usable(stranger) and mine in style_list_usable(owner)

    page = Client()
    page.force_login(stranger)
    for name in ("own_style", "own_style_status", "own_style_painting", "own_style_delete"):
        assert page.get(reverse(f"stylize:{name}", args=[mine.slug])).status_code == 404
    upload = page.get(reverse("stylize:upload")).content.decode()
    assert mine.slug not in upload and "My cat" not in upload
    preview = previews.preview_create(owner=stranger, photo=gradient_upload())
    assert mine.pk not in preview.images.values_list("style", flat=True)

    # The owner's pages and previews have it, its painting from the private storage.
    page.force_login(owner)
    upload = page.get(reverse("stylize:upload")).content.decode()
    assert f'value="{mine.slug}"' in upload and 'data-own="1"' in upload
    assert reverse("stylize:own_style_painting", args=[mine.slug]) in upload
    served = page.get(reverse("stylize:own_style_painting", args=[mine.slug]))
    assert served.status_code == 200 and served["Cache-Control"] == "private, no-store"
    preview = previews.preview_create(owner=owner, photo=gradient_upload())
    assert preview.images.filter(style=mine).exists()
    assert "My cat" in page.get(reverse("stylize:own_style_list")).content.decode()


@pytest.mark.django_db
def test_an_own_style_is_never_public_published_nor_staffs_to_edit(own_bank, client):
    mine = own_style(UserFactory())
    with pytest.raises(styles.StylePublishRefused, match="never published"):
        styles.style_publish(style=mine)
    for change in ({"is_public": True}, {"published_at": timezone.now()},
                   {"painting": "styles/paintings/public.png"}, {"bank_index": 2}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Style.objects.filter(pk=mine.pk).update(**change)
    assert mine not in style_list_offered()
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    listed = client.get(reverse("admin:stylize_style_changelist")).content.decode()
    assert mine.name not in listed and own_bank[0].name in listed
    assert client.get(reverse("admin:stylize_style_change", args=[mine.pk])).status_code in (
        302, 404)


# --------------------------------------------------------------------------- learning


@pytest.mark.django_db
@pytest.mark.parametrize("painting, reason", [
    (png_bytes(size=(120, 100), color=(90, 120, 200)), "almost a single colour"),
    (b"\x89PNG\r\n\x1a\n broken", "could not be read"),
])
def test_a_flat_or_unreadable_painting_is_refused_before_any_training(
    own_bank, sent, monkeypatch, painting, reason
):
    def no_training(*args, **kwargs):
        pytest.fail("a painting that cannot be learnt reached training")

    monkeypatch.setattr("ml.train.train", no_training)
    owner = UserFactory()
    style = own_styles.own_style_create(owner=owner, name="Blue",
                                        painting=painting_upload())
    Style.objects.filter(pk=style.pk).update(
        private_painting=style.private_painting.storage.save(
            "own-styles/flat.png", ContentFile(painting)))
    own_styles.own_style_learn(style_id=style.pk)
    style.refresh_from_db()
    assert style.status == "failed" and reason in style.status_reason
    assert style.training_progress["state"] == "refused"
    shown = api(owner).get(f"{API}{style.slug}/").json()
    assert shown["status"] == "failed" and reason in shown["error"]
    assert own_styles.own_style_learn(style_id=style.pk) is None  # nothing queued any more


@pytest.mark.slow
@pytest.mark.django_db
def test_learning_adds_a_row_of_its_own_and_leaves_the_bank_and_everyone_bit_identical(
    own_bank, sent, settings
):
    photo = gradient(72, 96)
    other_user = UserFactory()
    theirs = own_style(other_user, name="Theirs")

    def paintings():
        return {style.slug: photo_stylize(photo=photo, style=style, stroke="fine")
                for style in [*own_bank, theirs]}

    before = paintings()
    bank_before = folder_digest(bank_dir().parent)
    owner = UserFactory()
    style = own_styles.own_style_create(owner=owner, name="Mine", painting=painting_upload())
    queued = list(sent)
    progress = []
    learnt = own_styles.own_style_learn(
        style_id=style.pk,
        on_progress=lambda p: progress.append(
            (p.step, Style.objects.get(pk=style.pk).training_progress["state"])))

    assert learnt.status == "ready" and own_styles.own_style_state(learnt) == "ready"
    assert progress == [(1, "running"), (2, "running"), (3, "running")]
    assert learnt.live_version == 1 and learnt.bank_slots == 3 and learnt.bank_index is None
    assert learnt.own_row.shape == (params_size(),) and np.isfinite(learnt.own_row).all()
    assert learnt.training_settings["steps_done"] == 3
    assert learnt.training_settings["train_slot"] == 3  # a new slot, never the bank's own
    assert learnt.training_progress["state"] == "succeeded"
    assert learnt.private_sample.name.startswith("own-styles/")
    assert not (settings.VAR_DIR / "training" / "own-styles" / learnt.slug).exists()
    # Nothing of the bank was written: no new version, the same files.
    assert folder_digest(bank_dir().parent) == bank_before
    assert sorted(p.name for p in bank_dir().parent.iterdir()) == ["1"]
    assert sent == queued  # learning queues nothing more
    # Shipped styles and another user's own: bit-identical.
    after = paintings()
    for slug, painted in before.items():
        np.testing.assert_array_equal(after[slug], painted, err_msg=slug)

    # It paints like any style: its own picture, strength and a mix with a shipped slot.
    mine = photo_stylize(photo=photo, style=learnt, stroke="fine")
    assert all(np.abs(mine.astype(float) - before[s.slug]).mean() > 0.5 for s in own_bank)
    half = photo_stylize(photo=photo, style=learnt, strength=0.5, stroke="fine")
    mixed = photo_stylize(photo=photo, style=learnt, blend_with=own_bank[0], blend=0.5,
                          stroke="fine")
    assert not np.array_equal(half, mine) and not np.array_equal(mixed, mine)
    assert api(owner).get(f"{API}{learnt.slug}/sample/").status_code == 200


@pytest.mark.slow
@pytest.mark.django_db
def test_an_own_style_learns_with_the_loss_balance_of_the_banks_own_slots(own_bank, sent,
                                                                         settings):
    """The bank's painted slots were trained with their own loss weights (slots.json says
    which); a new row learns with the same, not the single-style defaults, its style
    weight scaled by OWN_STYLE_STYLE_SCALE."""
    settings.OWN_STYLE_STYLE_SCALE = 2.0
    slots_file = bank_dir() / "slots.json"
    slots = json.loads(slots_file.read_text())
    for slot in slots["slots"][1:]:
        slot["settings"] = {"style_weight": 11.0, "content_weight": 3.0, "steps": 30000}
    slots_file.write_text(json.dumps(slots))
    style = own_styles.own_style_create(owner=UserFactory(), name="Mine",
                                        painting=painting_upload())

    learnt = own_styles.own_style_learn(style_id=style.pk)

    assert learnt.status == "ready"
    assert learnt.training_settings["style_weight"] == 22.0
    assert learnt.training_settings["content_weight"] == 3.0
    assert learnt.training_settings["steps"] != 30000  # its own length, not the bank's


# --------------------------------------------------------------------------- backends


@pytest.mark.django_db
def test_both_backends_paint_a_row_as_the_slot_it_came_from(
    settings, tiny_serving_dir, tfserving_server
):
    import keras

    from ml.bank import slot_params
    from stylize.backends import get_backend
    from tests.factories import BankStyleFactory
    from tests.model_fixtures import TINY_BANK_NAME

    net = keras.saving.load_model(tiny_serving_dir / "models" / TINY_BANK_NAME / "1"
                                  / "transform_net.keras")
    slot_two = BankStyleFactory(name="Two", slug="two", model_name=TINY_BANK_NAME, bank_index=2,
                                bank_slots=3)
    copy = OwnStyleFactory(model_name=TINY_BANK_NAME, params_size=net.style_params_size,
                           row=slot_params(net, 2))
    photo = gradient(40, 56)
    settings.SERVING_DIR = tiny_serving_dir
    painted = {}
    for backend in ("local", "tfserving"):
        settings.MODEL_BACKEND = backend
        settings.TFSERVING_ADDRESS = tfserving_server
        get_backend.cache_clear()
        painted[backend] = [photo_stylize(photo=photo, style=style, strength=0.8, stroke="fine")
                            for style in (slot_two, copy)]
    get_backend.cache_clear()
    for backend in painted:
        np.testing.assert_array_equal(painted[backend][1], painted[backend][0])
    np.testing.assert_array_equal(painted["tfserving"][1], painted["local"][1])


# --------------------------------------------------------------------------- the bank moves


def export_next_version(*, change_convs: bool) -> int:
    """The test bank's next version, as a staff slot retrain (the rows change, the shared
    weights stay) or a joint retrain (the convolutions change) would export it."""
    import keras

    from ml.bank import style_norms
    from ml.export import export_savedmodel, read_slots

    live = max(int(p.name) for p in bank_dir().parent.iterdir())
    net = keras.saving.load_model(bank_dir(live) / "transform_net.keras")
    norm = style_norms(net)[0]
    norm.scale.assign(np.asarray(norm.scale) * 1.1)
    if change_convs:
        net.conv_in.kernel.assign(np.asarray(net.conv_in.kernel) * 0.9)
    slots = [{k: v for k, v in s.items() if k != "slot"}
             for s in read_slots(bank_dir(live))["slots"]]
    version, _ = export_savedmodel(net, bank_dir().parent, slots=slots)
    Style.objects.filter(model_name=OWN_BANK, bank_index__isnull=False).update(
        live_version=version)
    return version


@pytest.mark.django_db
def test_a_new_bank_version_moves_its_own_styles_or_has_them_learnt_again(own_bank, sent):
    owner = UserFactory()
    mine = own_style(owner, name="Mine")
    job = StyleJobFactory(owner=owner, style=mine, status="succeeded",
                          result_image=ContentFile(png_bytes(), name="result.jpg"),
                          finished_at=timezone.now())
    photo = gradient(40, 56)

    # A slot retrain keeps the shared weights: the row fits the new version as it is.
    two = export_next_version(change_convs=False)
    events.bank_went_live.send(sender=Style, model_name=OWN_BANK)
    mine.refresh_from_db()
    assert (mine.live_version, mine.status, sent) == (two, "ready", [])
    np.testing.assert_array_equal(photo_stylize(photo=photo, style=mine, stroke="fine"),
                                  photo_stylize(photo=photo, style=mine, stroke="fine"))

    # A joint retrain changes them: learnt again on it, painting with its version meanwhile.
    three = export_next_version(change_convs=True)
    events.bank_went_live.send(sender=Style, model_name=OWN_BANK)
    mine.refresh_from_db()
    assert (mine.live_version, own_styles.own_style_state(mine)) == (two, "relearning")
    assert mine.training_progress["relearn"] and mine.training_progress["from_version"] == two
    assert sent == [("stylize.tasks.own_style_learn", "own-styles", (mine.pk,))]
    assert mine in style_list_usable(owner)
    assert photo_stylize(photo=photo, style=mine, stroke="fine").shape == photo.shape
    shown = api(owner).get(f"{API}{mine.slug}/").json()
    assert shown["status"] == "relearning"
    job.refresh_from_db()
    assert job.result_image and stored(job.result_image) == png_bytes()  # nothing lost
    assert three == 3


@pytest.mark.slow
@pytest.mark.django_db
def test_a_staff_slot_retrain_is_not_held_up_and_own_styles_follow_it(
    own_bank, sent, photos, vgg16_random_weights
):
    from stylize.services import training

    owner = UserFactory()
    mine = own_style(owner)
    learning = own_styles.own_style_create(owner=UserFactory(), name="Waiting",
                                           painting=painting_upload())
    training.style_train(style=own_bank[1], overrides={
        "data_dir": str(photos), "steps": 2, "size": 32, "batch": 2, "loss_network": "vgg16",
        "loss_weights": str(vgg16_random_weights)})
    own_bank[1].refresh_from_db()
    assert own_bank[1].live_version == 2  # the bank moved, whatever users have queued
    mine.refresh_from_db()
    learning.refresh_from_db()
    assert (mine.live_version, mine.status) == (2, "ready")  # same shared weights: moved
    assert own_styles.own_style_state(learning) == "queued"  # still waiting, untouched


# --------------------------------------------------------------------------- deleting


@pytest.mark.django_db
def test_deleting_keeps_old_results_and_lets_the_painting_go(
    own_bank, django_capture_on_commit_callbacks
):
    owner = UserFactory()
    used, unused = own_style(owner, name="Used"), own_style(owner, name="Unused")
    job = StyleJobFactory(owner=owner, style=used, status="succeeded",
                          result_image=ContentFile(png_bytes(), name="result.jpg"),
                          finished_at=timezone.now())
    painting = Path(django_settings.PRIVATE_MEDIA_ROOT) / used.private_painting.name
    with django_capture_on_commit_callbacks(execute=True):
        assert api(owner).delete(f"{API}{used.slug}/").status_code == 204
        assert api(owner).delete(f"{API}{unused.slug}/").status_code == 204
    assert not painting.exists()
    used.refresh_from_db()
    assert used.removed_at and used.style_params is None and not used.private_painting
    assert api(owner).get(f"{API}{used.slug}/").status_code == 404
    page = Client()
    page.force_login(owner)
    assert page.get(reverse("stylize:job", args=[job.pk])).status_code == 200
    assert page.get(reverse("stylize:job_result", args=[job.pk])).status_code == 200
    assert own_style(owner, name="Used").name == "Used"  # the name is free again

    # The rows go after a day (the daily limit counts them), once no job names them.
    assert own_styles.own_styles_delete_removed() == 0
    Style.objects.filter(pk__in=[used.pk, unused.pk]).update(
        removed_at=timezone.now() - timedelta(days=2))
    assert own_styles.own_styles_delete_removed() == 1
    assert not Style.objects.filter(pk=unused.pk).exists()
    job.delete()
    assert own_styles.own_styles_delete_removed() == 1
    assert not Style.objects.filter(pk=used.pk).exists()


@pytest.mark.django_db
def test_a_learning_stopped_by_its_time_limit_ends_with_a_reason(own_bank, sent):
    owner = UserFactory()
    style = own_styles.own_style_create(owner=owner, name="Slow", painting=painting_upload())
    long_ago = timezone.now() - timedelta(hours=2)
    Style.objects.filter(pk=style.pk).update(status="training", updated_at=long_ago,
                                             training_progress={"state": "running"})
    queued = own_styles.own_style_create(owner=UserFactory(), name="Lost",
                                         painting=painting_upload())
    Style.objects.filter(pk=queued.pk).update(updated_at=long_ago)
    sent.clear()
    counts = own_styles.own_styles_sweep()
    assert (counts["stuck"], counts["resent"]) == (1, 1)
    style.refresh_from_db()
    assert style.status == "failed" and "took too long" in style.status_reason
    assert sent == [("stylize.tasks.own_style_learn", "own-styles", (queued.pk,))]


# --------------------------------------------------------------------------- queue, worker


def test_own_styles_have_a_queue_and_a_worker_of_their_own():
    from prisma_site import devstack
    from stylize import tasks

    assert django_settings.CELERY_TASK_ROUTES["stylize.tasks.own_style_learn"] == {
        "queue": "own-styles"}
    assert tasks.own_style_learn.time_limit == django_settings.OWN_STYLE_TIME_LIMIT
    commands = dict(devstack.worker_commands(port=8000, workers=1, var_dir=Path("/tmp")))
    queues = {name: command[command.index("--queues") + 1] for name, command in commands.items()}
    assert queues["trainer-own-styles"] == "own-styles"
    assert all("own-styles" not in queue for name, queue in queues.items()
               if name != "trainer-own-styles")  # nor photo jobs, nor staff training
    compose = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    assert "--queues own-styles" in compose


# --------------------------------------------------------------------------- real workers


@pytest.mark.slow
def test_the_whole_flow_on_real_workers(transactional_db, own_bank, own_styles_worker,
                                        empty_cache):
    owner, stranger = UserFactory(), UserFactory()
    client = api(owner)
    made = client.post(API, {"painting": painting_upload(size=(128, 96)), "name": "Storm"},
                       format="multipart")
    assert made.status_code == 201
    slug = made.json()["slug"]
    seen = set()

    def learnt():
        data = client.get(f"{API}{slug}/").json()
        seen.add(data["status"])
        return data if data["status"] in ("ready", "failed") else None

    data = wait_until(learnt, timeout=240, what="learning the painting")
    assert data["status"] == "ready", data
    assert seen <= {"queued", "learning", "ready"}
    assert data["sample"] and client.get(data["sample"]).status_code == 200

    # Previews and a job with it: strength, a mix with a shipped style, fine strokes.
    preview_id = client.post("/api/v1/previews/", {"image": gradient_upload(size=(160, 120))},
                             format="multipart").json()["id"]
    grid = wait_until(lambda: (lambda d: d if d["done"] else None)(
        client.get(f"/api/v1/previews/{preview_id}/").json()), what="the previews")
    row = next(r for r in grid["styles"] if r["style"] == slug)
    assert row["status"] == "done", row
    job = client.post("/api/v1/jobs/", {
        "image": gradient_upload(size=(160, 120)), "style": slug, "strength": 0.7,
        "blend_with": own_bank[0].slug, "blend": 0.3, "stroke": "fine", "max_side": 128,
    }, format="multipart")
    assert job.status_code == 201, job.content
    job_id = job.json()["id"]
    done = wait_until(lambda: (lambda j: j if j.is_finished else None)(
        StyleJob.objects.get(pk=job_id)), timeout=120, what="the job")
    assert done.status == "succeeded", done.error
    assert Image.open(io.BytesIO(stored(done.result_image))).size == (128, 96)

    # Shared like any result; nobody else reaches the style or the job.
    share = client.post(f"/api/v1/jobs/{job_id}/share/").json()["share_url"]
    shared = Client().get(share)
    assert shared.status_code == 200 and "Storm" in shared.content.decode()
    assert api(stranger).get(f"{API}{slug}/").status_code == 404
    assert api(stranger).get(f"/api/v1/jobs/{job_id}/").status_code == 404
    page = Client()
    assert page.login(username=owner.username, password=PASSWORD)
    assert "Storm" in page.get(reverse("stylize:upload")).content.decode()
    assert PreviewImage.objects.filter(style__slug=slug).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("language, words", [
    ("en", ["My styles", "Learn a new style", "Ready", "Waiting", "Your style Mine",
            "Waiting for its turn on the training worker."]),
    ("zh-hans", ["我的风格", "学习新风格", "可用", "等待中", "你的风格 Mine",
                 "正在等待训练进程轮到它。"]),
])
def test_the_pages_say_where_each_style_is_in_both_languages(own_bank, sent, language, words):
    owner = UserFactory()
    own_style(owner, name="Ready one")
    queued = own_styles.own_style_create(owner=owner, name="Mine", painting=painting_upload())
    page = Client(HTTP_ACCEPT_LANGUAGE=language)
    page.force_login(owner)
    listed = page.get(reverse("stylize:own_style_list"))
    shown = page.get(reverse("stylize:own_style", args=[queued.slug]))
    status = page.get(reverse("stylize:own_style_status", args=[queued.slug])).json()
    text = listed.content.decode() + shown.content.decode() + status["state_text"]
    for word in words:
        assert word in text, word
    assert status["state"] == "queued" and not status["finished"]
    assert status == own_styles_status_keys(status)


def own_styles_status_keys(status):
    assert set(status) == {"slug", "state", "state_text", "detail", "step", "steps",
                           "fraction", "seconds_left", "sample_url", "error", "finished"}
    return status
