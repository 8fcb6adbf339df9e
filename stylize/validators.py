"""The one check every uploaded photo goes through, for the upload form and the API.

``validate_photo_upload(uploaded_file)`` returns a :class:`ValidatedPhoto` or raises
``django.core.exceptions.ValidationError`` with a readable message and one of these codes:

``empty``                 zero bytes
``file_too_large``        more than ``settings.UPLOAD_MAX_BYTES`` (default 20 MB)
``unsupported_format``    not JPEG, PNG, WebP, HEIF/HEIC or AVIF *by content* (the
                          name and the Content-Type are never trusted: a JPEG named
                          ``.heic`` is a JPEG); GIF, BMP, TIFF, SVG, video, text … are
                          named in the message when recognised; a 12-bit, lossless or
                          hierarchical JPEG, a HEIF coded other than in HEVC (or
                          AV1, as AVIF) and AVIF where Pillow has no AVIF plugin too
``too_many_pixels``       more than ``settings.UPLOAD_MAX_PIXELS`` (default 40 MP) or
                          Pillow's own decompression-bomb limit, whichever is lower,
                          read from the header (HEIF/AVIF: the primary picture's
                          'ispe', and all its coded pictures together may be at most
                          ``image_headers.HEIF_CODED_PIXELS_FACTOR`` times it)
``too_small``             a side under 16 pixels
``extreme_aspect_ratio``  the longer side more than 20 times the shorter
``animated``              an animated PNG or WebP, a HEIF/AVIF image sequence (a
                          still photo is expected; a JPEG
                          with extra pictures (MPO, as phones write) is a still photo
                          and is accepted: only the first picture is stored)
``too_many_scans``        a progressive JPEG with more than ``image_headers.MAX_SCANS``
                          (100) scans: each scan is a pass over the whole picture
``corrupt``               the structure is broken: truncated (no end of image), a bad
                          PNG chunk checksum, a segment running past the end, an
                          impossible header, far more segments than any photo has, or
                          a header Pillow cannot read

Cost: only what is cheap and certain is checked here, from the bytes
(``stylize.image_headers``: a walk over the JPEG segments, PNG chunks, WebP RIFF
chunks or HEIF/AVIF boxes; then Pillow's ``Image.open`` of the bytes to be stored,
with the one plugin of the format found, which reads the header and no pixel), so an
upload costs the web process milliseconds and a copy or two of the file whatever its
pixels say (docs/design/uploads.md).
Whether the compressed pixels decode is found out by the worker, under the job's time
limit and ``STYLIZE_DECODE_MAX_BYTES``; a photo that does not decode ends its job
``failed`` with a readable reason.

What passes: the file's name is replaced by ``<stem>.<jpg|png|webp|heic|avif>`` chosen
from the content, so a polyglot (a PNG with HTML or a ZIP appended is still a PNG and is
accepted) is stored and served as an image, never under a name a browser would
render as a page; the bytes after the picture's end are not stored
(``image_headers.photo_strip_metadata``). The file is rewound so it can be saved. CMYK
JPEGs and 16-bit PNGs are accepted; ``stylize.imaging.loading.load_photo`` converts them
to RGB.

HEIF (iPhones' HEIC) and AVIF photos are stored as uploaded, less their metadata
items (overwritten in place: ``image_headers.photo_strip_metadata``), so the web
process still decodes no pixel; the worker's first step writes every one of them anew
as an upright JPEG (PNG with alpha) with no metadata and stores that in its place
(``imaging.loading.REWRITTEN_FORMATS``, ``stylizing.stored_photo_load``), which is what
the job page then shows in any browser (docs/design/uploads.md, "Phone photos").
"""

import io
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from PIL import Image

from .image_headers import HeaderError, photo_inspect, photo_strip_metadata
from .imaging.loading import AVIF_SUPPORTED

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
    "HEIF": ("image/heic", "heic"),  # pillow-heif (libheif), registered by stylize.imaging.loading
    **({"AVIF": ("image/avif", "avif")} if AVIF_SUPPORTED else {}),
}
#: What a phone's file chooser may call them where it gives no content type.
ALLOWED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif") + (
    (".avif",) if AVIF_SUPPORTED else ())
# The decoder shows these turned by their 'irot'/'imir' already.
_TURNED_BY_DECODER = {"HEIF"}
# What Pillow raises for a header it cannot read.
_OPEN_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                ZeroDivisionError, OverflowError, struct.error)

MESSAGES = {
    "empty": _("The file is empty."),
    "file_too_large": _("The file is {size}; photos may be at most {limit}."),
    "unsupported_format": (
        _("{what} is not a supported photo. Upload a JPEG, PNG, WebP, HEIC or AVIF image.")
        if AVIF_SUPPORTED else
        _("{what} is not a supported photo. Upload a JPEG, PNG, WebP or HEIC image.")
    ),
    "too_many_pixels": _(
        "The image is too large{dims}: photos may have at most {limit_mp:g} megapixels."
    ),
    "too_small": _(
        "The image is {w}×{h} pixels; each side must be at least {min_side} pixels."),
    "extreme_aspect_ratio": _(
        "The image is {w}×{h} pixels; its longer side may be at most {ratio} times its "
        "shorter side."
    ),
    "animated": _("Animated images are not supported. Upload a still photo."),
    "too_many_scans": _(
        "The image is a progressive JPEG in more than {limit} scans; photos may have at "
        "most {limit}. Save it again as an ordinary JPEG."
    ),
    "corrupt": _("The image is damaged or incomplete and cannot be read."),
}


@dataclass(frozen=True)
class ValidatedPhoto:
    """What the validator learned about an accepted photo."""

    format: str  # Pillow's name: "JPEG", "MPO", "PNG", "WEBP", "HEIF" or "AVIF"
    content_type: str  # from the content: image/jpeg, image/png, image/webp, image/heic …
    extension: str  # jpg, png, webp, heic, avif
    width: int  # upright, after the EXIF orientation is applied
    height: int
    mode: str  # as a decode would give it: RGB, L, CMYK, I;16, RGBA, P …
    orientation: int  # the EXIF orientation tag (1 when there is none)
    size_bytes: int
    filename: str  # the safe name the file now carries
    scans: int = 1  # JPEG scans (more than 1: progressive); 0 for PNG and WebP


def upload_max_bytes() -> int:
    return int(getattr(settings, "UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


def upload_max_pixels() -> int:
    return int(getattr(settings, "UPLOAD_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def _refuse(code: str, **params):
    raise ValidationError(message_for(code, **params), code=code)


def message_for(code: str, **params) -> str:
    """The readable refusal for ``code``, in the active language."""
    return str(MESSAGES[code]).format(
        **{key: str(value) if isinstance(value, Promise) else value
           for key, value in params.items()})


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

    # Pillow's bomb limit is also where a worker's decode would warn or fail.
    max_pixels = min(upload_max_pixels(), Image.MAX_IMAGE_PIXELS or upload_max_pixels())
    uploaded_file.seek(0)
    data = uploaded_file.read(max_bytes + 1)
    if not data:
        _refuse("empty")
    try:
        header = photo_inspect(
            data, check_size=lambda width, height: _check_dimensions(width, height, max_pixels))
        stored, _ = photo_strip_metadata(data)
    except HeaderError as error:
        _refuse(error.code, **{"limit_mp": max_pixels / 1e6, **error.params})
    if header.format not in ALLOWED_FORMATS:  # AVIF where Pillow cannot read it
        _refuse("unsupported_format", what=_("An AVIF image"))
    mode = _pillow_header_mode(stored, header)

    width, height, orientation = header.width, header.height, header.orientation
    if orientation in (5, 6, 7, 8):  # rotated by 90° or 270°
        width, height = height, width
    content_type, extension = ALLOWED_FORMATS[header.format]
    filename = _safe_name(getattr(uploaded_file, "name", None), extension)
    try:
        uploaded_file.name = filename
    except AttributeError:  # a read-only name: the caller keeps its own
        pass
    return ValidatedPhoto(
        format=header.format, content_type=content_type, extension=extension, width=width,
        height=height, mode=mode, orientation=orientation, size_bytes=size,
        filename=filename, scans=header.scans,
    )


def _pillow_header_mode(stored: bytes, header) -> str:
    """The mode Pillow gives the bytes that will be stored, from their header alone
    (``Image.open`` reads no pixels; libwebp's demuxer checks the RIFF structure):
    what the worker and the upload's own steps open must at least open."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plugin = "JPEG" if header.format == "MPO" else header.format  # no other parser
            with Image.open(io.BytesIO(stored), formats=(plugin,)) as opened:
                size = (header.width, header.height)
                if header.format in _TURNED_BY_DECODER and header.orientation >= 5:
                    size = size[::-1]
                if opened.size != size:
                    _refuse("corrupt")
                return opened.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _refuse("too_many_pixels", dims="", limit_mp=upload_max_pixels() / 1e6)
    except _OPEN_ERRORS:
        _refuse("corrupt")


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        _refuse(
            "too_many_pixels",
            dims=_(" ({w}×{h} pixels, {mp:.1f} megapixels)").format(
                w=width, h=height, mp=width * height / 1e6),
            limit_mp=max_pixels / 1e6,
        )
    if min(width, height) < MIN_SIDE:
        _refuse("too_small", w=width, h=height, min_side=MIN_SIDE)
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        _refuse("extreme_aspect_ratio", w=width, h=height, ratio=MAX_ASPECT_RATIO)


def _safe_name(name: str | None, extension: str) -> str:
    stem = Path(name or "").stem if name else ""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:40] or "photo"
    return f"{stem}.{extension}"
