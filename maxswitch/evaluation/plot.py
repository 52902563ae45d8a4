"""The rate-distortion plot of a ``maxswitch bench`` run (matplotlib, an optional dependency)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from . import metrics
from .bench import CODEC_NAMES, TABLE_II, BenchError, BenchResult, raw_bpp
from .report import _find, family_curves, summarise


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
