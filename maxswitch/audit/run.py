"""``maxswitch audit``: how much of its input image do a network's max-pool switches give away?

For each audited pooling layer, a decoder (``audit_decoder.SwitchDecoder``) learns to rebuild
the image from that layer's switches alone (``inputs="alone"``) or from those of every pooling
layer up to it (``"upto"``), on crops of the training images; then every decoder rebuilds the
held-out images, and the report gives PSNR, SSIM and MS-SSIM (``metrics.distortion``), the
switches' raw bits per pixel and their coded size (each layer's switches packed at
ceil(log2 positions) bits and coded by zstd; for maxswitch's own models with all three stages
read, also the model's learned coding), beside two controls trained the same way: a decoder that
gets no switches (it learns a mean image) and one given an average pool's positions (the same
position in every window: no information either; the two controls' gap shows the budget's noise).

All decoders train together in ``train.fit``, the loop of ``maxswitch train`` (its budgets,
checkpoints, ``--resume``, devices and torchrun), on one stream of crops: each decoder's
gradients are its own, so this is training each on the same batches. Each decoder starts from
``torch.manual_seed(seed)``, so a decoder that reads a maxswitch model's three stages starts,
and trains, exactly as ``maxswitch train --encoder-from MODEL`` does (``tests/test_audit.py``).

What the figures mean, and what they do not: docs/AUDIT.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from .. import image as imagelib
from ..config import AUDIT_MINUTES
from ..evaluation.metrics import distortion, mean
from ..training.dataset import SwitchCrops, list_images
from ..training.train import (
    VAL_IMAGES,
    FitResult,
    Recipe,
    SettingError,
    _recipe,
    check_batch,
    first_usable,
    fit,
    process_place,
    resolve_device,
    select_split,
    start_processes,
    stop_processes,
)
from .decoder import DecoderSet, SwitchDecoder
from .model import AuditError, Target, load_target

INPUTS = ("alone", "upto", "both")
# the two halves of train.SPLITS: held-out images come from the half a run does not train on
PAIRED_SPLITS = {"holdout-train": "holdout-val", "holdout-val": "holdout-train", "lfw-train": "lfw-test"}
PAIRED_SPLITS["lfw-test"] = "lfw-train"
CONTROLS = ("deepest", "each", "none")


@dataclass
class AuditSetup:
    """A checked audit: the network, what to audit, the data and the recipe (``audit_setup``)."""

    target: Target
    layers: list[int]
    inputs: str
    controls: str
    recipe: Recipe
    train_paths: list[Path]
    val_paths: list[Path]
    data: dict
    resize: int | None = None
    width: int = 16
    checkpoint: str | None = None
    resume: bool = False
    grid_images: int = 4
    specs: dict = field(default_factory=dict)  # decoder key -> (reads, control or None, layer, inputs)


def parse_layers(text: str | None, layers) -> list[int]:
    """``all``, or indices, ranges and names, comma-separated (``1,3``, ``2-4``, ``features.4``).

    Raises:
        SettingError: an index out of range or a name no layer has.
    """
    if text is None or text.strip() in ("", "all"):
        return [lay.index for lay in layers]
    names = {lay.name: lay.index for lay in layers}
    found = ", ".join(f"{lay.index} {lay.name}" for lay in layers)
    out = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            if not 1 <= a <= b <= len(layers):
                raise SettingError("layers", f"{part!r} is not among the pooling layers found ({found})")
            out.extend(range(a, b + 1))
        elif part in names:
            out.append(names[part])
        else:
            raise SettingError("layers", f"no pooling layer {part!r} (found: {found})")
    return sorted(set(out))


def decoder_specs(layers: list[int], inputs: str, controls: str) -> dict:
    """key -> (layer indices read, control, audited layer, inputs kind) of every decoder to train.

    ``L{i}`` reads layer i alone, ``L1-{i}`` every layer up to i; the controls ``none`` and ``avg``
    read the shapes of the deepest audited layer (``controls="each"``: ``none-L{i}``, ``avg-L{i}``).
    """
    specs = {}
    for i in layers:
        if inputs in ("alone", "both") or i == 1:
            specs[f"L{i}"] = ([i], None, i, "alone")
        if inputs in ("upto", "both") and i > 1:
            specs[f"L1-{i}"] = (list(range(1, i + 1)), None, i, "upto")
    ctl = layers[-1:] if controls == "deepest" else layers if controls == "each" else []
    for i in ctl:
        for c in ("none", "avg"):
            specs[c if controls == "deepest" else f"{c}-L{i}"] = ([i], c, i, "control")
    return specs


def audit_setup(
    model: str,
    data_dir: str,
    *,
    weights: str | None = None,
    random: int | None = None,
    normalize: str = "unit",
    layers: str | None = None,
    inputs: str = "alone",
    controls: str = "deepest",
    split: str | None = None,
    val_dir: str | None = None,
    val_split: str | None = None,
    val_images: int = VAL_IMAGES,
    resize: int | None = None,
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
    eval_every: int | None = None,
    width: int = 16,
    grid_images: int = 4,
) -> AuditSetup:
    """Check an audit's settings, build the network and find its pooling layers: every refusal
    comes here, before any training.

    ``DATA_DIR`` without ``val_dir`` is split by the ``holdout`` rule (every fifteenth image held
    out), or by the pair of named splits that ``split`` or ``val_split`` belongs to (``lfw-train``
    and ``lfw-test``); with ``val_dir``, the held-out images come from there. ``minutes`` defaults to ``config.AUDIT_MINUTES`` unless ``steps`` is given.

    Raises:
        SettingError: a setting that cannot be used (``setting`` names it).
        AuditError: the model, its weights or the data cannot be used (one line).
        pooling.PoolingError: the network has no max pooling, or fails on a ``patch`` image.
    """
    if inputs not in INPUTS:
        raise SettingError("inputs", f"unknown {inputs!r} ({', '.join(INPUTS)})")
    if controls not in CONTROLS:
        raise SettingError("controls", f"unknown {controls!r} ({', '.join(CONTROLS)})")
    if not 1 <= width <= 256:
        raise SettingError("width", f"must be in 1..256, got {width}")
    if val_images < 1:
        raise SettingError("val_images", f"must be at least 1, got {val_images}")
    if resume and not checkpoint:
        raise SettingError("resume", "needs --checkpoint, the file to resume from")
    recipe = _recipe(
        patch,
        batch,
        lr,
        steps,
        minutes,
        AUDIT_MINUTES,
        seed,
        threads,
        device,
        workers,
        amp=amp,
        checkpoint_every_s=checkpoint_every,
        eval_every=eval_every or 10**9,
    )
    # the data first: an empty folder is refused before any user code runs
    if val_dir is None:  # held out from DATA_DIR itself: the other half of a named split
        if split is None and val_split is None:
            split, val_split = "holdout-train", "holdout-val"
        split = split or PAIRED_SPLITS.get(val_split)
        val_split = val_split or PAIRED_SPLITS.get(split)
        if split is None or val_split is None or PAIRED_SPLITS.get(split) != val_split:
            raise SettingError(
                "val_split",
                f"held-out images from DATA_DIR need a pair of splits (holdout-train and holdout-val, "
                f"lfw-train and lfw-test), got {split} and {val_split}; or give --val",
            )
    train_paths = select_split(list_images(data_dir), split)
    if not train_paths:
        raise AuditError(f"no images found in {data_dir}" + (f" (split {split})" if split else ""))
    val_source = val_dir if val_dir is not None else data_dir
    val_paths = select_split(list_images(val_source), val_split)[:val_images]
    if not val_paths:
        raise AuditError(f"no held-out images in {val_source}" + (f" (split {val_split})" if val_split else ""))
    first_usable(train_paths, patch, resize, want=1)
    target = load_target(model, weights=weights, random_seed=random, seed=seed, normalize=normalize)
    found = target.probe.discover(patch)
    chosen = parse_layers(layers, found)
    data = {
        "train_dir": os.path.basename(os.path.normpath(data_dir)),
        "split": split,
        "train_images": len(train_paths),
        "val_dir": os.path.basename(os.path.normpath(val_source)),
        "val_split": val_split,
        "val_images": len(val_paths),
        "resize": resize,
    }
    return AuditSetup(
        target,
        chosen,
        inputs,
        controls,
        recipe,
        train_paths,
        val_paths,
        data,
        resize=resize,
        width=width,
        checkpoint=checkpoint,
        resume=resume,
        grid_images=grid_images,
        specs=decoder_specs(chosen, inputs, controls),
    )


def build_decoders(setup: AuditSetup) -> DecoderSet:
    """Every decoder of the audit, each initialised from ``torch.manual_seed(seed)``."""
    layers = setup.target.probe.layers
    built = {}
    for key, (reads, control, _, _) in setup.specs.items():
        torch.manual_seed(setup.recipe.seed)
        ins = [(layers[i - 1].level, layers[i - 1].out_shape[0], layers[i - 1].positions) for i in reads]
        built[key] = (reads, SwitchDecoder(ins, setup.width, control))
    return DecoderSet(built)


# ----------------------------------------------------------------------------- coded sizes


def pack_switches(codes: np.ndarray, positions: int) -> bytes:
    """Pack switches (any shape, channel by channel, row-major) at ceil(log2 positions) bits each,
    most significant bit first; 2-bit switches in format v1's layout (``switches.pack``)."""
    from ..bitstream.switches import pack

    bits = max(1, math.ceil(math.log2(positions)))
    flat = np.ascontiguousarray(codes).reshape(-1)
    if bits == 2:
        return bytes(pack([flat.astype(np.uint8)]))
    wide = flat.astype(">u2").view(np.uint8).reshape(-1, 2)  # big-endian 16-bit words
    allbits = np.unpackbits(wide, axis=1)[:, 16 - bits :]
    return np.packbits(allbits.reshape(-1)).tobytes()


def zstd_size(chunks: list[bytes]) -> int:
    """Bytes of the chunks, concatenated, as one zstd frame at the level format v1 uses."""
    from ..bitstream.switches import compress

    return len(compress(b"".join(chunks)))


# ----------------------------------------------------------------------------- evaluation


def read_held_out(path: Path, resize: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (H, W, 3) padded to multiples of 8 as ``train`` pads, and the image's own (h, w)."""
    rgb = imagelib.load(Path(path).read_bytes()).rgb
    if resize:
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((resize, resize), Image.BICUBIC))
    return imagelib.pad_to_multiple(rgb), rgb.shape[:2]


def _to_uint8(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    """float (1, 3, H, W) -> uint8 (h, w, 3), rounded as ``decode`` rounds."""
    return x_hat[0, :, :h, :w].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _switches_of(probe, x: torch.Tensor, upto: int, name: str) -> list[torch.Tensor]:
    try:
        with torch.autocast(x.device.type, enabled=False):
            return probe.switches(x, upto)
    except AuditError:
        raise
    except Exception as e:  # noqa: BLE001  the user's network failing on an image
        raise AuditError(f"held-out image {name} ({x.shape[-1]} x {x.shape[-2]}): the network failed: {e}") from None


@torch.no_grad()
def quick_psnr(setup: AuditSetup, decoders: DecoderSet, held: list, device) -> dict:
    """Mean PSNR of every decoder on the held-out images (the periodic evaluation of ``fit``)."""
    deepest = max(max(r) for r in decoders.reads.values())
    out: dict[str, list[float]] = {k: [] for k in decoders.reads}
    for name, rgb, (h, w) in held:
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].contiguous().to(device)
        codes = _switches_of(setup.target.probe, x, deepest, name)
        for k, x_hat in decoders(codes, tuple(x.shape[-2:])).items():
            out[k].append(distortion(rgb[:h, :w], _to_uint8(x_hat, h, w))["psnr"])
    return {f"psnr_{k}": round(float(np.mean(v)), 3) for k, v in out.items()}


@torch.no_grad()
def evaluate(setup: AuditSetup, decoders: DecoderSet, held: list, device, progress=None) -> tuple[dict, dict, dict]:
    """Rebuild every held-out image with every decoder; measure distortion and the switches' sizes.

    Returns:
        (key -> mean figures of that decoder, reference figures of a maxswitch model's own
        decoder or {}, key -> the first ``grid_images`` reconstructions as uint8 (h, w, 3) with
        "original" -> the originals).
    """
    probe, model = setup.target.probe, setup.target.model
    layers = probe.layers
    deepest = max(max(r) for r in decoders.reads.values())
    learned = None
    if model is not None:
        learned = model.table if model.table is not None else model.context
    per: dict[str, list[dict]] = {k: [] for k in decoders.reads}
    ref: list[dict] = []
    grid: dict[str, list[np.ndarray]] = {"original": []}
    for n, (name, rgb, (h, w)) in enumerate(held):
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].contiguous().to(device)
        codes = _switches_of(probe, x, deepest, name)
        arrays = [c[0].cpu().numpy() for c in codes]  # (C, h_l, w_l) per layer
        packed = [pack_switches(a, layers[i].positions) for i, a in enumerate(arrays)]
        pixels = h * w
        raw = [a.size * layers[i].bits / pixels for i, a in enumerate(arrays)]
        learned_bpp = None
        if learned is not None and len(arrays) >= 3:
            from ..bitstream import entropy

            learned_bpp = 8 * len(entropy.encode(learned, [a.astype(np.uint8) for a in arrays[:3]])) / pixels
        outs = decoders(codes, tuple(x.shape[-2:]))
        if n < setup.grid_images:
            grid["original"].append(rgb[:h, :w])
        for key, x_hat in outs.items():
            reads, control, _, _ = setup.specs[key]
            img = _to_uint8(x_hat, h, w)
            fig = distortion(rgb[:h, :w], img)
            if control is None:
                fig["raw_bpp"] = sum(raw[i - 1] for i in reads)
                fig["zstd_bpp"] = 8 * zstd_size([packed[i - 1] for i in reads]) / pixels
                fig["learned_bpp"] = learned_bpp if model is not None and reads == [1, 2, 3] else None
            per[key].append(fig)
            if n < setup.grid_images:
                grid.setdefault(key, []).append(img)
        if model is not None and model.decoder is not None:
            img = _to_uint8(model.decoder([c.to(torch.uint8).cpu() for c in codes[:3]]), h, w)
            ref.append(distortion(rgb[:h, :w], img))
            if n < setup.grid_images:
                grid.setdefault("shipped", []).append(img)
        if progress:
            progress(n + 1, len(held), name)
    figures = {k: _means(v) for k, v in per.items()}
    return figures, (_means(ref) if ref else {}), grid


def _means(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "rmse"]
    out = {}
    for k in keys:
        v = mean(r[k] for r in rows)
        out[k] = None if v is None else round(v, 4)
    return out


# ----------------------------------------------------------------------------- the run


@dataclass
class AuditResult:
    """An audit's report (plain JSON-able values) and the images of ``--grid``: "original" and each
    decoder's key -> the first ``grid_images`` held-out images, uint8 (h, w, 3)."""

    report: dict
    grid: dict


def run_audit(setup: AuditSetup, log=None, progress=None) -> AuditResult | None:
    """Train the audit's decoders and measure them; return the result (rank 0; None elsewhere).

    ``log`` takes the progress lines of training; ``progress()``, called when measuring starts,
    returns a ``progress(done, total, name)`` callback for the held-out images.

    Under torchrun every process calls this; the decoders train with DistributedDataParallel,
    and rank 0 alone evaluates and returns the report.
    """
    recipe = setup.recipe
    place = process_place()
    device = resolve_device(recipe.device)
    if recipe.amp and device.type != "cuda":
        raise SettingError("amp", "bf16 autocast needs a CUDA device")
    say = (log or (lambda m: print(m, file=sys.stderr, flush=True))) if place.main else (lambda m: None)
    torch.set_num_threads(recipe.threads)
    check_batch(recipe, place)
    device = start_processes(place, device)
    try:
        probe = setup.target.probe
        if not probe.in_data:
            probe.network.to(device)
        decoders = build_decoders(setup).to(device)
        deepest = max(max(r) for r in decoders.reads.values())
        finished = _check_checkpoint(setup.checkpoint, decoders, recipe) if setup.resume else None
        data = SwitchCrops(
            setup.train_paths,
            setup.target.data_encoder,
            recipe.patch,
            recipe.seed,
            recipe.crops_per_image,
            setup.resize,
        )
        held = []
        if place.main:
            for p in setup.val_paths:
                try:
                    held.append((p.name, *read_held_out(p, setup.resize)))
                except (OSError, imagelib.ImageError) as e:
                    say(f"audit: warning: skipping held-out {p}: {getattr(e, 'strerror', None) or e}")
            if not held:
                raise AuditError("none of the held-out images could be read")
        layers = probe.layers
        say(
            f"audit: {len(layers)} max-pooling layer(s) found, auditing {', '.join(map(str, setup.layers))}; "
            f"{len(decoders.reads)} decoder(s) ({', '.join(decoders.reads)}) trained together on "
            f"{len(setup.train_paths)} images, {recipe.patch} px crops, global batch {recipe.batch}; "
            f"{len(held)} held-out images; {place.world} process(es) on {device}"
        )

        def loss_fn(model, batch, step):
            x = batch["image"].to(device, non_blocking=True)
            if probe.in_data:
                codes = [c.to(device, non_blocking=True) for c in batch["codes"][:deepest]]
            else:
                with torch.autocast(device.type, enabled=False):  # the network's own arithmetic
                    codes = probe.switches(x, deepest)
            target = x.float().div_(255.0)
            outs = model(codes, tuple(x.shape[-2:]))
            return sum(F.mse_loss(v.float(), target) for v in outs.values())

        periodic = (lambda m: quick_psnr(setup, m, held, device)) if recipe.eval_every < 10**9 else None
        t0 = time.time()
        if finished is not None:  # the checkpoint has spent the budget: measure its decoders again
            decoders.load_state_dict(finished["module"])
            res = FitResult(int(finished["step"]), float(finished["elapsed"]), json.loads(finished["history"]))
            say(f"audit: {setup.checkpoint} has spent the budget (step {res.step}); measuring its decoders")
        else:
            res = fit(
                decoders,
                loss_fn,
                data,
                recipe,
                place=place,
                device=device,
                name="audit",
                checkpoint=setup.checkpoint,
                resume=setup.resume,
                evaluate=periodic,
                log=say,
                unit="summed mse",
            )
        if not place.main:
            return None
        if finished is None:
            say(
                f"audit: trained {res.step} steps in {(time.time() - t0) / 60:.1f} min; measuring {len(held)} held-out images"
            )
        decoders.eval()
        figures, reference, grid = evaluate(setup, decoders, held, device, progress() if progress else None)
        return AuditResult(_report(setup, res, figures, reference, device, place.world), grid)
    finally:
        stop_processes()


def _check_checkpoint(path: str, decoders: DecoderSet, recipe: Recipe) -> dict | None:
    """A checkpoint to resume must hold these very decoders (same keys and shapes).

    Returns:
        The checkpoint if it has already spent ``recipe``'s budget (its decoders are measured
        again, without training), else None (``fit`` resumes it).
    """
    if not os.path.isfile(path):
        raise AuditError(f"cannot resume: no checkpoint at {path}")
    try:
        ck = torch.load(path, weights_only=True, map_location="cpu")
        have = {k: tuple(v.shape) for k, v in ck["module"].items()}
    except Exception as e:  # noqa: BLE001
        raise AuditError(f"cannot resume from {path}: not an audit checkpoint ({_first(e)})") from None
    if have != {k: tuple(v.shape) for k, v in decoders.state_dict().items()}:
        raise AuditError(f"cannot resume from {path}: it holds other decoders (another model, layers or --inputs)")
    step, elapsed = int(ck["step"]), float(ck["elapsed"])
    done = step >= recipe.steps if recipe.steps is not None else elapsed >= recipe.minutes * 60
    return ck if done else None


def _first(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _report(setup: AuditSetup, res, figures: dict, reference: dict, device, world: int) -> dict:
    probe = setup.target.probe
    rows, controls = [], []
    for key, (reads, control, layer, inputs) in setup.specs.items():
        lay = probe.layers[layer - 1]
        row = {"key": key, "layer": layer, "name": lay.name, "reads": reads, "inputs": inputs, **figures[key]}
        if control is None:
            rows.append(row)
        else:
            row["control"] = control  # none: no switches; avg: every window's first cell, as an average pool
            controls.append(row)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "maxswitch": __version__,
        "model": setup.target.description,
        "pools": [dict(lay.to_dict(), audited=lay.index in setup.layers) for lay in probe.layers],
        "notes": probe.notes,
        "data": setup.data,
        "training": {
            "steps": res.step,
            "minutes": round(res.elapsed / 60, 2),
            "recipe": asdict(setup.recipe),
            "decoder_base_width": setup.width,
            "processes": world,
            "device": device_name,
            "torch": torch.__version__,
            "last_loss": res.last_loss,
            "history": res.history,
        },
        "rows": rows,
        "controls": controls,
        "reference": (
            {"decoder": f"shipped decoder of {setup.target.description['name']}", **reference} if reference else None
        ),
    }
