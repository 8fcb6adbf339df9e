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
'ispe' says (``_heif_real_size``): every size check binds on the real size.

Pure Python, no Pillow: the cost is linear in the file's size, with the per-byte work
done by ``re``, ``bytes.find`` and ``zlib.crc32`` in C, and the per-segment work
bounded by ``MAX_SEGMENTS``; nothing is decompressed (a PNG's IDAT, a JPEG's scans).
Whether the compressed data itself decodes is only known when the worker decodes it
(``stylize.imaging.load_photo``); a PNG's chunk checksums are checked here.
"""

from __future__ import annotations

import bisect
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

#: Progressive JPEG scans a photo may have: every scan is a pass over every block of
#: the picture, so decoding costs scans × pixels. Encoders write 6 (grey) to 10
#: (colour), mozjpeg up to ~12. Scan bombs measured: docs/design/uploads.md.
MAX_SCANS = 100
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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def _corrupt():
    return HeaderError("corrupt")


# --- EXIF ----------------------------------------------------------------------------------


def exif_orientation(tiff: bytes) -> int:
    """The orientation tag (1..8) of IFD0 of a TIFF-structured EXIF block, else 1."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return 1
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for entry in range(min(count, 1000)):
            tag, kind, number = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * entry)
            if tag != ORIENTATION_TAG:
                continue
            if number < 1 or kind not in (3, 4):  # SHORT or LONG
                return 1
            (value,) = struct.unpack_from(order + ("H" if kind == 3 else "I"), tiff,
                                          ifd + 2 + 12 * entry + 8)
            return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def exif_with_only_orientation(orientation: int) -> bytes:
    """A TIFF-structured EXIF block (no ``Exif\\0\\0`` prefix) with one tag."""
    return (b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01"
            + struct.pack(">HHIHH", ORIENTATION_TAG, 3, 1, orientation, 0) + b"\x00" * 4)


# --- JPEG ----------------------------------------------------------------------------------

# SOF markers libjpeg decodes: baseline, extended, progressive; Huffman or arithmetic.
_JPEG_SOF = {0xC0: False, 0xC1: False, 0xC2: True, 0xC9: False, 0xCA: True}
# SOF markers it does not: lossless and hierarchical.
_JPEG_SOF_UNSUPPORTED = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn
# In entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte), a restart marker
# or more 0xFF fill; anything else starts the next segment.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


@dataclass
class _Part:
    start: int
    end: int
    kind: object  # a JPEG marker (int) or a PNG/WebP chunk type (bytes)


def _jpeg_walk(data: bytes, check_size):
    parts: list[_Part] = [_Part(0, 2, 0xD8)]
    pos, size, scans = 2, None, 0
    progressive, mpo, orientation, exif_seen, sampling = False, False, 1, False, ()
    width = height = components = 0
    while True:
        if len(parts) > MAX_SEGMENTS["JPEG"]:
            raise _corrupt()
        if pos >= len(data) or data[pos] != 0xFF:
            raise _corrupt()  # truncated, or junk where a segment should start
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 1 >= len(data):
            raise _corrupt()
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI: the (first) picture ends; the rest is never stored
            if size is None or scans == 0:
                raise _corrupt()
            parts.append(_Part(pos, pos + 2, marker))
            break
        if marker in _JPEG_STANDALONE:
            parts.append(_Part(pos, pos + 2, marker))
            pos += 2
            continue
        if marker == 0xD8 or marker < 0xC0:
            raise _corrupt()
        if pos + 4 > len(data):
            raise _corrupt()
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise _corrupt()
        body = data[pos + 4:end]
        if marker in _JPEG_SOF or marker in _JPEG_SOF_UNSUPPORTED:
            if size is not None or len(body) < 6:
                raise _corrupt()
            precision = body[0]
            height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            components = body[5]
            if len(body) < 6 + 3 * components or components == 0:
                raise _corrupt()
            if marker in _JPEG_SOF_UNSUPPORTED:
                raise HeaderError("unsupported_format",
                                  what=gettext_lazy("A lossless or hierarchical JPEG"))
            if precision != 8:
                raise HeaderError("unsupported_format", what=format_lazy(
                    gettext_lazy("A {bits}-bit JPEG"), bits=precision))
            if components not in _JPEG_MODES:
                raise _corrupt()
            factors = [(body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(components)]
            if not all(1 <= h <= 4 and 1 <= v <= 4 for h, v in factors):
                raise _corrupt()
            if width == 0 or height == 0:  # height 0: given later by DNL; not supported
                raise _corrupt()
            max_h, max_v = max(h for h, _ in factors), max(v for _, v in factors)
            sampling = tuple(h * v / (max_h * max_v) for h, v in factors)
            size, progressive = (width, height), _JPEG_SOF[marker]
            if check_size:
                check_size(width, height)
        elif marker == 0xE1 and body[:6] == b"Exif\x00\x00" and not exif_seen:
            exif_seen = True  # the first EXIF counts, as for Pillow
            orientation = exif_orientation(body[6:])
        elif marker == 0xE2 and body[:4] == b"MPF\x00":
            mpo = True
        parts.append(_Part(pos, end, marker))
        pos = end
        if marker == 0xDA:  # SOS: entropy-coded data follows, up to the next marker
            if size is None or len(body) < 1 or len(body) != 4 + 2 * body[0]:
                raise _corrupt()
            scans += 1
            if scans > MAX_SCANS:
                raise HeaderError("too_many_scans", limit=MAX_SCANS)
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                raise _corrupt()  # truncated inside a scan
            parts[-1].end = pos = found.start()
    header = PhotoHeader(
        format="MPO" if mpo else "JPEG", width=width, height=height,
        mode=_JPEG_MODES[components], orientation=orientation, frames=1, scans=scans,
        progressive=progressive, bits=8, sampling=sampling,
    )
    return header, parts


def _jpeg_kept(data: memoryview, part: _Part) -> bytes | memoryview | None:
    """A segment as stored: itself, a JFIF header without its thumbnail, or None."""
    marker = part.kind
    if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
        return data[part.start:part.end]
    body = bytes(data[part.start + 4:min(part.end, part.start + 4 + 16)])
    if marker == 0xE0 and body[:5] == b"JFIF\x00" and len(body) >= 14:
        jfif = body[:12] + b"\x00\x00"  # no thumbnail
        return b"\xff\xe0" + (len(jfif) + 2).to_bytes(2, "big") + jfif
    if marker == 0xE2 and body[:12] == b"ICC_PROFILE\x00":
        return data[part.start:part.end]
    if marker == 0xEE and body[:5] == b"Adobe":
        return data[part.start:part.end]
    return None  # EXIF, XMP, IPTC, maker notes, MPF, comments …


def _jpeg_rebuild(data: bytes, parts: list[_Part], orientation: int) -> bytes:
    data = memoryview(data)  # slices without copies; one join at the end
    out = [b"\xff\xd8"]
    exif_at = 1
    for part in parts[1:]:
        kept = _jpeg_kept(data, part)
        if kept is not None:
            out.append(kept)
            if part.kind == 0xE0 and len(out) == 2:
                exif_at = 2  # after a leading JFIF header
    if orientation != 1:
        exif = b"Exif\x00\x00" + exif_with_only_orientation(orientation)
        out.insert(exif_at, b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif)
    return b"".join(out)


# --- PNG -----------------------------------------------------------------------------------

_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
# Ancillary chunks that say how to show the pixels; everything else is dropped.
_PNG_KEPT = _PNG_CRITICAL | {b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP",
                             b"mDCV", b"cLLI", b"bKGD", b"pHYs", b"hIST"}
_PNG_CHUNK_TYPE = re.compile(rb"[A-Za-z]{4}")


def _png_mode(depth: int, colour: int) -> str:
    if colour == 0:
        return {1: "1", 16: "I;16"}.get(depth, "L")
    return {2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[colour]


def _png_walk(data: bytes, check_size):
    view = memoryview(data)  # no copies of the (up to 20 MB of) IDAT data
    parts: list[_Part] = []
    pos, frames, fctl, orientation, exif_seen = 8, 1, 0, 1, False
    seen_plte = seen_idat = ended = False
    depth = colour = width = height = 0
    while not ended:
        if len(parts) >= MAX_SEGMENTS["PNG"]:
            raise _corrupt()
        if pos + 12 > len(data):
            raise _corrupt()  # truncated (no IEND)
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not _PNG_CHUNK_TYPE.fullmatch(kind):
            raise _corrupt()
        if zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            raise _corrupt()
        body = view[pos + 8:min(end - 4, pos + 8 + 64)]  # what any header field needs
        if not parts:
            if kind != b"IHDR" or length != 13:
                raise _corrupt()
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            depth, colour, compression, filtering, interlace = body[8:13]
            if (not 0 < width <= 0x7FFFFFFF or not 0 < height <= 0x7FFFFFFF
                    or depth not in _PNG_DEPTHS.get(colour, ())
                    or compression or filtering or interlace > 1):
                raise _corrupt()
            if check_size:
                check_size(width, height)
        elif kind == b"IHDR":
            raise _corrupt()
        elif kind == b"PLTE":
            seen_plte = True
        elif kind == b"IDAT":
            if colour == 3 and not seen_plte:
                raise _corrupt()
            seen_idat = True
        elif kind == b"IEND":
            if not seen_idat:
                raise _corrupt()
            ended = True
        elif kind == b"acTL" and length >= 4:
            frames = max(frames, int.from_bytes(body[:4], "big"))
        elif kind == b"fcTL":
            fctl += 1
        elif kind == b"eXIf" and not exif_seen:
            exif_seen = True
            orientation = exif_orientation(data[pos + 8:end - 4])
        elif kind[0] < 0x61 and kind not in _PNG_CRITICAL:  # an unknown critical chunk
            raise _corrupt()
        parts.append(_Part(pos, end, kind))
        pos = end
        if max(frames, fctl) > 1:
            raise HeaderError("animated")
    header = PhotoHeader(
        format="PNG", width=width, height=height, mode=_png_mode(depth, colour),
        orientation=orientation, frames=max(frames, fctl, 1), scans=0, progressive=False,
        bits=depth,
    )
    return header, parts


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (len(body).to_bytes(4, "big") + kind + body
            + zlib.crc32(kind + body).to_bytes(4, "big"))


def _png_rebuild(data: bytes, parts: list[_Part], orientation: int) -> bytes:
    data = memoryview(data)  # slices without copies; one join at the end
    out = [_PNG_SIGNATURE]
    for part in parts:
        if part.kind == b"IDAT" and orientation != 1:
            out.append(_png_chunk(b"eXIf", exif_with_only_orientation(orientation)))
            orientation = 1
        if part.kind in _PNG_KEPT:
            out.append(data[part.start:part.end])
    return b"".join(out)


# --- WebP ----------------------------------------------------------------------------------

_VP8X_ICC, _VP8X_ALPHA, _VP8X_EXIF, _VP8X_XMP, _VP8X_ANIMATION = 0x20, 0x10, 0x08, 0x04, 0x02
_WEBP_KEPT = {b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"}


def _webp_image_size(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    """(width, height, has alpha) of a VP8 (lossy) or VP8L (lossless) bitstream."""
    if kind == b"VP8 ":
        if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a" or body[0] & 1:
            raise _corrupt()  # no key frame start code, or not a key frame
        width = int.from_bytes(body[6:8], "little") & 0x3FFF
        height = int.from_bytes(body[8:10], "little") & 0x3FFF
        alpha = False
    else:
        if len(body) < 5 or body[0] != 0x2F:
            raise _corrupt()
        bits = int.from_bytes(body[1:5], "little")
        if bits >> 29:  # version
            raise _corrupt()
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha = bool((bits >> 28) & 1)
    if width == 0 or height == 0:
        raise _corrupt()
    return width, height, alpha


def _webp_walk(data: bytes, check_size):
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data) or riff_end < 12 + 8:
        raise _corrupt()
    parts: list[_Part] = []
    pos, frames, orientation, exif_seen = 12, 0, 1, False
    flags, size, alpha, image = None, None, False, None
    while pos < riff_end:
        if len(parts) >= MAX_SEGMENTS["WEBP"] or pos + 8 > riff_end:
            raise _corrupt()
        kind = data[pos:pos + 4]
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        end = pos + 8 + length
        if end > riff_end:
            raise _corrupt()
        body = data[pos + 8:end]
        if not parts:
            if kind == b"VP8X":
                if length < 10:
                    raise _corrupt()
                flags = body[0]
                size = (int.from_bytes(body[4:7], "little") + 1,
                        int.from_bytes(body[7:10], "little") + 1)
                alpha = bool(flags & _VP8X_ALPHA)
            elif kind in (b"VP8 ", b"VP8L"):
                *size, alpha = _webp_image_size(kind, body)
                size, image = tuple(size), kind
            else:
                raise _corrupt()
            if check_size:
                check_size(*size)
        elif kind == b"VP8X":
            raise _corrupt()
        elif kind in (b"VP8 ", b"VP8L"):
            if image is not None or frames:
                raise _corrupt()
            *found, has_alpha = _webp_image_size(kind, body)
            if tuple(found) != size:
                raise _corrupt()  # a still image is exactly the canvas
            image, alpha = kind, alpha or has_alpha
        elif kind == b"ANMF":
            frames += 1
            if frames > 1:
                raise HeaderError("animated")
        elif kind == b"EXIF" and not exif_seen and flags is not None:
            exif_seen = True  # only the extended format (VP8X) carries EXIF
            orientation = exif_orientation(body[6:] if body[:6] == b"Exif\x00\x00" else body)
        parts.append(_Part(pos, end + (length & 1), kind))
        pos = end + (length & 1)  # chunks are padded to an even length
    if image is None and not frames:
        raise _corrupt()
    header = PhotoHeader(
        format="WEBP", width=size[0], height=size[1], mode="RGBA" if alpha else "RGB",
        orientation=orientation, frames=max(frames, 1), scans=0, progressive=False, bits=8,
    )
    return header, parts


def _webp_rebuild(data: bytes, parts: list[_Part], orientation: int) -> bytes:
    data = memoryview(data)  # slices without copies; one join at the end
    chunks = []
    for part in parts:
        if part.kind not in _WEBP_KEPT:
            continue
        chunk = data[part.start:part.end]
        if part.kind == b"VP8X":
            flags = chunk[8] & ~(_VP8X_EXIF | _VP8X_XMP)
            if orientation != 1:
                flags |= _VP8X_EXIF
            chunk = bytes(chunk[:8]) + bytes([flags]) + bytes(chunk[9:])
        chunks.append(chunk)
    if orientation != 1 and parts[0].kind == b"VP8X":  # EXIF needs the extended format
        exif = exif_with_only_orientation(orientation)
        chunks.append(b"EXIF" + len(exif).to_bytes(4, "little") + exif + b"\x00" * (len(exif) & 1))
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


# --- HEIF and AVIF (ISOBMFF boxes) ---------------------------------------------------------

# ftyp brands: one of them, major or compatible, must be there; the primary item's
# coding (HEVC or AV1) then says which decoder reads it.
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
#: How many times the primary picture's pixels every coded picture in the file may add
#: up to (tiles, thumbnails, alpha, depth and gain maps; an iPhone photo's are about
#: 1.4 times), plus ``_HEIF_SLACK_PIXELS`` for small pictures with large tiles.
HEIF_CODED_PIXELS_FACTOR = 3
_HEIF_SLACK_PIXELS = 1 << 22
_HEIF_CODINGS = {b"hvc1": "HEIF", b"av01": "AVIF"}
_HEIF_DERIVED = {b"grid", b"iden", b"iovl"}
_HEIF_ALPHA = (b"urn:mpeg:hevc:2015:auxid:1", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha")
# Top-level boxes a picture needs; any other (udta, uuid, XMP …) becomes a zeroed 'free'.
_HEIF_KEPT_TOP = {b"ftyp", b"meta", b"mdat", b"free", b"skip"}
# Boxes inside 'meta' that hold metadata of their own rather than items.
_HEIF_META_FREED = {b"xml ", b"bxml", b"udta", b"uuid"}
# What irot (turned 90° anticlockwise this many times) and imir (0: top to bottom,
# 1: left to right) do, in EXIF orientations' terms (see _exif_compose).
_IROT_ORIENTATION = {0: 1, 1: 8, 2: 3, 3: 6}
_IMIR_ORIENTATION = {0: 4, 1: 2}  # as libheif and libavif read it


@dataclass
class _HeifItem:
    type: bytes = b""
    content_type: bytes = b""
    width: int = 0
    height: int = 0
    properties: list = None  # (box type, body) in association order
    extents: list = None  # (start, end) in the file (construction 0) or idat (1)
    in_idat: bool = False

    def __post_init__(self):
        self.properties = self.properties or []
        self.extents = self.extents or []


def _exif_compose(first: int, then: int) -> int:
    """The EXIF orientation that does ``first``, then ``then`` (orientations as the
    transform that stands a picture upright, as ``ImageOps.exif_transpose`` applies it)."""
    def apply(orientation, grid):
        rows, cols = len(grid), len(grid[0])
        turned = {
            1: lambda r, c: grid[r][c], 2: lambda r, c: grid[r][cols - 1 - c],
            3: lambda r, c: grid[rows - 1 - r][cols - 1 - c], 4: lambda r, c: grid[rows - 1 - r][c],
            5: lambda r, c: grid[c][r], 6: lambda r, c: grid[rows - 1 - c][r],
            7: lambda r, c: grid[rows - 1 - c][cols - 1 - r], 8: lambda r, c: grid[c][cols - 1 - r],
        }[orientation]
        shape = (cols, rows) if orientation >= 5 else (rows, cols)
        return tuple(tuple(turned(r, c) for c in range(shape[1])) for r in range(shape[0]))

    grid = ((0, 1, 2), (3, 4, 5))
    done = apply(then, apply(first, grid))
    return next(o for o in range(1, 9) if apply(o, grid) == done)


class _Boxes:
    """ISOBMFF boxes of ``data[start:end]``: (type, box start, body start, box end)."""

    def __init__(self, data: bytes, start: int, end: int, counter: list[int]):
        self.data, self.pos, self.end, self.counter = data, start, end, counter

    def __iter__(self):
        data = self.data
        while self.pos < self.end:
            self.counter[0] += 1
            if self.counter[0] > MAX_SEGMENTS["HEIF"]:
                raise _corrupt()
            start = self.pos
            if start + 8 > self.end:
                raise _corrupt()
            size = int.from_bytes(data[start:start + 4], "big")
            kind = bytes(data[start + 4:start + 8])
            body = start + 8
            if size == 1:
                if start + 16 > self.end:
                    raise _corrupt()
                size, body = int.from_bytes(data[start + 8:start + 16], "big"), start + 16
            elif size == 0:
                size = self.end - start  # to the end of the enclosing box (or file)
            if size < body - start or start + size > self.end:
                raise _corrupt()
            self.pos = start + size
            yield kind, start, body, start + size


def _uint(data: bytes, pos: int, size: int, end: int) -> int:
    if pos + size > end:
        raise _corrupt()
    return int.from_bytes(data[pos:pos + size], "big")


def _heif_walk(data: bytes, check_size):
    counter = [0]
    top = _Boxes(data, 0, len(data), counter)
    parts: list[_Part] = []
    meta = None
    stop = len(data)
    try:
        for kind, start, body, end in top:
            if not parts:
                if kind != b"ftyp" or end - body < 8:
                    raise _corrupt()
                brands = {bytes(data[i:i + 4]) for i in range(body + 8, end - 3, 4)}
                brands.add(bytes(data[body:body + 4]))  # the major brand
                if not brands & (HEIF_BRANDS | AVIF_BRANDS):
                    raise HeaderError("unsupported_format", what=describe(data[:32]))
            elif kind == b"meta":
                if meta is not None:
                    raise _corrupt()
                meta = (body, end)
            elif kind == b"moov":  # a track: an image sequence
                raise HeaderError("animated")
            parts.append(_Part(start, end, kind))
    except HeaderError as error:
        if error.code != "corrupt" or meta is None:
            raise
        stop = top.pos  # maybe what follows the picture: the items' extents decide
    if meta is None:
        raise _corrupt()
    items, primary, references, idat = _heif_meta(data, *meta, counter)
    item = items.get(primary)
    if item is None:
        raise _corrupt()
    tiles = references.get((b"dimg", primary), []) if item.type in _HEIF_DERIVED else [primary]
    codings = {items[tile].type if tile in items else b"" for tile in tiles}
    if len(codings) != 1:
        raise _corrupt()
    (coding,) = codings
    if coding not in _HEIF_CODINGS:
        name = coding.decode("latin-1").strip()
        raise HeaderError("unsupported_format", what=(
            format_lazy(gettext_lazy("A HEIF image in {coding}"), coding=name) if name
            else gettext_lazy("A HEIF image in an unknown coding")))
    if item.width == 0 or item.height == 0:
        raise _corrupt()  # no 'ispe': the size is unknown
    if check_size:
        check_size(item.width, item.height)  # what is decoded
    width, height, orientation, bits = item.width, item.height, 1, 8
    for kind, body in item.properties:  # in their order, as the decoder applies them
        if kind == b"clap" and coding == b"hvc1":  # libheif crops; libavif does not
            width, height = _heif_clean_aperture(body, width, height)
        elif kind == b"irot" and body:
            orientation = _exif_compose(orientation, _IROT_ORIENTATION[body[0] & 3])
            if body[0] & 1:
                width, height = height, width
        elif kind == b"imir" and body:
            orientation = _exif_compose(orientation, _IMIR_ORIENTATION[body[0] & 1])
        elif kind == b"pixi" and len(body) >= 5:
            bits = max(body[5:5 + body[4]] or b"\x08")
    if orientation >= 5:  # back to the stored picture's frame
        width, height = height, width
    if check_size and (width, height) != (item.width, item.height):
        check_size(width, height)  # what is shown
    for tile in tiles:
        if not items[tile].width or not items[tile].height or not items[tile].extents:
            raise _corrupt()  # a picture with no size or no data
    idat_size = idat[1] - idat[0] if idat else 0
    coded = 0
    for other in items.values():
        for _, extent_end in other.extents:
            if extent_end > (idat_size if other.in_idat else stop):
                raise _corrupt()  # truncated: the data is not all there
    for other in items.values():
        if other.type in _HEIF_DERIVED or other.type in _HEIF_CODINGS:
            real_width, real_height = _heif_real_size(data, other, idat, counter)
            if other.width and other.height and (
                    real_width > other.width + HEIF_CODED_PADDING
                    or real_height > other.height + HEIF_CODED_PADDING):
                raise _corrupt()  # a picture bigger than its 'ispe' says
            if other.type not in _HEIF_DERIVED:
                coded += max(other.width * other.height, real_width * real_height)
        else:
            coded += other.width * other.height
    if coded > HEIF_CODED_PIXELS_FACTOR * item.width * item.height + _HEIF_SLACK_PIXELS:
        raise HeaderError("too_many_pixels",
                          dims=f" (its pictures add up to {coded / 1e6:.1f} megapixels)")
    alpha = any(
        kind == b"auxC" and bytes(body[4:]).split(b"\x00")[0] in _HEIF_ALPHA
        for (reference, source), targets in references.items()
        if reference == b"auxl" and primary in targets and source in items
        for kind, body in items[source].properties
    )
    header = PhotoHeader(
        format=_HEIF_CODINGS[coding], width=width, height=height,
        mode="RGBA" if alpha else "RGB", orientation=orientation, frames=1, scans=0,
        progressive=False, bits=bits,
    )
    return header, (parts, items, idat, stop, meta)


def _heif_clean_aperture(body: bytes, width: int, height: int) -> tuple[int, int]:
    """The size a 'clap' (clean aperture) property crops a ``width``×``height``
    picture to, rounded as libheif does; ``corrupt`` for an impossible one."""
    if len(body) < 32:
        raise _corrupt()
    fields = struct.unpack(">IIIIiIiI", body[:32])
    if fields[1] == 0 or fields[3] == 0:
        raise _corrupt()
    cropped = (int(fields[0] / fields[1] + 0.5), int(fields[2] / fields[3] + 0.5))
    if not (0 < cropped[0] <= width and 0 < cropped[1] <= height):
        raise _corrupt()
    return cropped


def _heif_meta(data: bytes, start: int, end: int, counter):
    """The items of a 'meta' box, its primary item, its references as
    ``{(type, from item): [to items]}`` and where its 'idat' is."""
    items: dict[int, _HeifItem] = {}
    primary, references, idat = None, {}, None
    properties: list = []
    associations: list = []
    handler = None
    for kind, _, body, box_end in _Boxes(data, start + 4, end, counter):  # a full box
        if kind in (b"hdlr", b"pitm", b"iinf", b"iref"):
            version = _uint(data, body, 1, box_end)
        if kind == b"hdlr":
            handler = bytes(data[body + 8:body + 12])
        elif kind == b"pitm":
            primary = _uint(data, body + 4, 2 if version == 0 else 4, box_end)
        elif kind == b"iinf":
            count_size = 2 if version == 0 else 4
            count = _uint(data, body + 4, count_size, box_end)
            infos = list(_Boxes(data, body + 4 + count_size, box_end, counter))
            if len(infos) != count:
                raise _corrupt()
            for info_kind, _, info, info_end in infos:
                if info_kind != b"infe":
                    raise _corrupt()
                _heif_item_info(data, info, info_end, items)
        elif kind == b"iloc":
            _heif_locations(data, body, box_end, items)
        elif kind == b"iprp":
            for inner, _, inner_body, inner_end in _Boxes(data, body, box_end, counter):
                if inner == b"ipco":
                    properties += [(prop, data[prop_body:prop_end]) for prop, _, prop_body,
                                   prop_end in _Boxes(data, inner_body, inner_end, counter)]
                elif inner == b"ipma":
                    associations.append((inner_body, inner_end))
        elif kind == b"iref":
            id_size = 2 if version == 0 else 4
            for ref, _, ref_body, ref_end in _Boxes(data, body + 4, box_end, counter):
                source = _uint(data, ref_body, id_size, ref_end)
                count = _uint(data, ref_body + id_size, 2, ref_end)
                first = ref_body + id_size + 2
                targets = [_uint(data, first + i * id_size, id_size, ref_end)
                           for i in range(count)]
                references.setdefault((ref, source), []).extend(targets)
        elif kind == b"idat":
            idat = (body, box_end)
    if handler != b"pict":
        raise _corrupt()
    for body, box_end in associations:
        _heif_associations(data, body, box_end, items, properties)
    for item in items.values():
        for kind, body in item.properties:
            if kind == b"ispe":
                if len(body) < 12:
                    raise _corrupt()
                item.width = int.from_bytes(body[4:8], "big")
                item.height = int.from_bytes(body[8:12], "big")
    return items, primary, references, idat


def _heif_item_info(data: bytes, pos: int, end: int, items) -> None:
    version = _uint(data, pos, 1, end)
    if version < 2:
        return  # no item type: nothing this reads
    id_size = 2 if version == 2 else 4
    number = _uint(data, pos + 4, id_size, end)
    type_at = pos + 4 + id_size + 2
    item = items.setdefault(number, _HeifItem())
    item.type = bytes(data[type_at:type_at + 4])
    if len(item.type) != 4:
        raise _corrupt()
    if item.type == b"mime":
        name_end = data.find(b"\x00", type_at + 4, end)
        if name_end >= 0:
            type_end = data.find(b"\x00", name_end + 1, end)
            item.content_type = bytes(data[name_end + 1:type_end if type_end >= 0 else end])


def _heif_locations(data: bytes, pos: int, end: int, items) -> None:
    version = _uint(data, pos, 1, end)
    if version > 2:
        raise _corrupt()
    sizes = _uint(data, pos + 4, 2, end)
    offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
    base_size, index_size = (sizes >> 4) & 15, (sizes & 15) if version else 0
    if not {offset_size, length_size, base_size, index_size} <= {0, 4, 8}:
        raise _corrupt()
    id_size = 4 if version == 2 else 2
    count = _uint(data, pos + 6, id_size, end)
    at = pos + 6 + id_size
    for _ in range(count):
        number = _uint(data, at, id_size, end)
        at += id_size
        method = 0
        if version:
            method = _uint(data, at, 2, end) & 15
            at += 2
        reference = _uint(data, at, 2, end)
        base = _uint(data, at + 2, base_size, end)
        extent_count = _uint(data, at + 2 + base_size, 2, end)
        at += 4 + base_size
        if method > 1 or reference:
            raise HeaderError("unsupported_format",
                              what=gettext_lazy("A HEIF image with data outside it"))
        item = items.setdefault(number, _HeifItem())
        item.in_idat = method == 1
        for _ in range(extent_count):
            at += index_size
            offset = base + _uint(data, at, offset_size, end)
            length = _uint(data, at + offset_size, length_size, end)
            at += offset_size + length_size
            if length == 0:  # the rest of the file
                length = max(len(data) - offset, 0)
            item.extents.append((offset, offset + length))


def _heif_associations(data: bytes, pos: int, end: int, items, properties) -> None:
    version, flags = _uint(data, pos, 1, end), _uint(data, pos + 1, 3, end)
    id_size, index_size = (2 if version == 0 else 4), (2 if flags & 1 else 1)
    count = _uint(data, pos + 4, 4, end)
    at = pos + 8
    for _ in range(count):
        number = _uint(data, at, id_size, end)
        links = _uint(data, at + id_size, 1, end)
        at += id_size + 1
        item = items.setdefault(number, _HeifItem())
        for _ in range(links):
            index = _uint(data, at, index_size, end) & (0x7FFF if index_size == 2 else 0x7F)
            at += index_size
            if index:
                if index > len(properties):
                    raise _corrupt()
                item.properties.append(properties[index - 1])


# --- What a HEIF/AVIF picture really decodes to --------------------------------------------
#
# A decoder makes the picture its bitstream codes, whatever the 'ispe' says: libheif
# decodes it, then raises (its security limits are sized by the 'ispe'); libavif decodes
# it whole (an AVIF saying 1024² that codes 8192² takes the memory of 8192²). So the size
# is read again from what the decoder itself reads — an HEVC picture's sequence parameter
# sets (in 'hvcC', which libheif puts before the data, and in the item's data), an AV1
# picture's sequence headers (in 'av1C' and in the item's data: their largest frame size
# bounds every frame), a grid's or an overlay's canvas — and a picture bigger than its
# 'ispe' is ``corrupt``: every size check, the web's and the worker's, binds on the real
# size. The data is read in place (``_Run``), a few bytes a unit, each unit counted
# against ``MAX_SEGMENTS``: the cost stays that of walking the file's boxes.

#: Pixels a side an encoder may code beyond the 'ispe' (HEVC pads to whole coding
#: blocks, at most 64 pixels, and crops them off again).
HEIF_CODED_PADDING = 64
#: How many bytes of a parameter set or sequence header the size is read from (it comes
#: within the first few hundred: a level, profiles, operating points, then the size).
_CODEC_HEADER_BYTES = 512
_HEVC_SPS = 33
_AV1_SEQUENCE_HEADER = 1


class _Run:
    """Pieces of ``data`` (an item's extents, or one box's body) read as one run of
    bytes, without copying them."""

    def __init__(self, data, pieces):
        self.data = data
        self.pieces = [(start, end) for start, end in pieces if end > start]
        self.offsets = [0]  # where each piece starts in the run
        for start, end in self.pieces:
            self.offsets.append(self.offsets[-1] + end - start)
        self.size = self.offsets[-1]

    def read(self, pos: int, count: int) -> bytes:
        """``count`` bytes from ``pos`` (fewer at the end)."""
        out = b""
        index = bisect.bisect_right(self.offsets, pos) - 1
        while len(out) < count and index < len(self.pieces):
            start, end = self.pieces[index]
            at = start + pos + len(out) - self.offsets[index]
            out += bytes(self.data[at:min(end, at + count - len(out))])
            index += 1
        return out

    def uint(self, pos: int, size: int) -> int:
        value = self.read(pos, size)
        if len(value) != size:
            raise _corrupt()
        return int.from_bytes(value, "big")


class _Bits:
    """Reads a big-endian bit string: fixed-width fields and Exp-Golomb codes."""

    def __init__(self, data: bytes):
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def read(self, count: int) -> int:
        if count > self.left:
            raise _corrupt()
        self.left -= count
        return (self.value >> self.left) & ((1 << count) - 1)

    def leading_zeros(self, most: int) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros > most:
                raise _corrupt()
        return zeros

    def golomb(self) -> int:  # HEVC's ue(v)
        zeros = self.leading_zeros(31)
        return (1 << zeros) - 1 + self.read(zeros)

    def uvlc(self) -> int:  # AV1's uvlc()
        zeros = self.leading_zeros(32)
        return (1 << zeros) - 1 + self.read(zeros) if zeros < 32 else (1 << 32) - 1


def _count(counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_SEGMENTS["HEIF"]:
        raise _corrupt()


def _heif_real_size(data: bytes, item: _HeifItem, idat, counter) -> tuple[int, int]:
    """The largest picture ``item`` decodes to by the headers its decoder reads (a grid
    or an overlay: its canvas); (0, 0) for an item with no data, or an 'iden'.
    ``corrupt`` when a coded item's data comes with no size at all (nothing decodes it)
    or a broken one."""
    if not item.extents or item.type == b"iden":
        return 0, 0
    base = idat[0] if item.in_idat and idat else 0
    payload = _Run(data, [(base + start, base + end) for start, end in item.extents])
    if item.type in (b"grid", b"iovl"):
        return _heif_canvas_size(item.type, payload.read(0, 18))
    sizes = []
    if item.type == b"hvc1":
        length_size = 4
        for kind, body in item.properties:
            if kind == b"hvcC":
                length_size, configured = _hvcc_nal_units(body, counter)
                sizes += _hevc_sizes(_Run(body, [(0, len(body))]), configured)
        sizes += _hevc_sizes(payload, _length_prefixed(payload, length_size, counter))
    else:  # av01
        for kind, body in item.properties:
            if kind == b"av1C" and len(body) > 4:
                configured = _Run(body, [(4, len(body))])
                sizes += _av1_sizes(configured, _av1_obus(configured, counter))
        sizes += _av1_sizes(payload, _av1_obus(payload, counter))
    if not sizes:
        raise _corrupt()
    return max(width for width, _ in sizes), max(height for _, height in sizes)


def _heif_canvas_size(kind: bytes, body: bytes) -> tuple[int, int]:
    """A 'grid' or 'iovl' descriptor's output size (ISO/IEC 23008-12, 6.6.2)."""
    at = 4 if kind == b"grid" else 10  # version, flags, rows and columns / fill colour
    if len(body) < 2:
        raise _corrupt()
    size = 4 if body[1] & 1 else 2
    if len(body) < at + 2 * size:
        raise _corrupt()
    return (int.from_bytes(body[at:at + size], "big"),
            int.from_bytes(body[at + size:at + 2 * size], "big"))


def _hvcc_nal_units(body: bytes, counter) -> tuple[int, list[tuple[int, int]]]:
    """An 'hvcC' box's NAL unit length size, and where its parameter sets' NAL units
    are in it: (start, length) each."""
    body = memoryview(body)
    if len(body) < 23:
        raise _corrupt()
    length_size, arrays, at = (body[21] & 3) + 1, body[22], 23
    nals = []
    for _ in range(arrays):
        count = _uint(body, at + 1, 2, len(body))
        at += 3
        for _ in range(count):
            _count(counter)
            length = _uint(body, at, 2, len(body))
            if at + 2 + length > len(body):
                raise _corrupt()
            nals.append((at + 2, length))
            at += 2 + length
    return length_size, nals


def _length_prefixed(run: _Run, length_size: int, counter):
    """Where the NAL units of an HEVC item's data are, each after its ``length_size``-byte
    length: (start, length) each."""
    at = 0
    while at < run.size:
        _count(counter)
        length = run.uint(at, length_size)
        at += length_size
        if at + length > run.size:
            raise _corrupt()
        yield at, length
        at += length


def _hevc_sizes(run: _Run, nals) -> list[tuple[int, int]]:
    """The coded sizes of the sequence parameter sets among ``nals`` of ``run``."""
    sizes = []
    for start, length in nals:
        if length >= 2 and (run.read(start, 1)[0] >> 1) & 0x3F == _HEVC_SPS:
            sizes.append(_hevc_sps_size(run.read(start, min(length, _CODEC_HEADER_BYTES))))
    return sizes


def _hevc_sps_size(nal: bytes) -> tuple[int, int]:
    """The coded size (``pic_width/height_in_luma_samples``) of an HEVC sequence
    parameter set's NAL unit (ITU-T H.265, 7.3.2.2)."""
    bits = _Bits(re.sub(rb"\x00\x00\x03", b"\x00\x00", nal[2:]))  # less emulation prevention
    bits.read(4)  # sps_video_parameter_set_id
    sub_layers = bits.read(3)  # sps_max_sub_layers_minus1
    bits.read(1 + 96)  # temporal_id_nesting; profile_tier_level's general part
    present = [(bits.read(1), bits.read(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.read(2 * (8 - sub_layers))
    for profile, level in present:
        bits.read(88 * profile + 8 * level)
    bits.golomb()  # sps_seq_parameter_set_id
    if bits.golomb() == 3:  # chroma_format_idc 4:4:4
        bits.read(1)  # separate_colour_plane_flag
    return bits.golomb(), bits.golomb()


def _av1_obus(run: _Run, counter):
    """(type, start, size) of each OBU in ``run`` (AV1, 5.3)."""
    at = 0
    while at < run.size:
        _count(counter)
        header = run.uint(at, 1)
        if header & 0x80:
            raise _corrupt()  # obu_forbidden_bit
        at += 2 if header & 4 else 1  # with obu_extension_flag, one byte more
        if header & 2:  # obu_has_size_field: leb128()
            size = 0
            for index in range(8):
                byte = run.uint(at, 1)
                at += 1
                size |= (byte & 0x7F) << (7 * index)
                if not byte & 0x80:
                    break
        else:
            size = run.size - at
        if at + size > run.size:
            raise _corrupt()
        yield (header >> 3) & 15, at, size
        at += size


def _av1_sizes(run: _Run, obus) -> list[tuple[int, int]]:
    """The largest frame sizes of the sequence headers among ``obus`` of ``run``."""
    return [_av1_sequence_size(run.read(start, min(size, _CODEC_HEADER_BYTES)))
            for kind, start, size in obus if kind == _AV1_SEQUENCE_HEADER]


def _av1_sequence_size(obu: bytes) -> tuple[int, int]:
    """The largest frame (``max_frame_width/height_minus_1`` + 1) of an AV1 sequence
    header OBU (AV1, 5.5); every frame of the sequence is at most that."""
    bits = _Bits(obu)
    bits.read(4)  # seq_profile, still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)
    else:
        decoder_model, delay_bits = 0, 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)  # num_units_in_display_tick, time_scale
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()
            decoder_model = bits.read(1)
            if decoder_model:
                delay_bits = bits.read(5) + 1
                bits.read(32 + 5 + 5)
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)  # operating_point_idc
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)  # seq_tier
            if decoder_model and bits.read(1):
                bits.read(2 * delay_bits + 1)
            if initial_display_delay and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1


#: What an emptied HEIF 'Exif' item holds: no offset to a TIFF header with no tags.
_HEIF_EMPTY_EXIF = b"\x00\x00\x00\x00" + b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 6


def _heif_rebuild(data: bytes, walked) -> bytes:
    """The same file with every metadata item's bytes overwritten in place (an 'Exif'
    item becomes an EXIF with no tags, XMP and other 'mime' items spaces, 'uri ' items
    zeros), metadata boxes turned into zeroed 'free' boxes of the same size, and
    nothing after its last box: no offset in the file moves."""
    parts, items, idat, stop, (meta_body, meta_end) = walked
    out = bytearray(data[:stop])
    for part in parts:
        if part.kind not in _HEIF_KEPT_TOP:
            _heif_free(out, part.start, part.end)
    for kind, start, _, end in _Boxes(out, meta_body + 4, meta_end, [0]):
        if kind in _HEIF_META_FREED:
            _heif_free(out, start, end)
    for item in items.values():
        if item.type == b"Exif":
            filler = _HEIF_EMPTY_EXIF
        elif item.type in (b"mime", b"uri "):
            filler = b" " if item.type == b"mime" else b"\x00"
        else:
            continue
        length = sum(end - start for start, end in item.extents)
        payload = (filler * (length if len(filler) == 1 else 1)).ljust(length, b"\x00")
        taken = 0
        base = idat[0] if item.in_idat else 0
        for start, end in item.extents:
            out[base + start:base + end] = payload[taken:taken + end - start]
            taken += end - start
    return bytes(out)


def _heif_free(out: bytearray, start: int, end: int) -> None:
    header = 16 if int.from_bytes(out[start:start + 4], "big") == 1 else 8
    out[start + 4:start + 8] = b"free"
    out[start + header:end] = bytes(end - start - header)
