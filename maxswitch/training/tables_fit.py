"""Fitting the tables of coding 3 (``tables.py``): counts of switch codes per context, on the
switches of training images, with the features of each table chosen greedily.

For every (stage, channel, phase) table, independently (``fit_tables``):

1. Samples: the code of every window of that phase in every context tile of the training
   images, with every candidate feature (the causal neighbours, the earlier channels of the
   stage, the next-coarser stage's channels at the parent window).
2. Features, greedily (``select``): starting from none, add the candidate that most lowers
   the code length of held-out images (the last ``val_fraction`` of the list), as long as it
   lowers it by at least ``min_gain`` (relative) and the table stays within ``max_contexts``
   rows and one row per ``samples_per_context`` training samples.
3. Probabilities (``smoothed``): back-off smoothing along the chosen feature order, each row
   ``(n + alpha * p_coarser) / (N + alpha)`` where p_coarser is the row of the table without
   the last feature; fitted on all images, then quantised to integers ``q >= 1`` summing to
   2^16 (``quantise``).

Floats are used here only to choose and to count; what is stored is integers, and coding reads
nothing else. Deterministic for a given image list. CPU: natural-6-12-24 on the 300 BSDS500
training images takes minutes on 2 cores (docs/TRAINING.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..bitstream.context import PHASES
from ..bitstream.tables import MAX_FEATURES, Q_BITS, TableModel, _pad, candidates, card, feature, table_index


@dataclass(frozen=True)
class TableRecipe:
    alpha: float = 4.0  # back-off smoothing strength
    max_contexts: int = 16384  # rows per table at most (the asset's size; 4096: 2.5x smaller, +0.9% bits)
    samples_per_context: int = 20  # and at least this many training samples per row
    min_gain: float = 0.002  # a feature must shorten the held-out code by this fraction
    val_fraction: float = 0.2


def samples(tiles: list[list[np.ndarray]], channels, s: int, c: int, k: int) -> tuple[np.ndarray, dict]:
    """Codes (n,) uint8 of phase k of channel c of stage s over the tiles, and each candidate
    feature's values (n,) uint8, in the coder's order (``tables.feature``)."""
    syms, feats = [], {f: [] for f in candidates(channels, s, c, k)}
    py, px = PHASES[k]
    for tc in tiles:
        pad = _pad(tc[s])
        parent = tc[s + 1] if s < 2 else None
        syms.append(tc[s][c, py::2, px::2].ravel())
        for f in feats:
            feats[f].append(np.ascontiguousarray(feature(f, pad, parent, c, k)).ravel())
    return np.concatenate(syms), {f: np.concatenate(v) for f, v in feats.items()}


def smoothed(sym: np.ndarray, F: dict, feats: list[int], alpha: float) -> np.ndarray:
    """Back-off smoothed probabilities (prod of cards, 4) float64 (see the module docstring)."""
    cnt0 = np.bincount(sym, minlength=4).astype(np.float64)
    P = ((cnt0 + 0.5) / (cnt0.sum() + 2.0))[None]
    ctx = np.zeros(len(sym), np.int64)
    stride = 1
    for f in feats:
        ctx += F[f].astype(np.int64) * stride
        size = stride * card(f)
        cnt = np.bincount(ctx * 4 + sym, minlength=size * 4).reshape(size, 4).astype(np.float64)
        P = (cnt + alpha * P[np.arange(size) % stride]) / (cnt.sum(1, keepdims=True) + alpha)
        stride = size
    return P


def _bits(P: np.ndarray, sym: np.ndarray, F: dict, feats: list[int]) -> float:
    ctx = np.zeros(len(sym), np.int64)
    stride = 1
    for f in feats:
        ctx += F[f].astype(np.int64) * stride
        stride *= card(f)
    return float(-np.log2(P[ctx, sym]).sum())


def select(sym, F, vsym, VF, recipe: TableRecipe) -> list[int]:
    """Greedy forward selection of at most MAX_FEATURES features (see the module docstring)."""
    cap = min(recipe.max_contexts, len(sym) / recipe.samples_per_context)
    chosen: list[int] = []
    best = _bits(smoothed(sym, F, [], recipe.alpha), vsym, VF, [])
    while len(chosen) < MAX_FEATURES:
        size = int(np.prod([card(f) for f in chosen])) if chosen else 1
        trials = [
            (_bits(smoothed(sym, F, chosen + [f], recipe.alpha), vsym, VF, chosen + [f]), f)
            for f in F
            if f not in chosen and size * card(f) <= cap
        ]
        if not trials:
            break
        b, f = min(trials)
        if b > best * (1 - recipe.min_gain):
            break
        chosen.append(f)
        best = b
    return chosen


def quantise(P: np.ndarray) -> np.ndarray:
    """Probabilities (n, 4) -> uint16 integers >= 1 summing to 2^16 per row (the remainder of
    the floors goes to the first most likely code)."""
    R = (1 << Q_BITS) - 4
    f = np.floor(P * R).astype(np.int64)
    f[np.arange(len(f)), P.argmax(1)] += R - f.sum(1)
    return (f + 1).astype(np.uint16)


_JOB: dict = {}  # the tiles and settings of a fit, set before the worker processes fork (not pickled per table)


def _fit_one(key):
    tiles, split, channels, recipe = (_JOB[k] for k in ("tiles", "split", "channels", "recipe"))
    s, c, k = key
    sym, F = samples(tiles, channels, s, c, k)
    vsym, VF = sym[split[key] :], {f: v[split[key] :] for f, v in F.items()}
    tsym, TF = sym[: split[key]], {f: v[: split[key]] for f, v in F.items()}
    feats = select(tsym, TF, vsym, VF, recipe)
    return key, feats, quantise(smoothed(sym, F, feats, recipe.alpha))


def fit_tables(
    model, images: list, recipe: TableRecipe = TableRecipe(), workers: int = 1, log=None, progress=None
) -> TableModel:
    """Fit a TableModel for ``model``'s encoder on ``images`` (uint8 (H, W, 3) arrays).

    The last ``recipe.val_fraction`` of the images choose the features (held out from the
    counts that choose them), then all images give the counts. ``progress(stage, done, total)``
    is called after each image's switches (stage "switches") and each table (stage "tables").
    """
    from .. import codec
    from ..bitstream import entropy

    channels = tuple(model.config.channels)
    tiles, n_train_tiles = [], None
    n_val = max(1, int(len(images) * recipe.val_fraction))
    for i, rgb in enumerate(images):
        if i == len(images) - n_val:
            n_train_tiles = len(tiles)
        codes = [np.asarray(a) for a in codec.compute_switches(model, rgb)]
        H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2
        tiles += [entropy._tile_codes(codes, t) for t in entropy.tiles(H, W)]
        if progress:
            progress("switches", i + 1, len(images))
    keys = [(s, c, k) for s in range(3) for c in range(channels[s]) for k in range(4)]
    # where the held-out samples start in each table's sample list
    split = {}
    for s, c, k in keys:
        py, px = PHASES[k]
        split[(s, c, k)] = sum(tc[s][c, py::2, px::2].size for tc in tiles[:n_train_tiles])
    _JOB.update(tiles=tiles, split=split, channels=channels, recipe=recipe)
    results = []
    try:
        pool = None
        if workers > 1:
            import multiprocessing as mp

            pool = mp.get_context("fork").Pool(workers, initializer=_default_signals)
        for r in pool.imap(_fit_one, keys, chunksize=4) if pool else map(_fit_one, keys):
            results.append(r)
            if progress:
                progress("tables", len(results), len(keys))
        if pool:  # the workers end on the pool's sentinel: Pool.terminate() could wait forever
            pool.close()  # on a worker blocked on the task queue's lock, which terminate holds
            pool.join()
            pool = None
    finally:
        if pool:  # an error or a signal: stop the workers at once
            pool.terminate()
        _JOB.clear()
    T = len(keys)
    features = np.full((T, MAX_FEATURES), -1, np.int64)
    by_t = {}
    for (s, c, k), feats, q in results:
        t = table_index(channels, s, c, k)
        features[t, : len(feats)] = feats
        by_t[t] = q
        if log:
            log(f"stage {s + 1} channel {c} phase {k}: features {feats}, {len(q)} rows")
    offsets = np.cumsum([0] + [len(by_t[t]) for t in range(T)])
    return TableModel(channels, features, offsets.astype(np.int64), np.concatenate([by_t[t] for t in range(T)]))


def _default_signals() -> None:
    """In a forked worker: the default actions for SIGINT, SIGTERM and SIGHUP, not the CLI's
    handler (which would remove the parent's temporary files), so that ``Pool.terminate`` ends
    it."""
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)


def fit_tables_asset(
    model,
    data: str,
    output: str,
    recipe: TableRecipe = TableRecipe(),
    *,
    split: str | None = None,
    name: str | None = None,
    version: int | None = None,
    workers: int = 1,
    log=None,
    progress=None,
) -> dict:
    """Fit context tables (coding 3) to ``model``'s switches on the images of ``data`` (a folder
    or a list file; training images, never a test set) and write ``output``: the model with its
    decoder, its context model and the new tables, named ``name`` (default: the model's name),
    as version ``version`` (default: the model's version + 1). The images are held in memory.
    The caller checks ``output`` first (``train.check_new_asset``: never the model itself).

    Args:
        log: one-line messages (a warning per unreadable image, the closing line).
        progress: ``progress(stage, done, total)``, as ``fit_tables``.

    Returns:
        The fit's record (stored in the asset under ``record.table``).

    Raises:
        train.TrainError: no (readable) images, a bad split.
        zoo.ModelError: the model cannot be loaded.
    """
    from ..networks.zoo import load_model, save_model
    from . import train as T

    m = load_model(model)
    log = log or (lambda msg: None)
    paths = T.select_split(T.list_images(data), split)
    if not paths:
        raise T.TrainError(f"no images found in {data}")
    t0 = time.time()
    images = T.load_rgb(paths, warn=log)
    if not images:
        raise T.TrainError(f"none of the {len(paths)} image files could be read")
    table = fit_tables(m, images, recipe, workers=workers, progress=progress)
    record = {
        "data": os.path.basename(os.path.normpath(data)),
        "split": split,
        "images": len(images),
        "recipe": asdict(recipe),
        "contexts": int(len(table.q)),
        "seconds": round(time.time() - t0, 1),
        "workers": workers,
    }
    name, version = name or m.name, version or m.version + 1
    meta = dict(m.meta.get("record", {}), table=record)
    save_model(output, name, version, m.config, m.encoder, m.decoder, meta, context=m.context, table=table)
    log(
        f"{m.name}: done: {len(table.q)} table rows ({2 * table.q.size} bytes) from {len(images)} images in "
        f"{record['seconds']:.0f} s; wrote {output} ({name} v{version})"
    )
    return record
