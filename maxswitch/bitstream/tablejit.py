"""The numba kernels of ``tablecoder.py`` (imported on first use: importing numba takes about
0.3 s). Module-level functions, so that numba's on-disk cache (``cache=True``, in
``__pycache__``) serves every later process without compiling again (the first process
compiles for about 6 s).

Array arguments, for a tile: ``c1, c2, c3`` its switches (C_s, h_s, w_s) uint8; ``feats``,
``strides`` (T, 8) int64 and ``first`` (T,) int64 the tables' features, their strides in the
context index and each table's first row (``tablecoder.layout``); ``q`` (N, 4) uint16 the
rows; ``phases`` (4, 2) and ``dirs`` (8, 2) int64 as ``context.PHASES`` and ``context.DIRS``.
"""

import numpy as np

from ..jit import njit

_njit = njit(nogil=True)  # maxswitch/jit.py: the disk cache where there is one


U = np.uint64
PREC = U(24)  # constriction's precision: intervals out of 2^24
LOW = U((1 << 24) - 1)
WORD = U(32)  # constriction's word
MIN_STATE = U(1 << 32)  # below this the decoder refills the state with a word


@_njit
def padded(a):
    """(C, h, w) codes -> (C, h + 2, w + 2) with a border of 4 (a neighbour outside the tile)."""
    C, h, w = a.shape
    pad = np.full((C, h + 2, w + 2), 4, np.uint8)
    pad[:, 1:-1, 1:-1] = a
    return pad


@_njit
def step_rows(pad, parent, c, py, px, t, feats, strides, first, dirs, rows):
    """Table t's rows for the windows (py + 2i, px + 2j) of channel c, row-major, into rows;
    returns their number. pad: this stage's codes with their border (``padded``); parent:
    (C', h/2, w/2) the coarser stage's codes (C' = 0 for stage 3). Reads only entries that
    decoding has filled in before this step (the tables are causal: ``TableModel.check``)."""
    C, hp, wp = pad.shape
    plane = hp * wp
    _, ph, pw = parent.shape
    # each feature as an offset from the window in the padded array (neighbours, channels)
    # or in the parent array, with its stride in the context index
    off = np.empty(8, np.int64)
    st = np.empty(8, np.int64)
    poff = np.empty(8, np.int64)
    pst = np.empty(8, np.int64)
    n_pad = 0
    n_par = 0
    for i in range(8):
        f = feats[t, i]
        if f < 0:
            break
        if f < 8:
            off[n_pad] = dirs[f, 0] * wp + dirs[f, 1]
            st[n_pad] = strides[t, i]
            n_pad += 1
        elif f < 8 + C:
            off[n_pad] = (f - 8 - c) * plane
            st[n_pad] = strides[t, i]
            n_pad += 1
        else:
            poff[n_par] = (f - 8 - C) * ph * pw
            pst[n_par] = strides[t, i]
            n_par += 1
    flat = pad.ravel()
    pflat = parent.ravel()
    r0 = first[t]
    m = 0
    for y in range(py, hp - 2, 2):
        b = c * plane + (y + 1) * wp + 1
        pb = (y >> 1) * pw
        for x in range(px, wp - 2, 2):
            row = r0
            for i in range(n_pad):
                row += flat[b + x + off[i]] * st[i]
            for i in range(n_par):
                row += pflat[pb + (x >> 1) + poff[i]] * pst[i]
            rows[m] = row
            m += 1
    return m


@_njit
def intervals(a, parent, base, feats, strides, first, q, phases, dirs, cum, freq, n, rows):
    """Write the interval [cum, cum + freq) (in units of 2^-16) of each of a stage's symbols,
    in decoding order, at cum[n:], freq[n:]; returns the new n. base: the stage's first
    channel among all stages' (its tables are (base + c) * 4 + k)."""
    pad = padded(a)
    for c in range(a.shape[0]):
        for k in range(4):
            py = phases[k, 0]
            px = phases[k, 1]
            m = step_rows(pad, parent, c, py, px, (base + c) * 4 + k, feats, strides, first, dirs, rows)
            sym = a[c, py::2, px::2].ravel()
            for i in range(m):  # independent reads, no branches: they overlap in the memory system
                r = rows[i]
                s = sym[i]
                q0, q1, q2 = np.uint32(q[r, 0]), np.uint32(q[r, 1]), np.uint32(q[r, 2])
                cum[n + i] = (q0 if s > 0 else 0) + (q1 if s > 1 else 0) + (q2 if s > 2 else 0)
                freq[n + i] = q[r, s]
            n += m
    return n


@_njit
def tile_intervals(c1, c2, c3, feats, strides, first, q, phases, dirs):
    """The tables' part of encoding a tile: every symbol's interval, in decoding order, as
    (cum, freq) uint32 arrays in units of 2^-16."""
    total = c1.size + c2.size + c3.size
    cum = np.empty(total, np.uint32)
    freq = np.empty(total, np.uint32)
    rows = np.empty((c1.shape[1] + 1) * (c1.shape[2] + 1) // 4 + 1, np.int64)  # the largest step
    none = np.zeros((0, 1, 1), np.uint8)
    C1, C2 = c1.shape[0], c2.shape[0]
    n = intervals(c3, none, C1 + C2, feats, strides, first, q, phases, dirs, cum, freq, 0, rows)
    n = intervals(c2, c3, C1, feats, strides, first, q, phases, dirs, cum, freq, n, rows)
    intervals(c1, c2, 0, feats, strides, first, q, phases, dirs, cum, freq, n, rows)
    return cum, freq


@_njit
def tile_rows(c1, c2, c3, feats, strides, first, phases, dirs):
    """Every symbol's table row, in decoding order (for measuring: ``tablecoder.ans_decode``)."""
    rows = np.empty(c1.size + c2.size + c3.size, np.int64)
    none = np.zeros((0, 1, 1), np.uint8)
    C1, C2 = c1.shape[0], c2.shape[0]
    n = 0
    for s in range(2, -1, -1):
        a = c3 if s == 2 else (c2 if s == 1 else c1)
        parent = none if s == 2 else (c3 if s == 1 else c2)
        base = C1 + C2 if s == 2 else (C1 if s == 1 else 0)
        pad = padded(a)
        for c in range(a.shape[0]):
            for k in range(4):
                n += step_rows(
                    pad,
                    parent,
                    c,
                    phases[k, 0],
                    phases[k, 1],
                    (base + c) * 4 + k,
                    feats,
                    strides,
                    first,
                    dirs,
                    rows[n:],
                )
    return rows


@_njit
def ans_push(cum, freq, out):
    """The entropy coder's part: constriction's ANS stack given every symbol's interval
    (``tile_intervals``); the words into out (room for one per symbol plus two); returns
    their number."""
    state = U(0)
    m = 0
    for i in range(len(cum) - 1, -1, -1):  # a stack: the last symbol first
        f = U(freq[i]) << U(8)
        if (state >> U(40)) >= f:
            out[m] = np.uint32(state & U(0xFFFFFFFF))
            m += 1
            state >>= WORD
        state = ((state // f) << PREC) | ((U(cum[i]) << U(8)) + state % f)
    if state >> WORD:  # then the state's nonzero words, least significant first
        out[m] = np.uint32(state & U(0xFFFFFFFF))
        out[m + 1] = np.uint32(state >> WORD)
        m += 2
    elif state:
        out[m] = np.uint32(state)
        m += 1
    return m


@_njit
def encode(c1, c2, c3, feats, strides, first, q, phases, dirs, out):
    """A tile's ANS words into out (room for one per symbol plus two); returns their number."""
    cum, freq = tile_intervals(c1, c2, c3, feats, strides, first, q, phases, dirs)
    return ans_push(cum, freq, out)


@_njit
def initial_state(words):
    """constriction's start of decoding: (state, position of the next word to pop), or
    position -2 when the last word is zero (not a stream)."""
    pos = len(words) - 1
    state = U(0)
    if pos >= 0:
        if words[pos] == 0:
            return state, -2
        state = U(words[pos])
        pos -= 1
        if pos >= 0:
            state = (state << WORD) | U(words[pos])
            pos -= 1
    return state, pos


@_njit
def pop(state, pos, words, q0, q1, q2):
    """Decode one symbol of the interval list (0, q0, q0 + q1, q0 + q1 + q2, 2^16) (x 256):
    returns (symbol, state, pos)."""
    quantile = state & LOW
    qq = quantile >> U(8)  # every interval starts and ends at a multiple of 256
    c1 = U(q0)
    c2 = c1 + U(q1)
    c3 = c2 + U(q2)
    sym = (qq >= c1) + (qq >= c2) + (qq >= c3)  # the interval holding qq, without branches
    lo = (c1 if sym == 1 else U(0)) + (c2 if sym == 2 else U(0)) + (c3 if sym == 3 else U(0))
    hi = c1 if sym == 0 else (c2 if sym == 1 else (c3 if sym == 2 else U(1 << 16)))
    state = (state >> PREC) * ((hi - lo) << U(8)) + quantile - (lo << U(8))
    if state < MIN_STATE and pos >= 0:
        state = (state << WORD) | U(words[pos])
        pos -= 1
    return sym, state, pos


@_njit
def ans_pop(words, rows, out):
    """The entropy coder alone on the decoding side, for measuring its share: symbols into out
    given every symbol's table row (n, 4) uint16 (known here; decoding proper finds each step's
    rows from the symbols before it). Returns 0 where the words end cleanly."""
    state, pos = initial_state(words)
    for i in range(len(out)):
        out[i], state, pos = pop(state, pos, words, rows[i, 0], rows[i, 1], rows[i, 2])
    return 0 if state == 0 and pos == -1 else 2


@_njit
def decode_stage(words, pos, state, a, parent, base, feats, strides, first, q, phases, dirs, rows, qs):
    """Pop one stage's symbols into a, step by step (channel, phase): the table rows of the
    whole step first (they depend on earlier steps only) and their frequencies, then the
    ANS chain; returns (pos, state)."""
    C, h, w = a.shape
    pad = np.full((C, h + 2, w + 2), 4, np.uint8)
    for c in range(C):
        for k in range(4):
            py = phases[k, 0]
            px = phases[k, 1]
            m = step_rows(pad, parent, c, py, px, (base + c) * 4 + k, feats, strides, first, dirs, rows)
            for i in range(m):
                r = rows[i]
                for j in range(4):
                    qs[i, j] = q[r, j]
            i = 0
            for y in range(py + 1, h + 1, 2):
                for x in range(px + 1, w + 1, 2):
                    pad[c, y, x], state, pos = pop(state, pos, words, qs[i, 0], qs[i, 1], qs[i, 2])
                    i += 1
    a[...] = pad[:, 1:-1, 1:-1]
    return pos, state


@_njit
def decode(words, c1, c2, c3, feats, strides, first, q, phases, dirs):
    """Fill c1, c2, c3 from a tile's words; returns 0, or 1 (the last word is zero: not a
    stream) or 2 (the words do not end with the last switch: corrupt)."""
    state, pos = initial_state(words)
    if pos == -2:
        return 1
    size = (c1.shape[1] + 1) * (c1.shape[2] + 1) // 4 + 1  # the largest step
    rows = np.empty(size, np.int64)
    qs = np.empty((size, 4), np.uint16)
    none = np.zeros((0, 1, 1), np.uint8)
    C1, C2 = c1.shape[0], c2.shape[0]
    pos, state = decode_stage(words, pos, state, c3, none, C1 + C2, feats, strides, first, q, phases, dirs, rows, qs)
    pos, state = decode_stage(words, pos, state, c2, c3, C1, feats, strides, first, q, phases, dirs, rows, qs)
    pos, state = decode_stage(words, pos, state, c1, c2, 0, feats, strides, first, q, phases, dirs, rows, qs)
    return 0 if state == 0 and pos == -1 else 2
