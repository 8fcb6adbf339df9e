"""Read queries: what each kind of person may see."""

from django.db.models import QuerySet

from .models import Style, StyleJob


def style_list_offered() -> QuerySet[Style]:
    """Styles users may pick: public with a live model (also while a retrain runs)."""
    return Style.objects.filter(
        is_public=True,
        status__in=[Style.Status.READY, Style.Status.TRAINING],
        live_version__isnull=False,
    )


def style_list_served() -> QuerySet[Style]:
    """Styles TF Serving must load: every one with a live version."""
    return Style.objects.filter(live_version__isnull=False).order_by("model_name")


def job_list_for_owner(*, owner) -> QuerySet[StyleJob]:
    return StyleJob.objects.filter(owner=owner).select_related("style")
