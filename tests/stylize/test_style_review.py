"""Staff review a style before users see it (issue 24, item 6).

A style trained for 120 steps (grey streaks, no sample) went live on the home page for
every user. Now a newly trained or retrained style is a draft: no user page, no API
call and no job can use it, staff see it in the admin with its held-out contact sheet
and numbers, and it reaches users once staff publish it, which needs a held-out
evaluation of its live version (``stylize.services.styles.style_publish``). Shipped
styles are reviewed already: ``register_styles`` publishes them.

The fast tests stop ``ml.train.train`` and the export with fakes (the services around
them are the real ones); one test trains for real, tiny, with random VGG16 weights
(marked slow).
"""

import io
import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from ml.callbacks import TrainProgress
from stylize import selectors
from stylize.models import Style, StyleJob
from stylize.services import styles, training
from tests.factories import BankStyleFactory, StyleFactory, UserFactory
from tests.helpers import png_bytes

# queue: uploads only create jobs; empty_cache: they count against the throttles.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue", "empty_cache")]

LOSSES = {"content": 12000.0, "style": 3.5, "tv": 2.0, "total": 1205.5}


@pytest.fixture
def user_client():
    client = Client()
    client.force_login(UserFactory(username="ada"))
    return client


@pytest.fixture
def api_client():
    client = APIClient()
    client.force_authenticate(UserFactory(username="bot"))
    return client


@pytest.fixture
def fake_ml(monkeypatch, serving_dir):
    """``ml.train.train`` reports its steps and ends well; the export writes a folder
    Serving would accept. Everything around them (the services) is the real one."""
    from ml.train import TrainResult

    def train(config, *, on_progress=None, **kwargs):
        for step in range(1, config.steps + 1):
            on_progress(TrainProgress(step, config.steps, 0.1 * step, LOSSES))
        return TrainResult(steps=config.steps, steps_this_run=config.steps, seconds=0.3,
                           final_losses=LOSSES, mean_losses=LOSSES, model_path=Path("none"),
                           model=None, config=config)

    def export_savedmodel(model, base_dir, *, slots=None, **kwargs):
        base_dir = Path(base_dir)
        version = 1 + max((int(p.name) for p in base_dir.glob("*") if p.name.isdigit()),
                          default=0)
        folder = base_dir / str(version)
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"\x08\x01")
        return version, folder

    monkeypatch.setattr("ml.train.train", train)
    monkeypatch.setattr("ml.export.export_savedmodel", export_savedmodel)


def train(style, tmp_path, **extra):
    return training.style_train(style=style, overrides={
        "data_dir": str(tmp_path), "steps": 3, **extra.pop("overrides", {})}, **extra)


def evaluated(style, version=None, photos=6):
    """What ``manage.py evaluate_style`` stores: the held-out numbers of ``version`` (the
    live one unless given) and their contact sheet, which becomes the training sheet."""
    version = style.live_version if version is None else version
    sheet = default_storage.save(f"styles/training/{style.slug}-heldout-v{version}.png",
                                 ContentFile(png_bytes(size=(60, 20), color=(9, 9, 9))))
    heldout = {"version": version, "photos": photos, "losses": LOSSES,
               "quality": {"style_distance_ratio": 0.61}, "sheet": sheet}
    Style.objects.filter(pk=style.pk).update(
        metrics={**style.metrics, "heldout": heldout}, training_sheet=sheet)
    style.refresh_from_db()
    return style


def upload(slug):
    return {"image": SimpleUploadedFile("photo.png", png_bytes((64, 48)), "image/png"),
            "style": slug, "strength": "1", "max_side": "512"}


def offered_on_pages(client) -> set[str]:
    """The style slugs a user is offered on the upload page, the home page and the API."""
    upload_page = client.get(reverse("stylize:upload")).content.decode()
    on_upload = set(re.findall(r'name="style" value="([^"]+)"', upload_page))
    home = client.get(reverse("stylize:home")).content.decode()
    on_home = {style.slug for style in Style.objects.all() if style.name in home}
    in_api = {s["slug"] for s in APIClient().get("/api/v1/styles/").json()}
    return on_upload | on_home | in_api


def assert_users_cannot_use(style, user_client, api_client):
    jobs = StyleJob.objects.filter(style=style).count()
    assert style.slug not in offered_on_pages(user_client)
    assert style not in selectors.style_list_offered()
    assert APIClient().get(f"/api/v1/styles/{style.slug}/").status_code == 404
    response = api_client.post("/api/v1/jobs/", upload(style.slug), format="multipart")
    assert response.status_code == 400
    assert response.json()["style"] == [
        f"There is no style “{style.slug}” to use. GET /api/v1/styles/ lists the styles."]
    page = user_client.post(reverse("stylize:upload"), upload(style.slug))
    assert page.status_code == 400
    assert "That style is not available" in page.content.decode()
    assert StyleJob.objects.filter(style=style).count() == jobs  # no new job


def assert_users_can_use(style, user_client, api_client):
    assert style.slug in offered_on_pages(user_client)
    assert APIClient().get(f"/api/v1/styles/{style.slug}/").status_code == 200
    response = api_client.post("/api/v1/jobs/", upload(style.slug), format="multipart")
    assert response.status_code == 201, response.json()


def publish(staff_client, *styles_to_publish):
    """The admin's "Publish" action on ``styles_to_publish``; the page it lands on."""
    return staff_client.post(
        reverse("admin:stylize_style_changelist"),
        {"action": "publish", "_selected_action": [s.pk for s in styles_to_publish]},
        follow=True).content.decode()


# --------------------------------------------------------------------------- the attack


@pytest.mark.slow
def test_a_style_trained_for_a_few_steps_stays_a_draft_until_staff_publish_it(
    serving_dir, photos, vgg16_random_weights, user_client, api_client, staff_client, tmp_path
):
    """The attack, with a real (tiny) run: nothing of it reaches users before review."""
    published = StyleFactory(name="Starry Night", slug="starry-night")
    style = StyleFactory(name="Grey Streaks", slug="streaks", model_name="streaks",
                         status="draft", live_version=None)

    training.style_train(style=style, overrides={
        "data_dir": str(photos), "steps": 3, "size": 32, "batch": 2, "loss_network": "vgg16",
        "loss_weights": str(vgg16_random_weights), "width": 0.25})

    style.refresh_from_db()
    assert style.status == Style.Status.READY and style.live_version == 1
    assert_users_cannot_use(style, user_client, api_client)
    assert offered_on_pages(user_client) == {"starry-night"}
    # Staff see it, marked as a draft, with the run's numbers.
    listing = staff_client.get(reverse("admin:stylize_style_changelist"),
                               {"publication": "draft"}).content.decode()
    assert ">Grey Streaks</a>" in listing and ">Starry Night</a>" not in listing
    change = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    html = change.content.decode()
    assert "Draft: users do not see this style until it is published." in html
    assert "Not evaluated on held-out photos yet." in html
    # Not publishable before a held-out evaluation of what it paints.
    assert "evaluated on held-out photos" in publish(staff_client, style)
    style.refresh_from_db()
    assert style.published_at is None
    assert_users_cannot_use(style, user_client, api_client)

    call_command("evaluate_style", "streaks", "--images", str(photos),
                 "--sheet", str(tmp_path / "sheet.png"), stdout=io.StringIO())
    style.refresh_from_db()
    html = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk])
                            ).content.decode()
    assert "6 held-out photos (top) in version 1" in html
    assert html.count(f'<img src="{style.training_sheet.url}"') >= 1
    review = html[html.index('class="form-row field-heldout_review'):]
    assert re.search(r'Held-out content</th><td class="number">[0-9.e+k-]+<', review)
    assert "Publish version 1" in html

    response = staff_client.post(reverse("admin:stylize_style_publish", args=[style.pk]))
    assert response.status_code == 302
    style.refresh_from_db()
    assert style.published_at is not None
    assert_users_can_use(style, user_client, api_client)
    assert published.slug in offered_on_pages(user_client)


# --------------------------------------------------------------------------- training


def test_a_newly_trained_style_is_a_draft_that_only_staff_see(
    fake_ml, tmp_path, user_client, api_client, staff_client
):
    style = StyleFactory(name="Grey Streaks", slug="streaks", model_name="streaks",
                         status="draft", live_version=None)
    train(style, tmp_path)
    style.refresh_from_db()
    assert style.is_ready and style.live_version == 1
    assert_users_cannot_use(style, user_client, api_client)
    assert not style.is_published

    listing = staff_client.get(reverse("admin:stylize_style_changelist")).content.decode()
    row = listing[listing.index(">Grey Streaks</a>"):]
    row = row[:row.index("</tr>")]
    assert '<td class="field-published">' in row and 'alt="False"' in row
    assert "Draft: users do not see this style" in staff_client.get(
        reverse("admin:stylize_style_change", args=[style.pk])).content.decode()


def test_a_retrained_published_style_goes_back_to_draft_until_published_again(
    fake_ml, serving_dir, tmp_path, user_client, api_client, staff_client
):
    style = evaluated(StyleFactory(name="Wave", slug="wave", model_name="wave"))
    (serving_dir / "models" / "wave" / "1").mkdir(parents=True)  # what it serves
    assert style.is_published
    assert_users_can_use(style, user_client, api_client)
    seen_while_training = []

    def watch(progress):  # the old version serves while the run goes on
        seen_while_training.append(style in selectors.style_list_offered())

    train(style, tmp_path, on_progress=watch)

    assert seen_while_training == [True, True, True]
    style.refresh_from_db()
    assert style.live_version == 2 and not style.is_published
    assert_users_cannot_use(style, user_client, api_client)
    # Its held-out numbers were of version 1: publishing version 2 needs its own.
    assert "heldout" not in style.metrics
    assert "evaluated on held-out photos" in publish(staff_client, style)
    evaluated(style)
    page = publish(staff_client, style)
    assert "Published 1 style(s)" in page
    style.refresh_from_db()
    assert style.is_published
    assert_users_can_use(style, user_client, api_client)


def test_a_failed_retrain_leaves_a_published_style_published(serving_dir, tmp_path,
                                                             monkeypatch):
    def broken(config, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr("ml.train.train", broken)
    style = StyleFactory(slug="wave", model_name="wave", live_version=3)
    with pytest.raises(RuntimeError):
        train(style, tmp_path)
    style.refresh_from_db()
    assert style.live_version == 3 and style.is_published
    assert style in selectors.style_list_offered()


def test_a_bank_go_live_drafts_the_styles_it_trained_and_no_other():
    """A slot fine-tune (or a bank run) trains some slots; the others move to the new
    version painting exactly what they did, and stay published."""
    red = BankStyleFactory(slug="red", model_name="duo", bank_index=1, bank_slots=3)
    blue = BankStyleFactory(slug="blue", model_name="duo", bank_index=2, bank_slots=3)
    newcomer = StyleFactory(slug="green", status="draft", live_version=None)
    assert red.is_published and blue.is_published and not newcomer.is_published

    training._bank_make_live(
        model_name="duo", version=2, num_styles=4, slot_of={red.pk: 1, blue.pk: 2,
                                                            newcomer.pk: 3},
        trained=[red, newcomer], record={}, metrics={}, started_from=1)

    for style in (red, blue, newcomer):
        style.refresh_from_db()
    assert [s.live_version for s in (red, blue, newcomer)] == [2, 2, 2]
    assert not red.is_published and blue.is_published and not newcomer.is_published
    assert list(selectors.style_list_offered()) == [blue]


def test_shipped_styles_are_registered_published(serving_dir):
    folder = serving_dir / "models" / "starry_night" / "1"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    (folder / "slots.json").write_text(
        '{"num_styles": 2, "slots": [{"identity": true}, {"slug": "starry-night"}]}')
    meta = serving_dir / "styles" / "starry_night" / "starry-night"
    meta.mkdir(parents=True)
    (meta / "painting.png").write_bytes(png_bytes())
    (meta / "style.json").write_text('{"name": "Starry Night", "painting": "painting.png"}')

    [style] = styles.styles_register_shipped(serving_dir=serving_dir)

    assert style.is_published and style in selectors.style_list_offered()


# --------------------------------------------------------------------------- publishing


def test_publishing_needs_a_live_version_and_its_held_out_evaluation(staff_client):
    untrained = StyleFactory(name="Untrained", status="draft", live_version=None)
    unevaluated = StyleFactory(name="Unevaluated", live_version=2, published_at=None)
    stale = evaluated(StyleFactory(name="Stale", live_version=3, published_at=None), version=2)
    ready = evaluated(StyleFactory(name="Evaluated", live_version=4, published_at=None))

    page = publish(staff_client, untrained, unevaluated, stale, ready)

    assert "Untrained has no trained version to publish: train it first." in page
    for name, version in [("Unevaluated", 2), ("Stale", 3)]:
        assert (f"{name} cannot be published before version {version} is evaluated on "
                "held-out photos") in page
    assert "Published 1 style(s)" in page
    assert {s.name for s in Style.objects.filter(published_at__isnull=False)} == {"Evaluated"}
    assert list(selectors.style_list_offered()) == [ready]

    with pytest.raises(styles.StylePublishRefused, match="no trained version"):
        styles.style_publish(style=untrained)


def test_the_change_page_shows_the_review_and_its_publish_button(staff_client, user_client,
                                                                  api_client):
    style = evaluated(StyleFactory(name="Wave", slug="wave", live_version=2, published_at=None))
    url = reverse("admin:stylize_style_change", args=[style.pk])
    html = staff_client.get(url).content.decode()
    review = html[html.index('class="form-row field-heldout_review'):]
    assert "v2, 6 photos" in review and "12k" in review and "0.61" in review
    assert f'<img src="{style.training_sheet.url}"' in review
    publish_url = reverse("admin:stylize_style_publish", args=[style.pk])
    assert f'formaction="{publish_url}"' in html and "Publish version 2" in html

    assert staff_client.get(publish_url).status_code == 405
    assert user_client.post(publish_url).status_code == 302  # to the admin's log-in
    style.refresh_from_db()
    assert not style.is_published

    response = staff_client.post(publish_url, follow=True)
    assert response.redirect_chain[-1][0] == url
    assert "Wave is published: users see it now." in response.content.decode()
    style.refresh_from_db()
    assert style.is_published
    html = staff_client.get(url).content.decode()
    assert "users see version 2." in html and "Publish version 2" not in html
    assert_users_can_use(style, user_client, api_client)


def test_the_publish_button_refuses_a_style_without_its_evaluation(staff_client):
    style = StyleFactory(name="Wave", live_version=2, published_at=None)
    html = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk])
                            ).content.decode()
    assert "Publish version 2" not in html
    assert "Wave cannot be published before version 2 is evaluated" in html
    response = staff_client.post(reverse("admin:stylize_style_publish", args=[style.pk]),
                                 follow=True)
    assert "Wave cannot be published before version 2 is evaluated" in (
        response.content.decode())
    style.refresh_from_db()
    assert not style.is_published


def test_a_style_added_in_the_admin_is_a_draft(staff_client):
    response = staff_client.post(reverse("admin:stylize_style_add"), {
        "name": "By Hand", "slug": "by-hand", "model_name": "by-hand", "description": "",
        "painting": SimpleUploadedFile("painting.png", png_bytes(), "image/png"),
        "is_public": "on", "live_version": "1", "status": "ready", "status_reason": "",
        "training_settings": "{}", "metrics": "{}",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    style = Style.objects.get(slug="by-hand")
    # No slot before training: the version and status posted are not the form's to set.
    assert style.live_version is None and style.status == Style.Status.DRAFT
    assert style.is_public and not style.is_published
    assert style not in selectors.style_list_offered()


def test_changing_the_live_version_by_hand_takes_a_style_back_to_draft(staff_client):
    style = StyleFactory(name="Wave", slug="wave", model_name="wave", live_version=2)
    url = reverse("admin:stylize_style_change", args=[style.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields
            if form[name].value() is not None and name not in ("painting", "sample")}
    data["description"] = "new words"
    assert staff_client.post(url, data).status_code == 302
    style.refresh_from_db()
    assert style.description == "new words" and style.is_published  # not what it paints

    data["live_version"] = "3"
    assert staff_client.post(url, data).status_code == 302
    style.refresh_from_db()
    assert style.live_version == 3 and not style.is_published
