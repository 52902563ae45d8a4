"""Compare decoder designs at the same CPU budget (docs/RESULTS.md, "Decoder comparison").

Trains each design for the same wall-clock minutes on one thread, on train-bsds500's
holdout-train split, and writes a model asset per design into the output folder:

    python benchmarks/decoder_compare.py ../shared/data/train-bsds500 runs/compare --minutes 8

Run the designs side by side (one process each, ``--only NAME``) to use both cores.
"""

import argparse
import json
from pathlib import Path

from maxswitch.nets import ModelConfig
from maxswitch.train import Recipe, train

DESIGNS = {
    "direct": ModelConfig((16, 16, 16), "direct", (64, 48, 32)),
    "mirror": ModelConfig((16, 16, 16), "mirror", (32, 32, 32)),
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("train_dir")
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--only", choices=sorted(DESIGNS))
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for name, cfg in DESIGNS.items():
        if a.only and name != a.only:
            continue
        rec = train(a.train_dir, f"{a.out}/{name}.safetensors", f"compare-{name}", cfg,
                    Recipe(minutes=a.minutes, threads=1, eval_every=500),
                    val_dir=a.train_dir, split="holdout-train", val_split="holdout-val")
        Path(f"{a.out}/{name}.json").write_text(json.dumps(rec, indent=1))
