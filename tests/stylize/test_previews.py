"""Previews (docs/design/previews.md): a photo painted small in every offered style
before any job, on a queue and worker of its own; the styles of one bank in one batched
model call; private to their owner (or, without an account, to the browser session that
made them, at most one per client address every few minutes) and deleted after an hour;
jobs made from a preview's or an earlier job's photo without uploading it again, within
the per-user limits. The API on real workers, the upload page and the job page's
"Change your mind"."""

import io
import re
import time
from datetime import timedelta
from unittest import mock

import numpy as np
import pytest
import yaml
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from prisma_site import devstack
from stylize.models import Preview, PreviewImage, StyleJob
from stylize.preview_sessions import PENDING_SESSION_KEY, PREVIEWS_SESSION_KEY
from stylize.services import jobs, previews
from tests.factories import BankStyleFactory, StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import BASE_DIR, PASSWORD, gradient_file, gradient_upload, wait_until

PHOTO = (400, 300)  # painted at PREVIEW_SIDE (320) on the longer side: 320×240


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def sent(monkeypatch):
    """The preview tasks sent (queue and preview id), recorded instead of sent."""
    calls = []

    def record(self, args, **kwargs):
        calls.append((self.name, kwargs.get("queue"), args))

    monkeypatch.setattr("prisma_site.celery.Task.apply_async_on_commit", record)
    return calls


@pytest.fixture
def mixed_styles(db):
    """Two styles with a network of their own each (the identity and itself) and three
    slots of one bank (a 4-slot network)."""
    return {
        "single": [StyleFactory(name="Alpha Single", slug="alpha-single"),
                   StyleFactory(name="Beta Single", slug="beta-single")],
        "bank": [BankStyleFactory(name=f"Bank {i}", slug=f"bank-{i}", model_name="bank",
                                  bank_index=i, bank_slots=4) for i in (1, 2, 3)],
    }


def painted(image: PreviewImage) -> Image.Image:
    with image.image.open("rb") as stored:
        picture = Image.open(io.BytesIO(stored.read()))
        picture.load()
    return picture


# --------------------------------------------------------------------------- painting


def test_a_grid_is_painted_with_one_batched_call_per_bank(
    mixed_styles, recording_backend, sent, settings
):
    owner = UserFactory()
    preview = previews.preview_create(owner=owner, photo=gradient_upload(size=PHOTO))
    assert [(name, queue) for name, queue, _ in sent] == [
        ("stylize.tasks.preview_paint", "previews")]
    assert preview.images.filter(status="queued").count() == 5

    assert previews.preview_paint(preview_id=preview.pk) == 5

    bank_calls = [call for call in recording_backend.calls if call["model_name"] == "bank"]
    single_calls = [call for call in recording_backend.calls if call["model_name"] != "bank"]
    # The bank's three styles: ONE call, the photo three times, a weights row each.
    [bank_call] = bank_calls
    assert bank_call["shape"] == (3, 240, 320, 3)
    weights = bank_call["style_weights"]
    assert weights.shape == (3, 4)
    np.testing.assert_allclose(weights, np.eye(4)[1:], atol=1e-6)
    assert sorted(call["model_name"] for call in single_calls) == ["alpha_single", "beta_single"]
    assert all(call["shape"] == (1, 240, 320, 3) for call in single_calls)
    for call in single_calls:  # each its own network's slot 1
        np.testing.assert_allclose(call["style_weights"], [[0.0, 1.0]], atol=1e-6)
    images = list(preview.images.all())
    assert {image.status for image in images} == {"done"}
    assert {painted(image).size for image in images} == {(320, 240)}
    assert all(image.image.name.startswith("previews/") for image in images)
    preview.refresh_from_db()
    assert preview.working_photo.name.startswith("previews/")  # re-paints read this

    # A re-paint reads the small copy, not the upload, and only its own style.
    recording_backend.calls.clear()
    bank_two = preview.images.get(style__slug="bank-2")
    previews.preview_image_repaint(image=bank_two, strength=0.5, blend_with="bank-3",
                                   blend=0.25)
    assert previews.preview_paint(preview_id=preview.pk) == 1
    [call] = recording_backend.calls
    np.testing.assert_allclose(call["style_weights"], [[0.5, 0.0, 0.375, 0.125]], atol=1e-6)
    bank_two.refresh_from_db()
    assert (bank_two.status, bank_two.revision, bank_two.strength, bank_two.blend) == (
        "done", 2, 0.5, 0.25)


def test_a_paint_for_an_older_revision_is_dropped(mixed_styles, recording_backend, sent):
    preview = previews.preview_create(owner=UserFactory(), photo=gradient_upload(size=PHOTO))
    image = preview.images.get(style__slug="alpha-single")
    stale = PreviewImage.objects.get(pk=image.pk)  # what a task loaded, revision 1
    previews.preview_image_repaint(image=image, strength=0.3)  # revision 2 asked meanwhile
    assert previews._preview_images_store([(stale, b"old")]) == 0
    image.refresh_from_db()
    assert (image.status, image.revision, image.image.name) == ("queued", 2, "")
    assert previews.preview_paint(preview_id=preview.pk) == 5
    image.refresh_from_db()
    assert image.status == "done" and painted(image).size == (320, 240)
    # The same settings again: nothing new to paint, no task.
    sent.clear()
    assert previews.preview_image_repaint(image=image, strength=0.3).revision == 2
    assert sent == []


def test_a_repaint_is_checked_as_a_job_is(mixed_styles, recording_backend, sent):
    from django.core.exceptions import ValidationError

    preview = previews.preview_create(owner=UserFactory(), photo=gradient_upload(size=PHOTO))
    single = preview.images.get(style__slug="alpha-single")
    with pytest.raises(ValidationError) as refused:
        previews.preview_image_repaint(image=single, strength=2.0, blend_with="bank-1")
    assert set(refused.value.message_dict) == {"strength", "blend_with"}


def test_an_unreadable_photo_fails_every_style_with_the_reason(
    mixed_styles, recording_backend, sent
):
    preview = previews.preview_create(owner=UserFactory(), photo=gradient_upload(size=PHOTO))
    with preview.photo.open("wb") as broken:
        broken.write(b"not a picture any more")
    assert previews.preview_paint(preview_id=preview.pk) == 0
    assert set(preview.images.values_list("status", "error")) == {
        ("failed", "Your photo could not be read as an image.")}
    assert recording_backend.calls == []


def test_a_missing_model_fails_only_its_own_styles(mixed_styles, use_local_backend, sent):
    tiny = StyleFactory(name="Tiny", slug="tiny", model_name="tiny")
    preview = previews.preview_create(owner=UserFactory(), photo=gradient_upload(size=PHOTO))
    assert previews.preview_paint(preview_id=preview.pk) == 1
    assert preview.images.get(style=tiny).status == "done"
    failed = preview.images.exclude(style=tiny)
    assert {image.status for image in failed} == {"failed"}
    assert all("not installed" in image.error for image in failed)


def test_the_previews_worker_warms_every_offered_model(mixed_styles, recording_backend):
    assert previews.previews_warm() == 5
    assert sorted(call["model_name"] for call in recording_backend.calls) == [
        "alpha_single", "bank", "beta_single"]


def test_only_a_worker_of_the_previews_queue_alone_warms_up(settings, sent):
    from prisma_site.celery import _warm_the_previews

    class Sender:
        def __init__(self, queues):
            self.app = mock.Mock()
            self.app.amqp.queues.consume_from = {name: object() for name in queues}

    _warm_the_previews(sender=Sender(["celery", "previews"]))
    assert sent == []
    _warm_the_previews(sender=Sender(["previews"]))
    assert [(name, queue) for name, queue, _ in sent] == [
        ("stylize.tasks.previews_warm", "previews")]


# --------------------------------------------------------------------------- its own queue


def test_make_run_docker_compose_and_the_test_worker_serve_the_previews_queue(settings):
    assert settings.PREVIEW_QUEUE == "previews"
    assert settings.PREVIEW_QUEUE not in settings.JOB_QUEUES.values()
    for task in ("stylize.tasks.preview_paint", "stylize.tasks.previews_warm"):
        assert settings.CELERY_TASK_ROUTES[task] == {"queue": "previews"}
    assert "stylize.tasks.previews_delete_expired" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    commands = dict(devstack.worker_commands(port=8000, workers=1, var_dir=BASE_DIR))
    command = commands["worker-previews"]
    assert command[command.index("--queues") + 1] == "previews"
    services = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]
    worker = services["worker-previews"]
    assert "--queues previews " in worker["command"]
    assert "previews@" in worker["healthcheck"]["test"][1]
    assert "private:/app/var/private" in worker["volumes"]  # it reads and writes photos


# --------------------------------------------------------------------------- privacy


def test_previews_are_deleted_an_hour_after_with_their_files(mixed_styles, recording_backend, sent,
                                                             django_capture_on_commit_callbacks):
    preview = previews.preview_create(owner=UserFactory(), photo=gradient_upload(size=PHOTO))
    previews.preview_paint(preview_id=preview.pk)
    preview.refresh_from_db()
    storage = preview.photo.storage
    files = [preview.photo.name, preview.working_photo.name,
             *preview.images.values_list("image", flat=True)]
    assert len(files) == 7 and all(storage.exists(name) for name in files)
    orphan = storage.save("previews/orphan.jpg", ContentFile(b"left by a crash"))

    soon = timezone.now() + timedelta(minutes=59)
    assert previews.previews_delete_expired(now=soon) == {"previews": 0, "files": 0}
    later = timezone.now() + timedelta(hours=1, minutes=1)  # the clock moved past the hour
    with django_capture_on_commit_callbacks(execute=True):
        counts = previews.previews_delete_expired(now=later)
    assert counts == {"previews": 1, "files": 1}
    assert not Preview.objects.exists() and not PreviewImage.objects.exists()
    assert not any(storage.exists(name) for name in [*files, orphan])


def test_a_preview_of_a_job_goes_with_the_job(mixed_styles, recording_backend, sent,
                                             django_capture_on_commit_callbacks):
    job = StyleJobFactory(style=mixed_styles["single"][0])
    preview = previews.preview_create(owner=job.owner, source_job=job)
    previews.preview_paint(preview_id=preview.pk)
    names = list(PreviewImage.objects.values_list("image", flat=True))
    storage = job.input_image.storage
    assert not Preview.objects.get().photo  # the job's photo, not a copy
    with django_capture_on_commit_callbacks(execute=True):
        jobs.job_delete(job=job)
    assert not Preview.objects.exists()
    assert not any(storage.exists(name) for name in names)


def test_a_deleted_account_takes_its_previews_files(mixed_styles, recording_backend, sent,
                                                     django_capture_on_commit_callbacks):
    from stylize.services.accounts import account_delete

    owner = UserFactory()
    preview = previews.preview_create(owner=owner, photo=gradient_upload(size=PHOTO))
    previews.preview_paint(preview_id=preview.pk)
    preview.refresh_from_db()
    storage = preview.photo.storage
    names = [preview.photo.name, preview.working_photo.name,
             *PreviewImage.objects.values_list("image", flat=True)]
    with django_capture_on_commit_callbacks(execute=True):
        account_delete(user=owner)
    assert not Preview.objects.exists()
    assert not any(storage.exists(name) for name in names)


def test_the_beat_sweep_task_is_the_service(mixed_styles, recording_backend, sent):
    from stylize import tasks

    with mock.patch("stylize.services.previews.previews_delete_expired",
                    return_value={"previews": 0, "files": 0}) as sweep:
        assert tasks.previews_delete_expired() == {"previews": 0, "files": 0}
    sweep.assert_called_once_with()


@pytest.fixture
def api_styles(db):
    return {"ready": StyleFactory(name="Starry Night", slug="starry-night"),
            "bank": BankStyleFactory(name="Bank One", slug="bank-one", bank_index=1)}


@pytest.mark.usefixtures("empty_cache")
def test_only_the_owner_sees_a_preview_and_its_images(api_styles, recording_backend, sent):
    owner, stranger = UserFactory(), UserFactory()
    client = APIClient()
    client.force_authenticate(owner)
    response = client.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                           format="multipart")
    assert response.status_code == 201, response.content
    preview_id = response.json()["id"]
    assert response["Location"].endswith(f"/api/v1/previews/{preview_id}/")
    previews.preview_paint(preview_id=preview_id)

    data = client.get(f"/api/v1/previews/{preview_id}/").json()
    assert data["done"] is True
    assert [(row["style"], row["status"]) for row in data["styles"]] == [
        ("bank-one", "done"), ("starry-night", "done")]
    url = data["styles"][1]["image_url"]
    jpeg = client.get(url)
    assert jpeg.status_code == 200 and jpeg["Content-Type"] == "image/jpeg"
    assert jpeg["Cache-Control"] == "private, no-store"
    assert jpeg["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(b"".join(jpeg.streaming_content))).size == (320, 240)
    png = client.get(url + "&format=png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    assert client.get(url + "&format=gif").status_code == 400

    other = APIClient()
    other.force_authenticate(stranger)
    anonymous = APIClient()
    for someone in (other, anonymous):
        assert someone.get(f"/api/v1/previews/{preview_id}/").status_code == 404
        assert someone.get(url).status_code == 404
        assert someone.post(f"/api/v1/previews/{preview_id}/styles/starry-night/",
                            {"strength": 0.5}, format="json").status_code == 404
        assert someone.delete(f"/api/v1/previews/{preview_id}/").status_code == 404
    assert client.delete(f"/api/v1/previews/{preview_id}/").status_code == 204
    assert not Preview.objects.exists()


@pytest.mark.usefixtures("empty_cache")
def test_without_an_account_one_preview_per_address_every_few_minutes(
    api_styles, recording_backend, sent, settings
):
    settings.PREVIEW_ANONYMOUS_RATE = "1/5m"
    visitor = APIClient()
    first = visitor.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                         format="multipart")
    assert first.status_code == 201
    preview = Preview.objects.get()
    assert preview.owner is None
    # Only the session that made it sees it.
    assert visitor.get(f"/api/v1/previews/{preview.pk}/").status_code == 200
    assert APIClient().get(f"/api/v1/previews/{preview.pk}/").status_code == 404
    someone = APIClient()
    someone.force_authenticate(UserFactory())
    assert someone.get(f"/api/v1/previews/{preview.pk}/").status_code == 404

    # A refused photo counts against nothing.
    refused = visitor.post("/api/v1/previews/", {"image": ContentFile(b"no", name="x.png")},
                           format="multipart")
    assert refused.status_code == 400
    again = APIClient().post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                             format="multipart")  # same address, another browser
    assert again.status_code == 429
    assert 200 < int(again["Retry-After"]) <= 300
    assert again.json() == {"detail": (
        "Without an account, your address can preview one photo every few minutes. Please "
        "try again in 5 minutes, or sign up or log in to preview more.")}
    zh = APIClient().post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                          format="multipart", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert zh.status_code == 429 and "注册" in zh.json()["detail"]
    elsewhere = APIClient().post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                                 format="multipart", REMOTE_ADDR="203.0.113.9")
    assert elsewhere.status_code == 201
    # Users have a rate of their own, not this one.
    user = APIClient()
    user.force_authenticate(UserFactory())
    assert user.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                     format="multipart").status_code == 201
    # Nothing of a visitor's is kept beyond the hour.
    assert previews.previews_delete_expired(
        now=timezone.now() + timedelta(hours=1, seconds=1))["previews"] == 3


@pytest.mark.usefixtures("empty_cache")
def test_without_an_account_the_sessions_csrf_token_is_needed(api_styles, recording_backend, sent):
    browser = APIClient(enforce_csrf_checks=True)
    response = browser.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                            format="multipart")
    assert response.status_code == 403 and not Preview.objects.exists()


@pytest.mark.usefixtures("empty_cache")
def test_users_preview_and_repaint_rates(api_styles, recording_backend, sent, settings):
    settings.PREVIEW_CREATE_RATE = "2/h"
    settings.PREVIEW_PAINT_RATE = "3/m"
    client = APIClient()
    client.force_authenticate(UserFactory())
    codes = [client.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                         format="multipart").status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    preview = Preview.objects.first()
    url = f"/api/v1/previews/{preview.pk}/styles/bank-one/"
    codes = [client.post(url, {"strength": 0.1 * (i + 1)}, format="json").status_code
             for i in range(4)]
    assert codes == [202, 202, 202, 429]


@pytest.mark.usefixtures("empty_cache")
def test_a_repaint_through_the_api(api_styles, recording_backend, sent):
    client = APIClient()
    client.force_authenticate(UserFactory())
    preview_id = client.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                             format="multipart").json()["id"]
    previews.preview_paint(preview_id=preview_id)
    url = f"/api/v1/previews/{preview_id}/styles/bank-one/"
    response = client.post(url, {"strength": 0.4}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "queued" and response.json()["strength"] == 0.4
    assert response.json()["image_url"]  # the last painting, while the new one is made
    bad = client.post(url, {"strength": 0.4, "blend_with": "starry-night"}, format="json")
    assert bad.status_code == 400 and "blend_with" in bad.json()
    assert client.post(f"/api/v1/previews/{preview_id}/styles/nope/", {},
                       format="json").status_code == 404


# --------------------------------------------------------------------------- jobs from them


@pytest.fixture
def api_user(db, empty_cache):
    client = APIClient()
    user = UserFactory()
    client.force_authenticate(user)
    return client, user


def test_a_job_from_a_preview_uses_its_photo_without_an_upload(
    api_styles, api_user, recording_backend, sent, queue
):
    client, user = api_user
    preview_id = client.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                             format="multipart").json()["id"]
    response = client.post("/api/v1/jobs/", {"preview": preview_id, "style": "starry-night",
                                             "strength": 0.7}, format="multipart")
    assert response.status_code == 201, response.content
    job = StyleJob.objects.get(pk=response.json()["id"])
    preview = Preview.objects.get(pk=preview_id)
    with job.input_image.open("rb") as a, preview.photo.open("rb") as b:
        assert a.read() == b.read()
    assert job.input_image.name != preview.photo.name  # its own file, deleted with it
    assert (job.owner, job.style.slug, job.strength) == (user, "starry-night", 0.7)

    # Someone else's preview, or none: a readable 400.
    other = APIClient()
    other.force_authenticate(UserFactory())
    refused = other.post("/api/v1/jobs/", {"preview": preview_id, "style": "starry-night"},
                         format="multipart")
    assert refused.status_code == 400 and "preview" in refused.json()
    both = client.post("/api/v1/jobs/", {"preview": preview_id, "style": "starry-night",
                                         "image": gradient_upload()}, format="multipart")
    assert both.status_code == 400 and "image" in both.json()


def test_a_job_from_an_earlier_jobs_photo(api_styles, api_user, recording_backend, sent, queue):
    client, user = api_user
    first = client.post("/api/v1/jobs/", {"image": gradient_upload(size=PHOTO),
                                          "style": "starry-night", "max_side": 256,
                                          "stroke": "fine", "preserve_colors": True},
                        format="multipart").json()
    response = client.post("/api/v1/jobs/", {"source_job": first["id"], "strength": 0.5},
                           format="multipart")
    assert response.status_code == 201, response.content
    again = response.json()
    # Left out: the earlier job's style, size, strokes and colours; strength as given.
    assert (again["style"], again["max_side"], again["stroke"], again["preserve_colors"],
            again["strength"]) == ("starry-night", 256, "fine", True, 0.5)
    other = client.post("/api/v1/jobs/", {"source_job": first["id"], "style": "bank-one",
                                          "max_side": 512}, format="multipart").json()
    assert (other["style"], other["max_side"], other["stroke"]) == ("bank-one", 512, "fine")
    source, copy = StyleJob.objects.get(pk=first["id"]), StyleJob.objects.get(pk=again["id"])
    with source.input_image.open("rb") as a, copy.input_image.open("rb") as b:
        assert a.read() == b.read()
    # A preview of the job's photo: no upload either.
    made = client.post("/api/v1/previews/", {"source_job": first["id"]}, format="multipart")
    assert made.status_code == 201 and made.json()["source_job"] == first["id"]
    stranger = APIClient()
    stranger.force_authenticate(UserFactory())
    for path, data in (("/api/v1/jobs/", {"source_job": first["id"]}),
                       ("/api/v1/previews/", {"source_job": first["id"]})):
        refused = stranger.post(path, data, format="multipart")
        assert refused.status_code == 400 and "source_job" in refused.json()


def test_jobs_from_previews_and_jobs_keep_the_per_user_limits(
    api_styles, api_user, recording_backend, sent, queue, settings
):
    client, user = api_user
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 2
    preview_id = client.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)},
                             format="multipart").json()["id"]
    first = client.post("/api/v1/jobs/", {"preview": preview_id, "style": "starry-night"},
                        format="multipart")
    second = client.post("/api/v1/jobs/", {"source_job": first.json()["id"]},
                         format="multipart")
    third = client.post("/api/v1/jobs/", {"preview": preview_id, "style": "starry-night"},
                        format="multipart")
    fourth = client.post("/api/v1/jobs/", {"source_job": first.json()["id"]},
                         format="multipart")
    assert [r.status_code for r in (first, second, third, fourth)] == [201, 201, 429, 429]
    assert "at most 2 jobs" in third.json()["detail"]
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 0
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "job_create": "5/hour"}}
    codes = [client.post("/api/v1/jobs/", {"source_job": first.json()["id"]},
                         format="multipart").status_code for _ in range(2)]
    assert codes == [201, 429]  # 5 asked for this hour, whatever their photo


def test_the_openapi_description_has_previews_and_jobs_from_them(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    for path in ("/api/v1/previews/", "/api/v1/previews/{id}/",
                 "/api/v1/previews/{id}/styles/{slug}/",
                 "/api/v1/previews/{id}/styles/{slug}/image/"):
        assert path in paths, sorted(paths)
    create = schema["components"]["schemas"]["JobCreateRequest"]["properties"]
    assert {"image", "preview", "source_job", "style"} <= set(create)
    preview = schema["components"]["schemas"]["Preview"]["properties"]
    assert {"id", "styles", "done", "expires_at"} <= set(preview)
    image = schema["components"]["schemas"]["PreviewImage"]["properties"]
    assert {"style", "status", "image_url"} <= set(image)


# --------------------------------------------------------------------------- the pages


@pytest.mark.usefixtures("empty_cache")
def test_a_visitor_previews_then_signs_in_and_finds_the_photo_kept(
    api_styles, recording_backend, sent
):
    owner = UserFactory(username="ada", email="ada@example.com")
    browser = Client()
    page = browser.get(reverse("stylize:upload"))
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-previews-url="/api/v1/previews/"' in text and 'id="signup-note"' in text
    # The page's script makes the preview through the API, with the session.
    made = browser.post("/api/v1/previews/", {"image": gradient_upload(size=PHOTO)})
    assert made.status_code == 201
    preview_id = made.json()["id"]
    assert browser.session[PREVIEWS_SESSION_KEY] == [preview_id]
    # Asking for the job keeps the preview and the choices for the account.
    response = browser.post(reverse("stylize:upload"), {
        "preview": preview_id, "style": "bank-one", "strength": "0.6", "max_side": "512",
        "stroke": "medium", "blend": "0.5"})
    assert response.status_code == 302 and response.url == reverse("stylize:signup")
    assert not StyleJob.objects.exists()
    pending = browser.session[PENDING_SESSION_KEY]
    assert pending["preview"] == preview_id and pending["choices"]["style"] == "bank-one"

    # Logging in in the same browser makes the preview the account's …
    browser.post(reverse("stylize:login"), {"username": "ada", "password": PASSWORD})
    assert Preview.objects.get(pk=preview_id).owner == owner
    # … and the upload page shows it again, with the choices.
    text = browser.get(reverse("stylize:upload")).content.decode()
    assert f'data-preview-id="{preview_id}"' in text and 'id="kept-photo"' in text
    assert re.search(r'value="bank-one" required data-bank="bank"\s+checked', text)
    assert 'value="0.6"' in text
    with mock.patch("stylize.tasks.job_run.apply_async"):
        response = browser.post(reverse("stylize:upload"), {
            "preview": preview_id, "style": "bank-one", "strength": "0.6", "max_side": "512",
            "stroke": "medium", "blend": "0.5"})
    job = StyleJob.objects.get()
    assert response.url == reverse("stylize:job", args=[job.pk])
    assert (job.owner, job.strength, job.max_side, job.stroke) == (owner, 0.6, 512, "medium")
    assert PENDING_SESSION_KEY not in browser.session


@pytest.mark.usefixtures("empty_cache")
def test_a_visitor_without_script_gets_a_preview_made_from_the_upload(api_styles, recording_backend,
                                                                        sent):
    browser = Client()
    response = browser.post(reverse("stylize:upload"), {
        "image": gradient_upload(size=PHOTO), "style": "starry-night", "strength": "1",
        "max_side": "1024"})
    assert response.status_code == 302 and response.url == reverse("stylize:signup")
    assert Preview.objects.get().owner is None
    again = browser.post(reverse("stylize:upload"), {
        "image": gradient_upload(size=PHOTO), "style": "starry-night", "strength": "1",
        "max_side": "1024"})
    assert again.status_code == 429 and "sign up or log in" in again.content.decode()


def test_someone_elses_or_an_expired_preview_is_refused_on_the_page(api_styles, recording_backend,
                                                                     sent):
    preview = previews.preview_create(owner=UserFactory(), photo=gradient_upload(size=PHOTO))
    browser = Client()
    browser.force_login(UserFactory())
    response = browser.post(reverse("stylize:upload"), {
        "preview": str(preview.pk), "style": "starry-night", "strength": "1",
        "max_side": "1024"})
    assert response.status_code == 400
    assert "has expired" in response.content.decode() and not StyleJob.objects.exists()


@pytest.mark.usefixtures("empty_cache")
def test_the_job_page_paints_the_photo_again_in_another_style(api_styles, recording_backend, sent,
                                                             queue, settings):
    user = UserFactory()
    browser = Client()
    browser.force_login(user)
    job = StyleJobFactory(owner=user, style=api_styles["ready"], max_side=512, stroke="fine",
                          status=StyleJob.Status.SUCCEEDED, finished_at=timezone.now())
    job.result_image.save("result.jpg", ContentFile(gradient_file(fmt="JPEG")))
    text = browser.get(reverse("stylize:job", args=[job.pk])).content.decode()
    assert 'id="again"' in text and 'id="try-another-style"' in text
    assert f'data-source-job="{job.pk}"' in text and 'id="again-strength"' in text

    response = browser.post(reverse("stylize:job_again", args=[job.pk]),
                            {"style": "bank-one", "strength": "0.4"})
    again = StyleJob.objects.exclude(pk=job.pk).get()
    assert response.url == reverse("stylize:job", args=[again.pk])
    assert (again.style.slug, again.strength, again.max_side, again.stroke) == (
        "bank-one", 0.4, 512, "fine")
    with job.input_image.open("rb") as a, again.input_image.open("rb") as b:
        assert a.read() == b.read()

    settings.JOB_MAX_IN_FLIGHT_PER_USER = 1  # the new job is queued
    refused = browser.post(reverse("stylize:job_again", args=[job.pk]),
                           {"style": "starry-night", "strength": "1"})
    assert refused.status_code == 429
    assert "at most 1 job can be on the way" in refused.content.decode()
    stranger = Client()
    stranger.force_login(UserFactory())
    assert stranger.post(reverse("stylize:job_again", args=[job.pk]),
                         {"style": "starry-night", "strength": "1"}).status_code == 404
    assert StyleJob.objects.count() == 2


# --------------------------------------------------------------------------- real workers

SLOW = pytest.mark.slow


@SLOW
@pytest.mark.usefixtures("empty_cache")
def test_the_preview_api_on_a_real_worker(use_local_backend, tiny_styles, celery_worker_thread):
    owner = UserFactory()
    client = APIClient()
    client.force_authenticate(owner)
    started = time.monotonic()
    made = client.post("/api/v1/previews/", {"image": gradient_upload(size=(640, 480))},
                       format="multipart")
    assert made.status_code == 201
    preview_id = made.json()["id"]
    data = wait_until(lambda: (lambda d: d if d["done"] else None)(
        client.get(f"/api/v1/previews/{preview_id}/").json()), what="the previews")
    elapsed = time.monotonic() - started
    assert [(row["style"], row["status"]) for row in data["styles"]] == [
        ("tiny", "done"), ("tiny-bank-1", "done"), ("tiny-bank-2", "done")], data
    assert elapsed < 30
    for row in data["styles"]:
        picture = Image.open(io.BytesIO(b"".join(client.get(row["image_url"]).streaming_content)))
        assert picture.size == (320, 240)
    # The bank's two styles differ (one batched call, a row of weights each).
    one, two = (np.asarray(Image.open(io.BytesIO(b"".join(
        client.get(row["image_url"]).streaming_content))), dtype=float)
        for row in data["styles"][1:])
    assert np.abs(one - two).mean() > 1

    # Another strength re-paints that style only.
    before = data["styles"][1]["image_url"]
    assert client.post(f"/api/v1/previews/{preview_id}/styles/tiny-bank-1/",
                       {"strength": 0.3}, format="json").status_code == 202
    row = wait_until(lambda: next(
        (r for r in client.get(f"/api/v1/previews/{preview_id}/").json()["styles"]
         if r["style"] == "tiny-bank-1" and r["status"] == "done"), None), what="the repaint")
    assert row["strength"] == 0.3 and row["image_url"] != before

    # The full-size job from the preview, painted by the same workers.
    job_id = client.post("/api/v1/jobs/", {"preview": preview_id, "style": "tiny-bank-2",
                                           "max_side": 256}, format="multipart").json()["id"]
    job = wait_until(lambda: (lambda j: j if j.is_finished else None)(
        StyleJob.objects.get(pk=job_id)), what="the job")
    assert job.status == "succeeded", job.error
    assert Image.open(job.result_image).size == (256, 192)
    # … and a preview of that job's photo, for "Try another style".
    again = client.post("/api/v1/previews/", {"source_job": job_id}, format="multipart")
    assert again.status_code == 201
    wait_until(lambda: client.get(f"/api/v1/previews/{again.json()['id']}/").json()["done"],
               what="the previews of the job's photo")


@SLOW
@pytest.mark.usefixtures("empty_cache")
def test_a_preview_never_waits_behind_a_job(use_local_backend, tiny_styles):
    """A worker of the previews queue alone (as `make run` starts it): the preview is
    painted while a job, sent to a job queue that has no worker now, waits."""
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    from prisma_site.celery import app

    app.control.purge()
    owner = UserFactory()
    job = jobs.job_create(owner=owner, style=tiny_styles[0], input_image=gradient_upload())
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30,
                      queues=[settings.PREVIEW_QUEUE]):
        preview = previews.preview_create(owner=owner, photo=gradient_upload(size=PHOTO))
        wait_until(lambda: not preview.images.filter(status="queued").exists(),
                   what="the previews")
    assert set(preview.images.values_list("status", flat=True)) == {"done"}
    assert StyleJob.objects.get(pk=job.pk).status == "queued"
    app.control.purge()
