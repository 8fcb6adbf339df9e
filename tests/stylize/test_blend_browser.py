"""The upload page's mix controls in a real browser: only the styles of the chosen
style's bank are offered as a second style, the share slider shows its value and
counts only with a second style, and the choice reaches the job. Headless Debian
chromium driven by Playwright, as in test_browser.py."""

import re

import pytest
from django.test import Client

from stylize.models import StyleJob
from tests.factories import BankStyleFactory, StyleFactory, UserFactory
from tests.helpers import gradient_photo, logged_in_page, needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]


def test_the_mix_controls_offer_only_styles_of_the_same_bank(
    live_server, transactional_db, tmp_path, queue, chromium
):
    from playwright.sync_api import expect

    browser, _, errors = chromium
    StyleFactory(name="Single", slug="single")
    BankStyleFactory(name="Alpha", slug="alpha", bank_index=1)
    BankStyleFactory(name="Beta", slug="beta", bank_index=2)
    BankStyleFactory(name="Gamma", slug="gamma", model_name="other_bank", bank_index=1)
    BankStyleFactory(name="Delta", slug="delta", model_name="other_bank", bank_index=2)
    user = UserFactory()
    client = Client()
    client.force_login(user)
    photo = gradient_photo(tmp_path / "photo.png")

    page = logged_in_page(browser, client, live_server, errors)
    page.goto(f"{live_server.url}/upload/")

    second = page.get_by_label("Mix in a second style")
    share = page.locator("#id_blend")

    def offered():
        return page.evaluate("""() => Array.from(
            document.getElementById("id_blend_with").options)
            .filter(o => !o.disabled).map(o => o.value)""")

    page.get_by_label("Single").check()
    expect(second).to_be_disabled()
    expect(share).to_be_disabled()

    page.get_by_label("Gamma").check()
    expect(second).to_be_enabled()
    assert offered() == ["", "delta"]
    expect(share).to_be_disabled()  # no second style chosen yet

    page.get_by_label("Alpha").check()
    assert offered() == ["", "beta"]
    second.select_option("beta")
    expect(share).to_be_enabled()
    share.fill("0.3")
    expect(page.locator("#blend-value")).to_have_text("0.3")
    page.get_by_label(re.compile(r"^Bold")).check()

    page.get_by_label("Beta").check()  # the second style is now the first: reset
    expect(second).to_have_value("")
    assert offered() == ["", "alpha"]
    page.get_by_label("Alpha").check()
    second.select_option("beta")
    share.fill("0.3")

    page.get_by_label("Your photo").set_input_files(str(photo))
    page.get_by_role("button", name="Repaint my photo").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Your photo as Alpha mixed with Beta")
    assert errors == []

    job = StyleJob.objects.get()
    assert (job.style.slug, job.blend_with.slug, job.blend, job.stroke) == (
        "alpha", "beta", 0.3, "bold")
