"""Rate-distortion curves: the Bjontegaard delta rate (BD-rate) between two curves.

BD-rate is computed as in VCEG-M33 and as CompressAI and the video-coding literature do: fit
log(rate) as a cubic polynomial of PSNR for each curve, integrate both fits over the PSNR
interval the two curves share, and report ``exp(mean difference) - 1`` in percent. Negative
means the test curve needs fewer bits than the reference for the same PSNR. Curves with fewer
than four points are fitted with a polynomial of degree (points - 1).
"""

from __future__ import annotations

import math

import numpy as np


def bd_rate(ref_rate, ref_psnr, test_rate, test_psnr) -> float | None:
    """BD-rate of the test curve against the reference, in percent, or None when the two
    curves share no PSNR interval or a curve has fewer than two points.

    Args:
        ref_rate, test_rate: bits per pixel (any positive rate unit, the same for both).
        ref_psnr, test_psnr: PSNR in dB, one per rate.
    """
    r1, p1 = _clean(ref_rate, ref_psnr)
    r2, p2 = _clean(test_rate, test_psnr)
    if len(p1) < 2 or len(p2) < 2:
        return None
    lo, hi = max(p1.min(), p2.min()), min(p1.max(), p2.max())
    if not hi > lo:
        return None
    f1 = np.polyfit(p1, np.log(r1), min(3, len(p1) - 1))
    f2 = np.polyfit(p2, np.log(r2), min(3, len(p2) - 1))
    i1, i2 = np.polyint(f1), np.polyint(f2)
    avg = ((np.polyval(i2, hi) - np.polyval(i2, lo)) - (np.polyval(i1, hi) - np.polyval(i1, lo))) / (hi - lo)
    return float((math.exp(avg) - 1) * 100)


def overlap(ref_psnr, test_psnr) -> tuple[float, float] | None:
    """The PSNR interval two curves share, or None."""
    lo, hi = max(min(ref_psnr), min(test_psnr)), min(max(ref_psnr), max(test_psnr))
    return (float(lo), float(hi)) if hi > lo else None


def _clean(rate, psnr) -> tuple[np.ndarray, np.ndarray]:
    """Finite, positive-rate points, sorted by PSNR (duplicate PSNRs keep the lowest rate)."""
    pts = sorted((float(p), float(r)) for r, p in zip(rate, psnr) if r > 0 and math.isfinite(p) and math.isfinite(r))
    out: dict[float, float] = {}
    for p, r in pts:
        out[p] = min(r, out.get(p, r))
    p = np.array(list(out.keys()))
    r = np.array(list(out.values()))
    return r, p
