"""The learned context model of format version 2: integer probabilities for every switch.

Switches are coded coarse to fine: stage 3, then stage 2 given stage 3, then stage 1 given
stages 2 and 3. Inside a stage, channel by channel, and inside a channel in four *phases* of
the 2x2 lattice of windows (P0 = even row, even column; P1 = odd, odd; P2 = even, odd;
P3 = odd, even), so that every phase is decoded in one vectorised step and sees the phases
before it around itself (P1 its four diagonal neighbours, P2 and P3 all four direct ones).

The context of the switch of channel ``c`` at window ``(y, x)`` in phase ``k``:

- its 8 neighbours in channel ``c`` (value 0..3 where already decoded, 4 where not or where
  outside the tile),
- the codes of channels ``0..c-1`` at the same window,
- the codes of every channel of the next-coarser stage at the parent window, with the
  window's position in its parent (which quadrant), and the same for the stage above that,
- ``(c, k)`` itself.

The network is a two-layer MLP whose first layer is a sum of rows of one integer table
(one row per feature value), run in exact integer arithmetic: every quantity is an integer
held in float32 below 2^24, so sums and products are exact whatever the order, the thread
count or the CPU, and encoder and decoder always compute the same probabilities. Shapes:
``n`` symbols of one step, ``H1``/``H2`` hidden widths::

    a1 = clamp(sum of table rows, 0, 255)                     (n, H1)
    a2 = clamp(floor((a1 @ W2 + b2) / 64), 0, 255)            (n, H2)
    L  = a2 @ W3 + b3                                         (n, 4), 1024 units per nat
    t  = min(floor((max(L) - L) / 16), 1023)                  (n, 4)
    e  = EXP[t]                                               (n, 4), EXP[t] = round(2^16 exp(-t/64))
    f  = floor(e * (2^24 - 4) / sum(e)), the remainder added to the first most likely symbol
    P(symbol k) = (f_k + 1) / 2^24

Everything here is numpy and numba (``contextjit.py``, the first layer's sums) arithmetic, with no
torch (which computed it before, with the same integers); the ANS coder is constriction's (see
``docs/FORMAT.md``). Training (float, fake-quantised) is in ``context_train.py``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MaxswitchError

if TYPE_CHECKING:
    import torch

PRECISION = 24  # probabilities are integers out of 2^24
TOTAL = (1 << PRECISION) - 4  # sum of the f_k; constriction adds 1 to each
EXP_BITS = 16
N_EXP = 1024
ACT_MAX = 255
TABLE_MAX = 2047  # |table entries|
W_MAX = 127  # |W2|, |W3|
# phases in decoding order, as (row parity, column parity)
PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))
DIRS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
UNKNOWN = 4


class ContextError(MaxswitchError):
    """A context model that is malformed or does not fit the encoder."""


def exp_table() -> np.ndarray:
    """EXP[t] = round(2^16 exp(-t/64)), t = 0..1023, as int64.

    Computed with floats but checked to be far from every rounding boundary, so every
    platform's ``exp`` gives the same integers (the asserted margin is 1e-6, libm errors are
    below 1e-15 relative).
    """
    vals = [(1 << EXP_BITS) * math.exp(-t / 64) for t in range(N_EXP)]
    out = np.array([math.floor(v + 0.5) for v in vals], dtype=np.int64)
    assert all(abs((v % 1) - 0.5) > 1e-6 for v in vals)
    return out


EXP = exp_table()
_EXP_F = EXP.astype(np.float64)


def _available(k: int) -> list[bool]:
    """For phase k, which of the 8 neighbours (DIRS order) are decoded before it."""
    py, px = PHASES[k]
    out = []
    for dy, dx in DIRS:
        nk = PHASES.index(((py + dy) % 2, (px + dx) % 2))
        out.append(nk < k)
    return out


AVAILABLE = [_available(k) for k in range(4)]


@dataclass(frozen=True)
class ContextLayout:
    """Row offsets of each feature group in the first-layer table of one stage.

    Attributes:
        channels: (C_s, C_s+1 or 0, C_s+2 or 0) channels of this stage and the two above.
    """

    channels: tuple[int, int, int]

    @property
    def nb(self) -> int:  # 8 dirs x 4 phases x 5 values
        return 0

    @property
    def same(self) -> int:  # C x 4 codes
        return self.nb + 8 * 4 * 5

    @property
    def parent(self) -> int:  # C_{s+1} x 4 quadrants x 4 codes
        return self.same + self.channels[0] * 4

    @property
    def grand(self) -> int:  # C_{s+2} x 4 quadrants x 4 codes
        return self.parent + self.channels[1] * 16

    @property
    def bias(self) -> int:  # C x 4 phases
        return self.grand + self.channels[2] * 16

    @property
    def rows(self) -> int:
        return self.bias + self.channels[0] * 4


def stage_layouts(channels) -> list[ContextLayout]:
    c = tuple(channels) + (0, 0)
    return [ContextLayout((c[s], c[s + 1], c[s + 2])) for s in range(3)]


@dataclass
class StageNet:
    """The integer weights of one stage's model (all int64 arrays; see the module docstring).

    table: (rows, H1); w2: (H1, H2); b2: (H2,); w3: (H2, 4); b3: (4,)
    """

    table: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w3: np.ndarray
    b3: np.ndarray

    def check(self, layout: ContextLayout) -> None:
        h1, h2 = self.w2.shape
        if (
            self.table.shape != (layout.rows, h1)
            or self.b2.shape != (h2,)
            or self.w3.shape != (h2, 4)
            or self.b3.shape != (4,)
        ):
            raise ContextError("context model tensors do not match the channel plan")
        if np.abs(self.table).max(initial=0) > TABLE_MAX or max(np.abs(self.w2).max(), np.abs(self.w3).max()) > W_MAX:
            raise ContextError("context model weights exceed their integer ranges")
        # exactness: every partial sum below 2^24 in float32
        terms = 8 + layout.channels[0] + layout.channels[1] + layout.channels[2] + 1
        if terms * TABLE_MAX >= 1 << 24:
            raise ContextError("channel plan too large for exact float32 sums")
        if (
            h1 * ACT_MAX * W_MAX + np.abs(self.b2).max() >= 1 << 24
            or h2 * ACT_MAX * W_MAX + np.abs(self.b3).max() >= 1 << 24
        ):
            raise ContextError("context model too wide for exact float32 sums")

    def float_params(self):
        """(table, w2, b2, w3, b3) as float32 arrays: what the coder computes with."""
        return tuple(
            np.ascontiguousarray(a, dtype=np.float32) for a in (self.table, self.w2, self.b2, self.w3, self.b3)
        )

    def torch_params(self):
        """``float_params`` as torch tensors."""
        import torch

        return tuple(torch.from_numpy(a) for a in self.float_params())


@dataclass
class ContextModel:
    """A trained context model for one channel plan: one ``StageNet`` per stage."""

    channels: tuple[int, int, int]
    stages: list[StageNet]

    def __post_init__(self):
        for net, lay in zip(self.stages, stage_layouts(self.channels)):
            net.check(lay)
        self._floats = None

    @property
    def _t(self):
        """Each stage's weights as float32 arrays (``StageNet.float_params``), made on first use."""
        if self._floats is None:
            self._floats = [n.float_params() for n in self.stages]
        return self._floats

    def tensors(self) -> dict[str, torch.Tensor]:
        """Integer tensors for the model asset (``context.s{i}.{name}``)."""
        import torch

        out = {}
        for s, n in enumerate(self.stages):
            for k in ("table", "w2", "b2", "w3", "b3"):
                out[f"context.s{s}.{k}"] = torch.from_numpy(np.asarray(getattr(n, k), dtype=np.int32)).contiguous()
        return out

    @classmethod
    def from_tensors(cls, channels, tensors: dict) -> "ContextModel":
        try:
            stages = [
                StageNet(
                    *(
                        np.asarray(tensors[f"context.s{s}.{k}"]).astype(np.int64)
                        for k in ("table", "w2", "b2", "w3", "b3")
                    )
                )
                for s in range(3)
            ]
        except KeyError as e:
            raise ContextError(f"context model is missing {e}") from None
        return cls(tuple(channels), stages)

    def digest(self) -> str:
        """SHA-256 over the integer weights (hex): identifies the model in v2 files."""
        h = hashlib.sha256(b"maxswitch-context-1")
        h.update(np.asarray(self.channels, dtype="<i4").tobytes())
        for n in self.stages:
            for a in (n.table, n.w2, n.b2, n.w3, n.b3):
                h.update(np.asarray(a.shape, dtype="<i4").tobytes())
                h.update(np.ascontiguousarray(a, dtype="<i4").tobytes())
        return h.hexdigest()


# ----------------------------------------------------------------------------- integer inference


def frequencies(a1_pre, params) -> np.ndarray:
    """First-layer sums (n, H1) -> integer frequencies (n, 4) summing to 2^24 - 4.

    Returned as float64 holding exact integers (what the ANS coder takes). The layers compute in
    float32 (``contextjit.logits``): every product and sum is an integer below 2^24
    (``StageNet.check``), so any order of the sums gives the same integers. The division is
    done in float64 and is exact after the floor: the dividend is below 2^40 and the divisor
    at most 2^18, so a non-integer quotient lies at least 2^-18 from an integer while the
    rounding error is below 2^-29. Column by column: numpy's reductions over an axis of 4 are
    slow. ``a1_pre`` may be a float32 array or a CPU tensor; it is not changed.
    """
    _, w2, b2, w3, b3 = (np.ascontiguousarray(p, dtype=np.float32) for p in params)
    a1 = np.ascontiguousarray(a1_pre, dtype=np.float32)
    L = np.empty((a1.shape[0], 4), np.float32)
    _kernels().logits(a1, np.ascontiguousarray(w2.T), b2, np.ascontiguousarray(w3.T), b3, L)
    L = L.T.astype(np.float64)  # (4, n), exact integers
    m = np.maximum(np.maximum(L[0], L[1]), np.maximum(L[2], L[3]))
    t = np.minimum(np.floor((m - L) * (1 / 16)), N_EXP - 1).astype(np.intp)
    e = _EXP_F[t]
    f = np.floor(e * TOTAL / (e[0] + e[1] + e[2] + e[3]))
    rem = TOTAL - (f[0] + f[1] + f[2] + f[3])
    first = np.where(t[0] == 0, 0, np.where(t[1] == 0, 1, np.where(t[2] == 0, 2, 3)))
    f[first, np.arange(f.shape[1])] += rem
    return np.ascontiguousarray(f.T)


def _quadrant(h: int, w: int) -> np.ndarray:
    """(h, w) int64: the position of each window in its parent window, row * 2 + column."""
    return ((np.arange(h)[:, None] % 2) * 2 + (np.arange(w)[None, :] % 2)).astype(np.int64)


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """(C, h/2, w/2) -> (C, h, w), each value repeated over its 2x2 children."""
    return a.repeat(2, axis=-2).repeat(2, axis=-1)[..., :h, :w]


def parent_rows(layout: ContextLayout, parents: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """Table row indices of the parent and grandparent features: (K, h, w) int64, K = C_s+1 + C_s+2."""
    rows = []
    q = _quadrant(h, w)
    if layout.channels[1]:
        p = _upsample(parents[0].astype(np.int64), h, w)  # (C1, h, w)
        cidx = np.arange(layout.channels[1])[:, None, None]
        rows.append(layout.parent + (cidx * 4 + q[None]) * 4 + p)
    if layout.channels[2]:
        q2 = _upsample(_quadrant(-(-h // 2), -(-w // 2))[None], h, w)[0]
        g = _upsample(_upsample(parents[1].astype(np.int64), -(-h // 2), -(-w // 2)), h, w)
        cidx = np.arange(layout.channels[2])[:, None, None]
        rows.append(layout.grand + (cidx * 4 + q2[None]) * 4 + g)
    if not rows:
        return np.zeros((0, h, w), np.int64)
    return np.concatenate(rows)


def neighbour_rows(
    codes_c: np.ndarray, k: int, ys: np.ndarray | None = None, xs: np.ndarray | None = None
) -> np.ndarray:
    """Table rows of the 8 neighbours of the windows of phase k, in row-major order: (n, 8) int64.

    codes_c: (h, w) codes of one channel; entries not yet decoded may hold anything (they are
    read as 4, "unknown", by the phase rule). The windows of a phase form a regular lattice,
    so each neighbour is a strided slice of the channel padded with 4s: no fancy indexing.
    (``ys``, ``xs`` are accepted for the callers' convenience and must be ``phase_positions``.)
    """
    h, w = codes_c.shape
    py, px = PHASES[k]
    ny, nx = len(range(py, h, 2)), len(range(px, w, 2))
    pad = np.full((h + 2, w + 2), UNKNOWN, np.int64)
    pad[1:-1, 1:-1] = codes_c
    out = np.empty((ny, nx, 8), np.int64)
    for d, (dy, dx) in enumerate(DIRS):
        base = (d * 4 + k) * 5
        if not AVAILABLE[k][d]:
            out[..., d] = base + UNKNOWN
            continue
        y0, x0 = 1 + py + dy, 1 + px + dx
        out[..., d] = pad[y0 : y0 + 2 * ny : 2, x0 : x0 + 2 * nx : 2] + base
    return out.reshape(-1, 8)


def phase_positions(h: int, w: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (flattened, row-major) of the windows of phase k."""
    py, px = PHASES[k]
    ys, xs = np.meshgrid(np.arange(py, h, 2), np.arange(px, w, 2), indexing="ij")
    return ys.ravel(), xs.ravel()


_KERNELS = None


def _kernels():
    """The module of kernels (``contextjit``), imported on first use (numba)."""
    global _KERNELS
    if _KERNELS is None:
        from . import contextjit

        _KERNELS = contextjit
    return _KERNELS


_DIRS = np.asarray(DIRS, np.int64)
_AVAILABLE = [np.asarray(a, np.bool_) for a in AVAILABLE]
_NO_PARENT = np.zeros((0, 1, 1), np.uint8)


class StageCoder:
    """Runs one stage's model pass by pass; the same object serves encoder and decoder.

    codes: (C, h, w) uint8, filled in by the decoder as it goes (the encoder passes the
    true codes). ``passes()`` yields (c, k, ys, xs); ``freqs(c, k, ys, xs)`` gives the
    integer frequencies of those symbols given everything decoded before them; ``commit``
    records decoded values and ``finish_channel(c)`` makes channel c visible to later ones.
    Sums are kept per phase, (n_k, H1) each, so a pass reads contiguous rows. The first
    layer's sums are numba kernels (``contextjit.py``), the rest numpy: no torch.
    """

    def __init__(self, model: ContextModel, s: int, codes: np.ndarray, parents: list[np.ndarray]):
        jit = _kernels()
        self.s = s
        self.layout = stage_layouts(model.channels)[s]
        self.params = model._t[s]
        self.codes = codes
        C, h, w = codes.shape
        table = self.params[0]
        self.pos = [phase_positions(h, w, k) for k in range(4)]
        p1 = np.ascontiguousarray(parents[0], np.uint8) if len(parents) > 0 else _NO_PARENT
        p2 = np.ascontiguousarray(parents[1], np.uint8) if len(parents) > 1 else _NO_PARENT
        self.base, self.running = [], []
        for k, (ys, xs) in enumerate(self.pos):
            base = np.empty((len(ys), table.shape[1]), np.float32)
            py, px = PHASES[k]
            jit.parent_sums(table, p1, p2, self.layout.parent, self.layout.grand, py, px, h, w, base)
            self.base.append(base)
            self.running.append(np.zeros((len(ys), table.shape[1]), np.float32))

    def passes(self):
        for c in range(self.codes.shape[0]):
            for k in range(4):
                ys, xs = self.pos[k]
                if len(ys):
                    yield c, k, ys, xs

    def freqs(self, c: int, k: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        table = self.params[0]
        a1 = np.empty_like(self.base[k])
        py, px = PHASES[k]
        codes_c = np.ascontiguousarray(self.codes[c])
        bias_row = self.layout.bias + c * 4 + k
        _kernels().first_layer(
            table, codes_c, k, py, px, _AVAILABLE[k], _DIRS, self.base[k], self.running[k], bias_row, a1
        )
        return frequencies(a1, self.params)

    def commit(self, c: int, ys: np.ndarray, xs: np.ndarray, values: np.ndarray) -> None:
        """Record decoded values of channel c at windows (ys, xs)."""
        self.codes[c, ys, xs] = values

    def finish_channel(self, c: int) -> None:
        """Channel c is complete: later channels see its codes at their own windows."""
        table = self.params[0]
        for k, (ys, xs) in enumerate(self.pos):
            self.running[k] += table[self.layout.same + c * 4 + self.codes[c, ys, xs].astype(np.intp)]
