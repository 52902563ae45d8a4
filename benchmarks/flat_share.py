"""Which pictures `encode --what auto` treats as mostly flat: ``what.flat_share`` per folder.

    python benchmarks/flat_share.py FOLDER [FOLDER ...] [--list-flat OUT.txt]

For each folder (its .png and .jpg files, subfolders included): how many pictures, the least,
median and largest share of flat 8x8 blocks, and how many reach ``what.FLAT_SHARE``.
``--list-flat`` writes the paths of those that do, one per line (docs/RESULTS.md, "Synthetic
content: screens").
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maxswitch.bitstream import what  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--list-flat", metavar="OUT.txt", help="write the paths of the mostly flat pictures here")
    a = ap.parse_args()
    flat = []
    print("| folder | pictures | min | median | max | at least FLAT_SHARE |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for folder in a.folders:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        shares = np.array([what.flat_share(np.asarray(Image.open(p).convert("RGB"))) for p in paths])
        if not len(shares):
            continue
        hit = shares >= what.FLAT_SHARE
        flat += [str(p) for p, h in zip(paths, hit) if h]
        print(
            f"| {folder} | {len(shares)} | {shares.min():.2f} | {np.median(shares):.2f} | {shares.max():.2f} | {hit.sum()} |"
        )
    if a.list_flat:
        Path(a.list_flat).write_text("".join(p + "\n" for p in flat))


if __name__ == "__main__":
    main()
