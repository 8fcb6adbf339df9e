"""The network run over a photo in tiles: ``stylize_tiled``.

A photo that fits one tile goes through ``run`` in one pass; a bigger one in
overlapping tiles, blended with feathering and pulled towards one tone by a
whole-photo pass. The result has the photo's shape; an identity ``run`` gives back the
photo exactly. Why and measurements: docs/design/tiling.md.
"""

from __future__ import annotations

import math

import numpy as np

from .pixels import PassFn, RunFn, as_rgb_uint8, round_to_uint8


def stylize_tiled(
    photo: np.ndarray,
    run: RunFn,
    *,
    tile: int = 1024,
    overlap: int = 64,
    match_tone: bool = True,
    on_pass: PassFn | None = None,
) -> np.ndarray:
    """Stylize ``photo`` through ``run`` in tiles of at most ``tile``×``tile`` pixels.

    ``photo`` is an RGB ``uint8`` array ``(H, W, 3)``; the result is one of the same
    shape. A photo that fits one tile goes through ``run`` in one pass. A bigger one is
    cut into tiles that overlap by at least ``overlap`` pixels, each sent alone (a batch
    of one), and blended with linear feathering ramps across each overlap. With
    ``match_tone`` the photo is also run once, downscaled to fit one tile, and each
    tile's per-channel mean and standard deviation are matched to that whole-photo
    reference over the same region (one extra model call). With an identity ``run``
    the output equals the photo exactly. Memory: a band of float32 accumulators one tile
    high besides the ``uint8`` output, never H×W floats. ``on_pass(done, total)``, if
    given, is called after each model call with how many of the ``total`` are done.

    Raises ``ValueError`` for a photo that is not ``(H, W, 3)`` ``uint8``, ``tile < 1``,
    ``overlap < 0``, a tile too small for the tone-matching block grid or an overlap
    that leaves no stride, and when ``run`` returns another shape than it was given.

    Why and measurements (seams, memory, time): docs/design/tiling.md.
    """
    photo = as_rgb_uint8(photo)
    if tile < 1 or overlap < 0:
        raise ValueError("tile must be positive and overlap non-negative")
    height, width = photo.shape[:2]
    if height <= tile and width <= tile:
        return _run_one(_counted(run, 1, on_pass), photo)

    block = 1
    if match_tone:
        factor = math.ceil(max(height, width) / tile)
        coarse = _coarse_factor(tile, factor)
        block = factor * coarse

    span = (tile // block) * block
    if span == 0:
        raise ValueError(f"a {height}×{width} photo needs tiles bigger than {tile}")
    row_starts = _tile_starts(height, span, overlap, block)
    col_starts = _tile_starts(width, span, overlap, block)
    run = _counted(run, len(row_starts) * len(col_starts) + bool(match_tone), on_pass)
    reference = _ToneReference(photo, run, factor=factor, coarse=coarse) if match_tone else None
    return _blend_rows(photo, run, row_starts, col_starts, span, reference)


def _counted(run: RunFn, total: int, on_pass: PassFn | None) -> RunFn:
    """``run``, calling ``on_pass(done, total)`` after each call (``run`` if no hook)."""
    if on_pass is None:
        return run
    done = 0

    def counted(batch: np.ndarray) -> np.ndarray:
        nonlocal done
        result = run(batch)
        done += 1
        on_pass(done, total)
        return result

    return counted


def _run_one(run: RunFn, image: np.ndarray) -> np.ndarray:
    result = np.asarray(run(np.ascontiguousarray(image)[None]))
    if result.shape != (1, *image.shape):
        raise ValueError(f"run returned shape {result.shape} for input {(1, *image.shape)}")
    return result[0].astype(np.uint8, copy=False)




def _coarse_factor(tile: int, factor: int) -> int:
    # Aim for ~16 coarse blocks per tile side: enough samples for a stable std,
    # coarse enough (up to 8 reference pixels) to average brush strokes away.
    return max(1, min(8, tile // factor // 16))


def _tile_starts(length: int, span: int, overlap: int, block: int) -> list[int]:
    """Tile origins on multiples of ``block``; neighbours overlap by >= ``overlap``."""
    if length <= span:
        return [0]
    stride = span - overlap - block  # rounding origins down can cost up to a block
    if stride <= 0:
        raise ValueError(f"overlap {overlap} leaves no stride in tiles of {span} px")
    last = length - span
    count = math.ceil(last / stride) + 1
    starts = [(i * last // (count - 1)) // block * block for i in range(count - 1)]
    starts.append(-(-last // block) * block)  # rounded up, so the last tile reaches the edge
    return starts


def _feather(start: int, end: int, previous_end: int | None, next_start: int | None) -> np.ndarray:
    """1-D weights: 1 inside, linear ramps over the overlaps with each neighbour."""
    weights = np.ones(end - start, dtype=np.float32)
    if previous_end is not None and previous_end > start:
        ramp = previous_end - start
        weights[:ramp] = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    if next_start is not None and end > next_start:
        ramp = end - next_start
        ramp_down = (np.arange(ramp, 0, -1, dtype=np.float32) - 0.5) / ramp
        weights[-ramp:] = np.minimum(weights[-ramp:], ramp_down)
    return weights


def _spans(starts: list[int], span: int, length: int) -> list[tuple[int, int, np.ndarray]]:
    ends = [min(start + span, length) for start in starts]
    spans = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        previous_end = ends[i - 1] if i > 0 else None
        next_start = starts[i + 1] if i + 1 < len(starts) else None
        spans.append((start, end, _feather(start, end, previous_end, next_start)))
    return spans


def _blend_rows(photo, run, row_starts, col_starts, span, reference) -> np.ndarray:
    height, width = photo.shape[:2]
    output = np.empty_like(photo)
    band_rows = min(span, height)
    accumulated = np.zeros((band_rows, width, 3), dtype=np.float32)
    weight_sum = np.zeros((band_rows, width), dtype=np.float32)
    band_top = 0
    columns = _spans(col_starts, span, width)
    for top, bottom, row_weights in _spans(row_starts, span, height):
        # Rows above this tile row get no more contributions: finish them, slide the band.
        done = top - band_top
        _write_rows(output, band_top, accumulated[:done], weight_sum[:done])
        _slide(accumulated, done)
        _slide(weight_sum, done)
        band_top = top
        for left, right, col_weights in columns:
            stylized = _run_one(run, photo[top:bottom, left:right]).astype(np.float32)
            if reference is not None:
                reference.correct(stylized, top, left)
            weights = row_weights[:, None] * col_weights[None, :]
            accumulated[: bottom - top, left:right] += stylized * weights[:, :, None]
            weight_sum[: bottom - top, left:right] += weights
    _write_rows(output, band_top, accumulated[: height - band_top], weight_sum[: height - band_top])
    return output


def _slide(band: np.ndarray, rows: int) -> None:
    """Move the band up by ``rows`` in place, in chunks that never overlap their source."""
    if not rows:
        return
    for start in range(0, len(band) - rows, rows):
        stop = min(start + rows, len(band) - rows)
        band[start:stop] = band[start + rows : stop + rows]
    band[-rows:] = 0


def _write_rows(output, top, accumulated, weight_sum, chunk: int = 64) -> None:
    for start in range(0, len(accumulated), chunk):
        rows = accumulated[start : start + chunk] / weight_sum[start : start + chunk, :, None]
        output[top + start : top + start + len(rows)] = round_to_uint8(rows)




def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor×factor blocks; the last row/column of blocks may be partial."""
    if factor == 1:
        return image.astype(np.float64)
    height, width = image.shape[:2]
    cols = np.arange(0, width, factor)
    col_counts = np.diff(np.append(cols, width))
    strip = factor * max(1, 64 // factor)  # converted to float a strip at a time
    means = []
    for top in range(0, height, strip):
        part = image[top : top + strip].astype(np.float64)
        rows = np.arange(0, len(part), factor)
        sums = np.add.reduceat(np.add.reduceat(part, rows, axis=0), cols, axis=1)
        row_counts = np.diff(np.append(rows, len(part)))
        means.append(sums / (row_counts[:, None, None] * col_counts[None, :, None]))
    return np.concatenate(means)


class _ToneReference:
    """A whole-photo pass at ≤ tile size, to pull every tile towards one tone."""

    _GAIN_LIMITS = (0.25, 4.0)  # a flat tile must not get its noise blown up

    def __init__(self, photo: np.ndarray, run: RunFn, *, factor: int, coarse: int):
        self.factor = factor
        self.coarse = coarse
        small = round_to_uint8(_block_mean(photo, factor))
        self.coarse_reference = _block_mean(_run_one(run, small), coarse)

    def correct(self, stylized: np.ndarray, top: int, left: int) -> None:
        """Affinely match ``stylized``'s per-channel mean/std to the reference, in place."""
        # Quantise like the reference's input was, so an identity run matches exactly.
        tile_coarse = _block_mean(round_to_uint8(_block_mean(stylized, self.factor)), self.coarse)
        block = self.factor * self.coarse
        row, col = top // block, left // block
        height, width = tile_coarse.shape[:2]
        reference = self.coarse_reference[row : row + height, col : col + width]
        tile_mean, tile_std = tile_coarse.mean(axis=(0, 1)), tile_coarse.std(axis=(0, 1))
        reference_mean, reference_std = reference.mean(axis=(0, 1)), reference.std(axis=(0, 1))
        gain = np.where(tile_std > 1e-6, reference_std / np.maximum(tile_std, 1e-6), 1.0)
        gain = np.clip(gain, *self._GAIN_LIMITS)
        offset = reference_mean - gain * tile_mean
        stylized *= gain.astype(np.float32)
        stylized += offset.astype(np.float32)
