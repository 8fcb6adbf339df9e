"""Issue 25: sharing as people expect (a card of the result when a link is pasted into a
chat, "Copy link", the Web Share API) and the job page a newcomer meets (a Delete that
asks first, what the size and strokes do for this very photo, the result at no more than
its own size). The browser side: test_share_browser.py."""

import io
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from stylize.imaging.stroke_size import size_plan
from stylize.models import StyleJob
from stylize.services import jobs, sharing
from tests.factories import StyleFactory, StyleJobFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache", "queue")]

PHOTO_COLOUR, RESULT_COLOUR = (220, 30, 30), (20, 40, 200)


def jpeg(size, colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def shared_job(owner, *, result_size=(1600, 1200), **fields):
    """A succeeded job of a red photo whose result is blue, shared."""
    job = StyleJobFactory(
        owner=owner, status=StyleJob.Status.SUCCEEDED, stage="done", progress=1.0,
        finished_at=timezone.now(), input_image=ContentFile(jpeg(result_size, PHOTO_COLOUR),
                                                            name="photo.jpg"),
        result_image=ContentFile(jpeg(result_size, RESULT_COLOUR), name="result.jpg"),
        **fields)
    return sharing.job_share(job=job)


def meta(page: str, name: str) -> str | None:
    found = re.search(rf'<meta (?:property|name)="{re.escape(name)}" content="([^"]*)"', page)
    return found.group(1) if found else None


# --------------------------------------------------------------------------- the card


def test_the_share_page_describes_a_card_of_the_result_for_chat_apps(user, settings):
    job = shared_job(user, style=StyleFactory(name="The Starry Night"))
    page = Client().get(reverse("stylize:shared", args=[job.share_token])).content.decode()

    assert meta(page, "og:title") == "A photo painted as The Starry Night"
    assert meta(page, "og:url") == sharing.job_share_url(job)
    image_url = meta(page, "og:image")
    # Absolute (chat apps fetch it from elsewhere), at the link's own unguessable address.
    assert image_url == (f"{settings.SITE_URL}/s/{job.share_token}/preview.jpg")
    assert str(job.pk) not in page
    assert (meta(page, "og:image:width"), meta(page, "og:image:height")) == ("800", "600")
    assert meta(page, "twitter:card") == "summary_large_image"
    assert meta(page, "og:image:alt") == "A photo repainted as The Starry Night"

    preview = Client().get(image_url.removeprefix(settings.SITE_URL))
    assert preview.status_code == 200 and preview["Content-Type"] == "image/jpeg"
    assert preview["X-Robots-Tag"] == "noindex, nofollow"
    assert preview["Cache-Control"] == "private, no-store"
    picture = Image.open(io.BytesIO(preview.content))
    assert picture.size == (800, 600)  # small: a rendition, not the full 1600 × 1200
    assert not picture.getexif()  # nothing of the owner's in it
    mean = np.asarray(picture.convert("RGB"), dtype=float).mean(axis=(0, 1))
    assert np.abs(mean - RESULT_COLOUR).max() < 12  # the result …
    assert np.abs(mean - PHOTO_COLOUR).max() > 100  # … never the photo


def test_a_small_result_is_not_enlarged_for_the_card(user):
    job = shared_job(user, result_size=(320, 240))
    preview = Client().get(reverse("stylize:shared_preview", args=[job.share_token]))
    assert Image.open(io.BytesIO(preview.content)).size == (320, 240)


def test_the_card_goes_with_the_link_revoked_or_expired(user):
    job = shared_job(user)
    token = job.share_token
    preview = reverse("stylize:shared_preview", args=[token])
    assert Client().get(preview).status_code == 200

    sharing.job_unshare(job=job)
    assert Client().get(preview).status_code == 404
    assert Client().get(reverse("stylize:shared_preview", args=["x" * 32])).status_code == 404

    job = shared_job(user)
    StyleJob.objects.filter(pk=job.pk).update(share_expires_at=timezone.now() - timedelta(1))
    assert Client().get(reverse("stylize:shared_preview", args=[job.share_token])
                        ).status_code == 404
    assert Client().get(reverse("stylize:shared", args=[job.share_token])).status_code == 404


def test_the_card_counts_against_the_share_link_rate(user, settings):
    settings.SHARE_LINK_RATE = "3/minute"
    job = shared_job(user)
    anonymous = Client()
    assert anonymous.get(reverse("stylize:shared", args=[job.share_token])).status_code == 200
    preview = reverse("stylize:shared_preview", args=[job.share_token])
    assert [anonymous.get(preview).status_code for _ in range(3)] == [200, 200, 429]


def test_the_share_page_and_job_page_offer_copy_link_and_the_share_sheet(client, user):
    job = shared_job(user)
    for page in (client.get(reverse("stylize:job", args=[job.pk])).content.decode(),
                 Client().get(reverse("stylize:shared", args=[job.share_token])
                              ).content.decode()):
        box = re.search(r'<div class="share-link"[^>]*>', page).group(0)
        assert f'data-share-url="{sharing.job_share_url(job)}"' in box
        # Shown by share.js: "Share…" only where navigator.share exists.
        assert re.search(r'<button type="button" class="button share-copy" id="share-copy" '
                         r"hidden>Copy link</button>", page)
        assert 'id="share-native" hidden>Share…</button>' in page
        assert '<script src="/static/stylize/share.js" defer></script>' in page
        assert 'readonly value="' + sharing.job_share_url(job) + '"' in page  # without scripts
    chinese = Client().get(reverse("stylize:shared", args=[job.share_token]),
                           HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert ">复制链接</button>" in chinese and ">分享…</button>" in chinese


# --------------------------------------------------------------------------- delete


def test_the_job_page_has_a_delete_that_asks_first(client, user,
                                                   django_capture_on_commit_callbacks):
    job = shared_job(user)
    delete_url = reverse("stylize:job_delete", args=[job.pk])
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    assert (f'<a class="button danger" id="job-delete" href="{delete_url}">'
            "Delete this job…</a>") in page
    queued = StyleJobFactory(owner=user)  # no result yet: still deletable from its page
    queued_page = client.get(reverse("stylize:job", args=[queued.pk])).content.decode()
    assert "Delete this job…" in queued_page

    asked = client.get(delete_url).content.decode()
    assert "Its share link stops working too." in asked
    assert StyleJob.objects.filter(pk=job.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(delete_url, follow=True)
    assert done.redirect_chain == [(reverse("stylize:job_list"), 302)]
    assert not StyleJob.objects.filter(pk=job.pk).exists()
    assert Client().get(reverse("stylize:shared", args=[job.share_token])).status_code == 404


def test_my_jobs_delete_asks_first_and_cancel_goes_back_to_the_list(client, user):
    job = StyleJobFactory(owner=user)
    listing = client.get(reverse("stylize:job_list") + "?page=1").content.decode()
    link = re.search(r'href="([^"]*/delete/\?next=[^"]*)"', listing).group(1)
    asked = client.get(link.replace("&amp;", "&")).content.decode()
    assert f'href="{reverse("stylize:job_list")}?page=1" id="delete-cancel"' in asked
    assert StyleJob.objects.filter(pk=job.pk).exists()
    elsewhere = client.get(reverse("stylize:job_delete", args=[job.pk]),
                           {"next": "https://evil.example/"}).content.decode()
    cancel = re.search(r'href="([^"]*)" id="delete-cancel"', elsewhere).group(1)
    assert cancel == reverse("stylize:job", args=[job.pk])  # only a path of this site


# --------------------------------------------------------------------------- sizes


def test_size_plan_says_what_max_side_and_strokes_do_for_one_photo():
    small = size_plan(640, 480, max_side=4096, stroke="bold")
    assert (small.width, small.height, small.shrunk) == (640, 480, False)
    assert small.painted_side == 512 and small.same_strokes == ("bold",)
    fine = size_plan(640, 480, max_side=4096, stroke="fine")
    assert fine.painted_side == 640 and fine.same_strokes == ("fine", "medium")
    tiny = size_plan(400, 300, max_side=1024, stroke="medium")
    assert tiny.painted_side == 400 and tiny.same_strokes == ("fine", "medium", "bold")
    big = size_plan(4000, 3000, max_side=1024, stroke="fine")
    assert (big.width, big.height, big.shrunk, big.painted_side) == (1024, 768, True, 1024)
    assert big.same_strokes == ("fine",)


def photo_with_orientation(size, orientation) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", size, PHOTO_COLOUR).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_a_job_keeps_its_photos_upright_size(user):
    style = StyleFactory()
    upright = jobs.job_create(owner=user, style=style, input_image=ContentFile(
        photo_with_orientation((640, 480), 1), name="a.jpg"))
    turned = jobs.job_create(owner=user, style=style, input_image=ContentFile(
        photo_with_orientation((640, 480), 6), name="b.jpg"))  # a phone held upright
    assert (upright.photo_width, upright.photo_height) == (640, 480)
    assert (turned.photo_width, turned.photo_height) == (480, 640)


def test_the_job_page_says_what_the_size_and_strokes_did_for_this_photo(client, user):
    """A 640 px photo: "Huge (4096 px)" silently gave 640 px, and the three strokes
    looked alike, without a word. The page now says so."""
    job = shared_job(user, result_size=(640, 480), photo_width=640, photo_height=480,
                     max_side=4096, stroke="fine")
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    notes = re.search(r'<p class="job-size" id="job-size">([^<]*)</p>', page).group(1)
    assert notes == ("Your photo is 640 × 480 px. The result keeps that size: photos are "
                     "never enlarged, so the 4096 px you chose makes no difference. It is "
                     "painted at 640 px on the longer side. On a photo this small, fine and "
                     "medium brush strokes look the same.")
    # Shown at no more than its own size: the page knows it before the picture loads.
    assert re.search(r'id="result-image"[^>]* width="640" height="480"', page)

    chinese = client.get(reverse("stylize:job", args=[job.pk]),
                         HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "你的照片是 640 × 480 像素。" in chinese and "细笔触和中笔触看起来一样" in chinese

    big = shared_job(user, result_size=(1024, 768), photo_width=4000, photo_height=3000,
                     max_side=1024, stroke="bold")
    page = client.get(reverse("stylize:job", args=[big.pk])).content.decode()
    assert ("The result is 1024 × 768 px: at most 1024 px on the longer side, as you chose. "
            "It is painted at 512 px on the longer side.") in page
    assert "look the same" not in page

    older = shared_job(user)  # made before sizes were kept: nothing is guessed
    assert 'id="job-size"' not in client.get(reverse("stylize:job", args=[older.pk])
                                             ).content.decode()


def test_the_upload_page_carries_what_size_plan_js_needs(client, user):
    StyleFactory()
    page = client.get(reverse("stylize:upload")).content.decode()
    assert 'id="size-plan"' in page and 'id="stroke-plan"' in page
    strokes = re.search(r'data-strokes="([^"]*)"', page).group(1).replace("&quot;", '"')
    assert '"fine": {"side": 1024, "label": "fine"}' in strokes
    assert '<script src="/static/stylize/size-plan.js" defer></script>' in page
