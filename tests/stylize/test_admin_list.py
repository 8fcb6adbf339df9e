"""The style list in the admin reads well: numbers with k, M and G, the shipped styles'
held-out numbers marked as their live version's, and one network column instead of
three, so the table fits a 1280 px screen (the browser check: test_share_browser.py)."""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from ml.shipped import shipped_styles
from stylize.admin import _number
from stylize.services import styles
from tests.factories import StyleFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value, shown", [
    (2.83e6, "2.83M"), (975853.9, "976k"), (999_950, "1M"), (12345, "12.3k"),
    (2830, "2.83k"), (4.2e9, "4.2G"), (0.084, "0.084"), (0.01234, "0.0123"), (5, "5"),
    (-1234.5, "-1.23k"), (float("nan"), None), (True, None), ("3", None),
])
def test_numbers_have_three_digits_and_a_unit(value, shown):
    assert _number(value) == shown


def test_the_shipped_styles_numbers_are_their_live_versions(staff_client):
    serving_dir = Path(settings.BASE_DIR) / "serving"
    styles.styles_register_shipped(serving_dir=serving_dir)
    html = staff_client.get(reverse("admin:stylize_style_changelist")).content.decode()
    start = html.index(">The Starry Night</a>")
    row = html[start:html.index("</tr>", start)]
    starry = next(s for s in shipped_styles(serving_dir) if s.meta["name"] == "The Starry Night")
    photos = starry.meta["metrics"]["heldout"]["photos"]
    assert f'<td class="field-heldout_of">v{starry.version}, {photos} photos</td>' in row
    assert "not the live version" not in html and "v?" not in html
    assert "e+0" not in html  # no "2.83e+03k"
    assert (f'<td class="field-network">{starry.model}, slot {starry.slot}, v{starry.version}'
            '</td>') in row


def test_numbers_without_a_version_say_so_rather_than_v_question_mark(staff_client):
    StyleFactory(name="Old numbers", metrics={"heldout": {"photos": 8, "losses": {}}})
    html = staff_client.get(reverse("admin:stylize_style_changelist")).content.decode()
    assert "8 photos (version not recorded)" in html and "v?" not in html
