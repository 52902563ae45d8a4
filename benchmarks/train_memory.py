"""Peak memory of `maxswitch train` against the size of the dataset (streaming data).

    python benchmarks/train_memory.py [--large 20000] [--small 200] [--steps 50] [--folder DIR]

Generates ``--large`` 256 x 256 JPEG images (kept in ``--folder``, default a temp folder),
trains the default recipe for ``--steps`` steps on the first ``--small`` of them and on all of
them, and prints the peak resident memory (VmHWM) of the training process and of its data
worker, sampled every 50 ms from /proc. The issue's target: the large run's peaks within 20%
of the small run's. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    for i in range(have, n):
        rng = np.random.default_rng(i)
        a, b, c = rng.uniform(3, 20, 3)
        base = np.stack([128 + 100 * np.sin(x / a + i), 128 + 100 * np.cos(y / b), 128 + 100 * np.sin((x + y) / c)], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=90)


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak(source: str, steps: int, out: Path) -> tuple[float, float, float]:
    """(main process MiB, largest worker MiB, seconds) of one training run."""
    cmd = [sys.executable, "-m", "maxswitch", "train", source, "-o", str(out), "--name", "mem", "-f"]
    cmd += ["--steps", str(steps), "--workers", "1", "-t", "1", "--device", "cpu"]
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main = worker = 0
    while p.poll() is None:
        main = max(main, hwm_kib(p.pid))
        for c in children(p.pid):
            worker = max(worker, hwm_kib(c))
        time.sleep(0.05)
    err = p.stderr.read()
    if p.returncode:
        sys.exit(f"training failed: {err.strip().splitlines()[-1]}")
    return main / 1024, worker / 1024, time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", type=int, default=20000)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--folder", default=None, help="where the generated images are kept (reused)")
    a = ap.parse_args()
    folder = Path(a.folder or Path(tempfile.gettempdir()) / "maxswitch-train-memory")
    t0 = time.time()
    make_images(folder / "all", a.large)
    print(f"{a.large} images in {folder / 'all'} ({time.time() - t0:.0f} s to make)", file=sys.stderr)
    small = folder / f"first{a.small}.txt"
    small.write_text("\n".join(f"all/{i:06d}.jpg" for i in range(a.small)) + "\n")
    rows = []
    for label, source in ((f"{a.small} images", str(small)), (f"{a.large} images", str(folder / "all"))):
        m, w, s = peak(source, a.steps, folder / "mem.safetensors")
        rows.append((label, m, w, s))
        print(f"{label}: peak RSS main process {m:.0f} MiB, data worker {w:.0f} MiB ({s:.0f} s)")
    (_, m0, w0, _), (_, m1, w1, _) = rows
    print(f"large / small: main process {m1 / m0:.3f}, data worker {w1 / w0:.3f} (target: at most 1.20)")


if __name__ == "__main__":
    main()
