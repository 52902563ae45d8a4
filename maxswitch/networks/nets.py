"""The networks: the fixed switch encoder and the decoders that read switches only.

Shapes use B (batch), C_s (channels of stage s), H, W (image size, multiples of 8).
Stage s pools a map of size (H/2^(s-1), W/2^(s-1)) into windows of 2x2, so its switches
have shape (B, C_s, H/2^s, W/2^s), one 2-bit code per window: ``row * 2 + column`` of the
window's maximum, ties going to the first position in row-major order (as torch does).

The encoder computes in exact integer arithmetic carried in float32: integer weights in
[-7, 7], integer biases, integer inputs (pixel - 128), and after each stage a right shift
and a clamp to [0, 1023]. Every partial sum of a convolution stays below 2^24, so float32
represents it exactly whatever the summation order, thread count, tiling or CPU: the
switches are the same on every machine. ``EncoderSpec.exact_dtype`` checks that bound and
falls back to float64 for channel counts where float32 would not be exact.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DECODER_KINDS
from .encoder import ACT_MAX, WEIGHT_MAX  # noqa: F401  (the integer encoder's bounds, re-exported)
from .encoder import exact_dtype as _exact_dtype
from .modelconfig import STAGES, ModelConfig, parse_channels  # noqa: F401  (re-exported)

# ----------------------------------------------------------------------------- encoder


def calibrated_shift(pooled: torch.Tensor) -> int:
    """The right shift after a stage that brings the 99th percentile of its pooled values
    (any shape; sampled to about 100,000 values) down to at most 2^8."""
    p99 = torch.quantile(pooled.flatten()[:: max(1, pooled.numel() // 100000)].float(), 0.99).item()
    return max(0, math.ceil(math.log2(max(p99, 1.0) / 256.0)))


class Encoder(nn.Module):
    """The fixed random encoder: three stages of conv 3x3 (pad 1) + ReLU + 2x2 max-pool.

    Its parameters are integers (stored as int8 weights, int32 biases, int32 shifts) and it
    has no trainable state. ``forward`` returns the switches of every stage.
    """

    def __init__(self, channels: tuple[int, int, int], pool: str = "max"):
        super().__init__()
        self.channels = tuple(channels)
        self.pool = pool
        cins = (3,) + self.channels[:-1]
        for s, (cin, cout) in enumerate(zip(cins, self.channels)):
            self.register_buffer(f"w{s}", torch.zeros(cout, cin, 3, 3, dtype=torch.int8))
            self.register_buffer(f"b{s}", torch.zeros(cout, dtype=torch.int32))
        self.register_buffer("shifts", torch.zeros(STAGES, dtype=torch.int32))
        self._cache: dict = {}

    @staticmethod
    def exact_dtype(channels: tuple[int, ...], bias_max: int) -> torch.dtype:
        """float32 when every partial sum of every stage is below 2^24, else float64."""
        import numpy as np

        return torch.float32 if _exact_dtype(channels, bias_max) is np.float32 else torch.float64

    @classmethod
    def random(cls, channels, seed: int, calibration: torch.Tensor | None = None, pool: str = "max") -> "Encoder":
        """Draw a random integer encoder (the only place randomness enters).

        Args:
            channels: three channel counts.
            seed: torch generator seed.
            calibration: optional uint8 images (B, 3, H, W) used to pick each stage's
                shift so that typical pooled values land around 2^8; without it a shift
                from the expected magnitude is used.
        """
        enc = cls(channels, pool)
        g = torch.Generator().manual_seed(seed)
        cins = (3,) + enc.channels[:-1]
        x = None if calibration is None else enc._to_input(calibration)
        for s, (cin, cout) in enumerate(zip(cins, enc.channels)):
            w = torch.randn(cout, cin, 3, 3, generator=g).mul(2.5).round().clamp(-WEIGHT_MAX, WEIGHT_MAX)
            # expected std of the conv output for inputs of std 60 (stage 1) or 200 (later)
            out_std = math.sqrt(9 * cin) * 3.0 * (60.0 if s == 0 else 200.0)
            b = torch.randn(cout, generator=g).mul(0.25 * out_std).round()
            b = b.clamp(-(2**20), 2**20)
            getattr(enc, f"w{s}").copy_(w.to(torch.int8))
            getattr(enc, f"b{s}").copy_(b.to(torch.int32))
            if x is not None:
                y = F.relu(F.conv2d(x, w.to(x.dtype), b.to(x.dtype), padding=1))
                y = F.max_pool2d(y, 2)
                shift = calibrated_shift(y)
                x = torch.clamp(torch.floor(y / 2**shift), max=ACT_MAX)
            else:
                shift = max(0, round(math.log2(out_std / 256.0)))
            enc.shifts[s] = shift
        return enc

    def _to_input(self, img: torch.Tensor) -> torch.Tensor:
        if img.dtype != torch.uint8:
            raise ValueError(f"encoder input must be uint8, got {img.dtype}")
        return img.to(self.dtype).sub_(128.0)

    @property
    def dtype(self) -> torch.dtype:
        bias_max = max(int(getattr(self, f"b{s}").abs().max()) for s in range(STAGES))
        return self.exact_dtype(self.channels, bias_max)

    def _param_key(self) -> tuple:
        """Changes whenever a parameter is replaced or modified in place."""
        return tuple((t.data_ptr(), t._version) for t in self.buffers())

    def _params(self):
        """Weights and biases as float tensors of the exact dtype, converted once."""
        key = (self.dtype, self._param_key())
        if self._cache.get("key") != key:
            dt = key[0]
            self._cache["key"] = key
            self._cache["p"] = [
                (getattr(self, f"w{s}").to(dt), getattr(self, f"b{s}").to(dt), 2.0 ** -int(self.shifts[s]))
                for s in range(STAGES)
            ]
        return self._cache["p"]

    def _fast_params(self):
        """Parameters of the fast path, or None where it would not be exact.

        The fast path computes ``u = -4 * (conv(x) + b) + pos`` for each of the four
        positions ``pos = row * 2 + column`` of a 2x2 window, in float32 and channels-last
        memory, and takes the minimum over the window: ``m = -4 * max + pos*``, where
        ``pos*`` is the first position (row-major) holding the maximum, because a smaller
        ``pos`` wins a tie. So ``pos* = m mod 4``, ReLU is ``m >= 0`` (code 0, value 0),
        and the next stage's input is ``floor((3 - m) / 2^(shift + 2))`` clamped to
        [0, ACT_MAX]. Every number is an integer below 2^24 (checked here from the actual
        weights), so float32 is exact and the switches equal the reference path's.
        """
        key = self._param_key()
        if self._cache.get("fast_key") == key:
            return self._cache["fast"]
        params = []
        for s in range(STAGES):
            w = getattr(self, f"w{s}").to(torch.float64)
            b = getattr(self, f"b{s}").to(torch.float64)
            xmax = 128.0 if s == 0 else float(ACT_MAX)
            bound = float((w.abs().flatten(1).sum(1) * xmax + b.abs()).max())
            if 4 * bound + 4 >= 2**24 or self.pool != "max":
                params = None
                break
            # codes read from the float's bits when |m| <= 2^22 (see forward), else by floor
            bits = 4 * bound + 4 <= 2**22
            C = w.shape[0]
            wf = (-4.0 * w).to(torch.float32).contiguous(memory_format=torch.channels_last)
            bf = (-4.0 * b).to(torch.float32)
            # pattern over a (2, 1, 2*C) view of each window row pair: pos = row * 2 + column
            pat = torch.tensor([[0.0] * C + [1.0] * C, [2.0] * C + [3.0] * C]).view(1, 1, 2, 1, 2 * C)
            k = 2.0 ** -(int(self.shifts[s]) + 2)
            params.append((wf, bf, pat, k, bits))
        self._cache["fast_key"] = key
        self._cache["fast"] = params
        return params

    @torch.inference_mode()
    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Compute the switches of every stage.

        Args:
            img: uint8 (B, 3, H, W), H and W multiples of 8 (any memory layout; the
                channels-last view of an (H, W, 3) array is the fastest).

        Returns:
            Three uint8 tensors (B, C_s, H/2^s, W/2^s) of codes in 0..3
            (for ``pool="avg"`` they are all zero: average pooling has no switches).
        """
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W), got {tuple(img.shape)}")
        if img.shape[2] % 8 or img.shape[3] % 8:
            raise ValueError(f"H and W must be multiples of 8, got {tuple(img.shape[2:])}")
        if img.dtype != torch.uint8:
            raise ValueError(f"encoder input must be uint8, got {img.dtype}")
        fast = self._fast_params() if self.dtype == torch.float32 else None
        if fast is None:
            return self.forward_reference(img)
        B, _, H, W = img.shape
        x = torch.empty((B, 3, H, W), dtype=torch.float32, memory_format=torch.channels_last)
        torch.sub(img, 128.0, out=x)
        codes = []
        low = 0 if sys.byteorder == "little" else 3  # the float32's least significant byte
        for wf, bf, pat, k, bits in fast:
            u = F.conv2d(x, wf, bf, padding=1)  # (B, C, h, w) channels-last: -4 * (conv + b)
            B, C, h, w = u.shape
            u = u.permute(0, 2, 3, 1)  # (B, h, w, C), contiguous
            if not u.is_contiguous():
                u = u.contiguous()
            v = u.view(B, h // 2, 2, w // 2, 2 * C).add_(pat)
            m = torch.minimum(v[:, :, 0, :, :C], v[:, :, 0, :, C:])
            torch.minimum(m, torch.minimum(v[:, :, 1, :, :C], v[:, :, 1, :, C:]), out=m)
            # (B, h/2, w/2, C): m = -4 * max + first position of the max
            mc = m.clamp(max=0.0)  # ReLU: every value <= 0 ties at 0 -> code 0
            if bits:  # 1.5 * 2^23 + mc lies in [2^23, 2^24): its mantissa's low 2 bits are mc mod 4
                mc.add_(12582912.0)
                code = torch.empty((B, C, h // 2, w // 2), dtype=torch.uint8)
                torch.bitwise_and(mc.view(torch.uint8)[..., low::4].permute(0, 3, 1, 2), 3, out=code)
            else:
                mc.add_(mc.mul(0.25).floor_(), alpha=-4.0)  # m mod 4
                code = mc.permute(0, 3, 1, 2).to(torch.uint8, memory_format=torch.contiguous_format)
            codes.append(code)
            x = torch.rsub(m, 3.0 * k, alpha=k).floor_().clamp_(0.0, float(ACT_MAX)).permute(0, 3, 1, 2)
        return codes

    @torch.inference_mode()
    def forward_reference(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The plain formulation (conv, ReLU, max-pool with indices); ``forward`` equals it."""
        x = self._to_input(img)
        codes = []
        for w, b, scale in self._params():
            y = F.conv2d(x, w, b, padding=1).clamp_(min=0)  # (B, C, h, w), exact integers
            pooled, idx = F.max_pool2d(y, 2, return_indices=True)  # (B, C, h/2, w/2)
            width = y.shape[-1]
            # flat index -> (row parity, column parity); W is even so idx % 2 is the column
            code = ((idx // width) & 1) * 2 + (idx & 1)
            codes.append(code.to(torch.uint8) if self.pool == "max" else torch.zeros_like(code, dtype=torch.uint8))
            x = pooled.mul_(scale).floor_().clamp_(max=ACT_MAX)
        return codes

    def digest(self) -> str:
        """SHA-256 (hex) of the encoder's integer parameters in a canonical byte order."""
        from .encoder import SwitchEncoder

        return SwitchEncoder.from_torch(self).digest()


# ----------------------------------------------------------------------------- decoders


def one_hot_codes(codes: torch.Tensor) -> torch.Tensor:
    """Turn codes (B, C, h, w) uint8 into one-hot float maps (B, 4C, h, w)."""
    B, C, h, w = codes.shape
    levels = torch.arange(4, dtype=codes.dtype, device=codes.device).view(1, 1, 4, 1, 1)
    return (codes.unsqueeze(2) == levels).to(torch.float32).view(B, 4 * C, h, w)


def codes_to_indices(codes: torch.Tensor) -> torch.Tensor:
    """Turn codes (B, C, h, w) into max_unpool2d flat indices into a (2h, 2w) plane."""
    B, C, h, w = codes.shape
    c = codes.long()
    rows = torch.arange(h, device=codes.device).view(1, 1, h, 1) * 2 + (c >> 1)
    cols = torch.arange(w, device=codes.device).view(1, 1, 1, w) * 2 + (c & 1)
    return rows * (2 * w) + cols


def _conv(cin, cout, k=3):
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class DirectRunner:
    """Inference form of ``DirectDecoder``: switches -> RGB in 0..255, channels-last (tiling.py
    decodes with it; ``DirectDecoder.forward`` is the plain form, and tests/test_tiling.py
    checks that both agree).

    ``region`` decodes the pixel rectangle [y0, y1) x [x0, x1) (multiples of 8) with the least
    context each level needs: level 1 (two 3x3 convolutions at 1/2 scale) reads 2 cells
    around its output, level 2 computes 2 cells beyond what level 1 reads and reads 2 more,
    level 3 likewise at 1/8 scale, i.e. 32 pixels of stage-3 context, 16 of stage-2 and 4 of
    stage-1. Zero padding at a level's region edge spoils only the 2 cells that are cropped
    away, so a region equals the same rectangle of a whole-image decode.
    """

    # cells beyond the output rectangle that each level (3, 2, 1) must produce
    OUT_CELLS = (2, 2, 0)

    def __init__(self, dec):
        self.levels = []
        seqs = (dec.l3, dec.l2, dec.l1)
        for i, seq in enumerate(seqs):
            a, b, c = seq[0], seq[2], seq[4]
            n = c.out_channels // 4
            # the pixel shuffle reads channel k * 4 + di * 2 + dj; put (di, dj, k) order instead
            order = torch.arange(c.out_channels).view(n, 4).t().reshape(-1)
            wc = c.weight.detach().flatten(1)[order].float()
            bc = c.bias.detach()[order].float()
            if i == len(seqs) - 1:  # the RGB output: fold (x + 0.5) * 255
                wc, bc = wc * 255.0, (bc + 0.5) * 255.0
            self.levels.append(
                (
                    a.weight.detach().float().contiguous(memory_format=torch.channels_last),
                    a.bias.detach().float(),
                    b.weight.detach().float().contiguous(memory_format=torch.channels_last),
                    b.bias.detach().float(),
                    wc.t().contiguous(),
                    bc,
                    n,
                )
            )
        self.levels4 = torch.arange(4, dtype=torch.uint8)

    def region(self, codes: list[torch.Tensor], y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """codes: 3 uint8 tensors (B, C_s, H/2^s, W/2^s) of the whole image (a 4th, uint8
        (B, 3, H/8, W/8), is the what picture of a ``WhatDecoder``: level 3's extra input; a
        5th, uint8 (B, 3, H/F, W/F), that of a ``WhatFineDecoder``: level 1's, ``half_picture``).

        Returns float (B, (y1-y0)/2, (x1-x0)/2, 2, 2, 3): the RGB values (0..255 before
        clamping) of the rectangle, pixel (2i+di, 2j+dj) at [:, i, j, di, dj].
        """
        H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
        x = prev = None
        for lvl, ((wa, ba, wb, bb, wc, bc, n), cod) in enumerate(zip(self.levels, (codes[2], codes[1], codes[0]))):
            f = 8 >> lvl
            ko = self.OUT_CELLS[lvl]
            nh, nw = H // f, W // f
            oy0, oy1 = max(0, y0 // f - ko), min(nh, y1 // f + ko)
            ox0, ox1 = max(0, x0 // f - ko), min(nw, x1 // f + ko)
            iy0, iy1 = max(0, oy0 - 2), min(nh, oy1 + 2)
            ix0, ix1 = max(0, ox0 - 2), min(nw, ox1 + 2)
            B, C = cod.shape[:2]
            ih, iw = iy1 - iy0, ix1 - ix0
            cx = 0 if x is None else x.shape[-1] // 4
            extra = _extra_input(codes, lvl, iy0, iy1, ix0, ix1)
            ce = 0 if extra is None else extra.shape[1]
            buf = torch.empty((B, ih, iw, cx + 4 * C + ce))
            if extra is not None:
                buf[..., cx + 4 * C :].copy_(extra.permute(0, 2, 3, 1)).div_(255.0).sub_(0.5)
            if x is not None:  # pixel shuffle of the coarser level's output, cropped, into the buffer
                py0, px0 = prev  # origin of the coarser level's output, in its own cells
                ay, ax = (iy0 - 2 * py0) // 2, (ix0 - 2 * px0) // 2
                src = x[:, ay : ay + ih // 2, ax : ax + iw // 2]
                buf.view(B, ih // 2, 2, iw // 2, 2, cx + 4 * C + ce)[..., :cx].copy_(
                    src.view(B, ih // 2, iw // 2, 2, 2, cx).permute(0, 1, 3, 2, 4, 5)
                )
            oh = buf[..., cx : cx + 4 * C].unflatten(-1, (C, 4))
            torch.eq(cod[:, :, iy0:iy1, ix0:ix1].permute(0, 2, 3, 1).contiguous().unsqueeze(-1), self.levels4, out=oh)
            y = F.conv2d(buf.permute(0, 3, 1, 2), wa, ba, padding=1).relu_()
            y = F.conv2d(y, wb, bb, padding=1).relu_()
            y = y.permute(0, 2, 3, 1)
            if not y.is_contiguous():
                y = y.contiguous()
            # the 1x1 convolution on the whole region (its 2-cell rim is cheap; cropping first
            # would copy); the next level or the caller reads the output cells only
            x = torch.addmm(bc, y.view(-1, y.shape[-1]), wc).view(B, ih, iw, 4 * n)
            prev = (iy0, ix0)
        x = x[:, oy0 - iy0 : oy1 - iy0, ox0 - ix0 : ox1 - ix0]
        B, h, w, _ = x.shape
        return x.unflatten(-1, (2, 2, 3))


def _extra_input(codes: list[torch.Tensor], lvl: int, iy0: int, iy1: int, ix0: int, ix1: int) -> torch.Tensor | None:
    """The what picture a level of ``DirectRunner.region`` reads beside its switches, uint8
    (B, 3, iy1 - iy0, ix1 - ix0) on its input cells, or None: level 3 (``lvl`` 0) the 4th map,
    level 1 (``lvl`` 2) the 5th at F, as ``half_picture`` (each block over its F/2 cells)."""
    if lvl == 0 and len(codes) > 3:
        return codes[3][:, :, iy0:iy1, ix0:ix1]
    if lvl != 2 or len(codes) < 5:
        return None
    pic = codes[4]
    k = codes[0].shape[-2] // pic.shape[-2]  # level-1 cells per block side: F / 2
    by0, bx0 = iy0 // k, ix0 // k
    part = half_picture(pic[:, :, by0 : -(-iy1 // k), bx0 : -(-ix1 // k)], 2 * k)
    return part[:, :, iy0 - by0 * k : iy1 - by0 * k, ix0 - bx0 * k : ix1 - bx0 * k]


class DirectDecoder(nn.Module):
    """Decoder that reads each stage's switches directly at that stage's scale.

    Level 3 (H/8): one-hot stage-3 switches -> 2 convs -> pixel-shuffle up.
    Level 2 (H/4): [features, one-hot stage-2 switches] -> 2 convs -> up.
    Level 1 (H/2): [features, one-hot stage-1 switches] -> 2 convs -> 12 maps -> pixel
    shuffle -> RGB (B, 3, H, W). The output is a residual around grey 0.5.
    """

    def __init__(self, channels, widths):
        super().__init__()
        c1, c2, c3 = channels
        w3, w2, w1 = widths
        act = nn.ReLU(inplace=True)
        self.l3 = nn.Sequential(_conv(4 * c3, w3), act, _conv(w3, w3), act, _conv(w3, 4 * w2, 1))
        self.l2 = nn.Sequential(_conv(w2 + 4 * c2, w2), act, _conv(w2, w2), act, _conv(w2, 4 * w1, 1))
        self.l1 = nn.Sequential(_conv(w1 + 4 * c1, w1), act, _conv(w1, w1), act, _conv(w1, 12, 1))
        self._fast = None

    TILE_MARGIN = 32  # pixels of context a tile needs to equal the whole-image decode (tiling.py)

    def inference(self) -> DirectRunner:
        """The fast inference form of the current weights (rebuilt after any change to them:
        the key holds every parameter's version counter, which in-place writes such as
        ``optimizer.step`` and ``load_state_dict`` advance)."""
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._fast is None or self._fast[0] != key:
            self._fast = (key, DirectRunner(self))
        return self._fast[1]

    def forward(self, codes: list[torch.Tensor]) -> torch.Tensor:
        s1, s2, s3 = (one_hot_codes(c) for c in codes)
        x = F.pixel_shuffle(self.l3(s3), 2)  # (B, w2, H/4, W/4)
        x = F.pixel_shuffle(self.l2(torch.cat([x, s2], 1)), 2)  # (B, w1, H/2, W/2)
        x = F.pixel_shuffle(self.l1(torch.cat([x, s1], 1)), 2)  # (B, 3, H, W)
        return x + 0.5


def fuse(base: torch.Tensor, what: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """Replace the low frequencies of ``base`` by those of the what picture.

    base: float (B, 3, H, W); what: float (B, 3, H/F, W/F) on the same scale. Returns
    ``base - up(avg_F(base)) + up(what)``, up = bilinear (half-pixel centres, edges clamped):
    the switches' detail on the what part's level and colour.
    """
    up = lambda t: F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)  # noqa: E731
    return base - up(F.avg_pool2d(base, factor)) + up(what)


def what_maps(codes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(level 3's picture (B, 3, H/8, W/8), the fusion's picture (B, 3, H/F, W/F), F) from the
    what maps after the 3 switch maps: one map, the file's picture (its block size F read from
    its shape against the stage-1 switches'), or two, the level-3 picture and the file's."""
    H = codes[0].shape[-2] * 2
    pic = codes[-1]
    f = H // pic.shape[-2] if pic.shape[-2] else 8
    if len(codes) > 4:
        return codes[3], pic, f
    if f == 8:
        return pic, pic, 8
    k = 8 // f
    s = F.avg_pool2d(pic.float(), k, divisor_override=1)
    n = k * k
    return torch.div(s + n // 2, n, rounding_mode="floor").to(torch.uint8), pic, f


class WhatDecoder(DirectDecoder):
    """A direct decoder that also reads the file's what part (``maxswitch.bitstream.what``).

    The what picture, uint8 means of F x F blocks (B, 3, H/F, W/F), F = 2, 4 or 8, enters level
    3 as its 8x8 means (``what_maps``) beside the stage-3 switches (as ``what / 255 - 0.5``), and
    ``fuse`` puts its low frequencies, at F, into the output:
    the switches carry the detail, the what part the level and colour. Initialised from a
    switch-only ``DirectDecoder`` (``from_direct``) it starts as that decoder fused with the
    what picture.
    """

    TILE_MARGIN = 40  # the direct decoder's 32 and one 8-pixel block for the fusion

    def __init__(self, channels, widths):
        super().__init__(channels, widths)
        c3, w3 = channels[2], widths[0]
        self.l3[0] = _conv(4 * c3 + 3, w3)

    @classmethod
    def from_direct(cls, direct: DirectDecoder, channels, widths) -> "WhatDecoder":
        """A what decoder with ``direct``'s weights (same channels and widths); the what
        input's weights start at zero."""
        dec = cls(channels, widths)
        state = {k: v.detach().clone() for k, v in direct.state_dict().items()}
        w = torch.zeros_like(dec.l3[0].weight)
        w[:, : 4 * channels[2]] = state["l3.0.weight"]
        state["l3.0.weight"] = w
        dec.load_state_dict(state)
        return dec

    def inference(self) -> "WhatRunner":
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._fast is None or self._fast[0] != key:
            self._fast = (key, WhatRunner(DirectRunner(self), fine=isinstance(self, WhatFineDecoder)))
        return self._fast[1]

    def forward(self, codes: list[torch.Tensor], what: torch.Tensor | None = None) -> torch.Tensor:
        """codes: 3 uint8 maps (B, C_s, H/2^s, W/2^s); what: the file's what picture, uint8
        (B, 3, H/F, W/F) with F = 2, 4 or 8 (or the maps after the switches in ``codes``, as
        ``what_maps`` reads them). Level 3 reads its 8x8 means; the fusion uses it at F.
        Returns float RGB (B, 3, H, W) around 0..1."""
        if what is not None:
            codes = [*codes[:3], what]
        w8, wf, f = what_maps(codes)
        s1, s2, s3 = (one_hot_codes(c) for c in codes[:3])
        x = F.pixel_shuffle(self.l3(torch.cat([s3, w8.float() / 255.0 - 0.5], 1)), 2)
        x = F.pixel_shuffle(self.l2(torch.cat([x, s2], 1)), 2)
        x = F.pixel_shuffle(self.l1(torch.cat([x, s1, *self._level1_what(wf, f)], 1)), 2)
        return fuse(x + 0.5, wf.float() / 255.0, f)

    def _level1_what(self, wf: torch.Tensor, f: int) -> list[torch.Tensor]:
        """What level 1 reads of the what picture beside its switches: nothing here."""
        return []


def half_picture(pic: torch.Tensor, f: int) -> torch.Tensor:
    """The what picture of F x F blocks (B, 3, H/F, W/F) at level 1's scale (B, 3, H/2, W/2):
    each block's mean repeated over its F/2 x F/2 cells (the picture itself for F = 2)."""
    k = f // 2
    return pic if k == 1 else pic.repeat_interleave(k, -2).repeat_interleave(k, -1)


class WhatFineDecoder(WhatDecoder):
    """A what decoder whose level 1 (H/2) also reads the what picture, at that scale
    (``half_picture``, as ``what / 255 - 0.5``, after the stage-1 switches).

    ``WhatDecoder`` sees the what part only as 8x8 means at level 3 and, at F, in the fusion after
    its last layer; with 2x2 blocks the fusion fixes each block's mean but the network cannot use
    the blocks to place an edge inside them. Here level 1 reads them beside the stage-1 switches.
    Initialised from a ``WhatDecoder`` (``from_what``) it starts as that decoder.
    """

    def __init__(self, channels, widths):
        super().__init__(channels, widths)
        c1, w1 = channels[0], widths[2]
        self.l1[0] = _conv(w1 + 4 * c1 + 3, w1)

    @classmethod
    def from_what(cls, what: WhatDecoder, channels, widths) -> "WhatFineDecoder":
        """A fine what decoder with ``what``'s weights; level 1's what input starts at zero."""
        dec = cls(channels, widths)
        state = {k: v.detach().clone() for k, v in what.state_dict().items()}
        w = torch.zeros_like(dec.l1[0].weight)
        w[:, : state["l1.0.weight"].shape[1]] = state["l1.0.weight"]
        state["l1.0.weight"] = w
        dec.load_state_dict(state)
        return dec

    def _level1_what(self, wf: torch.Tensor, f: int) -> list[torch.Tensor]:
        """Level 1 reads the what picture at its own scale (``half_picture``)."""
        return [half_picture(wf, f).float() / 255.0 - 0.5]


class WhatRunner:
    """Inference form of ``WhatDecoder``: its ``DirectRunner`` over the rectangle and one
    8-pixel block around it, then ``fuse`` on that, cropped. ``region`` has the runner's
    interface; ``codes`` holds the what maps after the switches (``what_maps``)."""

    GROW = 8  # pixels around the rectangle: at least one block of the fusion, a multiple of 8

    def __init__(self, direct: DirectRunner, fine: bool = False):
        self.direct, self.fine = direct, fine  # fine: a WhatFineDecoder's (level 1 reads it too)

    def region(self, codes: list[torch.Tensor], y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        g = self.GROW
        w8, wf, f = what_maps(codes)
        H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
        ey0, ey1, ex0, ex1 = max(0, y0 - g), min(H, y1 + g), max(0, x0 - g), min(W, x1 + g)
        maps = [*codes[:3], w8, wf] if self.fine else [*codes[:3], w8]
        x = self.direct.region(maps, ey0, ey1, ex0, ex1)  # (B, h/2, w/2, 2, 2, 3), 0..255
        B, hh, ww = x.shape[:3]
        img = x.permute(0, 5, 1, 3, 2, 4).reshape(B, 3, 2 * hh, 2 * ww)
        what = wf[:, :, ey0 // f : ey1 // f, ex0 // f : ex1 // f].float()
        out = fuse(img, what, f)[:, :, y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
        return out.reshape(B, 3, (y1 - y0) // 2, 2, (x1 - x0) // 2, 2).permute(0, 2, 4, 3, 5, 1)


class MirrorDecoder(nn.Module):
    """The paper's decoder: a learned constant, then (unpool with stage-s switches, convs).

    With a 0-float embedding the first map is a learned constant per channel, so all image
    information arrives through the unpooling positions.
    """

    TILE_MARGIN = 32  # it reads 16 pixels of context (tiling.py); 32 keeps one margin for all kinds

    def __init__(self, channels, widths):
        super().__init__()
        c1, c2, c3 = channels
        w3, w2, w1 = widths
        act = nn.ReLU(inplace=True)
        self.const = nn.Parameter(torch.ones(1, c3, 1, 1))
        self.b3 = nn.Sequential(_conv(c3, w3), act, _conv(w3, c2), act)  # at H/4
        self.b2 = nn.Sequential(_conv(c2, w2), act, _conv(w2, c1), act)  # at H/2
        self.b1 = nn.Sequential(_conv(c1, w1), act, _conv(w1, 3))  # at H

    def forward(self, codes: list[torch.Tensor]) -> torch.Tensor:
        s1, s2, s3 = codes
        B, _, h3, w3 = s3.shape
        x = self.const.expand(B, -1, h3, w3)
        for switches, block in ((s3, self.b3), (s2, self.b2), (s1, self.b1)):
            h, w = switches.shape[-2:]
            x = F.max_unpool2d(x.contiguous(), codes_to_indices(switches), 2, output_size=(2 * h, 2 * w))
            x = block(x)
        return x + 0.5


# the decoder classes by kind: ModelConfig.decoder names one (config.DECODER_KINDS lists them
# without importing torch, for the CLI); a new kind adds its class here and its name there
DECODERS: dict[str, type[nn.Module]] = {
    "direct": DirectDecoder,
    "mirror": MirrorDecoder,
    "what": WhatDecoder,
    "what-fine": WhatFineDecoder,
}
assert set(DECODERS) == set(DECODER_KINDS)


def build_decoder(cfg: ModelConfig) -> nn.Module:
    """Build the (untrained) decoder that ``cfg`` describes."""
    cls = DECODERS[cfg.decoder]
    return cls(cfg.channels, cfg.widths)


def decoder_macs_per_pixel(cfg: ModelConfig) -> float:
    """Multiply-adds per image pixel of the decoder's convolutions (counted on a probe)."""
    dec = build_decoder(cfg)
    H = W = 64
    macs = []

    def hook(m, inp, out):
        macs.append(out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] / m.groups)

    hs = [m.register_forward_hook(hook) for m in dec.modules() if isinstance(m, nn.Conv2d)]
    codes = [torch.zeros(1, c, H >> (s + 1), W >> (s + 1), dtype=torch.uint8) for s, c in enumerate(cfg.channels)]
    with torch.no_grad():
        dec(codes)
    for h in hs:
        h.remove()
    return sum(macs) / (H * W)


def encoder_macs_per_pixel(channels) -> float:
    """Multiply-adds per image pixel of the encoder's three convolutions."""
    cins = (3,) + tuple(channels)[:-1]
    return sum(9 * cin * cout / 4**s for s, (cin, cout) in enumerate(zip(cins, channels)))
