"""Tiled encoding and decoding: peak memory follows the tile, not the image.

A tile is processed with a margin of context around it, then only its own part of the
result is kept. Encoder: every switch depends on at most 8 input pixels beyond its stage-3
window (three 3x3 convolutions at scales 1, 1/2, 1/4), so ``ENCODER_MARGIN`` = 16 makes
tiled switches identical to untiled ones (tested byte for byte). Decoder: the margin covers
the decoder's receptive field, so tiles join without seams.

Tile sizes and margins are multiples of 8 so every crop lands on stage-3 window borders.
"""

from __future__ import annotations

import torch

ENCODER_MARGIN = 16
DECODER_MARGIN = 64
AUTO_TILE_PIXELS = 2048 * 2048  # images larger than this are tiled by default
DEFAULT_TILE = 1024


def _spans(n: int, tile: int, margin: int):
    """Yield (lo, hi, ctx_lo, ctx_hi) for tiles of [0, n) with context margins."""
    for lo in range(0, n, tile):
        hi = min(n, lo + tile)
        yield lo, hi, max(0, lo - margin), min(n, hi + margin)


def _tile_size(H: int, W: int, tile: int | None) -> int | None:
    if tile is None:
        return DEFAULT_TILE if H * W > AUTO_TILE_PIXELS else None
    if tile <= 0:
        return None
    if tile % 8:
        raise ValueError(f"tile size must be a multiple of 8, got {tile}")
    return tile


def encode_tiled(encoder, img: torch.Tensor, tile: int | None = None) -> list[torch.Tensor]:
    """Switches of uint8 ``img`` (1, 3, H, W), computed tile by tile.

    Args:
        tile: tile side in pixels (multiple of 8); None picks one for large images,
            0 disables tiling.

    Returns:
        Three uint8 tensors (1, C_s, H/2^s, W/2^s), identical to ``encoder(img)``.
    """
    _, _, H, W = img.shape
    t = _tile_size(H, W, tile)
    if t is None or (H <= t and W <= t):
        return encoder(img)
    out = [torch.empty(1, c, H >> (s + 1), W >> (s + 1), dtype=torch.uint8) for s, c in enumerate(encoder.channels)]
    for y0, y1, cy0, cy1 in _spans(H, t, ENCODER_MARGIN):
        for x0, x1, cx0, cx1 in _spans(W, t, ENCODER_MARGIN):
            codes = encoder(img[:, :, cy0:cy1, cx0:cx1])
            for s, c in enumerate(codes):
                f = s + 1
                out[s][:, :, y0 >> f : y1 >> f, x0 >> f : x1 >> f] = c[
                    :, :, (y0 - cy0) >> f : (y1 - cy0) >> f, (x0 - cx0) >> f : (x1 - cx0) >> f]
    return out


@torch.inference_mode()
def decode_tiled(decoder, codes: list[torch.Tensor], tile: int | None = None) -> torch.Tensor:
    """Decode switches (3 tensors (1, C_s, H/2^s, W/2^s)) to (1, 3, H, W) float, tile by tile."""
    H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
    t = _tile_size(H, W, tile)
    if t is None or (H <= t and W <= t):
        return decoder(codes)
    out = torch.empty(1, 3, H, W)
    for y0, y1, cy0, cy1 in _spans(H, t, DECODER_MARGIN):
        for x0, x1, cx0, cx1 in _spans(W, t, DECODER_MARGIN):
            sub = [c[:, :, cy0 >> (s + 1) : cy1 >> (s + 1), cx0 >> (s + 1) : cx1 >> (s + 1)]
                   for s, c in enumerate(codes)]
            x_hat = decoder(sub)
            out[:, :, y0:y1, x0:x1] = x_hat[:, :, y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    return out
