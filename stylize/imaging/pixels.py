"""What every imaging stage agrees on.

Every image handed around here is an RGB ``uint8`` array of shape ``(H, W, 3)``
(``as_rgb_uint8`` checks it). The model is a black box ``run``: a ``uint8`` batch
``(N, H, W, 3)`` in, a ``uint8`` batch of the same shape out (in-process SavedModel
or TF Serving over gRPC alike). ``fitted_size`` is the size a picture shrunk to a
longer side (never enlarged) has, for loading, the stroke size plan and thumbnails
alike; ``round_to_uint8`` is how every stage rounds floats back to pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RunFn = Callable[[np.ndarray], np.ndarray]
#: ``on_pass(done, total)``: after each model call, how many of the photo's ``total`` are done.
PassFn = Callable[[int, int], None]


def as_rgb_uint8(photo: np.ndarray) -> np.ndarray:
    """``photo`` as an array, or ``ValueError`` when it is not ``(H, W, 3)`` ``uint8``."""
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {photo.dtype} {photo.shape}")
    return photo


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half up, clipped to 0..255 (reuses ``values``' memory when it is float)."""
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    np.clip(values, 0, 255, out=values)
    values += 0.5
    return np.floor(values, out=values).astype(np.uint8)


def fitted_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``(width, height)`` shrunk, aspect kept, to a longer side of ``max_side``; never
    enlarged, never below 1."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))
