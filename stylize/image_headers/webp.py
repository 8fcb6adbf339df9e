"""WebP: ``_webp_walk`` reads a WebP's RIFF chunks (simple VP8 or VP8L, or extended
VP8X) into a :class:`~stylize.image_headers.common.PhotoHeader` and the chunks' places,
refusing an animated WebP; ``_webp_rebuild`` keeps the picture's chunks and colour
profile, with an EXIF chunk holding only the orientation when it is not 1.
"""

from __future__ import annotations

from .common import MAX_SEGMENTS, HeaderError, PhotoHeader, _corrupt, _Part
from .exif import exif_orientation, exif_with_only_orientation

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
