"""The job page in a real browser: the progress bar fills while a real Celery worker
paints tile by tile, the before/after slider follows the keyboard, a mouse drag and a
finger's tap on a phone, a share link opens in a logged-out browser and stops when
revoked, and the owner switches the page to Chinese. Headless Debian chromium driven
by Playwright, as in test_browser.py."""

import re
import threading

import pytest
from django.test import Client

from stylize.models import StyleJob
from stylize.services import jobs
from tests.factories import StyleFactory, UserFactory
from tests.helpers import (
    BASE_DIR,
    gradient_upload,
    logged_in_context,
    logged_in_page,
    needs_chromium,
)

pytestmark = [pytest.mark.slow, needs_chromium]

SCREENSHOT_DIR = BASE_DIR / "var" / "screenshots"  # copies to look at, not checked


class GatedBackend:
    """Paints the negative; after the first model call it waits until ``release``."""

    def __init__(self):
        self.calls = 0
        self.release = threading.Event()

    def stylize(self, *, images, **kwargs):
        self.calls += 1
        if self.calls == 2:
            self.release.wait(60)
        return 255 - images


# The before/after frame is measured only once compare.js runs on it and its pictures
# are loaded (until then a tap can land where the frame will not be).
FRAME_SETTLED = """() => {
    const frame = document.querySelector('.compare-frame.compare-live');
    return !!frame && Array.from(frame.querySelectorAll('img')).every(
        img => img.complete && img.naturalWidth > 0);
}"""

def test_progress_bar_slider_and_share_link(
    live_server, transactional_db, celery_worker_thread, settings, monkeypatch, chromium
):
    from playwright.sync_api import expect

    browser, _, errors = chromium
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    backend = GatedBackend()
    monkeypatch.setattr("stylize.services.stylizing.get_backend", lambda: backend)
    settings.STYLIZE_TILE_SIZE = 96  # a 300×200 photo at "fine" strokes: several passes
    style = StyleFactory(name="Tiny Test Style", live_version=1)
    user = UserFactory()
    client = Client()
    client.force_login(user)
    job = jobs.job_create(owner=user, style=style, max_side=300, stroke="fine",
                          input_image=gradient_upload(size=(300, 200)))

    page = logged_in_page(browser, client, live_server, errors,
                          viewport={"width": 1000, "height": 800})
    page.goto(f"{live_server.url}/jobs/{job.pk}/")

    # The worker is held after its first pass: the polled bar shows part done.
    bar = page.locator("progress#job-progress")
    page.wait_for_function(
        "() => { const bar = document.getElementById('job-progress');"
        " return bar && bar.value > 0 && bar.value < 1; }")
    expect(page.locator("#job-stage-text")).to_have_text("Painting")
    assert 0 < float(bar.evaluate("bar => bar.value")) < 1
    backend.release.set()

    result = page.locator("#result-image")
    expect(result).to_be_visible(timeout=60_000)
    expect(page.locator("#job-status-text")).to_have_text("Succeeded")

    # The slider: keyboard, then a mouse drag.
    slider = page.get_by_role("slider", name="Before and after")
    frame = page.locator(".compare-frame")

    def split():
        return frame.evaluate("f => getComputedStyle(f).getPropertyValue('--split')")

    assert split().strip() == "50%"
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert slider.input_value() == "60" and split().strip() == "60%"
    assert slider.get_attribute("aria-valuetext") == "60 percent of your photo shown"
    page.keyboard.press("Home")
    assert split().strip() == "0%"
    box = frame.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=5)
    page.mouse.up()
    assert abs(int(slider.input_value()) - 75) <= 1
    # The photo is clipped at the split: left of it the photo, right of it the painting.
    def seen_at(fraction):
        return page.evaluate("([x, y]) => document.elementFromPoint(x, y).id",
                             [box["x"] + box["width"] * fraction, y])

    assert (seen_at(0.7), seen_at(0.8)) == ("compare-before", "result-image")

    page.screenshot(path=str(SCREENSHOT_DIR / "job-compare.png"), full_page=True)
    # Downloads in three formats.
    for label in ("Download as JPEG", "Download as PNG", "Download as WebP"):
        expect(page.get_by_role("link", name=label)).to_be_visible()

    # Share, then open the link logged out.
    page.get_by_role("button", name="Share a link").click()
    link = page.locator("#share-url").input_value()
    assert "/s/" in link and str(job.pk) not in link
    stranger = browser.new_context(viewport={"width": 390, "height": 844},
                                   has_touch=True, is_mobile=True)
    visitor = stranger.new_page()
    visitor.goto(link.replace(settings.SITE_URL, live_server.url))
    expect(visitor.get_by_role("heading", level=1)).to_have_text(
        "A photo painted as Tiny Test Style")
    shared = visitor.locator("#shared-image")
    expect(shared).to_be_visible()
    assert shared.evaluate("img => img.complete && img.naturalWidth") == 300
    assert visitor.locator(f"a[href*='{job.pk}']").count() == 0

    # On a phone, the owner's slider follows a tap.
    phone = logged_in_context(browser, client, live_server, has_touch=True,
                              is_mobile=True, viewport={"width": 390, "height": 844})
    owner_phone = phone.new_page()
    owner_phone.goto(f"{live_server.url}/jobs/{job.pk}/")
    assert owner_phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone_frame = owner_phone.locator(".compare-frame")
    owner_phone.wait_for_function(FRAME_SETTLED)
    box = phone_frame.bounding_box()
    owner_phone.touchscreen.tap(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    assert abs(int(owner_phone.locator("#compare-range").input_value()) - 30) <= 1
    owner_phone.screenshot(path=str(SCREENSHOT_DIR / "job-phone.png"), full_page=True)

    # The owner switches to Chinese in the header: the page, and what its scripts
    # say, are in Chinese from then on.
    owner_phone.get_by_role("button", name="简体中文").click()
    expect(owner_phone.locator("h1")).to_have_text("你的照片：Tiny Test Style")
    expect(owner_phone.locator("html")).to_have_attribute("lang", "zh-Hans")
    # The reloaded page's script has run and its pictures have their size.
    owner_phone.wait_for_function(FRAME_SETTLED)
    box = phone_frame.bounding_box()
    owner_phone.touchscreen.tap(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    expect(owner_phone.locator("#compare-range")).to_have_attribute(
        "aria-valuetext", re.compile(r"^显示了百分之 (39|40|41) 的原照片$"))
    expect(owner_phone.get_by_role("link", name="下载为 PNG")).to_be_visible()
    owner_phone.screenshot(path=str(SCREENSHOT_DIR / "job-phone-zh.png"), full_page=True)
    # A visitor whose browser asks for Chinese gets the shared page in Chinese.
    chinese = browser.new_context(locale="zh-CN").new_page()
    chinese.goto(link.replace(settings.SITE_URL, live_server.url))
    expect(chinese.get_by_role("heading", level=1)).to_have_text(
        "以 Tiny Test Style 风格绘制的照片")

    page.get_by_role("button", name="Stop sharing").click()
    expect(page.get_by_role("button", name="Share a link")).to_be_visible()
    assert visitor.goto(link.replace(settings.SITE_URL, live_server.url)).status == 404
    assert errors == []
    assert StyleJob.objects.get().share_token is None
