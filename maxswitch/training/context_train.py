"""Training the context model of ``context.py``: float weights, fake-quantised to the exact
integers the coder uses, fitted by cross-entropy (bits) on the switches of training images.

Every symbol of a crop is scored at once ("teacher forcing"): its context is built from the
true codes with exactly the availability rules of the decoder (phases, earlier channels,
parents), so the loss is the code length the coder will spend, up to the integer rounding
that the fake quantisation already models. The loop is ``train.fit``; ``train_context`` is
used by ``benchmarks/train_zoo.py``, ``train_context_asset`` (data folder in, asset out) by
``maxswitch train-context``.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..bitstream.context import (
    ACT_MAX,
    AVAILABLE,
    DIRS,
    PHASES,
    TABLE_MAX,
    UNKNOWN,
    W_MAX,
    ContextModel,
    StageNet,
    stage_layouts,
)

S_TABLE = 16  # table units per unit of activation
S_W = 64  # weight units
S_LOGIT = S_TABLE * S_W  # 1024 logit units per nat


def _ste_round(x):
    return x + (torch.round(x) - x).detach()


def _ste_floor(x):
    return x + (torch.floor(x) - x).detach()


def _ste_clamp(x, lo, hi):
    return x + (x.clamp(lo, hi) - x).detach()


def phase_map(h: int, w: int) -> torch.Tensor:
    """(h, w) long: the phase (decoding order 0..3) of every window."""
    k = torch.empty(h, w, dtype=torch.long)
    for i, (py, px) in enumerate(PHASES):
        k[py::2, px::2] = i
    return k


def quadrant(h: int, w: int) -> torch.Tensor:
    return (torch.arange(h)[:, None] % 2) * 2 + (torch.arange(w)[None, :] % 2)


def up2(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]


class StageModel(nn.Module):
    """Float twin of ``context.StageNet`` for one stage; ``bits(codes)`` is the code length."""

    def __init__(self, layout, h1: int = 32, h2: int = 32):
        super().__init__()
        self.layout = layout
        self.table = nn.Parameter(torch.randn(layout.rows, h1) * 0.3)
        self.w2 = nn.Parameter(torch.randn(h1, h2) / math.sqrt(h1))
        self.b2 = nn.Parameter(torch.zeros(h2))
        self.w3 = nn.Parameter(torch.randn(h2, 4) / math.sqrt(h2))
        self.b3 = nn.Parameter(torch.zeros(4))

    def quantised(self):
        t = _ste_clamp(_ste_round(self.table * S_TABLE), -TABLE_MAX, TABLE_MAX)
        w2 = _ste_clamp(_ste_round(self.w2 * S_W), -W_MAX, W_MAX)
        b2 = _ste_round(self.b2 * S_TABLE * S_W)
        w3 = _ste_clamp(_ste_round(self.w3 * S_W), -W_MAX, W_MAX)
        b3 = _ste_round(self.b3 * S_LOGIT)
        return t, w2, b2, w3, b3

    def rows(self, codes: torch.Tensor, parents: list[torch.Tensor]):
        """Row indices of every feature of every symbol: codes (B, C, h, w) long."""
        lay = self.layout
        B, C, h, w = codes.shape
        dev = codes.device
        K = phase_map(h, w).to(dev)
        pad = F.pad(codes, (1, 1, 1, 1), value=UNKNOWN)
        avail = torch.tensor(AVAILABLE, device=dev)[K]  # (h, w, 8)
        nb = []
        for d, (dy, dx) in enumerate(DIRS):
            v = pad[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            v = torch.where(avail[..., d], v, torch.full_like(v, UNKNOWN))
            nb.append(lay.nb + (d * 4 + K) * 5 + v)
        same = lay.same + torch.arange(C, device=dev)[:, None, None] * 4 + codes  # (B, C, h, w)
        par = []
        q = quadrant(h, w).to(dev)
        if lay.channels[1]:
            p = up2(parents[0], h, w)
            par.append(lay.parent + (torch.arange(lay.channels[1], device=dev)[:, None, None] * 4 + q) * 4 + p)
        if lay.channels[2]:
            h2, w2 = -(-h // 2), -(-w // 2)
            q2 = up2(quadrant(h2, w2).to(dev), h, w)
            g = up2(up2(parents[1], h2, w2), h, w)
            par.append(lay.grand + (torch.arange(lay.channels[2], device=dev)[:, None, None] * 4 + q2) * 4 + g)
        bias = lay.bias + torch.arange(C, device=dev)[:, None, None] * 4 + K
        return torch.stack(nb), same, (torch.cat(par, 1) if par else None), bias

    def bits(self, codes: torch.Tensor, parents: list[torch.Tensor]) -> torch.Tensor:
        """Total code length in bits of ``codes`` (B, C, h, w) given its parents."""
        t, w2, b2, w3, b3 = self.quantised()
        nb, same, par, bias = self.rows(codes, parents)
        B, C, h, w = codes.shape
        H1 = t.shape[1]
        # sums of table rows as separate lookups: embedding's backward is far cheaper than
        # embedding_bag's on CPU (measured: 2 ms against 60 ms a call)
        a = F.embedding(bias, t).expand(B, C, h, w, H1)
        for d in range(nb.shape[0]):
            a = a + F.embedding(nb[d], t)
        e = F.embedding(same, t)
        a = a + torch.cumsum(e, 1) - e  # channels before c
        if par is not None:
            p = F.embedding(par[:, 0], t)
            for i in range(1, par.shape[1]):
                p = p + F.embedding(par[:, i], t)
            a = a + p[:, None]
        # activations: a real clamp (zero gradient outside: it is the ReLU), rounding straight through
        a1 = a.clamp(0, ACT_MAX)
        a2 = _ste_floor((a1 @ w2 + b2) / S_W).clamp(0, ACT_MAX)
        logits = (a2 @ w3 + b3) / S_LOGIT  # nats
        return F.cross_entropy(logits.reshape(-1, 4), codes.reshape(-1), reduction="sum") / math.log(2)

    def bits_sampled(self, codes: torch.Tensor, parents: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """Code length (bits) of the symbols ``idx`` (flat indices into ``codes`` (B, C, h, w)),
        each with its full context. Training on a random sample of symbols gives independent
        gradients at a fraction of the cost of scoring every symbol of the crops."""
        t, w2, b2, w3, b3 = self.quantised()
        nb, same, par, bias = self.rows(codes, parents)
        B, C, h, w = codes.shape
        b, r = idx // (C * h * w), idx % (C * h * w)
        c, r = r // (h * w), r % (h * w)
        y, x = r // w, r % w
        a = F.embedding(nb[:, b, c, y, x].T, t).sum(1) + F.embedding(bias[c, y, x], t)
        earlier = (torch.arange(C, device=codes.device)[None, :] < c[:, None]).to(t.dtype)  # (N, C): channels before c
        a = a + (F.embedding(same[b, :, y, x], t) * earlier[..., None]).sum(1)
        if par is not None:
            a = a + F.embedding(par[b, :, y, x], t).sum(1)
        a1 = a.clamp(0, ACT_MAX)
        a2 = _ste_floor((a1 @ w2 + b2) / S_W).clamp(0, ACT_MAX)
        logits = (a2 @ w3 + b3) / S_LOGIT
        return F.cross_entropy(logits, codes[b, c, y, x], reduction="sum") / math.log(2)

    def export(self) -> StageNet:
        with torch.no_grad():
            t, w2, b2, w3, b3 = (x.round().long().cpu().numpy() for x in self.quantised())
        return StageNet(t, w2, b2, w3, b3)


class ContextTrainer(nn.Module):
    def __init__(self, channels, h1: int = 32, h2: int = 32):
        super().__init__()
        self.channels = tuple(channels)
        self.stages = nn.ModuleList(StageModel(lay, h1, h2) for lay in stage_layouts(channels))

    def bits(self, codes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-stage code lengths (bits) of a batch: codes[s] (B, C_s, h_s, w_s) long."""
        return [m.bits(codes[s], codes[s + 1 :]) for s, m in enumerate(self.stages)]

    def forward(self, codes: list[torch.Tensor], n: int, gen: torch.Generator) -> list[torch.Tensor]:
        """``bits_sampled``: the training loss goes through ``forward`` (DistributedDataParallel)."""
        return self.bits_sampled(codes, n, gen)

    def bits_sampled(self, codes: list[torch.Tensor], n: int, gen: torch.Generator) -> list[torch.Tensor]:
        """Per-stage code lengths of ``n`` random symbols of each stage (or all, if fewer)."""
        out = []
        for s, m in enumerate(self.stages):
            total = codes[s].numel()
            idx = torch.randint(0, total, (n,), generator=gen) if total > n else torch.arange(total)
            idx = idx.to(codes[s].device)
            out.append(m.bits_sampled(codes[s], codes[s + 1 :], idx))
        return out

    def export(self) -> ContextModel:
        return ContextModel(self.channels, [m.export() for m in self.stages])


def switch_maps(model, rgbs: list[np.ndarray], flips: bool = True) -> list[list[np.ndarray]]:
    """Switches of every (padded) image, and of its mirror image if ``flips``."""
    from ..codec import compute_switches

    out = []
    for rgb in rgbs:
        for v in [rgb, np.ascontiguousarray(rgb[:, ::-1])] if flips else [rgb]:
            out.append(compute_switches(model, v))
    return out


def measure(cm: ContextModel, maps: list[list[np.ndarray]]) -> float:
    """Bits per switch of the real coder (payload bytes, tiles included) over ``maps``."""
    from ..bitstream import entropy

    nbytes = sum(len(entropy.encode(cm, m)) for m in maps)
    return 8 * nbytes / sum(c.size for m in maps for c in m)


def train_context(
    model,
    paths,
    recipe=None,
    *,
    hidden=(32, 32),
    symbols: int = 4096,
    name: str | None = None,
    checkpoint: str | None = None,
    resume: bool = False,
    log=None,
) -> tuple[ContextModel | None, dict]:
    """Fit a context model to the switches of ``model``'s encoder on the images ``paths``.

    The loop is ``train.fit``: streamed crops (``recipe.patch`` pixels, default 64, switches
    computed on the fly), a step or time budget, any device, many processes under torchrun.
    Each step scores ``symbols`` random symbols per stage of the global batch's crops (each
    with its full context): independent samples train far faster per CPU second than scoring
    whole crops (measured: docs/TRAINING.md). Adam, cosine decay to 1/100, no warm-up.

    Returns:
        The integer context model (rank 0; None on other ranks) and the training record.
    """
    from . import train as T
    from .dataset import SwitchCrops

    recipe = recipe or T.Recipe(patch=64, batch=16, minutes=10.0)
    place = T.process_place()
    device = T.resolve_device(recipe.device)
    torch.set_num_threads(recipe.threads)
    T.first_usable(paths, recipe.patch, None, want=1)
    T.check_batch(recipe, place)
    device = T.start_processes(place, device)
    try:
        data = SwitchCrops(paths, model.encoder, recipe.patch, recipe.seed, recipe.crops_per_image, with_images=False)
        torch.manual_seed(recipe.seed)
        tr = ContextTrainer(model.config.channels, *hidden).to(device)

        def loss_fn(m, batch, step):
            codes = [c.to(device, non_blocking=True).long() for c in batch["codes"]]
            gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step * 1009 + place.rank)
            per_stage = m(codes, symbols, gen)
            # weight each stage by its share of the switches: the loss is bits per switch
            counts = [c.numel() for c in codes]
            n = [min(symbols, k) for k in counts]
            return sum(b * (k / j) for b, k, j in zip(per_stage, counts, n)) / sum(counts)

        res = T.fit(
            tr,
            loss_fn,
            data,
            recipe,
            place=place,
            device=device,
            name=name or model.name,
            checkpoint=checkpoint,
            resume=resume,
            log=log,
            unit="bits/switch",
        )
        record = {
            "steps": res.step,
            "minutes": round(res.elapsed / 60, 2),
            "batch": recipe.batch,
            "patch": recipe.patch,
            "symbols": symbols,
            "lr": recipe.lr,
            "hidden": list(hidden),
            "seed": recipe.seed,
            "processes": place.world,
            "train_bits_per_switch_ema": round(res.loss_ema or 0, 4),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        }
        cm = tr.cpu().export() if place.main else None
        if place.world > 1:
            import torch.distributed as td

            td.barrier()
        return cm, record
    finally:
        T.stop_processes()


def train_context_asset(
    model,
    data: str,
    output: str,
    recipe,
    *,
    hidden=(32, 32),
    symbols: int = 4096,
    split: str | None = None,
    val_dir: str | None = None,
    val_split: str | None = None,
    version: int | None = None,
    name: str | None = None,
    log=None,
) -> dict:
    """Fit a context model to ``model``'s switches on the images of ``data`` (a folder or a list
    file) and write ``output``: the model with its new context model (and its context tables,
    which depend on the encoder alone), named ``name`` (default: the model's name), as version
    ``version`` (default: the model's version + 1: a new context model is a new asset). The
    caller checks ``output`` first (``train.check_new_asset``: never the model itself).

    Args:
        model: a model name or asset path (``zoo.load_model``).
        recipe: ``train.context_setup``'s recipe.
        val_dir, val_split: images (the first ``train.VAL_IMAGES``) whose real code length
            goes into the record.
        log: progress lines (rank 0); default stderr.

    Returns:
        The context model's training record. Under torchrun every process calls this; rank 0 writes.

    Raises:
        dataset.DataError (train.TrainError): no usable images, bad split or settings.
        zoo.ModelError: the model cannot be loaded.
    """
    from ..networks.zoo import load_model, save_model
    from . import train as T

    m = load_model(model)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    main = T.process_place().main
    say = (lambda msg: log(f"{m.name}: {msg}")) if main else (lambda msg: None)
    paths = T.select_split(T.list_images(data), split)
    if not paths:
        raise T.TrainError(f"no images found in {data}")
    say(f"{len(paths)} training images, streamed")
    cm, record = train_context(m, paths, recipe, hidden=hidden, symbols=symbols, log=log)
    if not main:
        return record
    record.update(train_dir=os.path.basename(os.path.normpath(data)), split=split, train_images=len(paths))
    if val_dir:
        vpaths = T.select_split(T.list_images(val_dir), val_split)[: T.VAL_IMAGES]
        val = switch_maps(m, T.load_rgb(vpaths), flips=False)
        if val:
            record["val_bits_per_switch"] = round(measure(cm, val), 4)
            say(f"validation {record['val_bits_per_switch']} bits/switch (real coder, {len(val)} images)")
    meta_record = dict(m.meta.get("record", {}), context=record)
    version = version or m.version + 1
    name = name or m.name
    save_model(output, name, version, m.config, m.encoder, m.decoder, meta_record, context=cm, table=m.table)
    val = f", validation {record['val_bits_per_switch']} bits/switch" if "val_bits_per_switch" in record else ""
    say(
        f"done: {record['steps']} steps in {record['minutes']:.1f} min, training {record['train_bits_per_switch_ema']} "
        f"bits/switch{val}; wrote {output} ({name} v{version})"
    )
    return record
