"""How long users' photos and results are kept, and how they leave.

Photos and results live in the private storage (``stylize.storage``). A job, with its
files, is deleted ``JOB_RETENTION_DAYS`` after it was made (at ``job_expires_at``, by
``jobs.jobs_delete_expired``, which beat runs); files that no row names any more (a
crash between the row and the file) are swept (``private_files_sweep_orphans``); files
stored the old way, in the public media storage under the uploader's own name, are moved
in (``job_files_make_private``, ``manage.py make_job_files_private``, which ``make run``
calls); the worker replaces a photo stored with its EXIF orientation by its upright copy
(``job_photo_replace``). A result downloaded as PNG or WebP is encoded once, the first
time it is asked for, and kept as a file of the job's like the others
(``job_result_copy``). Previews and own styles keep their files in the same storage and
sweep and replace them with the same two services (``private_files_sweep``,
``private_file_replace``).
"""

import io
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from stylize.imaging import encoding, loading
from stylize.models import (
    MAX_MAX_SIDE,
    StyleJob,
    job_photo_name,
    job_result_name,
    private_storage,
)
from stylize.validators import ALLOWED_FORMATS

logger = logging.getLogger(__name__)

#: The private storage's folders (``StyleJob.input_image`` / ``result_image``).
PRIVATE_FOLDERS = ("photos", "results")
#: A file younger than this is never an orphan: its row may not be committed yet.
ORPHAN_MIN_AGE = timedelta(hours=1)


def job_expires_at(job: StyleJob) -> datetime:
    """When the job and its files will be deleted."""
    return job.created_at + timedelta(days=settings.JOB_RETENTION_DAYS)


def private_files_sweep_orphans(*, now=None) -> int:
    """Delete private files that no job names and that are older than an hour.

    Returns how many were deleted.
    """
    now = now or timezone.now()
    named = set(StyleJob.objects.values_list("input_image", flat=True))
    for field_name in ("result_image", *RESULT_COPY_FIELDS.values()):
        named |= set(StyleJob.objects.exclude(**{field_name: ""})
                     .values_list(field_name, flat=True))
    return private_files_sweep(folders=PRIVATE_FOLDERS, nested=True, named=named,
                               min_age=ORPHAN_MIN_AGE, now=now, kind="orphan file")


def private_files_sweep(*, folders, named: set[str], min_age: timedelta, now: datetime,
                        kind: str, nested: bool = False) -> int:
    """Delete every file in ``folders`` of the private storage (their sub-folders too
    where ``nested``) that ``named`` lacks and that was last changed at least ``min_age``
    before ``now``. A file that cannot be read or deleted is logged ("Could not sweep
    the ``kind`` …") and left. Returns how many were deleted."""
    storage = private_storage()
    deleted = 0
    for folder in folders:
        for name in _files_under(storage, folder, nested=nested):
            if name in named:
                continue
            try:
                if now - storage.get_modified_time(name) < min_age:
                    continue
                storage.delete(name)
            except OSError as error:
                logger.warning("Could not sweep the %s %s: %s", kind, name, error)
                continue
            deleted += 1
    return deleted


def _files_under(storage, folder: str, *, nested: bool) -> list[str]:
    """Every file name in ``folder`` of ``storage`` (none if it does not exist), and in
    its sub-folders where ``nested``."""
    try:
        subfolders, files = storage.listdir(folder)
    except FileNotFoundError:
        return []
    names = [f"{folder}/{name}" for name in files]
    for subfolder in subfolders if nested else ():
        names += _files_under(storage, f"{folder}/{subfolder}", nested=True)
    return names


def job_files_make_private() -> dict[str, int]:
    """Move job files stored the old way (public media storage, the uploader's file
    name, metadata kept) into the private storage under random names, dropping the
    photos' metadata on the way. Files already private are left alone; a file that
    cannot be read is reported and left where it is. Safe to run again.
    """
    counts = {"moved": 0, "missing": 0, "failed": 0}
    private = private_storage()
    jobs = StyleJob.objects.exclude(input_image="", result_image="")
    for job in jobs.iterator():
        for field_name in ("input_image", "result_image"):
            name = getattr(job, field_name).name
            if not name or private.exists(name):
                continue
            if not default_storage.exists(name):
                counts["missing"] += 1
                logger.warning("Job %s: %s is in neither storage.", job.pk, name)
                continue
            try:
                _move_one(job, field_name, name)
            except (OSError, ValueError, SyntaxError) as error:
                counts["failed"] += 1
                logger.warning("Job %s: could not move %s: %s", job.pk, name, error)
                continue
            counts["moved"] += 1
    return counts


def _move_one(job: StyleJob, field_name: str, old_name: str) -> None:
    with default_storage.open(old_name, "rb") as old:
        if field_name == "input_image":
            data, image_format = loading.photo_without_metadata(old)
            new_name = f"photo.{ALLOWED_FORMATS[image_format][1]}"
        else:
            data, new_name = old.read(), old_name  # upload_to keeps only its extension
    field = getattr(job, field_name)
    with transaction.atomic():
        field.save(new_name, ContentFile(data), save=False)
        if field_name == "input_image" and not job.input_filename:
            job.input_filename = old_name.rsplit("/", 1)[-1][:100]
        StyleJob.objects.filter(pk=job.pk).update(
            **{field_name: field.name, "input_filename": job.input_filename}
        )
    default_storage.delete(old_name)


def job_photo_replace(job: StyleJob, data: bytes, image_format: str) -> None:
    """Store ``data`` as the job's photo in place of the one it has.

    The worker calls it with the photo written anew upright and without any EXIF (the
    web request kept only the orientation, as it never decodes a photo:
    ``image_headers.photo_strip_metadata``; ``stylizing.stored_photo_load``). The new
    file gets a new random name; the old one is deleted once the row names the new one
    (if the job was deleted or changed meanwhile, the new file goes instead).
    """
    private_file_replace(instance=job, field_name="input_image",
                         storage=job.input_image.storage,
                         name=job_photo_name(job, f"photo.{ALLOWED_FORMATS[image_format][1]}"),
                         data=data)


def private_file_replace(*, instance, field_name: str, storage, name: str, data: bytes) -> None:
    """Store ``data`` in ``storage`` as ``name`` (or a free name like it) and point the
    row of ``instance`` (a model instance) at it in ``field_name``, if the row still
    names the file ``instance`` holds there; that old file is then deleted and
    ``instance`` names the new one. If the row is gone or names another file by then,
    the new file is deleted instead and ``instance`` is left as it was."""
    field = getattr(instance, field_name)
    old_name = field.name
    new_name = storage.save(name, ContentFile(data))
    if type(instance).objects.filter(pk=instance.pk, **{field_name: old_name}).update(
            **{field_name: new_name}):
        field.name = new_name
        storage.delete(old_name)
    else:
        storage.delete(new_name)


#: The formats a result is offered in: ``?format=`` name → label (the job page's buttons,
#: the API's schema).
DOWNLOAD_CHOICES = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}
#: What ``?format=`` may ask a result download for ("jpg" too), and the Pillow format
#: each name means.
DOWNLOAD_FORMATS = {**{name: name.upper() for name in DOWNLOAD_CHOICES}, "jpg": "JPEG"}


#: The formats a result is kept in besides its own (a JPEG), and the field of each.
RESULT_COPY_FIELDS = {"PNG": "result_png", "WEBP": "result_webp"}
#: The longest one request may hold the right to make a copy (``job_result_copy``);
#: making one takes seconds (a 4096² result: about 5 s for PNG).
RESULT_COPY_LOCK_SECONDS = 300


class ResultCopyBusy(Exception):
    """Another request is making this copy of the result right now."""

    retry_after = 5  # seconds


def job_result_copy(*, job: StyleJob, image_format: str):
    """The job's result as ``image_format`` (a key of ``RESULT_COPY_FIELDS``): a file of
    its own in the private storage, the job's field of that format.

    Made the first time it is asked for — the result decoded and encoded anew, the
    one time that costs — then the same file for every later download, whoever asks
    (its owner, the API, a share link). It is one of the job's files
    (``StyleJob.stored_files``): deleted with the job, by its owner or the retention
    sweep, and named by its row, so the orphan sweep leaves it. One request at a time
    makes a given copy (a lock in the default cache: across the web processes when they
    share ``CACHE_URL``); another that asks meanwhile gets ``ResultCopyBusy`` rather
    than a second encoding. Raises ``StyleJob.DoesNotExist`` if the job was deleted
    meanwhile.
    """
    field_name = RESULT_COPY_FIELDS[image_format]
    if getattr(job, field_name):
        return getattr(job, field_name)
    lock = f"stylize:result-copy:{job.pk}:{field_name}"
    if not cache.add(lock, True, timeout=RESULT_COPY_LOCK_SECONDS):
        raise ResultCopyBusy()
    try:
        stored = _stored_name(job, field_name)
        if not stored:  # not made by another request since the job was loaded either
            storage = getattr(job, field_name).storage
            name = storage.save(
                job_result_name(job, "result" + encoding.FORMAT_EXTENSIONS[image_format]),
                ContentFile(job_result_encoded(job, image_format)))
            if StyleJob.objects.filter(pk=job.pk, **{field_name: ""}).update(
                    **{field_name: name}):
                stored = name
            else:  # the job is gone, or has its copy after all: this one is no one's
                storage.delete(name)
                stored = _stored_name(job, field_name)
    finally:
        cache.delete(lock)
    setattr(job, field_name, stored)
    return getattr(job, field_name)


def _stored_name(job: StyleJob, field_name: str) -> str:
    """The file name the job's row holds now; ``StyleJob.DoesNotExist`` if it is gone."""
    return StyleJob.objects.values_list(field_name, flat=True).get(pk=job.pk)


def job_result_encoded(job: StyleJob, image_format: str) -> bytes:
    """The job's stored result (a JPEG) at its full size, as ``image_format`` bytes
    (``encoding.FORMAT_EXTENSIONS``: JPEG as stored, PNG or WebP encoded anew). Decodes
    and encodes every time: downloads go through ``job_result_copy``, which calls it
    once."""
    with job.result_image.open("rb") as stored:
        data = stored.read()
    if image_format == encoding.RESULT_FORMAT:
        return data
    # Our own JPEG, at most MAX_MAX_SIDE a side: never scaled down here.
    array = loading.load_photo(io.BytesIO(data), max_side=MAX_MAX_SIDE,
                               formats=(encoding.RESULT_FORMAT,))
    return encoding.encode_image(array, format=image_format)
