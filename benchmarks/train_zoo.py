"""Train the model zoo: natural-image rates, Table II on faces, pretrained encoders, the control.

    python benchmarks/train_zoo.py ../shared/data --group faces        # 8 untrained-encoder face models
    python benchmarks/train_zoo.py ../shared/data --group pretrained   # 6 rotation-pretrained encoders
    python benchmarks/train_zoo.py ../shared/data --group control      # average pooling, no switches
    python benchmarks/train_zoo.py ../shared/data --group natural      # the natural-image rates
    python benchmarks/train_zoo.py ../shared/data --group default      # natural-16-16-16, 50 minutes
    python benchmarks/train_zoo.py ../shared/data --group compare      # mirror vs direct decoders, 8 min each
    python benchmarks/train_zoo.py ../shared/data --group context      # context models of the -q ladder (v2)
    python benchmarks/train_zoo.py ../shared/data --only faces-8-8-8   # one model

Every model is written to models/ and registered in models/manifest.json; figures are then filled in
by benchmarks/reproduce.py. Every architecture uses ONE random encoder, drawn with seed 0 and calibrated
on the first 8 images of train-bsds500's holdout-train split, whichever data its decoder is trained on:
so a face model and a natural model of the same architecture read the same switches (the cross-domain
experiment of docs/RESULTS.md). Recipes and durations: docs/TRAINING.md. Budgets are in steps, so a
run repeats exactly with the same seed and thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.networks.nets import Encoder, ModelConfig  # noqa: E402
from maxswitch.networks.zoo import models_dir, register  # noqa: E402
from maxswitch.training.pretrain import pretrain_classifier, quantise, rotation_accuracy  # noqa: E402
from maxswitch.training.train import Recipe, calibration_batch, list_images, load_rgb, select_split, train  # noqa: E402

TABLE2 = [(8, 8, 8), (6, 12, 24), (16, 16, 16), (12, 24, 48), (32, 32, 32), (24, 48, 96), (64, 64, 64), (48, 96, 192)]
PRETRAINED = TABLE2[:6]
PRETRAIN_STEPS = 600
FACE_SIZE = 128  # faces are resized from 250x250 to 128x128 (docs/TRAINING.md)
WIDTHS = (64, 48, 32)
FACE_RECIPE = dict(patch=64, batch=16, lr=2e-3, steps=1500)
NATURAL_RECIPE = dict(patch=96, batch=16, lr=2e-3)
NATURAL = {  # name -> (channels, steps)
    "natural-6-12-24": ((6, 12, 24), 2000),
    "natural-32-32-32": ((32, 32, 32), 2000),
    "natural-48-96-192": ((48, 96, 192), 2000),
    "natural-8-16-32": ((8, 16, 32), 6000),
}
CONTEXT_RECIPE = dict(steps=3000, batch=16, patch=64, symbols=4096, lr=2e-3, hidden=(32, 32))


def tag(ch) -> str:
    return "-".join(map(str, ch))


@lru_cache(maxsize=None)
def bsds_calibration(data: str) -> torch.Tensor:
    paths = select_split(list_images(Path(data) / "train-bsds500"), "holdout-train")[:8]
    return calibration_batch(load_rgb(paths))


def shared_encoder(data: str, channels, pool: str = "max") -> Encoder:
    """The one random encoder of an architecture (seed 0, calibrated on BSDS training images)."""
    return Encoder.random(channels, seed=0, calibration=bsds_calibration(data), pool=pool)


def train_and_register(data, name, cfg, recipe, family, data_desc, encoder, **kw):
    out = models_dir() / f"{name}.safetensors"
    t0 = time.time()
    rec = train(
        kw.pop("train_dir"),
        str(out),
        name,
        cfg,
        Recipe(**recipe, threads=kw.pop("threads")),
        encoder=encoder,
        checkpoint=str(ROOT / "runs" / "zoo" / f"{name}.ckpt"),
        **kw,
    )
    register(out, family, data_desc)
    print(f"{name}: done in {(time.time() - t0) / 60:.1f} min, {rec['steps']} steps", file=sys.stderr)


def jobs(data: str, threads: int):
    faces = str(Path(data) / "faces-lfw")
    face_kw = dict(train_dir=faces, split="lfw-train", resize=FACE_SIZE, threads=threads)
    face_desc = f"faces-lfw (lfw-train split, 1,725 images at {FACE_SIZE}x{FACE_SIZE})"
    for ch in TABLE2:
        name = f"faces-{tag(ch)}"
        yield (
            "faces",
            name,
            lambda ch=ch, name=name: train_and_register(
                data,
                name,
                ModelConfig(ch, "direct", WIDTHS),
                FACE_RECIPE,
                "faces",
                face_desc,
                shared_encoder(data, ch),
                **face_kw,
            ),
        )
    for ch in PRETRAINED:
        name = f"faces-pretrained-{tag(ch)}"

        def run(ch=ch, name=name):
            imgs = [
                torch.from_numpy(np.array(r)).permute(2, 0, 1).contiguous()
                for r in load_rgb(select_split(list_images(faces), "lfw-train"), FACE_SIZE)
            ]
            test = [
                torch.from_numpy(np.array(r)).permute(2, 0, 1).contiguous()
                for r in load_rgb(select_split(list_images(faces), "lfw-test"), FACE_SIZE)
            ]
            clf, _ = pretrain_classifier(
                ch, imgs, steps=PRETRAIN_STEPS, patch=FACE_SIZE, log=lambda m: print(m, file=sys.stderr)
            )
            acc = rotation_accuracy(clf, test, patch=FACE_SIZE)
            enc = quantise(clf, torch.stack(imgs[:8]))
            train_and_register(
                data,
                name,
                ModelConfig(ch, "direct", WIDTHS, encoder_seed=-1),
                FACE_RECIPE,
                "faces-pretrained",
                face_desc + "; encoder pretrained on rotation prediction",
                enc,
                record_extra={
                    "pretrain": {
                        "task": "rotation prediction (4 classes)",
                        "steps": PRETRAIN_STEPS,
                        "batch": 32,
                        "test_accuracy": round(acc, 4),
                    }
                },
                **face_kw,
            )

        yield "pretrained", name, run
    name = "faces-avgpool-16-16-16"
    yield (
        "control",
        name,
        lambda: train_and_register(
            data,
            name,
            ModelConfig((16, 16, 16), "direct", WIDTHS, pool="avg"),
            dict(FACE_RECIPE, steps=500),
            "control",
            face_desc + "; average pooling: no switches",
            shared_encoder(data, (16, 16, 16), "avg"),
            **face_kw,
        ),
    )
    bsds = str(Path(data) / "train-bsds500")
    nat_kw = dict(train_dir=bsds, split="holdout-train", val_dir=bsds, val_split="holdout-val", threads=threads)
    nat_desc = "train-bsds500 (holdout-train split, 280 images)"
    for name, cfg in (
        ("compare-direct", ModelConfig((16, 16, 16), "direct", WIDTHS)),
        ("compare-mirror", ModelConfig((16, 16, 16), "mirror", (32, 32, 32))),
    ):
        yield (
            "compare",
            name,
            lambda name=name, cfg=cfg: train_and_register(
                data,
                name,
                cfg,
                dict(NATURAL_RECIPE, minutes=8.0),
                "experiment",
                nat_desc,
                shared_encoder(data, (16, 16, 16)),
                **nat_kw,
            ),
        )
    yield (
        "default",
        "natural-16-16-16",
        lambda: train_and_register(
            data,
            "natural-16-16-16",
            ModelConfig((16, 16, 16), "direct", WIDTHS),
            dict(NATURAL_RECIPE, minutes=50.0),
            "natural",
            nat_desc,
            shared_encoder(data, (16, 16, 16)),
            version=1,
            **nat_kw,
        ),
    )
    for name, (ch, steps) in NATURAL.items():
        yield (
            "natural",
            name,
            lambda ch=ch, name=name, steps=steps: train_and_register(
                data,
                name,
                ModelConfig(ch, "direct", WIDTHS),
                dict(NATURAL_RECIPE, steps=steps),
                "natural",
                nat_desc,
                shared_encoder(data, ch),
                **nat_kw,
            ),
        )


def context_jobs(data: str, threads: int, steps: int | None = None, batch: int | None = None):
    """The learned context model (format v2) of every model of the -q ladder, added to its asset."""
    from maxswitch.config import LADDER
    from maxswitch.networks.zoo import load_model, save_model
    from maxswitch.training.context_train import measure, switch_maps, train_context

    bsds = Path(data) / "train-bsds500"
    for name in LADDER:

        def run(name=name):
            m = load_model(name)
            paths = select_split(list_images(bsds), "holdout-train")
            r = dict(CONTEXT_RECIPE, steps=steps or CONTEXT_RECIPE["steps"], batch=batch or CONTEXT_RECIPE["batch"])
            recipe = Recipe(
                patch=r["patch"], batch=r["batch"], lr=r["lr"], min_lr=r["lr"] / 100, warmup=1, steps=r["steps"],
                minutes=None, seed=r.get("seed", 0), threads=threads, workers=1,
            )  # fmt: skip
            cm, rec = train_context(
                m, paths, recipe, symbols=r.get("symbols", 4096), log=lambda msg: print(msg, file=sys.stderr)
            )
            val = switch_maps(m, load_rgb(select_split(list_images(bsds), "holdout-val")), flips=False)
            rec.update(
                train_dir="train-bsds500",
                split="holdout-train",
                train_images=len(paths),
                val_bits_per_switch=round(measure(cm, val), 4),
            )
            out = models_dir() / f"{name}.safetensors"
            save_model(
                out,
                m.name,
                m.version + 1,
                m.config,
                m.encoder,
                m.decoder,
                dict(m.meta.get("record", {}), context=rec),
                context=cm,
            )
            entry = register(out, "natural", "train-bsds500 (holdout-train split, 280 images)")
            print(f"{name}: context model, validation {rec['val_bits_per_switch']} bits/switch", file=sys.stderr)
            return entry

        yield "context", name, run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder holding train-bsds500/ and faces-lfw/")
    ap.add_argument(
        "--group",
        choices=["compare", "default", "faces", "pretrained", "control", "natural", "context", "all"],
        default="all",
    )
    ap.add_argument("--only", nargs="*", default=None, help="model names")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-existing", action="store_true", help="skip models already in models/")
    ap.add_argument("--context-steps", type=int, default=None, help="steps of each context model (default 3000)")
    ap.add_argument("--context-batch", type=int, default=None, help="crops per step of the context models (16)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    (ROOT / "runs" / "zoo").mkdir(parents=True, exist_ok=True)
    import itertools

    for group, name, run in itertools.chain(
        jobs(a.data, a.threads), context_jobs(a.data, a.threads, a.context_steps, a.context_batch)
    ):
        if a.only is not None and name not in a.only:
            continue
        if a.group != "all" and group != a.group:  # --group context --only NAME: that model's context
            continue
        if a.skip_existing and (models_dir() / f"{name}.safetensors").exists():
            continue
        run()


if __name__ == "__main__":
    main()
