"""EXIF's orientation, the one tag a stored photo keeps: read from a TIFF-structured
EXIF block (``exif_orientation``), written as a block holding only it
(``exif_with_only_orientation``), and two orientations composed into one
(``_exif_compose``, for HEIF's 'irot'/'imir' properties).
"""

from __future__ import annotations

import struct

from .common import ORIENTATION_TAG

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
