"""A job's life: checked and created from an upload, then guarded state changes.

Transitions are guarded updates (``UPDATE … WHERE status = <expected>``), so a
task delivered twice, or a sweep racing a worker, changes nothing the second time.
"""

import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from stylize import image_headers
from stylize.models import DEFAULT_STROKE, Stroke, Style, StyleJob
from stylize.selectors import style_list_mix_partners, style_list_offered
from stylize.validators import ALLOWED_FORMATS

from . import queueing

#: A blend's share when a second style is given without one: an even mix.
DEFAULT_BLEND = 0.5


@dataclass(frozen=True)
class JobMix:
    """How a job paints, once checked: the second style (or None), its share, the strokes."""

    blend_with: Style | None
    blend: float
    stroke: str


def _mixable_with_text(style: Style) -> str:
    partners = style_list_mix_partners(style)
    if not partners:
        return _("%(style)s cannot be mixed with any other style.") % {"style": style.name}
    names = _(", ").join(f"{partner.name} ({partner.slug})" for partner in partners)
    return _("%(style)s can be mixed with: %(names)s.") % {"style": style.name, "names": names}


def _slots_mix(slot, other) -> bool:
    """Whether two styles' ``paint_slot``s (None: nothing to paint with) mix."""
    return slot is not None and other is not None and slot.mixes_with(other)


def job_mix_clean(*, style: Style, blend_with=None, blend=None, stroke=None) -> JobMix:
    """The one check of a job's mix and strokes, for the API, the upload page, the CLI
    and ``job_create``; raises ``ValidationError`` keyed by ``blend_with``, ``blend``
    and ``stroke`` with messages fit to show a user.

    ``blend_with`` is a style's slug or a ``Style``: it must be an offered style (not a
    draft, private or unknown one, nor anyone's own), not ``style`` itself, and a slot of
    the same bank (one network) as ``style`` (for a user's own ``style``, a slot of the
    bank's version it paints with). ``blend`` is its share of the mix, from 0 to 1; left
    out (None) it is an even mix (``DEFAULT_BLEND``) with a second style and 0 without.
    A share above 0 without a second style is refused. ``stroke`` is one of ``Stroke``
    (None: ``DEFAULT_STROKE``).
    """
    errors: dict[str, list[str]] = {}
    if stroke is None:
        stroke = DEFAULT_STROKE
    if stroke not in Stroke.values:
        errors["stroke"] = [
            _("Brush strokes must be one of %(choices)s, not “%(stroke)s”.")
            % {"choices": ", ".join(Stroke.values), "stroke": stroke}
        ]
    if blend is not None:
        try:
            blend = float(blend)
        except (TypeError, ValueError):
            blend = math.nan
        if not (math.isfinite(blend) and 0.0 <= blend <= 1.0):
            errors["blend"] = [_("The mix must be a number from 0 to 1.")]
    if blend_with in ("", None):
        blend_with = None
        if blend is not None and "blend" not in errors and blend > 0.0:
            errors["blend"] = [
                _("A mix needs a second style: choose the style to mix in, or leave the mix "
                  "out.")
            ]
    else:
        slug = blend_with.slug if isinstance(blend_with, Style) else str(blend_with)
        offered = style_list_offered().filter(slug=slug).first()
        if offered is None:
            errors["blend_with"] = [
                _("There is no style “%(slug)s” to mix in. %(mixable)s")
                % {"slug": slug, "mixable": _mixable_with_text(style)}
            ]
        elif offered.pk == style.pk:
            errors["blend_with"] = [
                _("Choose a second style other than %(style)s to mix in. %(mixable)s")
                % {"style": style.name, "mixable": _mixable_with_text(style)}
            ]
        elif not _slots_mix(style.paint_slot, offered.paint_slot):
            errors["blend_with"] = [
                _("%(style)s and %(other)s cannot be mixed: only styles that share one "
                  "network can. %(mixable)s")
                % {"style": style.name, "other": offered.name,
                   "mixable": _mixable_with_text(style)}
            ]
        blend_with = offered
    if errors:
        raise ValidationError(errors)
    if blend is None:
        blend = DEFAULT_BLEND if blend_with is not None else 0.0
    return JobMix(blend_with=blend_with, blend=blend, stroke=str(stroke))


#: What a user chooses for a job, as the upload form and the API's serializer name it
#: (``image`` is ``job_create``'s ``input_image``).
JOB_CHOICES = ("style", "strength", "preserve_colors", "max_side", "blend_with", "blend",
               "stroke")


def job_create_from(*, owner, choices: dict) -> StyleJob:
    """``job_create`` from a validated upload form's or serializer's data."""
    return job_create(owner=owner, input_image=choices["image"],
                      callback_url=choices.get("callback_url") or "",
                      **{name: choices[name] for name in JOB_CHOICES})


class JobLimitExceeded(Exception):
    """The owner already has ``limit`` jobs queued or running; nothing was created."""

    def __init__(self, *, limit: int, in_flight: int):
        self.limit, self.in_flight = limit, in_flight
        have = ngettext("You already have %(count)d job waiting or being painted",
                        "You already have %(count)d jobs waiting or being painted",
                        in_flight) % {"count": in_flight}
        most = ngettext("at most %(count)d job can be on the way at once",
                        "at most %(count)d jobs can be on the way at once",
                        limit) % {"count": limit}
        super().__init__(
            _("%(have)s, and %(most)s. Please wait until one has finished, then upload "
              "again.") % {"have": have, "most": most})


def job_cost_class(*, width: int, height: int, max_side: int) -> str:
    """``StyleJob.CostClass`` of a photo of ``width`` × ``height`` (either way up) painted at
    ``max_side``: small when the photo as painted (shrunk to ``max_side``, never
    enlarged) has at most ``JOB_SMALL_MAX_PIXELS`` pixels, large otherwise.

    A job's work is governed by those pixels: the guided upsampler, the post-processing
    and the encoding run at that size (the network itself at the stroke's working size
    or smaller).
    """
    scale = min(1.0, max_side / max(width, height, 1))
    pixels = round(width * scale) * round(height * scale)
    if pixels > settings.JOB_SMALL_MAX_PIXELS:
        return StyleJob.CostClass.LARGE
    return StyleJob.CostClass.SMALL


def _job_limit_check(owner) -> None:
    """Raise ``JobLimitExceeded`` if ``owner`` is at ``JOB_MAX_IN_FLIGHT_PER_USER``.

    Inside the caller's transaction, with the owner's row locked (Postgres: SELECT …
    FOR UPDATE; SQLite: the transaction already holds the write lock), so two uploads
    at once cannot both take the last place.
    """
    limit = settings.JOB_MAX_IN_FLIGHT_PER_USER
    if limit <= 0:
        return
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
    in_flight = StyleJob.objects.filter(owner=owner, status__in=StyleJob.IN_FLIGHT).count()
    if in_flight >= limit:
        raise JobLimitExceeded(limit=limit, in_flight=in_flight)


@transaction.atomic
def job_create(
    *,
    owner,
    style: Style,
    input_image,
    strength: float = 1.0,
    preserve_colors: bool = False,
    max_side: int | None = None,
    blend_with: Style | None = None,
    blend: float | None = None,
    stroke: str | None = None,
    callback_url: str = "",
) -> StyleJob:
    """Store the photo, create the job and put it on the queue of its cost class
    (``job_cost_class``) once the row is committed.

    Raises ``JobLimitExceeded`` (before anything is stored) when the owner already has
    ``JOB_MAX_IN_FLIGHT_PER_USER`` jobs queued or running. ``blend_with``, ``blend`` and
    ``stroke`` go through ``job_mix_clean`` (``blend`` None: an even mix with a second
    style, none without). ``callback_url`` is a program's webhook, already checked by
    ``webhooks.callback_url_clean`` (the API's serializer does; delivery checks it again).
    """
    if style.is_own and (style.owner_id != owner.pk or style.removed_at is not None):
        # Callers offer only the owner's own styles; this holds whoever calls.
        raise ValidationError({"style": [_("That style is not available. Please pick "
                                           "another.")]})
    _job_limit_check(owner)
    mix = job_mix_clean(style=style, blend_with=blend_with, blend=blend, stroke=stroke)
    job = StyleJob(
        owner=owner,
        style=style,
        strength=strength,
        preserve_colors=preserve_colors,
        blend_with=mix.blend_with,
        blend=mix.blend,
        stroke=mix.stroke,
        callback_url=callback_url,
        enqueued_at=timezone.now(),
    )
    if max_side is not None:
        job.max_side = max_side
    job.input_filename = _display_filename(input_image.name)
    job.full_clean(exclude=["input_image"])
    # The stored photo keeps no metadata (GPS, camera, artist …); it gets a random
    # name in the private storage (StyleJob.input_image).
    input_image.seek(0)
    # A walk over the bytes, no decode (docs/design/uploads.md); the worker stands the
    # photo upright and drops the orientation that is left when it first reads it.
    data, image_format = image_headers.photo_strip_metadata(input_image.read())
    extension = ALLOWED_FORMATS[image_format][1]
    job.input_image.save(f"photo.{extension}", ContentFile(data), save=False)
    # The header only. The size as stored: a quarter turn left to the worker changes
    # no pixel count, so not the cost class either.
    header = image_headers.photo_inspect(data)
    job.cost_class = job_cost_class(width=header.width, height=header.height,
                                    max_side=job.max_side)
    # Upright (EXIF orientations 5 to 8 turn it a quarter): what the job page tells.
    turned = header.orientation in (5, 6, 7, 8)
    job.photo_width, job.photo_height = ((header.height, header.width) if turned
                                         else (header.width, header.height))
    job.save()
    queueing.job_run_send(job_id=job.pk, cost_class=job.cost_class)
    return job


def _display_filename(name: str | None) -> str:
    """The uploader's file name as shown back to them: no folders, no control
    characters, at most 100 characters; never used to store anything."""
    name = Path(str(name or "")).name
    name = "".join(char for char in name if char.isprintable()).strip()
    if len(name) > 100:
        stem, suffix = Path(name).stem, Path(name).suffix[:10]
        name = stem[: 100 - len(suffix)] + suffix
    return name or "photo"


@transaction.atomic
def job_delete(*, job: StyleJob) -> None:
    """Delete the job, then its files (``StyleJob.stored_files``: the photo, the result
    and its copies in other formats) once that is committed."""
    files = [(f.storage, f.name) for f in job.stored_files]
    job.delete()
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in files])


def jobs_delete_expired(*, now=None) -> int:
    """Delete every job made more than ``JOB_RETENTION_DAYS`` ago, files included.

    A job still queued or running is left to finish (the sweep ends it within its
    attempts); it goes at the next run after that. Returns how many were deleted.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.JOB_RETENTION_DAYS)
    expired = StyleJob.objects.filter(created_at__lt=cutoff, status__in=StyleJob.FINISHED)
    deleted = 0
    for job in expired.iterator():
        job_delete(job=job)
        deleted += 1
    return deleted


def job_start(*, job_id) -> bool:
    """queued → running, counting the attempt. False if the job was not queued."""
    return bool(
        StyleJob.objects.filter(pk=job_id, status=StyleJob.Status.QUEUED).update(
            status=StyleJob.Status.RUNNING,
            stage=StyleJob.Stage.PAINTING,
            progress=0.0,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
    )


def job_progress(*, job_id, progress: float, stage: str = StyleJob.Stage.PAINTING) -> bool:
    """Record how far a running job is: ``progress`` (0 to 1, clamped) of its painting
    done, at ``stage``. False (nothing written) if the job is not running."""
    return bool(StyleJob.objects.filter(pk=job_id, status=StyleJob.Status.RUNNING).update(
        progress=min(max(float(progress), 0.0), 1.0), stage=stage
    ))


def job_requeue(*, job_id) -> bool:
    """running → queued, for a retry. False if it was not running.

    Only the row: the retry's message is the task's own (``Task.retry`` in
    ``stylize.tasks.job_run``), sent once this is committed.
    """
    return bool(StyleJob.objects.filter(pk=job_id, status=StyleJob.Status.RUNNING).update(
        status=StyleJob.Status.QUEUED, stage=StyleJob.Stage.QUEUED, progress=0.0,
        enqueued_at=timezone.now()
    ))


@transaction.atomic
def job_succeed(*, job_id, result_name: str, result_file) -> bool:
    """running → succeeded with the result stored, the owner emailed and the job's
    webhook sent.

    False (and nothing stored) if the job was not running.
    """
    job = StyleJob.objects.select_for_update().get(pk=job_id)
    if job.status != StyleJob.Status.RUNNING:
        return False
    job.result_image.save(result_name, result_file, save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.stage, job.progress = StyleJob.Stage.DONE, 1.0
    job.error = ""
    job.finished_at = timezone.now()
    job.save(update_fields=["result_image", "status", "stage", "progress", "error",
                            "finished_at"])
    queueing.job_email_send(job_id=job_id)
    if job.callback_url:
        queueing.job_webhook_send(job_id=job_id)
    return True


@transaction.atomic
def job_fail(*, job_id, error: str) -> bool:
    """queued or running → failed with a readable reason, the owner told and the job's
    webhook sent.

    False if the job had already finished.
    """
    failed = (
        StyleJob.objects.filter(pk=job_id)
        .exclude(status__in=StyleJob.FINISHED)
        .update(
            status=StyleJob.Status.FAILED,
            stage=StyleJob.Stage.DONE,
            error=error or "The job failed for an unknown reason.",
            finished_at=timezone.now(),
        )
    )
    if failed:
        queueing.job_email_send(job_id=job_id)
        if StyleJob.objects.filter(pk=job_id).exclude(callback_url="").exists():
            queueing.job_webhook_send(job_id=job_id)
    return bool(failed)


def job_mark_emailed(*, job_id) -> bool:
    return bool(
        StyleJob.objects.filter(pk=job_id, emailed_at__isnull=True).update(
            emailed_at=timezone.now()
        )
    )


def jobs_requeue_stuck(*, now=None) -> dict[str, int]:
    """Put back on the queue every job left queued or running past its deadline.

    A job whose message was lost (Redis flushed, a worker killed mid-job) would wait
    forever; after its last attempt it fails with a reason instead. Finished jobs
    whose email never went out get it sent again, and so do those whose webhook was
    never tried.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "emails": 0, "webhooks": 0}
    stale_running = StyleJob.objects.filter(
        status=StyleJob.Status.RUNNING,
        started_at__lt=now - timedelta(seconds=settings.JOB_RUNNING_TIMEOUT),
    )
    stale_queued = StyleJob.objects.filter(
        status=StyleJob.Status.QUEUED,
        enqueued_at__lt=now - timedelta(seconds=settings.JOB_QUEUED_TIMEOUT),
    )
    for status, stale in ((StyleJob.Status.RUNNING, stale_running),
                          (StyleJob.Status.QUEUED, stale_queued)):
        for job_id, attempts, cost_class in stale.values_list("pk", "attempts", "cost_class"):
            if attempts >= settings.JOB_MAX_ATTEMPTS:
                counts["failed"] += job_fail(
                    job_id=job_id,
                    error=f"The job did not finish after {attempts} attempts. "
                          "Please try again later.",
                )
            else:
                counts["requeued"] += _job_requeue_stale(
                    job_id=job_id, status=status, now=now, cost_class=cost_class
                )
    unsent = StyleJob.objects.filter(
        status__in=StyleJob.FINISHED,
        emailed_at__isnull=True,
        finished_at__lt=now - timedelta(seconds=settings.JOB_QUEUED_TIMEOUT),
        finished_at__gt=now - timedelta(days=1),
    ).exclude(owner__email="").exclude(owner__prisma_profile__email_results=False).exclude(
        owner__prisma_profile__email_confirmed=False  # nothing but its link until confirmed
    )
    for job_id in unsent.values_list("pk", flat=True):
        queueing.job_email_send(job_id=job_id)
        counts["emails"] += 1
    untried = StyleJob.objects.filter(
        status__in=StyleJob.FINISHED,
        callback_delivered_at__isnull=True,
        callback_attempts=0,
        finished_at__lt=now - timedelta(seconds=settings.JOB_QUEUED_TIMEOUT),
        finished_at__gt=now - timedelta(days=1),
    ).exclude(callback_url="")
    for job_id in untried.values_list("pk", flat=True):
        queueing.job_webhook_send(job_id=job_id)
        counts["webhooks"] += 1
    return counts


@transaction.atomic
def _job_requeue_stale(*, job_id, status, now, cost_class) -> bool:
    requeued = StyleJob.objects.filter(pk=job_id, status=status).update(
        status=StyleJob.Status.QUEUED, stage=StyleJob.Stage.QUEUED, progress=0.0,
        enqueued_at=now
    )
    if requeued:
        queueing.job_run_send(job_id=job_id, cost_class=cost_class)
    return bool(requeued)
