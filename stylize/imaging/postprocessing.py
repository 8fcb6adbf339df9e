"""Colour post-processing of a painted photo: ``postprocess``.

``preserve_colors`` keeps the photo's chroma under the painting's luminance;
``blend_strength`` mixes photo and painting; ``postprocess`` does both, in that order,
rounding once. Photo and painting are RGB ``uint8`` arrays of one shape (else
``ValueError``); so is the result.
"""

from __future__ import annotations

import numpy as np

from ml.images import LUMA_WEIGHTS

from .pixels import as_rgb_uint8, round_to_uint8


def blend_strength(photo: np.ndarray, result: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` 1 gives ``result``, 0 gives ``photo``, linear in between (rounded half up)."""
    _check_pair(photo, result)
    return round_to_uint8(_blend(photo.astype(np.float32), result.astype(np.float32), strength))


def _blend(photo: np.ndarray, result: np.ndarray, strength: float) -> np.ndarray:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength}")
    return photo + strength * (result - photo)


def preserve_colors(photo: np.ndarray, result: np.ndarray) -> np.ndarray:
    """The result's luminance with the photo's chroma (full-range BT.601 YCbCr, as JPEG)."""
    _check_pair(photo, result)
    return round_to_uint8(_preserved_colors(photo, result))


_RGB_TO_YCBCR = np.array(
    [LUMA_WEIGHTS, [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _preserved_colors(photo: np.ndarray, result: np.ndarray) -> np.ndarray:
    """Float RGB clipped to [0, 255]: Y of ``result``, Cb/Cr of ``photo``."""
    luma = result.astype(np.float64) @ _RGB_TO_YCBCR[0]
    chroma = photo.astype(np.float64) @ _RGB_TO_YCBCR[1:].T
    ycbcr = np.concatenate([luma[..., None], chroma], axis=-1)
    return np.clip(ycbcr @ _YCBCR_TO_RGB.T, 0, 255)


def postprocess(photo: np.ndarray, result: np.ndarray, *, strength: float,
                preserve_colors: bool) -> np.ndarray:
    """Colour preservation first, then the strength blend, rounded once at the end.

    That order because recombining luminance and chroma can leave the RGB gamut and
    must be clipped, while blending two in-gamut images cannot; and so ``strength``
    means the same ("how much of the stylized image") with or without colours kept.
    """
    _check_pair(photo, result)
    if strength == 1.0 and not preserve_colors:
        return result  # the common case: no float copies of a possibly 4096² photo
    stylized = _preserved_colors(photo, result) if preserve_colors else result.astype(np.float32)
    return round_to_uint8(_blend(photo.astype(np.float32), stylized, strength))


def _check_pair(photo: np.ndarray, result: np.ndarray) -> None:
    as_rgb_uint8(photo)
    as_rgb_uint8(result)
    if photo.shape != result.shape:
        raise ValueError(f"photo {photo.shape} and result {result.shape} differ in size")
