"""Fit a model's context tables (payload coding 3) and write the model asset with them: the same
fit as ``maxswitch fit-tables`` (``tables_fit.fit_tables_asset``), kept with its earlier arguments.

    python benchmarks/fit_tables.py MODEL DATA -o OUT.safetensors [--version V] [--workers 2]

MODEL: a shipped model name or an asset path (its encoder gives the switches; its decoder and
context model are kept). DATA: a folder of training images (e.g. ../shared/data/train-bsds500,
never a test set). The asset is written with version V (default: MODEL's + 1) and the fit's
record (images, recipe, table size, seconds); register it with zoo.register as any model. OUT is
never MODEL itself nor another model holding a context model or tables (``train.check_new_asset``).
Method and recipe: maxswitch/training/tables_fit.py; cost: docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.training.tables_fit import TableRecipe, fit_tables_asset  # noqa: E402
from maxswitch.training.train import check_new_asset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--version", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-contexts", type=int, default=TableRecipe.max_contexts)
    ap.add_argument("--alpha", type=float, default=TableRecipe.alpha)
    ap.add_argument("--samples-per-context", type=int, default=TableRecipe.samples_per_context)
    a = ap.parse_args()
    check_new_asset(a.model, a.output, replace=True)
    recipe = TableRecipe(alpha=a.alpha, max_contexts=a.max_contexts, samples_per_context=a.samples_per_context)
    fit_tables_asset(
        a.model,
        a.data,
        a.output,
        recipe,
        version=a.version,
        workers=a.workers,
        log=lambda s: print(s, flush=True),
        progress=lambda stage, done, total: print(f"{stage} {done}/{total}", flush=True) if done == total else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
