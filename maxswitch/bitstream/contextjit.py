"""The numba kernels of ``context.StageCoder`` (imported on first use, cached on disk, like
``tablejit.py``): the first layer of the context model, a sum of rows of one integer table,
for the windows of one phase. Every value is an integer held in float32 whose sums stay below
2^24 (``StageNet.check``), so the order of the sums does not matter: the same integers as
``torch.nn.functional.embedding_bag``, which computed them before.
"""

import numpy as np

from ..jit import njit


@njit(nogil=True)
def parent_sums(table, p1, p2, parent_row, grand_row, py, px, h, w, out):
    """Rows of the parent and grandparent features, summed, for the windows (py + 2i, px + 2j)
    of an (h, w) stage, row-major, into out (n, H1).

    p1: (C', h/2, w/2) uint8 codes of the next-coarser stage (C' = 0: none); p2: (C'', h/4, w/4)
    those of the stage above it; parent_row, grand_row: the layout's first rows of the groups.
    Window (y, x) reads the parent's code of each channel c' at (y/2, x/2) in row
    ``parent_row + (c' * 4 + quadrant(y, x)) * 4 + code``, and the grandparent's at (y/4, x/4)
    with the quadrant of (y/2, x/2) (``context.parent_rows``).
    """
    c1, c2, hidden = p1.shape[0], p2.shape[0], table.shape[1]
    n = 0
    for y in range(py, h, 2):
        for x in range(px, w, 2):
            for j in range(hidden):
                out[n, j] = 0.0
            q = (y % 2) * 2 + x % 2
            for c in range(c1):
                r = parent_row + (c * 4 + q) * 4 + p1[c, y // 2, x // 2]
                for j in range(hidden):
                    out[n, j] += table[r, j]
            q2 = ((y // 2) % 2) * 2 + (x // 2) % 2
            for c in range(c2):
                r = grand_row + (c * 4 + q2) * 4 + p2[c, y // 4, x // 4]
                for j in range(hidden):
                    out[n, j] += table[r, j]
            n += 1


@njit(nogil=True)
def first_layer(table, codes_c, k, py, px, avail, dirs, base, running, bias_row, out):
    """The first layer's sums (n, H1) of the windows (py + 2i, px + 2j) of phase k of one
    channel: ``base + running + table[bias_row]`` plus the rows of the 8 neighbours, row
    ``(d * 4 + k) * 5 + v`` with v the neighbour's code, or 4 (unknown) outside the tile or in
    a direction not yet decoded (``avail[d]`` False; ``context.neighbour_rows``)."""
    h, w = codes_c.shape
    hidden = table.shape[1]
    n = 0
    for y in range(py, h, 2):
        for x in range(px, w, 2):
            for j in range(hidden):
                out[n, j] = base[n, j] + running[n, j] + table[bias_row, j]
            for d in range(8):
                v = 4
                if avail[d]:
                    yy, xx = y + dirs[d, 0], x + dirs[d, 1]
                    if 0 <= yy < h and 0 <= xx < w:
                        v = codes_c[yy, xx]
                r = (d * 4 + k) * 5 + v
                for j in range(hidden):
                    out[n, j] += table[r, j]
            n += 1


@njit(nogil=True, fastmath=True)
def logits(a1, w2t, b2, w3t, b3, out):
    """The context model's two integer layers: ``a2 = clamp(floor((clamp(a1, 0, 255) @ w2 + b2)
    / 64), 0, 255)``, ``out = a2 @ w3 + b3`` (n, 4), with w2t = w2.T, w3t = w3.T. Integers below
    2^24 in float32, so any order of the sums gives the same integers (which is why fast-math's
    reordering is safe here); without BLAS, whose own threads would fight the tiles' threads."""
    n, h1 = a1.shape
    h2 = w2t.shape[0]
    x = np.empty(h1, np.float32)
    a2 = np.empty(h2, np.float32)
    for i in range(n):
        for j in range(h1):
            x[j] = min(max(a1[i, j], np.float32(0.0)), np.float32(255.0))
        for k in range(h2):
            acc = b2[k]
            for j in range(h1):
                acc += x[j] * w2t[k, j]
            a2[k] = min(max(np.floor(acc * np.float32(1 / 64)), np.float32(0.0)), np.float32(255.0))
        for m in range(4):
            acc = b3[m]
            for k in range(h2):
                acc += a2[k] * w3t[m, k]
            out[i, m] = acc
