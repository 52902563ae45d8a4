"""Switch codes <-> packed bits <-> zstd payload."""

import numpy as np
import pytest
import zstandard

from maxswitch.bitstream import switches as sw


def test_bit_layout_is_msb_first_row_then_column():
    # codes 0,1,2,3 -> bits 00 01 10 11 -> one byte 0b00011011
    assert sw.pack([np.array([0, 1, 2, 3], np.uint8)]) == bytes([0b00011011])
    # 5 codes -> 10 bits -> 2 bytes, padded with zeros
    assert sw.pack([np.array([3, 3, 3, 3, 1], np.uint8)]) == bytes([0xFF, 0b01000000])


@pytest.mark.parametrize(
    "shape",
    [[(1, 4, 4), (1, 2, 2), (1, 1, 1)], [(16, 12, 20), (16, 6, 10), (16, 3, 5)], [(3, 2, 2), (5, 1, 1), (7, 1, 1)]],
)
def test_pack_unpack_round_trip(shape):
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 4, s, dtype=np.uint8) for s in shape]
    back = sw.unpack(sw.pack(codes), shape)
    for a, b in zip(codes, back):
        np.testing.assert_array_equal(a, b)


def test_pack_refuses_out_of_range():
    with pytest.raises(ValueError):
        sw.pack([np.array([4], np.uint8)])


def test_unpack_refuses_wrong_length():
    with pytest.raises(sw.PayloadError):
        sw.unpack(b"\0" * 3, [(1, 4, 4)])


def test_compress_round_trip_and_bounds():
    data = bytes(range(256)) * 10
    z = sw.compress(data)
    assert sw.decompress(z, len(data)) == data
    with pytest.raises(sw.PayloadError, match="declares"):
        sw.decompress(z, len(data) - 1)
    with pytest.raises(sw.PayloadError):
        sw.decompress(z[:-3], len(data))
    with pytest.raises(sw.PayloadError, match="exactly one"):
        sw.decompress(z + b"junk", len(data))
    with pytest.raises(sw.PayloadError, match="not a zstd frame"):
        sw.decompress(b"hello world", 11)


def test_decompress_requires_checksum_and_size():
    data = b"x" * 100
    no_ck = zstandard.ZstdCompressor(write_checksum=False).compress(data)
    with pytest.raises(sw.PayloadError, match="checksum"):
        sw.decompress(no_ck, 100)
    no_size = zstandard.ZstdCompressor(write_content_size=False, write_checksum=True).compress(data)
    with pytest.raises(sw.PayloadError):
        sw.decompress(no_size, 100)


def test_shapes():
    assert sw.shapes(16, 24, (4, 5, 6)) == [(4, 8, 12), (5, 4, 6), (6, 2, 3)]
    with pytest.raises(ValueError):
        sw.shapes(12, 16, (1, 1, 1))


@pytest.mark.parametrize("H,W,channels", [(40, 24, (3, 5, 7)), (64, 8, (1, 2, 3)), (16, 40, (4, 4, 4))])
def test_packed_rows_are_the_unpacked_rows(H, W, channels):
    rng = np.random.default_rng(H + W)
    shapes = sw.shapes(H, W, channels)
    codes = [rng.integers(0, 4, s, dtype=np.uint8) for s in shapes]
    src = sw.PackedRows(sw.pack(codes), shapes)
    assert src.size == (H, W)
    for p0 in range(0, H, 8):
        for p1 in range(p0 + 8, H + 1, 8):
            got = src.rows(p0, p1)
            for s, (g, c) in enumerate(zip(got, codes)):
                np.testing.assert_array_equal(g, c[:, p0 >> (s + 1) : p1 >> (s + 1)])
    with pytest.raises(sw.PayloadError):
        sw.PackedRows(bytes(3), shapes)
