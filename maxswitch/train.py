"""Training a decoder on the switches of a fixed random encoder.

The encoder is fixed, so the switches of every training image are computed once, up front
(for the image and its mirror image), and training only runs the decoder on random crops:
an aligned 8x8-multiple crop of an image has as switches the same crop of the image's
switch maps. This makes a training step cost the decoder alone.

Recipe and reasoning: docs/TRAINING.md. Used by ``maxswitch train``; never imported by the
encode/decode path.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import image as imagelib
from .errors import MaxswitchError
from .nets import Encoder, ModelConfig, build_decoder
from .zoo import save_model

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}


SPLITS = ("holdout-train", "holdout-val", "lfw-train", "lfw-test")


class TrainError(MaxswitchError):
    """A training input problem: empty folder, unreadable images, bad options."""


def list_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder``, recursively, in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def select_split(paths: list[Path], split: str | None) -> list[Path]:
    """Apply a named split to a folder's images, sorted by file name in byte order.

    ``lfw-train``/``lfw-test``: faces-lfw's fixed split (every tenth image is test).
    ``holdout-train``/``holdout-val``: every fifteenth image is held out for validation.
    """
    if split is None:
        return paths
    names = sorted(paths, key=lambda p: p.name.encode())
    if split == "holdout-val":
        return [p for i, p in enumerate(names) if i % 15 == 0]
    if split == "holdout-train":
        return [p for i, p in enumerate(names) if i % 15 != 0]
    if split == "lfw-test":
        return [p for i, p in enumerate(names) if i % 10 == 0]
    if split == "lfw-train":
        return [p for i, p in enumerate(names) if i % 10 != 0]
    raise TrainError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")


def load_rgb(paths: list[Path], resize: int | None = None) -> list[np.ndarray]:
    """Load images as padded uint8 (H, W, 3); unreadable files are skipped with a warning."""
    out = []
    for p in paths:
        try:
            rgb = imagelib.load(p.read_bytes()).rgb
        except (OSError, imagelib.ImageError) as e:
            print(f"warning: skipping {p}: {e}", file=sys.stderr)
            continue
        if resize:
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((resize, resize), Image.BICUBIC))
        out.append(imagelib.pad_to_multiple(rgb))
    return out


def calibration_batch(rgbs: list[np.ndarray], n: int = 8, side: int = 256) -> torch.Tensor:
    """uint8 (n, 3, S, S) top-left crops of the first ``n`` images, to calibrate encoder shifts."""
    crops = [torch.from_numpy(r[:side, :side].copy()).permute(2, 0, 1) for r in rgbs[:n]]
    s = min(min(c.shape[1] for c in crops), min(c.shape[2] for c in crops)) // 8 * 8
    return torch.stack([c[:, :s, :s] for c in crops])


@dataclass
class SwitchSet:
    """Images and their precomputed switches (all uint8, channels first)."""

    images: list[torch.Tensor] = field(default_factory=list)  # (3, H, W)
    codes: list[list[torch.Tensor]] = field(default_factory=list)  # 3 x (C_s, H/2^s, W/2^s)

    def __len__(self):
        return len(self.images)

    def to(self, device: torch.device) -> "SwitchSet":
        """The same set with every tensor on ``device`` (crops are then cut there)."""
        return SwitchSet([t.to(device) for t in self.images], [[c.to(device) for c in cs] for cs in self.codes])


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``; a missing CUDA is a TrainError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available to torch here")
    if dev.type not in ("cpu", "cuda"):
        raise TrainError(f"unsupported device {name!r} (auto, cpu or cuda)")
    return dev


def precompute(encoder: Encoder, rgbs: list[np.ndarray], flips: bool = True) -> SwitchSet:
    """Encode every image (and its mirror image if ``flips``) once, on the CPU.

    The encoder always runs on the CPU, whatever device trains the decoder: its integer
    arithmetic is exact there by construction (nets.py), so training sees the switches that
    ``maxswitch encode`` writes, bit for bit.
    """
    out = SwitchSet()
    for rgb in rgbs:
        variants = [rgb, rgb[:, ::-1]] if flips else [rgb]
        for v in variants:
            t = torch.from_numpy(np.array(v)).permute(2, 0, 1).contiguous()  # a writable copy
            codes = encoder(t[None])
            out.images.append(t)
            out.codes.append([c[0] for c in codes])
    return out


def sample_batch(data: SwitchSet, batch: int, patch: int, rng: random.Random):
    """Random aligned crops: images (B, 3, P, P) float in [0, 1] and their switches."""
    imgs, codes = [], [[], [], []]
    for _ in range(batch):
        i = rng.randrange(len(data))
        img = data.images[i]
        H, W = img.shape[1:]
        p = min(patch, H, W) // 8 * 8
        y = rng.randrange(0, (H - p) // 8 + 1) * 8
        x = rng.randrange(0, (W - p) // 8 + 1) * 8
        imgs.append(img[:, y : y + p, x : x + p])
        for s in range(3):
            f = 2 ** (s + 1)
            codes[s].append(data.codes[i][s][:, y // f : (y + p) // f, x // f : (x + p) // f])
    return torch.stack(imgs).float().div_(255.0), [torch.stack(c) for c in codes]


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = F.mse_loss(x, y).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


@torch.no_grad()
def evaluate(decoder, data: SwitchSet, step: int = 2) -> float:
    # every tensor of ``data`` must be on the decoder's device
    """Mean PSNR over full images of ``data`` (every ``step``-th, skipping mirror images)."""
    decoder.eval()
    vals = []
    for i in range(0, len(data), step):
        x_hat = decoder([c[None] for c in data.codes[i]]).clamp_(0, 1)
        x_hat = (x_hat * 255).round() / 255
        vals.append(psnr(x_hat, data.images[i][None].float() / 255))
    decoder.train()
    return float(np.mean(vals)) if vals else float("nan")


@dataclass
class Recipe:
    """Training hyper-parameters (defaults: docs/TRAINING.md)."""

    patch: int = 96
    batch: int = 16
    lr: float = 2e-3
    min_lr: float = 2e-5
    warmup: int = 100
    steps: int | None = None
    minutes: float | None = 20.0
    seed: int = 0
    threads: int = 2
    eval_every: int = 250
    checkpoint_every_s: float = 180.0
    device: str = "cpu"
    amp: bool = False


def _lr_at(r: Recipe, progress: float, step: int) -> float:
    warm = min(1.0, (step + 1) / r.warmup)
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return warm * (r.min_lr + (r.lr - r.min_lr) * cos)


def train(
    train_dir: str,
    out_path: str,
    name: str,
    config: ModelConfig,
    recipe: Recipe,
    val_dir: str | None = None,
    encoder: Encoder | None = None,
    split: str | None = None,
    val_split: str | None = None,
    resize: int | None = None,
    checkpoint: str | None = None,
    resume: bool = False,
    version: int = 1,
    log=None,
    record_extra: dict | None = None,
) -> dict:
    """Train a decoder and write a model asset to ``out_path``.

    Progress goes to ``log`` (stderr by default). The schedule follows ``recipe.steps`` if
    set, else elapsed time over ``recipe.minutes``; with steps, a fixed seed repeats a run.

    Returns:
        The training record (steps, time, validation PSNR history, ...).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    device = resolve_device(recipe.device)
    if recipe.amp and device.type != "cuda":
        raise TrainError("--amp needs a CUDA device (bf16 autocast on the CPU is slower, not faster)")
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    paths = select_split(list_images(train_dir), split)
    if not paths:
        raise TrainError(f"no images found in {train_dir}")
    rgbs = load_rgb(paths, resize)
    if not rgbs:
        raise TrainError(f"none of the {len(paths)} files in {train_dir} could be read")
    if encoder is None:
        encoder = Encoder.random(
            config.channels, seed=config.encoder_seed, calibration=calibration_batch(rgbs), pool=config.pool
        )
    t0 = time.time()
    data = precompute(encoder, rgbs, flips=True).to(device)
    val = None
    if val_dir:
        vpaths = select_split(list_images(val_dir), val_split)
        val = precompute(encoder, load_rgb(vpaths[:24], resize), flips=False).to(device)
    log(f"{name}: {len(rgbs)} training images ({len(data)} with mirrors), switches in {time.time() - t0:.1f}s")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"{name}: training on {device_name}{' with bf16 autocast' if recipe.amp else ''}")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.amp)

    decoder = build_decoder(config).to(device)
    opt = torch.optim.Adam(decoder.parameters(), lr=recipe.lr)
    step, elapsed, history = 0, 0.0, []
    if resume and not (checkpoint and os.path.isfile(checkpoint)):
        raise TrainError(f"cannot resume: no checkpoint at {checkpoint}")
    if resume:
        ck = torch.load(checkpoint, weights_only=True, map_location=device)
        decoder.load_state_dict(ck["decoder"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = int(ck["step"]), float(ck["elapsed"])
        history = json.loads(ck["history"])
        rng.setstate(_tuple(json.loads(ck["rng"])))
        log(f"{name}: resumed at step {step} ({elapsed / 60:.1f} min)")
        done = step >= recipe.steps if recipe.steps is not None else elapsed >= recipe.minutes * 60
        if done:
            budget = f"{recipe.steps} steps" if recipe.steps is not None else f"{recipe.minutes:g} minutes"
            raise TrainError(
                f"the checkpoint has already spent the budget of {budget} (step {step}, "
                f"{elapsed / 60:.1f} min); give a larger budget to train further"
            )

    def save_ck():
        if checkpoint:
            os.makedirs(os.path.dirname(os.path.abspath(checkpoint)), exist_ok=True)
            tmp = checkpoint + ".tmp"
            torch.save(
                {
                    "decoder": decoder.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "elapsed": elapsed,
                    "history": json.dumps(history),
                    "rng": json.dumps(rng.getstate()),
                },
                tmp,
            )
            os.replace(tmp, checkpoint)

    decoder.train()
    step0, t_run = step, time.time()
    last_ck = time.time()
    t_start = time.time() - elapsed
    loss_avg = None
    while True:
        elapsed = time.time() - t_start
        if recipe.steps is not None:
            progress = step / recipe.steps
        else:
            progress = elapsed / (recipe.minutes * 60)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = _lr_at(recipe, progress, step)
        x, codes = sample_batch(data, recipe.batch, recipe.patch, rng)
        with amp:
            x_hat = decoder(codes)
        loss = F.mse_loss(x_hat.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % 50 == 0 or step == 1:
            rate = (step - step0) / max(time.time() - t_run, 1e-9)
            log(
                f"{name}: {_bar(progress)} step {step}{'/' + str(recipe.steps) if recipe.steps else ''} "
                f"{elapsed / 60:5.1f} min  loss {loss_avg:.5f} (~{10 * math.log10(1 / max(loss_avg, 1e-10)):.2f} dB)  "
                f"{rate:.2f} steps/s  lr {opt.param_groups[0]['lr']:.2e}"
            )
        if val is not None and step % recipe.eval_every == 0:
            v = evaluate(decoder, val, step=1)
            history.append({"step": step, "minutes": round(elapsed / 60, 2), "val_psnr": round(v, 3)})
            log(f"{name}: step {step} validation PSNR {v:.2f} dB")
        if time.time() - last_ck > recipe.checkpoint_every_s:
            save_ck()
            last_ck = time.time()
    save_ck()
    final_val = evaluate(decoder, val, step=1) if val is not None else None
    record = {
        "train_dir": os.path.basename(os.path.normpath(train_dir)),
        "split": split,
        "train_images": len(rgbs),
        "steps": step,
        "minutes": round(elapsed / 60, 2),
        "recipe": {k: v for k, v in vars(recipe).items()},
        "val_dir": os.path.basename(os.path.normpath(val_dir)) if val_dir else None,
        "val_psnr": None if final_val is None else round(final_val, 3),
        "history": history,
        "torch": torch.__version__,
        "device": device_name,
    }
    if record_extra:
        record.update(record_extra)
    sha = save_model(out_path, name, version, config, encoder, decoder.cpu().eval(), record)
    record["sha256"] = sha
    val_text = "" if final_val is None else f", validation PSNR {final_val:.2f} dB"
    log(f"{name}: wrote {out_path} after {step} steps{val_text}")
    return record


def _bar(progress: float, width: int = 20) -> str:
    """A text progress bar such as ``[#####...............]  25%``."""
    done = int(round(min(max(progress, 0.0), 1.0) * width))
    return f"[{'#' * done}{'.' * (width - done)}] {100 * min(progress, 1.0):3.0f}%"


def _tuple(x):
    return tuple(_tuple(i) for i in x) if isinstance(x, list) else x
