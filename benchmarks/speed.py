"""Speed of maxswitch beside Pillow's JPEG and WebP and CompressAI's bmshj2018-factorized.

One run measures everything (docs/PERFORMANCE.md holds a run's tables and the command):

    .venv/bin/python benchmarks/speed.py --markdown runs/speed.md --json runs/speed.json

* Images: Kodak-sized (768x512, the first ``--kodak-images`` of the Kodak set, or synthetic
  ones where it is absent) and one 24-megapixel image (6000x4000: a Kodak image upscaled
  bicubically, with a little noise so that it is not unnaturally smooth).
* Codecs, each at 1 and 2 threads (``--threads``): maxswitch's library calls (array in,
  bytes out and back) and their stages; Pillow JPEG (quality 75) and WebP (quality 75,
  method 4); CompressAI's ``bmshj2018-factorized`` at quality 3 with random weights
  (``pretrained=False``: the network's speed does not depend on its weights; the entropy
  coder's does a little), run in its own virtual environment (``--compressai-python``),
  timed as networks only (g_a, g_s) and as compress/decompress with entropy coding.
* The CLI (``python -m maxswitch encode/decode``, PNG in and out) wall time beside its parts:
  interpreter and torch start-up, PNG read and PNG write.
* Floors: multiply-adds per pixel of each network and this machine's measured throughput on
  the very convolutions they run, hence the fastest each could be; each stage's share of it.
* ``--memory``: a 50-megapixel (8660x5773) round trip through the CLI, each command's peak
  resident memory read with ``resource.getrusage(RUSAGE_CHILDREN)`` (and ``/usr/bin/time
  -v`` where installed).

Timings are the best of ``--repeat`` runs (the machine is shared; best-of is the least
disturbed figure) and the 1-minute load average is printed beside each section.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch import codec  # noqa: E402
from maxswitch.bitstream import format as fmt  # noqa: E402
from maxswitch.bitstream import switches as sw  # noqa: E402
from maxswitch.networks import nets  # noqa: E402
from maxswitch.networks.zoo import DEFAULT_MODEL, load_model  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
CAI_PY = ROOT / "runs" / "compressai-venv" / "bin" / "python"


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def tsum(ts: list[dict]) -> dict:
    """Mean of timings {"wall": s, "cpu": s} over images."""
    return {k: sum(t[k] for t in ts) / len(ts) for k in ("wall", "cpu")}


def best(f, repeat: int, warmup: bool = True):
    """Best wall time and best process CPU time of ``repeat`` calls (after a warm-up call)."""
    r = f() if warmup else None
    ws, cs = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        r = f()
        ws.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return {"wall": min(ws), "cpu": min(cs)}, r


# ----------------------------------------------------------------------------- images


def kodak_images(n: int) -> list[np.ndarray]:
    files = sorted(KODAK.glob("kodim*.png"))[:n] if KODAK.is_dir() else []
    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        if im.size != (768, 512):
            im = im.transpose(Image.Transpose.ROTATE_90)
        out.append(np.asarray(im))
    rng = np.random.default_rng(0)
    while len(out) < n:  # synthetic stand-ins
        y, x = np.mgrid[0:512, 0:768].astype(np.float32)
        base = np.stack([128 + 90 * np.sin(x / 23 + len(out)), 128 + 90 * np.cos(y / 17), 255 * x / 768], -1)
        out.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return out


def big_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    files = sorted(KODAK.glob("kodim*.png")) if KODAK.is_dir() else []
    if files:
        src = Image.open(files[min(len(files) - 1, 22)]).convert("RGB")  # kodim23 when present
    else:
        src = Image.fromarray(kodak_images(1)[0])
    out = np.asarray(src.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8).astype(np.int16)
    out += np.random.default_rng(seed).integers(-2, 3, size=out.shape, dtype=np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- maxswitch


def time_maxswitch(model, imgs, repeat: int) -> dict:
    """Library encode/decode (default coding: ``auto``) and their stages on same-size images;
    timings per image. The coding stages time the payload coding the file actually uses: the
    context tables or MLP and ANS (format v2), or packing and zstd (v1)."""
    from maxswitch.bitstream import entropy

    res = {k: [] for k in ("encode", "decode", "encoder_net", "coding", "uncoding", "decoder_net")}
    size, codings = 0, set()
    for rgb in imgs:
        data = codec.encode(rgb, model)
        size += len(data)
        res["encode"].append(best(lambda: codec.encode(rgb, model), repeat)[0])
        res["decode"].append(best(lambda: codec.decode_array(data, model), repeat)[0])
        t, codes = best(lambda: codec.compute_switches(model, rgb), repeat)
        res["encoder_net"].append(t)
        h, payload = fmt.read(data, None)
        codings.add(fmt.CODINGS.get(h.coding, str(h.coding)))
        if h.coding in fmt.LEARNED_CODINGS:
            learned = codec._learned(h, model)
            res["coding"].append(best(lambda: entropy.encode(learned, codes), repeat)[0])
        else:
            res["coding"].append(best(lambda: sw.compress(sw.pack(codes)), repeat)[0])
        res["uncoding"].append(best(lambda: codec._unpack(h, payload, model), repeat)[0])
        codes = codec._unpack(h, payload, model)
        res["decoder_net"].append(best(lambda: codec.reconstruct(model, codes, None, (h.height, h.width)), repeat)[0])
    out = {k: tsum(v) for k, v in res.items()}
    out["bytes"] = size / len(imgs)
    out["codings"] = sorted(codings)
    return out


# ----------------------------------------------------------------------------- Pillow


def time_pillow(imgs, repeat: int) -> dict:
    out = {}
    for name, kw in (("jpeg", dict(format="JPEG", quality=75)), ("webp", dict(format="WEBP", quality=75, method=4))):
        enc, dec, size = [], [], 0
        for rgb in imgs:
            im = Image.fromarray(rgb)

            def e():
                b = io.BytesIO()
                im.save(b, **kw)
                return b.getvalue()

            t, data = best(e, repeat)
            enc.append(t)
            size += len(data)
            dec.append(best(lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), repeat)[0])
        out[name] = {"encode": tsum(enc), "decode": tsum(dec), "bytes": size / len(imgs)}
    return out


# ----------------------------------------------------------------------------- CompressAI

# Runs inside CompressAI's own virtual environment; prints one JSON line.
CAI_SCRIPT = r"""
import json, sys, time, types
import numpy as np, torch
# compressai.registry imports torchvision.transforms only to list transform names; the PyPI
# torchvision build does not load beside the CPU torch here, so an empty stand-in is given.
try:
    import torchvision.transforms  # noqa: F401
except Exception:
    for k in [k for k in sys.modules if k.startswith("torchvision")]:
        del sys.modules[k]
    tv = types.ModuleType("torchvision"); tvt = types.ModuleType("torchvision.transforms"); tv.transforms = tvt
    sys.modules["torchvision"] = tv; sys.modules["torchvision.transforms"] = tvt
import compressai
from compressai.zoo import bmshj2018_factorized
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
net = bmshj2018_factorized(quality=args["quality"], pretrained=False).eval()
net.update(force=True)
res = {"compressai": compressai.__version__, "torch": torch.__version__}
def best(f, n):
    if n > 1: f()  # warm-up, except for the large image (minutes per call)
    ts = []; cs = []
    for _ in range(n):
        c = time.process_time(); t = time.perf_counter(); r = f()
        ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    return {"wall": min(ts), "cpu": min(cs)}, r
macs = []
def hook(m, i, o):
    if isinstance(m, torch.nn.ConvTranspose2d):
        macs.append(i[0].numel() // i[0].shape[1] * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1])
    elif isinstance(m, torch.nn.Conv2d):
        macs.append(o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups)
    elif type(m).__name__ == "GDN":
        macs.append(o.numel() * o.shape[1])  # its 1x1 convolution over the squares
for w, h in args["sizes"]:
    H, W = -(-h // 64) * 64, -(-w // 64) * 64  # CompressAI pads to multiples of 64
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    r = {}
    with torch.inference_mode():
        hs = [m.register_forward_hook(hook) for m in net.g_a.modules()]
        macs.clear(); y = net.g_a(x); r["g_a_macs_per_px"] = sum(macs) / (H * W)
        for hh in hs: hh.remove()
        hs = [m.register_forward_hook(hook) for m in net.g_s.modules()]
        y_hat = torch.round(y)
        macs.clear(); net.g_s(y_hat); r["g_s_macs_per_px"] = sum(macs) / (H * W)
        for hh in hs: hh.remove()
        n = args["repeat"] if H * W < 4e6 else 1
        r["g_a"] = best(lambda: net.g_a(x), n)[0]
        r["g_s"] = best(lambda: net.g_s(y_hat), n)[0]
        r["compress"], out = best(lambda: net.compress(x), n)
        r["decompress"] = best(lambda: net.decompress(out["strings"], out["shape"]), n)[0]
        r["bytes"] = sum(len(s[0]) for s in out["strings"])
    r["padded"] = [W, H]
    res[f"{w}x{h}"] = r
    del x, y, y_hat, out
print(json.dumps(res))
"""


def gdn(x, beta, gamma, inverse=False):
    """GDN as CompressAI computes it: x / sqrt(beta + conv1x1(x^2, gamma))."""
    norm = F.conv2d(x * x, gamma, beta)
    return x * torch.sqrt(norm) if inverse else x * torch.rsqrt(norm)


class OwnFactorized(torch.nn.Module):
    """Fallback: bmshj2018-factorized's published layer list (N=128, M=192 at quality 3)."""

    def __init__(self, N=128, M=192):
        super().__init__()
        self.ga = torch.nn.ModuleList([torch.nn.Conv2d(a, b, 5, 2, 2) for a, b in ((3, N), (N, N), (N, N), (N, M))])
        self.gs = torch.nn.ModuleList(
            [torch.nn.ConvTranspose2d(a, b, 5, 2, 2, 1) for a, b in ((M, N), (N, N), (N, N), (N, 3))]
        )
        self.beta = torch.ones(N)
        self.gamma = (0.1 * torch.eye(N)).view(N, N, 1, 1)

    def g_a(self, x):
        for i, c in enumerate(self.ga):
            x = c(x)
            if i < 3:
                x = gdn(x, self.beta, self.gamma)
        return x

    def g_s(self, y):
        for i, c in enumerate(self.gs):
            y = c(y)
            if i < 3:
                y = gdn(y, self.beta, self.gamma, inverse=True)
        return y


def time_compressai(python: Path | None, sizes, threads: int, repeat: int) -> dict:
    if python and python.exists():
        args = json.dumps({"sizes": sizes, "threads": threads, "repeat": repeat, "quality": 3})
        r = subprocess.run([str(python), "-c", CAI_SCRIPT, args], capture_output=True, text=True, timeout=3600)
        if r.returncode == 0:
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res["source"] = f"CompressAI {res['compressai']} (PyPI), bmshj2018-factorized q3, pretrained=False"
            return res
        print(f"CompressAI run failed, timing the own layer list instead:\n{r.stderr[-2000:]}", file=sys.stderr)
    net = OwnFactorized().eval()
    res = {"source": "own implementation of bmshj2018-factorized's layer list (CompressAI not available)"}
    with torch.inference_mode():
        for w, h in sizes:
            H, W = -(-h // 64) * 64, -(-w // 64) * 64
            x = torch.rand(1, 3, H, W)
            n = repeat if H * W < 4e6 else 1
            ta, y = best(lambda: net.g_a(x), n)
            ts, _ = best(lambda: net.g_s(torch.round(y)), n)
            res[f"{w}x{h}"] = {"g_a": ta, "g_s": ts, "padded": [W, H]}
    return res


# ----------------------------------------------------------------------------- floors


def conv_throughput(shapes, threads: int, repeat: int) -> list[dict]:
    """GMAC/s of this machine on each (cin, cout, k, h, w) convolution, channels-last fp32."""
    torch.set_num_threads(threads)
    out = []
    with torch.inference_mode():
        for cin, cout, k, h, w in shapes:
            x = torch.randn(1, cin, h, w).contiguous(memory_format=torch.channels_last)
            wt = torch.randn(cout, cin, k, k).contiguous(memory_format=torch.channels_last)
            b = torch.randn(cout)
            t, _ = best(lambda: F.conv2d(x, wt, b, padding=k // 2), repeat)
            macs = h * w * cin * cout * k * k
            out.append(
                {
                    "shape": [cin, cout, k, h, w],
                    "gmacs": macs / t["wall"] / 1e9,
                    "gmacs_cpu": macs / (t["cpu"] / threads) / 1e9,
                }
            )
    return out


def floors(model, threads: int, repeat: int) -> dict:
    """Fastest possible encode/decode of each network at the measured conv throughput."""
    cfg = model.config
    c1, c2, c3 = cfg.channels
    w3, w2, w1 = cfg.widths
    H, W = 512, 768
    enc = [(3, c1, 3, H, W), (c1, c2, 3, H // 2, W // 2), (c2, c3, 3, H // 4, W // 4)]
    dec = [
        (4 * c3, w3, 3, H // 8, W // 8),
        (w3, w3, 3, H // 8, W // 8),
        (w3, 4 * w2, 1, H // 8, W // 8),
        (w2 + 4 * c2, w2, 3, H // 4, W // 4),
        (w2, w2, 3, H // 4, W // 4),
        (w2, 4 * w1, 1, H // 4, W // 4),
        (w1 + 4 * c1, w1, 3, H // 2, W // 2),
        (w1, w1, 3, H // 2, W // 2),
        (w1, 12, 1, H // 2, W // 2),
    ]
    ref = [(64, 64, 3, 256, 256)]  # a wide convolution: near this machine's fp32 peak
    tp = conv_throughput(enc + dec + ref, threads, repeat)

    def floor(shapes, rates):
        secs = sum(h * w * a * b * k * k / (g * 1e9) for (a, b, k, h, w), g in zip(shapes, rates))
        macs = sum(h * w * a * b * k * k for (a, b, k, h, w) in shapes)
        return {"macs_per_px": macs / (H * W), "gmacs": macs / secs / 1e9, "mp_per_s": H * W / secs / 1e6}

    res = {
        "per_layer": tp,
        "encoder_macs_per_px": nets.encoder_macs_per_pixel(cfg.channels),
        "decoder_macs_per_px": nets.decoder_macs_per_pixel(cfg),
    }
    for key in ("gmacs", "gmacs_cpu"):
        rates = [d[key] for d in tp]
        res[key] = {"encoder": floor(enc, rates[:3]), "decoder": floor(dec, rates[3:12]), "peak_gmacs": rates[12]}
    return res


# ----------------------------------------------------------------------------- zstd level


def zstd_levels(model, levels=(-5, -1, 1, 2, 3, 4, 6, 9, 12, 19)) -> dict:
    """Size and single-thread speed of each zstd level on the packed switches of all Kodak images."""
    import zstandard

    imgs = kodak_images(24)
    packs = [sw.pack(codec.compute_switches(model, rgb)) for rgb in imgs]
    raw = sum(len(x) for x in packs)
    mp = sum(rgb.shape[0] * rgb.shape[1] for rgb in imgs) / 1e6
    out = {"images": len(imgs), "raw_bytes": raw, "levels": {}}
    for lvl in levels:
        c = zstandard.ZstdCompressor(level=lvl, write_checksum=True, write_content_size=True)
        comp = [c.compress(x) for x in packs]
        tc = min(_cpu(lambda: [c.compress(x) for x in packs]) for _ in range(3))
        d = zstandard.ZstdDecompressor()
        td = min(_cpu(lambda: [d.decompress(z) for z in comp]) for _ in range(3))
        size = sum(len(z) for z in comp)
        out["levels"][lvl] = {
            "bytes": size,
            "bits_per_switch": 8 * size / (4 * raw),
            "compress_ms_per_mp": 1e3 * tc / mp,
            "decompress_ms_per_mp": 1e3 * td / mp,
        }
    return out


def _cpu(f) -> float:
    c = time.process_time()
    f()
    return time.process_time() - c


# ----------------------------------------------------------------------------- CLI


def time_cli(rgb: np.ndarray, threads: int, repeat: int, tmp: Path) -> dict:
    png = tmp / "in.png"
    Image.fromarray(rgb).save(png)  # Pillow's default PNG settings, as a user's file would be
    py = [sys.executable]

    def run(*args):
        r = subprocess.run(py + list(args), cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)

    t_enc, _ = best(
        lambda: run("-m", "maxswitch", "encode", "-f", "--quiet", "-t", str(threads), str(png), str(tmp / "x.msw")),
        repeat,
    )
    t_dec, _ = best(
        lambda: run(
            "-m", "maxswitch", "decode", "-f", "--quiet", "-t", str(threads), str(tmp / "x.msw"), str(tmp / "x.png")
        ),
        repeat,
    )
    t_imp, _ = best(
        lambda: run("-c", "import torch, maxswitch.codec, maxswitch.networks.tiling, maxswitch.cli"), repeat
    )
    t_read, _ = best(lambda: np.asarray(Image.open(png).convert("RGB")), repeat)
    im = Image.fromarray(rgb)
    t_write, _ = best(lambda: im.save(io.BytesIO(), "PNG"), repeat)
    return {
        "encode": t_enc["wall"],
        "decode": t_dec["wall"],
        "startup": t_imp["wall"],
        "png_read": t_read["wall"],
        "png_write": t_write["wall"],
    }


def memory_50mp(tmp: Path) -> dict:
    """Peak RSS of `maxswitch encode` and `decode` on an 8660x5773 image, each in a fresh process."""
    w, h = 8660, 5773
    big = big_image(w, h, seed=5)
    Image.fromarray(big).save(tmp / "big.png", compress_level=1)
    del big
    res = {"size": [w, h]}
    timev = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    cmds = {
        "encode": ["encode", "-f", "--quiet", "big.png", "big.msw"],
        "decode": ["decode", "-f", "--quiet", "big.msw", "back.png"],
    }
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(r.returncode)"
    )
    for name, args in cmds.items():
        r = subprocess.run(
            [sys.executable, "-c", probe, sys.executable, "-m", "maxswitch", *args],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if r.returncode:
            raise RuntimeError(r.stderr)
        secs, kib = r.stdout.split()[-2:]
        res[name] = {"peak_rss_bytes": int(kib) * 1024, "seconds": float(secs), "method": "getrusage(RUSAGE_CHILDREN)"}
        if timev:
            r = subprocess.run(
                [timev, "-v", sys.executable, "-m", "maxswitch", *args],
                cwd=tmp,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for line in r.stderr.splitlines():
                if "Maximum resident set size" in line:
                    res[name]["time_v_peak_rss_bytes"] = int(line.split()[-1]) * 1024
    res["file_bytes"] = (tmp / "big.msw").stat().st_size
    return res


# ----------------------------------------------------------------------------- report


def rates(P: int, t: dict, threads: int) -> tuple[float, float]:
    """(MP/s by the wall clock, MP/s by CPU time: pixels / (CPU seconds / threads))."""
    return P / t["wall"] / 1e6, P / (t["cpu"] / threads) / 1e6


def fmt_rate(P, t, threads, digits=1) -> str:
    w, c = rates(P, t, threads)
    return f"{w:.{digits}f} ({c:.{digits}f})"


def report(R: dict) -> str:
    L = []
    L.append(
        f"Machine: {R['machine']}, {R['cpus']} CPUs; torch {R['torch']}. Load average (1 min) at start "
        f"{R['load_start']}, at end {R['load_end']}; scheduling group of this run: {R.get('autogroup')}.\n"
    )
    L.append(
        "Each cell: megapixels per second by the wall clock, and in brackets by CPU time (pixels / (process "
        "CPU seconds / threads)), the figure the machine would give without the other processes' load. "
        "Best of the repeats.\n"
    )
    for name, px in R["sets"].items():
        W, H = px["size"]
        P = W * H
        L.append(f"### {name}: {W}x{H}, {px['count']} image(s)\n")
        L.append("| codec | threads | encode MP/s | decode MP/s | bytes/image | bpp | load |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for th, r in px["threads"].items():
            n = int(th)
            m = r["maxswitch"]
            L.append(
                f"| maxswitch {R['model']} | {th} | {fmt_rate(P, m['encode'], n)} | {fmt_rate(P, m['decode'], n, 2)} | "
                f"{m['bytes']:.0f} | {8 * m['bytes'] / P:.3f} | {r['load']} |"
            )
            for k in ("jpeg", "webp"):
                q = r["pillow"][k]
                L.append(
                    f"| Pillow {k.upper()} q75 | {th} | {fmt_rate(P, q['encode'], 1)} | {fmt_rate(P, q['decode'], 1)} | "
                    f"{q['bytes']:.0f} | {8 * q['bytes'] / P:.3f} | |"
                )
            c = r.get("compressai", {}).get(f"{W}x{H}")
            if c:
                if "compress" in c:
                    L.append(
                        f"| bmshj2018-factorized q3, compress / decompress | {th} | {fmt_rate(P, c['compress'], n, 2)} | "
                        f"{fmt_rate(P, c['decompress'], n, 2)} | {c['bytes']:.0f} | (random weights) | |"
                    )
                L.append(
                    f"| bmshj2018-factorized q3, g_a / g_s networks only | {th} | {fmt_rate(P, c['g_a'], n, 2)} | "
                    f"{fmt_rate(P, c['g_s'], n, 2)} | | | |"
                )
        L.append("")
        codings = sorted({c for r in px["threads"].values() for c in r["maxswitch"].get("codings", [])})
        L.append(
            f"maxswitch's stages (payload coding of the files: {', '.join(codings) or 'zstd'}) and the decode"
            f" ratio to bmshj2018-factorized ({name}, MP/s):\n"
        )
        L.append(
            "| threads | encoder net | payload coding | whole encode | payload decoding | decoder net | whole decode |"
            " bmshj2018 decompress time / ours | bmshj2018 g_s time / ours |"
        )
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for th, r in px["threads"].items():
            n = int(th)
            m = r["maxswitch"]
            c = r.get("compressai", {}).get(f"{W}x{H}", {})

            def ratio(key):
                if key not in c:
                    return "-"
                return f"{c[key]['wall'] / m['decode']['wall']:.2f}x ({c[key]['cpu'] / m['decode']['cpu']:.2f}x)"

            L.append(
                f"| {th} | {fmt_rate(P, m['encoder_net'], n)} | {fmt_rate(P, m['coding'], 1, 0)} | "
                f"{fmt_rate(P, m['encode'], n)} | {fmt_rate(P, m['uncoding'], 1, 0)} | "
                f"{fmt_rate(P, m['decoder_net'], n, 2)} | {fmt_rate(P, m['decode'], n, 2)} | "
                f"{ratio('decompress')} | {ratio('g_s')} |"
            )
        L.append("")
    if "cli" in R:
        L.append("### The command line on one Kodak-sized PNG (seconds, wall clock)\n")
        L.append(
            "| threads | `maxswitch encode` | `maxswitch decode` | start-up alone (import torch + maxswitch) |"
            " PNG read | PNG write |"
        )
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for th, c in R["cli"].items():
            L.append(
                f"| {th} | {c['encode']:.3f} | {c['decode']:.3f} | {c['startup']:.3f} | {c['png_read']:.4f} | "
                f"{c['png_write']:.4f} |"
            )
        L.append("")
    if not R["floors"]:
        L.append("")
    else:
        L.extend(floor_lines(R))
    return finish(R, L)


def floor_lines(R: dict) -> list[str]:
    L = []
    L.append("### Floors: multiply-adds per pixel and this machine's throughput on the same convolutions\n")
    L.append(
        "Floor = the network's MACs per pixel at the throughput measured on each of its own convolutions "
        "(fp32, channels-last, oneDNN), by wall clock (and by CPU time); share = measured network speed / floor.\n"
    )
    L.append("| threads | network | MAC/pixel | conv GMAC/s | floor MP/s | measured MP/s | share of floor |")
    L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    kod = next(iter(R["sets"].values()))
    P = kod["size"][0] * kod["size"][1]
    for th, f in R["floors"].items():
        n = int(th)
        m = kod["threads"][th]["maxswitch"]
        for net, key in (("encoder", "encoder_net"), ("decoder", "decoder_net")):
            fw, fc = f["gmacs"][net], f["gmacs_cpu"][net]
            mw, mc = rates(P, m[key], n)
            L.append(
                f"| {th} | {net} | {fw['macs_per_px']:.0f} | {fw['gmacs']:.1f} ({fc['gmacs']:.1f}) | "
                f"{fw['mp_per_s']:.1f} ({fc['mp_per_s']:.1f}) | {mw:.2f} ({mc:.2f}) | "
                f"{mw / fw['mp_per_s']:.0%} ({mc / fc['mp_per_s']:.0%}) |"
            )
        L.append(
            f"| {th} | wide 64->64 3x3 conv (reference) | | {f['gmacs']['peak_gmacs']:.1f} "
            f"({f['gmacs_cpu']['peak_gmacs']:.1f}) | | | |"
        )
    L.append("")
    return L


def finish(R: dict, L: list[str]) -> str:
    if "zstd" in R:
        Z = R["zstd"]
        L.append(
            f"### zstd level on the packed switches of {Z['images']} Kodak images "
            f"({Z['raw_bytes']} bytes packed, one thread, CPU time)\n"
        )
        L.append("| level | bytes | vs level 9 | bits/switch | compress ms/MP | decompress ms/MP |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
        ref = Z["levels"].get(9, Z["levels"].get("9"))
        for lvl, z in Z["levels"].items():
            L.append(
                f"| {lvl} | {z['bytes']} | {100 * (z['bytes'] / ref['bytes'] - 1):+.2f}% | "
                f"{z['bits_per_switch']:.4f} | {z['compress_ms_per_mp']:.2f} | {z['decompress_ms_per_mp']:.2f} |"
            )
        L.append("")
    if "memory" in R:
        M = R["memory"]
        L.append(
            f"### Peak memory: {M['size'][0]}x{M['size'][1]} ({M['size'][0] * M['size'][1] / 1e6:.0f} MP) "
            "through the CLI\n"
        )
        L.append("| command | peak RSS, getrusage(RUSAGE_CHILDREN) | peak RSS, /usr/bin/time -v | wall seconds |")
        L.append("| --- | ---: | ---: | ---: |")
        for k in ("encode", "decode"):
            e = M[k]
            tv = e.get("time_v_peak_rss_bytes")
            L.append(
                f"| maxswitch {k} | {e['peak_rss_bytes'] / 2**20:.0f} MiB | "
                f"{'-' if tv is None else f'{tv / 2**20:.0f} MiB'} | {e['seconds']:.1f} |"
            )
        L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--kodak-images", type=int, default=4)
    ap.add_argument("--big", default="6000x4000", help="size of the large image ('' to skip)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compressai-python", default=str(CAI_PY))
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also the 50 MP CLI round trip's peak memory")
    ap.add_argument("--zstd", action="store_true", help="also the zstd level sweep on the Kodak switches")
    ap.add_argument("--only", choices=["memory", "zstd"], help="run only this part")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    a = ap.parse_args()

    model = load_model(a.model)
    threads = [int(t) for t in a.threads.split(",")]
    sets = {"Kodak-sized": kodak_images(a.kodak_images)}
    if a.big:
        w, h = map(int, a.big.split("x"))
        sets[f"{w * h / 1e6:.0f} MP"] = [big_image(w, h)]
    try:
        autogroup = Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        autogroup = "n/a"
    R = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "model": model.name,
        "autogroup": autogroup,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "load_start": load_avg(),
        "sets": {},
        "floors": {},
    }
    try:
        with open("/proc/cpuinfo") as f:
            R["machine"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cai = Path(a.compressai_python) if a.compressai_python else None
    if a.only:
        sets = {}
    for name, imgs in sets.items():
        h, w = imgs[0].shape[:2]
        S = {"size": [w, h], "count": len(imgs), "threads": {}}
        big = w * h > 4e6
        for th in threads:
            torch.set_num_threads(th)
            print(f"[{name}, {th} thread(s)] load {load_avg()}", file=sys.stderr, flush=True)
            r = {"load": load_avg()}
            r["maxswitch"] = time_maxswitch(model, imgs, 1 if big else a.repeat)
            r["pillow"] = time_pillow(imgs, 1 if big else a.repeat)
            r["compressai"] = time_compressai(cai, [[w, h]], th, a.repeat)
            S["threads"][str(th)] = r
        R["sets"][name] = S
    if not a.only:
        for th in threads:
            R["floors"][str(th)] = floors(model, th, a.repeat)
    if not a.no_cli and not a.only:
        with tempfile.TemporaryDirectory() as tmp:
            R["cli"] = {str(th): time_cli(sets["Kodak-sized"][0], th, a.repeat, Path(tmp)) for th in threads}
    if a.zstd or a.only == "zstd":
        torch.set_num_threads(max(threads))
        R["zstd"] = zstd_levels(model)
    if a.memory or a.only == "memory":
        with tempfile.TemporaryDirectory() as tmp:
            R["memory"] = memory_50mp(Path(tmp))
    R["load_end"] = load_avg()
    md = f"Command: `{R['command']}`\n\n" + report(R)
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md)
    if a.json:
        Path(a.json).write_text(json.dumps(R, indent=1))


if __name__ == "__main__":
    main()
