"""The web pages: gallery, upload, job page and its status JSON, "my jobs" and delete."""

import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from stylize.models import DEFAULT_STROKE, Stroke, Style, StyleJob
from tests.factories import BankStyleFactory, StyleFactory, StyleJobFactory
from tests.helpers import png_bytes

# queue: the pages only create jobs (the pipeline tests run them on a real worker).
# empty_cache: page uploads count against the job-create throttle (per user, in the cache).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue", "empty_cache")]


@pytest.fixture
def styles():
    return {
        "ready": StyleFactory(name="Starry Night", slug="starry-night"),
        "draft": StyleFactory(name="Unfinished Sketch", slug="sketch", status=Style.Status.DRAFT,
                              live_version=None),
        "private": StyleFactory(name="Secret Wave", slug="secret", is_public=False),
    }


def upload_data(style="starry-night", image=None, **extra):
    image = image or SimpleUploadedFile("photo.png", png_bytes((64, 48)), "image/png")
    return {"image": image, "style": style, "strength": "0.8", "max_side": "512", **extra}


# --- Home and the styles offered ------------------------------------------------------


def test_home_lists_only_ready_public_styles(client, styles):
    page = client.get(reverse("stylize:home")).content.decode()
    assert "Starry Night" in page and styles["ready"].painting.url in page
    assert "Unfinished Sketch" not in page and "Secret Wave" not in page


def test_the_upload_form_offers_only_ready_public_styles(client, user, styles):
    response = client.get(reverse("stylize:upload"))
    offered = re.findall(r'name="style" value="([^"]+)"', response.content.decode())
    assert offered == ["starry-night"]


@pytest.mark.parametrize("slug", ["sketch", "secret", "no-such-style"])
def test_posting_a_style_that_is_not_offered_is_refused(client, user, styles, slug):
    response = client.post(reverse("stylize:upload"), upload_data(style=slug))
    assert response.status_code == 400
    assert "That style is not available" in response.content.decode()
    assert not StyleJob.objects.exists()


# --- Upload ---------------------------------------------------------------------------


def test_a_visitor_sees_the_upload_page_but_a_job_needs_an_account(client, styles):
    # Without an account the page shows the previews (test_previews.py); asking for the
    # job keeps the photo as a preview and sends the visitor to sign up.
    url = reverse("stylize:upload")
    response = client.get(url)
    assert response.status_code == 200 and 'id="signup-note"' in response.content.decode()
    response = client.post(url, upload_data())
    assert response.status_code == 302 and response.url == reverse("stylize:signup")
    assert not StyleJob.objects.exists()


def test_a_valid_upload_creates_a_job_and_redirects_to_its_page(
    client, user, styles, queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("stylize:upload"), upload_data(preserve_colors="on")
        )

    job = StyleJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("stylize:job", args=[job.pk])
    assert job.owner == user and job.style == styles["ready"]
    assert (job.strength, job.preserve_colors, job.max_side) == (0.8, True, 512)
    assert job.status == StyleJob.Status.QUEUED
    with job.input_image.open("rb") as stored:
        assert stored.read() == png_bytes((64, 48))
    queue.assert_called_once_with((str(job.pk),), countdown=0, queue="celery")


@pytest.mark.parametrize(
    "image,message",
    [
        (SimpleUploadedFile("notes.jpg", b"this is plain text, not a photo", "image/jpeg"),
         "Upload a JPEG, PNG, WebP, HEIC or AVIF image."),
        (SimpleUploadedFile("empty.png", b"", "image/png"), "empty"),
        (SimpleUploadedFile("tiny.png", png_bytes((4, 4)), "image/png"), "at least 16 pixels"),
    ],
    ids=["text-named-jpg", "zero-bytes", "too-small"],
)
def test_an_invalid_upload_shows_the_error_inline_and_creates_nothing(
    client, user, styles, image, message
):
    response = client.post(reverse("stylize:upload"), upload_data(image=image))

    assert response.status_code == 400
    page = response.content.decode()
    errors_div = r'<div class="errors" id="image-errors" role="alert">(.*?)</div>'
    errors = re.search(errors_div, page, re.S)
    assert errors and "errorlist" in errors.group(1) and message in errors.group(1)
    assert 'aria-invalid="true"' in page
    assert not StyleJob.objects.exists()


def test_a_missing_photo_is_an_inline_error(client, user, styles):
    data = upload_data()
    del data["image"]
    response = client.post(reverse("stylize:upload"), data)
    assert response.status_code == 400 and 'id="image-errors"' in response.content.decode()
    assert not StyleJob.objects.exists()


@pytest.mark.parametrize("field,value", [("strength", "1.5"), ("max_side", "99999")])
def test_out_of_range_settings_are_refused(client, user, styles, field, value):
    response = client.post(reverse("stylize:upload"), upload_data(**{field: value}))
    assert response.status_code == 400 and not StyleJob.objects.exists()


# --- Mixing two styles, brush strokes ------------------------------------------------


@pytest.fixture
def bank(styles):
    """Two offered slots of one bank, a draft and a private slot, and a lone other bank."""
    return {
        "alpha": BankStyleFactory(name="Alpha", slug="alpha", bank_index=1),
        "beta": BankStyleFactory(name="Beta", slug="beta", bank_index=2),
        "draft": BankStyleFactory(name="Draft Slot", slug="draft-slot", bank_index=3,
                                  bank_slots=5, status=Style.Status.DRAFT, live_version=None),
        "private": BankStyleFactory(name="Private Slot", slug="private-slot", bank_index=4,
                                    bank_slots=5, is_public=False),
        "elsewhere": BankStyleFactory(name="Elsewhere", slug="elsewhere",
                                      model_name="other_bank", bank_index=1),
    }


def test_the_upload_form_offers_only_styles_that_can_be_mixed(client, user, bank):
    page = client.get(reverse("stylize:upload")).content.decode()
    select = re.search(r'<select name="blend_with" id="id_blend_with"[^>]*>(.*?)</select>',
                       page, re.S)
    assert select, "no second-style select"
    options = re.findall(r'<option value="([^"]*)"(?: data-bank="([^"]*)")?', select.group(1))
    assert options == [("", ""), ("alpha", "bank"), ("beta", "bank")]
    assert re.search(r'value="alpha" required data-bank="bank"', page)  # for upload.js
    assert re.search(r'<input type="range" name="blend" id="id_blend"\s+value="0.5"', page)
    assert '<output id="blend-value" for="id_blend">0.5</output>' in page
    strokes = re.findall(r'<input type="radio" name="stroke" value="(\w+)" id="(id_stroke_\d)"'
                         r'\s*(checked)?', page)
    assert [(value, checked) for value, _, checked in strokes] == [
        (value, "checked" if value == DEFAULT_STROKE else "") for value in Stroke.values]
    for _, radio_id, _ in strokes:
        assert re.search(rf'<label for="{radio_id}">\w+ \(', page)
    assert_every_control_is_labelled(page)


def test_without_styles_to_mix_there_is_no_second_style_select(client, user, styles):
    page = client.get(reverse("stylize:upload")).content.decode()
    assert 'name="blend_with"' not in page and 'name="blend"' not in page
    assert 'name="stroke"' in page


def test_a_mixed_upload_creates_a_mixed_job(client, user, bank):
    response = client.post(reverse("stylize:upload"), upload_data(
        style="beta", blend_with="alpha", blend="0.25", stroke="fine"))
    job = StyleJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("stylize:job", args=[job.pk])
    assert (job.style, job.blend_with, job.blend, job.stroke) == (
        bank["beta"], bank["alpha"], 0.25, "fine")


def test_the_mix_slider_means_nothing_without_a_second_style(client, user, bank):
    """The slider always sends its value; with "None" chosen there is no mix."""
    response = client.post(reverse("stylize:upload"), upload_data(
        style="alpha", blend_with="", blend="0.5", stroke="bold"))
    assert response.status_code == 302
    job = StyleJob.objects.get()
    assert (job.blend_with, job.blend, job.stroke) == (None, 0.0, "bold")


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"blend_with": "no-such-style"}, "blend-with",
         "There is no style “no-such-style” to mix in. Alpha can be mixed with: Beta (beta)."),
        ({"blend_with": "draft-slot"}, "blend-with",
         "There is no style “draft-slot” to mix in."),
        ({"blend_with": "private-slot"}, "blend-with",
         "There is no style “private-slot” to mix in."),
        ({"blend_with": "elsewhere"}, "blend-with",
         "Alpha and Elsewhere cannot be mixed: only styles that share one network can. "
         "Alpha can be mixed with: Beta (beta)."),
        ({"style": "starry-night", "blend_with": "alpha"}, "blend-with",
         "Starry Night and Alpha cannot be mixed"),
        ({"blend_with": "alpha"}, "blend-with", "Choose a second style other than Alpha"),
        ({"blend_with": "beta", "blend": "1.5"}, "blend", "The mix must be a number from 0 to 1."),
        ({"blend_with": "beta", "blend": "-1"}, "blend", "The mix must be a number from 0 to 1."),
        ({"blend_with": "beta", "blend": "nan"}, "blend", "Enter a number."),
        ({"stroke": "huge"}, "stroke", "Brush strokes must be one of fine, medium, bold"),
    ],
)
def test_a_bad_mix_or_stroke_is_an_inline_error(client, user, bank, data, field, message):
    response = client.post(reverse("stylize:upload"), upload_data(**{"style": "alpha", **data}))
    assert response.status_code == 400
    page = response.content.decode()
    errors = re.search(rf'<div class="errors" id="{field}-errors" role="alert">(.*?)</div>',
                       page, re.S)
    assert errors and message in errors.group(1), page
    assert not StyleJob.objects.exists()
    assert_every_control_is_labelled(page)


def test_the_job_page_and_my_jobs_show_the_mix_and_the_stroke(client, user, bank):
    mixed = StyleJobFactory(owner=user, style=bank["alpha"], blend_with=bank["beta"], blend=0.3,
                            stroke="bold")
    plain = StyleJobFactory(owner=user, style=bank["alpha"], stroke="fine")

    page = client.get(reverse("stylize:job", args=[mixed.pk])).content.decode()
    assert "<h1>Your photo as Alpha mixed with Beta</h1>" in page
    assert "Mixed with Beta at 30 %. Bold brush strokes, strength 1.0" in page
    page = client.get(reverse("stylize:job", args=[plain.pk])).content.decode()
    assert "<h1>Your photo as Alpha</h1>" in page
    assert "Mixed with" not in page and "Fine brush strokes, strength 1.0" in page

    listing = client.get(reverse("stylize:job_list")).content.decode()
    assert "Alpha + Beta (30 %)" in listing
    assert "Bold brush strokes" in listing and "Fine brush strokes" in listing


# --- Job page, status JSON and images -------------------------------------------------


def test_job_page_shows_the_photo_and_polls_its_status(client, user):
    job = StyleJobFactory(owner=user)
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    assert reverse("stylize:job_photo", args=[job.pk]) in page
    assert f'data-status-url="{reverse("stylize:job_status", args=[job.pk])}"' in page
    assert "stylize/job.js" in page and "Queued" in page
    assert "Download" not in page


def test_a_finished_job_shows_the_result_with_a_download_link(client, user):
    job = StyleJobFactory(owner=user, status=StyleJob.Status.SUCCEEDED,
                          result_image=ContentFile(png_bytes(color=(1, 2, 3)), name="out.jpg"))
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    result_url = reverse("stylize:job_result", args=[job.pk])
    assert f'src="{result_url}"' in page
    for image_format in ("jpeg", "png", "webp"):
        assert f'href="{result_url}?download=1&amp;format={image_format}"' in page
    assert "stylize/job.js" not in page  # nothing left to poll

    download = client.get(result_url + "?download=1")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content) == png_bytes(color=(1, 2, 3))


def test_a_failed_job_shows_a_readable_reason(client, user):
    job = StyleJobFactory(owner=user, status=StyleJob.Status.FAILED,
                          error="Your photo could not be read as an image.")
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    assert "We could not repaint this photo." in page
    assert "Your photo could not be read as an image." in page


def test_status_json_tracks_the_job(client, user):
    job = StyleJobFactory(owner=user)
    url = reverse("stylize:job_status", args=[job.pk])

    queued = client.get(url).json()
    assert queued == {"id": str(job.pk), "status": "queued", "status_display": "Queued",
                      "stage": "queued", "stage_display": "Waiting in the queue",
                      "progress": 0.0, "jobs_ahead": 0,
                      "finished": False, "error": "", "result_url": None}

    job.result_image.save("out.jpg", ContentFile(png_bytes()), save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.save()
    done = client.get(url).json()
    assert done["status"] == "succeeded" and done["finished"] is True
    assert done["result_url"] == reverse("stylize:job_result", args=[job.pk])


@pytest.mark.parametrize("name", ["job", "job_status", "job_photo", "job_result"])
def test_another_users_job_is_a_404_everywhere(client, user, name):
    theirs = StyleJobFactory(status=StyleJob.Status.SUCCEEDED,
                             result_image=ContentFile(png_bytes(), name="out.jpg"))
    assert client.get(reverse(f"stylize:{name}", args=[theirs.pk])).status_code == 404
    mine = StyleJobFactory(owner=user, status=StyleJob.Status.SUCCEEDED,
                           result_image=ContentFile(png_bytes(), name="out.jpg"))
    assert client.get(reverse(f"stylize:{name}", args=[mine.pk])).status_code == 200


@pytest.mark.parametrize("name", ["job", "job_status", "job_photo"])
def test_job_pages_need_login(client, name):
    job = StyleJobFactory()
    response = client.get(reverse(f"stylize:{name}", args=[job.pk]))
    assert response.status_code == 302 and response.url.startswith(reverse("stylize:login"))


# --- My jobs and delete ---------------------------------------------------------------


def test_my_jobs_lists_only_my_own(client, user):
    mine = StyleJobFactory(owner=user, style__name="Mine Style")
    theirs = StyleJobFactory(style__name="Their Style")
    page = client.get(reverse("stylize:job_list")).content.decode()
    assert reverse("stylize:job", args=[mine.pk]) in page and "Mine Style" in page
    assert str(theirs.pk) not in page and "Their Style" not in page
    # Delete leads to a page that asks first: nothing is deleted by one click.
    assert f'href="{reverse("stylize:job_delete", args=[mine.pk])}?next=' in page
    assert f'action="{reverse("stylize:job_delete", args=[mine.pk])}"' not in page


def test_delete_removes_my_job_and_its_files(client, user, django_capture_on_commit_callbacks):
    job = StyleJobFactory(owner=user, status=StyleJob.Status.SUCCEEDED,
                          result_image=ContentFile(png_bytes(), name="out.jpg"))
    storage, files = job.input_image.storage, [job.input_image.name, job.result_image.name]
    assert all(storage.exists(name) for name in files)

    asked = client.get(reverse("stylize:job_delete", args=[job.pk]))  # asks, deletes nothing
    page = asked.content.decode()
    assert asked.status_code == 200 and "This cannot be undone." in page
    assert f'action="{reverse("stylize:job_delete", args=[job.pk])}"' in page
    assert "csrfmiddlewaretoken" in page
    assert f'href="{reverse("stylize:job", args=[job.pk])}" id="delete-cancel"' in page
    assert StyleJob.objects.filter(pk=job.pk).exists()
    assert all(storage.exists(name) for name in files)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("stylize:job_delete", args=[job.pk]))

    assert response.status_code == 302 and response.url == reverse("stylize:job_list")
    assert not StyleJob.objects.filter(pk=job.pk).exists()
    assert not any(storage.exists(name) for name in files)


def test_delete_of_another_users_job_is_a_404_and_keeps_it(
    client, user, django_capture_on_commit_callbacks
):
    theirs = StyleJobFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("stylize:job_delete", args=[theirs.pk]))
    assert response.status_code == 404
    assert StyleJob.objects.filter(pk=theirs.pk).exists()
    assert theirs.input_image.storage.exists(theirs.input_image.name)


def test_delete_needs_the_csrf_token(user):
    from django.test import Client

    job = StyleJobFactory(owner=user)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(reverse("stylize:job_delete", args=[job.pk])).status_code == 403
    assert StyleJob.objects.filter(pk=job.pk).exists()


# --- Every page: labels, no outside assets --------------------------------------------

PAGES = ["home", "upload", "job_list", "job", "signup", "login", "profile", "password_reset",
         "password_change", "account_delete"]


def _render_all(client, user, styles):
    job = StyleJobFactory(owner=user, style=styles["ready"])
    pages = {}
    for name in PAGES:
        args = [job.pk] if name == "job" else []
        if name in ("signup", "login", "password_reset"):
            client.logout()
        response = client.get(reverse(f"stylize:{name}", args=args))
        assert response.status_code == 200, name
        pages[name] = response.content.decode()
        client.force_login(user)
    return pages


def assert_every_control_is_labelled(page, name="page"):
    labelled = set(re.findall(r'<label[^>]*\sfor="([^"]+)"', page))
    for control in re.finditer(r"<(input|select|textarea)\b([^>]*)>", page):
        attrs = control.group(2)
        kind = re.search(r'type="([^"]+)"', attrs)
        if kind and kind.group(1) in ("hidden", "submit"):
            continue
        if re.search(r'name="style"', attrs) and 'type="radio"' in attrs:
            continue  # wrapped in its <label class="style-choice">, checked below
        control_id = re.search(r'id="([^"]+)"', attrs)
        assert control_id and control_id.group(1) in labelled, (name, control.group(0))
    for choice in re.findall(r'<label class="style-choice">(.*?)</label>', page, re.S):
        assert 'type="radio"' in choice and re.search(r"<span>\S", choice)


def test_every_control_has_a_label(client, user, styles):
    for name, page in _render_all(client, user, styles).items():
        assert_every_control_is_labelled(page, name)


def test_no_page_loads_anything_from_another_site(client, user, styles):
    for name, page in _render_all(client, user, styles).items():
        outside = re.findall(r'(?:src|href|action)="((?:https?:)?//[^"]*)"', page)
        assert outside == [], name
        scripts = re.findall(r"<script[^>]*>", page)  # our files and our translations only
        assert all(re.search(r'src="/(static/|jsi18n/")', tag) for tag in scripts), name
