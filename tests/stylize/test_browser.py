"""A person's whole visit in a real browser: sign up, confirm the address by the mailed
link, upload a photo, watch the job succeed on a real Celery worker, see the result.
Headless Debian chromium driven by Playwright (its own browser download is not needed:
``apt-get install chromium``)."""

import re
import shutil

import pytest
from django.core import mail
from PIL import Image

from stylize.models import StyleJob
from tests.factories import StyleFactory
from tests.helpers import BASE_DIR, CHROMIUM, CHROMIUM_ARGS, gradient_photo, needs_chromium

SCREENSHOT_DIR = BASE_DIR / "var" / "screenshots"

pytestmark = [pytest.mark.slow, needs_chromium]


def test_sign_up_upload_and_see_the_result(
    live_server, transactional_db, use_local_backend, celery_worker_thread, tmp_path, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls below are
    # made while it is idle, which Django cannot tell.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    StyleFactory(name="Tiny Test Style", slug="tiny", model_name="tiny", live_version=1)
    photo = gradient_photo(tmp_path / "holiday.png")
    shot = tmp_path / "job-succeeded.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(30_000)
            console_errors = []
            page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))

            page.goto(f"{live_server.url}/accounts/signup/")
            page.get_by_label(re.compile(r"^Email:?$")).fill("ada@example.com")
            page.get_by_label(re.compile(r"^Password:?$")).fill("correct horse battery staple")
            page.get_by_label("Password confirmation").fill("correct horse battery staple")
            page.get_by_role("button", name="Sign up").click()
            expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
            # The mailed link confirms the address and logs in.
            [message] = mail.outbox
            link = re.search(r"https?://[^/\s]+(/accounts/confirm/\S+/)", message.body).group(1)
            page.goto(f"{live_server.url}{link}")
            page.wait_for_url(f"{live_server.url}/upload/")

            # Checked in the browser before sending: not a photo, so nothing is sent.
            page.get_by_label("Your photo").set_input_files(
                {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}
            )
            expect(page.locator("#image-check")).to_have_text(
                "This is not a JPEG, PNG, WebP, HEIC or AVIF photo."
            )
            page.get_by_role("button", name="Repaint my photo").click()
            assert page.url == f"{live_server.url}/upload/"
            assert page.evaluate("document.activeElement.type") == "file"

            # Dropping photos on the drop zone fills the file input with the first one.
            dropped = page.evaluate("""() => {
                const files = new DataTransfer();
                files.items.add(new File(["x".repeat(2048)], "dropped.png", {type: "image/png"}));
                files.items.add(new File(["y"], "second.png", {type: "image/png"}));
                document.getElementById("drop-zone").dispatchEvent(new DragEvent(
                    "drop", {dataTransfer: files, bubbles: true, cancelable: true}));
                const input = document.querySelector("input[type=file]");
                return [input.files.length, input.files[0].name];
            }""")
            assert dropped == [1, "dropped.png"]
            # (Its bytes are no PNG: the preview fails, and the page says so too.)
            expect(page.locator("#image-check")).to_have_text(
                re.compile(r"^dropped\.png \(2 KB\) is ready\. This browser cannot preview it"))

            page.get_by_label("Your photo").set_input_files(str(photo))
            expect(page.locator("#image-check")).to_contain_text("holiday.png")
            page.get_by_label("Tiny Test Style").check()
            page.get_by_label("Size of the result").select_option("512")
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(tmp_path / "upload-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1000, "height": 800})
            page.get_by_role("button", name="Repaint my photo").click()
            page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))

            result = page.locator("#result-image")
            expect(result).to_be_visible(timeout=120_000)  # polled, then shown
            expect(page.locator("#job-status-text")).to_have_text("Succeeded")
            assert result.evaluate("img => img.complete && img.naturalWidth") == 160
            expect(page.get_by_role("link", name="Download as JPEG")).to_be_visible()
            page.screenshot(path=str(shot), full_page=True)

            page.get_by_role("link", name="All my jobs").click()
            card = page.locator(".job-card")
            expect(card).to_have_count(1)
            expect(card.locator(".job-status")).to_have_text("Succeeded")
            page.wait_for_function(  # the thumbnail loads after the list
                "() => { const img = document.querySelector('.job-card img');"
                " return img && img.complete && img.naturalWidth > 0; }")
            page.screenshot(path=str(tmp_path / "my-jobs.png"), full_page=True)
            assert console_errors == []
        finally:
            browser.close()

    job = StyleJob.objects.get()
    assert job.owner.email == "ada@example.com" and job.status == StyleJob.Status.SUCCEEDED
    assert Image.open(shot).size[0] == 1000
    try:  # a copy to look at; the test does not depend on var/
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        for name in (shot.name, "upload-phone.png", "my-jobs.png"):
            shutil.copy(tmp_path / name, SCREENSHOT_DIR / name)
    except OSError:
        pass
