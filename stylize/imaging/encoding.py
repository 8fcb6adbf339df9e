"""Results out: RGB arrays as JPEG, PNG or WebP bytes, and small JPEG thumbnails.

``encode_image`` writes an RGB ``uint8`` array in one of ``FORMAT_EXTENSIONS``
(``RESULT_FORMAT``, JPEG, is how results are stored); ``thumbnail_jpeg`` shrinks a
stored picture to ``thumbnail_size``. Neither writes any metadata.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
from PIL import Image

from .loading import _to_rgb
from .pixels import as_rgb_uint8, fitted_size

# Results are stored as JPEG whatever came in; downloads also as PNG or WebP
# (why: docs/design/result-format.md).
RESULT_FORMAT = "JPEG"
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
FORMAT_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def thumbnail_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` shrunk (aspect kept, never enlarged) to a longer side of ``max_side``:
    what ``thumbnail_jpeg`` gives."""
    return fitted_size(size, max_side)


def thumbnail_jpeg(fileobj: BinaryIO, *, max_side: int, quality: int = 85) -> bytes:
    """A JPEG of the picture in ``fileobj`` shrunk to ``thumbnail_size`` (a JPEG is
    decoded at a reduced scale first, so a 16 MP result takes a few tens of ms), without
    any metadata. For small renditions of results (a share link's og:image)."""
    with Image.open(fileobj) as image:
        target = fitted_size(image.size, max_side)
        image.draft("RGB", target)
        picture = _to_rgb(image) if image.mode != "RGB" else image.copy()
    if picture.size != target:
        picture = picture.resize(target, Image.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_image(array: np.ndarray, *, format: str = RESULT_FORMAT, quality: int = 92) -> bytes:
    """Encode an RGB ``uint8`` array as JPEG (baseline, at ``quality``), PNG or WebP
    (lossy, at ``quality``) bytes.

    Raises ``ValueError`` for an array that is not ``(H, W, 3)`` ``uint8`` or a format
    not in ``FORMAT_EXTENSIONS``. Why baseline: docs/design/result-format.md.
    """
    image = Image.fromarray(as_rgb_uint8(array), "RGB")
    buffer = io.BytesIO()
    if format == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    elif format == "PNG":
        image.save(buffer, format="PNG")
    elif format == "WEBP":
        image.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"unsupported format {format!r}; use one of {sorted(FORMAT_EXTENSIONS)}")
    return buffer.getvalue()
