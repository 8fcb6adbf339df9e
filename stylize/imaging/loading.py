"""Photos in: what decoding one costs, and the photo as an upright RGB array.

``load_photo`` gives an upright RGB ``uint8`` array no longer than ``max_side`` and
``photo_without_metadata`` a stored photo's file written anew upright without its
metadata; with ``max_decode_bytes`` both refuse a photo whose decoding would take more
(``decode_cost_bytes``, from the header alone) with ``PhotoTooLarge``, and a file that
does not decode raises ``UnreadablePhoto`` (both ``ValueError``, with a message for
the photo's owner). Importing this module registers pillow-heif's HEIF opener with
Pillow; ``PHOTO_FORMATS`` are the Pillow plugins the worker opens a stored photo with.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from typing import BinaryIO

import numpy as np
import pillow_heif
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy
from PIL import Image, ImageOps, features

from .pixels import fitted_size

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
    target_width, target_height = fitted_size(image.size, max_side)
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
                image.draft("RGB", fitted_size(image.size, max_side))
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
    target = fitted_size(image.size, max_side)
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
