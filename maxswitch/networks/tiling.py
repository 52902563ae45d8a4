"""Tiled encoding and decoding: peak memory follows the tile, not the image.

A tile is processed with a margin of context around it, then only its own part of the
result is kept. Tile sizes and margins are multiples of 8, so every crop lands on stage-3
window borders.

Encoder: the switches of a tile starting at row ``y0`` (a multiple of 8) depend on input
rows ``y0 - 7`` onwards: a stage-3 switch of row ``i`` reads stage-3 conv rows ``2i, 2i+1``,
hence pooled stage-2 rows ``2i-1 .. 2i+2``, stage-2 conv rows ``4i-2 .. 4i+5``, pooled stage-1
rows ``4i-3 .. 4i+6``, stage-1 conv rows ``8i-6 .. 8i+13`` and input rows ``8i-7 .. 8i+14``
(likewise for columns and the far side). Zero padding at a tile's edge only spoils values
outside that cone, so ``ENCODER_MARGIN = 8`` makes tiled switches identical to untiled ones,
bit for bit (the encoder is exact integer arithmetic; tests/test_tiling.py checks it with
tiles as small as 8 pixels).

Decoder: the direct decoder's output at row ``y0`` reads stage-1 switches from ``y0 - 4``,
stage-2 from ``y0 - 12`` and stage-3 from ``y0 - 32`` (two 3x3 convolutions at 1/2, 1/4 and 1/8
scale, joined by pixel shuffles); the mirror decoder reads less (16). With
``DECODER_MARGIN = 32`` a tile computes the same function as the whole image, so tiles join
without seams; only float rounding (a different blocking of the same sums) can differ.

Decoding runs a *runner* (an object with ``margin`` and ``block``): ``fastdecode.OrtRunner``,
the direct decoder on ONNX Runtime, which ``codec`` hands in for the models it applies to, or
``TorchRunner`` around any torch decoder module, the reference path and the one for every other
decoder kind. torch is imported only by the latter.

In torch the direct decoder runs in its inference form (``nets.DirectRunner``): channels-last memory, one-hot switches written
straight into the convolution's input buffer next to the upsampled features, pixel shuffles
folded into a reordering of the 1x1 convolutions' outputs, and the final
``clamp(x + 0.5) * 255`` folded into the last 1x1 convolution, so a tile goes from switches to
uint8 RGB with no full-size float image.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .. import threads as _threads

ENCODER_MARGIN = 8
DECODER_MARGIN = 32
# Images over AUTO_TILE_PIXELS are tiled by default, in tiles of 512: measured fastest on this
# project's 2-core machine for both networks (docs/PERFORMANCE.md), because a tile's
# intermediate maps stay in cache; work space is then a few tens of MB whatever the image.
AUTO_TILE_PIXELS = 768 * 768
DEFAULT_TILE = 512  # decoder
GPU_TILE = 2048  # decoder on a GPU (--device): a 2048 x 2048 tile of the default rung needs about 2 GB there
ENCODER_TILE = 512

_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Keep glibc from unmapping and re-faulting the tiles' large buffers on every call.

    glibc serves blocks over its (adaptive) mmap threshold with fresh mmap()s and unmaps
    them on free, so every tile's tens of MB of maps would be page-faulted and zeroed anew:
    measured 2.5x slower encoding in half of the runs on Kodak-sized images. A fixed 32 MB
    threshold (glibc's maximum) and a 256 MB trim threshold keep them in the heap. Once per
    process, glibc only; MAXSWITCH_MALLOPT=0 turns it off.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if os.environ.get("MAXSWITCH_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def _run_tiles(jobs: list, fn) -> None:
    """Run ``fn`` on every tile job: one tile per thread, or all threads on each tile.

    With several tiles and N > 1 threads (``threads.get()``), N worker threads take one tile
    each with the libraries' own threading off for the duration (restored after): tiles share
    no data and no locks, so this scales better than N threads splitting every operation of one
    tile (measured with torch: encoding 24 MP with 2 threads, 30 vs 24 MP/s; decoding, 4.6 vs
    4.1 MP/s). One tile alone uses the libraries' threads. ``fn(job, threads)`` is told how many
    threads its tile may use.
    """
    n = _threads.get()
    if n <= 1 or len(jobs) < 2:
        for job in jobs:
            fn(job, n)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(min(n, len(jobs)), thread_name_prefix="maxswitch-tile")
    try:
        with _threads.limited(1):
            for _ in pool.map(lambda job: fn(job, 1), jobs):
                pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _spans(n: int, tile: int, margin: int):
    """Yield (lo, hi, ctx_lo, ctx_hi) for tiles of [0, n) with context margins."""
    for lo in range(0, n, tile):
        hi = min(n, lo + tile)
        yield lo, hi, max(0, lo - margin), min(n, hi + margin)


def encoder_tiles(height: int, width: int, tile: int | None = None) -> int:
    """How many tiles ``encode_tiled`` cuts an image of this size into."""
    H, W = _padded(height), _padded(width)
    t = _tile_size(H, W, tile, ENCODER_TILE)
    return 1 if t is None or (H <= t and W <= t) else -(-H // t) * -(-W // t)


def _tile_size(H: int, W: int, tile: int | None, default: int) -> int | None:
    """The tile side to use: None means one piece (no tiling)."""
    if tile is None:
        return default if H * W > AUTO_TILE_PIXELS else None
    if tile <= 0:
        return None
    if tile % 8:
        raise ValueError(f"tile size must be a multiple of 8, got {tile}")
    return tile


def _padded(n: int) -> int:
    return -(-n // 8) * 8


# ----------------------------------------------------------------------------- encoder


def _as_hwc(img) -> np.ndarray:
    """uint8 (H, W, 3) array (a view where possible) of a numpy image or a (1, 3, H, W) tensor."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(img, torch.Tensor):
        if img.ndim != 4 or img.shape[0] != 1 or img.shape[1] != 3:
            raise ValueError(f"expected a (1, 3, H, W) tensor, got {tuple(img.shape)}")
        if img.dtype != torch.uint8:
            raise ValueError(f"encoder input must be uint8, got {img.dtype}")
        return img[0].permute(1, 2, 0).numpy()
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) array, got {a.dtype} {a.shape}")
    return a


def _crop_padded(rgb: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """rgb[y0:y1, x0:x1] of the image padded by edge replication, as a new contiguous array."""
    H, W = rgb.shape[:2]
    sub = rgb[y0 : min(y1, H), x0 : min(x1, W)]
    if y1 > H or x1 > W:
        return np.pad(sub, ((0, max(0, y1 - H)), (0, max(0, x1 - W)), (0, 0)), mode="edge")
    return np.ascontiguousarray(sub) if sub.flags.writeable else sub.copy()


def encode_tiled(encoder, img, tile: int | None = None, progress=None) -> list:
    """Switches of an image, computed tile by tile.

    Args:
        encoder: an ``encoder.SwitchEncoder`` (numba) or a ``nets.Encoder`` (torch): the same
            switches, bit for bit.
        img: uint8 (H, W, 3) array of any size (padded here, tile by tile, by edge
            replication to multiples of 8, as ``image.pad_to_multiple`` does), or a uint8
            (1, 3, H, W) tensor.
        tile: tile side in pixels (multiple of 8); None picks one for large images,
            0 disables tiling.
        progress: called with 1 after each tile (from the tiles' threads), if given.

    Returns:
        Three uint8 arrays (1, C_s, H'/2^s, W'/2^s) of the padded size H' x W', identical to
        ``encoder`` on the whole padded image: numpy arrays from a ``SwitchEncoder``, tensors
        from a ``nets.Encoder``.
    """
    _tune_malloc()
    rgb = _as_hwc(img)
    H, W = _padded(rgb.shape[0]), _padded(rgb.shape[1])
    t = _tile_size(H, W, tile, ENCODER_TILE)
    run_encoder = _encoder_fn(encoder)
    if t is None or (H <= t and W <= t):
        codes = run_encoder(_crop_padded(rgb, 0, H, 0, W))
        if progress is not None:
            progress(1)
        return codes
    out = [_empty(encoder, (1, c, H >> (s + 1), W >> (s + 1))) for s, c in enumerate(encoder.channels)]

    def run(job, _threads_for_tile):
        (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) = job
        codes = run_encoder(_crop_padded(rgb, cy0, cy1, cx0, cx1))
        for s, c in enumerate(codes):
            f = s + 1
            out[s][:, :, y0 >> f : y1 >> f, x0 >> f : x1 >> f] = c[
                :, :, (y0 - cy0) >> f : (y1 - cy0) >> f, (x0 - cx0) >> f : (x1 - cx0) >> f
            ]
        if progress is not None:
            progress(1)

    _run_tiles([(ys, xs) for ys in _spans(H, t, ENCODER_MARGIN) for xs in _spans(W, t, ENCODER_MARGIN)], run)
    return out


def _encoder_fn(encoder):
    """uint8 (h, w, 3) tile -> its 3 code arrays (1, C_s, h/2^s, w/2^s), for either encoder."""
    from .encoder import SwitchEncoder

    if isinstance(encoder, SwitchEncoder):
        return lambda tile: [c[None] for c in encoder(tile)]
    import torch

    return lambda tile: encoder(torch.from_numpy(tile).permute(2, 0, 1)[None])


def _empty(encoder, shape):
    """An uninitialised uint8 array of ``shape`` of the kind ``encoder`` gives (numpy or torch)."""
    from .encoder import SwitchEncoder

    if isinstance(encoder, SwitchEncoder):
        return np.empty(shape, np.uint8)
    import torch

    return torch.empty(shape, dtype=torch.uint8)


# ----------------------------------------------------------------------------- decoder


class TorchRunner:
    """A torch decoder module as a runner (``block``): its fast inference form
    (``decoder.inference()``, ``nets.DirectRunner``) where it has one, else the module itself
    on each tile with its context; ``margin`` is the decoder's ``TILE_MARGIN`` (a decoder kind
    states its own). The reference path, and the one for every decoder kind that
    ``fastdecode`` does not run."""

    def __init__(self, decoder, device=None):
        """``device``: a torch device other than the CPU (``codec.decoder_runner``'s ``device``)
        runs a copy of the module there, tile by tile with its context; the CPU's fast form is
        not used there."""
        self.margin = getattr(decoder, "TILE_MARGIN", DECODER_MARGIN)
        self.device = device
        if device is not None:
            import copy

            self.tile = GPU_TILE  # a GPU wants few large tiles
            self.decoder, self.fast = copy.deepcopy(decoder).to(device).eval(), None
            return
        self.decoder = decoder
        fast = getattr(decoder, "inference", None)
        self.fast = fast() if fast is not None else None

    def block(self, codes, y0: int, y1: int, x0: int, x1: int, th: int, tw: int, threads: int = 1) -> np.ndarray:
        """uint8 (th, tw, 3) pixels of rows y0.., columns x0.. (see ``fastdecode.OrtRunner.block``)."""
        import torch

        codes = _as_code_tensors(codes)
        with torch.inference_mode():  # per thread
            if self.fast is not None:
                return _to_uint8_block(self.fast.region(codes, y0, y1, x0, x1)[0], th, tw).numpy()
            m = self.margin
            H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
            cy0, cy1, cx0, cx1 = max(0, y0 - m), min(H, y1 + m), max(0, x0 - m), min(W, x1 + m)
            k = [H // c.shape[-2] for c in codes]  # pixels per cell of each map (a what picture's: F)
            sub = [c[:, :, cy0 // k[s] : cy1 // k[s], cx0 // k[s] : cx1 // k[s]] for s, c in enumerate(codes)]
            if self.device is not None:
                sub = [c.to(self.device) for c in sub]
            x_hat = self.decoder(sub)[0, :, y0 - cy0 : y0 - cy0 + th, x0 - cx0 : x0 - cx0 + tw]
            return x_hat.clamp(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def as_runner(decoder):
    """``decoder`` itself if it is a runner (has ``block``), else a ``TorchRunner`` around it."""
    return decoder if hasattr(decoder, "block") else TorchRunner(decoder)


def _to_uint8_block(x, th: int, tw: int):
    """float tensor (h, w, 2, 2, 3) in 0..255 -> uint8 (th, tw, 3), the top-left th x tw pixels."""
    import torch

    hh, ww = (th + 1) // 2, (tw + 1) // 2
    rgb = x[:hh, :ww].permute(0, 2, 1, 3, 4).reshape(2 * hh, 2 * ww, 3)[:th, :tw]
    return rgb.clamp_(0.0, 255.0).round_().to(torch.uint8)


def _as_code_tensors(codes) -> list:
    import torch

    out = []
    for c in codes:
        t = c if isinstance(c, torch.Tensor) else torch.from_numpy(np.asarray(c))
        out.append(t if t.ndim == 4 else t[None])
    return out


def _as_code_arrays(codes) -> list[np.ndarray]:
    """3 switch maps (numpy or tensors, with or without the batch axis) as numpy (1, C_s, h, w)."""
    out = []
    for c in codes:
        a = c if isinstance(c, np.ndarray) else c.numpy()
        out.append(a if a.ndim == 4 else a[None])
    return out


def decode_tiled(decoder, codes, tile: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode switches to uint8 RGB, tile by tile.

    Args:
        decoder: a runner (``fastdecode.OrtRunner``), or a module mapping 3 code tensors
            (1, C_s, H/2^s, W/2^s) to float RGB (1, 3, H, W) in 0..1, run by ``TorchRunner``: in
            its fast inference form where it has one (``decoder.inference()``), with its own
            ``TILE_MARGIN`` where it states one.
        codes: the 3 switch maps, numpy (C_s, H/2^s, W/2^s) or tensors (1, C_s, ...).
        tile: tile side in pixels (multiple of 8); None picks one for large images,
            0 disables tiling.
        size: (height, width) to return, at most the padded size (default: padded size).

    Returns:
        uint8 (height, width, 3) array.
    """
    height, width = size or (codes[0].shape[-2] * 2, codes[0].shape[-1] * 2)
    return join_bands(decode_bands(decoder, codes, tile, size), height, width)


def join_bands(bands, height: int, width: int) -> np.ndarray:
    """The uint8 (height, width, 3) image of ``decode_bands``' bands (the band itself if one)."""
    out = None
    y = 0
    for band in bands:
        if y == 0 and band.shape[0] == height:
            return band
        if out is None:
            out = np.empty((height, width, 3), dtype=np.uint8)
        out[y : y + band.shape[0]] = band
        y += band.shape[0]
    return out


def decode_bands(decoder, codes, tile: int | None = None, size: tuple[int, int] | None = None):
    """``decode_tiled``'s pixels one row of tiles at a time: yields uint8 (rows, width, 3)
    bands, top to bottom, whose concatenation is ``decode_tiled(decoder, codes, tile, size)``.

    ``codes`` is the 3 switch maps, or a source of rows of them (an object with ``size``, the
    padded (H, W), and ``rows(p0, p1)`` giving the 3 maps of pixel rows [p0, p1):
    ``switches.PackedRows``, ``entropy.RowDecoder``). With a source the switches are never
    held whole either: memory is a band and its context, whatever the image's size (a
    16000 x 16000 decode to PNG stays near 0.5 GB; docs/SECURITY.md). Each band's tiles see
    the same context as in a whole-image decode, so the pixels do not depend on the source.
    The size and tile checks run before the first band is asked for.
    """
    _tune_malloc()
    src = as_source(codes)
    H, W = src.size
    height, width = size or (H, W)
    if not (0 < height <= H and 0 < width <= W):
        raise ValueError(f"size {height}x{width} does not fit the padded size {H}x{W}")
    runner = as_runner(decoder)
    if tile is None and getattr(runner, "tile", None):  # a runner may prefer its own tiles
        tile = runner.tile if H * W > runner.tile**2 else 0
    t = _tile_size(H, W, tile, DEFAULT_TILE)
    return _bands(runner, src, t or max(H, W), height, width)


def _channels(src) -> list[int]:
    """The channels per stage of a source of rows (from a band of its first 8 rows)."""
    return [int(c.shape[-3]) for c in src.rows(0, 8)]


class _ArrayRows:
    """Whole switch maps, as a source of rows (``decode_bands``)."""

    def __init__(self, codes: list[np.ndarray]):
        self.codes = codes
        self.channels = [int(c.shape[-3]) for c in codes]
        self.size = (codes[0].shape[-2] * 2, codes[0].shape[-1] * 2)

    def rows(self, p0: int, p1: int) -> list[np.ndarray]:
        # a 4th map is a WhatDecoder's what picture, of blocks of k = H / its rows pixels
        H = self.size[0]
        return [c[:, :, p0 // (H // c.shape[-2]) : p1 // (H // c.shape[-2])] for c in self.codes]


def as_source(codes):
    """A source of switch rows (``decode_bands``) for 3 maps or a source."""
    return codes if hasattr(codes, "rows") else _ArrayRows(_as_code_arrays(codes))


class WithWhat:
    """A source of switch rows (``decode_bands``) and a what picture uint8 (1, 3, H/F, W/F),
    F = 2, 4 or 8: each band gets the what picture's rows as a 4th map (``nets.WhatDecoder``)."""

    def __init__(self, src, what):
        self.src, self.what, self.size = src, what, src.size
        self.f = src.size[0] // what.shape[-2]

    def rows(self, p0: int, p1: int) -> list:
        return [*self.src.rows(p0, p1), self.what[:, :, p0 // self.f : p1 // self.f]]


BAND_SWITCHES = 256 << 20  # a band's switches with their context rows, at one byte each, at most this


def _band_rows(t: int, W: int, margin: int, per_pixel: float) -> int:
    """The height of a row of tiles: ``t``, or less for a wide picture, so that a band's
    switches with their context rows stay under ``BAND_SWITCHES`` bytes and its pixels under
    a third of that (a 1,048,576-pixel-wide picture's row of 512-pixel tiles is the whole
    picture; docs/SECURITY.md); at least 8."""
    fit = min(BAND_SWITCHES / max(per_pixel, 1e-9) / W - 2 * margin, BAND_SWITCHES / 3 / W)
    return max(8, min(t, int(fit) // 8 * 8))


def _row_groups(H: int, W: int, t: int, margin: int, height: int, width: int, ty: int | None = None) -> list[list]:
    """Rows of tiles (``ty`` rows high, default ``t``) grouped into bands of at least 2 tiles
    per thread (a narrow image's rows hold too few tiles to keep every thread busy), each band
    a list of tile jobs."""
    xs = [x for x in _spans(W, t, margin) if x[0] < width]
    rows = [y for y in _spans(H, ty or t, margin) if y[0] < height]
    per = max(1, -(-2 * _threads.get() // len(xs)))
    return [[(y, x) for y in rows[i : i + per] for x in xs] for i in range(0, len(rows), per)]


def _bands(runner, src, t: int, height: int, width: int):
    H, W = src.size
    per_pixel = sum(c / 4 ** (s + 1) for s, c in enumerate(getattr(src, "channels", None) or _channels(src)))
    ty = _band_rows(t, W, runner.margin, per_pixel)
    for jobs in _row_groups(H, W, t, runner.margin, height, width, ty):
        b0, b1 = jobs[0][0][0], min(jobs[-1][0][1], height)
        # the band's switches with the context its tiles read: the tile spans' context rows,
        # which also cover the runners' reach (TILE_MARGIN pixels); c0 is a multiple of 8
        c0, c1 = jobs[0][0][2], jobs[-1][0][3]
        codes = _as_code_arrays(src.rows(c0, c1))
        band = np.empty((b1 - b0, width, 3), dtype=np.uint8)

        def run(job, threads, b0=b0, band=band, codes=codes, c0=c0):
            (y0, y1, _, _), (x0, x1, _, _) = job
            th, tw = min(y1, height) - y0, min(x1, width) - x0
            band[y0 - b0 : y0 - b0 + th, x0 : x0 + tw] = runner.block(codes, y0 - c0, y1 - c0, x0, x1, th, tw, threads)

        _run_tiles(jobs, run)
        yield band
