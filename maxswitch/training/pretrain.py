"""Encoders pretrained for classification, then frozen (Table II's second column).

The paper pretrained its encoder for identity classification on MultiPie. No identity labels are
at hand here, so the substitute task is **rotation prediction** (0, 90, 180 or 270 degrees, the
self-supervised task of Gidaris et al., ICLR 2018): the encoder's three stages, then global
average pooling and a linear layer over 4 classes, trained with cross-entropy.

The trained float encoder is then turned into maxswitch's exact integer encoder: each stage's
weights are scaled so the largest is 7 and rounded, biases are scaled by the same running factor,
and the shift after each stage is calibrated like a random encoder's. Argmax positions do not
depend on a positive scale, so the integer encoder's switches follow the float one's up to rounding.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from ..networks.nets import ACT_MAX, STAGES, WEIGHT_MAX, Encoder, calibrated_shift

INPUT_SCALE = 64.0  # float input = (pixel - 128) / INPUT_SCALE


class FloatEncoderClassifier(nn.Module):
    """Float twin of the encoder with a classification head: (B, 3, P, P) in [-2, 2] -> (B, classes).

    The head is linear over the whole stage-3 map (C3 x P/8 x P/8), not over its spatial mean: a
    spatial mean of three small conv stages is nearly blind to a rotation (its features are local),
    and the classifier would stay at chance.
    """

    def __init__(self, channels, classes: int = 4, patch: int = 64):
        super().__init__()
        cins = (3,) + tuple(channels)[:-1]
        self.convs = nn.ModuleList(nn.Conv2d(ci, co, 3, padding=1) for ci, co in zip(cins, channels))
        self.head = nn.Linear(channels[-1] * (patch // 8) ** 2, classes)

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)  # (B, C_s, P/2^s, P/2^s)
        return self.head(x.flatten(1))


def rotation_batch(images: list[torch.Tensor], batch: int, patch: int, rng: random.Random):
    """Random crops of uint8 (3, H, W) images, each rotated by k*90 degrees; returns (x, k)."""
    xs, ks = [], []
    for _ in range(batch):
        img = images[rng.randrange(len(images))]
        H, W = img.shape[1:]
        y, x = rng.randrange(H - patch + 1), rng.randrange(W - patch + 1)
        k = rng.randrange(4)
        xs.append(torch.rot90(img[:, y : y + patch, x : x + patch], k, (1, 2)))
        ks.append(k)
    x = (torch.stack(xs).float() - 128.0) / INPUT_SCALE
    return x, torch.tensor(ks)


def pretrain_classifier(
    channels,
    images: list[torch.Tensor],
    steps: int = 400,
    batch: int = 32,
    patch: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    log=print,
):
    """Train the float encoder on rotation prediction; return (model, final accuracy)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = FloatEncoderClassifier(channels, patch=patch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    acc = 0.0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, k = rotation_batch(images, batch, patch, rng)
        logits = model(x)
        loss = F.cross_entropy(logits, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = 0.95 * acc + 0.05 * (logits.argmax(1) == k).float().mean().item() if step else 0.25
        if (step + 1) % 100 == 0:
            log(f"pretrain {channels}: step {step + 1} loss {loss.item():.3f} accuracy ~{acc:.2f}")
    return model, acc


@torch.no_grad()
def rotation_accuracy(
    model: FloatEncoderClassifier, images: list[torch.Tensor], patch: int = 64, n: int = 512, seed: int = 1
) -> float:
    """Accuracy on ``n`` random rotated crops of ``images`` (held-out images for a fair figure)."""
    x, k = rotation_batch(images, n, patch, random.Random(seed))
    return (model(x).argmax(1) == k).float().mean().item()


@torch.no_grad()
def quantise(model: FloatEncoderClassifier, calibration: torch.Tensor) -> Encoder:
    """Turn a trained float encoder into an exact integer ``Encoder``.

    Args:
        calibration: uint8 images (B, 3, H, W), H and W multiples of 8, to pick the shifts.
    """
    channels = tuple(c.out_channels for c in model.convs)
    enc = Encoder(channels, "max")
    x = calibration.double() - 128.0  # integer activations of the integer encoder
    scale = INPUT_SCALE  # integer activation = scale * float activation
    for s, conv in enumerate(model.convs):
        w = conv.weight.double()
        k = WEIGHT_MAX / w.abs().max().clamp(min=1e-12)
        w_int = torch.round(w * k).clamp(-WEIGHT_MAX, WEIGHT_MAX)
        b_int = torch.round(conv.bias.double() * k * scale).clamp(-(2**20), 2**20)
        getattr(enc, f"w{s}").copy_(w_int.to(torch.int8))
        getattr(enc, f"b{s}").copy_(b_int.to(torch.int32))
        y = F.max_pool2d(F.relu(F.conv2d(x, w_int, b_int, padding=1)), 2)
        shift = calibrated_shift(y)
        enc.shifts[s] = shift
        x = torch.clamp(torch.floor(y / 2**shift), max=ACT_MAX)
        scale = scale * float(k) / 2**shift
    assert len(model.convs) == STAGES
    return enc
