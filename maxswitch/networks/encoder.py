"""The switch encoder without torch: the fixed integer encoder of ``nets.Encoder`` run by numba.

``nets.Encoder`` (torch) is the reference and the form training uses; ``SwitchEncoder`` holds
the same integer parameters as numpy arrays and computes the same switches with the kernels of
``encoderjit.py``, bit for bit, on any image, thread count and tiling (tests/test_encoder.py
checks it on random images of odd sizes and on every shipped model). ``codec.encode`` runs
this one, so that encoding never imports torch (about 2 s and 220 MB on the machine of
docs/PERFORMANCE.md); ``MAXSWITCH_ENCODER=torch`` runs the reference instead.

Exactness: every value is an integer (inputs ``pixel - 128``, weights in [-7, 7], integer
biases, activations in [0, 1023]) and the kernels carry them in float32 when every partial
sum of every stage stays below 2^24 (float32 holds it exactly, whatever the order of the
sums), in float64 otherwise: the rule and bound of ``nets.Encoder.exact_dtype``.
"""

from __future__ import annotations

import hashlib

import numpy as np

STAGES = 3
WEIGHT_MAX = 7  # nets.WEIGHT_MAX
ACT_MAX = 1023  # nets.ACT_MAX

_jit = None


def _kernels():
    """The module of kernels (``encoderjit``), imported on first use."""
    global _jit
    if _jit is None:
        from . import encoderjit

        _jit = encoderjit
    return _jit


class SwitchEncoder:
    """The integer encoder's parameters as numpy arrays, and its switches by numba.

    Attributes:
        channels: (C_1, C_2, C_3).
        pool: "max", or "avg" (the control model: no switches, every code 0).
        weights: per stage int8 (C_s, C_{s-1}, 3, 3); biases: per stage int32 (C_s,);
        shifts: int32 (3,), the right shift after each stage.
    """

    def __init__(self, channels, pool: str, weights: list, biases: list, shifts):
        self.channels = tuple(int(c) for c in channels)
        self.pool = pool
        cins = (3,) + self.channels[:-1]
        self.weights = [np.ascontiguousarray(w, dtype=np.int8) for w in weights]
        self.biases = [np.ascontiguousarray(b, dtype=np.int32) for b in biases]
        self.shifts = np.ascontiguousarray(shifts, dtype=np.int32)
        for s, (cin, cout) in enumerate(zip(cins, self.channels)):
            if self.weights[s].shape != (cout, cin, 3, 3) or self.biases[s].shape != (cout,):
                raise ValueError(f"encoder stage {s + 1} parameters do not match channels {self.channels}")
        if self.shifts.shape != (STAGES,):
            raise ValueError("encoder shifts must be 3 integers")
        bias_max = max(int(np.abs(b.astype(np.int64)).max(initial=0)) for b in self.biases)
        self.dtype = exact_dtype(self.channels, bias_max)
        # the kernels' parameters: weights and biases as floats of the exact dtype
        self._params = [
            (w.astype(self.dtype), b.astype(self.dtype), int(sh))
            for w, b, sh in zip(self.weights, self.biases, self.shifts)
        ]

    @classmethod
    def from_tensors(cls, channels, pool: str, tensors: dict) -> "SwitchEncoder":
        """From a model asset's ``encoder.*`` arrays (numpy, names without the prefix)."""
        w = [np.asarray(tensors[f"w{s}"]) for s in range(STAGES)]
        b = [np.asarray(tensors[f"b{s}"]) for s in range(STAGES)]
        return cls(channels, pool, w, b, np.asarray(tensors["shifts"]))

    @classmethod
    def from_torch(cls, enc) -> "SwitchEncoder":
        """The same parameters as a ``nets.Encoder``."""
        sd = {k: v.numpy() for k, v in enc.state_dict().items()}
        return cls.from_tensors(enc.channels, enc.pool, sd)

    def digest(self) -> str:
        """SHA-256 (hex) of the integer parameters: ``nets.Encoder.digest``, the identity in .msw files."""
        h = hashlib.sha256()
        h.update(("maxswitch-encoder-v1:" + ",".join(map(str, self.channels)) + ":" + self.pool).encode())
        for w, b in zip(self.weights, self.biases):
            h.update(w.tobytes())
            h.update(b.astype("<i4").tobytes())
        h.update(self.shifts.astype("<i4").tobytes())
        return h.hexdigest()

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Switches of a uint8 (H, W, 3) image, H and W multiples of 8.

        Returns:
            Three uint8 arrays (C_s, H/2^s, W/2^s) of codes in 0..3.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
        H, W = rgb.shape[:2]
        if H % 8 or W % 8:
            raise ValueError(f"H and W must be multiples of 8, got {(H, W)}")
        if self.pool != "max":  # average pooling has no switches
            return [np.zeros((c, H >> (s + 1), W >> (s + 1)), np.uint8) for s, c in enumerate(self.channels)]
        jit = _kernels()
        x = np.zeros((3, H + 2, W + 2), self.dtype)
        jit.first_input(np.ascontiguousarray(rgb), x)
        codes = []
        for (w, b, shift), c in zip(self._params, self.channels):
            h, wd = x.shape[1] - 2, x.shape[2] - 2
            code = np.empty((c, h // 2, wd // 2), np.uint8)
            nxt = np.zeros((c, h // 2 + 2, wd // 2 + 2), self.dtype)
            jit.stage(x, w, b, shift, code, nxt)
            codes.append(code)
            x = nxt
        return codes


def exact_dtype(channels, bias_max: int):
    """float32 when every partial sum of every stage is below 2^24, else float64 (the bound of
    ``nets.Encoder.exact_dtype``)."""
    cins = (3,) + tuple(channels)[:-1]
    worst = max(9 * cin * (128 if s == 0 else ACT_MAX) * WEIGHT_MAX + bias_max for s, cin in enumerate(cins))
    return np.float32 if worst < 2**24 else np.float64
