"""Format version 3's payload: a what part beside the switches, and a checksum of the switches.

A version-3 file has version 2's header and CRC (``format.py``); its payload of ``L`` bytes is
three parts (docs/FORMAT.md, "Version 3")::

    offset  size  field
    0       1     F, the what part's block size (2, 4, 8 or 16)
    1       1     luma step (1..255)
    2       1     chroma step (1..255)
    3       1     reserved, 0
    4       4     A, size of the what part (u32)
    8       4     S, checksum of the decoded switches (u32, ``switch_checksum``)
    12      A     the what part (``what.py``: a zstd frame of prediction residuals)
    12+A    L-12-A  the switches, coded as the header's coding says (1, 2 or 3, as in versions 1
                  and 2)

``S`` binds the switches to the file: a payload whose tiles were swapped, cut or replaced decodes
to switches whose checksum differs, even where the file's CRC was recomputed. No torch here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..config import CONTEXT_TILE
from .switches import PayloadError
from .what import WhatSpec

_HEAD = struct.Struct("<BBBBII")
HEAD_BYTES = _HEAD.size  # 12


@dataclass(frozen=True)
class Parts:
    """A version-3 payload split into its parts (views into the file, nothing copied)."""

    spec: WhatSpec
    what: object  # memoryview or format.FileBytes
    checksum: int
    switches: object


def join(spec: WhatSpec, what: bytes, checksum: int, switches: bytes) -> bytes:
    """The version-3 payload of its parts."""
    return _HEAD.pack(spec.factor, spec.step_y, spec.step_c, 0, len(what), checksum) + what + switches


def split(payload) -> Parts:
    """Split a version-3 payload (bytes, a memoryview or a ``format.FileBytes`` of a large file:
    the parts are views, nothing is read whole); ``PayloadError`` if its part header is invalid."""
    from .format import FileBytes, sub

    if not isinstance(payload, FileBytes):
        payload = memoryview(payload).cast("B")
    if len(payload) < HEAD_BYTES:
        raise PayloadError(
            f"version-3 payload of {len(payload)} bytes is shorter than its {HEAD_BYTES}-byte part header"
        )
    f, sy, sc, reserved, a, checksum = _HEAD.unpack(bytes(payload[:HEAD_BYTES]))
    if reserved:
        raise PayloadError(f"version-3 payload: reserved byte is {reserved}, not 0")
    try:
        spec = WhatSpec(f, sy, sc)
    except ValueError as e:
        raise PayloadError(f"version-3 payload: {e}") from None
    if a > len(payload) - HEAD_BYTES:
        raise PayloadError(f"what part of {a} bytes declared, {len(payload) - HEAD_BYTES} present")
    return Parts(spec, sub(payload, HEAD_BYTES, HEAD_BYTES + a), checksum, sub(payload, HEAD_BYTES + a, len(payload)))


MIN_WHAT_FACTOR = 2  # the finest block size a what part may have (what.FACTORS): the bound on L uses it


def max_what_bytes(spec_factor: int, padded_h: int, padded_w: int) -> int:
    """The most bytes a valid what part can take: zstd's worst case for its residuals."""
    h, w = -(-padded_h // spec_factor), -(-padded_w // spec_factor)
    r = 6 * h * w
    return r + 3 * (r // (128 << 10) + 1) + 32


def switch_checksum(rows, height: int, width: int) -> int:
    """The checksum ``S`` of a padded image's switches.

    The switches are cut into the tiles of codings 2 and 3 (``CONTEXT_TILE`` pixels a side,
    row-major); each tile's CRC-32 is taken over its stage-1, stage-2 and stage-3 codes in
    that order, each as uint8 in (channel, row, column) order; ``S`` is the CRC-32 of the
    tiles' CRCs written as u32 little-endian, in tile order.

    Args:
        rows: 3 arrays (C_s, H/2^s, W/2^s), or a source with ``rows(p0, p1)`` (tiling.py);
            read one row of tiles at a time.
        height, width: the padded size.
    """
    get = (
        rows.rows
        if hasattr(rows, "rows")
        else lambda p0, p1: [c[..., p0 >> (s + 1) : p1 >> (s + 1), :] for s, c in enumerate(rows)]
    )
    crcs = []
    for y0 in range(0, height, CONTEXT_TILE):
        y1 = min(y0 + CONTEXT_TILE, height)
        band = [np.asarray(c) for c in get(y0, y1)[:3]]
        band = [c[0] if c.ndim == 4 else c for c in band]
        for x0 in range(0, width, CONTEXT_TILE):
            x1 = min(x0 + CONTEXT_TILE, width)
            crc = 0
            for s, c in enumerate(band):
                tile = np.ascontiguousarray(c[:, :, x0 >> (s + 1) : x1 >> (s + 1)], dtype=np.uint8)
                crc = zlib.crc32(tile, crc)
            crcs.append(crc)
    return zlib.crc32(np.asarray(crcs, dtype="<u4").tobytes())
