"""Switches say nothing about flat areas: the example picture with and without its sensor noise.

    python benchmarks/flat_areas.py [-m natural-16-16-16]

examples/make_example.py adds Gaussian noise (sigma 2 levels) to its drawing. Without it, every
pooling window inside a flat area ties, all its switches are the first position, and the decoder
can only guess the area's colour from its borders.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from make_example import draw  # noqa: E402

import maxswitch  # noqa: E402
from maxswitch.evaluation import metrics  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=None)
    a = ap.parse_args()
    noisy = np.asarray(draw())
    clean = np.asarray(draw(sensor_noise=0.0))
    for label, rgb in (("with sensor noise (examples/example.png)", noisy), ("without noise", clean)):
        data = maxswitch.encode(rgb, a.model)
        x_hat, _ = maxswitch.decode_array(data, a.model)
        inf = maxswitch.info(data)
        print(
            f"{label}: {metrics.psnr(rgb, x_hat):.2f} dB, {inf['bpp']:.3f} bpp, {inf['bits_per_switch']:.3f} bits/switch"
        )


if __name__ == "__main__":
    main()
