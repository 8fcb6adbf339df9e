"""Pixels in and out of the style network: loading, tiling, post-processing, encoding.

Pure numpy + Pillow; no Django. Every image handed around here is an RGB ``uint8``
array of shape ``(H, W, 3)``. The model is a black box ``run``: a ``uint8`` batch
``(N, H, W, 3)`` in, a ``uint8`` batch of the same shape out (in-process SavedModel
or TF Serving over gRPC alike).
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pillow_heif
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy
from PIL import Image, ImageOps, features

from ml.images import LUMA_WEIGHTS

from .strokes import STROKE_WORKING_SIDES

RunFn = Callable[[np.ndarray], np.ndarray]
#: ``on_pass(done, total)``: after each model call, how many of the photo's ``total`` are done.
PassFn = Callable[[int, int], None]

# --------------------------------------------------------------------------- loading

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
# Bytes a pixel takes in Pillow's memory, by mode (everything else: 4).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Modes resized as they are (LANCZOS); any other is converted first, at full size.
_RESIZED_AS_IS = {"L", "LA", "RGB", "RGBA", "I", "F", *_SIXTEEN_BIT_MODES}
# Bytes a pixel of the whole picture takes inside the codec while it decodes, besides
# Pillow's image: libwebp decodes into a canvas of its own and hands Pillow a copy
# (measured: docs/design/uploads.md).
_CODEC_BYTES_PER_PIXEL = {"WEBP": 12, "HEIF": 6, "AVIF": 8}
# And while encoding (libwebp converts the picture to YUV first).
_ENCODER_BYTES_PER_PIXEL = {"WEBP": 6}
# What Image.Exif's orientation asks for, as ImageOps.exif_transpose does it.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}
# What Pillow's decoders and header parsers raise for a file they cannot read;
# pillow-heif raises RuntimeError for libheif's other errors, its security limits among
# them ("Image size 2000x1504 exceeds the maximum image size 65536": a picture bigger
# than its 'ispe' says, which image_headers refuses first).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                  ZeroDivisionError, OverflowError, RuntimeError, struct.error,
                  Image.DecompressionBombError, Image.DecompressionBombWarning)


# HEIF (iPhones' HEIC photos) through pillow-heif, registered here, where both the web
# process and the worker import it. libheif applies the 'irot'/'imir' orientation
# and 'clap' crop itself (and resets the EXIF orientation to 1). Thumbnails, depth and
# auxiliary pictures are never needed, so never listed or decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
#: Whether this Pillow reads AVIF (its own plugin, libavif; orientation as EXIF).
AVIF_SUPPORTED = bool(features.check("avif"))

#: The Pillow plugins the worker opens a stored photo with (MPO is JPEG's).
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF") + (("AVIF",) if AVIF_SUPPORTED else ())
#: Stored photos the worker always writes anew (``photo_without_metadata``) before it
#: reads them, orientation or not: browsers other than Safari show neither, and the
#: job page shows the photo.
REWRITTEN_FORMATS = ("HEIF", "AVIF")


class UnreadablePhoto(ValueError):
    """The photo's file does not decode; the message can be shown to its owner."""

    def __init__(self, message: str | None = None):
        super().__init__(message or gettext_lazy("Your photo could not be read as an image."))

    def __str__(self) -> str:  # in the active language: the worker's is the owner's
        return str(self.args[0])


class PhotoTooLarge(UnreadablePhoto):
    """Decoding the photo would take more memory than ``max_decode_bytes`` allows."""


_NOT_ENOUGH_MEMORY = gettext_lazy("Your photo is too large to paint: there was not enough "
                                  "memory to read it. Upload a smaller photo.")


def decode_cost_bytes(image: Image.Image, *, max_side: int,
                      full_size: tuple[int, int] | None = None) -> int:
    """About how many bytes ``load_photo`` takes at its peak to bring ``image`` (opened,
    not loaded; after ``draft``) to an RGB array of longer side ``max_side``, from the
    header alone; an upper bound for every kind of photo measured
    (docs/design/uploads.md).

    The peak is the larger of two moments. While decoding: the picture
    (``_BYTES_PER_PIXEL`` of its mode) and what the codec keeps besides (libwebp's
    canvas and copy; a progressive JPEG's coefficients, 2 bytes each at ``full_size``,
    the size before ``draft``). After: the picture, plus either the resize (a full-size
    copy when it must be converted (palette, CMYK, 16-bit grey) or premultiplied
    (alpha), the half-way reduced picture, the resized one) or the conversion of the
    resized picture to an RGB array.
    """
    width, height = image.size
    pixels = width * height
    transparent = _has_transparency(image)
    decoded = pixels * _BYTES_PER_PIXEL.get(image.mode, 4)
    decoding = decoded + pixels * _CODEC_BYTES_PER_PIXEL.get(image.format or "", 0)
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        full_width, full_height = full_size or image.size
        layers = getattr(image, "layer", None) or [(None, 1, 1, None)] * 3
        most = max(h * v for _, h, v, _ in layers)
        decoding += full_width * full_height * 2 * sum(h * v for _, h, v, _ in layers) // most
    target_width, target_height = _fitted_size(image.size, max_side)
    target = target_width * target_height
    resizing = target * 8
    if image.mode == "I;16":
        resizing += pixels * 3  # scaled to I;16 0..255, then L
    elif _needs_conversion(image):
        resizing += pixels * (8 if transparent else 4)  # to RGBA (premultiplied) or RGB
    elif image.mode in ("LA", "RGBA"):
        resizing += pixels * 4  # premultiplied before resizing
    factor = max(1, int(min(width / target_width, height / target_height) / 3))
    if factor > 1:  # resize(reducing_gap=3) first reduces by this whole factor
        resizing += pixels * 4 // factor**2
    converting = target * (20 if transparent else 12)
    peak = max(decoding, decoded + max(resizing, converting))
    return int(peak * 1.1) + 16 * 2**20  # and what the measurements did not explain


def _needs_conversion(image: Image.Image) -> bool:
    """Whether ``image`` must become RGB(A) before it can be resized (LANCZOS)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return False
    return image.mode not in _RESIZED_AS_IS or "transparency" in image.info


def _check_decode_cost(cost: int, max_decode_bytes: int | None, *, full_size) -> None:
    if max_decode_bytes is not None and cost > max_decode_bytes:
        width, height = full_size
        raise PhotoTooLarge(format_lazy(gettext_lazy(
            "Your photo is too large to paint: reading its {width}×{height} pixels would "
            "take about {need} MB of memory, and a photo may take at most {limit} MB. "
            "Upload a smaller photo, or one with 8 bits a colour."),
            width=width, height=height, need=math.ceil(cost / 2**20),
            limit=max_decode_bytes // 2**20))


def photo_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8; 1 when missing or unreadable)."""
    try:
        orientation = int(image.getexif().get(0x0112, 1) or 1)
    except _DECODE_ERRORS:
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def load_photo(fileobj_or_path: str | os.PathLike | BinaryIO, *, max_side: int,
               max_decode_bytes: int | None = None, formats=None) -> np.ndarray:
    """An upright RGB ``uint8`` array whose longer side is at most ``max_side``.

    EXIF orientation is applied; any mode becomes RGB (transparency is composited
    on white, 16-bit greys are scaled, not clipped); an animated image gives its
    first frame. Downscaling uses LANCZOS and keeps the aspect ratio; small photos
    are never upscaled.

    Memory stays near one decoded picture: a JPEG is decoded at the smallest scale
    (1/2, 1/4, 1/8) that still covers ``max_side``; anything else is resized in its
    own mode (16-bit greys included) before the orientation, the conversion to RGB
    and the white backdrop, which then cost only the small picture. With
    ``max_decode_bytes``, a photo whose ``decode_cost_bytes`` is over it raises
    :class:`PhotoTooLarge` before a pixel is decoded; a file that does not decode
    raises :class:`UnreadablePhoto` (both ``ValueError``), whatever Pillow raised.
    ``formats`` limits the Pillow plugins that may open it, as ``Image.open``.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fileobj_or_path, formats=formats) as image:
                image.seek(0)
                full_size = image.size
                # JPEG can decode straight at 1/2, 1/4 or 1/8 scale (never below the
                # size asked for): far less memory and time for a 40-megapixel upload.
                image.draft("RGB", _fitted_size(image.size, max_side))
                if max_decode_bytes is not None:
                    cost = decode_cost_bytes(image, max_side=max_side, full_size=full_size)
                    _check_decode_cost(cost, max_decode_bytes, full_size=full_size)
                return _decoded_photo(image, max_side)
    except MemoryError as error:
        raise PhotoTooLarge(_NOT_ENOUGH_MEMORY) from error
    except (UnreadablePhoto, FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # a path that is not there is not a photo that does not decode
    except _DECODE_ERRORS as error:
        raise UnreadablePhoto() from error


def _decoded_photo(image: Image.Image, max_side: int) -> np.ndarray:
    image.load()
    orientation = photo_orientation(image)  # after load: a PNG's eXIf may follow its pixels
    if image.mode == "I;16":  # a 16-bit grey PNG: scaled to 8 bits (rounded), not clipped
        image = image.point(lambda value: value / 257 + 0.5).convert("L")
    elif _needs_conversion(image):  # palette, 1-bit, CMYK, a transparent colour …
        image = image.convert("RGBA" if _has_transparency(image) else "RGB")
    target = _fitted_size(image.size, max_side)
    if target != image.size:
        # RGBA and LA are resized premultiplied, so the white backdrop may come after.
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in _ORIENTATION_TRANSPOSE:
        image = image.transpose(_ORIENTATION_TRANSPOSE[orientation])
    return np.array(_to_rgb(image), dtype=np.uint8)  # writable, one copy


# What a stored photo keeps of its file's metadata: the colour profile and, for
# palette or greyscale images, which colour is transparent. Nothing else (EXIF with
# GPS, camera and artist, XMP, IPTC, maker notes, comments, text chunks) is written.
_KEPT_INFO = ("icc_profile", "transparency")
# Pillow format -> how the cleaned photo is written (the same format as uploaded).
_CLEAN_SAVE_OPTIONS = {
    "JPEG": {"format": "JPEG", "quality": 95},
    "MPO": {"format": "JPEG", "quality": 95},  # a phone's JPEG: its first picture
    "PNG": {"format": "PNG"},
    "WEBP": {"format": "WEBP", "quality": 95},
    # What every browser shows: JPEG, or PNG for a picture with alpha (below).
    "HEIF": {"format": "JPEG", "quality": 95},
    "AVIF": {"format": "JPEG", "quality": 95},
}


def photo_without_metadata(fileobj_or_path: str | os.PathLike | BinaryIO, *,
                           max_decode_bytes: int | None = None, formats=None
                           ) -> tuple[bytes, str]:
    """The photo written anew without metadata, and its format (``"JPEG"``, ``"PNG"``
    or ``"WEBP"``).

    The EXIF orientation is applied to the pixels (so the picture stands as the camera
    meant) and then dropped with the rest of the EXIF; only the colour profile (and a
    palette image's transparent colour) is kept. PNG stays lossless; JPEG and WebP are
    re-encoded at quality 95; HEIF and AVIF become a JPEG at quality 95 (a PNG when
    they have alpha), which any browser shows. It decodes the whole picture at full size, twice over
    when it turns it: with ``max_decode_bytes`` that is checked first
    (:class:`PhotoTooLarge`); a file that does not decode raises
    :class:`UnreadablePhoto`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fileobj_or_path, formats=formats) as image:
                image.seek(0)
                # The whole picture, its turned copy, the codecs' own buffers.
                pixels = image.width * image.height
                cost = pixels * (2 * _BYTES_PER_PIXEL.get(image.mode, 4)
                                 + _CODEC_BYTES_PER_PIXEL.get(image.format or "", 0)
                                 + _ENCODER_BYTES_PER_PIXEL.get(image.format or "", 0))
                cost = int(cost * 1.1) + 16 * 2**20
                _check_decode_cost(cost, max_decode_bytes, full_size=image.size)
                options = dict(_CLEAN_SAVE_OPTIONS.get(image.format, {"format": "PNG"}))
                if options["format"] == "JPEG" and image.mode not in ("L", "RGB", "CMYK"):
                    options = {"format": "PNG"}  # alpha, 16 bits: what JPEG cannot hold
                kept = {key: image.info[key] for key in _KEPT_INFO if key in image.info}
                upright = ImageOps.exif_transpose(image)
                if upright is image:
                    upright = image.copy()
            upright.info = {}
            if "transparency" in kept and options["format"] != "PNG":
                kept.pop("transparency")
            buffer = io.BytesIO()
            upright.save(buffer, **options, **kept)
    except MemoryError as error:
        raise PhotoTooLarge(_NOT_ENOUGH_MEMORY) from error
    except UnreadablePhoto:
        raise
    except _DECODE_ERRORS as error:
        raise UnreadablePhoto() from error
    return buffer.getvalue(), options["format"]


def _fitted_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_grey_to_rgb(image)
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() or "a" in image.mode or "transparency" in image.info


def _sixteen_bit_grey_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's own convert() clips 16-bit values at 255 (a white image); scale instead.
    grey = np.asarray(image, dtype=np.float64)
    grey8 = np.floor(np.clip(grey, 0, 65535) / 257.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.repeat(grey8[:, :, None], 3, axis=2), "RGB")


# --------------------------------------------------------------------------- tiling


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
    photo = _as_rgb_uint8(photo)
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


def _as_rgb_uint8(photo: np.ndarray) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {photo.dtype} {photo.shape}")
    return photo


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
        output[top + start : top + start + len(rows)] = _round_to_uint8(rows)


def _round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half up, clipped to 0..255 (reuses ``values``' memory when it is float)."""
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    np.clip(values, 0, 255, out=values)
    values += 0.5
    return np.floor(values, out=values).astype(np.uint8)


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
        small = _round_to_uint8(_block_mean(photo, factor))
        self.coarse_reference = _block_mean(_run_one(run, small), coarse)

    def correct(self, stylized: np.ndarray, top: int, left: int) -> None:
        """Affinely match ``stylized``'s per-channel mean/std to the reference, in place."""
        # Quantise like the reference's input was, so an identity run matches exactly.
        tile_coarse = _block_mean(_round_to_uint8(_block_mean(stylized, self.factor)), self.coarse)
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


# --------------------------------------------------------------------------- stroke size

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
    result_width, result_height = _fitted_size((width, height), max_side)
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
    photo = _as_rgb_uint8(photo)
    if working_side is not None and working_side < 1:
        raise ValueError(f"working_side must be positive or None, got {working_side}")
    height, width = photo.shape[:2]
    if working_side is None or max(height, width) <= working_side:
        return stylize_tiled(photo, run, tile=tile, on_pass=on_pass)
    size = _fitted_size((width, height), working_side)
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
        _as_rgb_uint8(a) for a in (photo, small_photo, small_result)
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
        output[top:bottom] = _round_to_uint8(strip)
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


# --------------------------------------------------------------------------- post-processing


def blend_strength(photo: np.ndarray, result: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` 1 gives ``result``, 0 gives ``photo``, linear in between (rounded half up)."""
    _check_pair(photo, result)
    return _round_to_uint8(_blend(photo.astype(np.float32), result.astype(np.float32), strength))


def _blend(photo: np.ndarray, result: np.ndarray, strength: float) -> np.ndarray:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength}")
    return photo + strength * (result - photo)


def preserve_colors(photo: np.ndarray, result: np.ndarray) -> np.ndarray:
    """The result's luminance with the photo's chroma (full-range BT.601 YCbCr, as JPEG)."""
    _check_pair(photo, result)
    return _round_to_uint8(_preserved_colors(photo, result))


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
    return _round_to_uint8(_blend(photo.astype(np.float32), stylized, strength))


def _check_pair(photo: np.ndarray, result: np.ndarray) -> None:
    _as_rgb_uint8(photo)
    _as_rgb_uint8(result)
    if photo.shape != result.shape:
        raise ValueError(f"photo {photo.shape} and result {result.shape} differ in size")


# --------------------------------------------------------------------------- encoding

# Results are stored as JPEG whatever came in; downloads also as PNG or WebP
# (why: docs/design/result-format.md).
RESULT_FORMAT = "JPEG"
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
FORMAT_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def thumbnail_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` shrunk (aspect kept, never enlarged) to a longer side of ``max_side``:
    what ``thumbnail_jpeg`` gives."""
    return _fitted_size(size, max_side)


def thumbnail_jpeg(fileobj: BinaryIO, *, max_side: int, quality: int = 85) -> bytes:
    """A JPEG of the picture in ``fileobj`` shrunk to ``thumbnail_size`` (a JPEG is
    decoded at a reduced scale first, so a 16 MP result takes a few tens of ms), without
    any metadata. For small renditions of results (a share link's og:image)."""
    with Image.open(fileobj) as image:
        target = _fitted_size(image.size, max_side)
        image.draft("RGB", target)
        picture = _to_rgb(image) if image.mode != "RGB" else image.copy()
    if picture.size != target:
        picture = picture.resize(target, Image.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_image(array: np.ndarray, *, format: str = RESULT_FORMAT, quality: int = 92) -> bytes:
    """Encode an RGB ``uint8`` array as JPEG (baseline, at ``quality``), PNG or WebP
    (lossy, at ``quality``) bytes.

    Raises ``ValueError`` for an array that is not ``(H, W, 3)`` ``uint8`` or a format
    not in ``FORMAT_EXTENSIONS``. Why baseline: docs/design/result-format.md.
    """
    image = Image.fromarray(_as_rgb_uint8(array), "RGB")
    buffer = io.BytesIO()
    if format == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    elif format == "PNG":
        image.save(buffer, format="PNG")
    elif format == "WEBP":
        image.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"unsupported format {format!r}; use one of {sorted(FORMAT_EXTENSIONS)}")
    return buffer.getvalue()
