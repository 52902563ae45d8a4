"""SSIM and MS-SSIM: maxswitch.evaluation.metrics (numpy, float64) against pytorch_msssim (torch), 1 thread.

    python benchmarks/ssim_speed.py [--images 4] [--repeat 5]

What ``maxswitch bench`` measures per image and codec setting: SSIM and MS-SSIM of a Kodak-sized
(768x512x3 uint8) original against a reconstruction (a Pillow JPEG at quality 30). Kodak images
from /work/shared/data/kodak (or $MAXSWITCH_DATA/kodak) when present, else synthetic ones.

Each figure is the best of ``--repeat`` calls per image, averaged over the images, in ms per
call, with torch and numpy's BLAS on 1 thread. pytorch_msssim is timed as a caller would use it:
the uint8 arrays converted to a (1, 3, H, W) tensor inside the timed call; in float32 (its
default: results differ from float64 by ~1e-6) and in float64 (what the metric tests compare
with). ``metrics.distortion`` computes PSNR, RMSE, SSIM and MS-SSIM in one pass (SSIM is
MS-SSIM's first scale): that is the call bench makes. Also the difference of the values.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch.evaluation import metrics  # noqa: E402

W, H = 768, 512


def images(n: int) -> tuple[list[np.ndarray], str]:
    data = Path(os.environ.get("MAXSWITCH_DATA", "/work/shared/data")) / "kodak"
    files = sorted(data.glob("*.png"))[:n] if data.is_dir() else []
    if files:
        out = []
        for f in files:
            x = np.asarray(Image.open(f).convert("RGB"))
            out.append(x if x.shape[:2] == (H, W) else x.transpose(1, 0, 2))  # portrait Kodak images
        return out, f"Kodak ({', '.join(f.name for f in files)})"
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):  # smooth random fields plus noise: JPEG does not make them trivial
        small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
        x = np.asarray(Image.fromarray(small).resize((W, H), Image.BICUBIC)).astype(np.int16)
        out.append(np.clip(x + rng.integers(-8, 9, x.shape), 0, 255).astype(np.uint8))
    return out, "synthetic"


def jpeg(x: np.ndarray, q: int = 30) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def best(f, repeat: int) -> tuple[float, object]:
    t, v = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        v = f()
        t = min(t, time.perf_counter() - t0)
    return t, v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()

    t0 = time.perf_counter()
    import torch
    from pytorch_msssim import ms_ssim, ssim

    torch_import_s = time.perf_counter() - t0
    torch.set_num_threads(1)
    xs, source = images(a.images)
    pairs = [(x, jpeg(x)) for x in xs]

    def tensor(x, dtype):
        return torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].to(dtype)  # Pillow's arrays are read-only

    def ref(fn, x, y, dtype):
        def call():
            with torch.no_grad():
                return fn(tensor(x, dtype), tensor(y, dtype), data_range=255).item()

        return call

    def both(x, y, dtype):  # bench records SSIM and MS-SSIM; pytorch_msssim's ms_ssim does not return SSIM
        s, m = ref(ssim, x, y, dtype), ref(ms_ssim, x, y, dtype)
        return lambda: (s(), m())

    cases = {
        "numpy ssim": lambda x, y: lambda: metrics.ssim(x, y),
        "numpy ms_ssim": lambda x, y: lambda: metrics.ms_ssim(x, y),
        "numpy distortion (PSNR, RMSE, SSIM, MS-SSIM)": lambda x, y: lambda: metrics.distortion(x, y),
        "pytorch_msssim ssim float32": lambda x, y: ref(ssim, x, y, torch.float32),
        "pytorch_msssim ms_ssim float32": lambda x, y: ref(ms_ssim, x, y, torch.float32),
        "pytorch_msssim ssim + ms_ssim float32 (what bench needs)": lambda x, y: both(x, y, torch.float32),
        "pytorch_msssim ssim float64": lambda x, y: ref(ssim, x, y, torch.float64),
        "pytorch_msssim ms_ssim float64": lambda x, y: ref(ms_ssim, x, y, torch.float64),
    }
    times = {k: [] for k in cases}
    values = {k: [] for k in cases}
    for x, y in pairs:
        for k, make in cases.items():
            make(x, y)()  # warm-up
            t, v = best(make(x, y), a.repeat)
            times[k].append(t)
            values[k].append(v if isinstance(v, float) else None)

    print(f"# {source}, {len(pairs)} image(s) {W}x{H}x3 vs JPEG q30, best of {a.repeat}, 1 thread")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"# numpy {np.__version__}, torch {torch.__version__}, import torch + pytorch_msssim {torch_import_s:.2f} s")
    print("| call | ms per call |")
    print("| --- | ---: |")
    for k in cases:
        print(f"| {k} | {1000 * np.mean(times[k]):.1f} |")
    for fn in ("ssim", "ms_ssim"):
        for dt in ("float32", "float64"):
            d = max(abs(p - q) for p, q in zip(values[f"numpy {fn}"], values[f"pytorch_msssim {fn} {dt}"]))
            print(f"# max |numpy {fn} - pytorch_msssim {fn} {dt}| = {d:.2e}")


if __name__ == "__main__":
    main()
