"""Evaluate a trained style on held-out photos, and draw contact sheets.

``evaluate`` runs a stylize function over a folder of photos at their own
size (the blob artefacts of a net trained at 256 px show only at the sizes
users upload) and reports the mean weighted content, style and TV terms of
``ml.losses.PerceptualLoss`` there, plus the quality measure of
``ml.quality.evaluate_style`` (photos at 384 px, painting at 256 px: the same
numbers as ``make bench-quality`` and every other report of a style).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ml.data import list_images
from ml.losses import LOSS_NAMES

# Takes a uint8 (1, H, W, 3) RGB batch, returns its stylized version (uint8 or
# float in [0, 255]) of the same size, e.g. ml.export.load_savedmodel_fn(path).
StylizeFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvaluationReport:
    losses: dict[str, float]  # mean over photos of each weighted loss term
    quality: dict[str, float]  # ml.quality.evaluate_style's SCORE_NAMES over all photos
    per_photo: list[dict] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)
    seconds_per_photo: float = 0.0
    # The photos as evaluated and their results (uint8 HxWx3), e.g. for a contact sheet.
    originals: list = field(default_factory=list, repr=False)
    results: list = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {
            "losses": self.losses,
            "quality": self.quality,
            "per_photo": self.per_photo,
            "photos": self.photos,
            "seconds_per_photo": self.seconds_per_photo,
        }


def load_photo(path, max_side: int | None = None) -> np.ndarray:
    """A photo as uint8 RGB (H, W, 3), shrunk so its longer side is <= max_side."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if max_side is not None and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


def keras_stylize_fn(model, style_weights) -> StylizeFn:
    """Wrap a Keras TransformNet as a uint8 batch -> uint8 batch function painting every
    image with the ``style_weights`` row (float32 ``(S,)``, e.g. ``ml.bank.mix_weights``)."""
    from keras import ops

    row = np.asarray(style_weights, np.float32)[None]

    def stylize(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        weights = np.repeat(row, len(images), axis=0)
        return _as_uint8(ops.convert_to_numpy(model(images, weights)))

    return stylize


def evaluate(
    stylize: StylizeFn,
    photos: str | os.PathLike | Sequence[str],
    painting,
    *,
    loss=None,
    network: str = "vgg19",
    weights="imagenet",
    max_side: int | None = None,
    quality: bool = True,
    quality_network=None,
    quality_weights=None,
    **loss_kwargs,
) -> EvaluationReport:
    """Mean losses and quality measures of ``stylize`` over held-out photos.

    Args:
        stylize: uint8 (1, H, W, 3) batch -> stylized batch of the same size
            (``ml.export.load_savedmodel_fn(path)`` with a slot's weights, or
            ``keras_stylize_fn(model, weights)``).
        photos: a folder (searched recursively) or a list of image paths.
        painting: the style image (path or HxWx3 array in [0, 255]).
        loss: a ready ``PerceptualLoss``; otherwise one is built from
            ``network``, ``weights`` and ``loss_kwargs`` (term weights, layers).
        max_side: shrink photos whose longer side exceeds this first (for the
            losses and ``originals``/``results``; the quality measure always
            works at its own sizes).
        quality: also score with ``ml.quality.evaluate_style`` (on VGG16): it
            runs ``stylize`` once more per photo, at 384 px.
        quality_network: a VGG16 ``build_loss_network`` outputting
            ``ml.quality.QUALITY_LAYERS``. By default the loss's own network
            when that is VGG16 with those layers, else one built with
            ``quality_weights`` (default: ``weights`` for VGG16, else "imagenet").
    """
    paths = _photo_paths(photos)
    if loss is None:
        from ml.losses import PerceptualLoss

        loss = PerceptualLoss(painting, network=network, weights=weights, **loss_kwargs)

    per_photo, originals, results = [], [], []
    stylize_seconds = 0.0
    for path in paths:
        photo = load_photo(path, max_side)
        before = time.perf_counter()
        result = _as_uint8(stylize(photo[None]))[0]
        stylize_seconds += time.perf_counter() - before
        per_photo.append({"photo": path, **_loss_terms(loss, photo, result)})
        originals.append(photo)
        results.append(result)

    scores = {}
    if quality:
        from ml.quality import SCORE_NAMES, evaluate_style

        network = quality_network or _quality_network(loss, weights, quality_weights)
        report = evaluate_style(paths, painting, network,
                                stylize=lambda photo: _as_uint8(stylize(photo[None]))[0])
        scores = {name: float(report[name]) for name in SCORE_NAMES}
    return EvaluationReport(
        losses={name: float(np.mean([row[name] for row in per_photo])) for name in LOSS_NAMES},
        quality=scores,
        per_photo=per_photo,
        photos=paths,
        seconds_per_photo=stylize_seconds / len(paths),
        originals=originals,
        results=results,
    )


def _loss_terms(loss, photo: np.ndarray, result: np.ndarray) -> dict[str, float]:
    from keras import ops

    terms = loss(photo[None].astype(np.float32), result[None].astype(np.float32))
    return {name: float(ops.convert_to_numpy(terms[name])) for name in LOSS_NAMES}


def _quality_network(loss, weights, quality_weights):
    from ml.losses import build_loss_network
    from ml.quality import QUALITY_LAYERS

    is_vgg16 = getattr(loss, "network", None) == "vgg16"
    outputs = loss.loss_network.output
    if is_vgg16 and all(name in outputs for name in QUALITY_LAYERS):
        return loss.loss_network
    if quality_weights is None:
        quality_weights = weights if is_vgg16 else "imagenet"
    return build_loss_network("vgg16", quality_weights, layers=list(QUALITY_LAYERS))


def _photo_paths(photos) -> list[str]:
    if isinstance(photos, (str, os.PathLike)):
        paths = list_images(photos)
    else:
        paths = [str(path) for path in photos]
    if not paths:
        raise ValueError(f"no photos to evaluate in {photos}")
    return paths


def _as_uint8(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.round(images.astype(np.float32)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- contact sheet


def contact_sheet(photos, results, path, thumb: int = 256) -> Path:
    """Write a PNG: photos in the top row, their results below, one column each.

    Each image is scaled (aspect kept) to fit a ``thumb x thumb`` cell on a white
    background, so the sheet is ``len(photos) * thumb`` wide and ``2 * thumb``
    high. Images are arrays (H, W, 3) in [0, 255] or PIL images; a batch
    array works too.
    """
    photos, results = list(photos), list(results)
    if len(photos) != len(results) or not photos:
        raise ValueError(f"need as many results as photos, got {len(photos)} and {len(results)}")
    sheet = Image.new("RGB", (len(photos) * thumb, 2 * thumb), "white")
    for column, (photo, result) in enumerate(zip(photos, results)):
        for row, image in enumerate((photo, result)):
            cell = ImageOps.contain(_to_pil(image), (thumb, thumb), Image.Resampling.LANCZOS)
            left = column * thumb + (thumb - cell.width) // 2
            top = row * thumb + (thumb - cell.height) // 2
            sheet.paste(cell, (left, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(_as_uint8(image))
