"""Stroke size: where the network paints a photo, and the painting brought back to size.

``size_plan`` says, from a photo's size, ``max_side`` and stroke alone, the result's
size and the side the network paints at; ``stylize_at_working_size`` paints the photo
there (``tiling.stylize_tiled``) and brings the painting back to the photo's size with
``guided_upsample``, sharpened by the photo's edges. Why and measurements:
docs/design/stroke.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml.images import LUMA_WEIGHTS

from ..strokes import STROKE_WORKING_SIDES
from .pixels import PassFn, RunFn, as_rgb_uint8, fitted_size, round_to_uint8
from .tiling import stylize_tiled


@dataclass(frozen=True)
class SizePlan:
    """What a job's ``max_side`` and stroke do to one photo (``size_plan``)."""

    width: int  # the result: the photo shrunk to max_side, never enlarged
    height: int
    shrunk: bool  # whether max_side made it smaller than the photo
    painted_side: int  # the longer side the network paints at
    same_strokes: tuple[str, ...]  # the stroke options that paint it at that side too


def size_plan(width: int, height: int, *, max_side: int, stroke: str) -> SizePlan:
    """The result's size and the side the network paints at for a photo of ``width`` ×
    ``height`` (upright) with ``max_side`` and ``stroke``, as ``load_photo`` and
    ``stylize_at_working_size`` will do it: a photo is never enlarged, and on a photo
    no longer than a stroke's working side the network paints at the photo's size, so
    there several strokes give the same picture (``same_strokes``, ``stroke`` among
    them). upload.js says the same in the browser (docs/design/stroke.md)."""
    result_width, result_height = fitted_size((width, height), max_side)
    longer = max(result_width, result_height)

    def painted(option: str) -> int:
        return min(longer, STROKE_WORKING_SIDES[option])

    side = painted(stroke)
    return SizePlan(width=result_width, height=result_height,
                    shrunk=(result_width, result_height) != (width, height), painted_side=side,
                    same_strokes=tuple(o for o in STROKE_WORKING_SIDES if painted(o) == side))

_LUMA = np.array(LUMA_WEIGHTS, dtype=np.float32)  # as preserve_colors
_STRIP_PIXELS = 1 << 18  # full-size pixels per strip in guided_upsample


def stylize_at_working_size(photo: np.ndarray, run: RunFn, *, working_side: int | None,
                            tile: int, on_pass: PassFn | None = None) -> np.ndarray:
    """``photo`` stylized at a working size, returned at the photo's size.

    With ``working_side`` None, or a photo whose longer side is at most
    ``working_side``, this is ``stylize_tiled(photo, run, tile=tile)``. Otherwise the
    photo is downscaled (LANCZOS, aspect kept) to a longer side of ``working_side``,
    stylized with ``stylize_tiled`` and brought back with ``guided_upsample``.
    ``on_pass`` is ``stylize_tiled``'s progress hook.
    """
    photo = as_rgb_uint8(photo)
    if working_side is not None and working_side < 1:
        raise ValueError(f"working_side must be positive or None, got {working_side}")
    height, width = photo.shape[:2]
    if working_side is None or max(height, width) <= working_side:
        return stylize_tiled(photo, run, tile=tile, on_pass=on_pass)
    size = fitted_size((width, height), working_side)
    small = Image.fromarray(photo, "RGB").resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    small_photo = np.asarray(small, dtype=np.uint8)
    small_result = stylize_tiled(small_photo, run, tile=tile, on_pass=on_pass)
    return guided_upsample(photo, small_photo, small_result)


def guided_upsample(
    photo: np.ndarray,
    small_photo: np.ndarray,
    small_result: np.ndarray,
    *,
    radius: int = 2,
    eps: float = 1e-3,
    guide: str = "luma",
) -> np.ndarray:
    """``small_result`` brought up to ``photo``'s size, sharpened by the photo's edges.

    ``small_photo`` is ``photo`` downscaled to ``small_result``'s size. On the small
    images a local linear model ``result ≈ A·guide + b`` is fitted per channel over
    (2·``radius``+1)² windows, ``eps`` regularising ``A`` (guide in [0, 1] units), and
    ``A`` averaged over the windows (the guided filter); ``A`` and ``b`` are upsampled
    bilinearly and applied to the full-size photo (the fast guided filter, He & Sun
    2015). ``b`` is taken so that the model gives back ``small_result`` exactly at the
    small size: what the photo does not explain (the brush strokes) is upsampled
    bilinearly instead of being averaged away. ``guide`` is ``"luma"`` (the photo's
    BT.601 luminance, one gain per channel) or ``"rgb"`` (a 3×3 matrix per pixel).
    When ``small_result`` is ``small_photo`` the result is close to ``photo``.

    Memory: the full-size side is done in strips of a quarter megapixel (float32), so
    besides the ``uint8`` output it takes tens of MB whatever the photo's size.
    Raises ``ValueError`` for arrays that are not ``(H, W, 3)`` ``uint8``, small images
    of different sizes, a negative ``radius``, ``eps <= 0`` or another ``guide``.

    Why and measurements: docs/design/stroke.md.
    """
    photo, small_photo, small_result = (
        as_rgb_uint8(a) for a in (photo, small_photo, small_result)
    )
    if small_photo.shape != small_result.shape:
        raise ValueError(f"small_photo {small_photo.shape} and small_result "
                         f"{small_result.shape} differ in size")
    if radius < 0 or not eps > 0:
        raise ValueError(f"radius must be non-negative and eps positive, got {radius} and {eps}")
    if guide not in ("luma", "rgb"):
        raise ValueError(f"guide must be 'luma' or 'rgb', got {guide!r}")
    small_guide = _guide(small_photo, guide) / np.float32(255)
    small_values = small_result.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    gains, offsets = _fit_linear(small_guide, small_values, radius, eps)
    channels, small_h, small_w = small_guide.shape
    planes = (*gains.reshape(3 * channels, small_h, small_w), *(offsets * 255))
    maps = [Image.fromarray(m, "F") for m in planes]
    height, width = photo.shape[:2]
    output = np.empty_like(photo)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        box = (0, top * small_h / height, small_w, bottom * small_h / height)
        size = (width, bottom - top)
        up = [np.asarray(m.resize(size, Image.Resampling.BILINEAR, box=box)) for m in maps]
        strip_guide = _guide(photo[top:bottom], guide)
        strip = np.empty((bottom - top, width, 3), dtype=np.float32)
        for c in range(3):
            value = up[3 * channels + c] + up[c] * strip_guide[0]
            for k in range(1, channels):
                value += up[3 * k + c] * strip_guide[k]
            strip[..., c] = value
        output[top:bottom] = round_to_uint8(strip)
    return output


def _guide(photo: np.ndarray, guide: str) -> np.ndarray:
    """float32 (1, H, W) luminance or (3, H, W) RGB, in 0..255."""
    if guide == "luma":
        return (photo.astype(np.float32) @ _LUMA)[None]
    return photo.astype(np.float32).transpose(2, 0, 1)


def _fit_linear(guide: np.ndarray, result: np.ndarray, radius: int, eps: float):
    """Window-averaged gains ``A`` (G, 3, h, w) and offsets ``b`` (3, h, w), float32.

    ``guide`` is (G, h, w), ``result`` (3, h, w). ``b = result - A·guide``, so that
    ``A·guide + b`` is ``result`` on the small grid.
    """
    channels, height, width = guide.shape
    pairs = [(i, j) for i in range(channels) for j in range(i, channels)]
    terms = [*guide, *result, *(guide[i] * guide[j] for i, j in pairs),
             *(g * r for g in guide for r in result)]
    means = _box_mean(np.stack(terms), radius)
    mean_guide, mean_result = means[:channels], means[channels : channels + 3]
    second = means[channels + 3 : channels + 3 + len(pairs)]
    cross = means[channels + 3 + len(pairs) :].reshape(channels, 3, height, width)
    cross -= mean_guide[:, None] * mean_result[None]
    if channels == 1:
        gains = cross / (second[0] - mean_guide[0] ** 2 + np.float32(eps))
    else:
        covariance = np.empty((height, width, channels, channels), dtype=np.float32)
        for (i, j), moment in zip(pairs, second):
            covariance[..., i, j] = covariance[..., j, i] = moment - mean_guide[i] * mean_guide[j]
        covariance += np.float32(eps) * np.eye(channels, dtype=np.float32)
        gains = np.linalg.solve(covariance, cross.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
    gains = _box_mean(gains.reshape(3 * channels, height, width), radius)
    gains = gains.reshape(channels, 3, height, width)
    offsets = result - np.einsum("khw,kchw->chw", guide, gains)
    return gains.astype(np.float32, copy=False), offsets.astype(np.float32, copy=False)


def _box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """Mean of ``values`` (C, h, w) over (2·radius+1)² windows clipped to the image.

    Sums of shifted slices rather than cumulative sums: float32 cumulative sums lose
    the few 1e-5 of precision that ``E[g²] - E[g]²`` needs.
    """
    for axis in (1, 2):
        length = values.shape[axis]
        total = values.copy()
        for shift in range(1, min(radius, length - 1) + 1):
            lead = (slice(None),) * axis + (slice(shift, None),)
            lag = (slice(None),) * axis + (slice(None, -shift),)
            total[lead] += values[lag]
            total[lag] += values[lead]
        index = np.arange(length)
        counts = np.minimum(index + radius, length - 1) - np.maximum(index - radius, 0) + 1
        total /= counts.astype(np.float32).reshape((-1, 1) if axis == 1 else (-1,))
        values = total
    return values
