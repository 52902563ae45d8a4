"""Put a decoder and a context model trained apart into one model asset, and register it.

    python benchmarks/combine_assets.py DECODER_ASSET CONTEXT_ASSET [--register]

DECODER_ASSET comes from ``maxswitch train`` (no context model), CONTEXT_ASSET from
``maxswitch train-context`` (the same encoder, any decoder). Both must carry the same encoder
(same digest): the context model codes that encoder's switches. The result takes the name,
version, decoder and training record of DECODER_ASSET, the context model and its record of
CONTEXT_ASSET, and is written to models/NAME.safetensors; ``--register`` then replaces the
model's entry in models/manifest.json (family "natural", figures kept until re-measured).
This is how the GPU session's decoders and context models (benchmarks/gpu_train.sh), trained in
separate processes, became the shipped ladder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.networks.zoo import _build, load_model, models_dir, register, save_model, sha256_bytes  # noqa: E402

DATA = "train-bsds500 (holdout-train split, 280 images)"


def combine(decoder_asset: str, context_asset: str) -> Path:
    dec = load_model(decoder_asset)
    # read without the manifest check: train-context before 0.2 wrote its asset under the
    # source model's name and version, which load_model refuses as an altered shipped model
    raw = Path(context_asset).read_bytes()
    ctx = _build(raw, sha256_bytes(raw))
    if dec.encoder_digest != ctx.encoder_digest:
        sys.exit(f"error: {decoder_asset} and {context_asset} have different encoders")
    if ctx.context is None:
        sys.exit(f"error: {context_asset} has no context model")
    record = dict(dec.meta.get("record", {}), context=ctx.meta["record"]["context"])
    out = models_dir() / f"{dec.name}.safetensors"
    save_model(out, dec.name, dec.version, dec.config, dec.encoder, dec.decoder, record, context=ctx.context)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("decoder_asset")
    ap.add_argument("context_asset")
    ap.add_argument("--register", action="store_true", help="replace the entry in models/manifest.json")
    a = ap.parse_args()
    out = combine(a.decoder_asset, a.context_asset)
    if a.register:
        entry = register(out, "natural", DATA)
        print(f"{entry['name']} v{entry['version']}: {out} (sha256 {entry['sha256'][:12]}...)", file=sys.stderr)
    else:
        print(out, file=sys.stderr)


if __name__ == "__main__":
    main()
