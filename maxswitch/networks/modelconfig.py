"""A model's description (``ModelConfig``), stored inside its weights file; no torch here, so that
a model loads for encoding without it (``zoo.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import DECODER_KINDS, WHAT_KINDS

STAGES = 3


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored inside its weights file.

    Attributes:
        channels: encoder channels per stage, e.g. (16, 16, 16).
        decoder: "direct" (every stage's switches enter the decoder at their own scale),
            "mirror" (the paper's decoder: unpool with the switches, conv, repeat), or the
            direct decoders that also read a what part: "what" (at level 3) and "what-fine"
            (at levels 3 and 1, ``nets.WhatFineDecoder``).
        widths: decoder feature widths at the scales H/8, H/4, H/2 ("direct") or after
            each unpooling at H/4, H/2, H ("mirror").
        pool: "max" (switches) or "avg" (no switches: the control experiment).
        encoder_seed: the seed the random encoder was drawn from, for the record only;
            the weights themselves are stored and never regenerated.
        what: () for switch-only models; for the what decoders, the what part its files carry:
            (block size F, luma step, chroma step) (``maxswitch.bitstream.what.WhatSpec``).
    """

    channels: tuple[int, int, int] = (16, 16, 16)
    decoder: str = "direct"
    widths: tuple[int, int, int] = (64, 48, 32)
    pool: str = "max"
    encoder_seed: int = 0
    what: tuple = ()

    def __post_init__(self):
        if len(self.channels) != STAGES or min(self.channels) < 1:
            raise ValueError(f"channels must be 3 positive integers, got {self.channels}")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"unknown decoder {self.decoder!r}")
        if len(self.widths) != STAGES or min(self.widths) < 1:
            raise ValueError(f"widths must be 3 positive integers, got {self.widths}")
        if self.pool not in ("max", "avg"):
            raise ValueError(f"unknown pool {self.pool!r}")
        if (self.decoder in WHAT_KINDS) != bool(self.what) or (self.what and len(self.what) != 3):
            raise ValueError(
                f"decoder {self.decoder!r} and what = {self.what!r}: only what decoders, and all of them, read a what part (F, step_y, step_c)"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["widths"] = list(self.widths)
        d["what"] = list(self.what)
        if not self.what:
            del d["what"]  # switch-only assets keep the description they always had
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d.pop("extra", None)  # an unused field of 0.1's assets
        d["channels"] = tuple(int(c) for c in d["channels"])
        d["widths"] = tuple(int(c) for c in d["widths"])
        d["what"] = tuple(int(c) for c in d.get("what", ()))
        return cls(**d)

    @property
    def switches_per_pixel(self) -> float:
        """Switches (2-bit codes) per image pixel: c1/4 + c2/16 + c3/64."""
        return sum(c / 4 ** (s + 1) for s, c in enumerate(self.channels))


def parse_channels(spec: str) -> tuple[int, int, int]:
    """Parse a channel plan such as ``"16,16,16"`` into a tuple of three ints."""
    try:
        chans = tuple(int(p) for p in spec.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"channel plan must look like 16,16,16, got {spec!r}") from None
    if len(chans) != STAGES or min(chans) < 1 or max(chans) > 512:
        raise ValueError(f"channel plan needs 3 values in 1..512, got {spec!r}")
    return chans  # type: ignore[return-value]
