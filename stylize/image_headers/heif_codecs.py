"""What a HEIF/AVIF picture really decodes to: ``_heif_real_size`` reads an item's size
from what its decoder reads (an HEVC picture's sequence parameter sets, an AV1
picture's sequence headers, a grid's or an overlay's canvas), in place and counted
against ``MAX_SEGMENTS``, for ``heif._heif_walk`` to hold against the item's 'ispe'.
"""

from __future__ import annotations

import bisect
import re
from typing import TYPE_CHECKING

from .common import MAX_SEGMENTS, _corrupt, _uint

if TYPE_CHECKING:  # only the annotation: heif imports this module
    from .heif import _HeifItem

# --- What a HEIF/AVIF picture really decodes to --------------------------------------------
#
# A decoder makes the picture its bitstream codes, whatever the 'ispe' says: libheif
# decodes it, then raises (its security limits are sized by the 'ispe'); libavif decodes
# it whole (an AVIF saying 1024² that codes 8192² takes the memory of 8192²). So the size
# is read again from what the decoder itself reads — an HEVC picture's sequence parameter
# sets (in 'hvcC', which libheif puts before the data, and in the item's data), an AV1
# picture's sequence headers (in 'av1C' and in the item's data: their largest frame size
# bounds every frame), a grid's or an overlay's canvas — and a picture bigger than its
# 'ispe' is ``corrupt``: every size check, the web's and the worker's, binds on the real
# size. The data is read in place (``_Run``), a few bytes a unit, each unit counted
# against ``MAX_SEGMENTS``: the cost stays that of walking the file's boxes.

#: Pixels a side an encoder may code beyond the 'ispe' (HEVC pads to whole coding
#: blocks, at most 64 pixels, and crops them off again).
HEIF_CODED_PADDING = 64
#: How many bytes of a parameter set or sequence header the size is read from (it comes
#: within the first few hundred: a level, profiles, operating points, then the size).
_CODEC_HEADER_BYTES = 512
_HEVC_SPS = 33
_AV1_SEQUENCE_HEADER = 1


class _Run:
    """Pieces of ``data`` (an item's extents, or one box's body) read as one run of
    bytes, without copying them."""

    def __init__(self, data, pieces):
        self.data = data
        self.pieces = [(start, end) for start, end in pieces if end > start]
        self.offsets = [0]  # where each piece starts in the run
        for start, end in self.pieces:
            self.offsets.append(self.offsets[-1] + end - start)
        self.size = self.offsets[-1]

    def read(self, pos: int, count: int) -> bytes:
        """``count`` bytes from ``pos`` (fewer at the end)."""
        out = b""
        index = bisect.bisect_right(self.offsets, pos) - 1
        while len(out) < count and index < len(self.pieces):
            start, end = self.pieces[index]
            at = start + pos + len(out) - self.offsets[index]
            out += bytes(self.data[at:min(end, at + count - len(out))])
            index += 1
        return out

    def uint(self, pos: int, size: int) -> int:
        value = self.read(pos, size)
        if len(value) != size:
            raise _corrupt()
        return int.from_bytes(value, "big")


class _Bits:
    """Reads a big-endian bit string: fixed-width fields and Exp-Golomb codes."""

    def __init__(self, data: bytes):
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def read(self, count: int) -> int:
        if count > self.left:
            raise _corrupt()
        self.left -= count
        return (self.value >> self.left) & ((1 << count) - 1)

    def leading_zeros(self, most: int) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros > most:
                raise _corrupt()
        return zeros

    def golomb(self) -> int:  # HEVC's ue(v)
        zeros = self.leading_zeros(31)
        return (1 << zeros) - 1 + self.read(zeros)

    def uvlc(self) -> int:  # AV1's uvlc()
        zeros = self.leading_zeros(32)
        return (1 << zeros) - 1 + self.read(zeros) if zeros < 32 else (1 << 32) - 1


def _count(counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_SEGMENTS["HEIF"]:
        raise _corrupt()


def _heif_real_size(data: bytes, item: _HeifItem, idat, counter) -> tuple[int, int]:
    """The largest picture ``item`` decodes to by the headers its decoder reads (a grid
    or an overlay: its canvas); (0, 0) for an item with no data, or an 'iden'.
    ``corrupt`` when a coded item's data comes with no size at all (nothing decodes it)
    or a broken one."""
    if not item.extents or item.type == b"iden":
        return 0, 0
    base = idat[0] if item.in_idat and idat else 0
    payload = _Run(data, [(base + start, base + end) for start, end in item.extents])
    if item.type in (b"grid", b"iovl"):
        return _heif_canvas_size(item.type, payload.read(0, 18))
    sizes = []
    if item.type == b"hvc1":
        length_size = 4
        for kind, body in item.properties:
            if kind == b"hvcC":
                length_size, configured = _hvcc_nal_units(body, counter)
                sizes += _hevc_sizes(_Run(body, [(0, len(body))]), configured)
        sizes += _hevc_sizes(payload, _length_prefixed(payload, length_size, counter))
    else:  # av01
        for kind, body in item.properties:
            if kind == b"av1C" and len(body) > 4:
                configured = _Run(body, [(4, len(body))])
                sizes += _av1_sizes(configured, _av1_obus(configured, counter))
        sizes += _av1_sizes(payload, _av1_obus(payload, counter))
    if not sizes:
        raise _corrupt()
    return max(width for width, _ in sizes), max(height for _, height in sizes)


def _heif_canvas_size(kind: bytes, body: bytes) -> tuple[int, int]:
    """A 'grid' or 'iovl' descriptor's output size (ISO/IEC 23008-12, 6.6.2)."""
    at = 4 if kind == b"grid" else 10  # version, flags, rows and columns / fill colour
    if len(body) < 2:
        raise _corrupt()
    size = 4 if body[1] & 1 else 2
    if len(body) < at + 2 * size:
        raise _corrupt()
    return (int.from_bytes(body[at:at + size], "big"),
            int.from_bytes(body[at + size:at + 2 * size], "big"))


def _hvcc_nal_units(body: bytes, counter) -> tuple[int, list[tuple[int, int]]]:
    """An 'hvcC' box's NAL unit length size, and where its parameter sets' NAL units
    are in it: (start, length) each."""
    body = memoryview(body)
    if len(body) < 23:
        raise _corrupt()
    length_size, arrays, at = (body[21] & 3) + 1, body[22], 23
    nals = []
    for _ in range(arrays):
        count = _uint(body, at + 1, 2, len(body))
        at += 3
        for _ in range(count):
            _count(counter)
            length = _uint(body, at, 2, len(body))
            if at + 2 + length > len(body):
                raise _corrupt()
            nals.append((at + 2, length))
            at += 2 + length
    return length_size, nals


def _length_prefixed(run: _Run, length_size: int, counter):
    """Where the NAL units of an HEVC item's data are, each after its ``length_size``-byte
    length: (start, length) each."""
    at = 0
    while at < run.size:
        _count(counter)
        length = run.uint(at, length_size)
        at += length_size
        if at + length > run.size:
            raise _corrupt()
        yield at, length
        at += length


def _hevc_sizes(run: _Run, nals) -> list[tuple[int, int]]:
    """The coded sizes of the sequence parameter sets among ``nals`` of ``run``."""
    sizes = []
    for start, length in nals:
        if length >= 2 and (run.read(start, 1)[0] >> 1) & 0x3F == _HEVC_SPS:
            sizes.append(_hevc_sps_size(run.read(start, min(length, _CODEC_HEADER_BYTES))))
    return sizes


def _hevc_sps_size(nal: bytes) -> tuple[int, int]:
    """The coded size (``pic_width/height_in_luma_samples``) of an HEVC sequence
    parameter set's NAL unit (ITU-T H.265, 7.3.2.2)."""
    bits = _Bits(re.sub(rb"\x00\x00\x03", b"\x00\x00", nal[2:]))  # less emulation prevention
    bits.read(4)  # sps_video_parameter_set_id
    sub_layers = bits.read(3)  # sps_max_sub_layers_minus1
    bits.read(1 + 96)  # temporal_id_nesting; profile_tier_level's general part
    present = [(bits.read(1), bits.read(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.read(2 * (8 - sub_layers))
    for profile, level in present:
        bits.read(88 * profile + 8 * level)
    bits.golomb()  # sps_seq_parameter_set_id
    if bits.golomb() == 3:  # chroma_format_idc 4:4:4
        bits.read(1)  # separate_colour_plane_flag
    return bits.golomb(), bits.golomb()


def _av1_obus(run: _Run, counter):
    """(type, start, size) of each OBU in ``run`` (AV1, 5.3)."""
    at = 0
    while at < run.size:
        _count(counter)
        header = run.uint(at, 1)
        if header & 0x80:
            raise _corrupt()  # obu_forbidden_bit
        at += 2 if header & 4 else 1  # with obu_extension_flag, one byte more
        if header & 2:  # obu_has_size_field: leb128()
            size = 0
            for index in range(8):
                byte = run.uint(at, 1)
                at += 1
                size |= (byte & 0x7F) << (7 * index)
                if not byte & 0x80:
                    break
        else:
            size = run.size - at
        if at + size > run.size:
            raise _corrupt()
        yield (header >> 3) & 15, at, size
        at += size


def _av1_sizes(run: _Run, obus) -> list[tuple[int, int]]:
    """The largest frame sizes of the sequence headers among ``obus`` of ``run``."""
    return [_av1_sequence_size(run.read(start, min(size, _CODEC_HEADER_BYTES)))
            for kind, start, size in obus if kind == _AV1_SEQUENCE_HEADER]


def _av1_sequence_size(obu: bytes) -> tuple[int, int]:
    """The largest frame (``max_frame_width/height_minus_1`` + 1) of an AV1 sequence
    header OBU (AV1, 5.5); every frame of the sequence is at most that."""
    bits = _Bits(obu)
    bits.read(4)  # seq_profile, still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)
    else:
        decoder_model, delay_bits = 0, 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)  # num_units_in_display_tick, time_scale
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()
            decoder_model = bits.read(1)
            if decoder_model:
                delay_bits = bits.read(5) + 1
                bits.read(32 + 5 + 5)
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)  # operating_point_idc
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)  # seq_tier
            if decoder_model and bits.read(1):
                bits.read(2 * delay_bits + 1)
            if initial_display_delay and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1
