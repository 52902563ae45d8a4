"""Rate, distortion and speed of maxswitch models beside JPEG, WebP and PNG (``maxswitch bench``).

One run takes every image of a folder through:

* each maxswitch model: encode to a .msw file in memory, decode, measure (``metrics``);
* Pillow's JPEG and WebP over a quality sweep, and PNG (lossless);
* for each model and each image, JPEG and WebP at the model's bpp (the highest quality whose
  file is no larger) and at the model's PSNR (the lowest quality that is at least as good),
  found by bisection on the quality with every trial encoded in memory.

The pieces, each a plain function: ``list_images`` -> ``bench_image`` (per image, in worker
processes) -> ``summarise`` (means per codec setting, in a fixed order) -> ``format_report``,
``compressai_json``, ``write_csv``, ``plot``. ``run`` ties them together.

Timing: each worker process runs torch on ``threads`` threads (1 by default, like Pillow's
codecs) and warms each model up before timing. Times are wall-clock per image in the worker;
with several workers they share the machine. Everything but the times is deterministic: the
same command gives the same figures whatever ``jobs`` is.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import metrics
from .errors import MaxswitchError

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
    """Files under ``folder``, recursively, sorted by relative path.

    Returns:
        (images, others): relative POSIX paths of files with an extension Pillow opens,
        and of the other files (ignored). Hidden files and folders are left out.

    Raises:
        BenchError: ``folder`` is not a folder.
    """
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise BenchError(f"{folder} is not a folder")
    opens = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    images, others = [], []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            rel = (Path(dirpath) / f).relative_to(root).as_posix()
            (images if Path(f).suffix.lower() in opens else others).append(rel)
    return sorted(images), sorted(others)


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
    encode_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class ImageResult:
    """What one image gave: its records, or the reason it was skipped."""

    image: str
    records: list[Record] = field(default_factory=list)
    error: str | None = None


class _Trials:
    """One image through one Pillow codec: each quality is encoded once, decoded and measured on demand."""

    def __init__(self, fmt: str, rgb: np.ndarray):
        from PIL import Image

        self.fmt, self.x = fmt, rgb
        self.im = Image.fromarray(rgb, "RGB")
        self.h, self.w = rgb.shape[:2]
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
                x_hat = np.asarray(im.convert("RGB"))
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

    from . import codec
    from .zoo import load_model

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
    if not sep or coding not in ("auto", "context", "zstd"):
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
    from . import codec
    from . import format as fmt
    from . import image as imagelib

    try:
        loaded = imagelib.load((Path(root) / rel).read_bytes(), max_pixels)
    except imagelib.ImageError as e:
        return ImageResult(rel, error=str(e))
    except OSError as e:
        return ImageResult(rel, error=e.strerror or str(e))
    x = loaded.rgb  # (H, W, 3) uint8
    h, w = x.shape[:2]
    out = ImageResult(rel)
    for name, m, coding in _WORKER["models"]:
        t0 = time.perf_counter()
        data = codec.encode(loaded, m, max_pixels=max_pixels, coding=coding)
        t1 = time.perf_counter()
        x_hat, _ = codec.decode_array(data, m, max_pixels=max_pixels)
        t2 = time.perf_counter()
        header, payload = fmt.read(data)
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
    from .zoo import load_model, shipped

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
        seen.add(shown)
        entry = shipped(m.name) or {}
        used = coding or ("auto" if m.context is not None else "zstd")
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
    from .image import DEFAULT_MAX_PIXELS

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


# ---------------------------------------------------------------- summaries


@dataclass
class Row:
    """Means over the images of one codec setting (a point of an RD curve).

    ``psnr`` is the mean of per-image PSNRs (CompressAI's way); ``rmse`` the root of the mean of
    per-image MSEs, over [0, 1] (the paper's way, and benchmarks/reproduce.py's); the other
    measures are plain means over the images where they apply.
    """

    codec: str
    model: str
    match: str
    quality: int | None
    n: int
    bpp: float
    psnr: float
    rmse: float
    ssim: float | None
    ms_ssim: float | None
    bits_per_switch: float | None
    raw_bpp: float | None
    q_mean: float | None
    q_min: int | None
    q_max: int | None
    status: dict
    encode_s: float
    decode_s: float
    encode_mpix_s: float
    decode_mpix_s: float

    @property
    def label(self) -> str:
        """The row's name in tables and plots."""
        if self.codec == "maxswitch":
            return self.model
        name = CODEC_NAMES[self.codec]
        if self.match:
            return f"{name} at the {MATCH_NAMES[self.match]} of {self.model}"
        if self.codec == "png":
            return "PNG (lossless)"
        return f"{name} q={self.quality}"


def _row(key, recs: list[Record]) -> Row:
    codec, model, match, quality = key
    pixels = sum(r.width * r.height for r in recs) / 1e6
    enc, dec = math.fsum(r.encode_s for r in recs), math.fsum(r.decode_s for r in recs)
    qs = [r.quality for r in recs if r.quality is not None]
    status: dict = {}
    for r in recs:
        if r.status:
            status[r.status] = status.get(r.status, 0) + 1
    return Row(
        codec,
        model,
        match,
        quality,
        len(recs),
        metrics.mean(r.bpp for r in recs),
        metrics.mean(r.psnr for r in recs),
        math.sqrt(metrics.mean(r.rmse**2 for r in recs)),
        metrics.mean(r.ssim for r in recs),
        metrics.mean(r.ms_ssim for r in recs),
        metrics.mean(r.bits_per_switch for r in recs),
        metrics.mean(r.raw_bpp for r in recs),
        metrics.mean(qs) if match else None,
        min(qs) if match and qs else None,
        max(qs) if match and qs else None,
        status,
        enc / len(recs),
        dec / len(recs),
        pixels / enc if enc else math.inf,
        pixels / dec if dec else math.inf,
    )


def summarise(result: BenchResult) -> list[Row]:
    """One row per codec setting, in a fixed order: each model then its matched baselines, PNG,
    the JPEG sweep, the WebP sweep."""
    groups: dict = {}
    for r in result.records:
        key = (r.codec, r.model, r.match, None if r.match else r.quality)
        groups.setdefault(key, []).append(r)
    order = []
    for m in result.models:
        order.append(("maxswitch", m.name, "", None))
        order += [(c, m.name, match, None) for match in ("bpp", "psnr") for c in ("jpeg", "webp")]
    order.append(("png", "", "", None))
    order += [(c, "", "", q) for c in ("jpeg", "webp") for q in result.qualities]
    return [_row(k, groups[k]) for k in order if k in groups]


def _find(rows: list[Row], codec: str, model: str = "", match: str = "") -> Row | None:
    return next((r for r in rows if (r.codec, r.model, r.match) == (codec, model, match)), None)


# ---------------------------------------------------------------- reports


def _f(v, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]], markdown: bool, left: int = 1) -> str:
    if markdown:
        sep = ["---" if i < left else "---:" for i in range(len(header))]
        return "\n".join("| " + " | ".join(r) + " |" for r in [header, sep] + rows)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt_row(header), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in rows])


def _quality_cell(r: Row) -> str:
    if r.match:
        cell = f"{r.q_mean:.1f} ({r.q_min}-{r.q_max})"
        off = [f"{k} {v}/{r.n}" for k, v in sorted(r.status.items()) if k != "ok"]
        return cell + (", " + ", ".join(off) if off else "")
    return "-" if r.quality is None else str(r.quality)


def rd_table(rows: list[Row], markdown: bool = False) -> str:
    """The rate-distortion table (deterministic: no times)."""
    head = ["codec", "bpp", "PSNR dB", "RMSE", "SSIM", "MS-SSIM", "bits/switch", "quality"]
    body = []
    for r in rows:
        label = ("  " if r.match and not markdown else "") + r.label
        body.append(
            [
                label,
                _f(r.bpp, 3),
                _f(r.psnr, 2),
                _f(r.rmse, 4),
                _f(r.ssim, 4),
                _f(r.ms_ssim, 4),
                _f(r.bits_per_switch, 3),
                _quality_cell(r),
            ]
        )
    return _table(head, body, markdown)


def speed_table(rows: list[Row], markdown: bool = False) -> str:
    """Mean encode and decode times per image and throughput, per codec (sweeps pooled)."""
    head = ["codec", "encode ms", "decode ms", "encode MP/s", "decode MP/s"]
    body = []
    for r in rows:
        if r.codec in ("maxswitch", "png"):
            body.append(
                [
                    r.label,
                    _f(1e3 * r.encode_s, 1),
                    _f(1e3 * r.decode_s, 1),
                    _f(r.encode_mpix_s, 2),
                    _f(r.decode_mpix_s, 2),
                ]
            )
    for c in ("jpeg", "webp"):
        sweep = [r for r in rows if r.codec == c and not r.match]
        if sweep:
            n = sum(r.n for r in sweep)
            enc = sum(r.encode_s * r.n for r in sweep)
            dec = sum(r.decode_s * r.n for r in sweep)
            mpix = sum(r.n * r.encode_s * r.encode_mpix_s for r in sweep)
            body.append(
                [
                    f"{CODEC_NAMES[c]} (mean over q={sweep[0].quality}..{sweep[-1].quality})",
                    _f(1e3 * enc / n, 1),
                    _f(1e3 * dec / n, 1),
                    _f(mpix / enc, 2),
                    _f(mpix / dec, 2),
                ]
            )
    return _table(head, body, markdown)


def family_curves(result: BenchResult, rows: list[Row]) -> dict[str, list[Row]]:
    """The maxswitch rows grouped into RD curves (one per model family and payload coding),
    each curve's points ordered by bpp."""
    curves: dict[str, list[Row]] = {}
    for mi in result.models:
        r = _find(rows, "maxswitch", mi.name)
        if r is not None:
            curves.setdefault(mi.curve, []).append(r)
    return {k: sorted(v, key=lambda r: r.bpp) for k, v in curves.items()}


def bd_rates(result: BenchResult, rows: list[Row]) -> list[tuple[str, str, float | None, tuple | None]]:
    """BD-rate (percent, PSNR-based) of every maxswitch curve against every other maxswitch
    curve of the same family, the ``--reference`` curves and the JPEG and WebP sweeps:
    (curve, reference, BD-rate, the shared PSNR interval)."""
    from .rd import bd_rate, overlap

    curves = family_curves(result, rows)
    points = lambda rs: ([r.bpp for r in rs], [r.psnr for r in rs])  # noqa: E731
    refs = {ref.name: (list(ref.bpp), list(ref.psnr)) for ref in result.references}
    for c in ("jpeg", "webp"):
        sweep = [r for r in rows if r.codec == c and not r.match]
        if len(sweep) >= 2:
            refs[f"{CODEC_NAMES[c]} sweep"] = points(sweep)
    out = []
    for name, pts in curves.items():
        others = {k: points(v) for k, v in curves.items() if k != name and k.split(" (")[0] == name.split(" (")[0]}
        for ref_name, (rb, rp) in list(others.items()) + list(refs.items()):
            tb, tp = points(pts)
            out.append((name, ref_name, bd_rate(rb, rp, tb, tp), overlap(rp, tp)))
    return out


def bd_lines(result: BenchResult, rows: list[Row]) -> list[str]:
    lines = []
    for name, ref, v, ov in bd_rates(result, rows):
        if v is None:
            lines.append(f"{name} against {ref}: no BD-rate (no shared PSNR range or fewer than 2 points)")
        else:
            lines.append(f"{name} against {ref}: BD-rate {v:+.1f}% over {ov[0]:.2f}..{ov[1]:.2f} dB")
    return lines


def gap_lines(rows: list[Row]) -> list[str]:
    """One sentence per model and baseline: how far switch-only coding is from it."""
    lines = []
    for m in [r for r in rows if r.codec == "maxswitch"]:
        for c in ("jpeg", "webp"):
            at_bpp, at_psnr = _find(rows, c, m.model, "bpp"), _find(rows, c, m.model, "psnr")
            if not at_bpp or not at_psnr:
                continue
            name = CODEC_NAMES[c]
            s = (
                f"{m.model} ({m.bpp:.3f} bpp, {m.psnr:.2f} dB) vs {name}: at no more bits {name} gives "
                f"{at_bpp.psnr:.2f} dB ({at_bpp.psnr - m.psnr:+.2f} dB, {at_bpp.bpp:.3f} bpp"
            )
            if at_bpp.status.get("capped"):
                s += f"; on {at_bpp.status['capped']}/{at_bpp.n} images even q=100 spends fewer bits"
            s += f"); to reach its PSNR {name} needs {at_psnr.bpp:.3f} bpp ({m.bpp / at_psnr.bpp:.1f}x fewer bits"
            if at_psnr.status.get("floor"):
                s += f"; on {at_psnr.status['floor']}/{at_psnr.n} images even the lowest quality is better"
            lines.append(s + ").")
    return lines


def paper_table(result: BenchResult, rows: list[Row], markdown: bool = False) -> str | None:
    """The models whose architecture is in the paper's Table II, beside the paper's RMSE."""
    body = []
    for mi in result.models:
        r = _find(rows, "maxswitch", mi.name)
        if r is None or mi.channels not in TABLE_II:
            continue
        paper = TABLE_II[mi.channels]
        body.append(
            [
                mi.name,
                str(list(mi.channels)),
                _f(raw_bpp(mi.channels), 2),
                _f(r.bpp, 3),
                _f(r.rmse, 4),
                _f(paper, 4),
                _f(r.psnr, 2),
                _f(metrics.psnr_from_rmse(paper), 2),
            ]
        )
    if not body:
        return None
    head = ["model", "channels", "raw bpp", "file bpp", "RMSE", "paper RMSE", "PSNR dB", "paper PSNR dB"]
    return _table(head, body, markdown)


def format_report(result: BenchResult, markdown: bool = False) -> str:
    """The readable report: what was measured, the RD table, the gaps, the paper, the speeds."""
    rows = summarise(result)
    n = len(result.images)
    px = sum({r.image: r.width * r.height for r in result.records}.values()) / n / 1e6
    head = f"maxswitch bench: {result.dataset}: {n} image{'s' if n != 1 else ''}, {px:.3f} MP on average"
    notes = []
    if result.skipped:
        notes.append(f"{len(result.skipped)} unreadable image file(s) skipped")
    if result.ignored:
        notes.append(f"{len(result.ignored)} other file(s) ignored")
    if notes:
        head += " (" + "; ".join(notes) + ")"
    out = [head, "models: " + ", ".join(f"{m.name} v{m.version} (SHA-256 {m.sha256[:12]})" for m in result.models), ""]
    out += [
        "Rate and distortion (means over images; PSNR: mean of per-image RGB PSNRs; RMSE over [0, 1]: root "
        "of the mean per-image MSE; bpp counts the whole file; quality of a matched row: mean (min-max)):",
        "",
        rd_table(rows, markdown),
        "",
    ]
    bds = bd_lines(result, rows)
    if bds:
        out += [
            "BD-rate (Bjontegaard, PSNR-based, VCEG-M33 cubic fit; negative: fewer bits for the same PSNR):",
            "",
        ]
        out += [("- " if markdown else "") + b for b in bds] + [""]
    gaps = gap_lines(rows)
    if gaps:
        out += [("- " if markdown else "") + g for g in gaps] + [""]
    pt = paper_table(result, rows, markdown)
    if pt:
        out += [
            "Against the paper's Table II (MultiPie faces, untrained encoder, switch bits before entropy "
            "coding; a different data set):",
            "",
            pt,
            "",
        ]
    out += [
        f"Speed (per image; {result.jobs} worker process(es), {result.threads} torch thread(s) each; "
        f"run took {result.elapsed_s:.0f} s):",
        "",
        speed_table(rows, markdown),
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- files


def _json_num(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None  # JSON has no inf: a lossless PSNR is written as null
    return v


_RESULT_KEYS = [
    ("bpp", "bpp"),
    ("psnr-rgb", "psnr"),
    ("psnr", "psnr"),
    ("ms-ssim-rgb", "ms_ssim"),
    ("msssim", "ms_ssim"),
    ("ssim-rgb", "ssim"),
    ("rmse", "rmse"),
    ("encoding_time", "encode_s"),
    ("decoding_time", "decode_s"),
    ("encoding_mpix_s", "encode_mpix_s"),
    ("decoding_mpix_s", "decode_mpix_s"),
]


def _curve(name: str, description: str, rows: list[Row], extra=()) -> dict:
    results = {k: [_json_num(getattr(r, a)) for r in rows] for k, a in list(_RESULT_KEYS) + list(extra)}
    return {"name": name, "description": description, "results": results}


def compressai_curves(result: BenchResult) -> list[dict]:
    """Every RD curve in CompressAI's result schema (``name``, ``description``, ``results``).

    The first is maxswitch itself (one point per model, in the order given); then JPEG, WebP,
    PNG, and per model JPEG and WebP at its bpp and at its PSNR. ``psnr`` and ``msssim``
    repeat ``psnr-rgb`` and ``ms-ssim-rgb`` under the names older CompressAI tools read.
    """
    from . import __version__

    rows = summarise(result)
    import PIL

    ds = f"{Path(result.dataset).name or result.dataset} ({len(result.images)} images)"
    common = f"on {ds}; PSNR: mean of per-image RGB PSNRs (null: lossless); times: seconds per image"
    curves = [
        _curve(
            name,
            f"maxswitch {__version__}, models {', '.join(r.model for r in pts)} (ordered by bpp), "
            f"bpp of the whole .msw file, {common}",
            pts,
            [("bits_per_switch", "bits_per_switch"), ("raw_bpp", "raw_bpp")],
        )
        for name, pts in family_curves(result, rows).items()
    ]
    for c in ("jpeg", "webp"):
        sweep = [r for r in rows if r.codec == c and not r.match]
        if sweep:
            curves.append(
                _curve(
                    CODEC_NAMES[c],
                    f"{CODEC_NAMES[c]} through Pillow {PIL.__version__} (default settings), {common}",
                    sweep,
                    [("quality", "quality")],
                )
            )
    png = [r for r in rows if r.codec == "png"]
    if png:
        curves.append(_curve("PNG", f"PNG through Pillow {PIL.__version__}, lossless, {common}", png))
    for r in rows:
        if r.match:
            curves.append(
                _curve(
                    r.label,
                    f"{CODEC_NAMES[r.codec]} with the quality searched per image to match "
                    f"{r.model}'s {MATCH_NAMES[r.match]}, {common}",
                    [r],
                    [("quality", "q_mean")],
                )
            )
    for cv in curves:
        cv["results"]["images"] = [len(result.images)] * len(cv["results"]["bpp"])
    return curves


def _slug(name: str) -> str:
    import re

    return re.sub("-+", "-", "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name.lower())).strip("-")


def json_outputs(result: BenchResult, path: str) -> dict[str, bytes]:
    """The JSON files to write for ``--json PATH``, as {path: bytes}.

    A file path: one object, the maxswitch curve in CompressAI's schema, with the other
    curves under ``baselines`` and the run's facts beside them. A folder (existing, or
    ending with a slash): one CompressAI file per curve, for ``compressai.utils.plot``.
    """
    curves = compressai_curves(result)
    n_ms = sum(1 for c in curves if c["name"].startswith("maxswitch"))
    dump = lambda obj: (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode()
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return {os.path.join(path, _slug(c["name"]) + ".json"): dump(c) for c in curves}
    top = dict(curves[0])
    rows = summarise(result)
    top.update(
        {
            "dataset": result.dataset,
            "images": result.images,
            "skipped": [{"image": i, "reason": e} for i, e in result.skipped],
            "ignored": result.ignored,
            "models": [
                {"name": m.name, "version": m.version, "sha256": m.sha256, "channels": list(m.channels)}
                for m in result.models
            ],
            "curves": curves[1:n_ms],
            "references": [{"name": r.name, "file": r.source} for r in result.references],
            "baselines": curves[n_ms:],
            "bd_rate": [
                {"curve": c, "reference": ref, "bd_rate_percent": v, "psnr_range": list(ov) if ov else None}
                for c, ref, v, ov in bd_rates(result, rows)
            ],
        }
    )
    return {path: dump(top)}


CSV_FIELDS = [f.name for f in fields(Record)]


def csv_bytes(result: BenchResult) -> bytes:
    """One CSV row per image and codec setting (``inf`` for a lossless PSNR, empty for n/a)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in result.records:
        d = asdict(r)
        w.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v) for k, v in d.items()})
    return buf.getvalue().encode()


def check_matplotlib() -> None:
    """Raise BenchError with the install hint if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install 'maxswitch[bench]'") from None


def plot_bytes(result: BenchResult, fmt: str = "png") -> bytes:
    """Rate-distortion plot: PSNR and MS-SSIM (dB) against bpp (log scale) for every codec and model,
    with the paper's Table II points (PSNR of its RMSE at the raw switch rate) on the PSNR panel."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarise(result)
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    colours = {"jpeg": "tab:blue", "webp": "tab:green", "png": "tab:gray"}
    model_colours = ["tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    for ax, metric in zip(axes, ("psnr", "ms_ssim")):
        y = (
            (lambda r: r.psnr)
            if metric == "psnr"
            else (lambda r: None if r.ms_ssim is None else metrics.ms_ssim_db(r.ms_ssim))
        )
        for c in ("jpeg", "webp"):
            sweep = [r for r in rows if r.codec == c and not r.match and y(r) is not None]
            if sweep:
                ax.plot(
                    [r.bpp for r in sweep],
                    [y(r) for r in sweep],
                    ".-",
                    color=colours[c],
                    label=f"{CODEC_NAMES[c]} q={sweep[0].quality}..{sweep[-1].quality}",
                )
        for ref in result.references:
            ys = ref.psnr if metric == "psnr" else ref.ms_ssim and [metrics.ms_ssim_db(v) for v in ref.ms_ssim]
            if ys:
                ax.plot(ref.bpp, ys, "o:", ms=4, lw=1.2, color="dimgray", label=f"{ref.name} (reference)")
        png = _find(rows, "png")
        if png:
            ax.axvline(png.bpp, color=colours["png"], ls="--", lw=1, label=f"PNG lossless ({png.bpp:.2f} bpp)")
        for j, (cname, pts) in enumerate(family_curves(result, rows).items()):
            ys = [y(r) for r in pts]
            if len(pts) > 1 and None not in ys:
                ax.plot(
                    [r.bpp for r in pts],
                    ys,
                    "--" if "(zstd)" in cname else "-",
                    lw=1.2,
                    color="gray" if "(zstd)" in cname else "black",
                    label=cname,
                )
        for i, m in enumerate(r for r in rows if r.codec == "maxswitch"):
            col = model_colours[i % len(model_colours)]
            if y(m) is not None:
                ax.plot([m.bpp], [y(m)], "*", ms=14, color=col, label=f"{m.model} (.msw file)")
                if metric == "psnr" and m.raw_bpp:
                    ax.plot(
                        [m.raw_bpp], [y(m)], "*", ms=14, mfc="none", color=col, label=f"{m.model} at raw switch bits"
                    )
            for r in rows:
                if r.model == m.model and r.match and y(r) is not None:
                    mk = "s" if r.match == "bpp" else "D"
                    ax.plot([r.bpp], [y(r)], mk, ms=6, mfc="none", color=colours[r.codec])
                    ax.plot([m.bpp, r.bpp], [y(m), y(r)], ":", lw=0.8, color=colours[r.codec])
        faces = any(mi.family.startswith("faces") for mi in result.models)
        if metric == "psnr" and faces:  # the paper's points are face data: only beside face models
            pts = [(raw_bpp(ch), metrics.psnr_from_rmse(v), ch) for ch, v in TABLE_II.items()]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "x",
                color="black",
                ms=7,
                label="paper Table II (faces, untrained encoder, raw switch bits)",
            )
            ours = {mi.channels for mi in result.models}
            for x, y_, ch in pts:
                ax.annotate(
                    ",".join(map(str, ch)),
                    (x, y_),
                    textcoords="offset points",
                    xytext=(4, -10 if ch[0] == ch[2] else 4),
                    fontsize=6.5,
                    fontweight="bold" if ch in ours else "normal",
                )
        if metric == "psnr":
            ax.set_ylabel("PSNR (RGB) [dB]")
            ax.set_title("PSNR against rate")
        else:
            ax.set_ylabel("MS-SSIM [dB]  (-10 log10(1 - MS-SSIM))")
            ax.set_title("MS-SSIM against rate")
        if result.baselines:
            ax.plot([], [], "s", mfc="none", color="black", label="JPEG/WebP at the model's bpp")
            ax.plot([], [], "D", mfc="none", color="black", label="JPEG/WebP at the model's PSNR")
        ax.set_xscale("log")
        ax.set_xlabel("rate [bpp], log scale")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"maxswitch bench: {Path(result.dataset).name or result.dataset}, {len(result.images)} images")
    fig.tight_layout(rect=(0, 0.02 + 0.03 * math.ceil(len(labels) / 3), 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- progress


class Progress:
    """A progress bar on a stream (stderr): redrawn in place on a terminal, a line per tenth otherwise."""

    def __init__(self, stream=None, width: int = 28):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width, self.t0, self.last_tenth = width, time.monotonic(), -1

    @staticmethod
    def _clock(s: float) -> str:
        s = int(round(s))
        return f"{s // 60}:{s % 60:02d}"

    def __call__(self, done: int, total: int, name: str) -> None:
        el = time.monotonic() - self.t0
        left = el / done * (total - done) if done else 0.0
        fill = self.width * done // total
        bar = f"bench [{'#' * fill}{'.' * (self.width - fill)}] {done}/{total} {self._clock(el)} elapsed"
        if done < total:
            bar += f", ~{self._clock(left)} left"
        if self.tty:
            self.stream.write("\r\x1b[K" + bar + (" " + name if done < total else "") + ("\n" if done == total else ""))
            self.stream.flush()
        elif done * 10 // total > self.last_tenth:
            self.last_tenth = done * 10 // total
            self.stream.write(bar + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Clear the bar's line so that a warning prints on a line of its own."""
        if self.tty:
            self.stream.write("\r\x1b[K")
