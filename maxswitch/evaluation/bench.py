"""Rate, distortion and speed of maxswitch models beside JPEG, WebP and PNG (``maxswitch bench``).

One run takes every image of a folder through:

* each maxswitch model: encode to a .msw file in memory, decode, measure (``metrics``);
* Pillow's JPEG and WebP over a quality sweep, and PNG (lossless);
* for each model and each image, JPEG and WebP at the model's bpp (the highest quality whose
  file is no larger) and at the model's PSNR (the lowest quality that is at least as good),
  found by bisection on the quality with every trial encoded in memory.

The pieces, each a plain function: ``list_images`` -> ``bench_image`` (per image, in worker
processes) -> ``run`` (all images, a ``BenchResult``). What is made of a result lives beside:
report.py (means, tables, BD-rates, JSON, CSV) and plot.py (the RD plot).

Timing: each worker process runs torch on ``threads`` threads (1 by default, like Pillow's
codecs) and warms each model up before timing. Times are wall-clock per image in the worker;
with several workers they share the machine. Everything but the times is deterministic: the
same command gives the same figures whatever ``jobs`` is.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MaxswitchError
from ..progress import Progress as Progress  # the CLI's progress callback for run() (tqdm)
from . import metrics

DEFAULT_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
QUALITY_RANGE = {"jpeg": (1, 100), "webp": (0, 100)}
CODEC_NAMES = {"maxswitch": "maxswitch", "jpeg": "JPEG", "webp": "WebP", "png": "PNG"}
MATCH_NAMES = {"bpp": "bpp", "psnr": "PSNR"}

# The paper's Table II (MultiPie faces): channels -> test RMSE with an untrained encoder.
TABLE_II = {
    (8, 8, 8): 0.1464,
    (6, 12, 24): 0.1387,
    (16, 16, 16): 0.1210,
    (12, 24, 48): 0.1138,
    (32, 32, 32): 0.0922,
    (24, 48, 96): 0.0876,
    (64, 64, 64): 0.0744,
    (48, 96, 192): 0.0718,
}


class BenchError(MaxswitchError):
    """A benchmark that cannot run (no images, bad folder, bad option); the message is for the user."""


def raw_bpp(channels) -> float:
    """Switch bits per RGB pixel before entropy coding: ``2 * (c1/4 + c2/16 + c3/64)``."""
    return 2.0 * sum(c / 4 ** (s + 1) for s, c in enumerate(channels))


# ---------------------------------------------------------------- data set


def list_images(folder: str | Path) -> tuple[list[str], list[str]]:
    """Files under ``folder``, recursively, sorted by relative path (``imagefiles.walk``: the
    rule training uses too).

    Returns:
        (images, others): relative POSIX paths of files with an extension Pillow opens,
        and of the other files (ignored). Hidden files and folders are left out.

    Raises:
        BenchError: ``folder`` is not a folder.
    """
    from ..imagefiles import walk

    if not Path(folder).is_dir():
        raise BenchError(f"{folder} is not a folder")
    return walk(folder)


# ---------------------------------------------------------------- per image


@dataclass
class Record:
    """One image through one codec setting.

    ``codec`` is maxswitch, jpeg, webp or png; ``model`` the maxswitch model (for a matched
    baseline, the model it was matched to); ``match`` "" for a plain setting, else "bpp" or
    "psnr"; ``status`` of a matched search: "ok", "capped" (even the highest quality stays
    under the target) or "floor" (even the lowest quality is over it). Times in seconds.
    """

    image: str
    width: int
    height: int
    codec: str
    model: str = ""
    match: str = ""
    quality: int | None = None
    status: str = ""
    bpp: float = 0.0
    bits_per_switch: float | None = None
    raw_bpp: float | None = None
    psnr: float = 0.0
    rmse: float = 0.0
    ssim: float | None = None
    ms_ssim: float | None = None
    block_psnr: float | None = None  # PSNR of 16 x 16 block means (level and colour)
    encode_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class ImageResult:
    """What one image gave: its records, or the reason it was skipped."""

    image: str
    records: list[Record] = field(default_factory=list)
    error: str | None = None


class _Trials:
    """One image through one Pillow codec: each quality is encoded once, decoded and measured on demand.

    ``x`` is uint8 (H, W, 3), or (H, W) for a greyscale image, which is then coded and measured
    as greyscale (Pillow's JPEG writes one channel; WebP has no grey mode and codes it as RGB)."""

    def __init__(self, fmt: str, x: np.ndarray):
        from PIL import Image

        self.fmt, self.x = fmt, x
        self.mode = "L" if x.ndim == 2 else "RGB"
        self.im = Image.fromarray(x, self.mode)
        self.h, self.w = x.shape[:2]
        self._enc: dict = {}
        self._dec: dict = {}
        self._psnr: dict = {}
        self._dist: dict = {}

    def encoded(self, q: int | None) -> tuple[bytes, float]:
        if q not in self._enc:
            buf = io.BytesIO()
            kw = {} if q is None else {"quality": int(q)}
            t0 = time.perf_counter()
            self.im.save(buf, self.fmt, **kw)
            self._enc[q] = (buf.getvalue(), time.perf_counter() - t0)
        return self._enc[q]

    def decoded(self, q: int | None) -> tuple[np.ndarray, float]:
        from PIL import Image

        if q not in self._dec:
            data = self.encoded(q)[0]
            t0 = time.perf_counter()
            with Image.open(io.BytesIO(data)) as im:
                x_hat = np.asarray(im.convert(self.mode))
            self._dec[q] = (x_hat, time.perf_counter() - t0)
        return self._dec[q]

    def bpp(self, q: int | None) -> float:
        return metrics.bpp(len(self.encoded(q)[0]), self.w, self.h)

    def psnr(self, q: int | None) -> float:
        if q not in self._psnr:
            self._psnr[q] = metrics.psnr(self.x, self.decoded(q)[0])
        return self._psnr[q]

    def record(self, name: str, codec: str, q: int | None, **kw) -> Record:
        if q not in self._dist:
            self._dist[q] = metrics.distortion(self.x, self.decoded(q)[0])
        return Record(
            name,
            self.w,
            self.h,
            codec,
            quality=q,
            bpp=self.bpp(q),
            encode_s=self.encoded(q)[1],
            decode_s=self.decoded(q)[1],
            **self._dist[q],
            **kw,
        )


def search_quality(f, target: float, lo: int, hi: int, at_most: bool) -> tuple[int, str]:
    """Bisect an integer quality in [lo, hi] for a measure ``f(q)`` that grows with the quality.

    Args:
        f: quality -> measure (bpp or PSNR), called about log2(hi - lo) times.
        at_most: True: the highest quality with ``f(q) <= target`` (matching a rate);
            False: the lowest quality with ``f(q) >= target`` (matching a quality).

    Returns:
        (quality, status): status "ok", "capped" when even ``hi`` stays under the target, or
        "floor" when even ``lo`` is over it (then the nearest end is returned).
    """
    if at_most:
        if f(hi) <= target:
            return hi, "ok" if f(hi) == target else "capped"
        if f(lo) > target:
            return lo, "floor"
        while hi - lo > 1:  # f(lo) <= target < f(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if f(mid) <= target else (lo, mid)
        return lo, "ok"
    if f(lo) >= target:
        return lo, "ok" if f(lo) == target else "floor"
    if f(hi) < target:
        return hi, "capped"
    while hi - lo > 1:  # f(lo) < target <= f(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if f(mid) >= target else (mid, hi)
    return hi, "ok"


_WORKER: dict = {}


def init_worker(model_keys: tuple[str, ...], threads: int) -> None:
    """Load the models in this process, set torch's threads and warm each model up."""
    import torch

    from .. import codec
    from ..networks.zoo import load_model

    torch.set_num_threads(threads)
    models = []
    for k in model_keys:
        name, coding = split_key(k)
        m = load_model(name)
        models.append((display_name(m, coding, k), m, coding))
    warm = np.zeros((64, 64, 3), np.uint8)
    for _, m, coding in models:
        codec.decode_array(codec.encode(warm, m, coding=coding), m)
    _WORKER["models"] = models


def split_key(key: str) -> tuple[str, str | None]:
    """``NAME@CODING`` -> (NAME, CODING); a key without ``@`` -> (key, None: the model's default)."""
    name, sep, coding = key.rpartition("@")
    if not sep or coding not in ("auto", "context", "table", "zstd"):
        return key, None
    return name, coding


def display_name(m, coding: str | None, key: str) -> str:
    """The name of a model's rows: its name, with ``@zstd``/``@context`` when a coding was asked for."""
    return f"{m.name}@{coding}" if coding else m.name


def _init_pool_worker(model_keys: tuple[str, ...], threads: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no traceback per worker
    init_worker(model_keys, threads)


def bench_image(root: str, rel: str, qualities: tuple[int, ...], baselines: bool, max_pixels: int) -> ImageResult:
    """Measure one image through every model and baseline (models from ``init_worker``)."""
    from .. import codec
    from .. import image as imagelib
    from ..bitstream import format as fmt

    try:
        loaded = imagelib.load((Path(root) / rel).read_bytes(), max_pixels)
    except imagelib.ImageError as e:
        return ImageResult(rel, error=str(e))
    except OSError as e:
        return ImageResult(rel, error=e.strerror or str(e))
    # measured as `decode` writes it: greyscale images as greyscale (H, W), the others as RGB
    x = imagelib.as_written(loaded.rgb, loaded.kind)
    h, w = x.shape[:2]
    out = ImageResult(rel)
    for name, m, coding in _WORKER["models"]:
        t0 = time.perf_counter()
        data = codec.encode(loaded, m, max_pixels=max_pixels, coding=coding)
        t1 = time.perf_counter()
        rgb_hat, header = codec.decode_array(data, m, max_pixels=max_pixels)
        x_hat = imagelib.as_written(rgb_hat, header.kind)
        t2 = time.perf_counter()
        header, payload = fmt.read(data)
        if header.version == fmt.VERSION_WHAT:  # bits per switch count the switches' part only
            from ..bitstream.parts import split

            payload = split(payload).switches
        n = header.switch_count
        out.records.append(
            Record(
                rel,
                w,
                h,
                "maxswitch",
                name,
                bpp=metrics.bpp(len(data), w, h),
                bits_per_switch=8 * len(payload) / n,
                raw_bpp=2 * n / (w * h),
                encode_s=t1 - t0,
                decode_s=t2 - t1,
                **metrics.distortion(x, x_hat),
            )
        )
    if not baselines:
        return out
    png = _Trials("PNG", x)
    out.records.append(png.record(rel, "png", None))
    trials = {"jpeg": _Trials("JPEG", x), "webp": _Trials("WEBP", x)}
    for name, t in trials.items():
        out.records.extend(t.record(rel, name, q) for q in qualities)
    for r in [r for r in out.records if r.codec == "maxswitch"]:
        for name, t in trials.items():
            lo, hi = QUALITY_RANGE[name]
            q, status = search_quality(t.bpp, r.bpp, lo, hi, at_most=True)
            out.records.append(t.record(rel, name, q, model=r.model, match="bpp", status=status))
            q, status = search_quality(t.psnr, r.psnr, lo, hi, at_most=False)
            out.records.append(t.record(rel, name, q, model=r.model, match="psnr", status=status))
    return out


def _bench_image_task(args) -> ImageResult:
    return bench_image(*args)


# ---------------------------------------------------------------- the run


@dataclass
class ModelInfo:
    """A benchmarked model: the name it records in files, how it was asked for, its channels,
    version and SHA-256 (models are retrained under the same name: the hash says which one)."""

    name: str
    key: str
    channels: tuple[int, int, int]
    version: int = 0
    sha256: str = ""
    family: str = ""
    coding: str = ""

    @property
    def curve(self) -> str:
        """The RD curve this model is a point of: its family and payload coding."""
        return f"maxswitch {self.family or 'user'} ({self.coding})"


@dataclass
class BenchResult:
    """Everything one run measured: per-image records in a fixed order and what was left out."""

    dataset: str
    models: list[ModelInfo]
    images: list[str]
    skipped: list[tuple[str, str]]
    ignored: list[str]
    records: list[Record]
    qualities: tuple[int, ...]
    baselines: bool
    jobs: int
    threads: int
    elapsed_s: float
    references: list["Reference"] = field(default_factory=list)


@dataclass(frozen=True)
class Reference:
    """A rate-distortion curve measured elsewhere (a JSON file), compared by BD-rate and plotted.

    ``benchmarks/reference/`` keeps maxswitch 0.1's ladder this way: the curve that the rate
    targets of later versions are measured against, without keeping the old models around.
    """

    name: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim: tuple[float, ...] | None
    source: str


def load_reference(path: str) -> Reference:
    """Read one curve in CompressAI's result schema (``name``, ``results.bpp``, ``results.psnr-rgb``
    or ``results.psnr``; ``results.ms-ssim-rgb`` optional), as ``bench --json`` writes it.

    Raises:
        BenchError: unreadable file, not that schema, or a curve of fewer than two points.
    """
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except OSError as e:
        raise BenchError(f"--reference {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BenchError(f"--reference {path}: not JSON ({e})") from None
    try:
        res = obj["results"]
        bpp = tuple(float(v) for v in res["bpp"])
        psnr = tuple(float(v) for v in res.get("psnr-rgb", res.get("psnr")))
        ms = res.get("ms-ssim-rgb")
        ms = None if ms is None or None in ms else tuple(float(v) for v in ms)
        name = str(obj["name"])
    except (KeyError, TypeError, ValueError):
        raise BenchError(
            f"--reference {path}: expected a curve in CompressAI's schema (name, results.bpp, results.psnr-rgb)"
        ) from None
    if len(bpp) != len(psnr) or len(bpp) < 2 or (ms is not None and len(ms) != len(bpp)):
        raise BenchError(f"--reference {path}: a curve needs at least 2 points of bpp and PSNR, as many of each")
    return Reference(name, bpp, psnr, ms, os.path.basename(path))


def resolve_models(keys) -> list[ModelInfo]:
    """Load each model once (checking its SHA-256) and describe it; duplicates are dropped.

    Raises:
        zoo.ModelError: unknown or damaged model.
        BenchError: a model without a decoder.
    """
    from ..networks.zoo import load_model, shipped

    out, seen = [], set()
    for k in keys:
        name, coding = split_key(k)
        m = load_model(name)
        shown = display_name(m, coding, k)
        if shown in seen:
            continue
        if m.decoder is None:
            raise BenchError(f"model {m.name} has no decoder and cannot be benchmarked")
        if coding == "context" and m.context is None:
            raise BenchError(f"model {m.name} has no context model (use {m.name}@zstd)")
        if coding == "table" and m.table is None:
            raise BenchError(f"model {m.name} has no context tables (use {m.name}@context or @zstd)")
        seen.add(shown)
        entry = shipped(m.name) or {}
        used = coding or ("auto" if m.context is not None or m.table is not None else "zstd")
        out.append(
            ModelInfo(shown, k, tuple(m.config.channels), m.version, m.sha256, entry.get("family", "user"), used)
        )
    return out


def run(
    dataset: str | Path,
    model_keys,
    *,
    qualities=DEFAULT_QUALITIES,
    baselines: bool = True,
    jobs: int = 1,
    threads: int = 1,
    limit: int | None = None,
    max_pixels: int | None = None,
    progress=None,
    warn=None,
) -> BenchResult:
    """Benchmark every image under ``dataset``.

    Args:
        model_keys: model names or asset paths.
        qualities: the JPEG and WebP sweep, each in 1..100.
        jobs: worker processes (1: in this process).
        threads: torch threads per worker.
        limit: only the first ``limit`` images (in sorted order).
        progress: called as ``progress(done, total, image)`` after each image.
        warn: called with a one-line message for each skipped image.

    Raises:
        BenchError: not a folder, no images, no readable image, bad qualities.
        zoo.ModelError: unknown model.
    """
    from ..image import DEFAULT_MAX_PIXELS

    qualities = tuple(sorted(set(int(q) for q in qualities)))
    if baselines and not qualities:
        raise BenchError("give at least one quality for the JPEG and WebP sweep")
    if any(not 1 <= q <= 100 for q in qualities):
        raise BenchError(f"qualities must lie in 1..100, got {list(qualities)}")
    models = resolve_models(model_keys)
    if not models:
        raise BenchError("give at least one model")
    images, others = list_images(dataset)
    if limit is not None:
        images = images[:limit]
    if not images:
        raise BenchError(f"no images found in {dataset}")
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    tasks = [(str(dataset), rel, qualities, baselines, max_pixels) for rel in images]
    keys = tuple(m.key for m in models)
    jobs = max(1, min(jobs, len(images)))
    t0 = time.perf_counter()
    results: dict[str, ImageResult] = {}

    def done(r: ImageResult) -> None:
        results[r.image] = r
        if r.error and warn:
            warn(f"skipped {r.image}: {r.error}")
        if progress:
            progress(len(results), len(images), r.image)

    if jobs == 1:
        import torch

        before = torch.get_num_threads()
        try:
            init_worker(keys, threads)
            for t in tasks:
                done(bench_image(*t))
        finally:
            torch.set_num_threads(before)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe once it has run
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_pool_worker, initargs=(keys, threads)) as ex:
            futures = [ex.submit(_bench_image_task, t) for t in tasks]
            try:
                for fut in as_completed(futures):
                    done(fut.result())
            except BaseException:
                # Ctrl-C or a failure: stop now rather than after each worker's current image (the
                # executor has no public way to end its processes; without it they finish that image)
                for proc in list((getattr(ex, "_processes", None) or {}).values()):
                    proc.terminate()
                ex.shutdown(wait=False, cancel_futures=True)
                raise
    ordered = [results[rel] for rel in images]  # fixed order, whatever finished first
    skipped = [(r.image, r.error) for r in ordered if r.error]
    kept = [r.image for r in ordered if not r.error]
    if not kept:
        raise BenchError(f"none of the {len(images)} image files in {dataset} could be read")
    records = [rec for r in ordered for rec in r.records]
    return BenchResult(
        str(dataset),
        models,
        kept,
        skipped,
        others,
        records,
        qualities,
        baselines,
        jobs,
        threads,
        time.perf_counter() - t0,
    )
