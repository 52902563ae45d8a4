"""Write the -q ladder's measured Kodak figures into models/manifest.json from a bench CSV.

    maxswitch bench ../shared/data/kodak --ladder --coding both --csv docs/bench-ladder-kodak.csv ...
    python benchmarks/ladder_figures.py docs/bench-ladder-kodak.csv [--bsds docs/bench-ladder-bsds500.csv]

For each ladder model: mean bpp (whole file), PSNR and SSIM of the default coding (``@auto``) and
the bpp of format v1 (``@zstd``) over the images of the CSV; ``maxswitch models`` and the README
table show them. Nothing is measured here: the figures are the bench run's.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.config import LADDERS  # noqa: E402
from maxswitch.networks.zoo import set_figures  # noqa: E402


def means(path: str) -> dict:
    rows = [r for r in csv.DictReader(open(path)) if r["codec"] == "maxswitch"]
    out: dict = {}
    for r in rows:
        out.setdefault(r["model"], []).append(r)
    return {
        k: {
            "n": len(v),
            "bpp": statistics.fmean(float(r["bpp"]) for r in v),
            "psnr": statistics.fmean(float(r["psnr"]) for r in v),
            "ssim": statistics.fmean(float(r["ssim"]) for r in v if r["ssim"]),
        }
        for k, v in out.items()
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kodak_csv")
    ap.add_argument("--bsds", default=None, help="bench CSV of test-bsds500")
    ap.add_argument("--models", default=None, help="comma-separated models to update (default: every ladder's)")
    ap.add_argument("--command", default=None, help="the bench command that wrote the CSV (recorded)")
    a = ap.parse_args()
    k = means(a.kodak_csv)
    b = means(a.bsds) if a.bsds else {}
    figures = {}
    for name in a.models.split(",") if a.models else [m for rungs in LADDERS.values() for m in rungs]:
        auto, v1 = k.get(f"{name}@auto"), k.get(f"{name}@zstd")
        if auto is None:
            continue
        f = {
            "dataset": f"kodak ({auto['n']} images)",
            "bpp": round(auto["bpp"], 3),
            "psnr": round(auto["psnr"], 2),
            "ssim": round(auto["ssim"], 4),
            "v1_zstd_bpp": round(v1["bpp"], 3) if v1 else None,
            "command": (a.command or "maxswitch bench ../shared/data/kodak --ladder --coding both (docs/RESULTS.md)")
            + "; python benchmarks/ladder_figures.py",
        }
        if f"{name}@auto" in b:
            f["bsds_test_bpp"] = round(b[f"{name}@auto"]["bpp"], 3)
            f["bsds_test_psnr"] = round(b[f"{name}@auto"]["psnr"], 2)
            f["bsds_test_images"] = b[f"{name}@auto"]["n"]
        figures[name] = f
        print(name, f, file=sys.stderr)
    set_figures(figures)


if __name__ == "__main__":
    main()
