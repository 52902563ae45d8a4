"""The numba kernels of ``encoder.py`` (imported on first use, like ``tablejit.py``; numba's
on-disk cache, ``cache=True``, spares every later process the compilation).

One stage of the encoder on a tile: 3x3 convolution (zero padding 1), ReLU, 2x2 max-pool with
the position of the maximum (first in row-major order on ties), then the right shift and the
clamp that make the next stage's input. Every value is an integer carried in a float whose
mantissa holds every partial sum exactly (``SwitchEncoder.dtype``), so the order of the sums
does not matter and the switches equal torch's (``nets.Encoder``), bit for bit.
"""

import numpy as np

from ..jit import njit

ACT_MAX = 1023  # nets.ACT_MAX


@njit(nogil=True)
def first_input(rgb, out):
    """rgb: (h, w, 3) uint8 -> out: (3, h + 2, w + 2), pixel - 128 inside a zero border
    (out's border must be zero already)."""
    h, w, _ = rgb.shape
    for y in range(h):
        for x in range(w):
            for c in range(3):
                out[c, y + 1, x + 1] = np.float32(rgb[y, x, c]) - 128


@njit(nogil=True, fastmath={"contract"})
def stage(x, wt, b, shift, code, nxt):
    """One stage on a padded input.

    x: (C_in, h + 2, w + 2) input with a zero border; wt: (C, C_in, 3, 3) and b: (C,) integer
    weights and biases in x's dtype; shift: the stage's right shift; code: (C, h/2, w/2) uint8,
    written with the switches; nxt: (C, h/2 + 2, w/2 + 2), written inside its border (which
    must be zero) with the next stage's input ``min(floor(max(pool, 0) / 2^shift), ACT_MAX)``.
    """
    cin, hp, wp = x.shape
    h, w = hp - 2, wp - 2
    cout = wt.shape[0]
    scale = x.dtype.type(2.0**-shift)
    top = x.dtype.type(ACT_MAX)
    zero = x.dtype.type(0)
    r0 = np.empty(w, x.dtype)  # the conv rows 2i and 2i + 1 of one channel
    r1 = np.empty(w, x.dtype)
    for i in range(h // 2):
        for co in range(cout):
            bias = b[co]
            for j in range(w):
                r0[j] = bias
                r1[j] = bias
            for ci in range(cin):  # all 9 taps in one pass over the row: one read-modify-write per 9 terms
                a0 = x[ci, 2 * i]
                a1 = x[ci, 2 * i + 1]
                a2 = x[ci, 2 * i + 2]
                a3 = x[ci, 2 * i + 3]
                w00, w01, w02 = wt[co, ci, 0, 0], wt[co, ci, 0, 1], wt[co, ci, 0, 2]
                w10, w11, w12 = wt[co, ci, 1, 0], wt[co, ci, 1, 1], wt[co, ci, 1, 2]
                w20, w21, w22 = wt[co, ci, 2, 0], wt[co, ci, 2, 1], wt[co, ci, 2, 2]
                for j in range(w):
                    r0[j] += (
                        w00 * a0[j]
                        + w01 * a0[j + 1]
                        + w02 * a0[j + 2]
                        + w10 * a1[j]
                        + w11 * a1[j + 1]
                        + w12 * a1[j + 2]
                        + w20 * a2[j]
                        + w21 * a2[j + 1]
                        + w22 * a2[j + 2]
                    )
                    r1[j] += (
                        w00 * a1[j]
                        + w01 * a1[j + 1]
                        + w02 * a1[j + 2]
                        + w10 * a2[j]
                        + w11 * a2[j + 1]
                        + w12 * a2[j + 2]
                        + w20 * a3[j]
                        + w21 * a3[j + 1]
                        + w22 * a3[j + 2]
                    )
            for j in range(w // 2):
                m = r0[2 * j]
                k = 0
                if r0[2 * j + 1] > m:
                    m = r0[2 * j + 1]
                    k = 1
                if r1[2 * j] > m:
                    m = r1[2 * j]
                    k = 2
                if r1[2 * j + 1] > m:
                    m = r1[2 * j + 1]
                    k = 3
                if m <= zero:  # ReLU: every position holds 0, the first one wins
                    code[co, i, j] = 0
                    nxt[co, i + 1, j + 1] = zero
                else:
                    code[co, i, j] = k
                    nxt[co, i + 1, j + 1] = min(np.floor(m * scale), top)
