"""Switches <-> packed bits <-> coded payload. No torch here: arrays are numpy.

Packed layout (format version 1): the codes of stage 1, then stage 2, then stage 3; inside a
stage, channel by channel, each channel's windows in row-major order. Each code takes 2 bits,
most significant bit first (the row bit, then the column bit), packed big-endian into bytes
(four codes per byte, the first in the top two bits); the last byte is padded with zero bits.

The packed bytes are coded as one zstd frame with its content size and content checksum.
"""

from __future__ import annotations

import numpy as np
import zstandard

from ..config import ZSTD_LEVEL  # noqa: F401  (re-exported)
from ..errors import MaxswitchError


class PayloadError(MaxswitchError):
    """A payload that does not decode to the switches its header promises."""


def shapes(height: int, width: int, channels) -> list[tuple[int, int, int]]:
    """Switch map shapes (C_s, H/2^s, W/2^s) of the padded size (height, width)."""
    if height % 8 or width % 8:
        raise ValueError(f"padded size must be multiples of 8, got {height}x{width}")
    return [(c, height >> (s + 1), width >> (s + 1)) for s, c in enumerate(channels)]


# A little-endian uint32 holding the codes c0..c3 in its bytes 0..3, times this constant (mod
# 2^32), has c0<<6 | c1<<4 | c2<<2 | c3 in its top byte: the four partial products land on bits
# 30, 28, 26, 24 and every other one either falls below bit 24 without carrying (they occupy
# disjoint bit pairs) or above bit 31.
_PACK_MUL = np.uint32((1 << 30) | (1 << 20) | (1 << 10) | 1)
# byte -> its four codes as the bytes of a little-endian uint32 (first code in byte 0)
_UNPACK_LUT = np.array(
    [((b >> 6) & 3) | ((b >> 4) & 3) << 8 | ((b >> 2) & 3) << 16 | (b & 3) << 24 for b in range(256)], dtype="<u4"
)


_CHUNK = 1 << 20  # codes per step: the uint32 products of one step stay in cache


def _pack4(flat: np.ndarray, out: np.ndarray) -> None:
    """Pack uint8 codes (length a multiple of 4) into ``out`` (length / 4 bytes), vectorised."""
    for i in range(0, flat.size, _CHUNK):
        part = flat[i : i + _CHUNK]
        words = np.multiply(part.view("<u4"), _PACK_MUL, dtype=np.uint32).astype("<u4", copy=False)
        out[i // 4 : (i + part.size) // 4] = words.view(np.uint8)[3::4]


def pack(codes: list[np.ndarray]) -> bytearray:
    """Pack per-stage code arrays (uint8 in 0..3, any shape) into bytes, 2 bits per code.

    Same bytes as packing the concatenated codes with bitarray, big-endian; 4 codes per byte,
    first code in the top two bits. Returns a bytearray (no copy of the packed bytes).
    """
    arrays = [np.ascontiguousarray(c, dtype=np.uint8).reshape(-1) for c in codes]
    for a in arrays:
        if a.size and a.max() > 3:
            raise ValueError("switch codes must be in 0..3")
    n = sum(a.size for a in arrays)
    buf = bytearray(-(-n // 4))
    out = np.frombuffer(buf, dtype=np.uint8)
    o, carry = 0, np.empty(0, np.uint8)
    for a in arrays:
        if carry.size:  # a stage whose size is not a multiple of 4 (never in .msw files)
            a = np.concatenate([carry, a])
        n4 = a.size - a.size % 4
        _pack4(a[:n4], out[o : o + n4 // 4])
        o += n4 // 4
        carry = a[n4:]
    if carry.size:
        _pack4(np.concatenate([carry, np.zeros(4 - carry.size, np.uint8)]), out[o:])
    return buf


_UNPACK_CHUNK = 1 << 22  # packed bytes per step of unpack (a 32 MB index temporary)


def unpack(data, stage_shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Inverse of ``pack``: bytes -> per-stage uint8 arrays of the given shapes.

    Memory: one output byte per switch (4 per packed byte) and nothing larger.
    """
    n = sum(int(np.prod(s)) for s in stage_shapes)
    if len(data) != -(-2 * n // 8):
        raise PayloadError(f"packed switches are {len(data)} bytes, expected {-(-2 * n // 8)}")
    a = np.frombuffer(data, dtype=np.uint8)
    words = np.empty(len(a), dtype=_UNPACK_LUT.dtype)  # 4 codes per byte, first code in the top bits
    # in chunks: take() turns its indices into intp first, 8 bytes per packed byte, which for a
    # whole 256-megapixel image was a 1.3 GB temporary (measured: decode peaked at 2.3 GB); mode
    # "clip" (indices are bytes, always valid) because mode "raise" buffers a copy of out
    for i in range(0, len(a), _UNPACK_CHUNK):
        np.take(_UNPACK_LUT, a[i : i + _UNPACK_CHUNK], out=words[i : i + _UNPACK_CHUNK], mode="clip")
    flat = words.view(np.uint8)
    out, o = [], 0
    for s in stage_shapes:
        k = int(np.prod(s))
        out.append(flat[o : o + k].reshape(s))
        o += k
    return out


class PackedRows:
    """The switches of a padded image kept packed (2 bits each), unpacked a band of rows at a time.

    For decoding images too large to hold one byte per switch (672 MB at the default pixel
    limit): ``rows(p0, p1)`` gives what ``unpack`` would give, sliced to pixel rows
    [p0, p1) of the padded image (multiples of 8).
    """

    def __init__(self, data, stage_shapes: list[tuple[int, int, int]]):
        n = sum(int(np.prod(s)) for s in stage_shapes)
        if len(data) != -(-2 * n // 8):
            raise PayloadError(f"packed switches are {len(data)} bytes, expected {-(-2 * n // 8)}")
        self.packed = np.frombuffer(data, dtype=np.uint8)
        self.shapes = list(stage_shapes)
        self.channels = [int(s[0]) for s in stage_shapes]
        self.offsets = np.cumsum([0] + [int(np.prod(s)) for s in stage_shapes])[:-1].tolist()
        self.size = (stage_shapes[0][1] * 2, stage_shapes[0][2] * 2)  # the padded image's (H, W)

    def rows(self, p0: int, p1: int) -> list[np.ndarray]:
        """Per stage s, uint8 (C_s, (p1 - p0) / 2^(s+1), W / 2^(s+1)): the codes of pixel rows [p0, p1)."""
        out = []
        for s, ((C, h, w), off) in enumerate(zip(self.shapes, self.offsets)):
            r0, r1 = p0 >> (s + 1), min(h, p1 >> (s + 1))
            n = (r1 - r0) * w
            band = np.empty((C, r1 - r0, w), np.uint8)
            for c in range(C):
                start = off + (c * h + r0) * w
                words = _UNPACK_LUT[self.packed[start // 4 : -(-(start + n) // 4)]]
                band[c] = words.view(np.uint8)[start % 4 : start % 4 + n].reshape(r1 - r0, w)
            out.append(band)
        return out


def compress(packed: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """Code packed switches as one zstd frame (content size and checksum on)."""
    c = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    return c.compress(packed)


# A zstd block inflates to at most 128 KiB. The payload is fed to zstd a group of whole blocks
# at a time, each group holding at most STEP bytes of output, so the output is counted against
# the expected size as it comes and no single step can inflate past STEP + 128 KiB.
BLOCK_MAX = 128 << 10
MAX_WINDOW = 128 << 20  # the window docs/FORMAT.md allows (zstd's own default limit is larger)
STEP = 1 << 20


def _block_groups(payload, frame_start: int) -> tuple[list[int], int]:
    """Walk a zstd frame's blocks; return the offsets that split it into groups of at most
    STEP bytes of output, and the offset where the frame's blocks end.

    Raises:
        PayloadError: a reserved block type, or blocks that run past the payload.
    """
    cuts, pos, budget, n = [], frame_start, 0, len(payload)
    while True:
        if pos + 3 > n:
            raise PayloadError("payload is truncated inside the zstd frame")
        h = payload[pos] | payload[pos + 1] << 8 | payload[pos + 2] << 16
        last, btype, size = h & 1, (h >> 1) & 3, h >> 3
        if btype == 3:
            raise PayloadError("payload has a reserved zstd block type (corrupt)")
        if size > BLOCK_MAX:
            raise PayloadError("payload has a zstd block larger than 128 KiB (corrupt)")
        end = pos + 3 + (1 if btype == 1 else size)
        if end > n:
            raise PayloadError("payload is truncated inside the zstd frame")
        out = size if btype in (0, 1) else BLOCK_MAX
        if budget + out > STEP and budget:
            cuts.append(pos)
            budget = 0
        budget += out
        pos = end
        if last:
            return cuts, pos


def decompress(payload: bytes, expected_size: int, keep: bool = True):
    """Decode a zstd payload, refusing to inflate to anything but ``expected_size`` bytes.

    The payload must be exactly one zstd frame that declares ``expected_size`` as its content
    size and carries a content checksum. Its block structure is checked first; then it is
    inflated group of blocks by group (each at most about 1 MiB of output) and the output is
    counted, so a frame that would inflate past ``expected_size`` is stopped there.

    Args:
        keep: return the decoded bytes (a bytearray of ``expected_size``); with False only
            verify it (checksum, size, one frame) in bounded memory and return None.

    Raises:
        PayloadError: anything else.
    """
    head = bytes(payload[:32])  # a frame header takes at most 18 bytes
    try:
        params = zstandard.get_frame_parameters(head)
        header = zstandard.frame_header_size(head)
    except zstandard.ZstdError as e:
        raise PayloadError(f"payload is not a zstd frame: {_first_line(e)}") from None
    if params.content_size != expected_size:
        if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
            raise PayloadError("payload does not declare its decoded size")
        raise PayloadError(f"payload declares {params.content_size} bytes of switches, header says {expected_size}")
    if not params.has_checksum:
        raise PayloadError("payload has no zstd content checksum")
    if params.window_size > MAX_WINDOW:
        raise PayloadError(f"payload's zstd window is {params.window_size >> 20} MiB, over the format's 128 MiB")
    if params.dict_id:
        raise PayloadError("payload needs a zstd dictionary; maxswitch files never use one")
    cuts, blocks_end = _block_groups(payload, header)
    if blocks_end + 4 != len(payload):
        if blocks_end + 4 > len(payload):
            raise PayloadError("payload is truncated inside the zstd frame")
        raise PayloadError("payload is not exactly one complete zstd frame")
    out = bytearray(expected_size) if keep else None
    view = memoryview(out) if keep else None
    from .format import FileBytes

    src = payload if isinstance(payload, FileBytes) else memoryview(payload)  # slices: views or reads
    d = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).decompressobj()
    n = 0
    try:
        for lo, hi in zip([0] + cuts, cuts + [len(src)]):
            piece = d.decompress(src[lo:hi])
            if n + len(piece) > expected_size:
                raise PayloadError(f"payload decodes to more than the {expected_size} bytes its header says")
            if keep:
                view[n : n + len(piece)] = piece
            n += len(piece)
    except zstandard.ZstdError as e:
        raise PayloadError(f"payload does not decode: {_first_line(e)}") from None
    if not d.eof or d.unused_data:
        raise PayloadError("payload is not exactly one complete zstd frame")
    if n != expected_size:
        raise PayloadError(f"payload decodes to {n} bytes, header says {expected_size}")
    return out


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
