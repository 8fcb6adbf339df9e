"""Acceptance metrics for a trained style.

* :func:`style_distance`: how far images are from the painting's style, as the
  Gram-matrix distance on VGG16 relu1_2, relu2_2, relu3_3 and relu4_3. A good
  network brings its results much closer to the painting than the photos were.
* :func:`luminance_correlation`: whether the result keeps the photo's light and
  dark layout (Pearson correlation of luminance at 32 x 32).
* :func:`edge_correlation`: whether the result keeps the photo's structure
  (Pearson correlation of Sobel edge magnitudes at 64 x 64).
* :func:`quality_report`: all of them over a set of photos.

Images are ``HxWx3`` RGB arrays, uint8 or float in [0, 255].
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ml.losses import gram_matrix

__all__ = [
    "QUALITY_LAYERS",
    "edge_correlation",
    "luminance_correlation",
    "quality_report",
    "style_distance",
]

#: VGG16 relu1_2, relu2_2, relu3_3, relu4_3 (Johnson et al.'s style layers).
QUALITY_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")

_LUMA = np.array([0.299, 0.587, 0.114], dtype="float64")  # ITU-R BT.601


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


def _resize_max_side(image, size):
    if size is None:
        return image
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [
        np.asarray(Image.fromarray(image[..., c]).resize(new, Image.BILINEAR)) for c in range(3)
    ]
    return np.stack(channels, axis=-1)


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


def style_distance(images, painting, loss_network, layers=QUALITY_LAYERS, size=None):
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
        size: if given, every image and the painting is first resized so that
            its longer side is ``size`` pixels.

    Returns:
        A float.
    """
    layers = tuple(layers)
    images = [_resize_max_side(image, size) for image in _images(images)]
    if not images:
        raise ValueError("`images` is empty.")
    target = _grams(_resize_max_side(_image(painting, "painting"), size), loss_network, layers)
    distances = []
    for image in images:
        grams = _grams(image, loss_network, layers)
        distances.append(
            sum(float(np.mean(np.square(grams[n] - target[n], dtype="float64"))) for n in layers)
        )
    return float(np.mean(distances))


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
    window = lambda dy, dx: padded[1 + dy : 1 + dy + gray.shape[0], 1 + dx : 1 + dx + gray.shape[1]]  # noqa: E731
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
    return _pearson(_sobel_magnitude(_luminance(photo, size)), _sobel_magnitude(_luminance(result, size)))


def quality_report(photos, results, painting, loss_network, size=None):
    """Acceptance metrics of a style network over a set of photos.

    Args:
        photos: sequence of ``HxWx3`` photos.
        results: the network's outputs for them, same order.
        painting: the style image.
        loss_network: VGG16 loss network outputting :data:`QUALITY_LAYERS`.
        size: optional longer-side resize for the style distances.

    Returns:
        dict with ``photo_style_distance`` (photos vs painting),
        ``result_style_distance`` (results vs painting), ``style_distance_ratio``
        (result / photo; below 1 means the results moved towards the painting),
        ``luminance_correlation`` and ``edge_correlation`` (means over pairs),
        and ``num_images``.
    """
    photos = _images(photos, "photos")
    results = _images(results, "results")
    if len(photos) != len(results) or not photos:
        raise ValueError(
            f"Need as many results as photos (at least one). Got {len(photos)} photos "
            f"and {len(results)} results."
        )
    photo_distance = style_distance(photos, painting, loss_network, size=size)
    result_distance = style_distance(results, painting, loss_network, size=size)
    ratio = result_distance / photo_distance if photo_distance > 0 else float("inf")
    return {
        "photo_style_distance": photo_distance,
        "result_style_distance": result_distance,
        "style_distance_ratio": ratio,
        "luminance_correlation": float(
            np.mean([luminance_correlation(p, r) for p, r in zip(photos, results)])
        ),
        "edge_correlation": float(
            np.mean([edge_correlation(p, r) for p, r in zip(photos, results)])
        ),
        "num_images": len(photos),
    }
