"""Rate and distortion measures: pure numpy functions, no torch, no files.

Images are arrays (H, W) or (H, W, C) of the same shape, uint8 or float, with values in
[0, ``data_range``] (255 for uint8). Every function returns a Python float.

Conventions, chosen so that figures compare with published ones:

* ``psnr`` is over all samples of all channels (RGB PSNR), ``10 log10(range^2 / MSE)``,
  and ``inf`` for identical images. A data set's PSNR is the mean of the per-image PSNRs,
  as CompressAI reports it (not the PSNR of the mean MSE).
* ``rmse`` is in [0, 1] (pixel values divided by ``data_range``), as the paper's Table II.
* ``ssim`` and ``ms_ssim`` follow Wang et al. (2004, 2003) exactly as ``pytorch_msssim``
  computes them (and so CompressAI): an 11-tap Gaussian window, sigma 1.5, K = (0.01, 0.03),
  valid filtering (no padding), each channel separately, then the mean over channels.
  MS-SSIM uses 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average
  pooling between scales (an odd side gets one zero-valued row or column in front, as
  ``avg_pool2d(padding=1)`` does), contrast terms clipped at 0, and needs a shorter side
  over 160 pixels.

Why numpy and not ``pytorch_msssim`` itself (measured, docs/PERFORMANCE.md, "SSIM and MS-SSIM";
``benchmarks/ssim_speed.py``): on a Kodak-sized image at 1 thread, ``distortion`` (SSIM and MS-SSIM
in one pass) takes as long as pytorch_msssim's ``ssim`` plus ``ms_ssim`` (~140 ms); pytorch_msssim
is ~30 % faster for one measure alone only in float32, which moves the values by up to 1.6e-6,
and is 6-9x slower in float64; and ``compare`` would pay torch's 1.6 s import for it. The tests
check these functions against pytorch_msssim.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIDE = (WIN_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # 161


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check two images and return them as float64 (C, H, W)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} and {y.shape}")
    if x.ndim not in (2, 3) or 0 in x.shape:
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {x.shape}")
    x, y = x.astype(np.float64), y.astype(np.float64)
    if x.ndim == 2:
        return x[None], y[None]
    return np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)


def mse(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over all samples, in the images' own units (e.g. 0..255^2)."""
    a, b = _pair(x, y)
    return float(np.mean(np.square(a - b)))


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all samples; ``inf`` for identical images."""
    m = mse(x, y)
    if m == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / m)


def rmse(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Root mean squared error of values scaled to [0, 1] (the paper's Table II measure)."""
    return math.sqrt(mse(x, y)) / data_range


def bpp(n_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``n_bytes`` for a ``width`` x ``height`` image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return 8.0 * n_bytes / (width * height)


def psnr_from_rmse(r: float) -> float:
    """PSNR in dB of an RMSE in [0, 1] (how the paper's Table II converts to dB)."""
    return math.inf if r == 0 else -20.0 * math.log10(r)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - value)``, as RD plots usually show it."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)


def _gaussian() -> np.ndarray:
    c = np.arange(WIN_SIZE, dtype=np.float64) - WIN_SIZE // 2
    g = np.exp(-(c**2) / (2 * WIN_SIGMA**2))
    return g / g.sum()


_G = _gaussian()


def _blur(a: np.ndarray) -> np.ndarray:
    """Valid separable Gaussian filtering of the last two axes of (..., H, W).

    An axis shorter than the window is left unfiltered (as pytorch_msssim does).
    """
    if a.shape[-1] >= WIN_SIZE:
        a = sliding_window_view(a, WIN_SIZE, axis=-1) @ _G  # (..., H, W-10): windows are the last axis
    if a.shape[-2] >= WIN_SIZE:
        a = sliding_window_view(a, WIN_SIZE, axis=-2) @ _G  # (..., H-10, W-10)
    return a


def _ssim_cs(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and contrast-structure means per channel of float64 (C, H, W); each (C,)."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s, cs = np.empty(len(x)), np.empty(len(x))
    for i, (a, b) in enumerate(zip(x, y)):  # one channel at a time keeps memory at 4 maps
        # cs needs only var_a + var_b and cov: blur x^2 + y^2 as one map, not two
        mu_a, mu_b, sq, ab = _blur(np.stack([a, b, a * a + b * b, a * b]))
        mu_ab, mu_sq = mu_a * mu_b, mu_a * mu_a + mu_b * mu_b
        cs_map = (2 * (ab - mu_ab) + c2) / (sq - mu_sq + c2)
        lum = (2 * mu_ab + c1) / (mu_sq + c1)
        s[i], cs[i] = np.mean(lum * cs_map), np.mean(cs_map)
    return s, cs


def _pool(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (C, H, W) with pytorch_msssim's zero padding of odd sides.

    ``avg_pool2d(padding=1)`` on an odd side adds a zero row (column) at both ends and counts
    it in the average; only the leading one falls inside a pooling window.
    """
    c, h, w = x.shape
    if h % 2 or w % 2:
        x = np.pad(x, ((0, 0), (h % 2, 0), (w % 2, 0)))
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity (Gaussian window), mean over channels; 1.0 for identical images.

    Raises:
        ValueError: shapes differ or a side is shorter than the 11-pixel window.
    """
    a, b = _pair(x, y)
    if min(a.shape[1:]) < WIN_SIZE:
        raise ValueError(f"SSIM needs both sides >= {WIN_SIZE} pixels, got {a.shape[2]}x{a.shape[1]}")
    return float(np.mean(_ssim_cs(a, b, data_range)[0]))


def ms_ssim_applies(height: int, width: int) -> bool:
    """Whether MS-SSIM is defined for an image of this size (shorter side over 160)."""
    return min(height, width) >= MS_SSIM_MIN_SIDE


def _ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[float, float]:
    """(SSIM, MS-SSIM) of float64 (C, H, W) pairs large enough for MS-SSIM."""
    factors = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        s, cs = _ssim_cs(a, b, data_range)
        if level == 0:
            first = float(np.mean(s))
        if level < len(MS_SSIM_WEIGHTS) - 1:
            factors.append(np.maximum(cs, 0.0))
            a, b = _pool(a), _pool(b)
    factors.append(np.maximum(s, 0.0))
    per_channel = np.prod([f**w for f, w in zip(factors, MS_SSIM_WEIGHTS)], axis=0)  # (C,)
    return first, float(np.mean(per_channel))


def ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Multi-scale SSIM (5 scales), mean over channels; 1.0 for identical images.

    Raises:
        ValueError: shapes differ or the shorter side is 160 pixels or less.
    """
    a, b = _pair(x, y)
    if not ms_ssim_applies(*a.shape[1:]):
        raise ValueError(f"MS-SSIM needs both sides >= {MS_SSIM_MIN_SIDE} pixels, got {a.shape[2]}x{a.shape[1]}")
    return _ms_ssim(a, b, data_range)[1]


def distortion(x: np.ndarray, x_hat: np.ndarray, data_range: float = 255.0) -> dict:
    """All distortion measures of a reconstruction in one pass (SSIM shares MS-SSIM's first scale).

    Args:
        x: the original (H, W, C) or (H, W).
        x_hat: the reconstruction, same shape.

    Returns:
        ``{"psnr", "rmse", "ssim", "ms_ssim", "block_psnr"}``; ``ssim``, ``ms_ssim`` or
        ``block_psnr`` (16 x 16 block means) is None where the image is too small for it.
    """
    a, b = _pair(x, x_hat)
    m = float(np.mean(np.square(a - b)))
    out = {
        "psnr": math.inf if m == 0 else 10.0 * math.log10(data_range * data_range / m),
        "rmse": math.sqrt(m) / data_range,
        "ssim": None,
        "ms_ssim": None,
        "block_psnr": block_psnr(x, x_hat, data_range=data_range),
    }
    h, w = a.shape[1:]
    if m == 0:  # identical: every window's luminance and contrast terms are exactly 1
        out["ssim"] = 1.0 if min(h, w) >= WIN_SIZE else None
        out["ms_ssim"] = 1.0 if ms_ssim_applies(h, w) else None
    elif ms_ssim_applies(h, w):
        out["ssim"], out["ms_ssim"] = _ms_ssim(a, b, data_range)
    elif min(h, w) >= WIN_SIZE:
        out["ssim"] = float(np.mean(_ssim_cs(a, b, data_range)[0]))
    return out


BLOCK = 16  # block side of ``block_psnr``


def block_psnr(x: np.ndarray, x_hat: np.ndarray, block: int = BLOCK, data_range: float = 255.0) -> float | None:
    """PSNR of the images' ``block`` x ``block`` means: a low-pass fidelity measure (level and
    colour, not detail). Partial blocks at the right and bottom edges are left out; None if the
    image holds no whole block."""
    a, b = _pair(x, x_hat)
    C, H, W = a.shape
    h, w = H // block, W // block
    if h == 0 or w == 0:
        return None

    def means(t):
        return t[:, : h * block, : w * block].reshape(C, h, block, w, block).mean(axis=(2, 4))

    m = float(np.mean(np.square(means(a) - means(b))))
    return math.inf if m == 0 else 10.0 * math.log10(data_range * data_range / m)


def mean(values) -> float | None:
    """Mean of the values that are not None (None if there are none); ``inf`` propagates."""
    v = [float(x) for x in values if x is not None]
    return math.fsum(v) / len(v) if v else None
