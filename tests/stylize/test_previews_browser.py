"""Previews in a real browser (docs/design/previews.md), at 1280×800 and on a 390×844
phone, in English and Chinese: choose a photo, see it in every style (painted by a real
Celery worker with the tiny models), pick one and set the strength (its preview is
painted again), make the job without uploading the photo again, then on the job page
"Try another style" and Apply. And a visitor without an account whose photo and choices
wait through logging in. Headless Debian chromium driven by Playwright, as in
test_browser.py."""

import io
import re

import numpy as np
import pytest
from django.test import Client
from PIL import Image

from stylize.models import Preview, StyleJob
from tests.factories import UserFactory
from tests.helpers import BASE_DIR, PASSWORD, logged_in_page, needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]

SCREENSHOT_DIR = BASE_DIR / "var" / "screenshots"  # copies to look at, not checked
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
TEXT = {
    "en": {"photo": "Your photo", "repaint": "Repaint my photo", "again": "Try another style",
           "apply": "Apply", "grid": "Your photo in every style: pick the one you like.",
           "heading": "Your photo as {name}", "caption": "{name} at strength {strength}"},
    "zh-hans": {"photo": "你的照片", "repaint": "重绘我的照片", "again": "换一种风格",
                "apply": "应用", "grid": "你的照片在每种风格下的效果：挑选你喜欢的那一种。",
                "heading": "你的照片：{name}", "caption": "{name}，强度 {strength}"},
}
GRID_PAINTED = """(count) => {
    const tiles = document.querySelectorAll('.preview-grid .style-choice');
    const done = document.querySelectorAll(
        '.preview-grid .style-choice.has-preview:not(.painting)');
    return tiles.length === count && done.length === count &&
        Array.from(done).every(tile => {
            const img = tile.querySelector('.tile-preview');
            return img.complete && img.naturalWidth > 0; });
}"""


def photo_file(path, size=(640, 480)):
    """A noisy photo (its bytes are easy to tell apart from anything else sent)."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def no_horizontal_scroll(page, viewport):
    width = VIEWPORTS[viewport]["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def uploads_sent(page):
    """The bodies of the upload form's POSTs, as the browser sent them."""
    bodies = []
    page.on("request", lambda request: request.method == "POST" and request.url.endswith(
        "/upload/") and bodies.append(request.post_data_buffer or b""))
    return bodies


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_photo_grid_pick_job_and_another_style(
    live_server, use_local_backend, celery_worker_thread, tiny_styles, tmp_path, viewport,
    language, empty_cache, chromium
):
    from playwright.sync_api import expect

    browser, _, errors = chromium
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    text = TEXT[language]
    photo = photo_file(tmp_path / "holiday.png")
    user = UserFactory()
    client = Client()
    client.force_login(user)
    phone = viewport == "phone"

    page = logged_in_page(browser, client, live_server, errors, timeout=60_000,
                          viewport=VIEWPORTS[viewport], has_touch=phone, is_mobile=phone,
                          extra_http_headers={"Accept-Language": language})
    sent = uploads_sent(page)
    page.goto(f"{live_server.url}/upload/")

    # The photo, once chosen, comes back painted in every style.
    page.get_by_label(text["photo"], exact=True).set_input_files(str(photo))
    page.wait_for_function(GRID_PAINTED, arg=3)
    expect(page.locator("#preview-status")).to_have_text(text["grid"])
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.tile-preview')).map(img => [img.naturalWidth, img.naturalHeight])""")
    assert sizes == [[320, 240]] * 3
    no_horizontal_scroll(page, viewport)
    page.screenshot(path=str(SCREENSHOT_DIR / f"previews-{viewport}-{language}.png"),
                    full_page=True)

    # Picking a preview picks its style; the strength paints it again.
    tile = page.locator(".style-choice", has_text="Tiny Bank Two")
    tile.click()
    expect(tile.locator("input[type=radio]")).to_be_checked()
    before = tile.locator(".tile-preview").get_attribute("src")
    page.locator("#id_strength").fill("0.5")
    page.wait_for_function("""(before) => {
        const tile = Array.from(document.querySelectorAll('.style-choice'))
            .find(t => t.textContent.includes('Tiny Bank Two'));
        const img = tile.querySelector('.tile-preview');
        return img.getAttribute('src') !== before && !tile.classList.contains('painting')
            && img.complete && img.naturalWidth > 0; }""", arg=before)

    # The job uses the preview's photo: the form sends no photo again.
    page.get_by_role("button", name=text["repaint"]).click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    [body] = sent
    assert b"\x89PNG" not in body and b"name=\"preview\"" in body
    job = StyleJob.objects.get()
    assert (job.style.slug, job.strength) == ("tiny-bank-2", 0.5)
    with job.input_image.open("rb") as stored:
        assert stored.read() == photo.read_bytes()
    expect(page.locator("#result-image")).to_be_visible(timeout=120_000)

    # "Try another style": the grid again, from the job's photo, no upload.
    page.get_by_role("button", name=text["again"]).click()
    page.wait_for_function(GRID_PAINTED, arg=3)
    assert Preview.objects.filter(source_job=job).count() == 1
    # The job's own style at the job's strength (the slider's), painted again.
    expect(page.locator("#again-strength")).to_have_value("0.5")
    expect(page.locator("#again-preview-caption")).to_have_text(
        text["caption"].format(name="Tiny Bank Two", strength="0.5"))
    no_horizontal_scroll(page, viewport)
    page.screenshot(path=str(SCREENSHOT_DIR / f"again-{viewport}-{language}.png"),
                    full_page=True)
    page.locator("#again .style-choice", has_text="Tiny").first.click()
    expect(page.locator("#again-preview")).to_be_visible()
    page.get_by_role("button", name=text["apply"], exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        text["heading"].format(name="Tiny"))
    again = StyleJob.objects.exclude(pk=job.pk).get()
    assert again.style.slug == "tiny" and again.max_side == job.max_side
    with again.input_image.open("rb") as stored:
        assert stored.read() == photo.read_bytes()
    no_horizontal_scroll(page, viewport)
    assert errors == []


def test_a_visitors_photo_and_choices_wait_through_logging_in(
    live_server, use_local_backend, celery_worker_thread, tiny_styles, tmp_path, empty_cache,
    chromium
):
    from playwright.sync_api import expect

    _, page, errors = chromium
    UserFactory(username="ada", email="ada@example.com")
    photo = photo_file(tmp_path / "visit.png", size=(480, 640))

    page.set_viewport_size(VIEWPORTS["desktop"])
    page.goto(f"{live_server.url}/")
    page.locator("#try-it").click()
    page.wait_for_url(f"{live_server.url}/upload/")
    expect(page.locator("#signup-note")).to_be_visible()
    page.get_by_label("Your photo", exact=True).set_input_files(str(photo))
    page.wait_for_function(GRID_PAINTED, arg=3)
    assert page.evaluate("document.querySelector('.tile-preview').naturalHeight") == 320
    page.locator(".style-choice", has_text="Tiny Bank One").click()
    page.get_by_role("button", name="Repaint my photo").click()

    # Asked to sign up or log in; the photo waits.
    page.wait_for_url(f"{live_server.url}/accounts/signup/")
    expect(page.locator(".messages")).to_contain_text("kept for an hour")
    assert not StyleJob.objects.exists()
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email or username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/upload/")

    expect(page.locator("#kept-photo")).to_be_visible()
    page.wait_for_function(GRID_PAINTED, arg=3)
    expect(page.locator(".style-choice", has_text="Tiny Bank One")
           .locator("input[type=radio]")).to_be_checked()
    page.get_by_role("button", name="Repaint my photo").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    job = StyleJob.objects.get()
    assert job.owner.username == "ada" and job.style.slug == "tiny-bank-1"
    with job.input_image.open("rb") as stored:
        assert Image.open(io.BytesIO(stored.read())).size == (480, 640)
    assert errors == []


def test_a_photo_chosen_before_the_page_scripts_ran_is_still_previewed(
    live_server, use_local_backend, celery_worker_thread, tiny_styles, tmp_path, empty_cache,
    chromium
):
    """On a slow connection a person can pick a photo before upload.js has run: its
    "change" event goes by unheard, and the grid must be painted all the same."""
    _, page, errors = chromium
    photo = photo_file(tmp_path / "early.png", size=(320, 240))

    held = []  # the page's script arrives only after the photo is in the input
    page.route("**/static/stylize/upload.js", lambda route: held.append(route))
    page.goto(f"{live_server.url}/upload/", wait_until="commit")
    page.get_by_label("Your photo", exact=True).set_input_files(str(photo))
    page.wait_for_function("() => true")
    assert len(held) == 1
    assert page.locator("#image-check").text_content().strip() == ""
    held[0].continue_()
    page.wait_for_function(GRID_PAINTED, arg=3)
    assert errors == []
