"""Train a model's switch encoder end to end with a rate term (issue 19, item 3), then write it back
as an exact integer encoder in a real model asset.

    python benchmarks/trained_encoder.py train --name NAME -o runs/te/NAME.safetensors \\
        [--model what-2-4-8] [--lam 0.001] [--freeze-encoder] [--steps 1500] [--tau 16] ...
    python benchmarks/trained_encoder.py check runs/te/NAME.safetensors [IMAGES...]

**The relaxation.** The encoder of MODEL (conv 3x3 + ReLU + 2x2 max-pool, three stages, integer
weights in [-7, 7], integer biases, a right shift per stage) becomes a float module whose forward
pass *is* the integer encoder: latent float weights and biases, rounded (and clamped to [-7, 7]) with
a straight-through gradient; the pooled maximum shifted and floored, again straight-through. All
values are integers below 2^24 carried in float32, so the training forward gives exactly the switches
that ``maxswitch encode`` will compute once the rounded parameters are stored (``check`` and the
start of ``train`` verify it against the project's ``SwitchEncoder``). The latent parameters start
at MODEL's integers and the shifts stay MODEL's, so step 0 gives MODEL's switches.

**The switch choice.** Forward: the hard argmax of each 2x2 window (first position on ties, as the
codec). Backward: the gradient of softmax(window / (tau * 2^shift)), tau in units of the stage's
shifted activations (straight-through estimator). The decoder, a ``nets.WhatDecoder`` started
from MODEL's weights, reads those one-hot maps (hard values, soft gradients) and the crop's what
picture (``what.describe`` + ``what.dequantize``: the picture a file carries).

**The rate.** A learnable probability table per (stage, channel), conditioned on three causal codes:
the left and upper neighbours in the same channel (raster order) and the same window in the previous
channel of the stage (none for the first channel): 64 contexts x 4 codes. The bits of a switch are
``-log2 p(code | context)``, computed as a sum over the one-hot maps of the code and of its context
(equal to the lookup in the forward pass; differentiable through every code involved). The tables
start from counts of MODEL's switches on the first batches and are trained on the same loss (their
gradient is that of the rate alone: they learn the switches' distribution). It is an estimate of
the kind the codec uses, not the codec's coder: the real bits come from fitting the project's
context tables to the written asset (coding 3, ``maxswitch fit-tables``) and from ``maxswitch bench``.

Loss = MSE (RGB in [0, 1]) + lam * rate, rate in bits per image pixel of the switches (the what
part's bits do not depend on the encoder). ``--freeze-encoder`` is the control: the same steps,
data and decoder schedule with the encoder's parameters fixed.

Data: the ``holdout-train`` split of DATA (default ../shared/data/train-bsds500), held in memory;
crops aligned to the 8-pixel grid, mirrored half the time, drawn from (seed, step) so a resumed run
sees the stream of an uninterrupted one. Validation (printed at the start and end): the
``holdout-val`` split, whole images. Never a test set. One torch thread.

Output: the asset (MODEL's config and what spec, the rounded integer encoder, the trained decoder,
no context model or tables: fit them with ``maxswitch fit-tables``) and NAME.json beside it (the
settings and the log). A checkpoint (OUTPUT.ckpt) is written every --checkpoint-every seconds;
``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# project modules used (keep this list short: the package is being reorganised)
from maxswitch.bitstream import what  # noqa: E402
from maxswitch.networks import nets, zoo  # noqa: E402
from maxswitch.training.dataset import list_images, read_rgb  # noqa: E402
from maxswitch.training.train import select_split  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "train-bsds500"
WEIGHT_MAX = nets.WEIGHT_MAX
ACT_MAX = nets.ACT_MAX
BIAS_MAX = 2**20


# ----------------------------------------------------------------------------- encoder relaxation


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class RelaxedEncoder(nn.Module):
    """The integer encoder with latent float parameters (forward = the integer encoder exactly).

    Weights: latent in integer units; biases: latent in units of 2^shift (the stage's shifted
    activations), so one learning rate suits every stage.
    """

    def __init__(self, sw, tau: float):
        super().__init__()
        self.channels = tuple(sw.channels)
        self.shifts = [int(s) for s in sw.shifts]
        self.tau = tau
        self.w = nn.ParameterList([nn.Parameter(torch.tensor(w, dtype=torch.float32)) for w in sw.weights])
        self.b = nn.ParameterList(
            [nn.Parameter(torch.tensor(b, dtype=torch.float32) / 2.0**sh) for b, sh in zip(sw.biases, self.shifts)]
        )

    def integer_params(self):
        """(weights int8 list, biases int32 list, shifts int32) as the codec stores them."""
        ws = [torch.round(w.detach()).clamp(-WEIGHT_MAX, WEIGHT_MAX).to(torch.int8) for w in self.w]
        bs = [
            torch.round(b.detach() * 2.0**sh).clamp(-BIAS_MAX, BIAS_MAX).to(torch.int32)
            for b, sh in zip(self.b, self.shifts)
        ]
        return ws, bs, torch.tensor(self.shifts, dtype=torch.int32)

    def forward(self, img: torch.Tensor):
        """img: uint8 (B, 3, H, W), H and W multiples of 8.

        Returns codes (3 long tensors (B, C_s, h, w)) and one-hots (3 float (B, C_s, h, w, 4):
        hard forward, softmax gradient backward)."""
        x = img.float() - 128.0
        codes, onehots = [], []
        for w, b, sh in zip(self.w, self.b, self.shifts):
            wq = _ste_round(w.clamp(-WEIGHT_MAX, WEIGHT_MAX))
            bq = _ste_round((b * 2.0**sh).clamp(-BIAS_MAX, BIAS_MAX))
            y = F.relu(F.conv2d(x, wq, bq, padding=1))  # (B, C, h2, w2), exact integers
            B, C, H, W = y.shape
            win = y.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(B, C, H // 2, W // 2, 4)
            idx = win.argmax(-1)  # first maximum on ties: the codec's rule
            hard = F.one_hot(idx, 4).to(y.dtype)
            soft = F.softmax(win / (self.tau * 2.0**sh), -1)
            onehots.append(hard + soft - soft.detach())
            codes.append(idx)
            pooled = (win * hard).sum(-1)  # the maximum; gradient to the chosen position
            v = (pooled / 2.0**sh).clamp(max=float(ACT_MAX))
            x = v + (torch.floor(v) - v).detach()
        return codes, onehots


# ----------------------------------------------------------------------------- rate model


class RateTables(nn.Module):
    """Learnable p(code | left, up, previous channel) per (stage, channel): logits (C_s, 4, 4, 4, 4)."""

    def __init__(self, channels):
        super().__init__()
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(c, 4, 4, 4, 4)) for c in channels])

    @staticmethod
    def _contexts(oh: torch.Tensor):
        """oh (B, C, h, w, 4) -> left, up, previous-channel one-hots of the same shape (outside the
        map, or no previous channel: code 0, a fixed context)."""
        e = torch.zeros_like(oh)
        e[..., 0] = 1.0
        left = torch.cat([e[:, :, :, :1], oh[:, :, :, :-1]], 3)
        up = torch.cat([e[:, :, :1], oh[:, :, :-1]], 2)
        prev = torch.cat([e[:, :1], oh[:, :-1]], 1)
        return left, up, prev

    def bits(self, onehots) -> torch.Tensor:
        """Total estimated bits of the switches (a scalar), summed over the batch."""
        total = 0.0
        for oh, lg in zip(onehots, self.logits):
            left, up, prev = self._contexts(oh)
            nbits = F.log_softmax(lg, -1) / -math.log(2.0)  # (C, 4l, 4u, 4p, 4k)
            # contract one context at a time (at most 64 values per window in flight)
            t = torch.einsum("bchwl,clupk->bchwupk", left, nbits)
            t = torch.einsum("bchwu,bchwupk->bchwpk", up, t)
            t = torch.einsum("bchwp,bchwpk->bchwk", prev, t)
            total = total + (t * oh).sum()
        return total

    @torch.no_grad()
    def init_from_counts(self, onehots_batches, alpha: float = 1.0):
        counts = [torch.full_like(lg, alpha) for lg in self.logits]
        for onehots in onehots_batches:
            for s, oh in enumerate(onehots):
                oh = oh.detach()
                left, up, prev = self._contexts(oh)
                counts[s] += torch.einsum("bchwl,bchwu,bchwp,bchwk->clupk", left, up, prev, oh)
        for lg, n in zip(self.logits, counts):
            lg.copy_(torch.log(n / n.sum(-1, keepdim=True)))


# ----------------------------------------------------------------------------- decoder on one-hots


def decode_onehots(dec: nets.WhatDecoder, onehots, what_pic: torch.Tensor) -> torch.Tensor:
    """``WhatDecoder.forward`` on float one-hot maps (B, C, h, w, 4) instead of uint8 codes.

    what_pic: uint8 (B, 3, H/8, W/8) (8x8 blocks: the experiment's what part). Returns float RGB (B, 3, H, W) around 0..1."""
    s1, s2, s3 = (oh.permute(0, 1, 4, 2, 3).flatten(1, 2) for oh in onehots)  # (B, 4C, h, w), c * 4 + k
    w = what_pic.float() / 255.0
    x = F.pixel_shuffle(dec.l3(torch.cat([s3, w - 0.5], 1)), 2)
    x = F.pixel_shuffle(dec.l2(torch.cat([x, s2], 1)), 2)
    x = F.pixel_shuffle(dec.l1(torch.cat([x, s1], 1)), 2)
    return nets.fuse(x + 0.5, w, 8)


# ----------------------------------------------------------------------------- data


def what_picture(rgb: np.ndarray, spec) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (3, H/F, W/F): the what picture a file of this image carries."""
    return what.dequantize(what.describe(rgb, spec), spec).transpose(2, 0, 1)


def batch(images, spec, seed: int, step: int, n: int, patch: int):
    """n aligned crops (uint8 (n, 3, P, P)) and their what pictures, drawn from (seed, step)."""
    rng = np.random.default_rng([seed, step + 16])  # steps from -16 up (set-up batches)
    crops, whats = [], []
    for _ in range(n):
        im = images[rng.integers(len(images))]
        H, W = im.shape[:2]
        y = 8 * rng.integers((H - patch) // 8 + 1)
        x = 8 * rng.integers((W - patch) // 8 + 1)
        c = im[y : y + patch, x : x + patch]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        c = np.ascontiguousarray(c)
        crops.append(c.transpose(2, 0, 1))
        whats.append(what_picture(c, spec))
    return torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(whats))


def load_split(data: str, split: str, min_side: int):
    paths = select_split(list_images(data), split)
    ims = [read_rgb(p) for p in paths]
    return [im for im in ims if min(im.shape[:2]) >= min_side]


@torch.no_grad()
def validate(enc: RelaxedEncoder, dec, rate: RateTables, images, spec) -> dict:
    """Mean PSNR (whole images, decoder output clamped to 0..1), estimated bits/switch and bits per
    pixel of the switches over the validation images."""
    psnrs, bits, switches, pixels = [], 0.0, 0, 0
    for im in images:
        img = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None]
        wp = torch.from_numpy(np.ascontiguousarray(what_picture(im, spec)))[None]
        codes, oh = enc(img)
        x_hat = decode_onehots(dec, oh, wp).clamp(0, 1)
        mse = F.mse_loss(x_hat, img.float() / 255.0).item()
        psnrs.append(10 * math.log10(1.0 / mse))
        bits += rate.bits(oh).item()
        switches += sum(c.numel() for c in codes)
        pixels += im.shape[0] * im.shape[1]
    return {"psnr": float(np.mean(psnrs)), "bits_per_switch": bits / switches, "switch_bpp": bits / pixels}


# ----------------------------------------------------------------------------- train


def lr_at(base: float, step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return 0.05 * base + 0.95 * base * 0.5 * (1 + math.cos(math.pi * p))


def check_exact(enc: RelaxedEncoder, sw, images) -> int:
    """Number of switches where the relaxation's forward differs from ``SwitchEncoder`` (must be 0)."""
    bad = 0
    with torch.no_grad():
        for im in images:
            ref = sw(np.ascontiguousarray(im))
            codes, _ = enc(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None])
            bad += sum(int((torch.from_numpy(r).long() != c[0]).sum()) for r, c in zip(ref, codes))
    return bad


def train(a) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    src = zoo.load_model(a.model)
    cfg = src.config
    spec = what.WhatSpec(*cfg.what)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = Path(str(out) + ".ckpt")
    log_path = out.with_suffix(".json")

    enc = RelaxedEncoder(src.switch_encoder, a.tau)
    dec = nets.WhatDecoder(cfg.channels, cfg.widths)
    dec.load_state_dict(src.decoder.state_dict())
    dec.train()
    rate = RateTables(cfg.channels)

    t0 = time.time()
    images = load_split(a.data, "holdout-train", a.patch)
    val = load_split(a.data, "holdout-val", 64)[: a.val_images]
    print(f"{len(images)} training images, {len(val)} validation images ({time.time() - t0:.0f} s)", flush=True)
    bad = check_exact(enc, src.switch_encoder, val[:2])
    if bad:
        sys.exit(f"error: the relaxation's switches differ from the integer encoder's in {bad} places")

    # the decoder on one-hots equals the project's WhatDecoder on codes
    with torch.no_grad():
        img, wp = batch(images, spec, a.seed, -1, 2, a.patch)
        codes, oh = enc(img)
        ref = dec([c.to(torch.uint8) for c in codes], wp)
        diff = (decode_onehots(dec, oh, wp) - ref).abs().max().item()
    if diff > 1e-4:
        sys.exit(f"error: decode_onehots differs from WhatDecoder by {diff}")

    enc_params = [{"params": list(enc.w), "lr": a.enc_lr}, {"params": list(enc.b), "lr": a.enc_lr * a.bias_lr_mult}]
    opt_dec = torch.optim.Adam(dec.parameters(), lr=a.lr)
    opt_enc = torch.optim.Adam(enc_params) if not a.freeze_encoder else None
    opt_rate = torch.optim.Adam(rate.parameters(), lr=a.rate_lr)
    if a.freeze_encoder:
        for p in enc.parameters():
            p.requires_grad_(False)

    step, elapsed, history = 0, 0.0, []
    if a.resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=True)
        enc.load_state_dict(st["enc"])
        dec.load_state_dict(st["dec"])
        rate.load_state_dict(st["rate"])
        opt_dec.load_state_dict(st["opt_dec"])
        opt_rate.load_state_dict(st["opt_rate"])
        if opt_enc is not None:
            opt_enc.load_state_dict(st["opt_enc"])
        step, elapsed, history = st["step"], st["elapsed"], json.loads(st["history"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    else:
        with torch.no_grad():
            rate.init_from_counts(enc(batch(images, spec, a.seed, -2 - i, a.batch, a.patch)[0])[1] for i in range(8))
        v0 = validate(enc, dec.eval(), rate, val, spec)
        dec.train()
        history.append({"step": 0, "minutes": 0.0, **v0})
        print(f"step 0 validation: {v0}", flush=True)

    start = time.time() - elapsed
    last_ckpt = last_print = time.time()
    npix = a.batch * a.patch * a.patch
    run_mse = run_bpp = None
    while step < a.steps:
        img, wp = batch(images, spec, a.seed, step, a.batch, a.patch)
        for g in opt_dec.param_groups:
            g["lr"] = lr_at(a.lr, step, a.steps, a.warmup)
        if opt_enc is not None:
            f = lr_at(1.0, step, a.steps, a.warmup)
            opt_enc.param_groups[0]["lr"] = a.enc_lr * f
            opt_enc.param_groups[1]["lr"] = a.enc_lr * a.bias_lr_mult * f
        codes, oh = enc(img)
        x_hat = decode_onehots(dec, oh, wp)
        mse = F.mse_loss(x_hat, img.float() / 255.0)
        if a.lam > 0:
            bpp = rate.bits(oh) / npix
            loss = mse + a.lam * bpp
        else:  # the rate reaches the tables only
            bpp = rate.bits([o.detach() for o in oh]) / npix
            loss = mse + bpp
        opt_dec.zero_grad(set_to_none=True)
        opt_rate.zero_grad(set_to_none=True)
        if opt_enc is not None:
            opt_enc.zero_grad(set_to_none=True)
        loss.backward()
        # the tables learn the switches' distribution whatever lam is: their gradient is the rate's
        if a.lam > 0:
            for p in rate.parameters():
                p.grad.div_(a.lam)
        opt_dec.step()
        opt_rate.step()
        if opt_enc is not None:
            opt_enc.step()
        step += 1
        m, r = mse.item(), bpp.item()
        run_mse = m if run_mse is None else 0.98 * run_mse + 0.02 * m
        run_bpp = r if run_bpp is None else 0.98 * run_bpp + 0.02 * r
        now = time.time()
        if now - last_print > 60 or step == a.steps or step == 1:
            last_print = now
            print(
                f"step {step} {(now - start) / 60:.1f} min mse {run_mse:.5f} (~{10 * math.log10(1 / run_mse):.2f} dB) "
                f"switch bpp {run_bpp:.4f} ({step / max(1e-9, now - start):.2f} steps/s)",
                flush=True,
            )
        if now - last_ckpt > a.checkpoint_every and step < a.steps:
            last_ckpt = now
            st = {
                "enc": enc.state_dict(),
                "dec": dec.state_dict(),
                "rate": rate.state_dict(),
                "opt_dec": opt_dec.state_dict(),
                "opt_rate": opt_rate.state_dict(),
                "step": step,
                "elapsed": now - start,
                "history": json.dumps(history),
            }
            if opt_enc is not None:
                st["opt_enc"] = opt_enc.state_dict()
            torch.save(st, str(ckpt) + ".tmp")
            Path(str(ckpt) + ".tmp").replace(ckpt)

    minutes = (time.time() - start) / 60
    dec.eval()
    v1 = validate(enc, dec, rate, val, spec)
    history.append({"step": step, "minutes": round(minutes, 2), **v1})
    print(f"step {step} validation: {v1}", flush=True)

    # write back: the rounded integers in the project's encoder, checked against the relaxation
    ws, bs, shifts = enc.integer_params()
    ienc = nets.Encoder(cfg.channels, cfg.pool)
    for s in range(3):
        getattr(ienc, f"w{s}").copy_(ws[s])
        getattr(ienc, f"b{s}").copy_(bs[s])
    ienc.shifts.copy_(shifts)
    bad = check_exact(enc, type(src.switch_encoder).from_torch(ienc), val[:4])
    if bad:
        sys.exit(f"error: the stored integer encoder differs from the relaxation in {bad} switches")
    changed = sum(
        int((w.to(torch.int8) != torch.from_numpy(w0)).sum()) for w, w0 in zip(ws, src.switch_encoder.weights)
    )
    changed_b = sum(int((b != torch.from_numpy(b0)).sum()) for b, b0 in zip(bs, src.switch_encoder.biases))
    settings = {k: v for k, v in vars(a).items() if k not in ("func",)}
    record = {
        "trained_encoder": settings,
        "source_model": f"{src.name} v{src.version} (sha256 {src.sha256[:12]})",
        "steps": step,
        "minutes": round(minutes, 2),
        "weights_changed": changed,
        "biases_changed": changed_b,
        "val_psnr": round(v1["psnr"], 3),
        "history": history,
        "torch": torch.__version__,
    }
    sha = zoo.save_model(out, a.name, 1, cfg, ienc, dec, record)
    log_path.write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"done: {step} steps in {minutes:.1f} min, {changed} weights and {changed_b} biases changed; "
        f"wrote {out} (sha256 {sha[:12]})",
        flush=True,
    )
    if ckpt.exists():
        ckpt.unlink()


# ----------------------------------------------------------------------------- check


def check(a) -> None:
    """Encode images with the asset at 1 and 2 threads and several tile sizes: identical bytes?"""
    import maxswitch

    model = zoo.load_model(a.asset)
    paths = a.images or sorted(str(p) for p in Path(a.kodak).glob("*.png"))[: a.limit]
    ok = True
    for p in paths:
        outs = {}
        for threads in (1, 2):
            for tile in (0, 128, 256):
                outs[(threads, tile)] = maxswitch.encode(p, model, threads=threads, tile=tile)
        same = len(set(outs.values())) == 1
        ok &= same
        print(f"{Path(p).name}: {len(outs[(1, 0)])} bytes, {'identical' if same else 'DIFFERENT'} over {sorted(outs)}")
    if not ok:
        sys.exit("error: bytes differ across threads or tiles")


def _entropy(counts: np.ndarray) -> float:
    """Bits per symbol of the empirical distribution in counts (..., 4), conditioned on the leading axes."""
    n = counts.sum(-1, keepdims=True)
    p = np.where(counts > 0, counts / np.maximum(n, 1), 1.0)
    return float(-(counts * np.log2(p)).sum() / counts.sum())


def stats(a) -> None:
    """Per stage, on the images: share of all-zero windows (code 0 by the tie rule), order-0 entropy
    and the empirical entropy given (left, up, previous channel), the training rate model's contexts."""
    paths = sorted(Path(a.kodak).glob("*.png"))
    for asset in a.assets:
        model = zoo.load_model(asset)
        enc = RelaxedEncoder(model.switch_encoder, 16.0)
        chans = model.config.channels
        zero, n = np.zeros(3), np.zeros(3)
        c0 = [np.zeros(4) for _ in range(3)]
        c3 = [np.zeros((4, 4, 4, 4)) for _ in range(3)]
        with torch.no_grad():
            for p in paths:
                im = read_rgb(p)
                x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None]
                codes, oh = enc(x)
                # all-zero windows: the relaxation's pooled maximum is 0 exactly when ReLU zeroed the window
                xs = x.float() - 128.0
                for s, (w, b, sh) in enumerate(zip(enc.w, enc.b, enc.shifts)):
                    wq, bq = torch.round(w), torch.round(b * 2.0**sh)
                    y = F.relu(F.conv2d(xs, wq, bq, padding=1))
                    mx = F.max_pool2d(y, 2)
                    zero[s] += float((mx == 0).sum())
                    n[s] += mx.numel()
                    xs = torch.floor((mx / 2.0**sh).clamp(max=float(ACT_MAX)))
                    o = oh[s].detach()
                    left, up, prev = RateTables._contexts(o)
                    c0[s] += o.sum((0, 1, 2, 3)).numpy()
                    c3[s] += torch.einsum("bchwl,bchwu,bchwp,bchwk->lupk", left, up, prev, o).numpy()
        row = []
        for s in range(3):
            row.append(
                f"stage {s + 1} ({chans[s]} ch): zero {zero[s] / n[s]:.3f}, H0 {_entropy(c0[s]):.3f}, "
                f"H|lup {_entropy(c3[s]):.3f}"
            )
        tot0 = sum(_entropy(c0[s]) * n[s] for s in range(3)) / n.sum()
        tot3 = sum(_entropy(c3[s]) * n[s] for s in range(3)) / n.sum()
        print(f"{model.name}: " + "; ".join(row) + f"; all stages H0 {tot0:.3f}, H|lup {tot3:.3f} bits/switch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(required=True)
    t = sub.add_parser("train", help="train (or, with --freeze-encoder, the control) and write the asset")
    t.add_argument("--name", required=True)
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--model", default="what-2-4-8")
    t.add_argument("--data", default=str(DATA))
    t.add_argument("--lam", type=float, default=0.0, help="weight of the rate (bits per pixel) in the loss")
    t.add_argument("--freeze-encoder", action="store_true", help="the control: decoder training only")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=12)
    t.add_argument("--patch", type=int, default=96)
    t.add_argument("--lr", type=float, default=5e-4, help="decoder learning rate (warm-up, cosine to 5%%)")
    t.add_argument("--enc-lr", type=float, default=0.02, help="encoder weight learning rate (integer units)")
    t.add_argument("--bias-lr-mult", type=float, default=5.0, help="bias lr = enc-lr x this (units of 2^shift)")
    t.add_argument("--rate-lr", type=float, default=0.01)
    t.add_argument("--tau", type=float, default=16.0, help="softmax temperature, in shifted activation units")
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-images", type=int, default=20)
    t.add_argument("--checkpoint-every", type=float, default=180.0)
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=train)
    c = sub.add_parser("check", help="identical bytes across thread counts and tile sizes")
    c.add_argument("asset")
    c.add_argument("images", nargs="*")
    c.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    c.add_argument("--limit", type=int, default=4)
    c.set_defaults(func=check)
    st = sub.add_parser("stats", help="switch statistics per stage on Kodak (zero windows, entropies)")
    st.add_argument("assets", nargs="+")
    st.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    st.set_defaults(func=stats)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
