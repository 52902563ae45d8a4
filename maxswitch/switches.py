"""Switches <-> packed bits <-> coded payload. No torch here: arrays are numpy.

Packed layout (format version 1): the codes of stage 1, then stage 2, then stage 3; inside a
stage, channel by channel, each channel's windows in row-major order. Each code takes 2 bits,
most significant bit first (the row bit, then the column bit), packed big-endian into bytes
by bitarray; the last byte is padded with zero bits.

The packed bytes are coded as one zstd frame with its content size and content checksum.
"""

from __future__ import annotations

import numpy as np
import zstandard
from bitarray import bitarray

ZSTD_LEVEL = 9  # chosen by measurement: docs/PERFORMANCE.md


class PayloadError(ValueError):
    """A payload that does not decode to the switches its header promises."""


def shapes(height: int, width: int, channels) -> list[tuple[int, int, int]]:
    """Switch map shapes (C_s, H/2^s, W/2^s) of the padded size (height, width)."""
    if height % 8 or width % 8:
        raise ValueError(f"padded size must be multiples of 8, got {height}x{width}")
    return [(c, height >> (s + 1), width >> (s + 1)) for s, c in enumerate(channels)]


def pack(codes: list[np.ndarray]) -> bytes:
    """Pack per-stage code arrays (uint8 in 0..3, any shape) into bytes, 2 bits per code."""
    flat = np.concatenate([np.asarray(c, dtype=np.uint8).reshape(-1) for c in codes])
    if flat.size and flat.max() > 3:
        raise ValueError("switch codes must be in 0..3")
    bits = np.empty((flat.size, 2), dtype=np.uint8)
    np.right_shift(flat, 1, out=bits[:, 0])
    np.bitwise_and(flat, 1, out=bits[:, 1])
    ba = bitarray(endian="big")
    ba.pack(bits.tobytes())
    return ba.tobytes()


def unpack(data: bytes, stage_shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Inverse of ``pack``: bytes -> per-stage uint8 arrays of the given shapes."""
    n = sum(int(np.prod(s)) for s in stage_shapes)
    if len(data) != -(-2 * n // 8):
        raise PayloadError(f"packed switches are {len(data)} bytes, expected {-(-2 * n // 8)}")
    ba = bitarray(endian="big")
    ba.frombytes(data)
    bits = np.frombuffer(ba.unpack(), dtype=np.uint8)[: 2 * n].reshape(n, 2)
    flat = (bits[:, 0] << 1) | bits[:, 1]
    out, o = [], 0
    for s in stage_shapes:
        k = int(np.prod(s))
        out.append(flat[o : o + k].reshape(s))
        o += k
    return out


def compress(packed: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """Code packed switches as one zstd frame (content size and checksum on)."""
    c = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    return c.compress(packed)


def decompress(payload: bytes, expected_size: int) -> bytes:
    """Decode a zstd payload, refusing to inflate to anything but ``expected_size`` bytes."""
    try:
        params = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError as e:
        raise PayloadError(f"payload is not a zstd frame: {e}") from None
    if params.content_size != expected_size:
        raise PayloadError(f"payload declares {params.content_size} bytes of switches, header says {expected_size}")
    if not params.has_checksum:
        raise PayloadError("payload has no zstd content checksum")
    # The frame's declared content size was checked above, and zstd refuses a frame whose
    # content does not match it, so the output is bounded by expected_size.
    d = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = d.decompress(payload)
    except zstandard.ZstdError as e:
        raise PayloadError(f"payload does not decode: {e}") from None
    if not d.eof or d.unused_data:
        raise PayloadError("payload is not exactly one complete zstd frame")
    if len(out) != expected_size:
        raise PayloadError(f"payload decodes to {len(out)} bytes, header says {expected_size}")
    return out
