import pytest
from django.db import IntegrityError, transaction

from stylize.models import Style, StyleJob
from tests.factories import StyleFactory, StyleJobFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_outside_0_1_is_refused_by_the_database(strength):
    with pytest.raises(IntegrityError), transaction.atomic():
        StyleJobFactory(strength=strength)


@pytest.mark.parametrize("max_side", [10, 5000])
def test_max_side_outside_range_is_refused(max_side):
    with pytest.raises(IntegrityError), transaction.atomic():
        StyleJobFactory(max_side=max_side)


def test_failed_job_needs_a_reason():
    with pytest.raises(IntegrityError), transaction.atomic():
        StyleJobFactory(status=StyleJob.Status.FAILED, error="")


def test_unfinished_job_has_no_finish_time():
    from django.utils import timezone

    with pytest.raises(IntegrityError), transaction.atomic():
        StyleJobFactory(status=StyleJob.Status.RUNNING, finished_at=timezone.now())


def test_ready_style_needs_a_live_version():
    with pytest.raises(IntegrityError), transaction.atomic():
        StyleFactory(status=Style.Status.READY, live_version=None)


def test_job_defaults():
    job = StyleJobFactory()
    assert job.status == StyleJob.Status.QUEUED
    assert job.strength == 1.0 and job.preserve_colors is False and job.max_side == 1024
    assert job.attempts == 0 and not job.is_finished
    assert len(str(job.pk)) == 36  # a UUID, not a guessable integer


@pytest.mark.django_db
def test_a_style_made_without_a_model_name_takes_its_slug():
    from django.core.files.base import ContentFile

    style = Style(name="By Hand", slug="by-hand")
    style.painting.save("p.png", ContentFile(b"x"), save=False)
    style.save()
    assert Style.objects.get(pk=style.pk).model_name == "by-hand"
    style.model_name = ""
    style.save(update_fields=["model_name"])
    assert Style.objects.get(pk=style.pk).model_name == "by-hand"


@pytest.mark.django_db
def test_the_database_refuses_a_style_without_a_model_name():
    from django.db import IntegrityError, transaction

    style = StyleFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Style.objects.filter(pk=style.pk).update(model_name="")
