"""Metrics against known cases and independent implementations (pytorch_msssim, closed forms).

Reference values here never come from maxswitch.evaluation.metrics itself: identical images, a known
constant offset (exact MSE), constant images (SSIM has a closed form), a JPEG made by Pillow,
and pytorch_msssim, the implementation CompressAI reports with.
"""

import io
import math

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image
from pytorch_msssim import ms_ssim as ref_ms_ssim
from pytorch_msssim import ssim as ref_ssim

from maxswitch.evaluation import metrics

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _t(a):
    """(H, W, C) or (H, W) uint8 -> (1, C, H, W) float64 tensor for pytorch_msssim."""
    a = np.asarray(a, dtype=np.float64)
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(a).permute(2, 0, 1)[None]


def _win(channels: int):
    """pytorch_msssim's Gaussian window in float64 (its own is float32, which moves SSIM by ~1e-6)."""
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    return (g / g.sum()).view(1, 1, 1, 11).repeat(channels, 1, 1, 1)


def _ref(fn, x, y, exact=True):
    """pytorch_msssim's ssim or ms_ssim of two uint8 images (data range 255)."""
    a, b = _t(x), _t(y)
    return fn(a, b, data_range=255, win=_win(a.shape[1]) if exact else None).item()


def _ref_psnr(x, y):
    """PSNR the way CompressAI's eval_model computes it: -10 log10(MSE) on [0, 1] tensors."""
    mse = torch.nn.functional.mse_loss(_t(x) / 255, _t(y) / 255).item()
    return -10 * math.log10(mse)


def _jpeg(im: Image.Image, q: int) -> np.ndarray:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def _noisy(shape, seed=0, spread=30):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-spread, spread + 1, shape), 0, 255).astype(np.uint8)
    return x, y


# ------------------------------------------------------------------ identical images


@pytest.mark.parametrize("shape", [(170, 200, 3), (40, 30, 3), (170, 180)])
def test_identical_images(shape):
    x = _noisy(shape)[0]
    assert metrics.psnr(x, x) == math.inf
    assert metrics.rmse(x, x) == 0.0
    assert metrics.ssim(x, x.copy()) == pytest.approx(1.0, abs=1e-12)
    d = metrics.distortion(x, x.copy())
    assert d["psnr"] == math.inf and d["rmse"] == 0.0 and d["ssim"] == 1.0
    if min(shape[:2]) >= 161:
        assert metrics.ms_ssim(x, x.copy()) == pytest.approx(1.0, abs=1e-12)
        assert d["ms_ssim"] == 1.0
    else:
        assert d["ms_ssim"] is None


# ------------------------------------------------------------------ a known constant offset


def test_constant_offset_psnr_and_rmse():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 246, (50, 70, 3), dtype=np.uint8)
    y = x + 10  # every sample off by exactly 10: MSE = 100
    assert metrics.mse(x, y) == 100.0
    assert metrics.psnr(x, y) == pytest.approx(28.130803608679106, abs=1e-12)  # 20 log10(255 / 10)
    assert metrics.psnr(y, x) == metrics.psnr(x, y)
    assert metrics.rmse(x, y) == pytest.approx(10 / 255, abs=1e-15)
    assert metrics.psnr_from_rmse(metrics.rmse(x, y)) == pytest.approx(metrics.psnr(x, y), abs=1e-9)


@pytest.mark.parametrize("a,d", [(100, 10), (30, 50), (200, 1)])
def test_constant_images_have_closed_form_ssim(a, d):
    # A flat image against a flat image offset by d: every window has zero variance, so the
    # contrast-structure term is (0 + C2) / (0 + C2) = 1 and SSIM is the luminance term alone.
    # MS-SSIM (even sides: pooling keeps the images flat) is that term to the last weight.
    x = np.full((192, 256, 3), a, np.uint8)
    y = np.full((192, 256, 3), a + d, np.uint8)
    lum = (2 * a * (a + d) + C1) / (a * a + (a + d) ** 2 + C1)
    assert metrics.ssim(x, y) == pytest.approx(lum, abs=1e-12)
    assert metrics.ms_ssim(x, y) == pytest.approx(lum**0.1333, abs=1e-12)
    assert metrics.psnr(x, y) == pytest.approx(20 * math.log10(255 / d), abs=1e-12)


# ------------------------------------------------------------------ pytorch_msssim on real cases


@pytest.mark.parametrize("shape", [(170, 200, 3), (321, 481, 3), (200, 170, 3), (176, 176)])
def test_ssim_and_ms_ssim_match_pytorch_msssim(shape):
    x, y = _noisy(shape, seed=shape[0])
    assert metrics.ssim(x, y) == pytest.approx(_ref(ref_ssim, x, y), abs=1e-10)
    assert metrics.ms_ssim(x, y) == pytest.approx(_ref(ref_ms_ssim, x, y), abs=1e-10)
    assert metrics.psnr(x, y) == pytest.approx(_ref_psnr(x, y), abs=1e-9)


@pytest.mark.parametrize("q", [10, 50, 90])
def test_known_jpeg_against_references(q):
    im = make_image(256, 192, seed=2)
    x = np.asarray(im)
    y = _jpeg(im, q)
    d = metrics.distortion(x, y)
    assert d["psnr"] == pytest.approx(_ref_psnr(x, y), abs=1e-9)
    assert d["rmse"] == pytest.approx(math.sqrt(np.mean((x / 255.0 - y / 255.0) ** 2)), abs=1e-12)
    assert d["ssim"] == pytest.approx(_ref(ref_ssim, x, y), abs=1e-10)
    assert d["ms_ssim"] == pytest.approx(_ref(ref_ms_ssim, x, y), abs=1e-10)
    # with its own float32 window, as CompressAI calls it: the same to about 1e-5
    assert d["ssim"] == pytest.approx(_ref(ref_ssim, x, y, exact=False), abs=2e-5)
    assert d["ms_ssim"] == pytest.approx(_ref(ref_ms_ssim, x, y, exact=False), abs=2e-5)
    # bands, not floats: a JPEG of this noisy synthetic image is lossy but recognisable
    assert 20 < d["psnr"] < 45 and 0.3 < d["ssim"] < 1 and 0.8 < d["ms_ssim"] < 1


def test_better_jpeg_scores_better():
    im = make_image(256, 192, seed=3)
    x = np.asarray(im)
    lo, hi = metrics.distortion(x, _jpeg(im, 20)), metrics.distortion(x, _jpeg(im, 90))
    for k in ("psnr", "ssim", "ms_ssim"):
        assert hi[k] > lo[k]
    assert hi["rmse"] < lo["rmse"]


def test_distortion_agrees_with_single_functions():
    x, y = _noisy((180, 190, 3), seed=9)
    d = metrics.distortion(x, y)
    assert d["psnr"] == metrics.psnr(x, y)
    assert d["rmse"] == metrics.rmse(x, y)
    assert d["ssim"] == pytest.approx(metrics.ssim(x, y), abs=1e-15)
    assert d["ms_ssim"] == pytest.approx(metrics.ms_ssim(x, y), abs=1e-15)


def test_data_range_scales():
    x, y = _noisy((170, 170, 3), seed=5)
    xf, yf = x / 255.0, y / 255.0
    assert metrics.psnr(xf, yf, data_range=1.0) == pytest.approx(metrics.psnr(x, y), abs=1e-9)
    assert metrics.rmse(xf, yf, data_range=1.0) == pytest.approx(metrics.rmse(x, y), abs=1e-12)
    assert metrics.ms_ssim(xf, yf, data_range=1.0) == pytest.approx(metrics.ms_ssim(x, y), abs=1e-9)


# ------------------------------------------------------------------ limits and helpers


def test_sizes_too_small_and_mismatched_shapes():
    x, y = _noisy((100, 300, 3))
    with pytest.raises(ValueError, match="MS-SSIM needs"):
        metrics.ms_ssim(x, y)
    assert metrics.ms_ssim_applies(161, 161) and not metrics.ms_ssim_applies(160, 500)
    assert metrics.distortion(x, y)["ms_ssim"] is None
    assert metrics.distortion(x, y)["ssim"] is not None
    tiny = _noisy((10, 40, 3))
    with pytest.raises(ValueError, match="SSIM needs"):
        metrics.ssim(*tiny)
    assert metrics.distortion(*tiny)["ssim"] is None
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(x, y[:, :-1])
    with pytest.raises(ValueError, match="expected an image"):
        metrics.psnr(np.zeros(5), np.zeros(5))


def test_bpp_and_means():
    assert metrics.bpp(1000, 100, 80) == 1.0
    assert metrics.bpp(3, 2, 3) == 4.0
    with pytest.raises(ValueError):
        metrics.bpp(10, 0, 5)
    assert metrics.mean([1.0, None, 3.0]) == 2.0
    assert metrics.mean([None]) is None
    assert metrics.mean([1.0, math.inf]) == math.inf
    assert metrics.psnr_from_rmse(0.1210) == pytest.approx(18.3443, abs=1e-4)  # paper's [16,16,16] row
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)


def test_block_psnr_sees_level_and_colour_not_detail():
    rng = np.random.default_rng(4)
    x = rng.integers(60, 200, (64, 48, 3)).astype(np.uint8)
    # detail that averages to zero in every 16 x 16 block: block PSNR infinite, PSNR finite
    d = np.tile(np.array([[6, -6], [-6, 6]]), (32, 24))[..., None]
    y = (x.astype(int) + d).astype(np.uint8)
    assert metrics.block_psnr(x, y) == float("inf") and metrics.psnr(x, y) < 35
    # a colour shift of 10 levels in one channel: 10 * log10(255^2 / (100 / 3))
    z = x.astype(int)
    z[..., 2] += 10
    assert abs(metrics.block_psnr(x, z.astype(np.uint8)) - 10 * np.log10(255**2 * 3 / 100)) < 1e-9
    assert metrics.block_psnr(x[:8, :8], x[:8, :8]) is None  # no whole block
    assert metrics.distortion(x, z.astype(np.uint8))["block_psnr"] == metrics.block_psnr(x, z.astype(np.uint8))
