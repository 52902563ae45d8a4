"""numba's ``njit`` with its on-disk cache where it can have one (used by every kernel module:
``tablejit.py``, ``encoderjit.py``, ``contextjit.py``; imported on first use, with numba).

``cache=True`` keeps compiled kernels in ``__pycache__`` beside the package (or numba's user cache
folder), so that only the first process compiles. On a read-only install with no writable home,
numba raises ``RuntimeError: cannot cache function ...: no locator available`` when decorating;
then the kernels are compiled in memory in every process (seconds of CPU) and one warning line says
so, once per process.
"""

import sys

import numba

CACHED = True  # False where numba found no writable cache folder (a read-only install)


def njit(**options):
    """``numba.njit(cache=True, **options)``, or without the disk cache where there is none."""

    def decorate(f):
        global CACHED
        if CACHED:
            try:
                return numba.njit(cache=True, **options)(f)
            except RuntimeError as e:
                if "locator" not in str(e):
                    raise
                CACHED = False
                sys.stderr.write(
                    "maxswitch: warning: numba has no writable cache folder here; the compiled kernels are "
                    "compiled in memory (set NUMBA_CACHE_DIR to a writable folder to keep them)\n"
                )
        return numba.njit(**options)(f)

    return decorate
