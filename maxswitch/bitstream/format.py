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

from ..config import CONTEXT_TILE
from ..errors import MaxswitchError

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


class FileBytes:
    """A .msw file's bytes left in an open file and read on demand (``os.pread``), so that a
    large payload is never held in memory: ``len``, ``x[i]`` (an int) and ``x[a:b]`` (bytes)
    as for bytes, and ``view(a, b)``, a FileBytes of part of it. ``read`` and the payload
    decoders take it wherever they take bytes (docs/SECURITY.md: decoding reads the payload a
    row of tiles or a group of zstd blocks at a time).

    The file must stay open and unchanged while the object is used; ``close`` closes it.
    """

    CACHE = 1 << 16  # one window of the file is kept, for byte-at-a-time reads (zstd blocks)

    def __init__(self, f, start: int = 0, stop: int | None = None):
        import os

        self.f = f
        self.fd = f.fileno()
        self.start = start
        self.stop = os.fstat(self.fd).st_size if stop is None else stop
        self._win, self._at = b"", -1

    def __len__(self) -> int:
        return self.stop - self.start

    def _pread(self, lo: int, hi: int) -> bytes:
        import os

        out, want = bytearray(), hi - lo
        while len(out) < want:
            b = os.pread(self.fd, want - len(out), self.start + lo + len(out))
            if not b:
                raise FormatError("the file changed or shrank while it was being read")
            out += b
        return bytes(out)

    def __getitem__(self, k):
        n = len(self)
        if isinstance(k, slice):
            lo, hi, step = k.indices(n)
            if step != 1:
                raise ValueError("FileBytes slices have no step")
            return self._pread(lo, hi) if hi > lo else b""
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("FileBytes index out of range")
        if not 0 <= k - self._at < len(self._win):
            self._at = k
            self._win = self._pread(k, min(n, k + self.CACHE))
        return self._win[k - self._at]

    def view(self, lo: int, hi: int) -> "FileBytes":
        return FileBytes(self.f, self.start + lo, self.start + hi)

    def tobytes(self) -> bytes:
        return self[:]

    def close(self) -> None:
        self.f.close()


def sub(data, lo: int, hi: int):
    """``data[lo:hi]`` without a copy: a memoryview slice, or a FileBytes view."""
    return data.view(lo, hi) if isinstance(data, FileBytes) else data[lo:hi]


def crc32(data, end: int) -> int:
    """The CRC-32 of ``data[:end]``, in steps of 16 MiB for a FileBytes (never held whole)."""
    if not isinstance(data, FileBytes):
        return zlib.crc32(data[:end])
    crc, step = 0, 1 << 24
    for lo in range(0, end, step):
        crc = zlib.crc32(data[lo : min(end, lo + step)], crc)
    return crc


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
    head = b"".join(
        [
            MAGIC,
            struct.pack("<BBBBII", h.version, h.coding, h.kind, h.bit_depth, h.width, h.height),
            struct.pack("<B", len(name)),
            name,
            h.encoder_digest,
            h.context_digest if h.version >= 2 else b"",
            struct.pack("<HHHII", *h.channels, h.raw_size, len(payload)),
        ]
    )
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join([head, payload, struct.pack("<I", crc)])  # one copy of the payload


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


# Codings 2 and 3: the most bits one switch can cost: its smallest probability is 2^-24 (coding
# 2: a frequency f_k = 0 gives (0 + 1) / 2^24) and 2^-16 (coding 3: q_k >= 1 out of 2^16).
MAX_BITS = {CODING_CONTEXT: 24, CODING_TABLE: 16}


def tile_words_max(n: int, coding: int) -> int:
    """The most 32-bit words a tile of ``n`` switches can take in coding 2 or 3:
    ``ceil(b n / 32) + 3 + floor(n / 2^28)`` for ``b`` = 24 or 16 bits per switch (every
    switch at its smallest probability; 2 words of final state, 1 for the coder's rounding at
    small states and 1 per 2^28 switches for its rounding after: docs/FORMAT.md)."""
    return -(-MAX_BITS[coding] * n // 32) + 3 + (n >> 28)


def max_payload(h: Header) -> int:
    """The most bytes a valid payload of this header can take, computed from the header alone,
    so that a reader can refuse a lying header before reading or allocating its payload
    (docs/FORMAT.md, "Upper limit on L").

    Coding 1: zstd's worst case for ``R`` bytes (raw blocks, 3 bytes each per 128 KiB, frame
    header and checksum). Codings 2 and 3: for each tile, its word count (4 bytes) and at
    most ``tile_words_max`` words: 3 (coding 2) or 2 (coding 3) bytes per switch and 8 bytes.
    """
    if h.version == VERSION_WHAT:  # the part header, the largest what part, then the switches
        from .parts import HEAD_BYTES, MIN_WHAT_FACTOR, max_what_bytes

        H, W = h.padded
        return HEAD_BYTES + max_what_bytes(MIN_WHAT_FACTOR, H, W) + max_payload(dataclasses.replace(h, version=2))
    if h.coding == CODING_ZSTD:
        r = raw_size(h.width, h.height, h.channels)  # the formula, whatever the R field says
        return r + 3 * (r // (128 << 10) + 1) + 32
    H, W = h.padded
    T = CONTEXT_TILE
    total = 0
    # tiles come in at most four sizes: full, the last column, the last row, the corner
    for th, nh in ((T, H // T), (H % T, 1 if H % T else 0)):
        for tw, nw in ((T, W // T), (W % T, 1 if W % T else 0)):
            if nh and nw:
                n = sum(c * (th >> (s + 1)) * (tw >> (s + 1)) for s, c in enumerate(h.channels))
                total += nh * nw * (4 + 4 * tile_words_max(n, h.coding))
    return total


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


def check_prefix(prefix: bytes, max_pixels: int | None = None) -> Header | None:
    """Check a file's header from its first bytes, before its payload is read: field ranges,
    the pixel limit, the raw size and the payload's declared length against ``max_payload``.
    Memory then follows the pixel limit, not what a header claims. The CRC is checked later
    by ``read``; a header that fails here would fail there too.

    Returns:
        The header (not yet covered by the CRC), or None if ``prefix`` is too short to tell.

    Raises:
        FormatError: the header rules the file out.
    """
    if len(prefix) < 21 or prefix[8] not in (1, 2, 3):
        return None
    n = prefix[20]
    fields = 21 + n + DIGEST_BYTES + _extra(prefix[8])
    if not 1 <= n <= MAX_NAME or len(prefix) < fields + 14:
        return None
    h, plen = _header_fields(prefix, fields)
    _check_fields(h)
    _check_sizes(h, plen, max_pixels, check_raw=False)  # R: after the CRC, in read()
    return h


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
    if not isinstance(data, FileBytes):
        data = memoryview(data).toreadonly().cast("B")
    if len(data) < len(MAGIC) or bytes(data[: len(MAGIC)]) != MAGIC:
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
    (plen,) = struct.unpack("<I", data[fields + 10 : fields + 14])
    end = fields + 14 + plen
    if len(data) < end + 4:
        raise FormatError(
            f"file is truncated or corrupt: payload of {plen} bytes declared, {max(0, len(data) - end + plen - 4)} present"
        )
    if len(data) > end + 4:
        raise FormatError(f"{len(data) - end - 4} unexpected bytes after the end of the file")
    (crc,) = struct.unpack("<I", data[end : end + 4])
    if crc32(data, end) != crc:
        raise FormatError("checksum mismatch: the file is corrupt")
    h, _ = _header_fields(data[: fields + 14], fields)
    _check_fields(h)
    _check_sizes(h, plen, max_pixels)
    return h, sub(data, fields + 14, end)  # a view: no copy
