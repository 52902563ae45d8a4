"""The ``.msw`` container, format versions 1 and 2 (spec: docs/FORMAT.md). No torch here.

Version 1 carries zstd-coded switches (coding 1); version 2 carries switches coded by the
model's learned context model (coding 2) and adds that model's digest to the header. This
module reads both and writes each coding in its own version, so zstd files stay byte for byte
what version 1 wrote. Version 1 byte layout, all integers little-endian::

    offset  size  field
    0       8     magic 89 4D 53 57 0D 0A 1A 0A  ("\\x89MSW\\r\\n\\x1a\\n")
    8       1     format version (1)
    9       1     payload coding (1 = zstd frame of the packed switches)
    10      1     colour kind of the source (1 grey, 2 grey+alpha, 3 RGB, 4 RGB+alpha)
    11      1     bits per sample of the source (8, 16 or 32)
    12      4     width  (u32, >= 1)
    16      4     height (u32, >= 1)
    20      1     N, length of the model name (1..64)
    21      N     model name, ASCII [a-z0-9._-]
    21+N    16    encoder digest: first 16 bytes of the encoder's SHA-256
    37+N    6     channels c1, c2, c3 (u16 each)
    43+N    4     R, size of the packed switches before coding (u32)
    47+N    4     L, size of the payload (u32)
    51+N    L     payload
    51+N+L  4     CRC-32 (ISO-HDLC, as zlib.crc32) of bytes 0 .. 51+N+L-1 (u32)

Version 2 is the same with version byte 2, coding 2, and 16 more bytes after the encoder
digest: the first 16 bytes of the context model's SHA-256 (``context.ContextModel.digest``).
Everything after them moves 16 bytes further.

Nothing may follow the CRC. R must equal ``raw_size(width, height, channels)``.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from dataclasses import dataclass

from .config import CONTEXT_TILE
from .errors import MaxswitchError

MAGIC = b"\x89MSW\r\n\x1a\n"
VERSION = 3  # the newest version this module reads
VERSION_WHAT = 3  # version 2's header; the payload is a what part, a switch checksum and the switches (parts.py)
CODING_ZSTD = 1
CODING_CONTEXT = 2
CODING_TABLE = 3
CODINGS = {CODING_ZSTD: "zstd", CODING_CONTEXT: "context-ans", CODING_TABLE: "context-table"}
VERSION_OF_CODING = {CODING_ZSTD: 1, CODING_CONTEXT: 2, CODING_TABLE: 2}
LEARNED_CODINGS = (CODING_CONTEXT, CODING_TABLE)  # codings whose payload needs the model's tables
KINDS = {1: "grey", 2: "grey+alpha", 3: "rgb", 4: "rgb+alpha"}
BIT_DEPTHS = (8, 16, 32)
DIGEST_BYTES = 16
MAX_NAME = 64
MAX_SIDE = 1 << 20  # 1,048,576 pixels per side
MIN_SIZE = len(MAGIC) + 4 + 8 + 1 + DIGEST_BYTES + 6 + 8 + 4  # 55: everything but the name and payload
_NAME_RE = re.compile(rb"^[a-z0-9][a-z0-9._-]*$")


class FormatError(MaxswitchError):
    """A byte string that is not a valid .msw file (the message says why)."""


class NewerVersionError(FormatError):
    """A .msw file of a format version newer than this reader."""


@dataclass(frozen=True)
class Header:
    """The fields of a .msw header (see the module docstring for the layout)."""

    width: int
    height: int
    model: str
    encoder_digest: bytes
    channels: tuple[int, int, int]
    kind: int = 3
    bit_depth: int = 8
    coding: int = CODING_ZSTD
    raw_size: int = 0
    version: int = 1
    context_digest: bytes = b""

    @property
    def padded(self) -> tuple[int, int]:
        """(H, W) rounded up to multiples of 8: the size the encoder saw."""
        return (-(-self.height // 8) * 8, -(-self.width // 8) * 8)

    @property
    def switch_count(self) -> int:
        return switch_count(self.width, self.height, self.channels)


def switch_count(width: int, height: int, channels) -> int:
    """Number of switches (2-bit codes) of an image: sum over stages of C_s * H/2^s * W/2^s."""
    H, W = -(-height // 8) * 8, -(-width // 8) * 8
    return sum(c * (H >> (s + 1)) * (W >> (s + 1)) for s, c in enumerate(channels))


def raw_size(width: int, height: int, channels) -> int:
    """Bytes of the packed switches: 2 bits per switch, rounded up to whole bytes."""
    return -(-2 * switch_count(width, height, channels) // 8)


def _extra(version: int) -> int:
    """Header bytes that version adds to version 1's (the context digest of version 2)."""
    return DIGEST_BYTES if version >= 2 else 0


def header_size(model: str, version: int = 1) -> int:
    """Bytes of a file that are not payload (header and CRC)."""
    return MIN_SIZE + len(model) + _extra(version)


def _check_fields(h: Header) -> None:
    name = h.model.encode("ascii", "replace")
    if not (1 <= len(name) <= MAX_NAME) or not _NAME_RE.match(name):
        raise FormatError(f"invalid model name {h.model!r}")
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise FormatError(f"image size {h.width}x{h.height} is outside 1..{MAX_SIDE} per side")
    if h.kind not in KINDS:
        raise FormatError(f"unknown colour kind {h.kind}")
    if h.bit_depth not in BIT_DEPTHS:
        raise FormatError(f"unknown source bit depth {h.bit_depth}")
    if h.coding not in CODINGS:
        raise FormatError(f"unknown payload coding {h.coding}")
    if len(h.channels) != 3 or not all(1 <= c <= 65535 for c in h.channels):
        raise FormatError(f"invalid channel plan {h.channels}")
    if len(h.encoder_digest) != DIGEST_BYTES:
        raise FormatError("encoder digest must be 16 bytes")
    if h.version != VERSION_WHAT and VERSION_OF_CODING[h.coding] != h.version:
        raise FormatError(f"payload coding {h.coding} is not valid in format version {h.version}")
    if h.version >= 2 and len(h.context_digest) != DIGEST_BYTES:
        raise FormatError("context model digest must be 16 bytes")


def write(h: Header, payload: bytes) -> bytes:
    """Serialise a header and its coded payload into a complete .msw byte string."""
    if h.version != VERSION_WHAT:
        h = dataclasses.replace(h, version=VERSION_OF_CODING.get(h.coding, h.version))
    _check_fields(h)
    if h.raw_size != raw_size(h.width, h.height, h.channels):
        raise FormatError("raw_size does not match the image size and channels")
    if h.raw_size > 0xFFFFFFFF or len(payload) > 0xFFFFFFFF:
        raise FormatError("image too large for the format (over 4 GiB of switches)")
    name = h.model.encode("ascii")
    body = b"".join(
        [
            MAGIC,
            struct.pack("<BBBBII", h.version, h.coding, h.kind, h.bit_depth, h.width, h.height),
            struct.pack("<B", len(name)),
            name,
            h.encoder_digest,
            h.context_digest if h.version >= 2 else b"",
            struct.pack("<HHHII", *h.channels, h.raw_size, len(payload)),
            payload,
        ]
    )
    return body + struct.pack("<I", zlib.crc32(body))


PREFIX_MAX = 21 + MAX_NAME + 2 * DIGEST_BYTES + 14  # bytes that always suffice for ``declared_length``


def declared_length(prefix: bytes) -> int | None:
    """The total length a .msw file declares in its first bytes, so that a reader of a stream
    can stop reading there instead of reading whatever it is given.

    Args:
        prefix: the file's first bytes (``PREFIX_MAX`` always suffice).

    Returns:
        The declared length, or None if ``prefix`` is too short to tell (a shorter file is
        truncated; ``read`` says so).

    Raises:
        FormatError, NewerVersionError: the bytes read so far already rule the file out.
    """
    if prefix[: len(MAGIC)] != MAGIC[: len(prefix)]:
        raise FormatError("not a .msw file (bad magic number)")
    if len(prefix) > 8 and prefix[8] not in (1, 2, 3):
        read(prefix)  # raises the version error read() would
    if len(prefix) < 21:
        return None
    n = prefix[20]
    if not 1 <= n <= MAX_NAME:
        raise FormatError(f"invalid model name length {n}")
    off = 21 + n + DIGEST_BYTES + _extra(prefix[8]) + 14
    if len(prefix) < off:
        return None
    (plen,) = struct.unpack_from("<I", prefix, off - 4)
    return off + plen + 4


def max_payload(h: Header) -> int:
    """The most bytes a valid payload of this header can take, so that a reader can refuse a
    lying header before reading or allocating its payload.

    Coding 1: zstd's worst case for ``R`` bytes (raw blocks, 3 bytes each per 128 KiB, frame
    header and checksum). Codings 2 and 3: every switch at the smallest probability, 2^-24
    (24 bits; coding 3's is 2^-16), plus each tile's word count and the coder's final state.
    """
    if h.version == VERSION_WHAT:  # the part header, the largest what part, then the switches
        from .parts import HEAD_BYTES, max_what_bytes

        H, W = h.padded
        return HEAD_BYTES + max_what_bytes(8, H, W) + max_payload(dataclasses.replace(h, version=2))
    if h.coding == CODING_ZSTD:
        r = raw_size(h.width, h.height, h.channels)  # the formula, whatever the R field says
        return r + 3 * (r // (128 << 10) + 1) + 32
    H, W = h.padded
    tiles = -(-H // CONTEXT_TILE) * -(-W // CONTEXT_TILE)
    return 3 * h.switch_count + 16 * tiles


def _header_fields(data: bytes, fields: int) -> tuple[Header, int]:
    """The header (fields at their offsets; ``fields`` is the offset of the channels) and the
    declared payload length. Checks the name's characters, nothing else."""
    version, coding, kind, depth, width, height = struct.unpack_from("<BBBBII", data, 8)
    c1, c2, c3, rsize, plen = struct.unpack_from("<HHHII", data, fields)
    off = 21 + data[20]
    name = bytes(data[21:off])
    if not _NAME_RE.match(name):
        raise FormatError("invalid model name")
    h = Header(
        width=width,
        height=height,
        model=name.decode("ascii"),
        encoder_digest=bytes(data[off : off + DIGEST_BYTES]),
        channels=(c1, c2, c3),
        kind=kind,
        bit_depth=depth,
        coding=coding,
        raw_size=rsize,
        version=version,
        context_digest=bytes(data[off + DIGEST_BYTES : fields]),
    )
    return h, plen


def check_prefix(prefix: bytes, max_pixels: int | None = None) -> None:
    """Check a file's header from its first bytes, before its payload is read: field ranges,
    the pixel limit, the raw size and the payload's declared length against ``max_payload``.
    Memory then follows the pixel limit, not what a header claims. The CRC is checked later
    by ``read``; a header that fails here would fail there too.

    Raises:
        FormatError: the header rules the file out; nothing if ``prefix`` is too short to tell.
    """
    if len(prefix) < 21 or prefix[8] not in (1, 2, 3):
        return
    n = prefix[20]
    fields = 21 + n + DIGEST_BYTES + _extra(prefix[8])
    if not 1 <= n <= MAX_NAME or len(prefix) < fields + 14:
        return
    h, plen = _header_fields(prefix, fields)
    _check_fields(h)
    _check_sizes(h, plen, max_pixels, check_raw=False)  # R: after the CRC, in read()


def _check_sizes(h: Header, plen: int, max_pixels: int | None, check_raw: bool = True) -> None:
    if max_pixels is not None and h.width * h.height > max_pixels:
        raise FormatError(
            f"image is {h.width}x{h.height} = {h.width * h.height} pixels, over the limit of {max_pixels}"
        )
    if check_raw and h.raw_size != raw_size(h.width, h.height, h.channels):
        raise FormatError("header's switch size does not match its image size and channels")
    if plen > max_payload(h):
        raise FormatError(f"payload of {plen} bytes declared, more than this image's switches can take")


def read(data, max_pixels: int | None = None) -> tuple[Header, memoryview]:
    """Parse and verify a .msw byte string (bytes, bytearray or memoryview).

    Checks, in order: magic, version, sizes against the data's length, the CRC, then each
    field's range, the pixel limit and the raw size. Nothing is allocated from a header
    field before it has been checked, and nothing is copied: the CRC is computed over a view
    and the payload returned is a view of ``data`` (a 92 MB file used to be held three times).

    Returns:
        (header, payload) with the payload still coded, as a read-only memoryview into ``data``.

    Raises:
        NewerVersionError: the file's format version is newer than this reader's.
        FormatError: anything else wrong (the message names the field).
    """
    data = memoryview(data).toreadonly().cast("B")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if len(data) == 0:
            raise FormatError("input is empty, not a .msw file")
        raise FormatError("not a .msw file (bad magic number)")
    if len(data) < len(MAGIC) + 1:
        raise FormatError("file is truncated (no version byte)")
    version = data[8]
    if version > VERSION:
        raise NewerVersionError(
            f"file has format version {version}; this maxswitch reads version {VERSION}: upgrade maxswitch"
        )
    if version not in (1, 2, 3):
        raise FormatError(f"invalid format version {version}")
    if len(data) < MIN_SIZE + 1:
        raise FormatError(f"file is truncated ({len(data)} bytes, a .msw file has at least {MIN_SIZE + 1})")
    n = data[20]
    if not 1 <= n <= MAX_NAME:
        raise FormatError(f"invalid model name length {n}")
    off = 21 + n
    fields = off + DIGEST_BYTES + _extra(version)  # offset of the channels
    if len(data) < fields + 14 + 4:
        raise FormatError("file is truncated inside the header")
    (plen,) = struct.unpack_from("<I", data, fields + 10)
    end = fields + 14 + plen
    if len(data) < end + 4:
        raise FormatError(
            f"file is truncated or corrupt: payload of {plen} bytes declared, {max(0, len(data) - end + plen - 4)} present"
        )
    if len(data) > end + 4:
        raise FormatError(f"{len(data) - end - 4} unexpected bytes after the end of the file")
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(data[:end]) != crc:
        raise FormatError("checksum mismatch: the file is corrupt")
    h, _ = _header_fields(data, fields)
    _check_fields(h)
    _check_sizes(h, plen, max_pixels)
    return h, data[fields + 14 : end]  # a view: no copy
