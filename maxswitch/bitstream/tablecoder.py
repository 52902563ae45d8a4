"""The compiled coder of payload coding 3: context tables and ANS in one loop per tile.

``tables.TableModel`` defines coding 3 twice over: its numpy + constriction methods
(``encode_tile_reference``, ``decode_tile_reference``) are the reference, readable step by
step, and this module is the fast path, which ``encode_tile`` and ``decode_tile`` use. Both
give the same words (tests/test_tables.py checks it on random tables, odd tile sizes and the
shipped model). The fast path is numba-compiled: no per-step Python, and it releases the GIL,
so tiles code in parallel on threads.

The entropy coder here is constriction's ``AnsCoder`` (64-bit state, 32-bit words, 24-bit
precision) restated for the one model coding 3 uses, so that its words are constriction's:

- a code k with table row q (four integers summing to 2^16) has the interval
  ``[256 (q_0 + ... + q_{k-1}), 256 (q_0 + ... + q_k))`` out of 2^24 (what constriction's
  ``Categorical(perfect=False)`` makes of the frequencies ``256 q - 1``: docs/FORMAT.md);
- encoding pushes the symbols last to first: if ``state >> 40 >= f`` the low word of the
  state is pushed and the state shifted right by 32; then
  ``state = (state // f) << 24 | (c + state % f)`` for the interval ``[c, c + f)``;
- the stream is the pushed words, then the state's nonzero words, least significant first;
- decoding pops words from the end: the state starts from the last word (which must not be
  zero) and the one before it; each symbol is the interval holding ``state & (2^24 - 1)``,
  then ``state = (state >> 24) * f + (state & (2^24 - 1)) - c``, and if that is below 2^32 and a
  word is left, ``state = state << 32 | next word``. A tile has decoded cleanly when the state
  ends at 0 with no word left.

Why not constriction itself: its batched ``Categorical`` builds a model from floats for every
symbol, about 17-19 ns per switch on the machine of docs/PERFORMANCE.md, and holds the GIL;
that alone was half the time budget of encoding at 10 MP/s. This loop reads the table row it
has just indexed (docs/PERFORMANCE.md, "Format v2", has the measurements).
"""

from __future__ import annotations

import numpy as np

from .context import DIRS, PHASES, UNKNOWN

# the kernels' error codes (decode_tile turns them into exceptions)
OK, BAD_LAST_WORD, DATA_LEFT = 0, 1, 2

_PHASES = np.asarray(PHASES, np.int64)
_DIRS = np.asarray(DIRS, np.int64)
assert UNKNOWN == 4  # the value of a neighbour outside the tile, written as 4 in the kernels

_jit = None


def available() -> bool:
    """Whether numba is importable (it is a dependency; without it the reference path runs)."""
    return _kernels() is not None


def _kernels():
    """The module of kernels (``tablejit``), imported on first use; None without numba."""
    global _jit
    if _jit is None:
        try:
            from . import tablejit
        except Exception as e:  # numba missing or broken: the reference path codes the same words
            import sys

            sys.stderr.write(
                f"maxswitch: warning: compiled coder unavailable ({type(e).__name__}); using the reference path\n"
            )
            _jit = False
        else:
            _jit = tablejit
    return _jit or None


def layout(model):
    """A ``TableModel`` as the kernels read it: features (T, 8) int64 (-1 after the last),
    strides (T, 8) int64, first rows (T,) int64 and q (N, 4) uint16."""
    T = len(model.features)
    feats = np.full((T, 8), -1, np.int64)
    strides = np.zeros((T, 8), np.int64)
    for t, (fs, rs, _) in enumerate(model._steps):
        feats[t, : len(fs)] = fs
        strides[t, : len(rs)] = rs
    first = np.asarray(model.offsets[:-1], np.int64)
    return feats, strides, first, np.ascontiguousarray(model.q, np.uint16)


def _args(model, codes):
    c1, c2, c3 = (np.ascontiguousarray(a, np.uint8) for a in codes)
    return (c1, c2, c3, *model._layout, _PHASES, _DIRS)


def encode_tile(model, codes: list[np.ndarray]) -> np.ndarray:
    """One tile's switches (3 arrays (C_s, h_s, w_s) uint8) -> its ANS words (uint32)."""
    args = _args(model, codes)
    out = np.empty(sum(a.size for a in args[:3]) + 2, np.uint32)  # a symbol pushes at most one word
    return out[: _kernels().encode(*args, out)].copy()


def decode_tile(model, words: np.ndarray, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Inverse of ``encode_tile``. Raises ValueError on words that are not a clean stream of
    exactly these switches (the caller turns it into PayloadError)."""
    out = [np.empty(s, np.uint8) for s in shapes]
    w = np.ascontiguousarray(words, np.uint32)
    status = _kernels().decode(w, *_args(model, out))
    if status == BAD_LAST_WORD:
        raise ValueError("the tile's last word is zero (not an ANS stream)")
    if status == DATA_LEFT:
        raise ValueError("payload has data left after its last switch (corrupt)")
    return out


# ----------------------------------------------------------------------------- the coder's share
# (benchmarks/coding_speed.py): the two halves of encode_tile, and the decoding ANS alone


def tile_intervals(model, codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The tables' part of ``encode_tile``: each symbol's interval (cum, freq) in decoding order."""
    return _kernels().tile_intervals(*_args(model, codes))


def ans_encode(cum: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """The entropy coder's part of ``encode_tile``."""
    out = np.empty(len(cum) + 2, np.uint32)
    return out[: _kernels().ans_push(cum, freq, out)].copy()


def known_rows(model, codes: list[np.ndarray]) -> np.ndarray:
    """Every symbol's table row (n, 4) uint16 in decoding order, as decoding finds them step by
    step: what ``ans_decode`` is given to time the entropy coder alone."""
    c1, c2, c3, feats, strides, first, q, phases, dirs = _args(model, codes)
    return np.ascontiguousarray(q[_kernels().tile_rows(c1, c2, c3, feats, strides, first, phases, dirs)])


def ans_decode(words: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The entropy coder alone on the decoding side: a tile's symbols, in decoding order, from
    its words and every symbol's table row given in advance (``known_rows``)."""
    out = np.empty(len(rows), np.uint8)
    if _kernels().ans_pop(np.ascontiguousarray(words, np.uint32), rows, out):
        raise ValueError("payload has data left after its last switch (corrupt)")
    return out
