"""Read queries: what each kind of person may see."""

import uuid
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import Preview, PreviewImage, Style, StyleJob


def style_list_offered() -> QuerySet[Style]:
    """Styles users may pick: public and published by staff, with a live model (also
    while a retrain runs). A draft (never published, or retrained since) is in no list,
    page or API answer and no job can use it, staff's own included: staff review it in
    the admin (``docs/design/security.md``, "Styles are reviewed before users see them").
    No user's own style is ever one of them (``own_style_list_for``)."""
    return Style.objects.filter(
        owner__isnull=True,
        is_public=True,
        published_at__isnull=False,
        status__in=[Style.Status.READY, Style.Status.TRAINING],
        live_version__isnull=False,
    )


def _own_usable(user) -> Q:
    """``user``'s own styles that can paint: learnt (a row for a live version), also while
    they are learnt again, and not deleted."""
    return Q(owner=user, removed_at__isnull=True, live_version__isnull=False,
             style_params__isnull=False, status__in=[Style.Status.READY, Style.Status.TRAINING])


def style_list_usable(user=None) -> QuerySet[Style]:
    """Styles ``user`` may paint with (jobs, previews, the upload page): the offered ones
    and, signed in, their own learnt ones. Nobody else's own style is ever in it."""
    if user is None or not user.is_authenticated:
        return style_list_offered()
    return Style.objects.filter(Q(pk__in=style_list_offered().values("pk")) | _own_usable(user))


def style_list_visible(user=None) -> QuerySet[Style]:
    """Styles the API shows ``user`` (``GET /api/v1/styles/``): the offered ones and,
    signed in, every own style of theirs not deleted, whatever its state (one being
    learnt shows its progress). Anyone else's own style is not in it: a 404."""
    if user is None or not user.is_authenticated:
        return style_list_offered()
    return Style.objects.filter(Q(pk__in=style_list_offered().values("pk"))
                                | Q(owner=user, removed_at__isnull=True))


def own_style_list_for(*, owner) -> QuerySet[Style]:
    """``owner``'s own styles, newest first, deleted ones left out."""
    return Style.objects.filter(owner=owner, removed_at__isnull=True).order_by("-created_at")


def style_list_mixable(user=None) -> list[Style]:
    """Offered styles that share a bank with at least one other style ``user`` may use
    (another offered one, or one of their own, which paints with its bank)."""
    slotted = list(style_list_offered().filter(bank_index__isnull=False))
    per_bank = Counter(style.model_name for style in slotted)
    if user is not None and user.is_authenticated:
        per_bank.update(Style.objects.filter(_own_usable(user))
                        .values_list("model_name", flat=True))
    return [style for style in slotted if per_bank[style.model_name] > 1]


def style_list_served() -> QuerySet[Style]:
    """Styles TF Serving must load: every one with a live version."""
    return Style.objects.filter(live_version__isnull=False).order_by("model_name")


def job_list_for_owner(*, owner) -> QuerySet[StyleJob]:
    return StyleJob.objects.filter(owner=owner).select_related("style", "blend_with")


def style_list_mix_partners(style: Style) -> list[Style]:
    """The offered styles ``style`` can be mixed with: the other slots of its bank (for
    an own style, those its bank's version has: it is painted with that version)."""
    if style.bank_name is None:
        return []
    partners = style_list_offered().filter(model_name=style.model_name,
                                           bank_index__isnull=False)
    if style.is_own:
        partners = partners.filter(bank_index__lt=style.bank_slots or 0)
    return list(partners.exclude(pk=style.pk).order_by("name"))


def job_for_share_token(token: str) -> StyleJob | None:
    """The succeeded job whose live share link has ``token``; None if revoked, expired,
    never made, or the job has no result (``services.sharing``)."""
    if not token:
        return None
    return (
        StyleJob.objects.select_related("style")
        .filter(share_token=token, share_expires_at__gt=timezone.now(),
                status=StyleJob.Status.SUCCEEDED)
        .exclude(result_image="")
        .first()
    )


def job_jobs_ahead(job: StyleJob) -> int:
    """How many jobs wait before ``job`` in its queue (0 unless it is queued)."""
    if job.status != StyleJob.Status.QUEUED or job.enqueued_at is None:
        return 0
    return StyleJob.objects.filter(
        status__in=StyleJob.IN_FLIGHT, cost_class=job.cost_class,
        enqueued_at__lt=job.enqueued_at,
    ).count()


def preview_list_for(*, user=None, session_preview_ids=()) -> QuerySet[Preview]:
    """The previews whoever asks may see, none past ``PREVIEW_RETENTION_SECONDS``: a
    user's own; without an account, those made in this browser session
    (``session_preview_ids``, ``stylize.preview_sessions``) that no account has claimed.
    Anyone else's is in neither (a 404)."""
    cutoff = timezone.now() - timedelta(seconds=settings.PREVIEW_RETENTION_SECONDS)
    previews = Preview.objects.filter(created_at__gt=cutoff).select_related("source_job")
    if user is not None and user.is_authenticated:
        return previews.filter(owner=user)
    ids = []
    for preview_id in session_preview_ids or ():
        try:
            ids.append(uuid.UUID(str(preview_id)))
        except ValueError:
            continue
    return previews.filter(owner__isnull=True, pk__in=ids)


def preview_images(preview: Preview) -> QuerySet[PreviewImage]:
    """The preview's paintings, one per style, in the styles' order (by name)."""
    return preview.images.select_related("style", "blend_with").order_by("style__name")
