"""Train and export styles' networks, and make the new version live.

The ML work itself lives in ``ml/`` (no Django there); these services wire it to the
``Style`` rows: status while training, the exported version made live (a draft, which
users are not offered until staff publish it: ``services.styles.style_publish``), the
reason when it fails (the live version stays), and ``serving/models.config`` rewritten
to list every ready style at its live version (``services.serving``).

Every network is a *bank* (one conditional network, ``ml.bank``) whose slots are
styles; a style of its own is a bank of the identity and itself. :func:`bank_train`
trains a bank jointly; :func:`style_train` retrains one style: a style that shares its
bank by fine-tuning only its slot, a new style by joining ``settings.DEFAULT_BANK``
when that bank exists, else as a bank of its own. Where each run works and each version
lands, and which version of a bank is live: ``services.model_files``.

Every run reports as it goes through a ``TrainingRecorder`` (its ``on_progress``,
``services.training_progress``): ``Style.training_progress`` (step, loss terms, time
left, a thinned loss history), ``Style.training_sample`` (the latest sample image) and,
when it ends well, ``Style.training_sheet``; the admin shows them
(``docs/design/training-admin.md``). A live version is scored on held-out photos by
``services.evaluation``.
"""

import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from ml.servable import IDENTITY_SLOT, painted_slot, with_slot
from stylize.models import Style

from . import events
from .evaluation import metrics_rounded
from .model_files import (
    bank_live_dir,
    bank_live_version,
    bank_members,
    bank_name_check,
    live_version,
    local_copy,
    slot_dir,
)
from .serving import serving_config_write, serving_version_preload
from .training_progress import TrainingRecorder

if TYPE_CHECKING:
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


def style_train(*, style: Style, overrides: dict | None = None, on_progress=None) -> Style:
    """Retrain ``style`` and make the new version live, as a draft that staff publish.

    A style in a bank with other styles fine-tunes its own slot (every other style's
    output stays bit-identical); a new style (never trained) joins
    ``settings.DEFAULT_BANK`` as a new slot when that bank has a live version;
    otherwise it trains a bank of its own, the identity and the style
    (:func:`bank_train`).
    ``overrides``: ``TrainConfig`` fields over ``settings.TRAINING_OVERRIDES`` (see
    :func:`training_config`). On any failure the style records why and keeps serving
    its previous version.
    """
    if style.is_own:
        raise ValueError(f"{style.slug} is a user's own style: services.own_styles learns it.")
    joins_default_bank = (style.live_version is None and settings.DEFAULT_BANK
                          and bank_live_dir(settings.DEFAULT_BANK) is not None)
    shares_a_bank = (style.bank_index is not None
                     and [m.pk for m in bank_members(style.model_name)] != [style.pk])
    if shares_a_bank or joins_default_bank:
        return _slot_train(style=style, overrides=overrides, on_progress=on_progress)
    # A style of its own is a bank of the identity and itself, named after it, trained
    # whole.
    [trained] = bank_train(model_name=style.model_name, styles=[style], overrides=overrides,
                           on_progress=on_progress)
    return trained


def bank_train(*, model_name: str, styles: list[Style], overrides: dict | None = None,
               on_progress=None) -> list[Style]:
    """Train bank ``model_name`` jointly on its members plus ``styles``, export the
    next version and make it live for all of them, each a draft that staff publish.

    Members keep their slots; styles new to the bank take the next ones in the order
    given. A style of another bank is refused (``ValueError``). On failure every
    style records why and keeps what it served.
    """
    members = bank_members(model_name)
    for style in styles:
        if style.bank_index is not None and style.model_name != model_name:
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
    bank_name_check(model_name, lineup)
    painted = [by_slot[slot] for slot in range(1, num_styles)]

    def plan() -> _RunPlan:
        work_dir = settings.VAR_DIR / "training" / model_name
        paintings = [local_copy(style.painting, work_dir / "paintings", stem=style.slug)
                     for style in painted]
        config = training_config(overrides=overrides, paintings=tuple(map(str, paintings)),
                                 painting="", out_dir=str(work_dir))
        return _RunPlan(config=config, slot_of=slot_of, slots=lambda record: [
            IDENTITY_SLOT, *(_painted_slot(style, record) for style in painted)])

    # One run trains every slot: each member's page shows it.
    return _train_version(model_name=model_name, styles=lineup, plan=plan,
                          started_from=live_version(members), on_progress=on_progress,
                          recorder_name=model_name,
                          failure=("Training the bank %s failed", model_name))


def _slot_train(*, style: Style, overrides: dict | None, on_progress) -> Style:
    """Fine-tune ``style``'s slot of its bank (or a new slot of the default bank)."""
    model_name = style.model_name if style.bank_index is not None else settings.DEFAULT_BANK
    started_from = bank_live_version(model_name)

    def plan() -> _RunPlan:
        from ml.export import BANK_MODEL_FILE, read_slots

        live = None if started_from is None else bank_live_dir(model_name, started_from)
        if live is None:
            raise ValueError(f"The bank {model_name} has no live version to fine-tune.")
        described = read_slots(live)["slots"]
        slot = style.bank_index if style.bank_index is not None else len(described)
        work_dir = slot_dir(model_name, style)
        config = training_config(overrides=overrides,
                                 painting=str(local_copy(style.painting, work_dir)),
                                 out_dir=str(work_dir), train_slot=slot,
                                 init_weights=str(live / BANK_MODEL_FILE))
        slot_of = {s.pk: s.bank_index for s in bank_members(model_name)}
        slot_of[style.pk] = slot
        return _RunPlan(config=config, slot_of=slot_of, slots=lambda record: with_slot(
            described, slot, _painted_slot(style, record)))

    # Only this slot changes: the run is this style's alone.
    [style] = _train_version(model_name=model_name, styles=[style], plan=plan,
                             started_from=started_from, on_progress=on_progress,
                             failure=("Training %s failed", style.slug))
    return style


@dataclass(frozen=True)
class _RunPlan:
    """What one run trains and makes: ``config`` (``ml.config.TrainConfig``), the slot
    of every bank member in the new version (``slot_of``: pk → slot) and
    ``slots(record)``, every slot's description for ``slots.json`` given how the run
    trained (``ml.servable.settings_record``)."""

    config: "TrainConfig"
    slot_of: dict[int, int]
    slots: Callable[[dict], list[dict]]


def _train_version(*, model_name: str, styles: list[Style], plan: Callable[[], _RunPlan],
                   started_from: int | None, on_progress, failure: tuple[str, str],
                   recorder_name: str | None = None) -> list[Style]:
    """The one training pipeline: ``styles`` start training; ``plan()`` (inside the run,
    so that its failures count as the run's) says what to train; ``ml.train.
    train_servable`` trains it and exports the next version of ``model_name``, which
    Serving loads (preloaded here) and which goes live for the bank's styles, the
    trained ones as drafts (:func:`_bank_make_live`). On any failure each style records
    why and keeps what it served (:func:`_training_run`)."""
    from ml.train import train_servable

    for style in styles:
        style_training_start(style=style)
    recorder = TrainingRecorder(styles=styles, on_progress=on_progress, name=recorder_name)
    with _training_run(model_name=model_name, styles=styles, recorder=recorder,
                       failure=failure):
        run = plan()
        config = _run_config(run.config)
        recorder.start(config=config)
        servable = train_servable(config, settings.SERVING_DIR / "models" / model_name,
                                  slots=run.slots, on_progress=recorder)
        serving_version_preload(model_name=model_name, version=servable.version)
        trained = _bank_make_live(
            model_name=model_name, version=servable.version,
            num_styles=servable.num_styles, slot_of=run.slot_of, trained=styles,
            record=servable.record, metrics=_metrics_record(servable.result),
            started_from=started_from)
    return trained


@contextmanager
def _training_run(*, model_name: str, styles: list[Style], recorder: TrainingRecorder,
                  failure: tuple[str, str]):
    """Around one training run of bank ``model_name`` for ``styles``. On any exception
    inside: log ``failure`` (a message and its arguments) with the traceback, fail each
    style (``style_training_fail``: what it served stays live) and the recorder with the
    exception as the reason, and raise it again. Once the run ends well: the recorder
    succeeds, ``serving/models.config`` is rewritten and the bank's new live version is
    announced (``_own_styles_follow``)."""
    try:
        yield
    except Exception as exc:
        logger.exception(*failure)
        reason = f"{type(exc).__name__}: {exc}"
        for style in styles:
            style_training_fail(style=style, reason=reason)
        recorder.fail(reason=reason)
        raise
    recorder.succeed()
    serving_config_write()
    _own_styles_follow(model_name)


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
    now_live = live_version(s for s in rows
                            if s.model_name == model_name and s.bank_index is not None)
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


def _painted_slot(style: Style, record: dict) -> dict:
    """``slots.json``'s description of ``style``'s slot, trained as ``record`` says."""
    return painted_slot(style.slug, style.name, Path(style.painting.name).name, record)


def _metrics_record(result) -> dict:
    return {"train": {"final": metrics_rounded(result.final_losses),
                      "mean": metrics_rounded(result.mean_losses)}}
