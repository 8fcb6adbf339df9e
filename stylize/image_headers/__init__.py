"""What an uploaded photo's bytes say about it, read without decoding a pixel, and the
same bytes with their private metadata dropped.

``photo_inspect(data)`` walks a JPEG's segments, a PNG's chunks, a WebP's RIFF
chunks or a HEIF/AVIF file's ISOBMFF boxes (iPhones' HEIC photos: the 'ftyp' brand,
the 'meta' box's items, their 'iloc' extents and 'iprp'/'ipco' properties: 'ispe'
size, 'irot'/'imir' orientation) and returns a :class:`PhotoHeader` (format, size,
mode, EXIF orientation, frames, progressive scans), or raises :class:`HeaderError`
with the code the upload validator refuses with (``unsupported_format``, ``corrupt``,
``animated``, ``too_many_scans``, or ``too_many_pixels`` from the ``check_size``
callback, which runs as soon as the size is known). ``photo_strip_metadata(data)``
gives the bytes to store: the same compressed picture with no EXIF beyond the
orientation, no XMP, IPTC, comments, text chunks, thumbnails or maker notes, and
nothing after the picture's end (a HEIF file keeps its coded thumbnail: pixels of the
same photo). A HEIF file is also ``too_many_pixels`` when the pictures it codes
(tiles, thumbnails, alpha, depth and gain maps) add up to more than
``HEIF_CODED_PIXELS_FACTOR`` times its picture, and ``corrupt`` when an item's data
runs past the file's end (truncated) or when what its decoder reads (HEVC's sequence
parameter sets, AV1's sequence headers, a grid's canvas) codes a bigger picture than its
'ispe' says (``heif_codecs``): every size check binds on the real size.

Pure Python, no Pillow: the cost is linear in the file's size, with the per-byte work
done by ``re``, ``bytes.find`` and ``zlib.crc32`` in C, and the per-segment work
bounded by ``MAX_SEGMENTS``; nothing is decompressed (a PNG's IDAT, a JPEG's scans).
Whether the compressed data itself decodes is only known when the worker decodes it
(``stylize.imaging.load_photo``); a PNG's chunk checksums are checked here.

One module a format, each with a walker (``_<format>_walk``: the header and the parts'
places) and a rebuild (``_<format>_rebuild``: the bytes to store): ``jpeg``, ``png``,
``webp`` and ``heif`` (HEIF and AVIF's ISOBMFF boxes), with ``heif_codecs`` (what a
HEIF/AVIF picture's HEVC or AV1 headers say it decodes to), ``exif`` (the orientation)
and ``common`` (:class:`HeaderError`, :class:`PhotoHeader`, ``describe``, the limits),
which the others import; this module dispatches on the file's first bytes (``_walk``)
and is the only one callers import.
"""

from __future__ import annotations

from collections.abc import Callable

from .common import MAX_SEGMENTS, ORIENTATION_TAG, HeaderError, PhotoHeader, describe
from .exif import exif_orientation, exif_with_only_orientation
from .heif import AVIF_BRANDS, HEIF_BRANDS, HEIF_CODED_PIXELS_FACTOR, _heif_rebuild, _heif_walk
from .heif_codecs import HEIF_CODED_PADDING
from .jpeg import MAX_SCANS, _jpeg_rebuild, _jpeg_walk
from .png import _PNG_SIGNATURE, _png_rebuild, _png_walk
from .webp import _webp_rebuild, _webp_walk

__all__ = [
    "AVIF_BRANDS", "HEIF_BRANDS", "HEIF_CODED_PADDING", "HEIF_CODED_PIXELS_FACTOR",
    "MAX_SCANS", "MAX_SEGMENTS", "ORIENTATION_TAG", "HeaderError", "PhotoHeader", "describe",
    "exif_orientation", "exif_with_only_orientation", "photo_inspect", "photo_strip_metadata",
]


def photo_inspect(data: bytes, *, check_size: Callable[[int, int], None] | None = None
                  ) -> PhotoHeader:
    """The header of a JPEG, PNG, WebP, HEIF or AVIF photo; see the module docstring."""
    return _walk(data, check_size)[0]


def photo_strip_metadata(data: bytes) -> tuple[bytes, str]:
    """The photo's bytes without private metadata, and its format (``"JPEG"``,
    ``"PNG"``, ``"WEBP"``, ``"HEIF"`` or ``"AVIF"``).

    Kept: the compressed picture, its colour profile and what a decoder needs (JFIF
    without thumbnail, Adobe's colour transform, PNG's palette, transparency, gamma,
    chromaticities, sRGB, physical size; WebP's VP8X, alpha and animation chunks) and,
    when the EXIF orientation is not 1, a new EXIF holding only that orientation, so
    the worker can still stand the picture upright (``stylize.imaging``) — it then
    rewrites the photo without it. A HEIF or AVIF file keeps its boxes and every
    offset; its metadata items are overwritten in place (``_heif_rebuild``) and its
    orientation stays in its 'irot'/'imir' properties. Raises :class:`HeaderError`
    like ``photo_inspect``.
    """
    header, parts = _walk(data, None)
    if header.format in ("JPEG", "MPO"):
        return _jpeg_rebuild(data, parts, header.orientation), "JPEG"
    if header.format == "PNG":
        return _png_rebuild(data, parts, header.orientation), "PNG"
    if header.format in ("HEIF", "AVIF"):
        return _heif_rebuild(data, parts), header.format
    return _webp_rebuild(data, parts, header.orientation), "WEBP"


def _walk(data: bytes, check_size):
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_walk(data, check_size)
    if data[:8] == _PNG_SIGNATURE:
        return _png_walk(data, check_size)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_walk(data, check_size)
    if data[4:8] == b"ftyp":
        return _heif_walk(data, check_size)
    raise HeaderError("unsupported_format", what=describe(data[:32]))
