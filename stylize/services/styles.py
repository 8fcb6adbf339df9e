"""Styles: the shipped styles registered as ready public ones, and retraining queued.

Training itself (status while it runs, the new version made live) is
``stylize.services.training``.
"""

import logging
from pathlib import Path

from django.core.files import File
from django.db import IntegrityError, transaction

from stylize.models import Style

from . import queueing

logger = logging.getLogger(__name__)


def shipped_versions(model_dir: Path) -> list[int]:
    """Version directories of one model under serving/models/ that hold a SavedModel."""
    from ml.export import exported_versions

    return exported_versions(model_dir)


def styles_register_shipped(*, serving_dir: Path) -> list[Style]:
    """Create a ready public style for every style shipped under ``serving_dir``
    (``ml.shipped.shipped_styles``: a single-style model, or each slot of a bank).

    The painting, sample and description come from the style's ``style.json``. Styles
    already in the database keep what staff changed; only a newer shipped version is
    made live, and a style that a shipped bank now paints moves into it (its old jobs
    keep their results). A style whose metadata is missing, or whose slot is taken, is
    skipped with a warning.
    """
    from ml.shipped import shipped_styles

    registered = []
    for shipped in shipped_styles(serving_dir):
        if shipped.painting is None:
            logger.warning("Skipping %s: %s is missing or names no painting.",
                           shipped.key, shipped.meta_file)
            continue
        if not shipped.meta.get("name"):
            logger.warning("Skipping %s: %s gives no name.", shipped.key, shipped.meta_file)
            continue
        try:
            register = _style_register_slot if shipped.in_bank else _style_register_one
            style = register(shipped=shipped)
        except (IntegrityError, OSError, ValueError) as error:
            # A slot held by a style trained here, a painting that cannot be read, a
            # bad value: this style is skipped, the others still register.
            logger.warning("Skipping %s: %s", shipped.key, error)
            continue
        registered.append(style)
    return registered


@transaction.atomic
def _style_register_slot(*, shipped) -> Style:
    """A shipped bank's slot: its style row (made, or moved in from anywhere) goes live."""
    style = Style.objects.select_for_update().filter(slug=shipped.slug).first()
    if style is None:
        style = _style_from_shipped(shipped)
    elif (style.model_name == shipped.model and style.live_version is not None
          and style.live_version >= shipped.version):
        return style  # trained here since, or already registered
    style.model_name = shipped.model
    style.bank_index = shipped.slot
    style.bank_slots = shipped.num_styles
    return _style_go_live(style, shipped.version)


@transaction.atomic
def _style_register_one(*, shipped) -> Style:
    """A shipped single-style model: its style row is made, or its newer version goes live."""
    style = Style.objects.select_for_update().filter(
        model_name=shipped.model, bank_index__isnull=True).first()
    if style is None:
        moved = Style.objects.filter(slug=shipped.slug).first()
        if moved is not None:
            # Retrained into a bank (or renamed by staff): it no longer uses this model.
            return moved
        style = _style_from_shipped(shipped)
    elif style.live_version is not None and style.live_version >= shipped.version:
        return style
    return _style_go_live(style, shipped.version)


def _style_go_live(style: Style, version: int) -> Style:
    style.live_version = version
    style.status = Style.Status.READY
    style.status_reason = ""
    style.save()
    return style


def _style_from_shipped(shipped) -> Style:
    """A new (unsaved) style with the shipped painting, sample and description."""
    meta = shipped.meta
    style = Style(
        model_name=shipped.model,
        name=meta["name"],
        slug=shipped.slug,
        description=meta.get("description", ""),
        training_settings=meta.get("training", {}),
        metrics=meta.get("metrics", {}),
        is_public=meta.get("is_public", True),
    )
    with open(shipped.painting, "rb") as painting:
        style.painting.save(shipped.painting.name, File(painting), save=False)
    if meta.get("sample"):
        sample_path = shipped.meta_file.parent / meta["sample"]
        with open(sample_path, "rb") as sample:
            style.sample.save(Path(meta["sample"]).name, File(sample), save=False)
    return style


def styles_retrain(*, styles) -> int:
    """Queue a retrain of each of ``styles`` once the transaction commits (the training
    queue; ``stylize.tasks.style_train``). The task builds its config from the settings
    in force where it runs. Returns how many were queued."""
    styles = list(styles)
    for style in styles:
        queueing.style_train_send(style_id=style.pk, overrides={})
    return len(styles)
