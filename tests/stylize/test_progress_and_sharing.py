"""A job's progress (stage, fraction of model passes, jobs ahead), its result in three
formats, and share links: made, opened logged out, revoked, expired; a result's PNG and
WebP made once and deleted with the job; share links rate-limited per client address."""

import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from stylize.imaging import encoding, loading, tiling
from stylize.models import StyleJob, private_storage
from stylize.services import job_files, jobs, sharing
from stylize.services.stylizing import job_run
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import gradient_file, gradient_upload, identity

# empty_cache: share links count each client address's requests in the cache.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]


def jpeg_bytes(size=(90, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(gradient_file(size))).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def succeeded_job(owner, **fields):
    return StyleJobFactory(owner=owner, status=StyleJob.Status.SUCCEEDED, stage="done",
                           progress=1.0, finished_at=timezone.now(),
                           result_image=ContentFile(jpeg_bytes(), name="result.jpg"), **fields)


# --------------------------------------------------------------------------- progress


def test_stylize_tiled_reports_each_model_call_out_of_the_total():
    photo = np.asarray(Image.open(io.BytesIO(gradient_file((300, 200)))).convert("RGB"))
    calls = []
    tiling.stylize_tiled(photo, identity, tile=128, overlap=16,
                          on_pass=lambda done, total: calls.append((done, total)))
    total = calls[0][1]
    assert total > 2  # tiles and the tone reference
    assert calls == [(done, total) for done in range(1, total + 1)]

    one = []
    tiling.stylize_tiled(photo, identity, tile=512, on_pass=lambda *a: one.append(a))
    assert one == [(1, 1)]


class ProgressWatcher:
    """A backend that notes the job's recorded stage and progress at every model call."""

    def __init__(self):
        self.seen = []

    def stylize(self, *, images, **kwargs):
        job = StyleJob.objects.get()
        self.seen.append((job.stage, job.progress))
        return 255 - images


def test_a_running_job_records_its_stage_and_the_fraction_painted(db, settings, monkeypatch):
    watcher = ProgressWatcher()
    monkeypatch.setattr("stylize.services.stylizing.get_backend", lambda: watcher)
    recorded = []
    real_progress = jobs.job_progress

    def recording(**kwargs):
        recorded.append((kwargs.get("stage"), kwargs["progress"]))
        return real_progress(**kwargs)

    monkeypatch.setattr("stylize.services.stylizing.job_progress", recording)
    settings.STYLIZE_TILE_SIZE = 96
    style = StyleFactory(live_version=1)
    job = jobs.job_create(owner=UserFactory(), style=style, max_side=300, stroke="fine",
                          input_image=gradient_upload(size=(300, 200)))
    assert (job.stage, job.progress) == ("queued", 0.0)

    assert job_run(job_id=job.pk)

    total = len(watcher.seen)
    assert total > 2
    # Before each call: painting, with what the earlier calls did.
    assert watcher.seen == [("painting", done / total) for done in range(total)]
    assert recorded[-1] == ("finishing", 1.0)
    assert [stage for stage, _ in recorded[:-1]] == ["painting"] * (total - 1)
    job.refresh_from_db()
    assert (job.status, job.stage, job.progress) == ("succeeded", "done", 1.0)


def test_progress_is_only_written_while_running_and_clamped(db):
    job = StyleJobFactory()
    assert not jobs.job_progress(job_id=job.pk, progress=0.5)
    assert jobs.job_start(job_id=job.pk)
    assert jobs.job_progress(job_id=job.pk, progress=7.0)
    job.refresh_from_db()
    assert (job.stage, job.progress) == ("painting", 1.0)
    jobs.job_requeue(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.stage, job.progress) == ("queued", "queued", 0.0)
    jobs.job_fail(job_id=job.pk, error="no")
    job.refresh_from_db()
    assert job.stage == "done"


def test_status_and_api_say_how_many_jobs_are_ahead(client, auth_client, user, db):
    now = timezone.now()
    others = [StyleJobFactory(enqueued_at=now - timedelta(minutes=9 - i)) for i in range(3)]
    StyleJobFactory(enqueued_at=now - timedelta(minutes=20), cost_class="large")  # other queue
    StyleJobFactory(enqueued_at=now - timedelta(minutes=30), status="succeeded")  # done
    mine = StyleJobFactory(owner=user, enqueued_at=now)
    later = StyleJobFactory(enqueued_at=now + timedelta(seconds=5))

    status = client.get(reverse("stylize:job_status", args=[mine.pk])).json()
    assert status["jobs_ahead"] == 3
    page = client.get(reverse("stylize:job", args=[mine.pk])).content.decode()
    assert "3 jobs are ahead of yours in the queue." in page
    assert '<progress id="job-progress" max="1" value="0.000">' in page
    assert auth_client.get(f"/api/v1/jobs/{mine.pk}/").json()["jobs_ahead"] == 3
    assert later and others[0]

    others[0].status = StyleJob.Status.SUCCEEDED
    others[0].save()
    assert client.get(reverse("stylize:job_status", args=[mine.pk])).json()["jobs_ahead"] == 2


def test_api_detail_shows_stage_and_progress(auth_client, user):
    job = StyleJobFactory(owner=user, status="running", stage="painting", progress=0.25)
    body = auth_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (body["stage"], body["progress"], body["jobs_ahead"]) == ("painting", 0.25, 0)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("asked, pil_format, content_type, extension", [
    ("", "JPEG", "image/jpeg", ".jpg"),
    ("jpeg", "JPEG", "image/jpeg", ".jpg"),
    ("png", "PNG", "image/png", ".png"),
    ("WebP", "WEBP", "image/webp", ".webp"),
])
def test_the_result_downloads_in_each_format_at_full_size(client, auth_client, user, asked,
                                                          pil_format, content_type, extension):
    job = succeeded_job(user)
    for response in (
        client.get(reverse("stylize:job_result", args=[job.pk]), {"format": asked, "download": 1}),
        auth_client.get(f"/api/v1/jobs/{job.pk}/result/", {"format": asked, "download": 1}),
    ):
        assert response.status_code == 200
        assert response["Content-Type"] == content_type
        assert response["Cache-Control"] == "private, no-store"
        assert response["Content-Disposition"].startswith("attachment;")
        assert f'{extension}"' in response["Content-Disposition"]
        image = Image.open(io.BytesIO(b"".join(response)))
        assert (image.format, image.size) == (pil_format, (90, 60))


def test_an_unknown_format_is_a_readable_400(client, auth_client, user):
    job = succeeded_job(user)
    page = client.get(reverse("stylize:job_result", args=[job.pk]), {"format": "gif"})
    assert page.status_code == 400 and "JPEG, PNG or WebP" in page.content.decode()
    api = auth_client.get(f"/api/v1/jobs/{job.pk}/result/", {"format": "tiff"})
    assert api.status_code == 400 and "JPEG, PNG or WebP" in api.json()["format"][0]


# --------------------------------------------------------------------------- sharing


def test_a_shared_link_shows_the_result_and_style_only_to_anyone(client, user, settings):
    job = succeeded_job(user, style=StyleFactory(name="Starry Night"),
                        input_filename="holiday-at-home.png")
    response = client.post(reverse("stylize:job_share", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    token = job.share_token
    assert token and len(token) >= 32 and str(job.pk) not in token
    assert abs(job.share_expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    assert f'value="{settings.SITE_URL}/s/{token}/"' in page and "Stop sharing" in page

    client.logout()
    shared = client.get(reverse("stylize:shared", args=[token]))
    assert shared.status_code == 200
    html = shared.content.decode()
    assert "Starry Night" in html
    for private in (str(job.pk), str(job.pk)[:8], user.username, user.email,
                    reverse("stylize:job_photo", args=[job.pk]), job.input_filename):
        assert private not in html
    assert shared["X-Robots-Tag"].startswith("noindex")
    assert shared["Referrer-Policy"] == "no-referrer"
    image = client.get(reverse("stylize:shared_image", args=[token]), {"format": "png"})
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert str(job.pk)[:8] not in image["Content-Disposition"]


def test_revoked_expired_and_made_up_links_are_404(client, user, settings):
    job = succeeded_job(user)
    job = sharing.job_share(job=job)
    url = reverse("stylize:shared", args=[job.share_token])
    image_url = reverse("stylize:shared_image", args=[job.share_token])
    assert client.get(url).status_code == 200

    assert client.post(reverse("stylize:job_unshare", args=[job.pk])).status_code == 302
    assert client.get(url).status_code == 404 and client.get(image_url).status_code == 404

    job = sharing.job_share(job=job)
    assert reverse("stylize:shared", args=[job.share_token]) != url  # a new token
    an_instant_ago = timezone.now() - timedelta(seconds=1)
    StyleJob.objects.filter(pk=job.pk).update(share_expires_at=an_instant_ago)
    assert client.get(reverse("stylize:shared", args=[job.share_token])).status_code == 404
    assert client.get(reverse("stylize:shared", args=["x" * 32])).status_code == 404

    settings.SHARE_LINK_DAYS = 2
    job = sharing.job_share(job=job)
    assert job.share_expires_at - timezone.now() < timedelta(days=2, minutes=1)


def test_sharing_again_while_live_keeps_the_link_and_renews_it(user, db):
    job = sharing.job_share(job=succeeded_job(user), now=timezone.now() - timedelta(days=10))
    again = sharing.job_share(job=job)
    assert again.share_token == job.share_token
    assert again.share_expires_at > job.share_expires_at + timedelta(days=9)


def test_nothing_to_share_before_a_result_and_nobody_elses(client, user):
    queued = StyleJobFactory(owner=user)
    client.post(reverse("stylize:job_share", args=[queued.pk]))
    queued.refresh_from_db()
    assert queued.share_token is None
    theirs = succeeded_job(UserFactory())
    assert client.post(reverse("stylize:job_share", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("stylize:job_share", args=[queued.pk])).status_code == 405


def test_api_share_and_revoke(auth_client, user, client, settings):
    job = succeeded_job(user)
    response = auth_client.post(f"/api/v1/jobs/{job.pk}/share/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"share_url", "expires_at"}
    assert body["share_url"].startswith(settings.SITE_URL + "/s/")
    path = body["share_url"].removeprefix(settings.SITE_URL)
    assert path.startswith("/s/") and str(job.pk) not in path
    assert client.get(path).status_code == 200
    detail = auth_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert detail["share_url"] == body["share_url"]
    assert detail["share_expires_at"] == body["expires_at"]

    assert auth_client.delete(f"/api/v1/jobs/{job.pk}/share/").status_code == 204
    assert client.get(path).status_code == 404
    assert auth_client.get(f"/api/v1/jobs/{job.pk}/").json()["share_url"] is None

    queued = StyleJobFactory(owner=user)
    refused = auth_client.post(f"/api/v1/jobs/{queued.pk}/share/")
    assert refused.status_code == 409 and "no" in refused.json()["detail"]
    theirs = succeeded_job(UserFactory())
    assert auth_client.post(f"/api/v1/jobs/{theirs.pk}/share/").status_code == 404


def test_deleting_the_job_ends_its_link(client, user):
    job = sharing.job_share(job=succeeded_job(user))
    url = reverse("stylize:shared", args=[job.share_token])
    jobs.job_delete(job=job)
    assert client.get(url).status_code == 404


# --------------------------------------------------------------------------- what a download costs


@pytest.fixture
def codec_calls(monkeypatch):
    """Every decode and encode of a result the downloads make, as (what, format)."""
    calls = []
    decode, encode = loading.load_photo, encoding.encode_image

    def counted_decode(*args, **kwargs):
        calls.append(("decode", None))
        return decode(*args, **kwargs)

    def counted_encode(array, *, format=encoding.RESULT_FORMAT, **kwargs):
        calls.append(("encode", format))
        return encode(array, format=format, **kwargs)

    monkeypatch.setattr(loading, "load_photo", counted_decode)
    monkeypatch.setattr(encoding, "encode_image", counted_encode)
    return calls


def test_a_result_is_encoded_once_per_format_whoever_downloads_it(
        client, auth_client, user, codec_calls):
    """The attack: anonymous ``/s/<token>/image/?format=png`` over and over, each one a
    full decode and encode (4.8 s of CPU for a 4096² result). Now the first download
    in a format makes it; the owner's page, the API and the share link then get that
    same file."""
    job = sharing.job_share(job=succeeded_job(user))
    anonymous = Client()
    shared = reverse("stylize:shared_image", args=[job.share_token])
    own = reverse("stylize:job_result", args=[job.pk])
    bodies = {"png": set(), "webp": set()}
    for asked in ("png", "webp"):
        for response in (
            anonymous.get(shared, {"format": asked}),
            anonymous.get(shared, {"format": asked}),
            client.get(own, {"format": asked, "download": 1}),
            auth_client.get(f"/api/v1/jobs/{job.pk}/result/", {"format": asked}),
            anonymous.get(shared, {"format": asked.upper()}),
        ):
            assert response.status_code == 200
            bodies[asked].add(b"".join(response.streaming_content))
    assert codec_calls == [("decode", None), ("encode", "PNG"),
                           ("decode", None), ("encode", "WEBP")]
    assert all(len(made) == 1 for made in bodies.values())  # the same file each time
    anonymous.get(shared)  # the JPEG is the stored result itself
    assert len(codec_calls) == 4


def test_a_copy_being_made_is_not_made_twice_at_once(client, user, monkeypatch, codec_calls):
    """A second request while the first is encoding gets a readable 503 with
    Retry-After, not a second encoding (six at once took the web process to 1.8 GB)."""
    job = sharing.job_share(job=succeeded_job(user))
    shared = reverse("stylize:shared_image", args=[job.share_token])
    meanwhile = []
    encoded = job_files.job_result_encoded

    def encoding(job, image_format):
        if not meanwhile:
            meanwhile.append(Client().get(shared, {"format": "png"}))
        return encoded(job, image_format)

    monkeypatch.setattr(job_files, "job_result_encoded", encoding)
    first = Client().get(shared, {"format": "png"})
    assert first.status_code == 200 and first["Content-Type"] == "image/png"
    [second] = meanwhile
    assert second.status_code == 503 and int(second["Retry-After"]) > 0
    assert "being prepared" in second.content.decode()
    assert second["Content-Type"].startswith("text/plain")
    assert codec_calls.count(("encode", "PNG")) == 1
    assert Client().get(shared, {"format": "png"}).status_code == 200  # made: served
    assert codec_calls.count(("encode", "PNG")) == 1


def test_the_copies_are_private_job_files_deleted_with_the_job(
        client, user, settings, django_capture_on_commit_callbacks):
    job = succeeded_job(user)
    own = reverse("stylize:job_result", args=[job.pk])
    for asked in ("png", "webp"):
        assert client.get(own, {"format": asked}).status_code == 200
    job.refresh_from_db()
    copies = [job.result_png.name, job.result_webp.name]
    assert copies[0].endswith(".png") and copies[1].endswith(".webp")
    storage = private_storage()
    for name in copies:  # in the private storage, under a random name like the result
        assert name.startswith("results/") and str(job.pk) not in name
        assert (Path(settings.PRIVATE_MEDIA_ROOT) / name).is_file()
        assert not (Path(settings.MEDIA_ROOT) / name).exists()
    # The orphan sweep keeps them: a job names them.
    assert job_files.private_files_sweep_orphans(now=timezone.now() + timedelta(days=1)) == 0
    assert all(storage.exists(name) for name in copies)

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("stylize:job_delete", args=[job.pk])).status_code == 302
    assert not any(storage.exists(name) for name in copies)
    assert not StyleJob.objects.filter(pk=job.pk).exists()


def test_the_retention_sweep_deletes_the_copies_with_the_job(
        client, user, settings, django_capture_on_commit_callbacks):
    settings.JOB_RETENTION_DAYS = 30
    job = succeeded_job(user)
    assert client.get(reverse("stylize:job_result", args=[job.pk]),
                      {"format": "webp"}).status_code == 200
    StyleJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=31))
    job.refresh_from_db()
    files = [field.name for field in job.stored_files]
    assert len(files) == 3  # photo, result, its WebP
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.jobs_delete_expired() == 1
    assert not any(private_storage().exists(name) for name in files)


def test_a_copy_made_for_a_job_deleted_meanwhile_is_not_kept(user, monkeypatch):
    job = succeeded_job(user)
    encoded = job_files.job_result_encoded

    def deleted_while_encoding(job, image_format):
        StyleJob.objects.filter(pk=job.pk).delete()
        return encoded(job, image_format)

    monkeypatch.setattr(job_files, "job_result_encoded", deleted_while_encoding)
    before = set(private_storage().listdir("results")[1])
    with pytest.raises(StyleJob.DoesNotExist):
        job_files.job_result_copy(job=job, image_format="PNG")
    assert set(private_storage().listdir("results")[1]) == before


# --------------------------------------------------------------------------- share link rate


def test_share_links_are_rate_limited_per_client_address(client, user, settings):
    """The attack's other half: anyone may ask, as often as they like. Each client
    address gets SHARE_LINK_RATE requests to share links (pages and images, real tokens
    or made-up ones); then a readable 429 with Retry-After."""
    settings.SHARE_LINK_RATE = "3/minute"
    job = sharing.job_share(job=succeeded_job(user))
    page = reverse("stylize:shared", args=[job.share_token])
    image = reverse("stylize:shared_image", args=[job.share_token])
    anonymous = Client()
    assert anonymous.get(page).status_code == 200
    assert anonymous.get(image, {"format": "png"}).status_code == 200
    assert anonymous.get(reverse("stylize:shared", args=["x" * 32])).status_code == 404
    for refused in (
        anonymous.get(image, {"format": "png"}),
        anonymous.get(page),
        anonymous.get(reverse("stylize:shared", args=["y" * 32])),  # guessing tokens too
        anonymous.get(page, HTTP_X_FORWARDED_FOR="203.0.113.9"),  # no proxy: not believed
    ):
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= 60
        assert refused["Content-Type"].startswith("text/plain")
        assert "Too many requests for shared results" in refused.content.decode()
        assert refused["Cache-Control"] == "private, no-store"
    chinese = anonymous.get(page, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.status_code == 429 and "请求过多" in chinese.content.decode()
    # Another address has its own count; the owner's own download is not a share link.
    assert Client(REMOTE_ADDR="198.51.100.7").get(page).status_code == 200
    assert client.get(reverse("stylize:job_result", args=[job.pk])).status_code == 200


def test_the_share_link_rate_is_a_setting(user, settings):
    job = sharing.job_share(job=succeeded_job(user))
    page = reverse("stylize:shared", args=[job.share_token])
    assert settings.SHARE_LINK_RATE == "60/minute"  # the default
    statuses = [Client().get(page).status_code for _ in range(61)]
    assert statuses.count(200) == 60 and statuses[-1] == 429
    settings.SHARE_LINK_RATE = ""  # no limit
    assert all(Client().get(page).status_code == 200 for _ in range(10))

