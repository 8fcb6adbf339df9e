"""Train, export and evaluate a style's network; keep TF Serving's model list in step.

The ML work itself lives in ``ml/`` (no Django there); these services wire it to the
``Style`` row: status while training, the exported version made live, the reason when
it fails (the live version stays), and ``serving/models.config`` rewritten to list every
ready style at its live version.
"""

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Style
from .selectors import style_list_served
from .services import style_training_fail, style_training_start, style_training_succeed

if TYPE_CHECKING:
    from ml.config import TrainConfig

logger = logging.getLogger(__name__)


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
    return settings.VAR_DIR / "training" / style.model_name


def model_dir(style: Style) -> Path:
    return settings.SERVING_DIR / "models" / style.model_name


def style_train(*, style: Style, overrides: dict | None = None, on_progress=None) -> Style:
    """Train ``style``'s network, export it as the next version and make it live.

    ``overrides``: ``TrainConfig`` fields over ``settings.TRAINING_OVERRIDES`` (see
    :func:`training_config`). On any failure the style records why and keeps serving
    its previous version.
    """
    from ml.export import export_savedmodel
    from ml.train import train

    style_training_start(style=style)
    try:
        work_dir = training_dir(style)
        painting = _local_copy(style.style_image, work_dir)
        config = training_config(overrides=overrides, style_image=str(painting),
                                 out_dir=str(work_dir))
        config = config.replace(checkpoint_every=min(config.checkpoint_every, config.steps))
        result = train(config, on_progress=on_progress)
        version, _ = export_savedmodel(result.model, model_dir(style))
        serving_version_preload(style=style, version=version)
    except Exception as exc:
        logger.exception("Training %s failed", style.slug)
        style_training_fail(style=style, reason=f"{type(exc).__name__}: {exc}")
        raise
    style_training_succeed(
        style=style,
        version=version,
        training_settings={
            **{k: v for k, v in config.as_dict().items() if k not in ("style_image", "out_dir")},
            "painting_size": config.painting_size,
            "precision": result.precision,
            "steps_done": result.steps,
            "seconds": round(result.seconds, 1),
            "skipped_photos": result.skipped_photos,
            "trained_at": timezone.now().isoformat(),
        },
        metrics={
            "train": {
                "final": _rounded(result.final_losses),
                "mean": _rounded(result.mean_losses),
            }
        },
    )
    serving_config_write()
    return style


def style_evaluate(*, style: Style, images_dir: Path, sheet_path: Path,
                   loss_network: str | None = None, loss_weights: str | None = None,
                   quality_weights: str | None = None, max_side: int | None = 512) -> dict:
    """Mean content, style and TV loss of the live version on held-out photos.

    Stores them on the style (``metrics["heldout"]``) and writes a contact sheet.
    """
    from ml.evaluate import contact_sheet, evaluate
    from ml.export import load_savedmodel_fn

    if style.live_version is None:
        raise ValueError(f"{style.name} has no trained version to evaluate.")
    trained = style.training_settings or {}
    network = loss_network or trained.get("loss_network", "vgg19")
    weights = loss_weights or trained.get("loss_weights", "imagenet")
    stylize = load_savedmodel_fn(model_dir(style) / str(style.live_version))
    painting = _local_copy(style.style_image, training_dir(style))

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


def serving_config_write(*, preload: dict[str, int] | None = None) -> Path:
    """Rewrite ``serving/models.config`` to list every style with a live version.

    ``preload`` adds a not-yet-live version of a model beside its live one.
    """
    from ml.export import write_models_config

    versions = {style.model_name: {style.live_version} for style in style_list_served()}
    for name, version in (preload or {}).items():
        versions.setdefault(name, set()).add(version)
    base = settings.TFSERVING_MODEL_BASE_PATH.rstrip("/")
    models = [(name, f"{base}/{name}", sorted(versions[name])) for name in sorted(versions)]
    return write_models_config(settings.SERVING_DIR / "models.config", models)


def serving_version_preload(*, style: Style, version: int) -> None:
    """With TF Serving, have it load a new version before any job asks for it.

    Serving only loads what models.config lists, and a job for a version it has not
    loaded would fail; so the new version is listed beside the live one until
    Serving reports it available. The local backend loads on demand: nothing to do.
    """
    if settings.MODEL_BACKEND != "tfserving":
        return
    from .backends import get_backend

    serving_config_write(preload={style.model_name: version})
    backend = get_backend()
    deadline = time.monotonic() + settings.TFSERVING_LOAD_TIMEOUT
    while not backend.is_ready(model_name=style.model_name, version=version):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"TF Serving did not load version {version} within "
                f"{settings.TFSERVING_LOAD_TIMEOUT} s; the live version is unchanged."
            )
        time.sleep(2)


def _local_copy(field_file, folder: Path) -> Path:
    """A file on local disk with the stored file's content (storage may be S3)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"painting{Path(field_file.name).suffix.lower()}"
    with field_file.open("rb") as source, open(target, "wb") as copy:
        shutil.copyfileobj(source, copy)
    return target


def _rounded(values: dict) -> dict:
    return {name: round(float(value), 6) for name, value in values.items()}
