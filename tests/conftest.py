"""Shared fixtures: small images made in the test, a tiny model, the CLI runner."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "example.png"


def make_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth, textured test image (deterministic)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 7 + seed), 128 + 100 * np.cos(y / 5), 255 * x / max(1, width)], -1)
    a = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(a, "RGB")
    return im if mode == "RGB" else im.convert(mode)


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small untrained model asset (channels 4,6,8) written to a temp folder with a manifest."""
    import torch

    from maxswitch.nets import Encoder, ModelConfig, build_decoder
    from maxswitch.zoo import save_model

    d = tmp_path_factory.mktemp("models")
    cfg = ModelConfig((4, 6, 8), "direct", (8, 8, 8), encoder_seed=3)
    enc = Encoder.random(cfg.channels, seed=3)
    torch.manual_seed(0)
    dec = build_decoder(cfg)
    path = d / "tiny-4-6-8.safetensors"
    sha = save_model(path, "tiny-4-6-8", 1, cfg, enc, dec.eval())
    return path, sha


def run_cli(*args, input: bytes | None = None, env=None, cwd=None):
    """Run ``python -m maxswitch`` in a real subprocess; return CompletedProcess (bytes)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "maxswitch", *map(str, args)], input=input,
                          capture_output=True, env=e, cwd=cwd, timeout=300)
