"""Fit a model's context tables (payload coding 3) and write the model asset with them.

    python benchmarks/fit_tables.py MODEL DATA -o OUT.safetensors [--version V] [--workers 2]

MODEL: a shipped model name or an asset path (its encoder gives the switches; its decoder and
context model are kept). DATA: a folder of training images (e.g. ../shared/data/train-bsds500,
never a test set). The asset is written with version V (default: MODEL's + 1) and the fit's
record (images, recipe, table size, seconds); register it with zoo.register as any model.
Method and recipe: maxswitch/tables_fit.py; cost: docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.dataset import list_images  # noqa: E402
from maxswitch.tables_fit import TableRecipe, fit_tables  # noqa: E402
from maxswitch.zoo import load_model, save_model  # noqa: E402


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
    m = load_model(a.model)
    paths = list_images(a.data)
    recipe = TableRecipe(alpha=a.alpha, max_contexts=a.max_contexts, samples_per_context=a.samples_per_context)
    t0 = time.time()
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    table = fit_tables(m, images, recipe, workers=a.workers, log=lambda s: print(s, flush=True))
    sec = time.time() - t0
    record = dict(
        m.meta.get("record", {}),
        table={
            "data": Path(a.data).name,
            "images": len(paths),
            "recipe": recipe.__dict__,
            "contexts": int(len(table.q)),
            "seconds": round(sec, 1),
            "workers": a.workers,
        },
    )
    version = a.version if a.version is not None else m.version + 1
    save_model(a.output, m.name, version, m.config, m.encoder, m.decoder, record, context=m.context, table=table)
    print(f"{a.output}: {m.name} v{version}, {len(table.q)} contexts ({2 * table.q.size} bytes), {sec:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
