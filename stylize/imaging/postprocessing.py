"""Colour post-processing of a painted photo.

``preserve_colors`` keeps the photo's chroma under the painting's luminance;
``colors_kept`` applies it where a job asks for it. Photo and painting are RGB
``uint8`` arrays of one shape (else ``ValueError``); so is the result. Strength is no
post-process: the network paints it (``ml.bank.BankSlot.inputs``).
"""

from __future__ import annotations

import numpy as np

from ml.images import LUMA_WEIGHTS

from .pixels import as_rgb_uint8, round_to_uint8


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


def colors_kept(photo: np.ndarray, result: np.ndarray, keep: bool) -> np.ndarray:
    """``preserve_colors(photo, result)`` if ``keep``, else ``result`` untouched (no
    float copy of a possibly 4096² photo)."""
    return preserve_colors(photo, result) if keep else result


def _check_pair(photo: np.ndarray, result: np.ndarray) -> None:
    as_rgb_uint8(photo)
    as_rgb_uint8(result)
    if photo.shape != result.shape:
        raise ValueError(f"photo {photo.shape} and result {result.shape} differ in size")
