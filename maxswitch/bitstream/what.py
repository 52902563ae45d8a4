"""The "what" part of a format-v3 file: a coarse, exactly coded description of the image's values.

The switches say *where* the maxima were; they carry nothing about level or colour, so flat areas
and hues are guessed by the decoder. This part adds the missing *what*: the means of the padded
image's F x F blocks (F = 2, 4, 8 or 16; the what decoders read 2, 4 and 8), in a reversible integer colour space, quantised and coded
losslessly. Everything here is integer arithmetic on numpy arrays, so every machine computes the
same part (docs/FORMAT.md, "The what part", specifies it for other languages). No torch.

Pipeline, for a padded uint8 image (H, W, 3), H and W multiples of F:

1. block means: ``m = (sum of the F*F pixels + F*F/2) // (F*F)`` per channel, shape (H/F, W/F, 3);
2. YCoCg-R (lossless): ``co = r - b; t = b + (co >> 1); cg = g - t; y = t + (cg >> 1)``;
3. quantisation with steps (sy, sc): ``q = floor((v + s // 2) / s)`` (floor division), plane by plane
   y, co, cg;
4. prediction: each plane's values in raster order predicted by LOCO-I's median edge detector from
   the left (a), upper (b) and upper-left (c) neighbours, the missing ones taken as in ``_med``;
5. residuals zigzag-mapped to unsigned (``2r`` or ``-2r - 1``), plane after plane in raster
   order; their low bytes, then their high bytes; coded as one zstd frame (``zstandard``,
   level 9, content size and checksum flags set).

Decoding inverts steps 5 to 2: dequantised planes ``v = q * s``, then the inverse YCoCg-R on those
integers, clamped to [0, 255]. The decoder networks read that picture (``dequantize``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZSTD_LEVEL = 9  # measured: 11% fewer bytes than 16-bit words at level 19, in 1/30 of the time
FACTORS = (2, 4, 8, 16)  # block sizes a file may use (the format stores log2 of it)
LEVEL3 = 8  # the block size of the picture a what decoder's level 3 reads (``level3_picture``)
MAX_STEP = 255


class WhatError(ValueError):
    """A what part that cannot be decoded (the message says why)."""


@dataclass(frozen=True)
class WhatSpec:
    """How a file's what part was made: block size ``factor`` and quantisation steps of the luma
    plane (``step_y``) and of both chroma planes (``step_c``)."""

    factor: int = 8
    step_y: int = 4
    step_c: int = 8

    def __post_init__(self):
        if self.factor not in FACTORS:
            raise ValueError(f"what factor must be one of {FACTORS}, got {self.factor}")
        for s in (self.step_y, self.step_c):
            if not 1 <= s <= MAX_STEP:
                raise ValueError(f"what steps must be in 1..{MAX_STEP}, got {s}")

    def grid(self, padded_h: int, padded_w: int) -> tuple[int, int]:
        """(rows, columns) of the block grid of a padded image (sizes multiples of 8)."""
        f = self.factor
        return -(-padded_h // f), -(-padded_w // f)


FLAT_SHARE = 0.35  # pictures with at least this share of flat 8x8 blocks are "mostly flat" (``is_flat``)
FLAT_STEP = 1  # a flat block's neighbouring pixels differ by at most this many levels (``flat_share``)
FLAT_SPEC_STEPS = (4, 8)  # the coarsest steps a flat picture's what part keeps (``flat_spec``)


def flat_share(rgb: np.ndarray, rows: int = 512) -> float:
    """The share of an image's whole 8x8 blocks that are flat, in [0, 1]: no two pixels next to
    each other in the block (across or down) differ by more than ``FLAT_STEP`` levels in any
    channel, so a block of one colour counts, and so does a ramp of one level per pixel (drawn
    gradients), but any texture, grain or noise does not. 0 for an image with no whole block.
    uint8 (H, W, 3); ``rows`` pixel rows at a time, so that a large picture needs no full-size
    temporary."""
    H, W = rgb.shape[0] // 8 * 8, rgb.shape[1] // 8 * 8
    if H == 0 or W == 0:
        return 0.0
    flat = 0
    for y in range(0, H, rows):
        r = rgb[y : min(y + rows, H), :W]
        r = r.reshape(r.shape[0] // 8, 8, W // 8, 8, -1)
        ok = np.ones((r.shape[0], W // 8), bool)
        for a, b in ((r[:, :, :, 1:], r[:, :, :, :-1]), (r[:, 1:], r[:, :-1])):  # across, down
            step = np.maximum(a, b) - np.minimum(a, b)  # |a - b| in uint8, without wrapping
            ok &= (step <= FLAT_STEP).all(axis=(1, 3, 4))
        flat += int(ok.sum())
    return flat / ((H // 8) * (W // 8))


def is_flat(rgb: np.ndarray) -> bool:
    """Whether a picture is mostly flat: at least ``FLAT_SHARE`` of its 8x8 blocks are flat
    (``flat_share``). Measured (docs/RESULTS.md, "Synthetic content: screens"): the six test
    screens 0.40 to 0.82; all 640 of examples/screens.py's random screens at least 0.54; at most 0.28 over
    BSDS500's 500 photographs and 0.08 over Kodak's 24; 22 of LFW's 1,917 faces cross it.
    ``codec._for_picture`` gives such pictures a finer what part (and the model's decoder for
    them): flat areas cost almost nothing at any block size, while the switches, all ties or
    nearly so there, cannot place the panels' edges and text that 8x8 means blur."""
    return flat_share(rgb) >= FLAT_SHARE


def flat_spec(spec: WhatSpec) -> WhatSpec:
    """The what part a mostly flat picture gets from a model whose own is ``spec`` and that names
    no decoder for flat pictures: 2x2 blocks, steps no coarser than ``FLAT_SPEC_STEPS``. Decoders
    read the block size and steps from the file, so nothing changes for them."""
    sy, sc = FLAT_SPEC_STEPS
    return WhatSpec(min(FACTORS), min(spec.step_y, sy), min(spec.step_c, sc))


def level3_picture(pic: np.ndarray, factor: int) -> np.ndarray:
    """The picture a what decoder's level 3 reads, uint8 (..., 3, H/8, W/8), from a file's what
    picture uint8 (..., 3, H/F, W/F) of block size F = 2, 4 or 8: the rounded means of its
    (8/F) x (8/F) values, ``(sum + n/2) // n`` with n = (8/F)^2 (for F = 8, the picture itself).
    ``nets.level3_picture`` computes the same integers in torch."""
    if factor == LEVEL3:
        return pic
    if factor not in FACTORS or factor > LEVEL3:
        raise WhatError(f"a what decoder reads what parts of 2, 4 or 8-pixel blocks, not {factor}")
    k = LEVEL3 // factor
    *lead, c, h, w = pic.shape
    s = pic.reshape(*lead, c, h // k, k, w // k, k).sum(axis=(-3, -1), dtype=np.int64)
    n = k * k
    return ((s + n // 2) // n).astype(np.uint8)


def block_means(rgb: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W, 3) -> int64 (ceil(H/F), ceil(W/F), 3): rounded means of F x F blocks.

    Sizes that are not multiples of F are padded by edge replication first (the padded image
    is a multiple of 8, so this happens only for F = 16)."""
    h, w = rgb.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
    H, W = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    # sums of at most 16 x 16 values of 255 fit uint16: rows of blocks first, then columns
    s = rgb.reshape(H // factor, factor, W * 3).sum(axis=1, dtype=np.uint16)
    s = s.reshape(H // factor, W // factor, factor, 3).sum(axis=2, dtype=np.uint16)
    n = factor * factor
    return (s.astype(np.int64) + n // 2) // n


def to_ycocg(m: np.ndarray) -> np.ndarray:
    """int (..., 3) RGB in 0..255 -> int64 (3, ...) planes y (0..255), co, cg (-255..255)."""
    r, g, b = (m[..., i].astype(np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    y = t + (cg >> 1)
    return np.stack([y, co, cg])


def from_ycocg(p: np.ndarray) -> np.ndarray:
    """Inverse of ``to_ycocg``: int (3, ...) -> int64 (..., 3) RGB (not clamped)."""
    y, co, cg = (p[i].astype(np.int64) for i in range(3))
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b], axis=-1)


def quantize(planes: np.ndarray, spec: WhatSpec) -> np.ndarray:
    """int64 (3, h, w) -> int64 (3, h, w): ``floor((v + s // 2) / s)`` with s per plane."""
    s = np.array([spec.step_y, spec.step_c, spec.step_c], dtype=np.int64).reshape(3, 1, 1)
    return np.floor_divide(planes + s // 2, s)


def dequantize(q: np.ndarray, spec: WhatSpec) -> np.ndarray:
    """Quantised planes (3, h, w) -> uint8 (h, w, 3) RGB: ``q * s``, inverse YCoCg-R, clamp."""
    s = np.array([spec.step_y, spec.step_c, spec.step_c], dtype=np.int64).reshape(3, 1, 1)
    return np.clip(from_ycocg(q.astype(np.int64) * s), 0, 255).astype(np.uint8)


def _med(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector: min(a, b) if c >= max(a, b), max(a, b) if c <= min(a, b),
    else a + b - c."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))


def _neighbours(q: np.ndarray):
    """(left, up, up-left) of every value of a plane (h, w). Outside the plane: on the first row
    a value's up and up-left are its left (and the first value's are all 0); in the first column
    its left and up-left are its up."""
    h, w = q.shape
    a = np.zeros_like(q)
    b = np.zeros_like(q)
    c = np.zeros_like(q)
    a[:, 1:] = q[:, :-1]
    b[1:, :] = q[:-1, :]
    c[1:, 1:] = q[:-1, :-1]
    a[1:, 0] = q[:-1, 0]  # first column: left = up
    c[1:, 0] = q[:-1, 0]  # first column: up-left = up
    b[0, :] = a[0, :]  # first row: up = left
    c[0, :] = a[0, :]  # first row: up-left = left
    return a, b, c


def residuals(q: np.ndarray) -> np.ndarray:
    """Prediction residuals of quantised planes (3, h, w) (int64, same shape)."""
    out = np.empty_like(q)
    for i in range(q.shape[0]):
        a, b, c = _neighbours(q[i])
        out[i] = q[i] - _med(a, b, c)
    return out


def unresidual(r: np.ndarray) -> np.ndarray:
    """Inverse of ``residuals``: planes (3, h, w) int64 rebuilt in raster order (each value's
    prediction needs its decoded left neighbour), by the compiled kernel ``whatjit.unresidual``."""
    from .whatjit import unresidual as kernel

    return kernel(np.ascontiguousarray(r, dtype=np.int64))


def _zigzag(r: np.ndarray) -> np.ndarray:
    return np.where(r >= 0, 2 * r, -2 * r - 1)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    return np.where(u & 1, -((u + 1) >> 1), u >> 1)


def encode_planes(q: np.ndarray) -> bytes:
    """Quantised planes (3, h, w) -> the what payload (a zstd frame of zigzagged residuals)."""
    import zstandard

    u = _zigzag(residuals(q)).ravel()
    if u.size and u.max() > 0xFFFF:
        raise WhatError("what residual out of range")  # cannot happen for steps >= 1 and 8-bit means
    raw = np.concatenate([(u & 0xFF).astype(np.uint8), (u >> 8).astype(np.uint8)]).tobytes()
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, write_checksum=1, write_content_size=1)
    return zstandard.ZstdCompressor(compression_params=params).compress(raw)


def decode_planes(data: bytes, h: int, w: int) -> np.ndarray:
    """The what payload -> quantised planes (3, h, w); ``WhatError`` if damaged or of the wrong size."""
    import zstandard

    need = 3 * h * w * 2
    try:
        params = zstandard.get_frame_parameters(data)
        if params.content_size != need:
            raise WhatError(f"what part holds {params.content_size} bytes of residuals, expected {need}")
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=need)
    except zstandard.ZstdError as e:
        raise WhatError(f"what part is not a valid zstd frame ({e})") from None
    if len(raw) != need:
        raise WhatError("what part has the wrong size")
    b = np.frombuffer(raw, np.uint8).astype(np.int64)
    u = (b[: need // 2] | (b[need // 2 :] << 8)).reshape(3, h, w)
    return unresidual(_unzigzag(u))


def describe(rgb_padded: np.ndarray, spec: WhatSpec) -> np.ndarray:
    """uint8 (H, W, 3) padded image -> quantised planes (3, H/F, W/F) (what the file stores)."""
    return quantize(to_ycocg(block_means(rgb_padded, spec.factor)), spec)


def encode(rgb_padded: np.ndarray, spec: WhatSpec) -> tuple[bytes, np.ndarray]:
    """The what payload of a padded image, and the picture a decoder will see (uint8 (h, w, 3))."""
    q = describe(rgb_padded, spec)
    return encode_planes(q), dequantize(q, spec)


def decode(data: bytes, spec: WhatSpec, padded_h: int, padded_w: int) -> np.ndarray:
    """The what payload -> uint8 (H/F, W/F, 3): the dequantised block means the decoder reads."""
    h, w = spec.grid(padded_h, padded_w)
    return dequantize(decode_planes(data, h, w), spec)
