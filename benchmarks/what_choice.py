"""What a picture's what part buys: each model with ``encode(what="auto")`` and ``what="model"``.

    python benchmarks/what_choice.py runs/screens -m what-2-4-8 [-m MODEL_OR_ASSET ...] [--what auto model]

For every model (a shipped name or an asset path, e.g. an unshipped training result) and every what
choice: the mean over the folder's images of bpp (whole file), PSNR, 16x16 block PSNR, and how many
files got a what part other than the model's own (``codec._for_picture``: pictures with many flat 8x8
blocks). One process, library calls; ``maxswitch bench`` measures the default choice beside JPEG and
WebP, this script the choice itself. docs/RESULTS.md ("Synthetic content: screens") quotes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import maxswitch  # noqa: E402
from maxswitch.bitstream import format as fmt  # noqa: E402
from maxswitch.bitstream import parts  # noqa: E402
from maxswitch.evaluation import metrics  # noqa: E402
from maxswitch.evaluation.bench import list_images  # noqa: E402
from maxswitch.networks.zoo import load_model  # noqa: E402


def measure(folder: str, model: str, choice: str) -> dict:
    m = load_model(model)
    own = tuple(m.config.what) if m.config.what else None
    bpp, psnr, block, changed = [], [], [], 0
    images, _ = list_images(folder)
    for rel in images:
        rgb = np.asarray(Image.open(Path(folder) / rel).convert("RGB"))
        data = maxswitch.encode(rgb, m, what=choice)
        _, payload = fmt.read(data)
        if own is not None:
            spec = parts.split(payload).spec
            changed += (spec.factor, spec.step_y, spec.step_c) != own
        out, _ = maxswitch.decode_array(data, m)
        bpp.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
        psnr.append(metrics.psnr(rgb, out))
        block.append(metrics.block_psnr(rgb, out) or float("nan"))
    return dict(images=len(images), bpp=np.mean(bpp), psnr=np.mean(psnr), block=np.nanmean(block), changed=changed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("-m", "--model", action="append", required=True, help="model name or asset path (repeat)")
    ap.add_argument("--what", nargs="+", default=["auto", "model"], choices=["auto", "model"])
    a = ap.parse_args()
    print("| model | what | images | bpp | PSNR dB | 16x16 block PSNR dB | files with another what part |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in a.model:
        for choice in a.what:
            r = measure(a.folder, model, choice)
            print(
                f"| {model} | {choice} | {r['images']} | {r['bpp']:.3f} | {r['psnr']:.2f} | {r['block']:.2f} | "
                f"{r['changed']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
