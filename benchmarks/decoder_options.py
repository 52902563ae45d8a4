"""The decoder network's options on CPU, measured side by side (docs/PERFORMANCE.md, "One image,
one process"): which form of the default model's decoder to ship.

    .venv/bin/python benchmarks/decoder_options.py [--images 4] [--repeat 5]

On Kodak-sized images (768x512, their real switches), each form decodes the whole image as one
region; printed: CPU time per image at 1 thread, wall time at 1 and 2 threads (best of
``--repeat``), and the PSNR against the original beside the reference's (torch's
``DirectRunner``, float32). Forms: torch's plain module (NCHW), ``DirectRunner`` (channels-last,
the torch path), TorchScript frozen for inference (conv + ReLU fused by oneDNN), bfloat16
(autocast), ``torch.compile`` (needs a C++ compiler; reported as unavailable without one), and
ONNX Runtime (``fastdecode.py``, what maxswitch ships), plus import time and memory of the two
runtimes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maxswitch import codec  # noqa: E402
from maxswitch.evaluation import metrics  # noqa: E402
from maxswitch.networks import fastdecode, tiling  # noqa: E402
from maxswitch.networks.zoo import DEFAULT_MODEL, load_model  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"


def to_u8(x: torch.Tensor, H: int, W: int) -> np.ndarray:
    """(1, 3, H, W) float in 0..1 -> uint8 (H, W, 3)."""
    return x[0].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()[:H, :W]


def forms(m):
    dec = m.decoder
    runner = dec.inference()

    def plain(codes):
        with torch.inference_mode():
            return to_u8(dec([torch.from_numpy(c)[None] for c in codes]), *codes[0].shape[1:3] * np.array(2))

    def direct(codes):
        H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2
        with torch.inference_mode():
            return tiling._to_uint8_block(
                runner.region([torch.from_numpy(c)[None] for c in codes], 0, H, 0, W)[0], H, W
            ).numpy()

    def bf16(codes):
        H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return to_u8(dec([torch.from_numpy(c)[None] for c in codes]), H, W)

    example = None
    scripted = {}

    def frozen(codes):
        key = codes[0].shape
        if key not in scripted:
            ex = [torch.from_numpy(c)[None] for c in codes]
            with torch.inference_mode():
                tr = torch.jit.trace(dec.eval(), (ex,), check_trace=False)
            scripted[key] = torch.jit.optimize_for_inference(torch.jit.freeze(tr.eval()))
        H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2
        with torch.inference_mode():
            return to_u8(scripted[key]([torch.from_numpy(c)[None] for c in codes]), H, W)

    compiled = {}

    def compiled_form(codes):
        if "f" not in compiled:
            compiled["f"] = torch.compile(dec)
        H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2
        with torch.inference_mode():
            return to_u8(compiled["f"]([torch.from_numpy(c)[None] for c in codes]), H, W)

    ort = fastdecode.runner_for(m)

    def onnx(codes):
        H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2
        return ort.block(codes, 0, H, 0, W, H, W, torch.get_num_threads())

    del example
    return {
        "torch module (NCHW)": plain,
        "torch DirectRunner (channels-last)": direct,
        "TorchScript, frozen": frozen,
        "torch bfloat16 (autocast)": bf16,
        "torch.compile": compiled_form,
        "ONNX Runtime (shipped)": onnx,
    }


def timed(fn, arg, repeat: int) -> tuple[float, float]:
    w = c = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(arg)
        w, c = min(w, time.perf_counter() - t0), min(c, time.process_time() - c0)
    return w, c


def startup(code: str) -> str:
    """Wall time and peak memory of ``python -c code`` (by /usr/bin/time: a child forked from
    this process would count this process's pages in its peak)."""
    r = subprocess.run(["/usr/bin/time", "-f", "@@ %e %M", sys.executable, "-c", code], capture_output=True, text=True)
    wall, kb = r.stderr.strip().splitlines()[-1].split()[1:]
    return f"{float(wall):.2f} s, {int(kb) / 1024:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    m = load_model(DEFAULT_MODEL)
    paths = [p for p in sorted(KODAK.glob("kodim*.png")) if Image.open(p).size == (768, 512)][: a.images]
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    codes = [codec.compute_switches(m, x) for x in imgs]
    ref = forms(m)["torch DirectRunner (channels-last)"]
    ref_psnr = np.mean([metrics.psnr(x, ref(c)) for x, c in zip(imgs, codes)])
    print(f"model {m.name}, {len(imgs)} Kodak images, load {os.getloadavg()[0]:.1f}; reference PSNR {ref_psnr:.3f} dB")
    print("| form | CPU ms/image, 1 thread | wall ms, 1 thread | wall ms, 2 threads | PSNR - reference, dB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, fn in forms(m).items():
        try:
            torch.set_num_threads(1)
            outs = [fn(c) for c in codes]  # warm (and trace or compile)
            psnr = np.mean([metrics.psnr(x, o) for x, o in zip(imgs, outs)])
            one = [timed(fn, c, a.repeat) for c in codes]
            torch.set_num_threads(2)
            fn(codes[0])
            two = [timed(fn, c, a.repeat) for c in codes]
        except Exception as e:  # noqa: BLE001  (torch.compile without a compiler, say)
            print(f"| {name} | unavailable: {str(e).splitlines()[0][:80]} | | | |")
            continue
        cpu1 = 1e3 * np.mean([c for _, c in one])
        w1, w2 = 1e3 * np.mean([w for w, _ in one]), 1e3 * np.mean([w for w, _ in two])
        print(f"| {name} | {cpu1:.0f} | {w1:.0f} | {w2:.0f} | {psnr - ref_psnr:+.4f} |")
    print(f"\nimport torch: {startup('import torch')}; import onnxruntime: {startup('import onnxruntime')}")


if __name__ == "__main__":
    main()
