"""Train, export and evaluate styles' networks; keep TF Serving's model list in step.

The ML work itself lives in ``ml/`` (no Django there); these services wire it to the
``Style`` rows: status while training, the exported version made live (a draft, which
users are not offered until staff publish it: ``services.styles.style_publish``), the
reason when it fails (the live version stays), and ``serving/models.config`` rewritten
to list every ready style at its live version.

Two kinds of network: a single-style model, and a *bank* (one conditional network,
``ml.bank``) whose slots are styles. :func:`bank_train` trains a bank jointly;
:func:`style_train` retrains one style: a bank style by fine-tuning only its slot, a
new style by joining ``settings.DEFAULT_BANK`` when that bank exists, else as a
single-style model.

Every run reports as it goes through a :class:`TrainingRecorder` (its ``on_progress``):
``Style.training_progress`` (step, loss terms, time left, a thinned loss history),
``Style.training_sample`` (the latest sample image) and, when it ends well,
``Style.training_sheet``; the admin shows them (``docs/design/training-admin.md``).
"""

import hashlib
import logging
import math
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files import File
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ml.bank import mix_weights
from stylize.models import Style, own_style_file_name, private_storage
from stylize.selectors import style_list_served

from . import events

if TYPE_CHECKING:
    from ml.callbacks import TrainProgress
    from ml.config import TrainConfig

logger = logging.getLogger(__name__)


@transaction.atomic
def style_training_start(*, style: Style) -> Style:
    style.status = Style.Status.TRAINING
    style.status_reason = ""
    style.save(update_fields=["status", "status_reason", "updated_at"])
    return style


@transaction.atomic
def style_training_succeed(
    *, style: Style, version: int, training_settings: dict, metrics: dict
) -> Style:
    """Make ``version``, just trained, the style's live version: a draft.

    Whether the style was published or not, users are offered it again only once staff
    publish this version (``services.styles.style_publish``, after a held-out
    evaluation of it): until then no page, API call or new job uses it. The metrics
    are the run's (held-out numbers of an older version do not carry over)."""
    style.live_version = version
    style.status = Style.Status.READY
    style.status_reason = ""
    style.training_settings = training_settings
    style.metrics = metrics
    style.published_at = None
    # Not a full save: the run's recorder writes training_progress/_sample/_sheet
    # meanwhile, and this instance may have been loaded before the run began.
    style.save(update_fields=["live_version", "status", "status_reason", "training_settings",
                              "metrics", "published_at", "model_name", "bank_index",
                              "bank_slots", "updated_at"])
    return style


@transaction.atomic
def style_training_fail(*, style: Style, reason: str) -> Style:
    """Record why training failed; a version that was live stays live."""
    style.status = Style.Status.READY if style.live_version else Style.Status.FAILED
    style.status_reason = reason
    style.save(update_fields=["status", "status_reason", "updated_at"])
    return style


def training_config(*, overrides: dict | None = None, **paths) -> "TrainConfig":
    """The ``ml.config.TrainConfig`` staff training uses.

    ``settings.TRAINING_OVERRIDES`` over the preset, then ``overrides`` (the
    command's flags, or what the admin queued), then ``paths`` (the painting and run
    folder of the style being trained). One config drives ``manage.py train_style``,
    the admin's "Retrain" and ``python -m ml.train``.
    """
    from ml.config import TrainConfig

    return TrainConfig.from_preset(**{**settings.TRAINING_OVERRIDES, **(overrides or {}), **paths})


def training_dir(style: Style) -> Path:
    """Checkpoints, TensorBoard logs and samples of one style's training runs."""
    if style.in_bank:
        return _slot_dir(style.model_name, style)
    return settings.VAR_DIR / "training" / style.model_name


def _slot_dir(model_name: str, style: Style) -> Path:
    """Where one slot's fine-tunes run, apart from the bank's joint run folder."""
    return settings.VAR_DIR / "training" / model_name / "slots" / style.slug


def model_dir(style: Style) -> Path:
    return settings.SERVING_DIR / "models" / style.model_name


def bank_members(model_name: str) -> list[Style]:
    """The styles of a bank, by slot."""
    return list(Style.objects.filter(model_name=model_name, bank_index__isnull=False)
                .order_by("bank_index"))


def bank_live_version(model_name: str) -> int | None:
    """The bank's live version (its members share it), if it has one."""
    return _live_version(bank_members(model_name))


def _live_version(members) -> int | None:
    return max((s.live_version for s in members if s.live_version is not None), default=None)


def bank_live_dir(model_name: str, version: int | None = None) -> Path | None:
    """The folder of the bank's live version (or of ``version``), if it can be fine-tuned."""
    from ml.export import BANK_MODEL_FILE

    version = bank_live_version(model_name) if version is None else version
    if version is None:
        return None
    path = settings.SERVING_DIR / "models" / model_name / str(version)
    return path if (path / BANK_MODEL_FILE).is_file() else None


def _check_bank_name(model_name: str, lineup: list[Style]) -> None:
    """A bank must not share its name (its Serving model) with another single-style model."""
    clash = (Style.objects.filter(model_name=model_name, bank_index__isnull=True)
             .exclude(pk__in=[s.pk for s in lineup]).first())
    if clash is not None:
        raise ValueError(f"{model_name} is the model of the single-style {clash.name}; "
                         "choose another bank name.")


def style_train(*, style: Style, overrides: dict | None = None, on_progress=None) -> Style:
    """Retrain ``style`` and make the new version live, as a draft that staff publish.

    A style in a bank fine-tunes its own slot (every other style's output stays
    bit-identical); a new style (never trained) joins ``settings.DEFAULT_BANK`` as a new
    slot when that bank has a live version; otherwise (and for a trained single-style
    style) it trains a single-style network.
    ``overrides``: ``TrainConfig`` fields over ``settings.TRAINING_OVERRIDES`` (see
    :func:`training_config`). On any failure the style records why and keeps serving
    its previous version.
    """
    if style.is_own:
        raise ValueError(f"{style.slug} is a user's own style: services.own_styles learns it.")
    joins_default_bank = (style.live_version is None and settings.DEFAULT_BANK
                          and bank_live_dir(settings.DEFAULT_BANK) is not None)
    if style.in_bank or joins_default_bank:
        return _slot_train(style=style, overrides=overrides, on_progress=on_progress)
    return _single_train(style=style, overrides=overrides, on_progress=on_progress)


def _single_train(*, style: Style, overrides: dict | None, on_progress) -> Style:
    from ml.export import export_savedmodel
    from ml.train import train

    style_training_start(style=style)
    recorder = TrainingRecorder(styles=[style], on_progress=on_progress)
    try:
        work_dir = training_dir(style)
        painting = _local_copy(style.painting, work_dir)
        config = _run_config(training_config(overrides=overrides, painting=str(painting),
                                             out_dir=str(work_dir)))
        recorder.start(config=config)
        result = train(config, on_progress=recorder)
        version, _ = export_savedmodel(result.model, model_dir(style))
        serving_version_preload(model_name=style.model_name, version=version)
    except Exception as exc:
        logger.exception("Training %s failed", style.slug)
        reason = f"{type(exc).__name__}: {exc}"
        style_training_fail(style=style, reason=reason)
        recorder.fail(reason=reason)
        raise
    style_training_succeed(
        style=style,
        version=version,
        training_settings=_settings_record(result),
        metrics=_metrics_record(result),
    )
    recorder.succeed()
    serving_config_write()
    return style


def bank_train(*, model_name: str, styles: list[Style], overrides: dict | None = None,
               on_progress=None) -> list[Style]:
    """Train bank ``model_name`` jointly on its members plus ``styles``, export the
    next version and make it live for all of them, each a draft that staff publish.

    Members keep their slots; styles new to the bank take the next ones in the order
    given. A style of another bank is refused (``ValueError``). On failure every
    style records why and keeps what it served.
    """
    from ml.export import export_savedmodel
    from ml.train import train

    members = bank_members(model_name)
    for style in styles:
        if style.in_bank and style.model_name != model_name:
            raise ValueError(f"{style.name} is in the bank {style.model_name}, not {model_name}.")
    newcomers = [s for s in styles if s.pk not in {m.pk for m in members}]
    lineup = members + newcomers
    if not lineup:
        raise ValueError("A bank needs at least one style.")
    slot_of = {style.pk: style.bank_index for style in members}
    next_slot = max(slot_of.values(), default=0) + 1
    for offset, style in enumerate(newcomers):
        slot_of[style.pk] = next_slot + offset
    num_styles = max(slot_of.values()) + 1
    by_slot = {slot_of[s.pk]: s for s in lineup}
    if sorted(by_slot) != list(range(1, num_styles)):
        raise ValueError(f"The bank {model_name}'s slots have gaps: {sorted(by_slot)}.")
    _check_bank_name(model_name, lineup)
    started_from = _live_version(members)

    for style in lineup:
        style_training_start(style=style)
    # One run trains every slot: each member's page shows it.
    recorder = TrainingRecorder(styles=lineup, on_progress=on_progress, name=model_name)
    try:
        work_dir = settings.VAR_DIR / "training" / model_name
        paintings = [_local_copy(by_slot[slot].painting, work_dir / "paintings",
                                 stem=by_slot[slot].slug) for slot in range(1, num_styles)]
        config = _run_config(training_config(
            overrides=overrides, paintings=tuple(str(p) for p in paintings), painting="",
            out_dir=str(work_dir)))
        recorder.start(config=config)
        result = train(config, on_progress=recorder)
        record = _settings_record(result)
        slots = [_identity_slot()] + [_slot_record(by_slot[slot], record)
                                      for slot in range(1, num_styles)]
        version, _ = export_savedmodel(result.model, settings.SERVING_DIR / "models" / model_name,
                                       slots=slots)
        serving_version_preload(model_name=model_name, version=version)
        trained = _bank_make_live(model_name=model_name, version=version, num_styles=num_styles,
                                  slot_of=slot_of, trained=lineup, record=record,
                                  metrics=_metrics_record(result), started_from=started_from)
    except Exception as exc:
        logger.exception("Training the bank %s failed", model_name)
        reason = f"{type(exc).__name__}: {exc}"
        for style in lineup:
            style_training_fail(style=style, reason=reason)
        recorder.fail(reason=reason)
        raise
    recorder.succeed()
    serving_config_write()
    _own_styles_follow(model_name)
    return trained


def _slot_train(*, style: Style, overrides: dict | None, on_progress) -> Style:
    """Fine-tune ``style``'s slot of its bank (or a new slot of the default bank)."""
    from ml.export import BANK_MODEL_FILE, export_savedmodel, read_slots
    from ml.train import train

    model_name = style.model_name if style.in_bank else settings.DEFAULT_BANK
    started_from = bank_live_version(model_name)
    style_training_start(style=style)
    # Only this slot changes: the run is this style's alone.
    recorder = TrainingRecorder(styles=[style], on_progress=on_progress)
    try:
        live = None if started_from is None else bank_live_dir(model_name, started_from)
        if live is None:
            raise ValueError(f"The bank {model_name} has no live version to fine-tune.")
        described = read_slots(live)["slots"]
        slot = style.bank_index if style.in_bank else len(described)
        work_dir = _slot_dir(model_name, style)
        painting = _local_copy(style.painting, work_dir)
        config = training_config(overrides=overrides, painting=str(painting),
                                 out_dir=str(work_dir), train_slot=slot,
                                 init_weights=str(live / BANK_MODEL_FILE))
        config = _run_config(config)
        recorder.start(config=config)
        result = train(config, on_progress=recorder)
        record = _settings_record(result)
        slots = [*described[:slot], _slot_record(style, record), *described[slot + 1:]]
        slots = [{k: v for k, v in entry.items() if k != "slot"} for entry in slots]
        version, _ = export_savedmodel(result.model, settings.SERVING_DIR / "models" / model_name,
                                       slots=slots)
        serving_version_preload(model_name=model_name, version=version)
        slot_of = {s.pk: s.bank_index for s in bank_members(model_name)}
        slot_of[style.pk] = slot
        [style] = _bank_make_live(model_name=model_name, version=version, num_styles=len(slots),
                                  slot_of=slot_of, trained=[style], record=record,
                                  metrics=_metrics_record(result), started_from=started_from)
    except Exception as exc:
        logger.exception("Training %s failed", style.slug)
        reason = f"{type(exc).__name__}: {exc}"
        style_training_fail(style=style, reason=reason)
        recorder.fail(reason=reason)
        raise
    recorder.succeed()
    serving_config_write()
    _own_styles_follow(model_name)
    return style


def _own_styles_follow(model_name: str) -> None:
    """Announce the bank's new live version (``events.bank_went_live``: users' own styles
    of it follow, ``own_styles.own_styles_follow_bank``); a receiver's failure is logged,
    never the bank run's."""
    for receiver, error in events.bank_went_live.send_robust(sender=Style,
                                                             model_name=model_name):
        if isinstance(error, Exception):
            logger.error("After %s went live, %s failed: %r", model_name, receiver, error)


def _run_config(config: "TrainConfig") -> "TrainConfig":
    """``config`` with a checkpoint and a sample image at least once, however short the
    run (the recorder shows the samples)."""
    return config.replace(checkpoint_every=min(config.checkpoint_every, config.steps),
                          sample_every=min(config.sample_every, config.steps))


class BankChanged(RuntimeError):
    """Another training of the same bank went live while this one ran."""


def _bank_lock(model_name: str) -> None:
    """Hold bank ``model_name``'s go-live lock until the transaction ends.

    The members' row locks alone leave a new bank open: two first go-lives bring
    different styles, lock no common row, and both saw no live version (PostgreSQL
    runs them side by side). A transaction-level advisory lock on the bank's name makes
    the second wait, then see the first's version. SQLite needs none: a transaction
    there holds the database's one write lock from its start (IMMEDIATE).
    """
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"prisma-bank:{model_name}".encode()).digest()[:8],
                         "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@transaction.atomic
def _bank_make_live(*, model_name: str, version: int, num_styles: int, slot_of: dict,
                    trained: list[Style], record: dict, metrics: dict,
                    started_from: int | None) -> list[Style]:
    """Point every style of the bank at ``version``; the ``trained`` ones also record
    how they were trained and become drafts (``style_training_succeed``), the others
    (whose slots paint exactly what they did) stay as published as they were. Returns
    the trained styles, fresh from the database.

    Raises :class:`BankChanged` (nothing changed) if the bank's live version is no
    longer ``started_from``, the one this run started from: going live would undo the
    other run's work."""
    _bank_lock(model_name)
    rows = list(Style.objects.select_for_update().filter(
        Q(pk__in=slot_of) | Q(model_name=model_name, bank_index__isnull=False)))
    now_live = _live_version(s for s in rows if s.model_name == model_name and s.in_bank)
    if now_live != started_from:
        raise BankChanged(
            f"The bank {model_name} went from version {started_from} to {now_live} while this "
            f"run trained; version {version} was exported but not made live. Train again.")
    trained_pks = {s.pk for s in trained}
    done = []
    for style in (s for s in rows if s.pk in slot_of):
        style.model_name = model_name
        style.bank_index = slot_of[style.pk]
        style.bank_slots = num_styles
        if style.pk in trained_pks:
            done.append(style_training_succeed(style=style, version=version,
                                               training_settings=record, metrics=metrics))
        else:
            # Its output is unchanged in the new version: it moves with it.
            style.live_version = version
            style.save(update_fields=["model_name", "bank_index", "bank_slots", "live_version",
                                      "updated_at"])
    return sorted(done, key=lambda style: style.bank_index)


def _identity_slot() -> dict:
    return {"slug": None, "name": "The photo itself", "identity": True}


def _slot_record(style: Style, record: dict) -> dict:
    return {"slug": style.slug, "name": style.name, "painting": Path(style.painting.name).name,
            "settings": record}


def _settings_record(result) -> dict:
    """How a version was trained (``result.config``: the settings as trained), as stored
    on the style and in slots.json."""
    config = result.config
    return {
        **{k: v for k, v in config.as_dict().items()
           if k not in ("painting", "out_dir", "paintings", "init_weights")},
        "painting_size": config.painting_size,
        "precision": result.precision,
        "steps_done": result.steps,
        "seconds": round(result.seconds, 1),
        "skipped_photos": result.skipped_photos,
        "trained_at": timezone.now().isoformat(),
    }


def _metrics_record(result) -> dict:
    return {"train": {"final": _rounded(result.final_losses), "mean": _rounded(result.mean_losses)}}


def style_evaluate(*, style: Style, images_dir: Path, sheet_path: Path,
                   loss_network: str | None = None, loss_weights: str | None = None,
                   quality_weights: str | None = None, max_side: int | None = 512) -> dict:
    """Mean content, style and TV loss of the live version on held-out photos.

    Stores them on the style (``metrics["heldout"]``) and writes a contact sheet at
    ``sheet_path``, which also becomes the style's ``training_sheet`` (the admin shows
    it; ``metrics["heldout"]["sheet"]`` names the stored copy).
    """
    from ml.evaluate import contact_sheet, evaluate

    if style.live_version is None:
        raise ValueError(f"{style.name} has no trained version to evaluate.")
    trained = style.training_settings or {}
    network = loss_network or trained.get("loss_network", "vgg19")
    weights = loss_weights or trained.get("loss_weights", "imagenet")
    stylize = style_stylize_fn(style)
    painting = _local_copy(style.painting, training_dir(style))

    started = time.perf_counter()
    report = evaluate(stylize, str(images_dir), str(painting), network=network,
                      weights=weights, quality_weights=quality_weights, max_side=max_side)
    contact_sheet(report.originals, report.results, sheet_path)
    heldout = {
        "version": style.live_version,
        "loss_network": network,
        "photos": len(report.photos),
        "losses": _rounded(report.losses),
        "quality": _rounded(report.quality),
        "seconds_per_photo": round(report.seconds_per_photo, 3),
        "seconds": round(time.perf_counter() - started, 1),
        "contact_sheet": str(sheet_path),
    }
    stored = _training_image_store(sheet_path, f"{style.slug}-heldout-v{style.live_version}")
    heldout["sheet"] = stored
    with transaction.atomic():
        style = Style.objects.select_for_update().get(pk=style.pk)
        replaced = style.training_sheet.name
        style.metrics = {**style.metrics, "heldout": heldout}
        style.training_sheet = stored
        style.save(update_fields=["metrics", "training_sheet", "updated_at"])
    _training_images_forget([replaced])
    return heldout


def style_stylize_fn(style: Style):
    """uint8 batch -> uint8 batch through ``style``'s live version, in this process
    (a bank style at full strength in its own slot)."""
    from ml.export import load_savedmodel_fn

    stylize = load_savedmodel_fn(model_dir(style) / str(style.live_version))
    if not style.in_bank:
        return stylize
    weights = mix_weights(stylize.num_styles, style.bank_index)
    return lambda images: stylize(images, weights)


def serving_config_write(*, preload: dict[str, int] | None = None) -> Path:
    """Rewrite ``serving/models.config`` to list every style with a live version.

    ``preload`` adds a not-yet-live version of a model beside its live one. A version
    whose folder under ``SERVING_DIR/models`` holds no readable SavedModel is left out
    with a warning (TF Serving would refuse to start on it), so one bad row or folder
    never stops the others being served.
    """
    from ml.export import write_models_config

    versions: dict[str, set[int]] = {}
    wanted = [(style.model_name, style.live_version,
               f"{style.model_name} version {style.live_version} ({style.name})")
              for style in style_list_served()]
    wanted += [(name, version, f"{name} version {version} (not live yet)")
               for name, version in (preload or {}).items()]
    for name, version, what in wanted:
        if problem := _unservable(name, version):
            logger.warning("models.config leaves out %s: %s", what, problem)
            continue
        versions.setdefault(name, set()).add(version)
    base = settings.TFSERVING_MODEL_BASE_PATH.rstrip("/")
    models = [(name, f"{base}/{name}", sorted(versions[name])) for name in sorted(versions)]
    return write_models_config(settings.SERVING_DIR / "models.config", models)


def _unservable(model_name: str, version) -> str | None:
    """Why Serving could not load ``version`` of ``model_name`` from ``SERVING_DIR``."""
    if not model_name:
        return "it has no model name"
    if not isinstance(version, int) or version < 1:
        return f"{version!r} is not a version number"
    saved_model = settings.SERVING_DIR / "models" / model_name / str(version) / "saved_model.pb"
    if not saved_model.is_file():
        return f"{saved_model} does not exist"
    if not os.access(saved_model, os.R_OK):
        return f"{saved_model} cannot be read"
    return None


def serving_version_preload(*, model_name: str, version: int) -> None:
    """With TF Serving, have it load a new version before any job asks for it.

    Serving only loads what models.config lists, and a job for a version it has not
    loaded would fail; so the new version is listed beside the live one until
    Serving reports it available. The local backend loads on demand: nothing to do.
    """
    if settings.MODEL_BACKEND != "tfserving":
        return
    from stylize.backends import get_backend

    serving_config_write(preload={model_name: version})
    backend = get_backend()
    deadline = time.monotonic() + settings.TFSERVING_LOAD_TIMEOUT
    while not backend.is_ready(model_name=model_name, version=version):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"TF Serving did not load version {version} within "
                f"{settings.TFSERVING_LOAD_TIMEOUT} s; the live version is unchanged."
            )
        time.sleep(2)


def _local_copy(field_file, folder: Path, stem: str = "painting") -> Path:
    """A file on local disk with the stored file's content (storage may be S3)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}{Path(field_file.name).suffix.lower()}"
    with field_file.open("rb") as source, open(target, "wb") as copy:
        shutil.copyfileobj(source, copy)
    return target


def _rounded(values: dict) -> dict:
    return {name: round(float(value), 6) for name, value in values.items()}


# --------------------------------------------------------------------------- progress

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
        return _training_image_store(path, stem)

    def _forget(self, names) -> None:
        if self.private:
            _private_images_forget(names)
        else:
            _training_images_forget(names)

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


def _training_image_store(path: Path, stem: str) -> str:
    """Copy a PNG of a run into the storage of ``Style.training_sample``/``_sheet``
    (public media, like paintings), under an unguessable name; returns the name."""
    field = Style._meta.get_field("training_sample")
    name = field.generate_filename(None, f"{stem}-{secrets.token_hex(8)}.png")
    with open(path, "rb") as source:
        return field.storage.save(name, File(source), max_length=field.max_length)


def _training_images_forget(names) -> None:
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
