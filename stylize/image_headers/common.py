"""What every format's walker shares: the refusal (:class:`HeaderError`, ``_corrupt``),
the header it gives (:class:`PhotoHeader`), the parts of a file it records (``_Part``),
the limit on how many it walks (``MAX_SEGMENTS``), EXIF's orientation tag, a big-endian
field read with a bound (``_uint``), and ``describe``: what a file no walker reads looks
like, for a readable refusal. Imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy

#: Segments (JPEG), chunks (PNG) or RIFF chunks (WebP) walked before giving up on a
#: file: a few dozen in a photo (a 20 MB PNG in 8 KB IDATs has 2,500).
MAX_SEGMENTS = {"JPEG": 1000, "PNG": 100_000, "WEBP": 1000, "HEIF": 10_000}

ORIENTATION_TAG = 0x0112


class HeaderError(ValueError):
    """Why a file is refused: ``code`` is the validator's, ``params`` fill its message."""

    def __init__(self, code: str, **params):
        super().__init__(code, params)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class PhotoHeader:
    format: str  # "JPEG", "MPO" (a JPEG with more pictures), "PNG", "WEBP", "HEIF", "AVIF"
    width: int  # as stored (before the orientation is applied; HEIF: the 'ispe')
    height: int
    mode: str  # the Pillow mode a decode gives: L, RGB, CMYK, I;16, RGBA, P …
    orientation: int  # EXIF orientation, 1 when none (or not 1..8); HEIF: its irot/imir
    frames: int  # pictures in an animation (1 for a still)
    scans: int  # JPEG scans (1 for a baseline JPEG; 0 for PNG and WebP)
    progressive: bool  # a progressive JPEG (the decoder keeps every coefficient)
    bits: int  # per sample as stored (8 or 16; 1, 2, 4 for small palettes and greys)
    sampling: tuple[float, ...] = ()  # JPEG: each component's share of the full size


def describe(head: bytes) -> str:
    """What a file that is not a JPEG, PNG, WebP, HEIF or AVIF looks like, for a
    readable refusal."""
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[head[8:12]]
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return gettext_lazy("An SVG or XML file")
    return gettext_lazy("This file")


_OTHER_MAGIC = [
    (b"GIF87a", gettext_lazy("A GIF image")),
    (b"GIF89a", gettext_lazy("A GIF image")),
    (b"BM", gettext_lazy("A BMP image")),
    (b"II*\x00", gettext_lazy("A TIFF image")),
    (b"MM\x00*", gettext_lazy("A TIFF image")),
    (b"%PDF", gettext_lazy("A PDF document")),
    (b"PK\x03\x04", gettext_lazy("A ZIP archive")),
    (b"\x00\x00\x00\x0cjP  ", gettext_lazy("A JPEG 2000 image")),
    (b"\xff\x4f\xff\x51", gettext_lazy("A JPEG 2000 image")),
    (b"\xff\x0a", gettext_lazy("A JPEG XL image")),
    (b"\x00\x00\x00\x0cJXL ", gettext_lazy("A JPEG XL image")),
]
_A_VIDEO = gettext_lazy("A video")
_FTYP_BRANDS = {b"isom": _A_VIDEO, b"mp41": _A_VIDEO, b"mp42": _A_VIDEO, b"qt  ": _A_VIDEO,
                b"M4V ": _A_VIDEO, b"3gp4": _A_VIDEO,
                b"crx ": gettext_lazy("A Canon raw photo"),
                b"jpx ": gettext_lazy("A JPEG 2000 image")}


def _corrupt():
    return HeaderError("corrupt")


@dataclass
class _Part:
    start: int
    end: int
    kind: object  # a JPEG marker (int) or a PNG/WebP chunk type (bytes)


def _uint(data: bytes, pos: int, size: int, end: int) -> int:
    if pos + size > end:
        raise _corrupt()
    return int.from_bytes(data[pos:pos + size], "big")
