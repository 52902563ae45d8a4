"""Recompute every table of docs/RESULTS.md from the shipped models (``make reproduce``).

    python benchmarks/reproduce.py ../shared/data            # all tables, rewrites docs/RESULTS.md
    python benchmarks/reproduce.py ../shared/data --only table2

Each table sits in docs/RESULTS.md between ``<!-- reproduce:NAME -->`` and ``<!-- /reproduce:NAME -->``
and is replaced in place; the text around it is left alone. The manifest's measured figures
(Kodak bpp and PSNR, faces RMSE) are updated too. Runs with 2 threads, in a fixed order, and
prints only rounded figures, so two runs give the same tables. No timings here: speed is in
docs/PERFORMANCE.md.

Definitions: bpp = 8 * file bytes / (W * H), the whole .msw file, header included; PSNR is RGB over
[0, 255], the mean of per-image values; RMSE is over pixel values in [0, 1] across the whole test set
(the square root of the mean of per-image MSEs, all images having the same size), as the paper reports;
bits per pixel value = bpp / 3.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch import codec  # noqa: E402
from maxswitch.evaluation import metrics  # noqa: E402
from maxswitch.networks.zoo import load_model, manifest, models_dir, read_metadata, set_figures  # noqa: E402
from maxswitch.training.train import list_images, load_rgb, select_split  # noqa: E402

RESULTS = ROOT / "docs" / "RESULTS.md"
FACE_SIZE = 128
PAPER = {  # Table II: architecture -> (RMSE untrained, RMSE pretrained, switch bits per pixel value)
    (8, 8, 8): (0.1464, 0.1545, 1.75),
    (6, 12, 24): (0.1387, 0.1464, 1.75),
    (16, 16, 16): (0.1210, 0.1156, 3.5),
    (12, 24, 48): (0.1138, 0.1206, 3.5),
    (32, 32, 32): (0.0922, 0.0950, 7),
    (24, 48, 96): (0.0876, 0.0915, 7),
    (64, 64, 64): (0.0744, None, 14),
    (48, 96, 192): (0.0718, None, 14),
}


def tag(ch) -> str:
    return ",".join(map(str, ch))


def load_set(data: Path, name: str) -> tuple[list[np.ndarray], str]:
    """Test images as uint8 (H, W, 3) arrays (unpadded) and a description."""
    if name == "kodak":
        paths = list_images(data / "kodak")
        return [_load(p) for p in paths], "kodak (24 images, 768x512)"
    if name == "test-bsds500":
        paths = list_images(data / "test-bsds500")
        return [_load(p) for p in paths], "test-bsds500 (200 images, 481x321)"
    if name == "faces":
        paths = select_split(list_images(data / "faces-lfw"), "lfw-test")
        return [
            r[:FACE_SIZE, :FACE_SIZE] for r in load_rgb(paths, FACE_SIZE)
        ], f"faces-lfw lfw-test split (192 images at {FACE_SIZE}x{FACE_SIZE})"
    raise ValueError(name)


def _load(p: Path) -> np.ndarray:
    from maxswitch.image import load

    return load(p.read_bytes()).rgb


def evaluate(model, images: list[np.ndarray], decoder_model=None, ssim: bool = True) -> dict:
    """Encode every image with ``model``, decode with ``decoder_model`` (default the same)."""
    bpps, psnrs, mses, ssims = [], [], [], []
    for rgb in images:
        data = codec.encode(rgb, model)
        x_hat, _ = codec.decode_array(data, decoder_model or model)
        bpps.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
        psnrs.append(metrics.psnr(rgb, x_hat))
        mses.append(metrics.mse(rgb, x_hat) / 255.0**2)
        if ssim:
            ssims.append(metrics.ssim(rgb, x_hat))
    return {
        "bpp": float(np.mean(bpps)),
        "psnr": float(np.mean(psnrs)),
        "rmse": math.sqrt(float(np.mean(mses))),
        "ssim": float(np.mean(ssims)) if ssims else None,
        "n": len(images),
    }


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- reproduce:{name} -->", f"<!-- /reproduce:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip() + f"\n\n{block}\n"


def models_of(family: str) -> list[dict]:
    return [m for m in manifest()["models"] if m["family"] == family]


def table_natural(data: Path) -> tuple[str, dict]:
    figures = {}
    sets = {s: load_set(data, s) for s in ("kodak", "test-bsds500")}
    lines = [
        "| model | channels | raw bpp | Kodak bpp | Kodak PSNR | Kodak SSIM | BSDS test bpp | BSDS test PSNR | BSDS test SSIM |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in sorted(models_of("natural"), key=lambda m: m["switches_per_pixel"]):
        model = load_model(m["name"])
        k = evaluate(model, sets["kodak"][0])
        b = evaluate(model, sets["test-bsds500"][0])
        figures[m["name"]] = {
            "dataset": "kodak",
            "bpp": round(k["bpp"], 3),
            "psnr": round(k["psnr"], 2),
            "ssim": round(k["ssim"], 4),
            "bsds_test_bpp": round(b["bpp"], 3),
            "bsds_test_psnr": round(b["psnr"], 2),
            "command": "python benchmarks/reproduce.py ../shared/data --only natural",
        }
        lines.append(
            f"| {m['name']} | {tag(m['channels'])} | {2 * m['switches_per_pixel']:.2f} | {k['bpp']:.3f} | "
            f"{k['psnr']:.2f} | {k['ssim']:.4f} | {b['bpp']:.3f} | {b['psnr']:.2f} | {b['ssim']:.4f} |"
        )
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines), figures


def table_compare(data: Path) -> tuple[str, dict]:
    kodak = load_set(data, "kodak")[0]
    lines = [
        "| decoder | parameters | MACs per pixel | training | held-out val PSNR | Kodak PSNR | Kodak SSIM |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    from maxswitch.networks.nets import decoder_macs_per_pixel

    for m in models_of("experiment"):
        model = load_model(m["name"])
        r = evaluate(model, kodak)
        params = sum(p.numel() for p in model.decoder.parameters())
        t = m["training"]
        lines.append(
            f"| {m['name']} ({m['decoder']}, widths {tag(m['widths'])}) | {params:,} | "
            f"{decoder_macs_per_pixel(model.config):,.0f} | {t['steps']} steps, {t['minutes']} min, 1 thread | "
            f"{t['val_psnr']:.2f} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
        )
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines), {}


def table2(data: Path) -> tuple[str, dict]:
    faces = load_set(data, "faces")[0]
    by_arch = {tuple(m["channels"]): m for m in models_of("faces")}
    pre = {tuple(m["channels"]): m for m in models_of("faces-pretrained")}
    lines = [
        "| architecture | paper RMSE, untrained | ours, untrained | paper RMSE, pretrained | ours, pretrained "
        "| paper switch bits per pixel value | ours, file bits per pixel value | ours, file bpp | ours, PSNR untrained |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    figures = {}
    for arch, (p_u, p_p, p_bits) in PAPER.items():
        cells = [f"[{tag(arch)}]", f"{p_u:.4f}"]
        u = evaluate(load_model(by_arch[arch]["name"]), faces, ssim=False) if arch in by_arch else None
        cells.append(f"{u['rmse']:.4f}" if u else "not trained")
        cells.append(f"{p_p:.4f}" if p_p else "-")
        pr = evaluate(load_model(pre[arch]["name"]), faces, ssim=False) if arch in pre else None
        cells.append(f"{pr['rmse']:.4f}" if pr else ("-" if p_p is None else "not trained"))
        cells.append(f"{p_bits:g}")
        cells.append(f"{u['bpp'] / 3:.3f}" if u else "-")
        cells.append(f"{u['bpp']:.3f}" if u else "-")
        cells.append(f"{u['psnr']:.2f}" if u else "-")
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr)
        for m, r in ((by_arch.get(arch), u), (pre.get(arch), pr)):
            if m and r:
                figures[m["name"]] = {
                    "dataset": "faces-lfw lfw-test at 128x128",
                    "bpp": round(r["bpp"], 3),
                    "psnr": round(r["psnr"], 2),
                    "rmse": round(r["rmse"], 4),
                    "command": "python benchmarks/reproduce.py ../shared/data --only table2",
                }
    return "\n".join(lines), figures


def table_control(data: Path) -> tuple[str, dict]:
    faces = load_set(data, "faces")[0]
    lines = ["| reconstruction of faces-lfw test (128x128) | RMSE | PSNR |", "| --- | ---: | ---: |"]
    grey = [np.full_like(f, 128) for f in faces]
    train_mean = np.mean([f.astype(np.float64) for f in faces], axis=0)  # upper bound for any constant guess
    rows = [("constant grey (128)", grey)]
    figures = {}
    for m in models_of("control"):
        model = load_model(m["name"])
        r = evaluate(model, faces, ssim=False)
        lines.append(
            f"| {m['name']}: average pooling, decoder trained on lfw-train | {r['rmse']:.4f} | {r['psnr']:.2f} |"
        )
        figures[m["name"]] = {
            "dataset": "faces-lfw lfw-test at 128x128",
            "bpp": round(r["bpp"], 3),
            "psnr": round(r["psnr"], 2),
            "rmse": round(r["rmse"], 4),
        }
        # does the output depend on the input at all?
        outs = [codec.decode_array(codec.encode(f, model), model)[0] for f in faces[:4]]
        same = all(np.array_equal(outs[0], o) for o in outs[1:])
        lines.append(f"| (its output is {'identical' if same else 'NOT identical'} for every input image) | | |")
    for label, recon in rows + [("mean of the test faces themselves (an oracle constant)", [train_mean] * len(faces))]:
        mses = [float(np.mean((f.astype(np.float64) - r) ** 2)) / 255**2 for f, r in zip(faces, recon)]
        rm = math.sqrt(float(np.mean(mses)))
        lines.append(f"| {label} | {rm:.4f} | {20 * math.log10(1 / rm):.2f} |")
    by_arch = {tuple(m["channels"]): m for m in models_of("faces")}
    if (16, 16, 16) in by_arch:
        r = evaluate(load_model(by_arch[(16, 16, 16)]["name"]), faces, ssim=False)
        lines.append(
            f"| {by_arch[(16, 16, 16)]['name']}: max pooling, same architecture | {r['rmse']:.4f} | {r['psnr']:.2f} |"
        )
    return "\n".join(lines), figures


def table_cross(data: Path) -> tuple[str, dict]:
    kodak = load_set(data, "kodak")[0]
    faces = load_set(data, "faces")[0]
    nat = {tuple(m["channels"]): m["name"] for m in models_of("natural")}
    fac = {tuple(m["channels"]): m["name"] for m in models_of("faces")}
    lines = ["| switches of | decoded by | PSNR | RMSE | SSIM |", "| --- | --- | ---: | ---: | ---: |"]
    for arch in [a for a in CROSS_ARCHS if a in nat and a in fac]:
        n, f = load_model(nat[arch]), load_model(fac[arch])
        for imgs, label, enc, dec in (
            (kodak, "Kodak", n, n),
            (kodak, "Kodak", n, f),
            (faces, "faces test", f, f),
            (faces, "faces test", f, n),
        ):
            r = evaluate(enc, imgs, dec)
            lines.append(
                f"| {label} [{tag(arch)}] | {dec.name} | {r['psnr']:.2f} | {r['rmse']:.4f} | {r['ssim']:.4f} |"
            )
            print(lines[-1], file=sys.stderr)
    return "\n".join(lines), {}


CROSS_ARCHS = [(16, 16, 16)]  # the default architecture; every pair costs 432 encodes and decodes

TABLES = {
    "natural": table_natural,
    "compare": table_compare,
    "table2": table2,
    "control": table_control,
    "cross": table_cross,
}


def write_manifest_tables() -> None:
    """README's model table and TRAINING.md's durations, from models/manifest.json."""
    models = manifest()["models"]
    from maxswitch.config import DEFAULT_MODEL, LADDER

    rows = [
        "| model | `-q` | channels | what part | trained on | raw bpp | Kodak bpp (v1 zstd) | Kodak PSNR | faces RMSE |",
        "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for m in models:
        if m["family"] not in ("what+where", "natural", "faces"):
            continue
        f = m.get("figures", {})
        kodak = str(f.get("dataset", "")).startswith("kodak")
        v1 = f" ({f['v1_zstd_bpp']})" if kodak and f.get("v1_zstd_bpp") else ""
        rung = LADDER.index(m["name"]) + 1 if m["name"] in LADDER else "-"
        spec = m.get("what") or read_metadata((models_dir() / m["file"]).read_bytes())["config"].get("what")
        what = f"{spec[0]}x{spec[0]}, {spec[1]}/{spec[2]}" if spec else "-"
        trained = m["family"] + (f" ({m['variant_of']}'s weights)" if m.get("variant_of") else "")
        rows.append(
            f"| `{m['name']}`{' (default)' if m['name'] == DEFAULT_MODEL else ''} | {rung} | {tag(m['channels'])} | "
            f"{what} | {trained} | {2 * m['switches_per_pixel']:.2f} | {(str(f['bpp']) + v1) if kodak else '-'} | "
            f"{f['psnr'] if kodak else '-'} | {f.get('rmse', '-')} |"
        )
    body = (
        "Kodak figures of the ladders: `maxswitch bench ../shared/data/kodak` (24 images; bpp is the whole file, "
        "default coding; in brackets, where measured, format v1's zstd coding of the same switches; commands in "
        "docs/RESULTS.md); `-q` picks a rung of the what+where ladder (format v3); faces: "
        "`make reproduce` (lfw-test split at 128x128). More models (pretrained encoders, controls, the decoder "
        "comparison) are listed by `maxswitch models`; every figure is in docs/RESULTS.md.\n\n" + "\n".join(rows)
    )
    readme = ROOT / "README.md"
    readme.write_text(_replace_marked(readme.read_text(), "models-table", body))
    rows = [
        "| model | family | device | steps | batch x patch | minutes | threads | validation PSNR "
        "| context model: steps, minutes, validation bits/switch |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for m in models:
        if m.get("variant_of"):  # another model's file: its training row is that model's
            continue
        t = m.get("training", {})
        vp = t.get("val_psnr")
        c = m.get("context_training") or {}
        ctx = f"{c['steps']}, {c['minutes']}, {c.get('val_bits_per_switch', '-')}" if c else "-"
        r = t.get("recipe", {})
        rows.append(
            f"| `{m['name']}` | {m['family']} | {t.get('device') or 'cpu'} | {t.get('steps', '-')} | "
            f"{r.get('batch', '-')} x {r.get('patch', '-')} | {t.get('minutes', '-')} | {r.get('threads', '-')} | "
            f"{vp if vp is not None else '-'} | {ctx} |"
        )
    body = (
        "From each asset's own training record: wall-clock minutes on the device named (cpu: this 2-core "
        "machine, shared with other jobs while the zoo trained, so minutes overstate what a quiet machine needs; "
        "the H200 was shared by 7 processes, docs/TRAINING.md), global batch x crop side.\n\n" + "\n".join(rows)
    )
    doc = ROOT / "docs" / "TRAINING.md"
    doc.write_text(_replace_marked(doc.read_text(), "training-table", body))


def _replace_marked(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder holding kodak/, test-bsds500/ and faces-lfw/")
    ap.add_argument("--only", nargs="*", choices=sorted(TABLES), default=None)
    ap.add_argument(
        "--manifest-tables",
        action="store_true",
        help="only rewrite README's and TRAINING.md's tables from the manifest",
    )
    a = ap.parse_args()
    torch.set_num_threads(2)
    data = Path(a.data)
    for name, fn in TABLES.items():
        if a.manifest_tables or (a.only and name not in a.only):
            continue
        body, figures = fn(data)
        # read the file again right before writing: others may have edited other sections meanwhile
        text = RESULTS.read_text() if RESULTS.exists() else "# Results\n"
        RESULTS.write_text(replace_section(text, name, body))
        if figures:
            set_figures(figures)
        print(f"reproduce: table {name} written", file=sys.stderr)
    write_manifest_tables()


if __name__ == "__main__":
    main()
