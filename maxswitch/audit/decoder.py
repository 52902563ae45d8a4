"""The audit's decoder family: switches of any pooling layers -> an RGB image.

It generalises the shipped ``nets.DirectDecoder`` to layers of any window and scale. Each layer
read enters at its **level** m (its switch map is about 2^m times smaller than the image,
``PoolLayer.level``) as one-hot maps, ``positions`` channels per channel (B, C * kH*kW, h, w).
Levels run from the deepest read, n, down to 1 (or 0 when a layer at full resolution is read):

    level m: [features from level m+1, one-hot switches of the layers at m]
             -> conv 3x3 -> ReLU -> conv 3x3 -> ReLU -> conv 1x1 to 4 * width(m-1) -> pixel shuffle x2

with ``width(m) = base * (m + 1)`` (16: 32, 48, 64, 80, 96 at levels 1..5); the last level ends in
12 maps (3 at level 0, without the shuffle), the output is a residual around grey 0.5. A level
no layer feeds has the features alone. Where a map's size is not exactly twice the level below
(odd sides, padding, ceil mode), features are cropped or edge-padded to the switch map's size
(resampled where they differ by more than a quarter), and the output to the image's size.

For maxswitch's 2x2 encoders, read all three stages at once, this is ``DirectDecoder`` layer for
layer (widths 64, 48, 32 at base 16): ``load_direct`` loads a shipped decoder's weights into it, and
``tests/test_audit.py`` checks that the two give the same image.

Controls: ``control="none"`` gives the decoder all-zero maps (no switches: it can only learn a
mean image); ``control="avg"`` gives every window the same position, its first cell, which is
what an average pool reports (it has no switch; maxswitch's avg-pool encoder writes code 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONTROLS = ("none", "avg")


def level_width(m: int, base: int = 16) -> int:
    """Feature width of decoder level m (base * (m + 1))."""
    return base * (m + 1)


def one_hot(codes: torch.Tensor, positions: int) -> torch.Tensor:
    """Switches (B, C, h, w) in 0..positions-1 -> float one-hot maps (B, C * positions, h, w),
    channel c's position k at c * positions + k (``nets.one_hot_codes``' order)."""
    B, C, h, w = codes.shape
    oh = F.one_hot(codes.long(), positions)  # (B, C, h, w, K)
    return oh.permute(0, 1, 4, 2, 3).reshape(B, C * positions, h, w).float()


def fit_size(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w): crop or edge-pad at the bottom and right, or resample
    (bilinear) where a side differs by more than a quarter of the target."""
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    if abs(H - h) * 4 > h or abs(W - w) * 4 > w:
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = x[..., :h, :w]
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


class SwitchDecoder(nn.Module):
    """Decoder of the switches of some pooling layers (see the module's doc).

    Args:
        inputs: one (level, channels, positions) per layer read, in the order ``forward`` gets them.
        base: width(m) = base * (m + 1).
        control: None, "none" (no switches) or "avg" (every window's first cell).
    """

    def __init__(self, inputs: list[tuple[int, int, int]], base: int = 16, control: str | None = None):
        super().__init__()
        if not inputs:
            raise ValueError("a decoder reads at least one layer")
        if control is not None and control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}")
        self.inputs = [tuple(int(v) for v in i) for i in inputs]
        self.control = control
        top = max(m for m, _, _ in self.inputs)
        finest = 0 if any(m == 0 for m, _, _ in self.inputs) else 1
        self.ms = list(range(top, finest - 1, -1))  # levels, coarse to fine
        act = nn.ReLU(inplace=True)
        levels = []
        for i, m in enumerate(self.ms):
            w = level_width(m, base)
            cin = sum(c * k for lv, c, k in self.inputs if lv == m) + (level_width(m, base) if i else 0)
            last = i == len(self.ms) - 1
            if not last:
                cout = 4 * level_width(self.ms[i + 1], base)
            else:
                cout = 3 if m == 0 else 12
            levels.append(
                nn.Sequential(
                    nn.Conv2d(cin, w, 3, padding=1), act, nn.Conv2d(w, w, 3, padding=1), act, nn.Conv2d(w, cout, 1)
                )
            )
        self.levels = nn.ModuleList(levels)

    def _maps(self, j: int, codes: torch.Tensor) -> torch.Tensor:
        _, C, K = self.inputs[j]
        B, _, h, w = codes.shape
        if self.control is None:
            return one_hot(codes, K)
        maps = torch.zeros(B, C, K, h, w, device=codes.device)
        if self.control == "avg":
            maps[:, :, 0] = 1.0
        return maps.view(B, C * K, h, w)

    def forward(self, codes: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Switches -> image.

        Args:
            codes: one int tensor (B, C, h, w) per input, in ``inputs``' order.
            size: (H, W) of the image.

        Returns:
            float (B, 3, H, W), about 0..1.
        """
        x = None
        for m, level in zip(self.ms, self.levels):
            maps = [self._maps(j, c) for j, (c, (lv, _, _)) in enumerate(zip(codes, self.inputs)) if lv == m]
            if maps:
                h, w = maps[0].shape[-2:]
                maps = [fit_size(t, h, w) for t in maps]
            elif x is not None:
                h, w = x.shape[-2:]
            parts = ([fit_size(x, h, w)] if x is not None else []) + maps
            x = level(torch.cat(parts, 1) if len(parts) > 1 else parts[0])
            if m > 0:
                x = F.pixel_shuffle(x, 2)
        return fit_size(x, *size) + 0.5


def load_direct(decoder: SwitchDecoder, direct: nn.Module) -> None:
    """Load a ``nets.DirectDecoder``'s weights into a SwitchDecoder reading the same three stages
    (levels 3, 2, 1 are its ``l3``, ``l2``, ``l1``)."""
    sd = {}
    for name, t in direct.state_dict().items():
        head, rest = name.split(".", 1)
        sd[f"levels.{3 - int(head[1])}.{rest}"] = t
    decoder.load_state_dict(sd, strict=True)


class DecoderSet(nn.Module):
    """The decoders an audit trains together in one loop: each reads its own layers' switches.

    Trained on the sum of their losses, each decoder gets exactly the gradients it would get
    alone (no parameter is shared) and Adam scales each parameter on its own, so training them
    together is training each on the same batches.

    Args:
        specs: key -> (layer indices read, 1-based, ascending; SwitchDecoder).
    """

    def __init__(self, specs: dict[str, tuple[list[int], SwitchDecoder]]):
        super().__init__()
        self.reads = {k: list(r) for k, (r, _) in specs.items()}
        self.decoders = nn.ModuleDict({k: d for k, (_, d) in specs.items()})

    def forward(self, codes: list[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``codes[i]``: switches of layer i + 1; returns key -> x_hat (B, 3, H, W)."""
        return {k: d([codes[i - 1] for i in self.reads[k]], size) for k, d in self.decoders.items()}
