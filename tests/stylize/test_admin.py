import pytest
from django.urls import reverse

from tests.factories import BankStyleFactory, StyleFactory, StyleJobFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_style_admin_pages_render(staff_client):
    style = StyleFactory(name="Starry Night")
    StyleFactory(name="Great Wave", is_public=False)
    changelist = staff_client.get(reverse("admin:stylize_style_changelist"))
    assert changelist.status_code == 200
    assert b"Starry Night" in changelist.content and b"Great Wave" in changelist.content
    assert changelist.content.count(b'class="style-thumbnail"') == 2  # the paintings, shown

    searched = staff_client.get(reverse("admin:stylize_style_changelist"), {"q": "starry"})
    assert b"Starry Night" in searched.content and b"Great Wave" not in searched.content

    filtered = staff_client.get(reverse("admin:stylize_style_changelist"), {"is_public__exact": 0})
    assert b"Great Wave" in filtered.content and b"Starry Night" not in filtered.content

    change = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert change.status_code == 200 and b"Created at" in change.content
    assert staff_client.get(reverse("admin:stylize_style_add")).status_code == 200


def test_a_bank_styles_change_page_renders_with_its_bank_read_only(staff_client):
    """A slot's model name is its bank's, read-only; the page must not try to prefill
    it from the name (every shipped style is a bank slot)."""
    style = BankStyleFactory(name="Great Wave", model_name="paintings", bank_index=2)
    change = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert change.status_code == 200
    assert b'name="model_name"' not in change.content and b"paintings" in change.content
    assert b'name="slug"' in change.content  # the rest of the form is editable


def test_job_admin_pages_render(staff_client):
    job = StyleJobFactory(owner=UserFactory(username="alice"))
    StyleJobFactory(owner=UserFactory(username="bob"), status="running")
    changelist = staff_client.get(reverse("admin:stylize_stylejob_changelist"))
    assert changelist.status_code == 200 and b"alice" in changelist.content

    filtered = staff_client.get(
        reverse("admin:stylize_stylejob_changelist"), {"status__exact": "running"}
    )
    assert b"bob" in filtered.content and b"alice" not in filtered.content

    change = staff_client.get(reverse("admin:stylize_stylejob_change", args=[job.pk]))
    assert change.status_code == 200
    # Timestamps are shown, not editable.
    assert b'name="created_at"' not in change.content and b"Started at" in change.content


def test_admin_is_closed_to_non_staff(client):
    client.force_login(UserFactory(username="plain"))
    response = client.get(reverse("admin:stylize_style_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]
