"""Previews: a photo painted small in every offered style before any job is made, and
jobs made from a preview's or an earlier job's photo without uploading it again.

A preview (``Preview``) holds the photo (an upload, or an existing job's, which it
does not copy) and one painting per offered style (``PreviewImage``), each ``queued``,
``done`` or ``failed``. ``preview_create`` stores the photo and sends one task to the
previews queue (``PREVIEW_QUEUE``, a worker of its own, so a preview never waits
behind a job); ``preview_paint`` reads the photo once at ``PREVIEW_SIDE`` px, keeps that
small copy for later re-paints, and paints every queued painting with
``stylizing.photo_stylize_many``: the styles of one bank in one batched model call.
``preview_image_repaint`` asks for one style again at another strength or mix (a new
*revision*: a paint finished for an older one is dropped). Nothing is kept beyond
``PREVIEW_RETENTION_SECONDS`` (``previews_delete_expired``, beat); a preview's files
leave with its row however it goes (``signals.preview_files_delete``).

Who may see a preview (its owner; without an account, the browser session that made
it) is ``selectors.preview_list_for``; ``previews_claim`` gives a visitor's previews to
the account they log into. Design and measurements: docs/design/previews.md.
"""

import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from PIL import UnidentifiedImageError

from stylize import image_headers
from stylize.imaging.encoding import encode_image
from stylize.imaging.loading import UnreadablePhoto, load_photo
from stylize.models import (
    Preview,
    PreviewImage,
    StyleJob,
    preview_file_name,
    private_storage,
)
from stylize.selectors import style_list_offered, style_list_usable
from stylize.validators import ALLOWED_FORMATS

from . import queueing
from .job_files import job_photo_replace, private_file_replace, private_files_sweep
from .jobs import JOB_CHOICES, job_create, job_mix_clean
from .stylizing import UNEXPECTED_ERROR, PaintRequest, photo_stylize_many, stored_photo_load

logger = logging.getLogger(__name__)

#: The private storage's folder of every preview file (``models.preview_file_name``).
PREVIEW_FOLDER = "previews"
#: JPEG quality of the paintings: 320 px at 85 is 15–30 KB, encoded in a few ms.
PREVIEW_JPEG_QUALITY = 85
#: What a job made from an earlier job takes from it unless told otherwise: how the
#: photo is treated (its size, strokes and colours), not the style or strength.
JOB_PHOTO_CHOICES = ("max_side", "stroke", "preserve_colors")


def preview_expires_at(preview: Preview) -> datetime:
    """When the preview, its photo and its paintings will be deleted."""
    return preview.created_at + timedelta(seconds=settings.PREVIEW_RETENTION_SECONDS)


@transaction.atomic
def preview_create(*, owner=None, photo=None, source_job: StyleJob | None = None,
                   language: str = "") -> Preview:
    """A preview of ``photo`` (an upload the validator passed; stored without metadata,
    as a job's is) or of ``source_job``'s photo (not copied), with one queued painting
    per style ``owner`` may use (``selectors.style_list_usable``: the offered ones and
    their own learnt ones), painted by the previews worker once this is committed.

    ``owner`` None: a visitor without an account (the caller keeps the preview's id in
    their session). ``language``: the one their error messages are written in. Exactly
    one of ``photo`` and ``source_job`` (a job with its photo) is given, else
    ``ValueError``.
    """
    if (photo is None) == (source_job is None):
        raise ValueError("a preview is of an uploaded photo or of a job's, not both or none")
    preview = Preview(owner=owner, source_job=source_job, language=language or "")
    if photo is not None:
        photo.seek(0)
        # A walk over the bytes, no decode (docs/design/uploads.md), as job_create does.
        data, image_format = image_headers.photo_strip_metadata(photo.read())
        preview.photo.save(f"photo.{ALLOWED_FORMATS[image_format][1]}", ContentFile(data),
                           save=False)
        preview.photo_filename = Path(str(photo.name or "")).name[-100:]
    elif not source_job.input_image:
        raise ValueError(f"job {source_job.pk} has no photo")
    preview.save()
    PreviewImage.objects.bulk_create(  # the owner's own learnt styles among them
        [PreviewImage(preview=preview, style=style) for style in style_list_usable(owner)])
    queueing.preview_paint_send(preview_id=preview.pk)
    return preview


def preview_image_repaint(*, image: PreviewImage, strength: float = 1.0,
                          blend_with=None, blend: float | None = None,
                          preserve_colors: bool = False) -> PreviewImage:
    """Ask for ``image``'s style again at ``strength`` (0–1), mixed with ``blend_with``
    (an offered style of the same bank, or its slug) at share ``blend``, colours kept
    or not; the previews worker paints it once this is committed. The same settings as
    it has, done or on the way, change nothing.

    Raises ``ValidationError`` keyed by ``strength``, ``blend_with`` or ``blend`` with a
    message fit to show (the mix: ``jobs.job_mix_clean``, the jobs' one rule). Returns
    the row as it is now.
    """
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        strength = float("nan")
    errors = {}
    if not 0.0 <= strength <= 1.0:  # NaN too
        errors["strength"] = [_("Strength must be a number from 0 to 1.")]
    try:
        mix = job_mix_clean(style=image.style, blend_with=blend_with, blend=blend)
    except ValidationError as exc:
        errors.update({key: value for key, value in exc.message_dict.items()
                       if key != "stroke"})
    if errors:
        raise ValidationError(errors)
    wanted = {"strength": strength, "blend_with_id": getattr(mix.blend_with, "pk", None),
              "blend": mix.blend, "preserve_colors": bool(preserve_colors)}
    if image.status != PreviewImage.Status.FAILED and all(
            getattr(image, name) == value for name, value in wanted.items()):
        return image
    with transaction.atomic():
        PreviewImage.objects.filter(pk=image.pk).update(
            **wanted, revision=F("revision") + 1, status=PreviewImage.Status.QUEUED,
            error="", updated_at=timezone.now())
        queueing.preview_paint_send(preview_id=image.preview_id)
    image.refresh_from_db()
    return image


def preview_paint(*, preview_id) -> int:
    """Paint every queued painting of the preview, each at the settings and revision
    it has when this starts; returns how many were stored.

    The photo is read once (``stylizing.stored_photo_load`` at ``PREVIEW_SIDE``: stood
    upright, a HEIF or AVIF photo rewritten as JPEG in place of the stored one) and
    kept as the preview's ``working_photo`` for the next re-paints. A painting is
    stored only while its row still asks for that revision and is queued (a guarded
    update): one re-asked meanwhile, painted by another task or deleted keeps nothing of
    this one. A photo that cannot be read fails every queued painting with the reason;
    a style whose model fails, only its own. Nothing (0) for a preview deleted meanwhile.
    """
    preview = Preview.objects.select_related("source_job").filter(pk=preview_id).first()
    if preview is None:
        return 0
    queued = list(preview.images.filter(status=PreviewImage.Status.QUEUED)
                  .select_related("style", "blend_with").order_by("style__name"))
    if not queued:
        return 0
    stored = 0
    with translation.override(preview.language or settings.LANGUAGE_CODE):
        try:
            photo = _preview_photo_load(preview)
        except UnreadablePhoto as exc:  # its message is for the person (PhotoTooLarge too)
            _preview_images_fail(queued, error=str(exc))
            return 0
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            logger.warning("Preview %s: unreadable photo: %s", preview_id, exc)
            _preview_images_fail(queued, error=str(UnreadablePhoto()))
            return 0

        def settle(pairs) -> None:  # after each model call: its paintings, one commit
            nonlocal stored
            for index, result in pairs:
                if isinstance(result, Exception):
                    _preview_images_fail([queued[index]], error=str(result))
            stored += _preview_images_store([
                (queued[index], encode_image(result, format="JPEG",
                                             quality=PREVIEW_JPEG_QUALITY))
                for index, result in pairs if not isinstance(result, Exception)])

        requests = [PaintRequest(style=row.style, strength=row.strength,
                                 preserve_colors=row.preserve_colors,
                                 blend_with=row.blend_with, blend=row.blend)
                    for row in queued]
        try:
            photo_stylize_many(photo=photo, requests=requests, on_call=settle)
        except SoftTimeLimitExceeded:
            _preview_images_fail(queued, error=_("Painting the previews took too long."))
        except Exception:
            logger.exception("Preview %s failed unexpectedly", preview_id)
            _preview_images_fail(queued, error=str(UNEXPECTED_ERROR))
    return stored


def _preview_photo_load(preview: Preview) -> np.ndarray:
    """The preview's photo, upright, at ``PREVIEW_SIDE``: its working copy when it has
    one, else read from the stored photo (and that working copy stored)."""
    if preview.working_photo:
        with preview.working_photo.open("rb") as stored:
            return load_photo(stored, max_side=settings.PREVIEW_SIDE, formats=("PNG",))
    field = preview.photo if preview.photo else preview.source_job.input_image
    with field.open("rb") as stored:
        data = stored.read()
    if preview.photo:
        def upright(data, image_format):
            _preview_photo_replace(preview, data, image_format)
    else:
        def upright(data, image_format):
            job_photo_replace(preview.source_job, data, image_format)
    photo = stored_photo_load(data, max_side=settings.PREVIEW_SIDE,
                              max_decode_bytes=settings.STYLIZE_DECODE_MAX_BYTES,
                              on_upright=upright)
    storage = private_storage()
    name = storage.save(preview_file_name(preview, "working.png"),
                        ContentFile(encode_image(photo, format="PNG")))
    if not Preview.objects.filter(pk=preview.pk, working_photo="").update(working_photo=name):
        storage.delete(name)  # another task made one first, or the preview is gone
    return photo


def _preview_photo_replace(preview: Preview, data: bytes, image_format: str) -> None:
    """The preview's photo replaced by ``data`` (the worker's upright copy), as
    ``job_files.job_photo_replace`` does for a job's."""
    private_file_replace(
        instance=preview, field_name="photo", storage=private_storage(),
        name=preview_file_name(preview, f"photo.{ALLOWED_FORMATS[image_format][1]}"),
        data=data)


def _preview_images_store(paintings: list[tuple[PreviewImage, bytes]]) -> int:
    """Store each painting (JPEG bytes) as its row's revision, if the row still asks for
    it (else the file goes again), in one transaction; the paintings they replace go
    once committed. Returns how many were stored."""
    if not paintings:
        return 0
    storage = private_storage()
    saved = [(image, storage.save(preview_file_name(image, "preview.jpg"), ContentFile(data)))
             for image, data in paintings]
    stored = 0
    with transaction.atomic():
        now = timezone.now()
        for image, name in saved:
            if not PreviewImage.objects.filter(
                pk=image.pk, revision=image.revision, status=PreviewImage.Status.QUEUED,
            ).update(status=PreviewImage.Status.DONE, image=name, error="", updated_at=now):
                storage.delete(name)  # re-asked meanwhile, painted by another task, or gone
                continue
            stored += 1
            if image.image.name:
                old = image.image.name
                transaction.on_commit(lambda old=old: storage.delete(old))
    return stored


def _preview_images_fail(images: list[PreviewImage], *, error: str) -> None:
    """Each of ``images`` failed with ``error``, if it still asks for its revision."""
    for image in images:
        PreviewImage.objects.filter(
            pk=image.pk, revision=image.revision, status=PreviewImage.Status.QUEUED,
        ).update(status=PreviewImage.Status.FAILED, error=error or str(UNEXPECTED_ERROR),
                 updated_at=timezone.now())


def previews_warm() -> int:
    """Load every offered style's model in this process (the previews worker, as it
    starts: ``prisma_site/celery.py``) by painting a grey picture at ``PREVIEW_SIDE`` in
    each, so the first grid does not wait for them. Returns how many painted."""
    side = settings.PREVIEW_SIDE
    picture = np.full((side * 3 // 4, side, 3), 128, dtype=np.uint8)
    requests = [PaintRequest(style=style) for style in style_list_offered()]
    results = photo_stylize_many(photo=picture, requests=requests)
    return sum(not isinstance(result, Exception) for result in results)


def previews_claim(*, user, preview_ids) -> int:
    """Give the previews made without an account in a browser (``preview_ids``, its
    session's) to ``user``, who has just logged in or signed up there; previews already
    someone's, or expired, stay as they are. Returns how many were given."""
    ids = [str(preview_id) for preview_id in preview_ids or ()]
    if not ids:
        return 0
    cutoff = timezone.now() - timedelta(seconds=settings.PREVIEW_RETENTION_SECONDS)
    return Preview.objects.filter(pk__in=ids, owner__isnull=True,
                                  created_at__gt=cutoff).update(owner=user)


def preview_delete(*, preview: Preview) -> None:
    """Delete the preview; its files go once that is committed
    (``signals.preview_files_delete``)."""
    preview.delete()


def preview_files_delete(files) -> None:
    """Once committed, delete ``files`` (field files of a preview or its paintings)."""
    names = [(field.storage, field.name) for field in files if field]
    if names:
        transaction.on_commit(lambda: [storage.delete(name) for storage, name in names])


def previews_delete_expired(*, now=None) -> dict[str, int]:
    """Delete every preview made more than ``PREVIEW_RETENTION_SECONDS`` ago, with its
    files, then any file of the previews folder older than that which no preview names
    (a crash between a file and its row). Returns the counts."""
    now = now or timezone.now()
    retention = timedelta(seconds=settings.PREVIEW_RETENTION_SECONDS)
    deleted = 0
    named = set()  # files of the rows deleted here go with them, once committed
    for preview in Preview.objects.filter(created_at__lt=now - retention).iterator():
        named |= {field.name for field in preview.stored_files}
        named |= set(preview.images.exclude(image="").values_list("image", flat=True))
        with transaction.atomic():
            preview_delete(preview=preview)
        deleted += 1
    for field_name in ("photo", "working_photo"):
        named |= set(Preview.objects.exclude(**{field_name: ""})
                     .values_list(field_name, flat=True))
    named |= set(PreviewImage.objects.exclude(image="").values_list("image", flat=True))
    files = private_files_sweep(folders=(PREVIEW_FOLDER,), named=named, min_age=retention,
                                now=now, kind="preview file")
    return {"previews": deleted, "files": files}


def _preview_photo_file(preview: Preview) -> tuple[bytes, str]:
    """The bytes of the photo a preview paints, and its name on the uploader's side."""
    if preview.photo:
        field, name = preview.photo, preview.photo_filename
    else:
        field, name = preview.source_job.input_image, preview.source_job.input_filename
    with field.open("rb") as stored:
        return stored.read(), name or Path(field.name).name


def job_create_from_preview(*, owner, preview: Preview, choices: dict) -> StyleJob:
    """A job (``jobs.job_create``, its limits included) of the preview's photo, not
    uploaded again, with ``choices`` (``jobs.JOB_CHOICES``; those left out have their
    defaults) and any ``callback_url``. The preview stays until it expires."""
    data, name = _preview_photo_file(preview)
    return job_create(owner=owner, input_image=ContentFile(data, name=name),
                      callback_url=choices.get("callback_url") or "",
                      **{key: choices[key] for key in JOB_CHOICES if key in choices})


def job_create_from_job(*, owner, source_job: StyleJob, choices: dict) -> StyleJob:
    """A new job of ``source_job``'s photo, not uploaded again (``jobs.job_create``, its
    limits included): ``choices`` as for an upload, where a style left out is the source
    job's and ``JOB_PHOTO_CHOICES`` left out are the source job's too (its size, strokes
    and colours); strength and mix are as given (defaults: full strength, no mix)."""
    choices = {key: value for key, value in choices.items() if value is not None}
    choices.setdefault("style", source_job.style)
    for key in JOB_PHOTO_CHOICES:
        choices.setdefault(key, getattr(source_job, key))
    with source_job.input_image.open("rb") as stored:
        data = stored.read()
    name = source_job.input_filename or Path(source_job.input_image.name).name
    return job_create(owner=owner, input_image=ContentFile(data, name=name),
                      callback_url=choices.get("callback_url") or "",
                      **{key: choices[key] for key in JOB_CHOICES if key in choices})
