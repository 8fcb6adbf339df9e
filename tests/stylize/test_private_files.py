"""Users' photos and results: private storage, random names, no metadata, retention.

Every way a stored file could be reached is tried as a stranger and logged out; the
photo's private EXIF (GPS, camera, artist) is dropped when it is stored, the
orientation once the worker has applied it; old files move in; expired jobs and orphan
files go.
"""

import importlib
import io
import json
import re
import subprocess
import sys
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import clear_url_caches, reverse
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stylize import tasks as task_module
from stylize.models import StyleJob, private_storage
from stylize.services import job_files, jobs
from stylize.services.stylizing import job_run
from stylize.storage import PrivateFileSystemStorage
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import BASE_DIR, PRODUCTION_ENV, clean_env

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue", "empty_cache")]

GPS_IFD = 0x8825
ARTIST, MAKE, MODEL, ORIENTATION = 0x013B, 0x010F, 0x0110, 0x0112


def jpeg_with_private_exif(size=(80, 40), orientation=6) -> bytes:
    """A JPEG whose EXIF gives away where it was taken, by whom and with what."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[ARTIST] = "Jane Q. Photographer"
    exif[MAKE], exif[MODEL] = "Canon", "EOS R5"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 1.0)})
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95, comment=b"at home, Hauptstr. 5")
    return buffer.getvalue()


def icc_png() -> bytes:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image = Image.new("RGB", (48, 32), (10, 200, 30))
    exif = Image.Exif()
    exif[ARTIST] = "Jane Q. Photographer"
    image.save(buffer, "PNG", icc_profile=profile, exif=exif)
    return buffer.getvalue(), profile


def assert_no_metadata(data: bytes):
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif(), dict(image.getexif())
        assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp", "Raw profile type exif"} & set(
            image.info)
    assert_no_private_metadata(data)


def assert_no_private_metadata(data: bytes):
    """Nothing about where, when, by whom or with what: at most the EXIF orientation,
    which the upload keeps (without decoding the photo) until the worker applies it."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        assert set(exif) <= {ORIENTATION}, dict(exif)
        assert not exif.get_ifd(GPS_IFD)
        assert not {"xmp", "comment", "XML:com.adobe.xmp", "Raw profile type exif"} & set(
            image.info)
    assert b"Photographer" not in data and b"Canon" not in data and b"Hauptstr" not in data


@pytest.fixture
def owner(client):
    user = UserFactory(email="ada@example.com")
    client.force_login(user)
    return user


def upload(client, data, name="IMG_20261201_holiday.jpg", content_type="image/jpeg"):
    style = StyleFactory(name="Starry Night", slug="starry-night")
    response = client.post(reverse("stylize:upload"), {
        "image": SimpleUploadedFile(name, data, content_type),
        "style": style.slug, "strength": "1", "max_side": "512",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    return StyleJob.objects.get()


def finished(job, data=None):
    job.result_image.save("result.jpg", ContentFile(data or _result_jpeg()), save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.started_at = job.finished_at = timezone.now()
    job.save()
    return job


def _result_jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 80), (120, 50, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


# --- Private storage, random names ----------------------------------------------------


def test_a_photo_is_stored_privately_under_a_random_name(client, owner, settings):
    job = finished(upload(client, jpeg_with_private_exif()))

    for field in (job.input_image, job.result_image):
        assert field.storage is private_storage()
        assert re.fullmatch(r"(photos|results)/[0-9a-f]{32}\.jpg", field.name), field.name
        path = field.path
        assert path.startswith(str(settings.PRIVATE_MEDIA_ROOT))
        assert not path.startswith(str(settings.MEDIA_ROOT))
    assert "holiday" not in job.input_image.name + job.result_image.name
    assert job.input_filename == "IMG_20261201_holiday.jpg"
    with pytest.raises(ValueError, match="private file and has no URL"):
        _ = job.input_image.url  # reading .url is what raises for a private file


def test_two_uploads_of_one_file_get_different_names(client, owner):
    StyleFactory(name="Great Wave", slug="great-wave")
    names = set()
    for _ in range(2):
        client.post(reverse("stylize:upload"), {
            "image": SimpleUploadedFile("same.jpg", jpeg_with_private_exif(), "image/jpeg"),
            "style": "great-wave", "strength": "1", "max_side": "512",
        })
    names = {job.input_image.name for job in StyleJob.objects.all()}
    assert len(names) == 2


def test_every_route_to_a_stored_file_refuses_strangers_and_the_logged_out(client, owner):
    job = finished(upload(client, jpeg_with_private_exif()))
    photo, result = reverse("stylize:job_photo", args=[job.pk]), reverse(
        "stylize:job_result", args=[job.pk])
    api_result = f"/api/v1/jobs/{job.pk}/result/"
    assert client.get(photo).status_code == 200 and client.get(result).status_code == 200

    stranger = APIClient()
    stranger.force_login(UserFactory(email="mallory@example.com"))
    for url in (photo, result, f"{photo}?download=1", api_result):
        assert stranger.get(url).status_code == 404, url
    token_stranger = APIClient()
    token_stranger.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=UserFactory()).key}")
    assert token_stranger.get(api_result).status_code == 404

    logged_out = APIClient()
    for url in (photo, result):
        response = logged_out.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert logged_out.get(api_result).status_code == 401


def test_no_media_url_serves_a_private_file_even_where_media_is_served(
    client, owner, settings
):
    """With DEBUG's media route on (as `make run` has it), a painting is served, while
    a user's photo is at no URL under it: not by its stored name, not by the old one."""
    job = finished(upload(client, jpeg_with_private_exif()))
    style = job.style
    settings.DEBUG = True
    import prisma_site.urls

    try:
        importlib.reload(prisma_site.urls)
        clear_url_caches()
        logged_out = APIClient(raise_request_exception=False)
        painting = logged_out.get(style.painting.url)
        assert painting.status_code == 200  # media is served: the 404s below mean it
        for name in (job.input_image.name, job.result_image.name,
                     "jobs/inputs/2026/12/01/IMG_20261201_holiday.jpg"):
            assert logged_out.get(f"{settings.MEDIA_URL}{name}").status_code == 404, name
        climbing = logged_out.get(f"{settings.MEDIA_URL}../private/{job.input_image.name}")
        assert climbing.status_code in (400, 404)
    finally:
        settings.DEBUG = False
        importlib.reload(prisma_site.urls)
        clear_url_caches()


def test_owner_downloads_carry_safe_headers(client, owner):
    job = finished(upload(client, jpeg_with_private_exif()))

    shown = client.get(reverse("stylize:job_photo", args=[job.pk]))
    assert shown["Content-Type"] == "image/jpeg"
    assert shown["X-Content-Type-Options"] == "nosniff"
    assert shown["Cache-Control"] == "private, no-store"
    assert shown["Content-Disposition"] == 'inline; filename="IMG_20261201_holiday.jpg"'

    saved = client.get(reverse("stylize:job_result", args=[job.pk]) + "?download=1")
    assert saved["Content-Disposition"].startswith("attachment; filename=")
    assert saved["Cache-Control"] == "private, no-store"
    assert b"".join(saved.streaming_content) == job.result_image.open("rb").read()


# --- No metadata ------------------------------------------------------------------------


def test_the_stored_photo_keeps_no_private_exif_and_stands_upright_once_read(
    client, owner, use_local_backend
):
    original = jpeg_with_private_exif()
    job = upload(client, original)

    # Right after the upload (no pixel decoded in the web request): GPS, artist,
    # camera and comment are gone, the orientation is all the EXIF left.
    with job.input_image.open("rb") as stored:
        data = stored.read()
    assert_no_private_metadata(data)
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif() == {ORIENTATION: 6} and image.size == (80, 40)
    returned = client.get(reverse("stylize:job_photo", args=[job.pk]))
    assert_no_private_metadata(b"".join(returned.streaming_content))
    # The compressed picture is the upload's, byte for byte.
    with Image.open(io.BytesIO(data)) as kept, Image.open(io.BytesIO(original)) as sent:
        assert kept.tobytes() == sent.tobytes()

    # The worker, which decodes it anyway, stands it upright and drops the rest.
    StyleJob.objects.filter(pk=job.pk).update(style=StyleFactory(
        slug="tiny", model_name="tiny", live_version=1))
    old_name = job.input_image.name
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    assert job.input_image.name != old_name and not private_storage().exists(old_name)
    with job.input_image.open("rb") as stored:
        data = stored.read()
    assert_no_metadata(data)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (40, 80)  # orientation 6 applied to the pixels, then dropped
        assert image.getpixel((20, 5))[0] > 200  # the stored left half (red) is on top
    returned = client.get(reverse("stylize:job_photo", args=[job.pk]))
    assert_no_metadata(b"".join(returned.streaming_content))


def test_a_png_keeps_its_colour_profile_and_nothing_else(client, owner):
    data, profile = icc_png()
    job = upload(client, data, name="scan.png", content_type="image/png")
    with job.input_image.open("rb") as stored:
        kept = stored.read()
    assert_no_metadata(kept)
    with Image.open(io.BytesIO(kept)) as image:
        assert image.format == "PNG" and image.info.get("icc_profile") == profile
        assert image.getpixel((3, 3)) == (10, 200, 30)  # lossless


def test_an_api_upload_keeps_no_exif_either(owner):
    api = APIClient()
    api.force_login(owner)
    StyleFactory(name="Starry Night", slug="starry-night")
    response = api.post("/api/v1/jobs/", {
        "image": SimpleUploadedFile("gps.jpg", jpeg_with_private_exif(), "image/jpeg"),
        "style": "starry-night",
    }, format="multipart")
    assert response.status_code == 201, response.content
    with StyleJob.objects.get().input_image.open("rb") as stored:
        assert_no_private_metadata(stored.read())


def test_a_result_carries_no_metadata(use_local_backend, transactional_db):

    style = StyleFactory(slug="tiny", model_name="tiny", live_version=1)
    job = jobs.job_create(
        owner=UserFactory(), style=style,
        input_image=SimpleUploadedFile("gps.jpg", jpeg_with_private_exif(), "image/jpeg"),
    )
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    with job.result_image.open("rb") as result:
        assert_no_metadata(result.read())
    with job.input_image.open("rb") as photo:  # and the photo has none left either
        assert_no_metadata(photo.read())


# --- Files stored the old way -------------------------------------------------------------


def test_make_job_files_private_moves_old_public_files_in_without_metadata():
    old_photo = "jobs/inputs/2026/12/01/IMG_20261201_holiday.jpg"
    old_result = "jobs/results/2026/12/01/IMG_20261201_holiday-starry.jpg"
    default_storage.save(old_photo, ContentFile(jpeg_with_private_exif()))
    default_storage.save(old_result, ContentFile(_result_jpeg()))
    job = StyleJobFactory(input_image=None, status=StyleJob.Status.SUCCEEDED,
                          finished_at=timezone.now())
    StyleJob.objects.filter(pk=job.pk).update(input_image=old_photo, result_image=old_result,
                                              input_filename="")

    call_command("make_job_files_private")

    job.refresh_from_db()
    assert re.fullmatch(r"photos/[0-9a-f]{32}\.jpg", job.input_image.name)
    assert re.fullmatch(r"results/[0-9a-f]{32}\.jpg", job.result_image.name)
    assert job.input_filename == "IMG_20261201_holiday.jpg"
    assert not default_storage.exists(old_photo) and not default_storage.exists(old_result)
    with job.input_image.open("rb") as photo:
        assert_no_metadata(photo.read())
    with job.result_image.open("rb") as result:
        assert result.read() == _result_jpeg()

    assert job_files.job_files_make_private() == {"moved": 0, "missing": 0, "failed": 0}
    job.refresh_from_db()
    assert job.input_image.storage.exists(job.input_image.name)


def test_a_missing_or_broken_old_file_is_reported_and_the_others_still_move():
    default_storage.save("jobs/inputs/good.jpg", ContentFile(jpeg_with_private_exif()))
    default_storage.save("jobs/inputs/broken.jpg", ContentFile(b"\xff\xd8 not a jpeg"))
    good, broken, gone = (StyleJobFactory(input_image=None) for _ in range(3))
    StyleJob.objects.filter(pk=good.pk).update(input_image="jobs/inputs/good.jpg")
    StyleJob.objects.filter(pk=broken.pk).update(input_image="jobs/inputs/broken.jpg")
    StyleJob.objects.filter(pk=gone.pk).update(input_image="jobs/inputs/gone.jpg")

    counts = job_files.job_files_make_private()

    assert counts == {"moved": 1, "missing": 1, "failed": 1}
    good.refresh_from_db()
    assert good.input_image.name.startswith("photos/")
    assert default_storage.exists("jobs/inputs/broken.jpg")  # left where it was


# --- Retention ------------------------------------------------------------------------------


def _aged(job, days):
    StyleJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=days))
    job.refresh_from_db()
    return job


def test_jobs_past_retention_go_with_their_files(settings, django_capture_on_commit_callbacks):
    settings.JOB_RETENTION_DAYS = 30
    old = _aged(finished(StyleJobFactory()), 31)
    recent = _aged(finished(StyleJobFactory()), 29)
    running = _aged(StyleJobFactory(status=StyleJob.Status.RUNNING,
                                    started_at=timezone.now()), 40)
    old_files = [old.input_image.name, old.result_image.name]

    with django_capture_on_commit_callbacks(execute=True):
        deleted = jobs.jobs_delete_expired()

    assert deleted == 1
    assert set(StyleJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    storage = private_storage()
    assert not any(storage.exists(name) for name in old_files)
    assert storage.exists(recent.input_image.name) and storage.exists(recent.result_image.name)


def test_the_retention_period_is_a_setting(settings, django_capture_on_commit_callbacks):
    settings.JOB_RETENTION_DAYS = 3
    job = _aged(finished(StyleJobFactory()), 4)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("delete_expired_jobs")
    assert not StyleJob.objects.filter(pk=job.pk).exists()


def test_the_job_page_says_when_the_job_is_deleted(client, owner, settings):
    settings.JOB_RETENTION_DAYS = 30
    job = StyleJobFactory(owner=owner)
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    expires = (job.created_at + timedelta(days=30)).date()
    assert f'datetime="{expires.isoformat()}' in page
    assert "30 days after you uploaded it" in page


def test_the_beat_schedule_deletes_expired_jobs(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "stylize.tasks.jobs_delete_expired" in tasks
    assert task_module.jobs_delete_expired.name == "stylize.tasks.jobs_delete_expired"


def test_orphan_files_are_swept_once_an_hour_old():
    storage = private_storage()
    kept = StyleJobFactory()
    orphan = storage.save("photos/0123456789abcdef0123456789abcdef.jpg", ContentFile(b"x"))
    young = storage.save("results/fedcba9876543210fedcba9876543210.jpg", ContentFile(b"y"))
    later = timezone.now() + timedelta(minutes=30)

    assert job_files.private_files_sweep_orphans(now=later) == 0  # all younger than an hour
    with mock.patch.object(PrivateFileSystemStorage, "get_modified_time",
                           lambda self, name: timezone.now() - timedelta(
                               hours=0 if name == young else 2)):
        assert job_files.private_files_sweep_orphans() == 1

    assert not storage.exists(orphan)
    assert storage.exists(young) and storage.exists(kept.input_image.name)


def test_on_s3_photos_and_results_are_private_objects_under_their_own_prefix():
    """With S3 switched on, the private storage is the bucket's private prefix: objects
    made private, URLs (should anything ask) signed and short-lived."""
    probe = (
        "import django, json; django.setup()\n"
        "from django.core.files.storage import storages\n"
        "s = storages['private']\n"
        "print(json.dumps([type(s).__module__ + '.' + type(s).__name__, s.location,"
        " s.default_acl, s.querystring_auth, s.querystring_expire,"
        " storages['default'].location]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=clean_env(**PRODUCTION_ENV),
                            cwd=BASE_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    backend, location, acl, signed, expire, public_location = json.loads(
        result.stdout.strip().splitlines()[-1])
    assert backend == "storages.backends.s3.S3Storage"
    assert (location, acl, signed, expire) == ("private", "private", True, 300)
    assert public_location == ""  # paintings and samples stay where they were
