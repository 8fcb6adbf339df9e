"""JPEG: ``_jpeg_walk`` reads a JPEG's segments up to its (first) picture's end into a
:class:`~stylize.image_headers.common.PhotoHeader` and the segments' places;
``_jpeg_rebuild`` joins the segments a decoder needs, with a new EXIF holding only the
orientation when it is not 1. Refuses lossless and hierarchical JPEGs, those of other
than 8 bits, and more than ``MAX_SCANS`` progressive scans.
"""

from __future__ import annotations

import re

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from .common import MAX_SEGMENTS, HeaderError, PhotoHeader, _corrupt, _Part
from .exif import exif_orientation, exif_with_only_orientation

# --- JPEG ----------------------------------------------------------------------------------

#: Progressive JPEG scans a photo may have: every scan is a pass over every block of
#: the picture, so decoding costs scans × pixels. Encoders write 6 (grey) to 10
#: (colour), mozjpeg up to ~12. Scan bombs measured: docs/design/uploads.md.
MAX_SCANS = 100
# SOF markers libjpeg decodes: baseline, extended, progressive; Huffman or arithmetic.
_JPEG_SOF = {0xC0: False, 0xC1: False, 0xC2: True, 0xC9: False, 0xCA: True}
# SOF markers it does not: lossless and hierarchical.
_JPEG_SOF_UNSUPPORTED = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn
# In entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte), a restart marker
# or more 0xFF fill; anything else starts the next segment.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


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
