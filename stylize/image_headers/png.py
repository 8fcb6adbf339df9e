"""PNG: ``_png_walk`` reads a PNG's chunks (checking each one's CRC) up to its IEND into
a :class:`~stylize.image_headers.common.PhotoHeader` and the chunks' places, refusing an
animated PNG; ``_png_rebuild`` keeps the critical chunks and those that say how to show
the pixels, with an 'eXIf' holding only the orientation when it is not 1.
"""

from __future__ import annotations

import re
import zlib

from .common import MAX_SEGMENTS, HeaderError, PhotoHeader, _corrupt, _Part
from .exif import exif_orientation, exif_with_only_orientation

# --- PNG -----------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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
