"""How many CPU threads the codec uses, without importing torch.

Encoding runs on numpy and numba (``encoder.py``, ``tablecoder.py``); torch is imported only
when a network or the MLP context model runs. The count lives here: before torch is imported
it is this module's own (``-t``, or the CPUs this process may run on, which is torch's default
too), and once torch is loaded it is torch's intra-op thread count, which a count set earlier
is handed to. Tiles are scheduled by it; the bytes of a file never depend on it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

_pending: int | None = None  # set before torch was imported; given to torch when it is


def default() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def get() -> int:
    """The thread count in force (torch's, once torch is loaded)."""
    global _pending
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_num_threads"):
        return _pending or default()
    if _pending is not None:
        torch.set_num_threads(_pending)
        _pending = None
    return max(1, torch.get_num_threads())


def set(n: int) -> None:  # noqa: A001  (threads.set reads as meant)
    """Use ``n`` threads (torch's too, now or when it is imported)."""
    global _pending
    n = max(1, int(n))
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        _pending = n
    else:
        _pending = None
        torch.set_num_threads(n)


@contextmanager
def limited(n: int):
    """Use ``n`` threads inside the block (one per tile or file running on threads of its own)."""
    before = get()
    set(n)
    try:
        yield
    finally:
        set(before)
