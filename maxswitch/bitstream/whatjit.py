"""The numba kernel of ``what.py``'s decoder (imported on first use, as ``tablejit.py``): the
inverse of the median-edge prediction, a raster-order recurrence that numpy cannot vectorise
(each value's prediction needs its decoded left neighbour). A Kodak image's what part is about
18,000 values: a few microseconds here, 10 to 30 ms as a Python loop."""

import numpy as np

from ..jit import njit


@njit(nogil=True)
def unresidual(r):
    """Residual planes (P, h, w) int64 -> the quantised planes, as ``what.unresidual``."""
    P, h, w = r.shape
    q = np.zeros_like(r)
    for i in range(P):
        for y in range(h):
            for x in range(w):
                if y == 0:  # first row: a = b = c = left (0 for the first value)
                    p = q[i, 0, x - 1] if x else 0
                else:
                    b = q[i, y - 1, x]
                    if x == 0:  # first column: a = c = up
                        a = c = b
                    else:
                        a, c = q[i, y, x - 1], q[i, y - 1, x - 1]
                    lo, hi = (a, b) if a < b else (b, a)
                    p = lo if c >= hi else (hi if c <= lo else a + b - c)
                q[i, y, x] = r[i, y, x] + p
    return q
