"""Read queries: what each kind of person may see."""

from django.db.models import QuerySet

from .models import Style, StyleJob


def style_list_offered() -> QuerySet[Style]:
    """Styles users may pick: public, trained and ready."""
    return Style.objects.filter(
        is_public=True, status=Style.Status.READY, live_version__isnull=False
    )


def job_list_for_owner(*, owner) -> QuerySet[StyleJob]:
    return StyleJob.objects.filter(owner=owner).select_related("style")
