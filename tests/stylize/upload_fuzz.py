"""Mutated image files, as a Hypothesis strategy, and what the upload path must do
with each: used by the short fuzz run in `make test` (tests/stylize/test_upload_fuzz.py)
and the long one, `make fuzz` (bench/fuzz_uploads.py).

Seeds: small JPEGs (baseline, progressive, grey, CMYK, with EXIF/ICC/comment, MPO),
PNGs (RGB, RGBA, grey with alpha, 1-bit, palette with transparency, 16-bit grey,
with text, eXIf and ICC, animated), WebPs (lossy, lossless, lossy with alpha, with EXIF), and a GIF
and a TIFF. Mutations, one to four in a row: bit flips, byte overwrites, truncation,
inserted and deleted runs, and edits that know the format: a segment or chunk dropped,
repeated, swapped or given a wrong length or random body (PNG: with or without its
checksum made right again), header fields (sizes, bit depth, colour type, sampling,
VP8X flags, RIFF size) set to edge values, a JPEG's scan repeated up to 150 times.

``upload_outcome(data)`` runs the validator, then for an accepted file the web side's
metadata walk and the worker's loader (``stylizing.stored_photo_load``) and reports
what happened; anything but a refusal, a decoded photo or ``UnreadablePhoto`` is an
``unhandled`` outcome (a bug), as is a stored file that still has private metadata.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import strategies as st
from PIL import Image

from stylize.image_headers import photo_inspect, photo_strip_metadata
from stylize.imaging.loading import UnreadablePhoto
from stylize.services.stylizing import stored_photo_load
from stylize.validators import MESSAGES

FUZZ_MAX_SIDE = 128
FUZZ_MAX_DECODE_BYTES = 768 * 2**20
PRIVATE_STRINGS = (b"Jane Q. Photographer", b"EOS R5", b"Hauptstr")


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _photo(size=(48, 32), mode="RGB") -> Image.Image:
    rng = random.Random(size[0] * 31 + size[1])
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    for _ in range(40):
        image.putpixel((rng.randrange(size[0]), rng.randrange(size[1])),
                       tuple(rng.randrange(256) for _ in range(3)))
    return image.convert(mode) if mode != "RGB" else image


def _private_exif(orientation=6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x013B] = "Jane Q. Photographer"
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})
    return exif


def _icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=50)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """Name → bytes of every seed (deterministic)."""
    photo = _photo()
    mpo = io.BytesIO()
    photo.save(mpo, format="MPO", save_all=True, append_images=[_photo((48, 32))])
    grey16 = Image.linear_gradient("L").resize((40, 24)).convert("I").point(
        lambda v: v * 257).convert("I;16")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    from PIL import PngImagePlugin

    translucent = photo.convert("RGBA")
    translucent.putalpha(Image.linear_gradient("L").resize(photo.size))
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Jane Q. Photographer")
    text.add_text("Comment", "at home, Hauptstr. 5", zip=True)
    return {
        "baseline.jpg": _encode(photo, "JPEG", quality=80),
        "progressive.jpg": _encode(photo, "JPEG", quality=80, progressive=True),
        "grey.jpg": _encode(photo.convert("L"), "JPEG"),
        "cmyk.jpg": _encode(photo.convert("CMYK"), "JPEG"),
        "private.jpg": _encode(photo, "JPEG", exif=_private_exif(), icc_profile=_icc(),
                               comment=b"at home, Hauptstr. 5"),
        "phone.mpo": mpo.getvalue(),
        "rgb.png": _encode(photo, "PNG"),
        "rgba.png": _encode(photo.convert("RGBA"), "PNG"),
        "palette.png": _encode(palette, "PNG", transparency=0),
        "grey16.png": _encode(grey16, "PNG"),
        "la.png": _encode(photo.convert("LA"), "PNG"),
        "bilevel.png": _encode(photo.convert("1"), "PNG"),
        "private.png": _encode(photo, "PNG", pnginfo=text, exif=_private_exif(3),
                               icc_profile=_icc()),
        "animated.png": _animated("PNG"),
        "lossy.webp": _encode(photo, "WEBP", quality=70),
        "lossless.webp": _encode(photo, "WEBP", lossless=True),
        "alpha.webp": _encode(translucent, "WEBP", quality=70),
        "private.webp": _encode(photo, "WEBP", exif=_private_exif(8), icc_profile=_icc()),
        "photo.gif": _encode(photo, "GIF"),
        "photo.tiff": _encode(photo, "TIFF"),
    }


# --- Structure: where a format's segments are ------------------------------------------------


@dataclass
class Part:
    start: int
    end: int
    header: int  # bytes before the body (marker + length, or length + type)
    kind: bytes


def parts_of(data: bytes) -> list[Part]:
    """A tolerant split into segments/chunks (stops where the structure breaks)."""
    try:
        if data[:2] == b"\xff\xd8":
            return _jpeg_parts(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png_parts(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_parts(data)
    except (IndexError, ValueError, struct.error):
        pass
    return []


def _jpeg_parts(data: bytes) -> list[Part]:
    parts, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = min(pos + 2 + length, len(data))
        if marker == 0xDA:  # include the entropy-coded data
            scan = end
            while scan + 1 < len(data) and not (
                    data[scan] == 0xFF and data[scan + 1] not in (0, *range(0xD0, 0xD8), 0xFF)):
                scan += 1
            end = scan
        parts.append(Part(pos, end, 4, bytes([marker])))
        if end <= pos:
            break
        pos = end
    return parts


def _png_parts(data: bytes) -> list[Part]:
    parts, pos = [], 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        parts.append(Part(pos, end, 8, data[pos + 4:pos + 8]))
        pos = end
    return parts


def _webp_parts(data: bytes) -> list[Part]:
    parts, pos = [], 12
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        end = pos + 8 + length + (length & 1)
        if end > len(data):
            break
        parts.append(Part(pos, end, 8, data[pos:pos + 4]))
        pos = end
    return parts


def _png_fix_crc(data: bytearray, part: Part) -> None:
    body_end = part.end - 4
    data[body_end:part.end] = zlib.crc32(bytes(data[part.start + 4:body_end])).to_bytes(4, "big")


def _webp_fix_riff(data: bytearray) -> None:
    data[4:8] = (len(data) - 8).to_bytes(4, "little")


# --- Mutations -------------------------------------------------------------------------------

MAGIC_BYTES = 12  # what tells JPEG, PNG and WebP apart
EDGE_INTS = [0, 1, 2, 15, 16, 17, 255, 256, 6300, 16383, 16384, 65535, 65536, 2**24 - 1,
             2**31 - 1, 2**32 - 1]


def _edge_int(draw, bits: int) -> int:
    return draw(st.one_of(st.sampled_from([v for v in EDGE_INTS if v < 2**bits]),
                          st.integers(0, 2**bits - 1)))


def _position(draw, size: int) -> int:
    """Where in a file of ``size`` bytes: mostly anywhere past the format's magic
    alike (a ``Random`` seeded by Hypothesis, whose own integers favour the ends),
    sometimes anywhere, the ends first."""
    if draw(st.integers(0, 4)) < 4:  # (Hypothesis starts from 0: this branch)
        start = MAGIC_BYTES if size > 2 * MAGIC_BYTES else 0
        return start + random.Random(draw(st.integers(0, 2**32 - 1))).randrange(size - start)
    return draw(st.integers(0, size - 1))


def _flip(draw, data: bytearray) -> str:
    positions = [_position(draw, len(data)) for _ in range(draw(st.integers(1, 16)))]
    for pos in positions:
        data[pos] ^= 1 << draw(st.integers(0, 7))
    return f"flip {len(positions)} bits"


def _bytes(draw, data: bytearray) -> str:
    pos = _position(draw, len(data))
    new = draw(st.binary(min_size=1, max_size=8))
    data[pos:pos + len(new)] = new
    return f"overwrite at {pos}"


def _truncate(draw, data: bytearray) -> str:
    pos = _position(draw, len(data))
    del data[pos:]
    return f"truncate at {pos}"


def _insert(draw, data: bytearray) -> str:
    pos = _position(draw, len(data) + 1)
    data[pos:pos] = draw(st.one_of(st.binary(min_size=1, max_size=64),
                                   st.sampled_from([b"\xff\xd9", b"\xff\xda", b"\xff" * 32,
                                                    b"\x00" * 64, b"IEND", b"ANMF"])))
    return f"insert at {pos}"


def _delete(draw, data: bytearray) -> str:
    pos = _position(draw, len(data))
    size = draw(st.integers(1, 256))
    del data[pos:pos + size]
    return f"delete {size} at {pos}"


def _part_edit(draw, data: bytearray) -> str:
    parts = parts_of(bytes(data))
    if not parts:
        return _flip(draw, data)
    part = draw(st.sampled_from(parts))
    action = draw(st.sampled_from(["drop", "repeat", "swap", "length", "body", "field"]))
    is_png = data[:4] == b"\x89PNG"
    if action == "drop":
        del data[part.start:part.end]
    elif action == "repeat":
        times = draw(st.sampled_from([1, 2, 10, 99, 150]))
        data[part.end:part.end] = bytes(data[part.start:part.end]) * times
    elif action == "swap":
        other = draw(st.sampled_from(parts))
        first, second = sorted([part, other], key=lambda p: p.start)
        if first.end <= second.start:
            a, b = bytes(data[first.start:first.end]), bytes(data[second.start:second.end])
            data[second.start:second.end] = a
            data[first.start:first.end] = b
    elif action == "length":
        if data[:2] == b"\xff\xd8":
            data[part.start + 2:part.start + 4] = _edge_int(draw, 16).to_bytes(2, "big")
        elif is_png:
            data[part.start:part.start + 4] = _edge_int(draw, 32).to_bytes(4, "big")
        else:
            data[part.start + 4:part.start + 8] = _edge_int(draw, 32).to_bytes(4, "little")
    elif action == "body":
        body_end = part.end - 4 if is_png else part.end
        if body_end > part.start + part.header:
            pos = part.start + part.header + _position(draw, body_end - part.start - part.header)
            new = draw(st.binary(min_size=1, max_size=16))
            data[pos:min(pos + len(new), body_end)] = new[:body_end - pos]
        if is_png and draw(st.booleans()):
            _png_fix_crc(data, part)
    else:
        _field_edit(draw, data, part, is_png)
    if data[:4] == b"RIFF" and draw(st.booleans()):
        _webp_fix_riff(data)
    return f"{action} {part.kind!r}"


def _field_edit(draw, data: bytearray, part: Part, is_png: bool) -> None:
    """Set a header field of ``part`` to an edge value, keeping the rest valid."""
    body = part.start + part.header
    if is_png:
        if part.kind == b"IHDR":
            field = draw(st.sampled_from(["width", "height", "depth", "colour", "interlace"]))
            if field in ("width", "height"):
                offset = 0 if field == "width" else 4
                data[body + offset:body + offset + 4] = _edge_int(draw, 32).to_bytes(4, "big")
            else:
                data[body + {"depth": 8, "colour": 9, "interlace": 12}[field]] = draw(
                    st.sampled_from([0, 1, 2, 3, 4, 6, 8, 16, 255]))
        elif part.kind == b"acTL" or part.kind == b"fcTL":
            data[body:body + 4] = _edge_int(draw, 32).to_bytes(4, "big")
        else:
            return
        _png_fix_crc(data, part)
    elif data[:2] == b"\xff\xd8":
        marker = part.kind[0]
        if marker in (0xC0, 0xC1, 0xC2):
            field = draw(st.sampled_from(["precision", "height", "width", "components",
                                          "sampling"]))
            offset = {"precision": 0, "height": 1, "width": 3, "components": 5,
                      "sampling": 7}[field]
            if field in ("height", "width"):
                data[body + offset:body + offset + 2] = _edge_int(draw, 16).to_bytes(2, "big")
            else:
                data[body + offset] = draw(st.integers(0, 255))
        elif marker == 0xDA:
            data[body] = draw(st.integers(0, 255))  # components in the scan
        elif marker == 0xE1:
            data[part.start + 1] = draw(st.sampled_from([0xE0, 0xE2, 0xEE, 0xFE, 0xC4]))
    else:
        if part.kind == b"VP8X":
            field = draw(st.sampled_from(["flags", "width", "height"]))
            if field == "flags":
                data[body] = draw(st.integers(0, 255))
            else:
                offset = 4 if field == "width" else 7
                data[body + offset:body + offset + 3] = _edge_int(draw, 24).to_bytes(3, "little")
        elif part.kind in (b"VP8 ", b"VP8L"):
            offset = draw(st.integers(0, 9))
            data[body + offset] = draw(st.integers(0, 255))


def _payload(draw, data: bytearray) -> str:
    """Bytes changed inside the compressed picture only (a JPEG scan, a PNG IDAT with
    its checksum made right, a VP8/VP8L bitstream): past every structure check, to the
    decoder."""
    parts = [p for p in parts_of(bytes(data))
             if p.kind in (b"\xda", b"IDAT", b"VP8 ", b"VP8L", b"ALPH")]
    if not parts:
        return _flip(draw, data)
    part = draw(st.sampled_from(parts))
    is_png = data[:4] == b"\x89PNG"
    body, body_end = part.start + part.header, part.end - 4 if is_png else part.end
    if body_end <= body:
        return "payload: empty"
    for _ in range(draw(st.integers(1, 8))):
        pos = body + _position(draw, body_end - body)
        data[pos] = draw(st.integers(0, 255))
    if is_png:
        _png_fix_crc(data, part)
    return f"payload of {part.kind!r}"


_MUTATIONS = [_flip, _bytes, _truncate, _insert, _delete, _part_edit, _part_edit, _part_edit,
              _payload, _payload]


@st.composite
def mutated_files(draw, seeds: dict[str, bytes]):
    """(seed name, mutated bytes, what was done) from one to four mutations of a seed."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    done = []
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        done.append(draw(st.sampled_from(_MUTATIONS))(draw, data))
    # Half the time, make the checksums and sizes right again, so the mutation gets
    # past the structure check to the decoder.
    if data[:4] == b"\x89PNG" and draw(st.booleans()):
        for part in _png_parts(bytes(data)):
            _png_fix_crc(data, part)
        done.append("checksums fixed")
    elif data[:4] == b"RIFF" and len(data) >= 8 and draw(st.booleans()):
        _webp_fix_riff(data)
        done.append("RIFF size fixed")
    return name, bytes(data), "; ".join(done)


# --- What the upload path does with a file -----------------------------------------------


@dataclass
class Outcome:
    refused: str | None = None  # the validator's code
    loaded: tuple | None = None  # the worker's array shape
    unreadable: str | None = None  # the worker's reason for the owner
    unhandled: str | None = None  # a bug: where and what
    private_left: bool = False  # private metadata in the stored bytes (a bug too)

    @property
    def bug(self) -> bool:
        return bool(self.unhandled) or self.private_left


def upload_outcome(data: bytes, *, max_side: int = FUZZ_MAX_SIDE,
                   max_decode_bytes: int = FUZZ_MAX_DECODE_BYTES, decode: bool = True
                   ) -> Outcome:
    """The validator, then (accepted) the web side's metadata walk and the worker's
    loader, as a job would run them. Needs Django's settings (no database)."""
    from stylize.validators import validate_photo_upload

    outcome = Outcome()
    try:
        validate_photo_upload(SimpleUploadedFile("fuzz.bin", data))
    except ValidationError as error:
        if error.code not in MESSAGES:
            outcome.unhandled = f"validator: unknown code {error.code!r}"
        outcome.refused = error.code
        return outcome
    except Exception as error:  # noqa: BLE001 - what the fuzzing looks for
        outcome.unhandled = f"validator: {type(error).__name__}: {error}"
        return outcome
    try:
        stored, _ = photo_strip_metadata(data)
        header = photo_inspect(stored)
    except Exception as error:  # noqa: BLE001
        outcome.unhandled = f"metadata walk: {type(error).__name__}: {error}"
        return outcome
    outcome.private_left = _has_private_metadata(stored, header.orientation)
    if not decode:
        return outcome
    try:
        pixels = stored_photo_load(stored, max_side=max_side, max_decode_bytes=max_decode_bytes)
    except UnreadablePhoto as error:
        outcome.unreadable = str(error)
    except Exception as error:  # noqa: BLE001
        outcome.unhandled = f"worker loader: {type(error).__name__}: {error}"
    else:
        if pixels.dtype != "uint8" or pixels.ndim != 3 or pixels.shape[2] != 3 or max(
                pixels.shape[:2]) > max_side:
            outcome.unhandled = f"worker loader: gave {pixels.dtype} {pixels.shape}"
        outcome.loaded = pixels.shape
    return outcome


# What Pillow puts in ``info`` that says how to show the pixels, not who took them.
_HARMLESS_INFO = {"icc_profile", "transparency", "gamma", "dpi", "srgb", "chromaticity",
                  "aspect", "interlace", "background", "bkgd", "cicp", "jfif", "jfif_version",
                  "jfif_unit", "jfif_density", "adobe", "adobe_transform", "progressive",
                  "progression", "loop", "duration", "timestamp", "exif"}


def _has_private_metadata(stored: bytes, orientation: int) -> bool:
    """Whether Pillow finds metadata beyond how to show the pixels in the stored bytes:
    text chunks, comments, XMP, IPTC, MPO pictures, EXIF tags besides the orientation
    (or any EXIF when the orientation is 1)."""
    try:
        with Image.open(io.BytesIO(stored)) as image:
            info = set(image.info)
            exif = dict(image.getexif()) if "exif" in image.info else {}
    except Exception:  # noqa: BLE001 - the worker will refuse it; nothing to read
        return False
    if info - _HARMLESS_INFO or set(exif) - {0x0112}:
        return True
    return orientation == 1 and bool(exif)
