"""The one check every uploaded photo goes through, for the upload form and the API.

``validate_photo_upload(uploaded_file)`` returns a :class:`ValidatedPhoto` or raises
``django.core.exceptions.ValidationError`` with a readable message and one of these codes:

``empty``                 zero bytes
``file_too_large``        more than ``settings.UPLOAD_MAX_BYTES`` (default 20 MB)
``unsupported_format``    not JPEG, PNG or WebP *by content* (the name and the
                          Content-Type are never trusted); GIF, BMP, TIFF, HEIC, SVG,
                          text … are named in the message when recognised
``too_many_pixels``       more than ``settings.UPLOAD_MAX_PIXELS`` (default 40 MP), read
                          from the header before anything is decoded; Pillow's own
                          decompression-bomb error and warning end up here too
``too_small``             a side under 16 pixels
``extreme_aspect_ratio``  the longer side more than 20 times the shorter
``animated``              an animated PNG or WebP (a still photo is expected; a JPEG
                          with extra pictures (MPO, as phones write) is a still photo
                          and is accepted: the pipeline uses the first picture)
``corrupt``               Pillow cannot verify or fully decode it (truncated, bad CRC,
                          broken EXIF …)

What passes: the file's name is replaced by ``<stem>.<jpg|png|webp>`` chosen from the
content, so a polyglot (a PNG with HTML or a ZIP appended still decodes as a PNG and
is accepted) is stored and served as an image, never under a name a browser would
render as a page. The file is rewound so it can be saved. CMYK JPEGs and 16-bit PNGs
are accepted; ``stylize.imaging.load_photo`` converts them to RGB.
"""

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageFile

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 16
MAX_ASPECT_RATIO = 20

# Pillow format name -> (content type, extension). MPO is how Pillow names a JPEG that
# carries extra pictures (phones' depth maps, previews); it is a JPEG.
ALLOWED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
# The only Pillow plugins ever run on an upload; other parsers never see the bytes.
_PILLOW_PLUGINS = ("JPEG", "PNG", "WEBP")

# For a readable refusal only: what a file that is not allowed looks like.
_OTHER_MAGIC = [
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
]
_FTYP_BRANDS = {b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image",
                b"avif": "an AVIF image"}

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
                  TypeError, ZeroDivisionError)

MESSAGES = {
    "empty": "The file is empty.",
    "file_too_large": "The file is {size}; photos may be at most {limit}.",
    "unsupported_format": "{what} is not a supported photo. Upload a JPEG, PNG or WebP image.",
    "too_many_pixels": (
        "The image is too large{dims}: photos may have at most {limit_mp:g} megapixels."
    ),
    "too_small": "The image is {w}×{h} pixels; each side must be at least {min_side} pixels.",
    "extreme_aspect_ratio": (
        "The image is {w}×{h} pixels; its longer side may be at most {ratio} times its "
        "shorter side."
    ),
    "animated": "Animated images are not supported. Upload a still photo.",
    "corrupt": "The image is damaged or incomplete and cannot be read.",
}


@dataclass(frozen=True)
class ValidatedPhoto:
    """What the validator learned about an accepted photo."""

    format: str  # Pillow's name: "JPEG", "MPO", "PNG" or "WEBP"
    content_type: str  # from the content: image/jpeg, image/png, image/webp
    extension: str  # jpg, png, webp
    width: int  # upright, after the EXIF orientation is applied
    height: int
    mode: str  # as decoded: RGB, L, CMYK, I;16, RGBA, P …
    orientation: int  # the EXIF orientation tag (1 when there is none)
    size_bytes: int
    filename: str  # the safe name the file now carries


def upload_max_bytes() -> int:
    return int(getattr(settings, "UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


def upload_max_pixels() -> int:
    return int(getattr(settings, "UPLOAD_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def _refuse(code: str, **params):
    raise ValidationError(MESSAGES[code].format(**params), code=code)


def validate_photo_upload(uploaded_file) -> ValidatedPhoto:
    """Check an uploaded photo; see the module docstring for what is refused and why."""
    try:
        return _validate(uploaded_file)
    finally:
        uploaded_file.seek(0)


def _human_bytes(n: int) -> str:
    for unit, factor in (("MB", 2**20), ("KB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _file_size(uploaded_file) -> int:
    size = getattr(uploaded_file, "size", None)
    if size is None:
        uploaded_file.seek(0, 2)
        size = uploaded_file.tell()
    return int(size)


def _validate(uploaded_file) -> ValidatedPhoto:
    size = _file_size(uploaded_file)
    if size == 0:
        _refuse("empty")
    max_bytes = upload_max_bytes()
    if size > max_bytes:
        _refuse("file_too_large", size=_human_bytes(size), limit=_human_bytes(max_bytes))

    max_pixels = upload_max_pixels()
    uploaded_file.seek(0)
    head = uploaded_file.read(32)

    # Pillow refuses (error) or warns about huge images while reading the header; the
    # warning is made an error here so neither slips through as a log line.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(uploaded_file, head)
        with image:
            fmt = image.format
            if fmt not in ALLOWED_FORMATS:
                _refuse("unsupported_format", what=f"A {fmt} image")
            width, height = image.size
            _check_dimensions(width, height, max_pixels)
            if fmt != "MPO" and getattr(image, "is_animated", False):
                _refuse("animated")
            try:
                image.verify()
            except Image.DecompressionBombError:
                _refuse("too_many_pixels", dims="", limit_mp=max_pixels / 1e6)
            except _DECODE_ERRORS:
                _refuse("corrupt")

        # verify() leaves the image unusable: reopen and decode every pixel.
        uploaded_file.seek(0)
        image = _open(uploaded_file, head)
        with image:
            if image.format != fmt or image.size != (width, height):
                _refuse("corrupt")
            mode = image.mode
            try:
                orientation = int(image.getexif().get(0x0112, 1) or 1)
                image.seek(0)
                _load_fully(image)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                _refuse("too_many_pixels", dims="", limit_mp=max_pixels / 1e6)
            except _DECODE_ERRORS:
                _refuse("corrupt")

    if orientation in (5, 6, 7, 8):  # rotated by 90° or 270°
        width, height = height, width
    content_type, extension = ALLOWED_FORMATS[fmt]
    filename = _safe_name(getattr(uploaded_file, "name", None), extension)
    try:
        uploaded_file.name = filename
    except AttributeError:  # a read-only name: the caller keeps its own
        pass
    return ValidatedPhoto(
        format=fmt, content_type=content_type, extension=extension, width=width,
        height=height, mode=mode, orientation=orientation if 1 <= orientation <= 8 else 1,
        size_bytes=size, filename=filename,
    )


def _open(uploaded_file, head: bytes) -> Image.Image:
    uploaded_file.seek(0)
    try:
        return Image.open(uploaded_file, formats=_PILLOW_PLUGINS)
    except Image.DecompressionBombError:
        _refuse("too_many_pixels", dims="", limit_mp=upload_max_pixels() / 1e6)
    except Image.DecompressionBombWarning:
        _refuse("too_many_pixels", dims="", limit_mp=upload_max_pixels() / 1e6)
    except Image.UnidentifiedImageError:
        _refuse("unsupported_format", what=_describe(head))
    except _DECODE_ERRORS:
        # The header was recognised but is broken.
        _refuse("corrupt")


def _describe(head: bytes) -> str:
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what[0].upper() + what[1:]
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        what = _FTYP_BRANDS[head[8:12]]
        return what[0].upper() + what[1:]
    stripped = head.lstrip()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "An SVG or XML file"
    return "This file"


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        _refuse(
            "too_many_pixels",
            dims=f" ({width}×{height} pixels, {width * height / 1e6:.1f} megapixels)",
            limit_mp=max_pixels / 1e6,
        )
    if min(width, height) < MIN_SIDE:
        _refuse("too_small", w=width, h=height, min_side=MIN_SIDE)
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        _refuse("extreme_aspect_ratio", w=width, h=height, ratio=MAX_ASPECT_RATIO)


def _load_fully(image: Image.Image) -> None:
    """Decode every pixel, refusing truncated data even if the process allows it."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    if previous:
        # Someone switched on Pillow's tolerance process-wide; uploads don't get it.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _safe_name(name: str | None, extension: str) -> str:
    stem = Path(name or "").stem if name else ""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:40] or "photo"
    return f"{stem}.{extension}"
