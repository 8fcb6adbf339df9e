"""Run one job: photo → model backend → result, ending succeeded, retried or failed.

Every way out of ``job_run`` leaves the job in a known state: succeeded (result
stored), back on the queue for another attempt (a transient backend error), or failed
with a reason the owner can read. Both finished states email the owner.
"""

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import translation
from django.utils.functional import lazy
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from PIL import UnidentifiedImageError

from ml.bank import mix_weights, params_mix
from stylize.backends import get_backend
from stylize.backends.base import BackendError, PermanentBackendError, TransientBackendError
from stylize.image_headers import HeaderError, photo_inspect
from stylize.imaging.encoding import encode_image
from stylize.imaging.loading import (
    PHOTO_FORMATS,
    REWRITTEN_FORMATS,
    UnreadablePhoto,
    load_photo,
    photo_without_metadata,
)
from stylize.imaging.postprocessing import postprocess
from stylize.imaging.stroke_size import stylize_at_working_size
from stylize.models import DEFAULT_STROKE, Style, StyleJob
from stylize.strokes import STROKE_WORKING_SIDES
from stylize.validators import message_for

from .accounts import user_language
from .job_files import job_photo_replace
from .jobs import job_fail, job_progress, job_requeue, job_start, job_succeed
from .queueing import job_queue

logger = logging.getLogger(__name__)

UNEXPECTED_ERROR = gettext_lazy(
    "Something went wrong on our side while painting your photo. Please try again.")


class JobRetry(Exception):
    """The job is queued again (its row); the task sends the retry ``countdown`` seconds
    from now to ``queue``, its cost class's."""

    def __init__(self, job_id, countdown: float, reason: str, queue: str):
        super().__init__(f"Job {job_id} retries in {countdown:.0f} s: {reason}")
        self.countdown, self.queue = countdown, queue


def _paint_inputs(style: Style, *, strength: float, blend_with: Style | None,
                  blend: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(style_weights, style_params)`` rows for ``style`` (both None for a single-style
    model; params only for a user's own style), or a readable error."""
    if style.is_own:
        return _own_style_inputs(style, strength=strength, blend_with=blend_with, blend=blend)
    return _style_weights(style, strength=strength, blend_with=blend_with, blend=blend), None


def _own_style_inputs(style: Style, *, strength: float, blend_with: Style | None,
                      blend: float) -> tuple[np.ndarray, np.ndarray]:
    """A user's own style: the weights of the bank's slots (the identity's share for the
    strength, a second style's for a mix) and its row times its own share
    (``ml.bank.params_mix``), painted through the bank's ``style_params`` signature."""
    row = style.own_row
    if row is None or not style.bank_slots:
        raise PermanentBackendError(
            _("The style %(style)s has not been learnt yet.") % {"style": style.name})
    if blend_with is not None and (
        not blend_with.in_bank or blend_with.model_name != style.model_name
        or blend_with.bank_index >= style.bank_slots
    ):
        raise PermanentBackendError(
            _("The styles %(style)s and %(other)s cannot be mixed.")
            % {"style": style.name, "other": blend_with.name})
    try:
        weights, share = params_mix(
            style.bank_slots, strength=strength,
            blend_slot=blend_with.bank_index if blend_with is not None else None,
            blend=blend if blend_with is not None else 0.0)
    except ValueError as error:
        raise PermanentBackendError(
            _("The style %(style)s cannot be painted with these settings (%(error)s).")
            % {"style": style.name, "error": error}) from error
    return weights, (share * row).astype(np.float32)


def _style_weights(style: Style, *, strength: float, blend_with: Style | None,
                   blend: float) -> np.ndarray | None:
    """The weights row for ``style`` (None for a single-style model), or a readable error."""
    if not style.in_bank:
        if blend_with is not None:
            raise PermanentBackendError(
                _("The style %(style)s cannot be mixed with another style.")
                % {"style": style.name})
        return None
    if blend_with is not None and (
        not blend_with.in_bank or blend_with.model_name != style.model_name
    ):
        raise PermanentBackendError(
            _("The styles %(style)s and %(other)s cannot be mixed.")
            % {"style": style.name, "other": blend_with.name})
    try:
        return mix_weights(
            style.bank_slots or 0,
            style.bank_index,
            strength=strength,
            blend_slot=blend_with.bank_index if blend_with is not None else None,
            blend=blend if blend_with is not None else 0.0,
        )
    except ValueError as error:
        raise PermanentBackendError(
            _("The style %(style)s cannot be painted with these settings (%(error)s).")
            % {"style": style.name, "error": error}) from error


def photo_stylize(*, photo: np.ndarray, style: Style, strength: float = 1.0,
                  preserve_colors: bool = False, stroke: str = DEFAULT_STROKE,
                  blend_with: Style | None = None, blend: float = 0.0,
                  on_pass=None) -> np.ndarray:
    """A photo (uint8 RGB) painted in ``style``'s live version, with the job's options.

    ``stroke`` picks the size the network paints at (``STROKE_WORKING_SIDES``). For a
    style of a bank, ``strength`` and the mix with ``blend_with`` (``blend`` is its
    share) are style weights inside the network; for a single-style model strength
    blends the painting with the photo afterwards. ``preserve_colors`` is always a
    pixel post-process. ``on_pass(done, total)`` follows the model calls
    (``imaging.tiling.stylize_tiled``).
    """
    if style.live_version is None:
        raise PermanentBackendError(
            _("The style %(style)s has no trained model yet.") % {"style": style.name})
    if stroke not in STROKE_WORKING_SIDES:
        raise PermanentBackendError(
            f"Brush strokes must be one of {', '.join(STROKE_WORKING_SIDES)}, not {stroke!r}."
        )
    weights, params = _paint_inputs(style, strength=strength, blend_with=blend_with,
                                    blend=blend)
    backend = get_backend()

    def rows(row, batch):
        return None if row is None else np.repeat(row[None], len(batch), 0)

    def run(batch: np.ndarray) -> np.ndarray:
        # One row per image for a bank (and an own style's row); a single-style model
        # takes none. Without a row the call is exactly what it was before own styles.
        if params is None:
            return backend.stylize(model_name=style.model_name, version=style.live_version,
                                   images=batch, style_weights=rows(weights, batch))
        return backend.stylize(model_name=style.model_name, version=style.live_version,
                               images=batch, style_weights=rows(weights, batch),
                               style_params=rows(params, batch))

    result = stylize_at_working_size(photo, run, working_side=STROKE_WORKING_SIDES[stroke],
                                     tile=settings.STYLIZE_TILE_SIZE, on_pass=on_pass)
    pixel_strength = strength if weights is None else 1.0  # a bank did it in the network
    return postprocess(photo, result, strength=pixel_strength, preserve_colors=preserve_colors)


@dataclass(frozen=True)
class PaintRequest:
    """One way to paint a photo: a style with a job's options (``photo_stylize``'s)."""

    style: Style
    strength: float = 1.0
    preserve_colors: bool = False
    blend_with: Style | None = None
    blend: float = 0.0


def photo_stylize_many(*, photo: np.ndarray, requests: list[PaintRequest],
                       on_call: Callable[[list[tuple[int, object]]], None] | None = None
                       ) -> list:
    """A small photo (uint8 RGB, one model pass: at most ``STYLIZE_TILE_SIZE`` a side,
    painted at its own size) painted once per request, in as few model calls as the
    models allow: the requests whose styles share a bank's network (its live version)
    go through it in ONE batched call, the photo repeated with one row of style weights
    each (``ml.bank.mix_weights``: the style, its strength, any second style); a
    single-style model gets a call of its own. Strength and "preserve colours" are then
    applied as ``photo_stylize`` applies them.

    Returns, in the order of ``requests``, each painted photo or the ``BackendError``
    whose message says why that one could not be painted (a missing model fails only
    its own styles). ``on_call(pairs)`` gets the ``(index, result)`` pairs of each model
    call as soon as it returns (and of each request refused before any call). Why
    batched, and timings: docs/design/previews.md.
    """
    photo = np.ascontiguousarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 photo, got {photo.dtype} {photo.shape}")
    if max(photo.shape[:2]) > settings.STYLIZE_TILE_SIZE:
        raise ValueError(f"a {photo.shape[1]}×{photo.shape[0]} photo needs tiles: use "
                         "photo_stylize")
    results: list = [None] * len(requests)

    def settle(pairs: list[tuple[int, object]]) -> None:
        for index, result in pairs:
            results[index] = result
        if pairs and on_call is not None:
            on_call(pairs)

    # One model call each: a bank's version (its slots; users' own styles on it, through
    # its style_params signature, in a call of their own), or a single-style model.
    calls: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        style = request.style
        if style.is_own:
            key = ("own", style.model_name, style.live_version)
        elif style.in_bank:
            key = (style.model_name, style.live_version)
        else:
            key = ("", index)
        calls.setdefault(key, []).append(index)
    backend = get_backend()
    for indices in calls.values():
        painted, weights, params, refused = [], [], [], []
        for index in indices:
            request = requests[index]
            try:
                if request.style.live_version is None:
                    raise PermanentBackendError(_("The style %(style)s has no trained model yet.")
                                                % {"style": request.style.name})
                row, own = _paint_inputs(request.style, strength=request.strength,
                                         blend_with=request.blend_with, blend=request.blend)
            except BackendError as error:
                refused.append((index, error))
                continue
            weights.append(row)
            params.append(own)
            painted.append(index)
        settle(refused)
        if not painted:
            continue
        style = requests[painted[0]].style
        images = np.repeat(photo[None], len(painted), axis=0)
        try:
            if params[0] is None:
                batch = backend.stylize(
                    model_name=style.model_name, version=style.live_version, images=images,
                    style_weights=None if weights[0] is None else np.stack(weights))
            else:
                batch = backend.stylize(
                    model_name=style.model_name, version=style.live_version, images=images,
                    style_weights=np.stack(weights), style_params=np.stack(params))
        except BackendError as error:
            settle([(index, error) for index in painted])
            continue
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("Painting %s version %s failed unexpectedly", style.model_name,
                             style.live_version)
            settle([(index, PermanentBackendError(str(UNEXPECTED_ERROR))) for index in painted])
            continue
        pairs = []
        for index, result in zip(painted, batch):
            request = requests[index]
            # A bank applied the strength in the network; a single-style model blends.
            strength = 1.0 if request.style.bank_name else request.strength
            pairs.append((index, postprocess(photo, np.ascontiguousarray(result),
                                             strength=strength,
                                             preserve_colors=request.preserve_colors)))
        settle(pairs)
    return results


# The upload's refusals a job's failure repeats (what else a stored file could be
# refused for reads "Your photo could not be read as an image.").
_SAID_TO_THE_OWNER = {"too_many_scans", "animated"}


def stored_photo_load(data: bytes, *, max_side: int, max_decode_bytes: int | None,
                      on_upright=None) -> np.ndarray:
    """The worker's loader: a stored photo's bytes → an upright RGB array, longer side
    at most ``max_side``. It is the upload's first full decode, here under the job's
    time limit and ``max_decode_bytes`` (``STYLIZE_DECODE_MAX_BYTES``).

    The bytes are walked again first (``image_headers.photo_inspect``: a file stored
    before that check, or changed since, gets the upload's refusals). A photo that
    still carries an EXIF orientation, and every HEIF or AVIF photo (which most
    browsers cannot show: ``imaging.loading.REWRITTEN_FORMATS``), is written anew
    upright without metadata (``imaging.loading.photo_without_metadata``: HEIF/AVIF as
    JPEG, PNG with alpha) and handed to ``on_upright(data, format)`` before it is read. Raises
    ``UnreadablePhoto`` (``PhotoTooLarge`` included), whose message is for the photo's
    owner, and nothing else for any file.
    """
    try:
        header = photo_inspect(data)
    except HeaderError as exc:
        if exc.code in _SAID_TO_THE_OWNER:
            raise UnreadablePhoto(format_lazy(
                gettext_lazy("Your photo could not be read: {why}"),
                why=lazy(message_for, str)(exc.code, **exc.params))) from exc
        raise UnreadablePhoto() from exc  # not an image, or a broken one
    if header.orientation != 1 or header.format in REWRITTEN_FORMATS:
        plugins = (header.format,) if header.format in REWRITTEN_FORMATS else PHOTO_FORMATS
        data, image_format = photo_without_metadata(
            io.BytesIO(data), max_decode_bytes=max_decode_bytes, formats=plugins)
        if on_upright is not None:
            on_upright(data, image_format)
    return load_photo(io.BytesIO(data), max_side=max_side, max_decode_bytes=max_decode_bytes,
                      formats=PHOTO_FORMATS)


def _job_photo_load(job: StyleJob) -> np.ndarray:
    """``stored_photo_load`` of the job's photo; an upright copy replaces the stored one."""
    with job.input_image.open("rb") as stored:
        data = stored.read()
    return stored_photo_load(
        data, max_side=job.max_side, max_decode_bytes=settings.STYLIZE_DECODE_MAX_BYTES,
        on_upright=lambda upright, image_format: job_photo_replace(job, upright, image_format))


def job_run(*, job_id) -> bool:
    """Process one queued job. False if it was not queued (a duplicate delivery).

    Raises JobRetry when a transient error (the model server out of reach, the soft
    time limit) queued the job again, before its last attempt (``JOB_MAX_ATTEMPTS``,
    backoff ``JOB_RETRY_BACKOFF`` doubled per attempt); the caller sends the retry.
    """
    if not job_start(job_id=job_id):
        logger.info("Job %s is not queued; nothing to do.", job_id)
        return False
    job = StyleJob.objects.select_related("style", "blend_with", "owner").get(pk=job_id)
    # What the owner reads (the job's error, on the page and in the email) is in their
    # language.
    with translation.override(user_language(job.owner)):
        try:
            photo = _job_photo_load(job)

            def painted(done: int, total: int) -> None:  # after the model call of each tile
                # After the last one: upsampling, colours, encoding and storing are left.
                stage = StyleJob.Stage.FINISHING if done >= total else StyleJob.Stage.PAINTING
                job_progress(job_id=job_id, progress=done / total, stage=stage)

            result = photo_stylize(photo=photo, style=job.style, strength=job.strength,
                                   preserve_colors=job.preserve_colors, stroke=job.stroke,
                                   blend_with=job.blend_with, blend=job.blend, on_pass=painted)
            data = encode_image(result, format="JPEG")
        except (TransientBackendError, SoftTimeLimitExceeded) as exc:
            reason = str(exc) or _("The job took too long.")
            if job.attempts >= settings.JOB_MAX_ATTEMPTS:
                job_fail(job_id=job_id, error=_("%(reason)s (gave up after %(attempts)d attempts)")
                         % {"reason": reason, "attempts": job.attempts})
                return True
            countdown = settings.JOB_RETRY_BACKOFF * 2 ** (job.attempts - 1)
            job_requeue(job_id=job_id)
            raise JobRetry(job_id, countdown, reason, job_queue(job.cost_class)) from exc
        except PermanentBackendError as exc:
            job_fail(job_id=job_id, error=str(exc))
        except UnreadablePhoto as exc:  # its message is for the owner (PhotoTooLarge too)
            logger.warning("Job %s: unreadable photo: %s (%r)", job_id, exc, exc.__cause__)
            job_fail(job_id=job_id, error=str(exc))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            logger.warning("Job %s: unreadable photo: %s", job_id, exc)
            job_fail(job_id=job_id, error=str(UnreadablePhoto()))
        except Exception:
            logger.exception("Job %s failed unexpectedly", job_id)
            job_fail(job_id=job_id, error=str(UNEXPECTED_ERROR))
        else:
            # Stored as results/<random>.jpg (models.job_result_name), downloaded as
            # StyleJob.result_download_name.
            job_succeed(job_id=job_id, result_name="result.jpg", result_file=ContentFile(data))
    return True
