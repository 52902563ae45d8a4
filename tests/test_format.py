"""The .msw container: round trip, every field checked, truncation and corruption refused."""

import struct
import zlib

import pytest

from maxswitch.bitstream import format as fmt


def header(**kw):
    d = dict(
        width=37,
        height=21,
        model="natural-16-16-16",
        encoder_digest=bytes(range(16)),
        channels=(16, 16, 16),
        kind=3,
        bit_depth=8,
    )
    d.update(kw)
    d["raw_size"] = fmt.raw_size(d["width"], d["height"], d["channels"])
    return fmt.Header(**d)


def test_round_trip():
    h = header()
    data = fmt.write(h, b"payload!")
    h2, payload = fmt.read(data)
    assert h2 == h and payload == b"payload!"
    assert len(data) == fmt.header_size("natural-16-16-16") + len(b"payload!")


def test_layout_matches_spec():
    """Byte offsets exactly as docs/FORMAT.md says."""
    data = fmt.write(header(width=0x01020304 & 0xFFFFF, height=9), b"xyz")
    assert data[:8] == b"\x89MSW\r\n\x1a\n"
    assert data[8] == 1 and data[9] == 1 and data[10] == 3 and data[11] == 8
    assert struct.unpack_from("<II", data, 12) == (0x01020304 & 0xFFFFF, 9)
    n = data[20]
    assert data[21 : 21 + n] == b"natural-16-16-16"
    assert data[21 + n : 37 + n] == bytes(range(16))
    c1, c2, c3, r, L = struct.unpack_from("<HHHII", data, 37 + n)
    assert (c1, c2, c3, L) == (16, 16, 16, 3)
    assert data[51 + n : 54 + n] == b"xyz"
    assert struct.unpack_from("<I", data, 54 + n)[0] == zlib.crc32(data[: 54 + n])


def test_raw_size_counts_two_bits_per_switch():
    # 8x8 image, channels 16,16,16: 16*16 + 16*4 + 16*1 = 336 switches = 84 bytes
    assert fmt.switch_count(8, 8, (16, 16, 16)) == 336
    assert fmt.raw_size(8, 8, (16, 16, 16)) == 84
    # 1x1 pads to 8x8
    assert fmt.raw_size(1, 1, (16, 16, 16)) == 84


def test_every_truncation_is_refused():
    data = fmt.write(header(), b"0123456789")
    for n in range(len(data)):
        with pytest.raises(fmt.FormatError):
            fmt.read(data[:n])


def test_trailing_bytes_refused():
    data = fmt.write(header(), b"abc")
    with pytest.raises(fmt.FormatError, match="unexpected bytes"):
        fmt.read(data + b"\0")


def test_bad_magic_and_empty():
    with pytest.raises(fmt.FormatError, match="empty"):
        fmt.read(b"")
    with pytest.raises(fmt.FormatError, match="magic"):
        fmt.read(b"\x89PNG\r\n\x1a\n" + b"\0" * 80)


def test_newer_version_says_so():
    data = bytearray(fmt.write(header(), b"abc"))
    data[8] = 4
    with pytest.raises(fmt.NewerVersionError, match="version 4.*upgrade"):
        fmt.read(bytes(data))


def test_every_single_bit_flip_is_detected():
    data = fmt.write(header(width=3, height=2, model="m", channels=(1, 1, 1)), b"pp")
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(fmt.FormatError):
            fmt.read(bytes(bad))


def _refresh_crc(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    "offset,value,msg",
    [
        (9, 7, "coding"),
        (10, 9, "colour"),
        (11, 12, "bit depth"),
    ],
)
def test_field_ranges_checked_even_with_valid_crc(offset, value, msg):
    data = bytearray(fmt.write(header(), b"abc"))
    data[offset] = value
    with pytest.raises(fmt.FormatError, match=msg):
        fmt.read(_refresh_crc(bytes(data)))


def test_zero_width_and_raw_size_mismatch_refused():
    data = bytearray(fmt.write(header(), b"abc"))
    struct.pack_into("<I", data, 12, 0)
    with pytest.raises(fmt.FormatError, match="size"):
        fmt.read(_refresh_crc(bytes(data)))
    data = bytearray(fmt.write(header(), b"abc"))
    n = data[20]
    struct.pack_into("<I", data, 43 + n, 5)
    with pytest.raises(fmt.FormatError, match="switch size"):
        fmt.read(_refresh_crc(bytes(data)))


def test_pixel_limit_checked_before_anything_is_allocated():
    data = fmt.write(header(width=20000, height=20000), b"abc")
    with pytest.raises(fmt.FormatError, match="over the limit"):
        fmt.read(data, max_pixels=1_000_000)


def test_invalid_model_name_refused():
    with pytest.raises(fmt.FormatError):
        fmt.write(header(model="Bad Name"), b"")
