"""Files that are cheap to send and expensive to decode, shared by the upload-cost
tests (tests/stylize/test_upload_cost.py) and the fuzz bench (bench/fuzz_uploads.py).

Each is a valid image (Pillow decodes it), under the byte and pixel limits, and small
on the wire; what it costs is in its header: many progressive scans, many pixels, or
16 bits a sample.
"""

import io
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _segments_end(data: bytes, start: int) -> int:
    """Where the entropy-coded data that starts at ``start`` ends (the next marker)."""
    pos = start
    while True:
        pos = data.index(b"\xff", pos)
        following = data[pos + 1]
        if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1
            continue
        return pos


def scan_bomb_jpeg(side: int = 6000, scans: int = 3000) -> bytes:
    """A progressive ``side``² JPEG whose last scan is repeated until it has ``scans``.

    A scan is a pass over every block of the picture, so decoding costs about
    ``scans × side²``; repeated refinement scans are only a warning to libjpeg, so the
    file decodes (3,000 scans at 6000²: ~310 KB, 12.9 s in the old web check).
    """
    data = encode(Image.new("RGB", (side, side), (90, 120, 200)), "JPEG", quality=75,
                  progressive=True)
    last_sos = data.rindex(b"\xff\xda")
    end = _segments_end(data, last_sos + 2 + int.from_bytes(data[last_sos + 2:last_sos + 4]))
    assert data[end:end + 2] == b"\xff\xd9", "the last scan runs to the end"
    have = data.count(b"\xff\xda")
    scan = data[last_sos:end]
    return data[:end] + scan * max(0, scans - have) + data[end:]


def _png(width: int, height: int, *, bit_depth: int, colour_type: int, row: bytes) -> bytes:
    """A PNG of ``height`` identical rows (filter 0 + ``row``), streamed through zlib."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    header = (width.to_bytes(4, "big") + height.to_bytes(4, "big")
              + bytes([bit_depth, colour_type, 0, 0, 0]))
    compressor = zlib.compressobj(9)
    line = b"\x00" + row
    parts = [compressor.compress(line * 64) for _ in range(height // 64)]
    parts.append(compressor.compress(line * (height % 64)))
    parts.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


def rgba_png(side: int = 6300) -> bytes:
    """An RGBA ``side``² PNG of one colour (6300²: 39.7 MP in ~170 KB)."""
    return _png(side, side, bit_depth=8, colour_type=6, row=bytes([30, 160, 90, 200]) * side)


def sixteen_bit_png(side: int = 6300, *, colour_type: int = 2) -> bytes:
    """A 16-bit ``side``² PNG (colour type 2: RGB, 6: RGBA, 0: grey; 6300²: 39.7 MP)."""
    bands = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    sample = (0x7F3C).to_bytes(2, "big")
    return _png(side, side, bit_depth=16, colour_type=colour_type, row=sample * bands * side)


def png_bomb(side: int = 20_000) -> bytes:
    """side × side pixels of 1-bit black: a few KB on disk, gigabytes once decoded."""
    return encode(Image.new("1", (side, side)), "PNG", optimize=True)
