"""Train, export and evaluate styles' networks; keep TF Serving's model list in step.

The ML work itself lives in ``ml/`` (no Django there); these services wire it to the
``Style`` rows: status while training, the exported version made live, the reason when
it fails (the live version stays), and ``serving/models.config`` rewritten to list every
ready style at its live version.

Two kinds of network: a single-style model, and a *bank* (one conditional network,
``ml.bank``) whose slots are styles. :func:`bank_train` trains a bank jointly;
:func:`style_train` retrains one style: a bank style by fine-tuning only its slot, a
new style by joining ``settings.DEFAULT_BANK`` when that bank exists, else as a
single-style model.
"""

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from stylize.models import Style
from stylize.selectors import style_list_served

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
    style.live_version = version
    style.status = Style.Status.READY
    style.status_reason = ""
    style.training_settings = training_settings
    style.metrics = metrics
    style.save()
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
    """Retrain ``style`` and make the new version live.

    A style in a bank fine-tunes its own slot (every other style's output stays
    bit-identical); a new style (never trained) joins ``settings.DEFAULT_BANK`` as a new
    slot when that bank has a live version; otherwise (and for a trained single-style
    style) it trains a single-style network.
    ``overrides``: ``TrainConfig`` fields over ``settings.TRAINING_OVERRIDES`` (see
    :func:`training_config`). On any failure the style records why and keeps serving
    its previous version.
    """
    joins_default_bank = (style.live_version is None and settings.DEFAULT_BANK
                          and bank_live_dir(settings.DEFAULT_BANK) is not None)
    if style.in_bank or joins_default_bank:
        return _slot_train(style=style, overrides=overrides, on_progress=on_progress)
    return _single_train(style=style, overrides=overrides, on_progress=on_progress)


def _single_train(*, style: Style, overrides: dict | None, on_progress) -> Style:
    from ml.export import export_savedmodel
    from ml.train import train

    style_training_start(style=style)
    try:
        work_dir = training_dir(style)
        painting = _local_copy(style.painting, work_dir)
        config = training_config(overrides=overrides, painting=str(painting),
                                 out_dir=str(work_dir))
        config = config.replace(checkpoint_every=min(config.checkpoint_every, config.steps))
        result = train(config, on_progress=on_progress)
        version, _ = export_savedmodel(result.model, model_dir(style))
        serving_version_preload(model_name=style.model_name, version=version)
    except Exception as exc:
        logger.exception("Training %s failed", style.slug)
        style_training_fail(style=style, reason=f"{type(exc).__name__}: {exc}")
        raise
    style_training_succeed(
        style=style,
        version=version,
        training_settings=_settings_record(result),
        metrics=_metrics_record(result),
    )
    serving_config_write()
    return style


def bank_train(*, model_name: str, styles: list[Style], overrides: dict | None = None,
               on_progress=None) -> list[Style]:
    """Train bank ``model_name`` jointly on its members plus ``styles``, export the
    next version and make it live for all of them.

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
    try:
        work_dir = settings.VAR_DIR / "training" / model_name
        paintings = [_local_copy(by_slot[slot].painting, work_dir / "paintings",
                                 stem=by_slot[slot].slug) for slot in range(1, num_styles)]
        config = training_config(overrides=overrides, paintings=tuple(str(p) for p in paintings),
                                 painting="", out_dir=str(work_dir))
        config = config.replace(checkpoint_every=min(config.checkpoint_every, config.steps))
        result = train(config, on_progress=on_progress)
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
        for style in lineup:
            style_training_fail(style=style, reason=f"{type(exc).__name__}: {exc}")
        raise
    serving_config_write()
    return trained


def _slot_train(*, style: Style, overrides: dict | None, on_progress) -> Style:
    """Fine-tune ``style``'s slot of its bank (or a new slot of the default bank)."""
    from ml.export import BANK_MODEL_FILE, export_savedmodel, read_slots
    from ml.train import train

    model_name = style.model_name if style.in_bank else settings.DEFAULT_BANK
    started_from = bank_live_version(model_name)
    style_training_start(style=style)
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
        config = config.replace(checkpoint_every=min(config.checkpoint_every, config.steps))
        result = train(config, on_progress=on_progress)
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
        style_training_fail(style=style, reason=f"{type(exc).__name__}: {exc}")
        raise
    serving_config_write()
    return style


class BankChanged(RuntimeError):
    """Another training of the same bank went live while this one ran."""


@transaction.atomic
def _bank_make_live(*, model_name: str, version: int, num_styles: int, slot_of: dict,
                    trained: list[Style], record: dict, metrics: dict,
                    started_from: int | None) -> list[Style]:
    """Point every style of the bank at ``version``; the ``trained`` ones also record
    how they were trained. Returns the trained styles, fresh from the database.

    Raises :class:`BankChanged` (nothing changed) if the bank's live version is no
    longer ``started_from``, the one this run started from: going live would undo the
    other run's work."""
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

    Stores them on the style (``metrics["heldout"]``) and writes a contact sheet.
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
    with transaction.atomic():
        style = Style.objects.select_for_update().get(pk=style.pk)
        style.metrics = {**style.metrics, "heldout": heldout}
        style.save(update_fields=["metrics", "updated_at"])
    return heldout


def style_stylize_fn(style: Style):
    """uint8 batch -> uint8 batch through ``style``'s live version, in this process
    (a bank style at full strength in its own slot)."""
    from ml.bank import mix_weights
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
