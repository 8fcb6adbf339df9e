"""A user's own style: their painting learnt as one new row of the live bank's maps.

A signed-in user uploads a painting and names it (``own_style_create``, the web
process: the photos' upload validator, the header's size, the per-user limits, the
painting stored privately). The worker learns it (``own_style_learn``, task
``stylize.tasks.own_style_learn`` on ``OWN_STYLE_QUEUE``): a new slot of
``settings.DEFAULT_BANK``'s live version, starting from the mean of the painted slots,
γ and β only, every shared weight frozen (``ml.train``'s slot fine-tune), for at most
``OWN_STYLE_MAX_SECONDS``. The learnt row is the style: stored on it
(``Style.style_params``) with the version it was learnt on (``live_version``), never as
a new bank version, and painted through the bank's ``style_params`` signature
(``stylizing``). Shipped styles and other users' styles are untouched by construction:
nothing of the bank is written.

When the bank goes live at a new version (``own_styles_follow_bank``, called by the
training services and by ``register_styles``), a row learnt on a version with the same
shared weights moves to it as it is; any other is learnt again on the new one, and
paints with its old version until then (nothing is lost: old jobs keep their results).

Only the owner sees or uses an own style (``selectors.style_list_usable``); deleting
it (``own_style_delete``) removes its painting, samples and row at once and the row of
the style itself once no job names it (``own_styles_delete_removed``, hourly).
Design and measurements: docs/design/own-styles.md.
"""

import logging
import re
import secrets
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone, translation
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from PIL import Image

from ml.bank import slot_loss_settings, slot_params
from stylize import image_headers
from stylize.imaging.loading import UnreadablePhoto
from stylize.models import Style, own_style_file_name, private_storage
from stylize.validators import ALLOWED_FORMATS

from . import queueing
from .accounts import user_language
from .job_files import private_file_replace, private_files_sweep

logger = logging.getLogger(__name__)

#: A painting whose pixels' luminance varies less than this (standard deviation in
#: 0–255 levels, at FLAT_CHECK_SIDE px) has no style to learn.
FLAT_STD = 3.0
FLAT_CHECK_SIDE = 128
#: The painting as the loss reads it: upright RGB PNG, longer side at most this.
PAINTING_WORK_SIDE = 1024
#: Deleted own styles stay (without painting, samples or row) until no job names them
#: and a day has passed: the daily limit counts them.
REMOVED_KEEP = timedelta(days=1)

#: The private storage's folder of own styles' files (``models.own_style_file_name``).
OWN_STYLES_FOLDER = "own-styles"
#: What the API and the pages call an own style's state (``own_style_state``).
QUEUED, LEARNING, RELEARNING, READY, FAILED = "queued", "learning", "relearning", "ready", "failed"


class OwnStylesUnavailable(Exception):
    """Own styles cannot be learnt on this server now (no live bank, no training photos);
    the message says so, fit to show the person."""


class OwnStyleLimitExceeded(Exception):
    """The person is at one of the limits (a style already being learnt, the daily cap);
    the message says which and when to come back."""


# --------------------------------------------------------------------------- reading


def own_style_state(style: Style) -> str:
    """``queued``, ``learning``, ``relearning`` (learnt, learnt again on a new bank
    version meanwhile), ``ready`` or ``failed``."""
    if style.status == Style.Status.READY:
        return READY
    if style.status == Style.Status.FAILED:
        return FAILED
    learnt = style.style_params is not None
    if style.status == Style.Status.TRAINING and learnt:
        return RELEARNING
    if (style.training_progress or {}).get("state") in (None, "queued"):
        return QUEUED
    return LEARNING


def own_style_progress(style: Style) -> dict:
    """How far learning is: ``step``, ``steps``, ``seconds`` (trained so far),
    ``seconds_left`` (estimated, or None) and ``sample_step`` (of the latest sample)."""
    record = style.training_progress or {}
    return {key: record.get(key) for key in ("step", "steps", "seconds", "seconds_left",
                                             "sample_step")}


def bank_for_own_styles(model_name: str | None = None) -> tuple[int, Path, dict] | None:
    """``(version, folder, slots.json)`` of the live version of ``model_name`` (default
    ``settings.DEFAULT_BANK``) if own styles can be learnt on it (it has the
    ``style_params`` signature), else None."""
    from ml.export import read_slots

    from .model_files import bank_live_dir, bank_live_version

    model_name = model_name or settings.DEFAULT_BANK
    if not model_name:
        return None
    version = bank_live_version(model_name)
    folder = None if version is None else bank_live_dir(model_name, version)
    if folder is None:
        return None
    slots = read_slots(folder)
    if not slots or not slots.get("style_params_size"):
        return None
    return version, folder, slots


# --------------------------------------------------------------------------- creating


def own_styles_refusal() -> str | None:
    """Why no own style can be learnt on this server now, fit to show the person, or
    None: there must be a live bank exported with the ``style_params`` signature, and
    the training photos and loss weights it learns with."""
    from .styles import styles_retrain_refusal
    from .training import training_config

    if bank_for_own_styles() is None:
        return _("Own styles need a live bank: this server has no bank of styles to learn "
                 "your painting with yet. Please come back later.")
    if styles_retrain_refusal(config=training_config(overrides=settings.OWN_STYLE_OVERRIDES)):
        return _("Own styles cannot be learnt on this server yet: its training photos or "
                 "weights are missing. Please come back later.")
    return None


def own_style_clean_name(*, owner, name) -> str:
    """The name as kept: trimmed, 1–100 characters, none of the owner's other styles'
    (``ValidationError`` keyed ``name`` otherwise)."""
    name = re.sub(r"\s+", " ", str(name or "")).strip()
    if not name:
        raise ValidationError({"name": [_("Give your style a name.")]})
    if len(name) > 100:
        raise ValidationError({"name": [_("A style's name has at most 100 characters.")]})
    if Style.objects.filter(owner=owner, removed_at__isnull=True, name=name).exists():
        raise ValidationError({"name": [_("You already have a style called “%(name)s”.")
                                        % {"name": name}]})
    return name


def own_style_painting_check(painting) -> None:
    """What the web process checks of a painting the upload validator passed, from its
    header (no pixel decoded): each side at least ``OWN_STYLE_MIN_SIDE`` px
    (``ValidationError`` keyed ``painting``). Flat and undecodable paintings are refused
    by the worker, before any training (``own_style_learn``)."""
    painting.seek(0)
    header = image_headers.photo_inspect(painting.read())
    painting.seek(0)
    side = settings.OWN_STYLE_MIN_SIDE
    if min(header.width, header.height) < side:
        raise ValidationError({"painting": [_(
            "This painting is too small to learn a style from: it is %(width)d × %(height)d "
            "px, and each side needs at least %(side)d px.") % {
            "width": header.width, "height": header.height, "side": side}]})


def _limits_check(owner) -> None:
    """Raise ``OwnStyleLimitExceeded`` when ``owner`` is at a limit. Inside the caller's
    transaction with the owner's row locked, so two uploads at once cannot both pass."""
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
    limit = settings.OWN_STYLE_MAX_IN_FLIGHT_PER_USER
    if limit > 0:
        learning = Style.objects.filter(
            owner=owner, removed_at__isnull=True, style_params__isnull=True,
            status__in=[Style.Status.DRAFT, Style.Status.TRAINING]).count()
        if learning >= limit:
            raise OwnStyleLimitExceeded(ngettext(
                "One of your styles is still being learnt: %(count)d can be learnt at a time. "
                "Please wait until it is ready, then upload again.",
                "Some of your styles are still being learnt: %(count)d can be learnt at a "
                "time. Please wait until one is ready, then upload again.", limit)
                % {"count": limit})
    daily = settings.OWN_STYLE_DAILY_LIMIT
    if daily > 0:
        since = timezone.now() - timedelta(days=1)
        made = (Style.objects.filter(owner=owner, created_at__gt=since)
                .exclude(training_progress__state="refused"))
        if made.count() >= daily:
            first = made.order_by("created_at").values_list("created_at", flat=True).first()
            hours = max(1, int((first + timedelta(days=1) - timezone.now()).total_seconds()
                               // 3600 + 1))
            raise OwnStyleLimitExceeded(ngettext(
                "You have made %(count)d own style today, the most a day. Please try again "
                "in %(hours)d hours.",
                "You have made %(count)d own styles today, the most a day. Please try again "
                "in %(hours)d hours.", daily) % {"count": daily, "hours": hours})


def _own_slug(name: str) -> str:
    stem = slugify(name)[:40].strip("-") or "own"
    return f"{stem}-{secrets.token_hex(4)}"


@transaction.atomic
def own_style_create(*, owner, name: str, painting) -> Style:
    """``owner``'s own style called ``name`` from ``painting`` (an upload the photos'
    validator passed), queued to be learnt on the own-styles queue once committed.

    Refused, with nothing stored: ``OwnStylesUnavailable`` (no live bank, or nothing to
    train with), ``ValidationError`` (the name, or a painting too small:
    ``own_style_painting_check``) and ``OwnStyleLimitExceeded`` (a style of theirs still
    being learnt, ``OWN_STYLE_MAX_IN_FLIGHT_PER_USER``, or ``OWN_STYLE_DAILY_LIMIT``
    made in 24 hours). The painting is stored without its metadata, under a random name
    in the private storage.
    """
    if refusal := own_styles_refusal():
        raise OwnStylesUnavailable(refusal)
    name = own_style_clean_name(owner=owner, name=name)
    own_style_painting_check(painting)
    _limits_check(owner)
    painting.seek(0)
    data, image_format = image_headers.photo_strip_metadata(painting.read())
    style = Style(owner=owner, name=name, slug=_own_slug(name), model_name=settings.DEFAULT_BANK,
                  is_public=False, status=Style.Status.DRAFT,
                  training_progress={"state": "queued", "queued_at": timezone.now().isoformat()})
    style.private_painting.save(f"painting.{ALLOWED_FORMATS[image_format][1]}",
                                ContentFile(data), save=False)
    style.save()
    queueing.own_style_learn_send(style_id=style.pk)
    return style


# --------------------------------------------------------------------------- learning


def own_style_learn(*, style_id: int, on_progress=None) -> Style | None:
    """Learn (or learn again) own style ``style_id`` on the live bank; returns it, or None
    when it was not queued (a duplicate delivery, deleted meanwhile).

    The painting is read first (upright, at most ``PAINTING_WORK_SIDE``); an unreadable
    or flat one is refused, before any training, with the reason (``status_reason``, in
    the owner's language; the daily limit does not count it). Then the slot fine-tune of
    ``ml.train`` (``OWN_STYLE_OVERRIDES`` over ``training_config()``, at most
    ``OWN_STYLE_MAX_SECONDS``), recorded on the style as staff runs are
    (``TrainingRecorder``, its samples in the private storage). The learnt row is stored
    with the version it was learnt on, guarded: a style deleted meanwhile keeps nothing.
    A failure leaves a learnt style painting with its previous row.
    """
    claimed = Style.objects.filter(
        pk=style_id, owner__isnull=False, removed_at__isnull=True,
        training_progress__state="queued",
    ).update(status=Style.Status.TRAINING, status_reason="",
             training_progress={"state": "starting"}, updated_at=timezone.now())
    if not claimed:
        return None
    style = Style.objects.select_related("owner").get(pk=style_id)
    with translation.override(user_language(style.owner)):
        work_dir = settings.VAR_DIR / "training" / "own-styles" / style.slug
        try:
            return _own_style_learn(style, work_dir, on_progress)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)


def _own_style_learn(style: Style, work_dir: Path, on_progress) -> Style | None:
    from ml.servable import settings_record

    from .training import _run_config, training_config
    from .training_progress import TrainingRecorder

    try:
        painting = _painting_for_training(style, work_dir)
    except OwnStyleRefused as refusal:
        _own_style_fail(style, reason=str(refusal), state="refused")
        return Style.objects.get(pk=style.pk)
    bank = bank_for_own_styles(style.model_name)
    if bank is None:
        _own_style_fail(style, reason=_(
            "Own styles need a live bank: this server has no bank of styles to learn your "
            "painting with any more. Please try again later."))
        return Style.objects.get(pk=style.pk)
    version, folder, slots = bank
    from ml.export import BANK_MODEL_FILE

    slot = slots["num_styles"]  # the next free slot: the row being learnt
    recorder = TrainingRecorder(styles=[style], on_progress=on_progress, private=True)
    try:
        config = training_config(
            overrides={**slot_loss_settings(slots, settings.OWN_STYLE_STYLE_SCALE),
                       **settings.OWN_STYLE_OVERRIDES,
                       "max_seconds": settings.OWN_STYLE_MAX_SECONDS, "verbose": 0},
            painting=str(painting), out_dir=str(work_dir / "run"), train_slot=slot,
            init_weights=str(folder / BANK_MODEL_FILE))
        config = _run_config(config)
        recorder.start(config=config)
        from ml.train import train

        result = train(config, on_progress=recorder)
        row = slot_params(result.model, slot)
        record = {**settings_record(result), "bank_version": version,
                  "shared_digest": slots.get("shared_digest")}
    except (Exception, SoftTimeLimitExceeded) as exc:
        logger.exception("Learning the own style %s failed", style.slug)
        reason = _("Something went wrong on our side while learning your painting. "
                   "Please try again.")
        _own_style_fail(style, reason=reason)
        recorder.fail(reason=f"{type(exc).__name__}: {exc}")
        return Style.objects.get(pk=style.pk)
    stored = Style.objects.filter(pk=style.pk, removed_at__isnull=True).update(
        style_params=row.astype("<f4").tobytes(), live_version=version,
        bank_slots=slots["num_styles"], status=Style.Status.READY, status_reason="",
        training_settings=record,
        metrics={"train": {"final": {k: round(float(v), 6)
                                     for k, v in result.final_losses.items()}}},
        updated_at=timezone.now())
    if stored:
        recorder.succeed()
        # The bank may have moved while it learnt: follow it (moved, or learnt again).
        own_styles_follow_bank(model_name=style.model_name, styles=[style.pk])
    return Style.objects.get(pk=style.pk)


class OwnStyleRefused(Exception):
    """The painting cannot be learnt (unreadable, flat); the message says why."""


def _painting_for_training(style: Style, work_dir: Path) -> Path:
    """The painting, upright RGB at most ``PAINTING_WORK_SIDE`` px, as a PNG the loss
    reads; ``OwnStyleRefused`` for one that cannot be learnt."""
    from .stylizing import stored_photo_load

    with style.private_painting.open("rb") as stored:
        data = stored.read()
    try:
        # A HEIF painting (or one turned by its EXIF orientation) is stored again upright,
        # as a job's photo is: what the owner's pages show then is what any browser shows.
        pixels = stored_photo_load(data, max_side=PAINTING_WORK_SIDE,
                                   max_decode_bytes=settings.STYLIZE_DECODE_MAX_BYTES,
                                   on_upright=lambda upright, image_format: _painting_replace(
                                       style, upright, image_format))
    except (UnreadablePhoto, OSError, ValueError) as exc:
        raise OwnStyleRefused(_("Your painting could not be read as an image, so there is "
                                "no style to learn from it. Please upload it again, or "
                                "another one.")) from exc
    side = settings.OWN_STYLE_MIN_SIDE
    if min(pixels.shape[:2]) < min(side, PAINTING_WORK_SIDE):
        raise OwnStyleRefused(_(
            "This painting is too small to learn a style from: each side needs at least "
            "%(side)d px.") % {"side": side})
    if painting_is_flat(pixels):
        raise OwnStyleRefused(_(
            "This painting is almost a single colour: there is no style to learn from it. "
            "Please choose a painting with brush strokes, colours or texture."))
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "painting.png"
    Image.fromarray(pixels).save(path)
    return path


def _painting_replace(style: Style, data: bytes, image_format: str) -> None:
    """The stored painting replaced by ``data`` (the worker's upright copy)."""
    private_file_replace(
        instance=style, field_name="private_painting", storage=private_storage(),
        name=own_style_file_name(style, f"painting.{ALLOWED_FORMATS[image_format][1]}"),
        data=data)


def painting_is_flat(pixels: np.ndarray) -> bool:
    """Whether an RGB painting (uint8 ``HxWx3``) is all but one colour: the standard
    deviation of its luminance, at ``FLAT_CHECK_SIDE`` px, under ``FLAT_STD`` levels."""
    image = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    image.thumbnail((FLAT_CHECK_SIDE, FLAT_CHECK_SIDE))
    return float(np.asarray(image, dtype=np.float32).std()) < FLAT_STD


def _own_style_fail(style: Style, *, reason: str, state: str = "failed") -> None:
    """The learning ended without a new row: a learnt style paints on with its old row
    (ready again), one never learnt is failed; ``reason`` is for its owner."""
    status = Style.Status.READY if style.style_params is not None else Style.Status.FAILED
    record = {**(Style.objects.filter(pk=style.pk).values_list("training_progress", flat=True)
                 .first() or {}), "state": state, "reason": reason,
              "finished_at": timezone.now().isoformat()}
    Style.objects.filter(pk=style.pk, removed_at__isnull=True).update(
        status=status, status_reason=reason, training_progress=record,
        updated_at=timezone.now())


# --------------------------------------------------------------------------- the bank moves


def _digest(model_name: str, version: int | None) -> str | None:
    from ml.export import read_slots

    from .model_files import bank_live_dir

    folder = None if version is None else bank_live_dir(model_name, version)
    slots = read_slots(folder) if folder is not None else None
    return (slots or {}).get("shared_digest")


def own_styles_follow_bank(*, model_name: str, styles=None) -> dict[str, int]:
    """After bank ``model_name`` went live at a new version: each own style learnt on an
    older version (of ``styles``, pks, if given) moves to the live one when their shared
    weights are the same (``slots.json``'s ``shared_digest``: a staff slot fine-tune
    keeps them), and is otherwise queued to be learnt again on it, painting with its old
    version meanwhile. Returns the counts ``{"moved", "relearn"}``."""
    from .model_files import bank_live_version

    counts = {"moved": 0, "relearn": 0}
    live = bank_live_version(model_name)
    if live is None:
        return counts
    live_bank = bank_for_own_styles(model_name)
    stale = Style.objects.filter(owner__isnull=False, removed_at__isnull=True,
                                 model_name=model_name, style_params__isnull=False,
                                 status=Style.Status.READY).exclude(live_version=live)
    if styles is not None:
        stale = stale.filter(pk__in=list(styles))
    live_digest = _digest(model_name, live)
    for style in stale:
        same = live_digest is not None and _digest(model_name, style.live_version) == live_digest
        if same and live_bank is not None:
            counts["moved"] += Style.objects.filter(
                pk=style.pk, live_version=style.live_version, status=Style.Status.READY,
            ).update(live_version=live, bank_slots=live_bank[2]["num_styles"],
                     updated_at=timezone.now())
            continue
        with transaction.atomic():
            marked = Style.objects.filter(
                pk=style.pk, live_version=style.live_version, status=Style.Status.READY,
            ).update(status=Style.Status.TRAINING, training_progress={
                "state": "queued", "relearn": True, "from_version": style.live_version,
                "queued_at": timezone.now().isoformat()}, updated_at=timezone.now())
            if marked:
                queueing.own_style_learn_send(style_id=style.pk)
        counts["relearn"] += marked
    return counts


# --------------------------------------------------------------------------- deleting


@transaction.atomic
def own_style_delete(*, style: Style) -> None:
    """Delete an own style: its painting, samples and row go now (the files once this
    commits), and it leaves every list and page at once. The row itself stays, empty,
    until the sweep (``own_styles_delete_removed``) finds it older than ``REMOVED_KEEP``
    and named by no job: old jobs keep their results and the style's name, and the daily
    limit still counts it."""
    if not style.is_own:
        raise ValueError(f"{style.slug} is not a user's own style")
    files = [(field.storage, field.name) for field in style.stored_own_files]
    Style.objects.filter(pk=style.pk).update(
        removed_at=timezone.now(), private_painting="", private_sample="", style_params=None,
        status=Style.Status.FAILED, live_version=None, bank_slots=None, status_reason="deleted",
        training_progress={**(style.training_progress or {}), "state": "deleted"},
        updated_at=timezone.now())
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in files])


def _named_by_jobs(style: Style) -> bool:
    return style.jobs.exists() or style.blended_jobs.exists()


#: A queued own style whose message may have been lost is sent again after this long
#: (a second delivery claims nothing).
QUEUED_RESEND = timedelta(hours=1)


def own_styles_sweep(*, now=None) -> dict[str, int]:
    """The hourly look after own styles: one learning past ``OWN_STYLE_TIME_LIMIT`` (its
    worker was killed) ends failed with a reason (a learnt one paints on with its old
    row); one queued for more than ``QUEUED_RESEND`` is sent again (Redis may have lost
    its message); deleted ones go (``own_styles_delete_removed``). Returns the counts."""
    now = now or timezone.now()
    counts = {"stuck": 0, "resent": 0}
    cutoff = now - timedelta(seconds=settings.OWN_STYLE_TIME_LIMIT + 300)
    stuck = Style.objects.filter(owner__isnull=False, removed_at__isnull=True,
                                 status=Style.Status.TRAINING, updated_at__lt=cutoff).exclude(
        training_progress__state="queued")
    for style in stuck.select_related("owner"):
        with translation.override(user_language(style.owner)):
            _own_style_fail(style, reason=_("Learning your painting took too long and was "
                                            "stopped. Please try again."))
        counts["stuck"] += 1
    queued = Style.objects.filter(owner__isnull=False, removed_at__isnull=True,
                                  training_progress__state="queued",
                                  updated_at__lt=now - QUEUED_RESEND)
    for pk in queued.values_list("pk", flat=True):
        queueing.own_style_learn_send(style_id=pk)
        counts["resent"] += 1
    counts["deleted"] = own_styles_delete_removed(now=now)
    return counts


def own_styles_delete_removed(*, now=None) -> int:
    """Delete the own styles their owners deleted more than ``REMOVED_KEEP`` ago that no
    job names any more, then any file under ``own-styles/`` in the private storage older
    than that which no style names (a sample stored as its style went). Returns how
    many styles went."""
    now = now or timezone.now()
    deleted = 0
    for style in Style.objects.filter(owner__isnull=False, removed_at__lt=now - REMOVED_KEEP):
        with transaction.atomic():
            if not _named_by_jobs(style):
                style.delete()
                deleted += 1
    named = set()
    for field in ("private_painting", "private_sample"):
        named |= set(Style.objects.exclude(**{field: ""}).values_list(field, flat=True))
    private_files_sweep(folders=(OWN_STYLES_FOLDER,), named=named, min_age=REMOVED_KEEP,
                        now=now, kind="own-style file")
    return deleted
