"""BD-rate (VCEG-M33 cubic fit) against hand-made curves whose answer is known."""

import numpy as np
import pytest

from maxswitch.evaluation.rd import bd_rate, overlap

PSNR = np.array([24.0, 26.0, 28.0, 30.0, 32.0])
RATE = np.array([0.2, 0.35, 0.6, 1.0, 1.7])


def test_same_curve_is_zero():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25, 2.0])
def test_scaled_rates_give_the_scale(factor):
    # log(rate) shifts by log(factor) everywhere: BD-rate is exactly factor - 1
    assert bd_rate(RATE, PSNR, RATE * factor, PSNR) == pytest.approx((factor - 1) * 100, abs=1e-6)


def test_shifted_psnr_on_an_exponential_curve():
    # rate = exp(a * psnr): +1 dB at equal rate means rates scaled by exp(-a) at equal PSNR
    a = 0.25
    rate = np.exp(a * PSNR)
    got = bd_rate(rate, PSNR, rate, PSNR + 1.0)
    assert got == pytest.approx((np.exp(-a) - 1) * 100, abs=1e-6)


def test_no_overlap_or_too_few_points():
    assert bd_rate(RATE, PSNR, RATE, PSNR + 20) is None
    assert bd_rate(RATE[:1], PSNR[:1], RATE, PSNR) is None
    assert overlap([1, 2], [3, 4]) is None and overlap([1, 3], [2, 4]) == (2, 3)


def test_fewer_than_four_points_fit_a_lower_degree():
    assert bd_rate(RATE[:3], PSNR[:3], RATE[:3] * 0.5, PSNR[:3]) == pytest.approx(-50, abs=1e-6)
