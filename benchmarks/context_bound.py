"""How much could a context model save over zstd on the switches? An optimistic bound.

For every image, the empirical conditional entropy of the switch codes given a context, with the
probability tables fitted to that very image and their cost ignored: no real coder reaches these
figures, so they bound what context modelling could gain over the zstd payload of format version 1.

    python benchmarks/context_bound.py ../shared/data/kodak [-m natural-16-16-16]

Contexts, per stage and channel: none (order 0), the codes of the left and upper windows, and those
plus the code of the previous channel at the same window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maxswitch import codec, image
from maxswitch.networks import zoo  # noqa: E402
from maxswitch.training.train import list_images  # noqa: E402


def entropy_bits(symbols: np.ndarray, contexts: np.ndarray, n_contexts: int) -> float:
    """Total bits of ``symbols`` (0..3) coded with the empirical P(symbol | context)."""
    counts = np.bincount(contexts.ravel() * 4 + symbols.ravel(), minlength=4 * n_contexts).reshape(-1, 4).astype(float)
    totals = counts.sum(1, keepdims=True)
    p = np.where(counts > 0, counts / np.maximum(totals, 1), 1.0)
    return float(-(counts * np.log2(p)).sum())


def bounds(codes: list[np.ndarray]) -> dict:
    """Bits per switch under each context, summed over stages and channels."""
    bits = {"order 0": 0.0, "left + up": 0.0, "left + up + previous channel": 0.0}
    n = 0
    for c in codes:
        c = c.astype(np.int64)  # (C, h, w)
        left = np.pad(c, ((0, 0), (0, 0), (1, 0)))[:, :, :-1]
        up = np.pad(c, ((0, 0), (1, 0), (0, 0)))[:, :-1, :]
        prev = np.concatenate([np.zeros_like(c[:1]), c[:-1]])
        for ch in range(c.shape[0]):
            bits["order 0"] += entropy_bits(c[ch], np.zeros_like(c[ch]), 1)
            bits["left + up"] += entropy_bits(c[ch], left[ch] * 4 + up[ch], 16)
            bits["left + up + previous channel"] += entropy_bits(c[ch], (left[ch] * 4 + up[ch]) * 4 + prev[ch], 64)
        n += c.size
    return {k: v / n for k, v in bits.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("-m", "--model", default=zoo.DEFAULT_MODEL)
    a = ap.parse_args()
    model = zoo.load_model(a.model)
    rows = []
    for p in list_images(a.folder):
        rgb = image.load(p.read_bytes()).rgb
        data = codec.encode(rgb, model)
        parsed = codec.parse(data)
        b = bounds(parsed.codes)
        b["zstd payload (format v1)"] = 8 * parsed.payload_size / parsed.header.switch_count
        rows.append(b)
    keys = list(rows[0])
    print(f"{len(rows)} images of {a.folder}, model {a.model}: mean bits per switch")
    print("| coding | bits per switch |\n| --- | ---: |")
    for k in keys:
        print(f"| {k} | {np.mean([r[k] for r in rows]):.3f} |")


if __name__ == "__main__":
    main()
