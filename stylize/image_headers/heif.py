"""HEIF and AVIF (ISOBMFF boxes): ``_heif_walk`` reads the 'ftyp' brand and the 'meta'
box's items ('iinf', 'iloc' extents, 'iprp'/'ipco' properties: 'ispe' size,
'irot'/'imir' orientation, 'clap', 'pixi'; 'iref' references) into a
:class:`~stylize.image_headers.common.PhotoHeader`, checking that every item's data is in
the file, that no coded picture is bigger than its 'ispe' (``heif_codecs``) and that
they add up to at most ``HEIF_CODED_PIXELS_FACTOR`` times the picture;
``_heif_rebuild`` overwrites the metadata items and boxes in place, so no offset moves.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from .common import MAX_SEGMENTS, HeaderError, PhotoHeader, _corrupt, _Part, _uint, describe
from .exif import _exif_compose
from .heif_codecs import HEIF_CODED_PADDING, _heif_real_size

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
# 1: left to right) do, in EXIF orientations' terms (see exif._exif_compose).
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
