"""The rate-distortion ladder of ``-q``: at least five distinct natural models whose rate and
quality both increase strictly, checked on images here and in the manifest's Kodak figures."""

from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE
from PIL import Image

import maxswitch
from maxswitch import codec, metrics, zoo
from maxswitch.config import DEFAULT_MODEL, LADDER, LADDER_FAMILY, LADDERS


@pytest.mark.parametrize("family", list(LADDERS))
def test_each_ladder_is_at_least_five_distinct_shipped_models(family):
    rungs = LADDERS[family]
    assert len(rungs) >= 5 and len(set(rungs)) == len(rungs)
    for name in rungs:
        entry = zoo.shipped(name)
        assert entry is not None and entry["family"] == LADDER_FAMILY[family], name
        assert entry.get("context_digest") or entry.get("table_digest"), f"{name} has no learned coding"
    assert DEFAULT_MODEL in LADDER and LADDER in LADDERS.values()


@pytest.mark.parametrize("family", list(LADDERS))
def test_manifest_kodak_figures_increase_strictly_along_each_ladder(family):
    figs = [zoo.shipped(n).get("figures", {}) for n in LADDERS[family]]
    if not all("bpp" in f and "psnr" in f for f in figs):
        pytest.skip("Kodak figures not yet measured for every rung")
    bpp, psnr = [f["bpp"] for f in figs], [f["psnr"] for f in figs]
    assert bpp == sorted(set(bpp)) and psnr == sorted(set(psnr)), (bpp, psnr)


KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _means(images):
    rates, psnrs = [], []
    for q in range(1, len(LADDER) + 1):
        bpp, psnr = [], []
        for x in images:
            data = maxswitch.encode(x, quality=q)
            y, _ = codec.decode_array(data)
            bpp.append(8 * len(data) / (x.shape[0] * x.shape[1]))
            psnr.append(metrics.psnr(x, y))
        rates.append(float(np.mean(bpp)))
        psnrs.append(float(np.mean(psnr)))
    return rates, psnrs


@pytest.mark.skipif(not KODAK.is_dir(), reason="needs ../shared/data/kodak (photographs)")
def test_rate_and_psnr_increase_strictly_on_a_few_photographs():
    """Mean bpp and PSNR over three Kodak photographs, quarter-size crops (CPU time)."""
    images = [np.asarray(Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB"))[:256, :384] for i in (3, 14, 23)]
    rates, psnrs = _means(images)
    assert all(a < b for a, b in zip(rates, rates[1:])), rates
    assert all(a < b for a, b in zip(psnrs, psnrs[1:])), psnrs


def test_rate_increases_strictly_on_the_example_picture():
    """On the synthetic example picture only the rate is ordered: its flat areas carry no switches,
    and the decoders' order there need not follow the photographs'; PSNR is ordered on photographs
    (above, and the manifest's Kodak figures)."""
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    rates, _ = _means([rgb])
    assert all(a < b for a, b in zip(rates, rates[1:])), rates
