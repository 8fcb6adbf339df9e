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

from ml.bank import CannotMix, PaintInputs
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
from stylize.imaging.postprocessing import colors_kept
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
                  blend: float) -> PaintInputs:
    """The model inputs that paint ``style`` with a job's strength and mix
    (``Style.paint_slot``, ``ml.bank.BankSlot.inputs``), or a readable error."""
    slot = style.paint_slot
    if slot is None:
        raise PermanentBackendError(
            _("The style %(style)s has not been learnt yet.") % {"style": style.name})
    other = None if blend_with is None else blend_with.paint_slot
    try:
        if blend_with is not None and other is None:
            raise CannotMix(f"{blend_with.slug} has nothing to paint with")
        return slot.inputs(strength=strength, blend_with=other, blend=blend)
    except CannotMix as error:
        raise PermanentBackendError(
            _("The styles %(style)s and %(other)s cannot be mixed.")
            % {"style": style.name, "other": blend_with.name}) from error
    except ValueError as error:
        raise PermanentBackendError(
            _("The style %(style)s cannot be painted with these settings (%(error)s).")
            % {"style": style.name, "error": error}) from error


def _model_call(backend, style: Style, images: np.ndarray, inputs: list[PaintInputs]):
    """One call of ``style``'s network on ``images``, one row of ``inputs`` per image."""
    weights = np.stack([row.style_weights for row in inputs])
    if inputs[0].style_params is None:
        return backend.stylize(model_name=style.model_name, version=style.live_version,
                               images=images, style_weights=weights)
    return backend.stylize(model_name=style.model_name, version=style.live_version,
                           images=images, style_weights=weights,
                           style_params=np.stack([row.style_params for row in inputs]))


def photo_stylize(*, photo: np.ndarray, style: Style, strength: float = 1.0,
                  preserve_colors: bool = False, stroke: str = DEFAULT_STROKE,
                  blend_with: Style | None = None, blend: float = 0.0,
                  on_pass=None) -> np.ndarray:
    """A photo (uint8 RGB) painted in ``style``'s live version, with the job's options.

    ``stroke`` picks the size the network paints at (``STROKE_WORKING_SIDES``).
    ``strength`` and the mix with ``blend_with`` (``blend`` is its share) are the
    network's inputs (``Style.paint_slot``: style weights, an own style's row).
    ``preserve_colors`` is a pixel post-process. ``on_pass(done, total)`` follows the model calls
    (``imaging.tiling.stylize_tiled``).
    """
    if style.live_version is None:
        raise PermanentBackendError(
            _("The style %(style)s has no trained model yet.") % {"style": style.name})
    if stroke not in STROKE_WORKING_SIDES:
        raise PermanentBackendError(
            f"Brush strokes must be one of {', '.join(STROKE_WORKING_SIDES)}, not {stroke!r}."
        )
    inputs = _paint_inputs(style, strength=strength, blend_with=blend_with, blend=blend)
    backend = get_backend()

    def run(batch: np.ndarray) -> np.ndarray:
        return _model_call(backend, style, batch, [inputs] * len(batch))

    result = stylize_at_working_size(photo, run, working_side=STROKE_WORKING_SIDES[stroke],
                                     tile=settings.STYLIZE_TILE_SIZE, on_pass=on_pass)
    return colors_kept(photo, result, preserve_colors)


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
    each (``Style.paint_slot``: the style, its strength, any second style); a
    network version gets a call of its own. "Preserve colours" is then applied as
    ``photo_stylize`` applies it.

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

    # One model call each network version and signature (``BankSlot.call_key``): the
    # slots of a bank together, users' own styles on it (their rows) in a call of their
    # own.
    calls: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        slot = request.style.paint_slot
        key = ("nothing to paint with", index) if slot is None else slot.call_key
        calls.setdefault(key, []).append(index)
    backend = get_backend()
    for indices in calls.values():
        painted, inputs, refused = [], [], []
        for index in indices:
            request = requests[index]
            try:
                if request.style.live_version is None:
                    raise PermanentBackendError(_("The style %(style)s has no trained model yet.")
                                                % {"style": request.style.name})
                inputs.append(_paint_inputs(request.style, strength=request.strength,
                                            blend_with=request.blend_with, blend=request.blend))
            except BackendError as error:
                refused.append((index, error))
                continue
            painted.append(index)
        settle(refused)
        if not painted:
            continue
        style = requests[painted[0]].style
        images = np.repeat(photo[None], len(painted), axis=0)
        try:
            batch = _model_call(backend, style, images, inputs)
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
        settle([(index, colors_kept(photo, np.ascontiguousarray(result),
                                    requests[index].preserve_colors))
                for index, result in zip(painted, batch)])
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
