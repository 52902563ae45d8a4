"""Give a trained what decoder its switch coders and ship it as a model of the what+where family.

    python benchmarks/assemble_what.py DECODER_ASSET [--coders MODEL] [--register] [-o OUT]

DECODER_ASSET comes from ``maxswitch train --what ...`` (benchmarks/train_what.sh). A decoder
trained on the encoder of a shipped switch-only model (``--encoder-from``) codes its switches with
that model's context model and context tables, which ``--coders MODEL`` copies (they depend on the
encoder only: the same switches, the same coders). The result goes to models/NAME.safetensors (or
``-o``); ``--what F,SY,SC`` and ``--name`` make a model of the same weights that writes and
reads another what part (finer blocks: docs/RESULTS.md); ``--register`` writes its manifest entry (family "what+where", the training data as
``--data`` says).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.networks.zoo import load_model, models_dir, register, save_model  # noqa: E402

DATA = "train-bsds500 (holdout-train split, 280 images) and 60 random screens (examples/screens.py --train)"


def assemble(
    decoder_asset: str, coders: str | None, out: str | None, what: str | None = None, name: str | None = None
) -> Path:
    dec = load_model(decoder_asset)
    context, table = dec.context, dec.table  # its own coders, unless --coders gives others
    record = dict(dec.meta.get("record", {}))
    config, name = dec.config, name or dec.name
    if what:  # the same decoder writing and reading another what part (e.g. finer blocks)
        spec = tuple(int(v) for v in what.split(","))
        record["what_from"] = f"{dec.name} v{dec.version}: the same weights, what part {spec} instead of {config.what}"
        config = dataclasses.replace(config, what=spec)
    if coders:
        src = load_model(coders)
        if src.encoder_digest != dec.encoder_digest:
            sys.exit(f"error: {decoder_asset} and {coders} have different encoders")
        context, table = src.context, src.table
        record["coders_from"] = f"{src.name} v{src.version} (sha256 {src.sha256[:12]})"
        for k in ("context", "table"):
            if k in src.meta.get("record", {}):
                record[k] = src.meta["record"][k]
    path = Path(out) if out else models_dir() / f"{name}.safetensors"
    save_model(path, name, dec.version, config, dec.encoder, dec.decoder, record, context=context, table=table)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("decoder_asset")
    ap.add_argument("--coders", help="model whose context model and tables code the switches (same encoder)")
    ap.add_argument("-o", "--output", help="asset to write (default models/NAME.safetensors)")
    ap.add_argument("--register", action="store_true", help="write the entry in models/manifest.json")
    ap.add_argument("--data", default=DATA, help="the training data, as the manifest records it")
    ap.add_argument("--what", help="F,SY,SC: the what part the model writes, instead of the decoder's own")
    ap.add_argument("--name", help="the model's name (default: the decoder's)")
    a = ap.parse_args()
    path = assemble(a.decoder_asset, a.coders, a.output, a.what, a.name)
    if a.register:
        entry = register(path, "what+where", a.data)
        print(f"{entry['name']} v{entry['version']}: {path} (sha256 {entry['sha256'][:12]}...)", file=sys.stderr)
    else:
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
