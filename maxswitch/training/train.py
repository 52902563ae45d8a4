"""The training loop: decoders (``maxswitch train``) and context models (``train-context``).

One loop, ``fit``, serves both: streaming data (``dataset.SwitchCrops``: crops decoded and
encoded on the fly by worker processes, nothing cached that grows with the dataset), a step
or wall-clock budget with warm-up and cosine decay, checkpoints, ``--resume``, any device,
and many processes under ``torchrun`` (DistributedDataParallel: Gloo on CPUs, NCCL on CUDA).
The switches are always computed on the CPU, where the encoder is exact.

Distributed runs: ``--batch`` is the global batch, split evenly between the processes; the
learning rate is not scaled (the same global batch gives the same optimisation). Every rank
draws its slice of the same global batches (dataset.py), so a run's samples do not depend
on the number of processes, and ``--resume`` continues the same stream with any number.
Only rank 0 prints progress, evaluates, and writes checkpoints and the model (atomically).

Recipe and reasoning: docs/TRAINING.md. Never imported by the encode/decode path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as td
import torch.nn.functional as F

from ..config import CONTEXT_MINUTES, TRAIN_MINUTES
from ..image import ImageError
from ..networks.nets import Encoder, ModelConfig, build_decoder, parse_channels
from ..networks.zoo import save_model
from ..progress import bar
from .dataset import DataError, SwitchCrops, default_workers, list_images, loader, read_rgb

__all__ = [
    "SPLITS",
    "OutputExistsError",
    "Recipe",
    "SettingError",
    "TrainError",
    "check_outputs",
    "context_setup",
    "decoder_setup",
    "fit",
    "list_images",
    "train",
]

SPLITS = ("holdout-train", "holdout-val", "lfw-train", "lfw-test")
VAL_IMAGES = 24  # validation images held in memory (full images, switches precomputed)


class TrainError(DataError):
    """A training input problem: empty folder, unreadable images, bad settings."""


class SettingError(TrainError):
    """A training setting that cannot be used. ``setting`` names it as the keyword argument of
    ``decoder_setup`` or ``context_setup`` does (the CLI maps it to its option)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


class ReplaceModelError(TrainError):
    """Writing a refitted model would replace a model whose context model or tables may have
    coded files: they would no longer decode (``check_new_asset``)."""


class OutputExistsError(TrainError):
    """A file that a run would write exists, and neither replacing nor resuming was asked for."""

    def __init__(self, path: str):
        super().__init__(f"{path} already exists")
        self.path = path


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


def load_rgb(paths: list[Path], resize: int | None = None, warn=None) -> list[np.ndarray]:
    """Load images as padded uint8 (H, W, 3); unreadable files are skipped with a warning.

    For the few images a run holds in memory (validation, calibration), never the training set.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    out = []
    for p in paths:
        try:
            out.append(read_rgb(p, resize))
        except (OSError, ImageError) as e:
            warn(f"warning: skipping {p}: {getattr(e, 'strerror', None) or e}")
    return out


def calibration_batch(rgbs: list[np.ndarray], n: int = 8, side: int = 256) -> torch.Tensor:
    """uint8 (n, 3, S, S) top-left crops of the first ``n`` images, to calibrate encoder shifts."""
    crops = [torch.from_numpy(r[:side, :side].copy()).permute(2, 0, 1) for r in rgbs[:n]]
    s = min(min(c.shape[1] for c in crops), min(c.shape[2] for c in crops)) // 8 * 8
    return torch.stack([c[:, :s, :s] for c in crops])


def first_usable(paths: list[Path], patch: int, resize: int | None, want: int = 8) -> list[np.ndarray]:
    """The first ``want`` readable images at least ``patch`` pixels on each side, read in order
    until found; a folder with none is a TrainError that says why (before any training)."""
    out, unreadable, small = [], 0, 0
    for p in paths:
        try:
            rgb = read_rgb(p, resize)
        except (OSError, ImageError):
            unreadable += 1
            continue
        if min(rgb.shape[:2]) < patch:
            small += 1
            continue
        out.append(rgb)
        if len(out) >= want:
            break
    if not out:
        if unreadable == len(paths):
            raise TrainError(f"none of the {len(paths)} image files could be read")
        raise TrainError(
            f"no image is at least {patch} x {patch} pixels ({small} too small, {unreadable} unreadable); "
            "use a smaller crop side (patch)"
        )
    return out


# ----------------------------------------------------------------------------- devices, processes


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``; a missing CUDA is a TrainError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise TrainError(f"unknown device {name!r} (auto, cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise TrainError(f"unsupported device {name!r} (auto, cpu, cuda or cuda:N)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {name}: no CUDA device is available to torch here")
    return dev


@dataclass(frozen=True)
class Dist:
    """This process's place in a run: rank, number of processes, local rank on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def process_place() -> Dist:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
    try:
        return Dist(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
    except ValueError:
        raise TrainError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None


def check_batch(recipe: "Recipe", place: Dist) -> None:
    """The global batch must split evenly; checked on every rank before the processes join,
    so that a bad value fails everywhere instead of leaving the other ranks waiting."""
    if recipe.batch % place.world:
        raise TrainError(f"the global batch of {recipe.batch} crops is not divisible by the {place.world} processes")


def start_processes(place: Dist, device: torch.device) -> torch.device:
    """Join the process group (Gloo on CPU, NCCL on CUDA); return this rank's device."""
    if place.world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", place.local_rank)
            torch.cuda.set_device(device)
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop_processes() -> None:
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()


# ----------------------------------------------------------------------------- settings


def _budget(steps: int | None, minutes: float | None, default_minutes: float) -> float | None:
    """The time budget: ``minutes``, else none when a step budget is given, else the default."""
    if steps is not None and minutes is None:
        return None
    return minutes or default_minutes


def _recipe(patch, batch, lr, steps, minutes, default_minutes, seed, threads, device, workers, **more) -> "Recipe":
    """A Recipe from plain values, each checked (a SettingError names the one that is wrong)."""
    if patch < 8:
        raise SettingError("patch", f"must be at least 8, got {patch}")
    if patch % 8:
        raise SettingError("patch", f"must be a multiple of 8, got {patch}")
    for setting, value, low in (
        ("batch", batch, 1),
        ("steps", steps, 1),
        ("threads", threads, 1),
        ("workers", workers, 0),
    ):
        if value is not None and value < low:
            raise SettingError(setting, f"must be at least {low}, got {value}")
    for setting, value in (("lr", lr), ("minutes", minutes)):
        if value is not None and not value > 0:
            raise SettingError(setting, f"must be above 0, got {value}")
    return Recipe(
        patch=patch,
        batch=batch,
        lr=lr,
        steps=steps,
        minutes=_budget(steps, minutes, default_minutes),
        seed=seed,
        threads=threads or 2,
        device=device,
        workers=default_workers() if workers is None else workers,
        **more,
    )


def check_outputs(paths, replace: bool = False) -> None:
    """Refuse to start a run whose outputs exist (unless ``replace``): fail before training, not after.

    Raises:
        OutputExistsError: the first of ``paths`` that exists.
    """
    if not replace:
        for p in paths:
            if os.path.exists(p):
                raise OutputExistsError(p)


def check_new_asset(source: str, output: str, replace: bool = False) -> None:
    """Check the output of a refit (``train-context``, ``fit-tables``) before any work: a file is
    decoded only by a model with its exact context model or tables, so a refit never replaces a
    model that may have coded files. Refused whatever ``replace`` says: ``output`` being the
    source model itself, or any model asset holding a context model or tables. Any other
    existing file needs ``replace``.

    Raises:
        ReplaceModelError: the output is the source model, or a model with learned codings.
        OutputExistsError: the output exists and ``replace`` is false.
    """
    from ..networks.zoo import ModelError, asset_path, read_metadata

    src = asset_path(source)
    if not os.path.exists(output):
        return
    with contextlib.suppress(OSError):
        if os.path.samefile(src, output):
            raise ReplaceModelError(
                f"{output} is the model being refitted: replacing it in place would leave every file coded with "
                "its context model or tables undecodable; write a new model with -o NEW.safetensors (it records "
                "the next version, and --name gives it a name of its own)"
            )
    try:
        with open(output, "rb") as f:
            meta = read_metadata(f.read())
    except (OSError, ModelError):
        meta = {}
    if meta.get("context_digest") or meta.get("table_digest"):
        raise ReplaceModelError(
            f"{output} holds model {meta.get('name')} v{meta.get('version')} with its own context model or tables: "
            "replacing it would leave the files coded with them undecodable; write the new model to a new file "
            f"(delete {output} first only if no file needs it)"
        )
    check_outputs([output], replace)


@dataclass(frozen=True)
class DecoderSetup:
    """What ``train`` needs besides the data: the model's description, the recipe, the encoder
    to reuse (None: a random one drawn from ``config.encoder_seed``) and the checkpoint file."""

    config: ModelConfig
    recipe: "Recipe"
    encoder: Encoder | None
    checkpoint: str
    init: torch.nn.Module | None = None  # a decoder whose weights the run starts from


def decoder_setup(
    name: str,
    output: str,
    *,
    arch: str = "16,16,16",
    decoder: str = "direct",
    widths: str = "64,48,32",
    pool: str = "max",
    encoder_seed: int = 0,
    encoder_from: str | None = None,
    patch: int = 96,
    batch: int = 16,
    lr: float = 2e-3,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    threads: int | None = 2,
    device: str = "auto",
    amp: bool = False,
    workers: int | None = None,
    checkpoint: str | None = None,
    checkpoint_every: float = 180.0,
    resume: bool = False,
    replace: bool = False,
    what: str | None = None,
    init_from: str | None = None,
) -> DecoderSetup:
    """Check a decoder run's settings, given as plain values (``arch`` and ``widths`` as
    ``"C1,C2,C3"``), and turn them into a ``DecoderSetup`` for ``train``.

    ``minutes`` defaults to ``config.TRAIN_MINUTES`` unless ``steps`` is given; ``workers`` to
    ``dataset.default_workers()``; ``checkpoint`` to ``OUTPUT.ckpt``. Unless ``resume`` or
    ``replace``, neither the output nor the checkpoint may exist. ``encoder_from`` (a model
    name or asset path) lends its encoder, which must have ``arch``'s channels. ``what``
    (``"F,SY,SC"``) makes a decoder of kind "what" that reads a what part of that spec;
    ``init_from`` (a model with the same channels and widths) gives the starting weights
    (for a what decoder: a direct decoder's, ``nets.WhatDecoder.from_direct``; for a fine what
    decoder: a what decoder's, ``nets.WhatFineDecoder.from_what``).

    Raises:
        SettingError: a setting that cannot be used (``setting`` says which).
        OutputExistsError: the output or the checkpoint exists.
        zoo.ModelError: ``encoder_from`` cannot be loaded.
    """
    from ..config import DECODER_KINDS, WHAT_KINDS
    from ..networks.zoo import load_model, valid_name

    if not valid_name(name):
        raise SettingError("name", f"model name {name!r}: use lower-case letters, digits, '.', '_' and '-'")
    try:
        channels = parse_channels(arch)
    except ValueError as e:
        raise SettingError("arch", str(e)) from None
    try:
        wid = parse_channels(widths)
    except ValueError:
        raise SettingError("widths", f"decoder widths must be 3 values in 1..512, got {widths!r}") from None
    if decoder not in DECODER_KINDS:
        raise SettingError("decoder", f"unknown decoder {decoder!r} (known: {', '.join(DECODER_KINDS)})")
    if pool not in ("max", "avg"):
        raise SettingError("pool", f"unknown pooling {pool!r} (max or avg)")
    recipe = _recipe(
        patch,
        batch,
        lr,
        steps,
        minutes,
        TRAIN_MINUTES,
        seed,
        threads,
        device,
        workers,
        amp=amp,
        checkpoint_every_s=checkpoint_every,
    )
    ck = checkpoint or output + ".ckpt"
    check_outputs([output, ck], replace=resume or replace)
    encoder = None
    if encoder_from:
        src = load_model(encoder_from)
        if tuple(src.config.channels) != channels:
            raise SettingError("encoder_from", f"{encoder_from} has channels {src.config.channels}, not {channels}")
        encoder, encoder_seed = src.encoder, src.config.encoder_seed
    spec = ()
    if what:
        from ..bitstream.what import WhatSpec

        try:
            spec = tuple(int(v) for v in what.split(","))
            WhatSpec(*spec)
            if spec[0] > 8:
                raise ValueError("what decoders read blocks of 2, 4 or 8 pixels")
        except (ValueError, TypeError) as e:
            raise SettingError("what", f"what part must be F,STEP_Y,STEP_C (F 2, 4 or 8), got {what!r}: {e}") from None
        decoder = decoder if decoder in WHAT_KINDS else "what"
    elif decoder in WHAT_KINDS:
        raise SettingError("decoder", f"decoder {decoder!r} needs --what F,STEP_Y,STEP_C")
    config = ModelConfig(channels, decoder, wid, pool, encoder_seed, spec)
    init = None
    if init_from:
        from ..networks.nets import WhatDecoder, WhatFineDecoder

        src = load_model(init_from)
        if tuple(src.config.channels) != channels or tuple(src.config.widths) != wid or src.decoder is None:
            raise SettingError("init_from", f"{init_from} must have channels {channels} and widths {wid}")
        if decoder == "what" and src.config.decoder == "direct":
            init = WhatDecoder.from_direct(src.decoder, channels, wid)
        elif decoder == "what-fine" and src.config.decoder == "what":
            init = WhatFineDecoder.from_what(src.decoder, channels, wid)
        elif src.config.decoder == decoder:
            init = src.decoder
        else:
            raise SettingError("init_from", f"cannot start a {decoder} decoder from a {src.config.decoder} one")
    return DecoderSetup(config, recipe, encoder, ck, init)


def context_setup(
    *,
    hidden: str = "32,32",
    patch: int = 64,
    batch: int = 16,
    lr: float = 2e-3,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    workers: int | None = None,
) -> tuple["Recipe", tuple[int, int]]:
    """Check a context-model run's settings (``hidden`` as ``"W1,W2"``); return its Recipe (no
    warm-up, decay to lr / 100, no periodic evaluation; ``minutes`` defaults to
    ``config.CONTEXT_MINUTES`` unless ``steps`` is given) and the two hidden widths.

    Raises:
        SettingError: a setting that cannot be used (``setting`` says which).
    """
    try:
        widths = tuple(int(x) for x in hidden.split(","))
        if len(widths) != 2 or min(widths) < 1 or max(widths) > 256:
            raise ValueError
    except ValueError:
        raise SettingError("hidden", f"two hidden widths in 1..256 are needed (e.g. 32,32), got {hidden!r}") from None
    if patch < 16:
        raise SettingError("patch", f"must be at least 16, got {patch}")
    recipe = _recipe(
        patch,
        batch,
        lr,
        steps,
        minutes,
        CONTEXT_MINUTES,
        seed,
        threads,
        device,
        workers,
        min_lr=lr / 100,
        warmup=1,
        eval_every=10**9,
    )
    return recipe, widths  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the loop


@dataclass
class Recipe:
    """Training hyper-parameters (defaults: docs/TRAINING.md). ``batch`` is the global batch.

    ``warmup``: steps of linear learning-rate warm-up, ended sooner when ``WARMUP_SHARE`` of the
    budget (steps or time) is spent, so that a short run is not all warm-up.
    """

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
    workers: int = 1
    crops_per_image: int = 2


WARMUP_SHARE = 0.05  # the warm-up ends after this share of the budget at the latest

# progress lines: every few seconds where stderr is a terminal (redrawn in place), every minute in a log
PROGRESS_EVERY_TTY_S, PROGRESS_EVERY_LOG_S = 5.0, 60.0


def _lr_at(r: Recipe, progress: float, step: int) -> float:
    warm = min(1.0, max((step + 1) / r.warmup, progress / WARMUP_SHARE))
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return warm * (r.min_lr + (r.lr - r.min_lr) * cos)


@dataclass
class FitResult:
    step: int
    elapsed: float
    history: list = field(default_factory=list)
    last_loss: float | None = None
    loss_ema: float | None = None
    bad_files: int = 0


def fit(
    module: torch.nn.Module,
    loss_fn,
    data: SwitchCrops,
    recipe: Recipe,
    *,
    place: Dist,
    device: torch.device,
    name: str,
    checkpoint: str | None = None,
    resume: bool = False,
    evaluate=None,
    log=None,
    unit: str = "loss",
) -> FitResult:
    """Train ``module`` (already on ``device``) to minimise ``loss_fn(module, batch, step)``.

    Args:
        data: the sample stream; each rank reads its slice of every global batch.
        evaluate: ``evaluate(module) -> dict`` run by rank 0 every ``recipe.eval_every`` steps.
        log: progress lines (rank 0 only; other ranks print warnings only).
        unit: what the loss is called in the progress line ("loss (dB)" adds a PSNR reading).

    Returns:
        step count, elapsed seconds, evaluation history, the last step's loss (mean over
        all ranks), its moving average, and the number of unusable files met.
    """
    status = _Status(log or (lambda m: print(m, file=sys.stderr, flush=True)), place.main)
    say, warn = status.line, status.warn
    opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
    step, elapsed, history = 0, 0.0, []
    if resume:
        if not (checkpoint and os.path.isfile(checkpoint)):
            raise TrainError(f"cannot resume: no checkpoint at {checkpoint}")
        ck = torch.load(checkpoint, weights_only=True, map_location=device)
        module.load_state_dict(ck["module"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = int(ck["step"]), float(ck["elapsed"])
        history = json.loads(ck["history"])
        say(
            f"{name}: resumed at step {step} ({elapsed / 60:.1f} min; it ran with {int(ck.get('world', 1))} process(es))"
        )
        done = step >= recipe.steps if recipe.steps is not None else elapsed >= recipe.minutes * 60
        if done:
            budget = f"{recipe.steps} steps" if recipe.steps is not None else f"{recipe.minutes:g} minutes"
            raise TrainError(
                f"the checkpoint has already spent the budget of {budget} (step {step}, "
                f"{elapsed / 60:.1f} min); give a larger budget to train further"
            )
    model = module
    if place.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.amp)

    def save_ck():
        if checkpoint and place.main:
            os.makedirs(os.path.dirname(os.path.abspath(checkpoint)), exist_ok=True)
            tmp = f"{checkpoint}.{os.getpid()}.tmp"
            state = {
                "module": module.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "history": json.dumps(history),
                "world": place.world,
            }
            torch.save(state, tmp)
            os.replace(tmp, checkpoint)

    batches = iter(loader(data, step, recipe.batch, place.rank, place.world, recipe.workers))
    res = FitResult(step, elapsed, history)
    module.train()
    step0, t_run, last_ck = step, time.time(), time.time()
    t_start = time.time() - elapsed
    seen_bad: set[str] = set()
    while True:
        progress = step / recipe.steps if recipe.steps is not None else elapsed / (recipe.minutes * 60)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = _lr_at(recipe, progress, step)
        batch = next(batches)
        if "fatal" in batch:
            raise TrainError(batch["fatal"])
        for path, why in batch["bad"]:
            if path not in seen_bad:
                seen_bad.add(path)
                warn(f"{name}: warning: skipping {path}: {why}")
        with amp:
            loss = loss_fn(model, batch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        # one collective a step: the mean loss over ranks, and rank 0's clock for everyone
        stats = torch.tensor([loss.item(), time.time() - t_start if place.main else 0.0], dtype=torch.float64)
        if place.world > 1:
            td.all_reduce(stats)
        res.last_loss = float(stats[0]) / place.world
        elapsed = float(stats[1])
        res.loss_ema = res.last_loss if res.loss_ema is None else 0.98 * res.loss_ema + 0.02 * res.last_loss
        if status.due() or step == 1:
            rate = (step - step0) / max(time.time() - t_run, 1e-9)
            done = step / recipe.steps if recipe.steps is not None else elapsed / (recipe.minutes * 60)
            left = (recipe.steps - step) / max(rate, 1e-9) if recipe.steps else recipe.minutes * 60 - elapsed
            status.progress(
                f"{name}: {bar(done)} step {step}{'/' + str(recipe.steps) if recipe.steps else ''} "
                f"{elapsed / 60:5.1f} min, ~{max(left, 0) / 60:.1f} min left  {unit} {res.loss_ema:.5f}{_db(res.loss_ema, unit)}  {rate:.2f} steps/s  "
                f"lr {opt.param_groups[0]['lr']:.2e}"
            )
        if evaluate is not None and place.main and step % recipe.eval_every == 0:
            module.eval()
            with torch.no_grad():
                v = evaluate(module)
            module.train()
            history.append({"step": step, "minutes": round(elapsed / 60, 2), **v})
            say(f"{name}: step {step} " + ", ".join(f"{k} {x}" for k, x in v.items()))
        if time.time() - last_ck > recipe.checkpoint_every_s:
            save_ck()
            last_ck = time.time()
    save_ck()
    status.end()
    bad = torch.tensor([len(seen_bad)])
    if place.world > 1:
        td.all_reduce(bad)
    res.step, res.elapsed, res.history, res.bad_files = step, elapsed, history, int(bad)
    if res.bad_files:
        say(f"{name}: {res.bad_files} unusable file(s) skipped in all (one warning each per process)")
    return res


def _db(loss: float | None, unit: str) -> str:
    """`` (~P dB)``: the PSNR a mean squared error (``unit`` "mse") stands for; "" otherwise."""
    if unit != "mse" or loss is None:
        return ""
    return f" (~{10 * math.log10(1 / max(loss, 1e-10)):.2f} dB)"


class _Status:
    """Training's messages on rank 0: lines through ``log``, and progress by time: where stderr
    is a terminal, a line redrawn in place every ``PROGRESS_EVERY_TTY_S``; elsewhere (a log, a
    pipe, CI) a line of its own every ``PROGRESS_EVERY_LOG_S``. Warnings come from every rank."""

    def __init__(self, log, main: bool):
        self.log, self.main = log, main
        self.tty = main and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.every = PROGRESS_EVERY_TTY_S if self.tty else PROGRESS_EVERY_LOG_S
        self.last, self.drawn = time.monotonic(), False

    def due(self) -> bool:
        return self.main and time.monotonic() - self.last >= self.every

    def progress(self, text: str) -> None:
        if not self.main:
            return
        self.last = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + text + "\x1b[K")
            sys.stderr.flush()
            self.drawn = True
        else:
            self.log(text)

    def end(self) -> None:
        """End a progress line drawn in place, so that the next message starts a line of its own."""
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False

    def line(self, text: str) -> None:
        if self.main:
            self.end()
            self.log(text)

    def warn(self, text: str) -> None:
        self.end()
        print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- decoders


@dataclass
class SwitchSet:
    """A few whole images and their switches (all uint8, channels first), for validation."""

    images: list[torch.Tensor] = field(default_factory=list)  # (3, H, W)
    codes: list[list[torch.Tensor]] = field(default_factory=list)  # 3 x (C_s, H/2^s, W/2^s)

    def __len__(self):
        return len(self.images)

    def to(self, device: torch.device) -> "SwitchSet":
        """The same set with every tensor on ``device``."""
        return SwitchSet([t.to(device) for t in self.images], [[c.to(device) for c in cs] for cs in self.codes])


def precompute(encoder: Encoder, rgbs: list[np.ndarray], flips: bool = True, what=None) -> SwitchSet:
    """Encode whole images (and their mirror images if ``flips``) on the CPU, where the
    encoder is exact: what ``maxswitch encode`` writes, bit for bit. With ``what`` (a
    ``what.WhatSpec``) each image's what picture is a 4th map of its codes."""
    out = SwitchSet()
    for rgb in rgbs:
        for v in [rgb, rgb[:, ::-1]] if flips else [rgb]:
            t = torch.from_numpy(np.array(v)).permute(2, 0, 1).contiguous()  # a writable copy
            out.images.append(t)
            codes = [c[0] for c in encoder(t[None])]
            if what is not None:
                from ..bitstream import what as whatlib

                pic = whatlib.dequantize(whatlib.describe(np.ascontiguousarray(v), what), what)
                codes.append(torch.from_numpy(pic).permute(2, 0, 1).contiguous())
            out.codes.append(codes)
    return out


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = F.mse_loss(x, y).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


@torch.no_grad()
def evaluate(decoder, data: SwitchSet, step: int = 1) -> float:
    """Mean PSNR over whole images of ``data`` (every ``step``-th), decoded to 8 bits."""
    vals = []
    for i in range(0, len(data), step):
        x_hat = decoder([c[None] for c in data.codes[i]]).float().clamp_(0, 1)
        x_hat = (x_hat * 255).round() / 255
        vals.append(psnr(x_hat, data.images[i][None].float() / 255))
    return float(np.mean(vals)) if vals else float("nan")


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
    init: torch.nn.Module | None = None,
    keep_checkpoint: bool = False,
) -> dict:
    """Train a decoder on ``train_dir`` (a folder or a list file) and write a model asset.

    Under torchrun every process calls this; rank 0 writes the asset. The schedule follows
    ``recipe.steps`` if set, else rank 0's elapsed time over ``recipe.minutes``; with steps,
    a fixed seed repeats a run (same thread count). Once the asset is written the checkpoint is
    removed, unless ``keep_checkpoint`` (to continue later with a larger budget and ``resume``).

    Returns:
        The training record (steps, time, validation PSNR history, ...).
    """
    place = process_place()
    device = resolve_device(recipe.device)
    if recipe.amp and device.type != "cuda":
        raise TrainError("amp (bf16 autocast) needs a CUDA device: on the CPU it is slower, not faster")
    say = (log or (lambda m: print(m, file=sys.stderr, flush=True))) if place.main else (lambda m: None)
    torch.set_num_threads(recipe.threads)
    paths = select_split(list_images(train_dir), split)
    if not paths:
        raise TrainError(f"no images found in {train_dir}")
    first = first_usable(paths, recipe.patch, resize)
    if encoder is None:
        encoder = Encoder.random(
            config.channels, seed=config.encoder_seed, calibration=calibration_batch(first), pool=config.pool
        )
    check_batch(recipe, place)
    device = start_processes(place, device)
    try:
        spec = None
        if config.what:
            from ..bitstream.what import WhatSpec

            spec = WhatSpec(*config.what)
        data = SwitchCrops(paths, encoder, recipe.patch, recipe.seed, recipe.crops_per_image, resize, what=spec)
        val = None
        if val_dir and place.main:
            vpaths = select_split(list_images(val_dir), val_split)
            val = precompute(encoder, load_rgb(vpaths[:VAL_IMAGES], resize), flips=False, what=spec).to(device)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        say(
            f"{name}: {len(paths)} training images, streamed; {place.world} process(es) on {device_name}"
            f"{' with bf16 autocast' if recipe.amp else ''}; global batch {recipe.batch} "
            f"({recipe.batch // place.world} per process) of {recipe.patch} px crops, lr {recipe.lr:g}, "
            f"{recipe.workers} data worker(s) per process"
        )
        torch.manual_seed(recipe.seed)
        decoder = build_decoder(config)
        if init is not None:
            decoder.load_state_dict(init.state_dict())
        decoder = decoder.to(device)

        def loss_fn(model, batch, step):
            x = batch["image"].to(device, non_blocking=True).float().div_(255.0)
            codes = [c.to(device, non_blocking=True) for c in batch["codes"]]
            if "what" in batch:
                codes.append(batch["what"].to(device, non_blocking=True))
            return F.mse_loss(model(codes).float(), x)

        evaluate_fn = (lambda m: {"val_psnr": round(evaluate(m, val), 3)}) if val is not None else None
        res = fit(
            decoder,
            loss_fn,
            data,
            recipe,
            place=place,
            device=device,
            name=name,
            checkpoint=checkpoint,
            resume=resume,
            evaluate=evaluate_fn,
            log=say,
            unit="mse",
        )
        final_val = evaluate(decoder.eval(), val) if val is not None else None
        record = {
            "train_dir": os.path.basename(os.path.normpath(train_dir)),
            "split": split,
            "train_images": len(paths),
            "steps": res.step,
            "minutes": round(res.elapsed / 60, 2),
            "recipe": asdict(recipe),
            "processes": place.world,
            "global_batch": recipe.batch,
            "val_dir": os.path.basename(os.path.normpath(val_dir)) if val_dir else None,
            "val_psnr": None if final_val is None else round(final_val, 3),
            "history": res.history,
            "last_loss": res.last_loss,
            "torch": torch.__version__,
            "device": device_name,
        }
        if record_extra:
            record.update(record_extra)
        if place.main:
            sha = save_model(out_path, name, version, config, encoder, decoder.cpu().eval(), record)
            record["sha256"] = sha
            if checkpoint and not keep_checkpoint:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(checkpoint)
            val_text = "" if final_val is None else f", validation PSNR {final_val:.2f} dB"
            loss = f"{res.loss_ema:.5f}{_db(res.loss_ema, 'mse')}" if res.loss_ema is not None else "-"
            kept = f"; checkpoint kept: {checkpoint}" if checkpoint and keep_checkpoint else ""
            say(
                f"{name}: done: {res.step} steps in {res.elapsed / 60:.1f} min, training mse {loss}{val_text}; "
                f"wrote {out_path}{kept}"
            )
        if place.world > 1:
            td.barrier()
        return record
    finally:
        stop_processes()
