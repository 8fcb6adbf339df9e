"""Share links: a result anyone with the link can see, until it is revoked or expires.

A link is ``/s/<token>/`` with ``token`` 32 random URL-safe characters (192 bits from
``secrets``), never the job's id. It shows the result image and the style's name and
nothing else of the owner's: not the photo, not the job, not who made it. It lasts
``SHARE_LINK_DAYS`` (default 30) from when it was made; sharing again while a link is
live gives the same link with its time renewed, sharing after a revoke a new one.
Revoked or expired links are 404s (``selectors.job_for_share_token``). Anyone may open
a link, so the pages count each client address's requests (``ShareLinkThrottle``), and
the result's PNG and WebP are encoded once and kept (``job_files.job_result_copy``).
The share page names a small rendition of the result (``share_preview``) as its
``og:image`` at ``/s/<token>/preview.jpg``, under the same checks and throttle, so a
link pasted into a chat shows a card of the result (docs/design/job-page.md).
"""

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from PIL import Image
from rest_framework.throttling import SimpleRateThrottle

from prisma_site.middleware import client_ip
from stylize.imaging import encoding
from stylize.models import StyleJob

SHARE_TOKEN_BYTES = 24  # 32 URL-safe characters


class NothingToShare(Exception):
    """The job has no result (yet, or it failed): there is nothing a link could show."""

    def __init__(self):
        super().__init__(_("Only a finished result can be shared: this job has none yet."))


@transaction.atomic
def job_share(*, job: StyleJob, now: datetime | None = None) -> StyleJob:
    """Make (or renew) the job's share link; raises ``NothingToShare`` without a result."""
    job = StyleJob.objects.select_for_update().get(pk=job.pk)
    if job.status != StyleJob.Status.SUCCEEDED or not job.result_image:
        raise NothingToShare()
    now = now or timezone.now()
    if not job_share_is_live(job, now=now):
        job.share_token = secrets.token_urlsafe(SHARE_TOKEN_BYTES)
    job.share_expires_at = now + timedelta(days=settings.SHARE_LINK_DAYS)
    job.save(update_fields=["share_token", "share_expires_at"])
    return job


def job_unshare(*, job: StyleJob) -> bool:
    """Revoke the job's share link at once. False if it had none."""
    return bool(StyleJob.objects.filter(pk=job.pk, share_token__isnull=False).update(
        share_token=None, share_expires_at=None))


def job_share_is_live(job: StyleJob, *, now: datetime | None = None) -> bool:
    """Whether the job's share link opens now."""
    return bool(job.share_token and job.share_expires_at
                and job.share_expires_at > (now or timezone.now()))


def job_share_url(job: StyleJob) -> str | None:
    """The live share link as an absolute URL (from ``SITE_URL``), or None."""
    if not job_share_is_live(job):
        return None
    return settings.SITE_URL + reverse("stylize:shared", args=[job.share_token])


#: The longer side (px) of a share link's preview image (og:image): large enough for a
#: chat app's card, a fraction of the result's bytes.
SHARE_PREVIEW_SIDE = 800


def share_preview_size(job: StyleJob) -> tuple[int, int] | None:
    """The size of ``share_preview``'s image, from the result's header (nothing decoded);
    None if the result cannot be read."""
    try:
        with job.result_image.open("rb") as result, Image.open(result) as image:
            size = image.size
    except (OSError, ValueError):
        return None
    return encoding.thumbnail_size(size, SHARE_PREVIEW_SIDE)


def share_preview(job: StyleJob) -> bytes:
    """A small JPEG of the job's result (``SHARE_PREVIEW_SIDE``, no metadata): the
    picture a chat app shows for a pasted share link (the share page's og:image). Only
    ever the result, never the photo; the caller has checked the link
    (``selectors.job_for_share_token``: live, not revoked)."""
    with job.result_image.open("rb") as result:
        return encoding.thumbnail_jpeg(result, max_side=SHARE_PREVIEW_SIDE)


class ShareLinkThrottle(SimpleRateThrottle):
    """Requests for share links' pages and images from one client address
    (``client_ip``), whatever the token (made-up ones too): ``SHARE_LINK_RATE``, read
    when asked; none ("") is no limit. Counted in the default cache, like the other
    throttles (``CACHE_URL``: shared by the web processes)."""

    scope = "share_link"

    def get_rate(self):
        return settings.SHARE_LINK_RATE or None

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}
