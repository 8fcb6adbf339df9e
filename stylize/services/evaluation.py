"""How well a style's live version paints photos it never trained on.

:func:`style_evaluate` scores the live version on held-out photos (``ml.evaluate``:
content, style and TV loss, and the quality measures), stores the numbers on the style
(``metrics["heldout"]``, which staff need before publishing it:
``services.styles.style_publish``) and its contact sheet as ``training_sheet``.
:func:`style_stylize_fn` runs a live version in this process (TensorFlow is loaded
then, never at import).
"""

import time
from pathlib import Path

from django.db import transaction

from stylize.models import Style

from .model_files import local_copy, model_dir, training_dir
from .training_progress import training_image_store, training_images_forget


def style_evaluate(*, style: Style, images_dir: Path, sheet_path: Path,
                   loss_network: str | None = None, loss_weights: str | None = None,
                   quality_weights: str | None = None, max_side: int | None = 512) -> dict:
    """Mean content, style and TV loss of the live version on held-out photos.

    Stores them on the style (``metrics["heldout"]``) and writes a contact sheet at
    ``sheet_path``, which also becomes the style's ``training_sheet`` (the admin shows
    it; ``metrics["heldout"]["sheet"]`` names the stored copy). ``ValueError`` if the
    style has no live version.
    """
    from ml.evaluate import contact_sheet, evaluate

    if style.live_version is None:
        raise ValueError(f"{style.name} has no trained version to evaluate.")
    trained = style.training_settings or {}
    network = loss_network or trained.get("loss_network", "vgg19")
    weights = loss_weights or trained.get("loss_weights", "imagenet")
    stylize = style_stylize_fn(style)
    painting = local_copy(style.painting, training_dir(style))

    started = time.perf_counter()
    report = evaluate(stylize, str(images_dir), str(painting), network=network,
                      weights=weights, quality_weights=quality_weights, max_side=max_side)
    contact_sheet(report.originals, report.results, sheet_path)
    heldout = {
        "version": style.live_version,
        "loss_network": network,
        "photos": len(report.photos),
        "losses": metrics_rounded(report.losses),
        "quality": metrics_rounded(report.quality),
        "seconds_per_photo": round(report.seconds_per_photo, 3),
        "seconds": round(time.perf_counter() - started, 1),
        "contact_sheet": str(sheet_path),
    }
    stored = training_image_store(sheet_path, f"{style.slug}-heldout-v{style.live_version}")
    heldout["sheet"] = stored
    with transaction.atomic():
        style = Style.objects.select_for_update().get(pk=style.pk)
        replaced = style.training_sheet.name
        style.metrics = {**style.metrics, "heldout": heldout}
        style.training_sheet = stored
        style.save(update_fields=["metrics", "training_sheet", "updated_at"])
    training_images_forget([replaced])
    return heldout


def style_stylize_fn(style: Style):
    """uint8 batch -> uint8 batch through ``style``'s live version, in this process
    (a bank style at full strength in its own slot)."""
    from ml.export import load_savedmodel_fn

    stylize = load_savedmodel_fn(model_dir(style) / str(style.live_version))
    weights = style.paint_slot.inputs().style_weights
    return lambda images: stylize(images, weights)


def metrics_rounded(values: dict) -> dict:
    """Metric values as stored in ``Style.metrics``: floats to 6 decimals."""
    return {name: round(float(value), 6) for name, value in values.items()}
