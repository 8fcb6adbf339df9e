"""A training run's progress, reported on the styles it trains as it goes.

:class:`TrainingRecorder` is the ``on_progress`` every run (``services.training``,
``services.own_styles``) hands ``ml.train.train``: it writes ``Style.training_progress``
(step, loss terms, time left, a thinned loss history: :class:`LossHistory`),
``Style.training_sample`` (the latest sample image) and, when the run ends well,
``Style.training_sheet``; the admin shows them (``docs/design/training-admin.md``). Its
writes touch only those fields, and a failed write is logged, never the run's failure.

The run's images are stored under unguessable names (:func:`training_image_store`) and
deleted once no style shows them (:func:`training_images_forget`); a user's own style's
samples go to the private storage instead.
"""

import logging
import math
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.files import File
from django.db.models import Q
from django.utils import timezone

from stylize.models import Style, own_style_file_name, private_storage

if TYPE_CHECKING:
    from ml.callbacks import TrainProgress
    from ml.config import TrainConfig

logger = logging.getLogger(__name__)

#: Between a run's first and last step its progress is written at most this often (s).
PROGRESS_SAVE_SECONDS = 5.0
#: A new sample image is copied to the style at most this often (s), and at the end.
SAMPLE_COPY_SECONDS = 30.0
#: The loss history keeps at most this many points (halved, evenly, when it fills).
HISTORY_POINTS = 200


class TrainingRecorder:
    """The ``on_progress`` of a training run: reports it on the styles it trains.

    ``Style.training_progress`` of every style in ``styles`` becomes::

        {"state": "running" | "succeeded" | "failed", "step", "steps",
         "losses": {term: value} (the latest step's), "seconds" (trained so far),
         "seconds_left" (estimated; null until two steps were seen), "started_at",
         "updated_at", "finished_at" (once ended), "reason" (when failed),
         "sample_step" (of training_sample), "sheet_step" (of training_sheet, when
         the run's last sample became it), "history": [[step, {term: value}], ...]}

    with ``history`` holding at most :data:`HISTORY_POINTS` evenly spaced steps plus
    the latest. Written with ``QuerySet.update()`` of only the training fields (no
    other edit is overwritten), after the first step, the last, a new sample and
    otherwise at most every :data:`PROGRESS_SAVE_SECONDS`; the newest sample image
    the run wrote (``<out_dir>/samples/step-N.png``) is copied to
    ``Style.training_sample`` at most every :data:`SAMPLE_COPY_SECONDS` and at the
    last step. :meth:`succeed` makes the run's last sample ``training_sheet`` too.
    With ``private`` (a user's own style: docs/design/own-styles.md) the samples go to
    ``Style.private_sample`` in the private storage instead, and no contact sheet is
    made. A failed write is logged and training goes on. ``on_progress`` (the caller's
    own hook) is called after the recorder, with the same ``TrainProgress``.
    """

    def __init__(self, *, styles: list[Style], on_progress=None, name: str | None = None,
                 clock=time.monotonic, private: bool = False):
        self.private = private
        self.sample_field = "private_sample" if private else "training_sample"
        self.pks = [style.pk for style in styles]
        self.name = name or styles[0].slug  # of the stored images
        self.on_progress = on_progress
        self.clock = clock
        self.history = LossHistory(HISTORY_POINTS)
        self.steps = 0
        self.max_seconds = None
        self.sample_every = None
        self.samples_dir: Path | None = None
        self.started_at = timezone.now()
        self.latest: TrainProgress | None = None
        self.first: tuple[int, float] | None = None  # (step, seconds) when first seen
        self.saved_at: float | None = None
        self.sample_copied_at: float | None = None
        self.new_sample: tuple[int, Path] | None = None  # written, not copied yet
        self.sample: tuple[int, str] | None = None  # (step, stored name) copied

    def start(self, *, config: "TrainConfig") -> None:
        """The run is about to train with ``config``: state running, step 0, no
        sample yet (the previous run's is let go)."""
        self.steps = config.steps
        self.max_seconds = config.max_seconds
        self.sample_every = config.sample_every
        self.samples_dir = Path(config.out_dir) / "samples"
        self.started_at = timezone.now()
        try:
            replaced = list(Style.objects.filter(pk__in=self.pks)
                            .values_list(self.sample_field, flat=True))
            self._write("running", **{self.sample_field: ""})
            self._forget(replaced)
        except Exception:
            logger.exception("Recording the start of the run of %s failed", self.name)

    def __call__(self, progress: "TrainProgress") -> None:
        try:
            self._observe(progress)
        except Exception:
            logger.exception("Recording the progress of %s failed; training goes on", self.name)
        if self.on_progress is not None:
            self.on_progress(progress)

    def succeed(self) -> None:
        """The run ended well: the final record, with its last sample as the contact sheet."""
        self._end("succeeded", sheet=True)

    def fail(self, *, reason: str) -> None:
        self._end("failed", reason=reason)

    def _store(self, path: Path, stem: str) -> str:
        if self.private:
            return _private_image_store(path)
        return training_image_store(path, stem)

    def _forget(self, names) -> None:
        if self.private:
            _private_images_forget(names)
        else:
            training_images_forget(names)

    # ---------------------------------------------------------------- internals

    def _observe(self, progress: "TrainProgress") -> None:
        now = self.clock()
        self.latest = progress
        if self.first is None:
            self.first = (progress.step, progress.seconds)
        self.history.add(progress.step, _terms(progress.losses))
        sampled = self.sample_every and progress.step % self.sample_every == 0
        if sampled and self.samples_dir is not None:
            path = self.samples_dir / f"step-{progress.step:08d}.png"
            if path.is_file():
                self.new_sample = (progress.step, path)
        due = (self.saved_at is None or progress.step >= progress.steps
               or now - self.saved_at >= PROGRESS_SAVE_SECONDS)
        copy = self.new_sample is not None and (
            progress.step >= progress.steps or self.sample_copied_at is None
            or now - self.sample_copied_at >= SAMPLE_COPY_SECONDS)
        if due or copy:
            self.saved_at = now  # first: a failing write is not retried at every step
            self._save("running", copy_sample=copy)

    def _end(self, state: str, *, sheet: bool = False, reason: str = "") -> None:
        try:
            self._save(state, copy_sample=self.new_sample is not None, sheet=sheet,
                       reason=reason)
        except Exception:
            logger.exception("Recording the end of the run of %s failed", self.name)

    def _save(self, state: str, *, copy_sample: bool, sheet: bool = False,
              reason: str = "") -> None:
        fields, replaced = {}, []
        if copy_sample:
            step, path = self.new_sample
            self.new_sample, self.sample_copied_at = None, self.clock()
            stored = self._store(path, f"{self.name}-step{step}")
            replaced.append(self.sample[1] if self.sample else "")
            self.sample = (step, stored)
            fields[self.sample_field] = stored
        extra = {}
        if sheet and self.sample is not None and not self.private:
            replaced += list(Style.objects.filter(pk__in=self.pks)
                             .values_list("training_sheet", flat=True))
            fields["training_sheet"] = self.sample[1]
            extra["sheet_step"] = self.sample[0]
        if state != "running":
            extra["finished_at"] = timezone.now().isoformat()
        if reason:
            extra["reason"] = reason
        self._write(state, **fields, **extra)
        self._forget(replaced)

    def _write(self, state: str, **fields) -> None:
        """One ``update()`` of the training fields: the record, and any image names."""
        images = {k: fields.pop(k) for k in ("training_sample", "training_sheet",
                                             "private_sample") if k in fields}
        progress = self.latest
        step = progress.step if progress else 0
        record = {
            "state": state,
            "step": step,
            "steps": self.steps,
            "losses": _terms(progress.losses) if progress else {},
            "seconds": round(progress.seconds, 1) if progress else 0.0,
            "seconds_left": self._seconds_left(),
            "started_at": self.started_at.isoformat(),
            "updated_at": timezone.now().isoformat(),
            "sample_step": self.sample[0] if self.sample else None,
            **fields,
            "history": self.history.points(),
        }
        Style.objects.filter(pk__in=self.pks).update(training_progress=record, **images)

    def _seconds_left(self) -> float | None:
        progress = self.latest
        if progress is None or self.first is None:
            return None
        if progress.step >= progress.steps:
            return 0.0
        first_step, first_seconds = self.first
        if progress.step <= first_step:
            return None
        # From the first step on: that one also paid for compiling the step.
        per_step = (progress.seconds - first_seconds) / (progress.step - first_step)
        left = per_step * (progress.steps - progress.step)
        if self.max_seconds is not None:
            left = min(left, max(0.0, self.max_seconds - progress.seconds))
        return round(left, 1)


class LossHistory:
    """A run's loss terms at evenly spaced steps, at most ``limit`` of them plus the
    latest: every step is kept until ``limit`` are, then every other one, and from
    then on every second step, and so on (the spacing doubles each time it fills)."""

    def __init__(self, limit: int):
        self.limit = max(2, limit)
        self.stride = 1
        self.origin: int | None = None
        self.kept: list[list] = []
        self.latest: list | None = None

    def add(self, step: int, terms: dict) -> None:
        self.latest = [step, terms]
        if self.origin is None:
            self.origin = step
        if (step - self.origin) % self.stride:
            return
        self.kept.append([step, terms])
        if len(self.kept) >= self.limit:
            self.kept = self.kept[::2]
            self.stride *= 2

    def points(self) -> list[list]:
        """``[[step, {term: value}], ...]`` in step order, at most ``limit`` long."""
        if self.latest is not None and (not self.kept or self.kept[-1][0] != self.latest[0]):
            return [*self.kept, self.latest]
        return list(self.kept)


def _terms(losses: dict) -> dict:
    """Loss terms for JSON: 6 significant digits, ``None`` for NaN/inf."""
    return {name: (float(f"{value:.6g}") if math.isfinite(value) else None)
            for name, value in ((n, float(v)) for n, v in losses.items())}


def training_image_store(path: Path, stem: str) -> str:
    """Copy a PNG of a run into the storage of ``Style.training_sample``/``_sheet``
    (public media, like paintings), under an unguessable name; returns the name."""
    field = Style._meta.get_field("training_sample")
    name = field.generate_filename(None, f"{stem}-{secrets.token_hex(8)}.png")
    with open(path, "rb") as source:
        return field.storage.save(name, File(source), max_length=field.max_length)


def training_images_forget(names) -> None:
    """Delete those of ``names`` that no style shows any more."""
    storage = Style._meta.get_field("training_sample").storage
    for name in {n for n in names if n}:
        if not Style.objects.filter(Q(training_sample=name) | Q(training_sheet=name)).exists():
            storage.delete(name)


def _private_image_store(path: Path) -> str:
    """A sample of an own style's run, copied into the private storage under a random
    name (``models.own_style_file_name``); returns the name."""
    storage = private_storage()
    with open(path, "rb") as source:
        return storage.save(own_style_file_name(None, "sample.png"), File(source))


def _private_images_forget(names) -> None:
    """Delete those of ``names`` (own styles' private files) that no style names."""
    storage = private_storage()
    for name in {n for n in names if n}:
        if not Style.objects.filter(Q(private_sample=name) | Q(private_painting=name)).exists():
            storage.delete(name)
