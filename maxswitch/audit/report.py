"""An audit's report as text: a table (plain or Markdown), JSON, and the --grid picture."""

from __future__ import annotations

import io
import json

import numpy as np

COLUMNS = ("layer", "name", "window", "map", "reads", "PSNR", "SSIM", "MS-SSIM", "raw bpp", "zstd bpp", "learned bpp")


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _reads(reads: list[int]) -> str:
    return str(reads[0]) if len(reads) == 1 else f"{reads[0]}-{reads[-1]}"


def _model_line(r: dict) -> str:
    m = r["model"]
    w = m["weights"]
    if m["kind"] == "maxswitch":
        return f"{m['spec']} (maxswitch encoder {m['name']} v{m['version']}, asset SHA-256 {w['sha256'][:16]})"
    source = {
        "random": f"random weights, seed {w.get('seed')}",
        "factory": f"weights as the factory builds them (seed {w.get('seed')})",
        "file": f"weights {w.get('file')} (SHA-256 {str(w.get('sha256'))[:16]})",
    }[w["source"]]
    return f"{m['spec']} ({m['class']}, {m['parameters']:,} parameters; {source}; state SHA-256 {w['state_sha256'][:16]}; input {m['normalize']})"


def header_lines(r: dict) -> list[str]:
    d, t = r["data"], r["training"]
    rec = t["recipe"]
    audited = [p for p in r["pools"] if p["audited"]]
    held = f"{d['val_dir']}" + (f" ({d['val_split']})" if d["val_split"] else "")
    lines = [
        f"model: {_model_line(r)}",
        f"max pooling: {len(r['pools'])} layer(s) found, {len(audited)} audited",
        f"data: {d['train_dir']}"
        + (f" ({d['split']})" if d["split"] else "")
        + f", {d['train_images']} training images; "
        f"held out: {held}, {d['val_images']} images"
        + (f"; resized to {d['resize']} x {d['resize']}" if d["resize"] else ""),
        f"training: {t['steps']} steps in {t['minutes']:g} min, {rec['patch']} px crops, batch {rec['batch']}, "
        f"lr {rec['lr']:g}, seed {rec['seed']}, decoder base width {t['decoder_base_width']}, {t['device']}",
    ]
    return lines


def _row_cells(r: dict, row: dict) -> list[str]:
    pool = r["pools"][row["layer"] - 1]
    c, h, w = pool["out_shape"]
    if "control" in row:
        name = "control: no switches" if row["control"] == "none" else "control: avg-pool positions"
        layer = "-"
    else:
        name, layer = pool["name"], str(row["layer"])
    return [
        layer,
        name,
        pool["window"],
        f"{c}x{h}x{w}",
        _reads(row["reads"]),
        _num(row.get("psnr"), ".2f"),
        _num(row.get("ssim"), ".4f"),
        _num(row.get("ms_ssim"), ".4f"),
        _num(row.get("raw_bpp"), ".3f"),
        _num(row.get("zstd_bpp"), ".3f"),
        _num(row.get("learned_bpp"), ".3f"),
    ]


def table_rows(r: dict) -> list[list[str]]:
    rows = [_row_cells(r, row) for row in r["rows"] + r["controls"]]
    ref = r.get("reference")
    if ref:
        rows.append(
            ["-", f"reference: {ref['decoder']}", "", "", "1-3"]
            + [_num(ref.get(k), f) for k, f in (("psnr", ".2f"), ("ssim", ".4f"), ("ms_ssim", ".4f"))]
            + ["", "", ""]
        )
    return rows


def format_table(r: dict, markdown: bool = False) -> str:
    """The report as text: a few lines about the run, then one row per decoder (map: the switch
    map's C x h x w on a training crop; reads: the layers the decoder sees)."""
    head = header_lines(r)
    rows = table_rows(r)
    out = []
    if markdown:
        out += [f"- {line}" for line in head] + [""]
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("| " + " | ".join("---:" if i in (0,) or i >= 5 else "---" for i in range(len(COLUMNS))) + " |")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    else:
        out += head + [""]
        widths = [max(len(COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(len(COLUMNS))]
        left = {1, 2}
        fmt = lambda cells: "  ".join(  # noqa: E731
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()
        out.append(fmt(COLUMNS))
        out += [fmt(row) for row in rows]
    notes = r.get("notes") or []
    if notes:
        out.append("")
        out += [("- " if markdown else "") + f"note: {n}" for n in notes]
    return "\n".join(out) + "\n"


def json_bytes(r: dict) -> bytes:
    return (json.dumps(r, indent=1, allow_nan=True) + "\n").encode()


def grid_png(r: dict, grid: dict) -> bytes:
    """A PNG: one row per held-out image, its original then each decoder's reconstruction
    (layers, controls, and a maxswitch model's shipped decoder), labelled above each column."""
    from PIL import Image, ImageDraw

    keys = ["original"] + [row["key"] for row in r["rows"]] + [row["key"] for row in r["controls"]]
    if "shipped" in grid:
        keys.append("shipped")
    pools = {row["key"]: row for row in r["rows"] + r["controls"]}
    labels = []
    for k in keys:
        row = pools.get(k)
        if row is None:
            labels.append(k)
        elif "control" in row:
            labels.append("no switches" if row["control"] == "none" else "avg positions")
        else:
            labels.append(f"{k} {row['psnr']:.1f} dB" if row.get("psnr") is not None else k)
    heights = [a.shape[0] for a in grid["original"]]  # each row as tall as its image
    cw = max(max(a.shape[1] for a in grid["original"]), 80)
    pad, top = 4, 14
    W = len(keys) * (cw + pad) + pad
    H = top + sum(h + pad for h in heights) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, (k, label) in enumerate(zip(keys, labels)):
        x0 = pad + j * (cw + pad)
        draw.text((x0, 1), label, fill=(0, 0, 0))
        y0 = top + pad
        for a, h in zip(grid[k], heights):
            canvas.paste(Image.fromarray(np.ascontiguousarray(a)), (x0, y0))
            y0 += h + pad
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()
