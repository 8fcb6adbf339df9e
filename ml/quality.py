"""Quality of a style: one measure, used everywhere.

:func:`evaluate_style` is *the* measure of a style on a set of photos, the same
for training reports (``ml.evaluate`` / ``manage.py evaluate_style``), for the
shipped styles and for the peer comparison (``make bench-quality``):

* every photo is resized to :data:`PHOTO_SIZE` (384) px on its longer side and
  stylized at that size; the painting is resized to :data:`PAINTING_SIZE` (256)
  px on its longer side for its Gram matrices;
* **style distance ratio**: mean Gram distance (:func:`style_distance`'s, on
  VGG16 relu1_2, relu2_2, relu3_3, relu4_3) of the results to the painting,
  divided by that of the unchanged photos. Below 1 the results moved towards
  the painting's style; 1 for results equal to the photos;
  ``layer_ratios`` splits it by layer (the results' distance on each layer over
  the photos' whole distance, so they add up to the ratio): where a style is
  behind, in colour (relu1_2), fine texture (relu2_2) or strokes (relu3_3);
* **shapes**: :func:`luminance_correlation` (luminance at 32 px) and
  :func:`edge_correlation` (Sobel edges at 64 px) between each photo and its
  result, averaged: 1 = layout and structure kept, 0 = none left (flat image).

The results come either from a stylize function run on the resized photos
(``stylize=``, our model) or from images made elsewhere (``results=``, e.g. a
folder of PNGs painted by another program): the same code scores both.

The building blocks are public too: :func:`style_distance`,
:func:`luminance_correlation`, :func:`edge_correlation`.

Images are ``HxWx3`` RGB arrays, uint8 or float in [0, 255].
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ml.images import IMAGE_SUFFIXES, LUMA_WEIGHTS
from ml.losses import gram_matrix

__all__ = [
    "PAINTING_SIZE",
    "PHOTO_SIZE",
    "QUALITY_LAYERS",
    "SCORE_NAMES",
    "edge_correlation",
    "evaluate_style",
    "fit_longer_side",
    "load_rgb",
    "luminance_correlation",
    "result_paths",
    "rounded_layer_ratios",
    "style_distance",
]

#: VGG16 relu1_2, relu2_2, relu3_3, relu4_3 (Johnson et al.'s style layers).
QUALITY_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")

#: Photos are stylized and scored at this longer side (px).
PHOTO_SIZE = 384
#: The painting's Gram matrices are taken at this longer side (px).
PAINTING_SIZE = 256

#: The scalar scores of :func:`evaluate_style` (what reports and style.json keep).
SCORE_NAMES = (
    "style_distance_ratio",
    "photo_style_distance",
    "result_style_distance",
    "luminance_correlation",
    "edge_correlation",
)


_LUMA = np.array(LUMA_WEIGHTS, dtype="float64")


def _image(image, name="image"):
    array = np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"`{name}` must be an HxWx3 RGB image. Received shape {array.shape}")
    return array.astype("float32")


def _images(images, name="images"):
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    return [_image(image, name) for image in images]


def _grams(image, loss_network, layers):
    from keras import ops

    features = loss_network(image[None], training=False)
    missing = [name for name in layers if name not in features]
    if missing:
        raise ValueError(
            f"The loss network does not output {missing}; build it with "
            f"build_loss_network('vgg16', weights, layers={list(layers)})."
        )
    return {name: ops.convert_to_numpy(gram_matrix(features[name]))[0] for name in layers}


def style_distance(images, painting, loss_network, layers=QUALITY_LAYERS):
    """Mean Gram distance of ``images`` to ``painting``.

    For each image: sum over ``layers`` of the mean squared difference between
    its Gram matrix and the painting's (Gram normalised by H*W*C, see
    :func:`ml.losses.gram_matrix`); then the mean over images. Lower is closer
    to the painting's style; 0 for the painting itself.

    Args:
        images: one ``HxWx3`` image or a sequence / ``NxHxWx3`` array of them.
        painting: ``HxWx3`` image.
        loss_network: a :func:`ml.losses.build_loss_network` model outputting
            ``layers`` (by default VGG16 ``block1_conv2``, ``block2_conv2``,
            ``block3_conv3``, ``block4_conv3``).
        layers: VGG layers to compare on.

    Returns:
        A float.
    """
    layers = tuple(layers)
    images = _images(images)
    if not images:
        raise ValueError("`images` is empty.")
    target = _grams(_image(painting, "painting"), loss_network, layers)
    return float(np.mean([_distance(image, target, loss_network, layers) for image in images]))


def _luminance(image, size):
    luma = np.tensordot(_image(image).astype("float64"), _LUMA, axes=([-1], [0]))
    resized = Image.fromarray(luma.astype("float32")).resize((size, size), Image.BILINEAR)
    return np.asarray(resized, dtype="float64")


def _pearson(a, b):
    """Pearson correlation; 0.0 when either input is constant (no structure)."""
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if denominator <= 1e-12:
        return 0.0
    return float(np.sum(a * b) / denominator)


def luminance_correlation(photo, result, size=32):
    """Pearson correlation of the luminance of ``photo`` and ``result``.

    Both images are converted to BT.601 luminance and resized to
    ``size x size`` (bilinear) first, so only the coarse light/dark layout
    counts, not texture. 1 = same layout, negative = inverted; 0.0 when either
    image is flat.
    """
    return _pearson(_luminance(photo, size), _luminance(result, size))


def _sobel_magnitude(gray):
    padded = np.pad(gray, 1, mode="edge")

    def window(dy, dx):
        return padded[1 + dy : 1 + dy + gray.shape[0], 1 + dx : 1 + dx + gray.shape[1]]

    gx = (window(-1, 1) + 2 * window(0, 1) + window(1, 1)) - (
        window(-1, -1) + 2 * window(0, -1) + window(1, -1)
    )
    gy = (window(1, -1) + 2 * window(1, 0) + window(1, 1)) - (
        window(-1, -1) + 2 * window(-1, 0) + window(-1, 1)
    )
    return np.hypot(gx, gy)


def edge_correlation(photo, result, size=64):
    """Pearson correlation of Sobel edge magnitudes of ``photo`` and ``result``.

    Luminance is resized to ``size x size`` (bilinear) and the Sobel gradient
    magnitude taken; 1 = edges in the same places with proportional strength.
    0.0 when either image has no edges.
    """
    return _pearson(
        _sobel_magnitude(_luminance(photo, size)), _sobel_magnitude(_luminance(result, size))
    )




# --------------------------------------------------------------------------- the measure


def load_rgb(path) -> np.ndarray:
    """An image file as upright (EXIF orientation applied) RGB uint8 ``HxWx3``."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if "A" in image.getbands() or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _uint8(image, name="image") -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return load_rgb(image)
    array = np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"`{name}` must be an HxWx3 RGB image. Received shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    return np.clip(np.round(array.astype("float32")), 0, 255).astype(np.uint8)


def fit_longer_side(image, size: int) -> np.ndarray:
    """``image`` (array or path) resized (LANCZOS, aspect kept) so that its longer
    side is exactly ``size`` px, as uint8; up or down. Unchanged if already so."""
    array = _uint8(image)
    height, width = array.shape[:2]
    scale = size / max(height, width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new == (width, height):
        return array
    return np.asarray(Image.fromarray(array).resize(new, Image.Resampling.LANCZOS))


def _fit_to(image, shape, name) -> np.ndarray:
    """A result (array or path) brought to the working photo's ``(H, W)``."""
    array = _uint8(image, name)
    height, width = array.shape[:2]
    if (height, width) == tuple(shape):
        return array
    if abs(width / height - shape[1] / shape[0]) > 0.02 * shape[1] / shape[0] + 1.0 / min(shape):
        raise ValueError(
            f"{name} is {width}x{height}, not the shape of its photo ({shape[1]}x{shape[0]} "
            "at the working size): is it the result of another photo?"
        )
    return np.asarray(Image.fromarray(array).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def result_paths(folder, photos) -> list[Path]:
    """The result of each photo path in ``folder``: ``<folder>/<photo stem>.<png|jpg…>``.

    That is how ``manage.py stylize --out-dir`` (and the peer run of
    ``make bench-quality``) name them. Raises ``FileNotFoundError`` naming
    every photo without a result.
    """
    folder = Path(folder)
    found, missing = [], []
    for photo in photos:
        if not isinstance(photo, (str, os.PathLike)):
            raise TypeError(
                "Results read from a folder are matched by name: pass the photos as paths."
            )
        stem = Path(photo).stem
        matches = [folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES
                   if (folder / f"{stem}{suffix}").is_file()]
        if matches:
            found.append(matches[0])
        else:
            missing.append(stem)
    if missing:
        raise FileNotFoundError(f"No result in {folder} for: {', '.join(missing)}")
    return found


def evaluate_style(
    photos,
    painting,
    loss_network,
    *,
    stylize: Callable[[np.ndarray], np.ndarray] | None = None,
    results=None,
    photo_size: int = PHOTO_SIZE,
    painting_size: int = PAINTING_SIZE,
    layers: Sequence[str] = QUALITY_LAYERS,
    photo_distances: dict | None = None,
) -> dict:
    """Score a style on ``photos``: style distance ratio and shapes (module docstring).

    Args:
        photos: a folder (its JPEG/PNG files, recursively: ``ml.data.list_images``)
            or a sequence of image paths and/or ``HxWx3`` arrays. Each is resized to
            ``photo_size`` px on its longer side (:func:`fit_longer_side`) first.
        painting: the style image (path or ``HxWx3`` array), resized to
            ``painting_size`` px on its longer side for its Gram matrices.
        loss_network: a VGG16 ``ml.losses.build_loss_network`` outputting
            ``layers`` (by default :data:`QUALITY_LAYERS`).
        stylize: a function from one resized photo (uint8 ``HxWx3``) to its
            result (``HxWx3`` or ``1xHxWx3``, uint8 or float in [0, 255]).
        results: instead of ``stylize``, the results made elsewhere: a sequence
            of images (arrays or paths, in the order of ``photos``) or a folder
            holding ``<photo stem>.png`` for each photo (:func:`result_paths`).
            A result of another size (same aspect) is resized to its resized
            photo's size.

    Exactly one of ``stylize`` and ``results`` is needed.

    ``photo_distances``: a dict the caller keeps between calls with the same painting,
    sizes and network (a training run scoring every N steps): the photos' own style
    distances, which only the results change, are read from it by photo name and added
    to it, so each photo's is computed once.

    Returns:
        dict with the :data:`SCORE_NAMES` (floats), ``num_images``,
        ``photo_size``, ``painting_size``, ``layer_ratios`` (layer name → the
        results' mean distance on that layer over the photos' mean distance: they add
        up to ``style_distance_ratio``) and ``per_photo`` (one dict per photo:
        ``photo``, ``photo_style_distance``, ``result_style_distance``,
        ``result_layer_distances``, ``luminance_correlation``, ``edge_correlation``).
    """
    if (stylize is None) == (results is None):
        raise ValueError(
            "Pass exactly one of `stylize` (a function) and `results` (images or a folder)."
        )
    layers = tuple(layers)
    if isinstance(photos, (str, os.PathLike)):
        from ml.data import list_images

        photos = list_images(photos)
    elif isinstance(photos, np.ndarray) and photos.ndim == 3:
        photos = [photos]
    photos = list(photos)
    if not photos:
        raise ValueError("No photos to evaluate.")
    names = [str(photo) if isinstance(photo, (str, os.PathLike)) else f"photo {index}"
             for index, photo in enumerate(photos)]
    if isinstance(results, (str, os.PathLike)):
        results = result_paths(results, photos)
    elif results is not None:
        results = list(results)
        if len(results) != len(photos):
            raise ValueError(
                f"Need as many results as photos. Got {len(photos)} photos and "
                f"{len(results)} results."
            )

    painting = fit_longer_side(painting, painting_size).astype("float32")
    target = _grams(painting, loss_network, layers)
    per_photo = []
    for index, (name, photo) in enumerate(zip(names, photos)):
        photo = fit_longer_side(photo, photo_size)
        raw = stylize(photo) if stylize is not None else results[index]
        result = _fit_to(raw, photo.shape[:2], f"the result of {name}")
        if photo_distances is not None and name in photo_distances:
            photo_distance = photo_distances[name]
        else:
            photo_distance = _distance(photo, target, loss_network, layers)
            if photo_distances is not None:
                photo_distances[name] = photo_distance
        result_layers = _layer_distances(result, target, loss_network, layers)
        per_photo.append({
            "photo": name,
            "photo_style_distance": photo_distance,
            "result_style_distance": sum(result_layers.values()),
            "result_layer_distances": result_layers,
            "luminance_correlation": luminance_correlation(photo, result),
            "edge_correlation": edge_correlation(photo, result),
        })

    def mean(key):
        return float(np.mean([row[key] for row in per_photo]))

    def ratio(distance):
        return distance / photo_distance if photo_distance > 0 else float("inf")

    photo_distance, result_distance = mean("photo_style_distance"), mean("result_style_distance")
    return {
        "style_distance_ratio": ratio(result_distance),
        "photo_style_distance": photo_distance,
        "result_style_distance": result_distance,
        "luminance_correlation": mean("luminance_correlation"),
        "edge_correlation": mean("edge_correlation"),
        "num_images": len(per_photo),
        "photo_size": photo_size,
        "painting_size": painting_size,
        "layer_ratios": {
            name: ratio(float(np.mean([row["result_layer_distances"][name] for row in per_photo])))
            for name in layers},
        "per_photo": per_photo,
    }


def rounded_layer_ratios(report: dict, places: int = 4) -> dict[str, float]:
    """``report["layer_ratios"]`` (an :func:`evaluate_style` report) rounded, as the
    bank run and the benches keep them."""
    return {name: round(float(value), places) for name, value in report["layer_ratios"].items()}


def _layer_distances(image, target, loss_network, layers) -> dict[str, float]:
    grams = _grams(np.asarray(image).astype("float32"), loss_network, layers)
    return {n: float(np.mean(np.square(grams[n] - target[n], dtype="float64"))) for n in layers}


def _distance(image, target, loss_network, layers) -> float:
    return sum(_layer_distances(image, target, loss_network, layers).values())
