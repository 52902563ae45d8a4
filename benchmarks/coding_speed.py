"""Speed of the two payload codings, and the entropy coder's share of encode and decode.

    python benchmarks/coding_speed.py ../shared/data/kodak [-m MODEL] [--threads 1 2] [--limit N]

Library calls, wall clock, best of 3 per image, summed over the images; MP/s over the images'
pixels. Stages: the encoder network (switches), payload coding (context model + ANS for v2,
pack + zstd for v1), payload decoding, the decoder network; and the entropy coder's own share
(constriction for the MLP; the compiled coder's ANS loops for the tables, which on the decoding
side are timed with every table row given in advance). Without a folder the example
picture is used. Timings depend on the machine's load: say what else ran when quoting them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch import codec  # noqa: E402
from maxswitch.bitstream import entropy, tablecoder  # noqa: E402
from maxswitch.bitstream import switches as sw  # noqa: E402
from maxswitch.config import DEFAULT_MODEL  # noqa: E402
from maxswitch.networks.zoo import load_model  # noqa: E402


def best(fn, n=3):
    out = None
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        t.append(time.perf_counter() - t0)
    return min(t), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=None)
    ap.add_argument("-m", "--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--coding", choices=["context", "table"], default="context", help="the learned coding to time")
    a = ap.parse_args()
    paths = sorted(Path(a.folder).glob("*.png"))[: a.limit] if a.folder else [ROOT / "examples" / "example.png"]
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    m = load_model(a.model)
    learned = m.table if a.coding == "table" else m.context
    compiled = getattr(learned, "compiled", False)
    coder = "compiled ANS (tablecoder.py)" if compiled else "constriction"
    if compiled:  # compile (or load numba's cache) before timing
        entropy.encode(learned, codec.compute_switches(m, imgs[0][:64, :64]))
    px = sum(x.shape[0] * x.shape[1] for x in imgs) / 1e6
    print(f"{a.model}, coding {a.coding}, {len(imgs)} images, {px:.2f} MP in all\n")
    print("| threads | stage | seconds | MP/s | share |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for th in a.threads:
        torch.set_num_threads(th)
        tot = dict.fromkeys(
            [
                "encoder network",
                "v2 context encode",
                "v2 ANS encode",
                "v2 context decode",
                "v2 ANS decode",
                "v1 pack+zstd",
                "v1 unzstd+unpack",
                "decoder network",
            ],
            0.0,
        )
        for x in imgs:
            H, W = -(-x.shape[0] // 8) * 8, -(-x.shape[1] // 8) * 8
            t, codes = best(lambda x=x: codec.compute_switches(m, x))
            tot["encoder network"] += t
            t, payload = best(lambda codes=codes: entropy.encode(learned, codes))
            tot["v2 context encode"] += t
            t, back = best(lambda payload=payload: entropy.decode(learned, payload, H, W))
            assert all((p == q).all() for p, q in zip(codes, back))
            tot["v2 context decode"] += t
            # the entropy coder alone, given the intervals the model computed: the compiled
            # coder's ANS loops for the tables (tablecoder.py), constriction for the MLP
            for tile in entropy.tiles(H, W):
                tc = entropy._tile_codes(codes, tile)
                if compiled:
                    cum, freq = tablecoder.tile_intervals(learned, tc)
                    t, words = best(lambda cum=cum, freq=freq: tablecoder.ans_encode(cum, freq))
                    tot["v2 ANS encode"] += t
                    rows = tablecoder.known_rows(learned, tc)
                    t, _ = best(lambda words=words, rows=rows: tablecoder.ans_decode(words, rows))
                    tot["v2 ANS decode"] += t
                    continue
                steps = entropy.tile_steps(learned, tc)
                t, words = best(lambda steps=steps: entropy.ans_encode(steps))
                tot["v2 ANS encode"] += t
                t, _ = best(lambda words=words, steps=steps: entropy.ans_decode(words, [f for _, f in steps]))
                tot["v2 ANS decode"] += t
            t, z = best(lambda codes=codes: sw.compress(sw.pack(codes)))
            tot["v1 pack+zstd"] += t
            t, _ = best(
                lambda z=z, codes=codes: sw.unpack(sw.decompress(z, len(sw.pack(codes))), [c.shape for c in codes])
            )
            tot["v1 unzstd+unpack"] += t
            t, _ = best(lambda codes=codes, x=x: codec.reconstruct(m, codes, size=x.shape[:2]))
            tot["decoder network"] += t
        enc_v2 = tot["encoder network"] + tot["v2 context encode"]
        dec_v2 = tot["v2 context decode"] + tot["decoder network"]
        enc_v1 = tot["encoder network"] + tot["v1 pack+zstd"]
        dec_v1 = tot["v1 unzstd+unpack"] + tot["decoder network"]
        rows = [
            ("encoder network", tot["encoder network"], enc_v2),
            (f"{a.coding} model + ANS, encode", tot["v2 context encode"], enc_v2),
            (f"of which ANS ({coder})", tot["v2 ANS encode"], enc_v2),
            ("**encode, v2**", enc_v2, enc_v2),
            (f"{a.coding} model + ANS, decode", tot["v2 context decode"], dec_v2),
            (f"of which ANS ({coder})", tot["v2 ANS decode"], dec_v2),
            ("decoder network", tot["decoder network"], dec_v2),
            ("**decode, v2**", dec_v2, dec_v2),
            ("encode, v1 (pack + zstd)", enc_v1, enc_v1),
            ("decode, v1 (unzstd + unpack)", dec_v1, dec_v1),
        ]
        for name, t, whole in rows:
            print(f"| {th} | {name} | {t:.3f} | {px / t:.2f} | {100 * t / whole:.0f}% |")


if __name__ == "__main__":
    main()
