"""Payload coding 3, "context-table": switches coded by constriction's ANS with probabilities
looked up in tables of counts, the fast counterpart of the MLP context model (``context.py``).

The coding order is coding 2's (``context.py``): tiles of ``config.CONTEXT_TILE``; in a tile,
stage 3, then 2, then 1; in a stage, channel by channel; in a channel, the four phases of the
2x2 lattice of windows (P0 = even row, even column; P1 = odd, odd; P2 = even, odd; P3 = odd,
even). Every (stage s, channel c, phase k) has its own table, selected by ``t = (S_s + c) * 4
+ k`` with ``S_s`` the channels of the stages before s. A table lists up to ``MAX_FEATURES``
features; for the window (y, x) of the step, feature ``f`` reads:

- ``0 <= f < 8``: the code of channel c at the neighbour ``DIRS[f]`` = (y + dy, x + dx), or 4
  where that is outside the tile (only directions decoded before phase k, ``AVAILABLE[k][f]``,
  are allowed);
- ``8 <= f < 8 + c``: the code of channel ``f - 8`` of the same stage at (y, x);
- ``8 + C_s <= f < 8 + C_s + C_{s+1}``: the code of channel ``f - 8 - C_s`` of the next-coarser
  stage at the parent window (y // 2, x // 2) (stages 1 and 2 only).

The context index is the mixed-radix number ``sum_i v_i * R_i`` with ``R_0 = 1``,
``R_{i+1} = R_i * card_i`` (card 5 for neighbours, 4 otherwise), and the probabilities of the
4 codes are ``q[offsets[t] + index] / 2^16``: integers ``q >= 1`` summing to 2^16 in every row.
constriction's ``Categorical(perfect=False)`` is given the frequencies ``256 q - 1`` (summing
to 2^24 - 4, the convention of coding 2), which it turns into exactly ``q / 2^16``
(docs/FORMAT.md). They are passed as float32: every value, partial sum and the sum are integers
below 2^24, so constriction's float arithmetic on them is exact in float32 as in float64 and
gives the same words (its scale is exactly 1).

Tensors of a model asset (``table.*``): ``features`` int32 (T, MAX_FEATURES), -1 after the
last feature of a table; ``offsets`` int64 (T + 1,); ``q`` uint16 (N, 4). Fitting the tables
(counting on training images) is ``tables_fit.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from . import tablecoder
from .context import AVAILABLE, DIRS, PHASES, UNKNOWN, ContextError

MAX_FEATURES = 8
MAX_ROWS = 1 << 24  # a bound on an asset's tables (128 MiB of rows; docs/FORMAT.md)
Q_BITS = 16
_I32 = np.int32


def card(f: int) -> int:
    """Number of values feature f takes: 5 for a neighbour (4 = unknown), 4 otherwise."""
    return 5 if f < 8 else 4


@dataclass
class TableModel:
    """Probability tables for one channel plan (see the module docstring).

    channels: (C_1, C_2, C_3); features: int (T, MAX_FEATURES); offsets: int (T + 1,);
    q: uint16 (N, 4).
    """

    channels: tuple[int, int, int]
    features: np.ndarray
    offsets: np.ndarray
    q: np.ndarray

    @property
    def tile_threads(self) -> bool:
        """Whether tiles gain from threads: with the compiled coder (which releases the GIL) they
        do; the reference path's short numpy calls and constriction do not (entropy._map)."""
        return self.compiled

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.check()
        self._f4_rows = None  # the reference path's frequencies (``freqs``), made on its first use
        self._steps = []  # per table: its features, their strides and its first row (decoding)
        for t in range(len(self.features)):
            feats = [int(f) for f in self.features[t] if f >= 0]
            strides, r = [], 1
            for f in feats:
                strides.append(r)
                r *= card(f)
            self._steps.append((feats, strides, int(self.offsets[t])))
        self._layout = tablecoder.layout(self)
        self._compiled = None  # decided on first use: importing numba costs about 0.2 s

    @property
    def compiled(self) -> bool:
        """Whether tiles are coded by the compiled coder (numba importable); False: the reference."""
        if self._compiled is None:
            self._compiled = tablecoder.available()
        return self._compiled

    @compiled.setter
    def compiled(self, value: bool) -> None:
        self._compiled = bool(value)

    def freqs(self, rows: np.ndarray) -> np.ndarray:
        """Frequency rows (n,) (any integer dtype) -> their frequencies (n, 4) float32, as the
        entropy coder takes them."""
        if self._f4_rows is None:
            # every row's frequencies as constriction takes them: float32 (N, 4) holding 256 q - 1
            # exactly, seen as one 16-byte item per row (one row is then one fast 1-D take)
            self._f4_rows = (self.q.astype(np.float32) * 256 - 1).view(np.complex128).reshape(-1)
        return self._f4_rows.take(rows.astype(np.intp, copy=False)).view(np.float32).reshape(-1, 4)

    @classmethod
    def random(cls, channels, seed: int = 0, max_features: int = 3) -> "TableModel":
        """Tables with random causal features and random frequencies, drawn by numpy from
        ``seed`` (the same on every machine): for tests and fuzzing, as ``Encoder.random``."""
        rng = np.random.default_rng(seed)
        feats, qs, offsets = [], [], [0]
        for s in range(3):
            for c in range(channels[s]):
                for k in range(4):
                    cand = candidates(channels, s, c, k)
                    pick = [int(f) for f in rng.permutation(cand)[: rng.integers(0, max_features + 1)]]
                    feats.append(pick + [-1] * (MAX_FEATURES - len(pick)))
                    n = int(np.prod([card(f) for f in pick]))
                    raw = rng.integers(1, 1000, (n, 4)).astype(np.float64)
                    q = np.floor(raw / raw.sum(1, keepdims=True) * ((1 << Q_BITS) - 4)).astype(np.int64) + 1
                    q[:, 0] += (1 << Q_BITS) - q.sum(1)
                    qs.append(q.astype(np.uint16))
                    offsets.append(offsets[-1] + n)
        return cls(tuple(channels), np.array(feats), np.array(offsets), np.concatenate(qs))

    def table_index(self, s: int, c: int, k: int) -> int:
        return table_index(self.channels, s, c, k)

    def check(self) -> None:
        """Refuse tables that do not fit the channel plan or break the probability rules."""
        T = 4 * sum(self.channels)
        if self.features.shape != (T, MAX_FEATURES) or self.offsets.shape != (T + 1,):
            raise ContextError("context tables do not match the channel plan")
        if self.q.ndim != 2 or self.q.shape[1] != 4 or self.offsets[0] != 0 or self.offsets[-1] != len(self.q):
            raise ContextError("context tables are malformed")
        if len(self.q) > MAX_ROWS:
            raise ContextError(f"context tables have more than {MAX_ROWS} rows")
        q = self.q
        if len(q) and (q.min() < 1 or not (q.sum(axis=1, dtype=np.int64) == 1 << Q_BITS).all()):
            raise ContextError("context table rows must be positive integers summing to 2^16")
        for s, C in enumerate(self.channels):
            for c in range(C):
                for k in range(4):
                    t = self.table_index(s, c, k)
                    row = [int(f) for f in self.features[t]]
                    n = next((i for i, f in enumerate(row) if f < 0), MAX_FEATURES)
                    feats = row[:n]
                    if any(f >= 0 for f in row[n:]) or len(set(feats)) != n:
                        raise ContextError("context table features are malformed")
                    allowed = set(candidates(self.channels, s, c, k))
                    for f in feats:
                        if f not in allowed:
                            raise ContextError(f"context table feature {f} is not causal for stage {s + 1}")
                    if self.offsets[t + 1] - self.offsets[t] != int(np.prod([card(f) for f in feats])):
                        raise ContextError("context table sizes do not match their features")

    # ------------------------------------------------------------------------- assets

    def tensors(self) -> dict:
        import torch

        return {
            "table.features": torch.from_numpy(np.ascontiguousarray(self.features, dtype=np.int32)),
            "table.offsets": torch.from_numpy(np.ascontiguousarray(self.offsets, dtype=np.int64)),
            "table.q": torch.from_numpy(np.ascontiguousarray(self.q, dtype=np.uint16)),
        }

    @classmethod
    def from_tensors(cls, channels, tensors: dict) -> "TableModel":
        try:
            f, o, q = (np.asarray(tensors[f"table.{k}"]) for k in ("features", "offsets", "q"))
        except KeyError as e:
            raise ContextError(f"context tables are missing {e}") from None
        if q.dtype != np.uint16:
            raise ContextError("context table frequencies must be uint16")
        return cls(tuple(channels), f.astype(np.int64), o.astype(np.int64), q)

    def digest(self) -> str:
        """SHA-256 (hex) over the tables: identifies them in coding-3 files."""
        h = hashlib.sha256(b"maxswitch-table-1")
        h.update(np.asarray(self.channels, dtype="<i4").tobytes())
        for a, dt in ((self.features, "<i4"), (self.offsets, "<i8"), (self.q, "<u2")):
            h.update(np.asarray(a.shape, dtype="<i4").tobytes())
            h.update(np.ascontiguousarray(a, dtype=dt).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------------- coding

    def _rows(self, t: int, pad: np.ndarray, parent: np.ndarray | None, c: int, k: int, out: np.ndarray) -> None:
        """Write into ``out`` (ny, nx) int32 the frequency rows (table t's first row plus the
        context index) of the windows of phase k of channel c."""
        feats, strides, first = self._steps[t]
        out[...] = first
        for f, r in zip(feats, strides):
            v = feature(f, pad, parent, c, k)
            if r == 1:
                out += v
            else:
                out += v * _I32(r)

    def encode_tile(self, codes: list[np.ndarray]) -> np.ndarray:
        """One tile's switches (3 arrays (C_s, h_s, w_s) uint8) -> its ANS words (uint32), by the
        compiled coder (``tablecoder.py``), or by the reference where numba is missing."""
        if self.compiled:
            return tablecoder.encode_tile(self, codes)
        return self.encode_tile_reference(codes)

    def decode_tile(self, words: np.ndarray, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """Inverse of ``encode_tile``. Raises ValueError or RuntimeError (from constriction) or
        ContextError on words that do not decode (the caller turns them into PayloadError)."""
        if self.compiled:
            return tablecoder.decode_tile(self, words, shapes)
        return self.decode_tile_reference(words, shapes)

    def encode_tile_reference(self, codes: list[np.ndarray]) -> np.ndarray:
        """``encode_tile`` by numpy and constriction: the definition the compiled coder matches."""
        import constriction

        syms, freqs = self.tile_steps(codes)
        enc = constriction.stream.stack.AnsCoder()
        enc.encode_reverse(syms, constriction.stream.model.Categorical(perfect=False), freqs)
        return enc.get_compressed()

    def tile_steps(self, codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The tables' part of ``encode_tile_reference``: every symbol of the tile in decoding order
        (n,) int32 and its frequencies (n, 4) float32, as the entropy coder takes them. Step by
        step, with the same ``_rows`` as decoding (the compiled coder is the fast path)."""
        n = sum(a.size for a in codes)
        syms = np.empty(n, np.int32)
        rows = np.empty(n, _I32)
        o = 0
        for s in (2, 1, 0):
            pad = _pad(codes[s])
            parent = codes[s + 1] if s < 2 else None
            for c in range(codes[s].shape[0]):
                for k in range(4):
                    py, px = PHASES[k]
                    sym = codes[s][c, py::2, px::2]
                    m = sym.size
                    syms[o : o + m].reshape(sym.shape)[...] = sym
                    self._rows(self.table_index(s, c, k), pad, parent, c, k, rows[o : o + m].reshape(sym.shape))
                    o += m
        return syms, self.freqs(rows)

    def decode_tile_reference(self, words: np.ndarray, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """``decode_tile`` by numpy and constriction, one step (stage, channel, phase) at a time."""
        import constriction

        family = constriction.stream.model.Categorical(perfect=False)
        dec = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        pads = [np.full((C, h + 2, w + 2), UNKNOWN, np.uint8) for C, h, w in shapes]
        inner = [p[:, 1:-1, 1:-1] for p in pads]
        for s in (2, 1, 0):
            parent = inner[s + 1] if s < 2 else None
            for c in range(shapes[s][0]):
                for k in range(4):
                    py, px = PHASES[k]
                    target = inner[s][c, py::2, px::2]
                    if target.size:
                        rows = np.empty(target.shape, _I32)
                        self._rows(self.table_index(s, c, k), pads[s], parent, c, k, rows)
                        target[...] = np.asarray(dec.decode(family, self.freqs(rows.ravel())), np.uint8).reshape(
                            target.shape
                        )
        if not dec.is_empty():
            raise ContextError("payload has data left after its last switch (corrupt)")
        return [np.ascontiguousarray(a) for a in inner]


def candidates(channels, s: int, c: int, k: int) -> list[int]:
    """The features a (stage s, channel c, phase k) table may read: those decoded before it
    (the module docstring's rule; ``TableModel.check`` refuses any other, the fit chooses among them)."""
    C = channels[s]
    up = channels[s + 1] if s < 2 else 0
    return [d for d in range(8) if AVAILABLE[k][d]] + list(range(8, 8 + c)) + list(range(8 + C, 8 + C + up))


def table_index(channels, s: int, c: int, k: int) -> int:
    """Which table codes phase k of channel c of stage s (0-based stage)."""
    return (sum(channels[:s]) + c) * 4 + k


def feature(f: int, pad: np.ndarray, parent: np.ndarray | None, c: int, k: int) -> np.ndarray:
    """Feature f's values (ny, nx) uint8 at the windows of phase k of channel c.

    pad: (C_s, h + 2, w + 2) uint8, the stage's codes with a border of 4 (entries not yet
    decoded are never read: ``check`` allows causal features only); parent: (C_s+1, h', w')
    codes of the next-coarser stage, or None."""
    C = pad.shape[0]
    py, px = PHASES[k]
    ny, nx = (pad.shape[1] - 1 - py) // 2, (pad.shape[2] - 1 - px) // 2
    if f < 8:
        dy, dx = DIRS[f]
        y0, x0 = 1 + py + dy, 1 + px + dx
        return pad[c, y0 : y0 + 2 * ny : 2, x0 : x0 + 2 * nx : 2]
    if f < 8 + C:
        return pad[f - 8, 1 + py : 1 + py + 2 * ny : 2, 1 + px : 1 + px + 2 * nx : 2]
    return parent[f - 8 - C, :ny, :nx]  # phase k's windows (py + 2i, px + 2j) have parent (i, j)


def _pad(a: np.ndarray) -> np.ndarray:
    """(C, h, w) codes -> (C, h + 2, w + 2) with a border of 4 (unknown)."""
    C, h, w = a.shape
    p = np.full((C, h + 2, w + 2), UNKNOWN, np.uint8)
    p[:, 1:-1, 1:-1] = a
    return p
