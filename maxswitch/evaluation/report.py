"""The report of a ``maxswitch bench`` run: per-setting means, tables, BD-rates, JSON and CSV.

Reads a ``bench.BenchResult``; computes nothing about images. ``summarise`` gives one ``Row``
per codec setting (means over images, in a fixed order); ``format_report`` the text tables;
``bd_rates`` the Bjontegaard deltas of every RD curve against the references; ``json_outputs``
CompressAI's result schema; ``csv_bytes`` one row per image and setting. Plots: plot.py.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import metrics
from .bench import CODEC_NAMES, MATCH_NAMES, TABLE_II, BenchResult, Record, raw_bpp


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
    block_psnr: float | None
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
        metrics.mean(getattr(r, "block_psnr", None) for r in recs),
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
    """Rows of text cells as a table: the first ``left`` columns left-aligned, the rest right.

    Kept by hand (7 lines) rather than from a library: its layout is that of docs/bench-*.md,
    generated from it. tabulate 0.10 (tried): "github" pads every cell and drops the ``---:``
    alignment markers (numbers no longer right-aligned where the Markdown is rendered), "pipe"
    pads and writes ``:---`` markers, "simple" strips the indentation of the matched-baseline rows
    and spaces columns differently; rich draws box characters. Each would rewrite the docs' tables
    and add a dependency for what this does in 7 lines.
    """
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
    head = ["codec", "bpp", "PSNR dB", "RMSE", "SSIM", "MS-SSIM", "16x16 PSNR", "bits/switch", "quality"]
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
                _f(r.block_psnr, 2),
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
    curve (other codings, other families), the ``--reference`` curves and the JPEG and WebP sweeps:
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
        others = {k: points(v) for k, v in curves.items() if k != name}  # codings and families
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
        "Rate and distortion (means over images; PSNR: mean of per-image PSNRs over RGB, greyscale images over "
        "their grey level as decoded; RMSE over [0, 1]: root "
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
    ("psnr-block16", "block_psnr"),
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
    from .. import __version__

    rows = summarise(result)
    import PIL

    ds = f"{Path(result.dataset).name or result.dataset} ({len(result.images)} images)"
    common = f"on {ds}; PSNR: mean of per-image RGB PSNRs, greyscale images as greyscale (null: lossless); times: seconds per image"
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
