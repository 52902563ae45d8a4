"""One image, one process: what `maxswitch encode` and `maxswitch decode` cost from a shell,
beside Pillow's JPEG and WebP run the same way, in the same run (docs/PERFORMANCE.md, "One
image, one process", holds a run's figures and the command):

    .venv/bin/python benchmarks/cli_speed.py --markdown runs/cli_speed.md

* Whole processes, each timed by ``/usr/bin/time`` (wall time, user + system CPU time and peak
  resident memory), best of ``--repeat`` by wall time: maxswitch's
  CLI at the default rung (PNG in, .msw out; .msw in, PNG out), and Python processes that do
  the same with Pillow's JPEG (quality 75) and WebP (quality 75): PNG in, JPEG/WebP out, and
  back to PNG (zlib level 1, as maxswitch writes its PNGs). ``python -c pass`` and ``import torch`` are timed too, for scale.
* The first run after install: encode and decode with an empty numba cache (``NUMBA_CACHE_DIR``
  set to a new folder), which compiles the kernels once.
* Library calls (array in, bytes out and back, in this process) on the Kodak-sized images at 1
  and 2 threads: MP/s by the wall clock and CPU time per image; decoding by each decoder
  (``MAXSWITCH_DECODER``: ONNX Runtime, and torch's ``DirectRunner``, the default once a process
  has imported torch).
* ``--big MP``: one image of about that many megapixels (a Kodak image upscaled, with a little
  noise) through the CLI: encode and decode wall, CPU and peak memory.

The machine may be shared: the 1-minute load average is printed beside each part, and CPU
times, which other processes' load inflates much less than wall times, beside every wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KODAK = ROOT.parent / "shared" / "data" / "kodak"
MAXSWITCH = [sys.executable, "-m", "maxswitch"]

PIL_ENCODE = "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], sys.argv[3], quality=75)"
PIL_DECODE = "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], 'PNG', compress_level=1)"


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


TIME = "/usr/bin/time"


def run(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    """Run a command to its end: wall seconds, CPU seconds (user + system) and peak RSS (MB), as
    ``/usr/bin/time`` reports them (a child forked from this process would count this
    process's pages in its peak until it execs; /usr/bin/time is small), else ``os.wait4``."""
    timer = os.path.exists(TIME)
    full = [TIME, "-f", "@@time %e %U %S %M", *cmd] if timer else cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err.strip()}")
    if timer:
        line = [x for x in err.splitlines() if x.startswith("@@time ")][-1].split()
        return {"wall_s": float(line[1]), "cpu_s": float(line[2]) + float(line[3]), "rss_mb": int(line[4]) / 1024}
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def best(cmd: list[str], repeat: int, env: dict | None = None, cwd: str | None = None) -> dict:
    runs = [run(cmd, env, cwd) for _ in range(repeat)]
    return min(runs, key=lambda r: r["wall_s"])


def _before(checkout: str) -> tuple[dict, list[str]]:
    """Environment and command that run another checkout's maxswitch with this environment's
    packages: ``python -S`` (no site: this checkout's editable install would win) with the
    checkout, then site-packages, on PYTHONPATH; run in the checkout's folder (``-m`` puts the
    working folder first)."""
    import site

    path = os.pathsep.join([checkout, *site.getsitepackages()])
    return dict(os.environ, PYTHONPATH=path), [sys.executable, "-S", "-m", "maxswitch"]


def whole_process(images: list[Path], repeat: int, threads: int | None, work: Path, before: str | None) -> list[dict]:
    rows = []
    t = ["-t", str(threads)] if threads else []
    for src in images:
        stem = work / src.stem
        msw, png = f"{stem}.msw", f"{stem}.msw.png"
        row = {"image": src.name, "pixels": Image.open(src).size, "load_start": load_avg()}
        row["maxswitch encode"] = best([*MAXSWITCH, "encode", "-f", "--quiet", *t, str(src), msw], repeat)
        row["maxswitch decode"] = best([*MAXSWITCH, "decode", "-f", "--quiet", *t, msw, png], repeat)
        row["bytes"] = {"maxswitch": os.path.getsize(msw)}
        if before:  # another checkout of maxswitch on the same image, same run
            env, cmd, old = *_before(before), f"{stem}.before.msw"
            row["before encode"] = best([*cmd, "encode", "-f", "--quiet", *t, str(src), old], repeat, env, before)
            row["before decode"] = best([*cmd, "decode", "-f", "--quiet", *t, old, png], repeat, env, before)
        for fmt, ext in (("JPEG", "jpg"), ("WEBP", "webp")):
            out, back = f"{stem}.{ext}", f"{stem}.{ext}.png"
            row[f"Pillow {fmt} encode"] = best([sys.executable, "-c", PIL_ENCODE, str(src), out, fmt], repeat)
            row[f"Pillow {fmt} decode"] = best([sys.executable, "-c", PIL_DECODE, out, back], repeat)
            row["bytes"][fmt] = os.path.getsize(out)
        row["load_end"] = load_avg()
        rows.append(row)
    return rows


def first_run(src: Path, work: Path) -> dict:
    """Encode and decode with an empty numba cache: the compilation a fresh install pays once."""
    cache = tempfile.mkdtemp(prefix="numba-cache-", dir=work)
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    msw, png = str(work / "cold.msw"), str(work / "cold.png")
    return {
        "encode": run([*MAXSWITCH, "encode", "-f", "--quiet", str(src), msw], env),
        "decode": run([*MAXSWITCH, "decode", "-f", "--quiet", msw, png], env),
        "encode_again": run([*MAXSWITCH, "encode", "-f", "--quiet", str(src), msw], env),
    }


def library(images: list[Path], repeat: int, thread_counts: list[int]) -> list[dict]:
    """Library calls on Kodak-sized images: MP/s by wall clock, CPU ms per image."""
    from maxswitch import codec, threads
    from maxswitch.networks.zoo import DEFAULT_MODEL, load_model

    m = load_model(DEFAULT_MODEL)
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    datas = [codec.encode(a, m) for a in arrays]
    codec.decode_array(datas[0])  # warm: kernels loaded, sessions made
    mp = sum(a.shape[0] * a.shape[1] for a in arrays) / 1e6
    out = []
    for n in thread_counts:
        threads.set(n)
        for what, fn, items in (
            ("encode", lambda a: codec.encode(a, m), arrays),
            ("decode, ONNX Runtime", lambda d: codec.decode_array(d), datas),
            ("decode, torch", lambda d: codec.decode_array(d), datas),
        ):
            # the decoder by MAXSWITCH_DECODER (codec.decoder_runner); torch is imported on its first use
            os.environ["MAXSWITCH_DECODER"] = "torch" if what.endswith("torch") else "onnx"
            fn(items[0])
            wall = cpu = 0.0
            for it in items:
                w = c = float("inf")
                for _ in range(repeat):
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn(it)
                    w, c = min(w, time.perf_counter() - t0), min(c, time.process_time() - c0)
                wall, cpu = wall + w, cpu + c
            out.append(
                {
                    "what": what,
                    "threads": n,
                    "mp_per_s": mp / wall,
                    "cpu_ms_per_image": 1e3 * cpu / len(items),
                    "load": load_avg(),
                }
            )
    return out


def big(mp: float, threads: int | None, work: Path, before: str | None) -> dict:
    """One large image through the CLI: a Kodak image upscaled to about ``mp`` megapixels."""
    src = Image.open(KODAK / "kodim23.png").convert("RGB")
    scale = (mp * 1e6 / (src.width * src.height)) ** 0.5
    w, h = int(src.width * scale) // 8 * 8, int(src.height * scale) // 8 * 8
    a = np.asarray(src.resize((w, h), Image.BICUBIC)).astype(np.int16)
    a += np.random.default_rng(0).integers(-2, 3, a.shape, dtype=np.int16)
    path = work / f"big-{w}x{h}.png"
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, compress_level=1)
    del a
    t = ["-t", str(threads)] if threads else []
    msw, png = str(work / "big.msw"), str(work / "big.png")
    out = {
        "size": [w, h],
        "load_start": load_avg(),
        "encode": run([*MAXSWITCH, "encode", "-f", "--quiet", *t, str(path), msw]),
        "decode": run([*MAXSWITCH, "decode", "-f", "--quiet", *t, msw, png]),
    }
    if before:
        env, cmd, old = *_before(before), str(work / "big.before.msw")
        out["before encode"] = run([*cmd, "encode", "-f", "--quiet", *t, str(path), old], env, before)
        out["before decode"] = run([*cmd, "decode", "-f", "--quiet", *t, old, png], env, before)
    out["load_end"] = load_avg()
    return out


def fmt_run(r: dict) -> str:
    return f"{r['wall_s']:.2f} s ({r['cpu_s']:.2f} s CPU), {r['rss_mb']:.0f} MB"


def markdown(res: dict) -> str:
    lines = [
        f"Machine: {res['machine']}; load average (1 min) {res['load_start']} at start, {res['load_end']} at end.",
        "",
    ]
    lines += [
        f"Start-up alone: `python -c pass` {fmt_run(res['python'])}; `import torch` {fmt_run(res['torch'])}.",
        "",
    ]
    lines += [
        "| image | process | wall s | CPU s (user+sys) | peak RSS MB | bytes |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    names = ("maxswitch encode", "maxswitch decode", "before encode", "before decode")
    names += ("Pillow JPEG encode", "Pillow JPEG decode", "Pillow WEBP encode", "Pillow WEBP decode")
    for row in res["whole_process"]:
        for k in [k for k in names if k in row]:
            r = row[k]
            key = k.split()[1] if k.startswith("Pillow") else "maxswitch"
            b = row["bytes"][key] if k.endswith("encode") and not k.startswith("before") else ""
            label = f"maxswitch {k.split()[1]}, --before checkout" if k.startswith("before") else k
            lines.append(
                f"| {row['image']} | {label} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['rss_mb']:.0f} | {b} |"
            )
    lines.append("")
    rows = res["whole_process"]
    for k in ("encode", "decode"):
        ms = np.mean([r[f"maxswitch {k}"]["wall_s"] for r in rows])
        for f in ("JPEG", "WEBP"):
            other = np.mean([r[f"Pillow {f} {k}"]["wall_s"] for r in rows])
            lines.append(f"- maxswitch {k} / Pillow {f} {k}, wall time: {ms / other:.1f}x")
        if all(f"before {k}" in r for r in rows):
            old = np.mean([r[f"before {k}"]["wall_s"] for r in rows])
            lines.append(f"- maxswitch {k}, the --before checkout / this one, wall time: {old / ms:.1f}x")
    lines.append("")
    if "first_run" in res:
        fr = res["first_run"]
        lines.append(
            f"First run with an empty numba cache: encode {fmt_run(fr['encode'])}, decode {fmt_run(fr['decode'])}; "
            f"the next encode {fmt_run(fr['encode_again'])}."
        )
        lines.append("")
    if res.get("library"):
        lines += [
            "| library call, Kodak-sized | threads | MP/s (wall) | CPU ms per image | load |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for r in res["library"]:
            lines.append(
                f"| {r['what']} | {r['threads']} | {r['mp_per_s']:.2f} | {r['cpu_ms_per_image']:.0f} | {r['load']} |"
            )
        lines.append("")
    if "big" in res:
        b = res["big"]
        lines.append(
            f"{b['size'][0]}x{b['size'][1]} ({b['size'][0] * b['size'][1] / 1e6:.1f} MP) through the CLI: encode {fmt_run(b['encode'])}, decode {fmt_run(b['decode'])} (load {b['load_start']} to {b['load_end']})."
        )
        if "before decode" in b:
            lines.append(
                f"The --before checkout on it: encode {fmt_run(b['before encode'])}, decode {fmt_run(b['before decode'])}."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="kodim23", help="Kodak image names, comma-separated")
    ap.add_argument("--library-images", type=int, default=4, help="Kodak-sized images for the library calls (0: skip)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="-t for the CLI (default: the CLI's own)")
    ap.add_argument("--library-threads", default="1,2")
    ap.add_argument("--no-first-run", action="store_true", help="skip the empty-cache run")
    ap.add_argument("--big", type=float, default=0, help="also one image of this many megapixels (e.g. 40)")
    ap.add_argument("--before", help="another checkout of maxswitch (a folder put first on PYTHONPATH) timed beside")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--from-json", help="print the tables of an earlier run's --json file instead of measuring")
    a = ap.parse_args()
    if a.from_json:
        print(markdown(json.loads(Path(a.from_json).read_text())))
        return
    images = [KODAK / f"{n.strip()}.png" for n in a.images.split(",")]
    res = {
        "machine": f"{os.cpu_count()} CPUs, {sys.platform}, Python {sys.version.split()[0]}",
        "load_start": load_avg(),
    }
    with tempfile.TemporaryDirectory(prefix="cli-speed-") as tmp:
        work = Path(tmp)
        res["python"] = best([sys.executable, "-c", "pass"], a.repeat)
        res["torch"] = best([sys.executable, "-c", "import torch"], a.repeat)
        if not a.no_first_run:
            res["first_run"] = first_run(images[0], work)
        res["whole_process"] = whole_process(images, a.repeat, a.threads, work, a.before)
        if a.library_images:
            kodak = sorted(KODAK.glob("kodim*.png"))
            sized = [p for p in kodak if Image.open(p).size == (768, 512)][: a.library_images]
            res["library"] = library(sized, a.repeat, [int(t) for t in a.library_threads.split(",")])
        if a.big:
            res["big"] = big(a.big, a.threads, work, a.before)
    res["load_end"] = load_avg()
    text = markdown(res)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(text)


if __name__ == "__main__":
    main()
