"""The data steps of migrations, run on a database at the migration before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(to):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("stylize", to)])
    return executor.loader.project_state([("stylize", to)]).apps


@pytest.fixture(autouse=True)
def back_to_the_latest_migration():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_old_jobs_count_as_fine_strokes_and_unnamed_styles_take_their_slug():
    apps = migrate("0004_style_banks_blend_stroke")
    User = apps.get_model("auth", "User")
    Style = apps.get_model("stylize", "Style")
    StyleJob = apps.get_model("stylize", "StyleJob")
    owner = User.objects.create(username="old")
    unnamed = Style.objects.create(name="Unnamed", slug="unnamed", model_name="",
                                   style_image="p.png")
    Style.objects.create(name="Taken", slug="taken", model_name="unnamed", style_image="p.png")
    job = StyleJob.objects.create(owner=owner, style=unnamed, input_image="in.png")
    assert job.stroke == "bold"  # what 0004 gave every row

    apps = migrate("0006_style_model_name_required")
    StyleJob = apps.get_model("stylize", "StyleJob")
    Style = apps.get_model("stylize", "Style")
    assert StyleJob.objects.get(pk=job.pk).stroke == "fine"
    assert Style.objects.get(pk=unnamed.pk).model_name == "unnamed-2"  # "unnamed" is taken


def test_styles_users_were_offered_stay_published_and_every_other_one_is_a_draft():
    """0013 brings drafts (issue 24, item 6): nothing live disappears from users."""
    apps = migrate("0012_job_result_copies")
    Style = apps.get_model("stylize", "Style")

    def style(slug, **fields):
        return Style.objects.create(name=slug, slug=slug, model_name=slug, painting="p.png",
                                    **fields).pk

    ready = style("ready", status="ready", live_version=2)
    retraining = style("retraining", status="training", live_version=1)
    style("hidden", status="ready", live_version=1, is_public=False)  # these are drafts
    style("first-run", status="training")
    style("untrained", status="draft")

    apps = migrate("0013_style_published_at")
    Style = apps.get_model("stylize", "Style")
    published = set(Style.objects.filter(published_at__isnull=False).values_list("pk", flat=True))
    assert published == {ready, retraining}


def test_styles_live_on_a_single_style_network_become_drafts_that_say_to_retrain():
    """0017 (issue 26): every network is a bank. A staff style still live on a network
    trained as a single style has nothing the code paints with: an unpublished draft that
    says why; a bank's slot, a draft and a user's own style are untouched, and the old
    jobs keep their results."""
    from django.utils import timezone

    apps = migrate("0016_own_styles")
    User = apps.get_model("auth", "User")
    Style = apps.get_model("stylize", "Style")
    StyleJob = apps.get_model("stylize", "StyleJob")
    owner = User.objects.create(username="old")
    now = timezone.now()
    single = Style.objects.create(name="Single", slug="single", model_name="single",
                                  painting="p.png", status="ready", live_version=3,
                                  published_at=now)
    slot = Style.objects.create(name="Slot", slug="slot", model_name="bank", painting="p.png",
                                status="ready", live_version=2, bank_index=1, bank_slots=3,
                                published_at=now)
    draft = Style.objects.create(name="Draft", slug="draft", model_name="draft",
                                 painting="p.png", status="draft")
    own = Style.objects.create(name="Mine", slug="mine", model_name="bank", owner=owner,
                               status="ready", live_version=2, bank_slots=3,
                               style_params=b"\0" * 8, is_public=False)
    job = StyleJob.objects.create(owner=owner, style=single, input_image="in.png",
                                  result_image="out.jpg", status="succeeded")

    apps = migrate("0017_every_network_a_bank")
    Style = apps.get_model("stylize", "Style")
    StyleJob = apps.get_model("stylize", "StyleJob")
    retired = Style.objects.get(pk=single.pk)
    assert (retired.live_version, retired.published_at, retired.status) == (None, None, "draft")
    assert "retrain" in retired.status_reason
    assert (Style.objects.get(pk=slot.pk).live_version,
            Style.objects.get(pk=slot.pk).published_at) == (2, now)
    assert Style.objects.get(pk=draft.pk).status_reason == ""
    assert Style.objects.get(pk=own.pk).live_version == 2
    assert StyleJob.objects.get(pk=job.pk).result_image == "out.jpg"
