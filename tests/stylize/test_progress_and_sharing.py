"""A job's progress (stage, fraction of model passes, jobs ahead), its result in three
formats, and share links: made, opened logged out, revoked, expired."""

import io
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from stylize import imaging
from stylize.models import StyleJob
from stylize.services import jobs, sharing
from stylize.services.stylizing import job_run
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import gradient_file, gradient_upload, identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(client):
    """A user logged into ``client`` (the pages)."""
    user = UserFactory(email="ada@example.com")
    client.force_login(user)
    return user


@pytest.fixture
def auth_client(user):
    """The API as ``user``."""
    api = APIClient()
    api.force_authenticate(user)
    return api


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
    imaging.stylize_tiled(photo, identity, tile=128, overlap=16,
                          on_pass=lambda done, total: calls.append((done, total)))
    total = calls[0][1]
    assert total > 2  # tiles and the tone reference
    assert calls == [(done, total) for done in range(1, total + 1)]

    one = []
    imaging.stylize_tiled(photo, identity, tile=512, on_pass=lambda *a: one.append(a))
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
