"""Paint with your own painting, in a real browser (docs/design/own-styles.md): "My
styles", upload a painting and name it, follow its learning on its page (a real Celery
worker learns it on a tiny bank with random VGG weights), then use it on the upload
page like any style, its preview in the grid, and get the job's result. Headless Debian
chromium driven by Playwright, as in test_previews_browser.py; another user's browser
gets a 404 for the style."""

import re

import numpy as np
import pytest
from django.test import Client
from PIL import Image

from stylize.models import Style, StyleJob
from tests.factories import UserFactory
from tests.helpers import BASE_DIR, logged_in_context, needs_chromium, open_browser, painting_file

pytestmark = [pytest.mark.slow, needs_chromium]

SCREENSHOT_DIR = BASE_DIR / "var" / "screenshots"  # copies to look at, not checked
GRID_PAINTED = """(count) => {
    const done = document.querySelectorAll(
        '.preview-grid .style-choice.has-preview:not(.painting)');
    return done.length === count && Array.from(done).every(tile => {
        const img = tile.querySelector('.tile-preview');
        return img.complete && img.naturalWidth > 0; });
}"""


def test_a_painting_learnt_on_its_page_then_used_on_the_upload_page(
    transactional_db, live_server, own_bank, own_styles_worker, tmp_path, monkeypatch,
    empty_cache
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    painting = tmp_path / "my-drawing.png"
    painting.write_bytes(painting_file(size=(160, 120), seed=4))
    photo = tmp_path / "holiday.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(photo)
    owner, stranger = UserFactory(), UserFactory()
    client, other = Client(), Client()
    client.force_login(owner)
    other.force_login(stranger)

    with sync_playwright() as playwright:
        browser, _, errors = open_browser(playwright)
        try:
            page = logged_in_context(browser, client, live_server).new_page()
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{live_server.url}/upload/")
            page.get_by_role("link", name="My styles").click()

            page.get_by_label("Your painting").set_input_files(str(painting))
            page.get_by_label("Name").fill("My drawing")
            page.get_by_role("button", name="Learn my painting").click()
            page.wait_for_url(re.compile(r"/styles/own/[-a-z0-9]+/$"))
            style = Style.objects.get(owner=owner)
            expect(page.get_by_role("heading", level=1)).to_have_text("Your style My drawing")
            expect(page.locator("#own-style-progress")).to_be_attached()
            # The page follows the learning by itself and reloads when it is ready.
            expect(page.locator("#own-style-state")).to_have_text(
                "Ready: it is among your styles on the upload page.", timeout=240_000)
            expect(page.locator("#own-style-sample")).to_be_visible()
            assert page.evaluate("document.querySelector('.own-style-painting img')"
                                 ".naturalWidth") == 160
            page.screenshot(path=str(SCREENSHOT_DIR / "own-style-ready.png"), full_page=True)

            # Like any style: checked on the upload page, previewed, painted as a job.
            page.get_by_role("link", name="Use it on a photo").click()
            tile = page.locator(".style-choice", has_text="My drawing")
            expect(tile.locator("input[type=radio]")).to_be_checked()
            expect(tile.locator(".own-badge")).to_have_text("yours")
            page.get_by_label("Your photo", exact=True).set_input_files(str(photo))
            page.wait_for_function(GRID_PAINTED, arg=3)  # the two shipped and the own
            page.get_by_role("button", name="Repaint my photo").click()
            page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
            expect(page.locator("#result-image")).to_be_visible(timeout=120_000)
            job = StyleJob.objects.get(owner=owner)
            assert job.style == style and job.status == "succeeded"
            page.screenshot(path=str(SCREENSHOT_DIR / "own-style-job.png"), full_page=True)

            # Nobody else's browser reaches it.
            stranger_page = logged_in_context(browser, other, live_server).new_page()
            response = stranger_page.goto(f"{live_server.url}/styles/own/{style.slug}/")
            assert response.status == 404
            stranger_page.goto(f"{live_server.url}/upload/")
            assert "My drawing" not in stranger_page.content()
            assert errors == []
        finally:
            browser.close()
