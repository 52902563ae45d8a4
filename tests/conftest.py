"""Shared fixtures: small images made in the test, a tiny model, the CLI runner."""

import io
import json
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


def random_context(channels, seed: int = 0, hidden=(8, 6)):
    """A context model with integer weights drawn by numpy (the same on every machine)."""
    from maxswitch.bitstream.context import ContextModel, StageNet, stage_layouts

    rng = np.random.default_rng(seed)
    stages = []
    for lay in stage_layouts(channels):
        stages.append(
            StageNet(
                rng.integers(-30, 31, (lay.rows, hidden[0])),
                rng.integers(-20, 21, hidden),
                rng.integers(-200, 201, hidden[1]),
                rng.integers(-10, 11, (hidden[1], 4)),
                rng.integers(-300, 301, 4),
            )
        )
    return ContextModel(tuple(channels), stages)


def random_table(channels, seed: int = 0, max_features: int = 3):
    """Context tables (coding 3) with random causal features and frequencies (``TableModel.random``)."""
    from maxswitch.bitstream.tables import TableModel

    return TableModel.random(channels, seed, max_features)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small untrained model asset (channels 4,6,8) with a random integer context model and
    random context tables, written to a temp folder with a manifest."""
    import torch

    from maxswitch.networks.nets import Encoder, ModelConfig, build_decoder
    from maxswitch.networks.zoo import save_model

    d = tmp_path_factory.mktemp("models")
    cfg = ModelConfig((4, 6, 8), "direct", (8, 8, 8), encoder_seed=3)
    enc = Encoder.random(cfg.channels, seed=3)
    torch.manual_seed(0)
    dec = build_decoder(cfg)
    path = d / "tiny-4-6-8.safetensors"
    sha = save_model(
        path,
        "tiny-4-6-8",
        1,
        cfg,
        enc,
        dec.eval(),
        context=random_context(cfg.channels),
        table=random_table(cfg.channels, seed=1),
    )
    entry = {
        "name": "tiny-4-6-8",
        "version": 1,
        "file": path.name,
        "sha256": sha,
        "family": "natural",
        "channels": list(cfg.channels),
        "switches_per_pixel": cfg.switches_per_pixel,
        "encoder_digest": enc.digest(),
    }
    (d / "manifest.json").write_text(json.dumps({"schema": 1, "models": [entry]}))
    return path, sha


@pytest.fixture
def tiny_zoo(tiny_model, monkeypatch):
    """Point the zoo at the tiny model's folder for this test; return the model's name."""
    from maxswitch.networks import zoo

    monkeypatch.setenv("MAXSWITCH_MODELS", str(tiny_model[0].parent))
    monkeypatch.setattr(zoo, "_LOADED", {})
    return "tiny-4-6-8"


@pytest.fixture(params=["numba", "torch"])
def encoder_path(request, monkeypatch):
    """Run the test with each encoder (``MAXSWITCH_ENCODER``): numba (the default, no torch) and
    torch (the reference): one set of goldens checks both."""
    monkeypatch.setenv("MAXSWITCH_ENCODER", request.param)
    return request.param


def run_cli(*args, input: bytes | None = None, env=None, cwd=None):
    """Run ``python -m maxswitch`` in a real subprocess; return CompletedProcess (bytes)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "maxswitch", *map(str, args)],
        input=input,
        capture_output=True,
        env=e,
        cwd=cwd,
        timeout=300,
    )


def switches_digest_in_fresh_process(path, models_dir) -> str:
    """SHA-256 of the switches that another Python process, with 2 torch threads, decodes from
    the .msw file at ``path`` (models from ``models_dir``): goldens must not depend on the process."""
    code = (
        "import hashlib, sys, torch; torch.set_num_threads(2); from maxswitch import codec; "
        "p = codec.parse(open(sys.argv[1], 'rb').read()); "
        "print(hashlib.sha256(b''.join(c.tobytes() for c in p.codes)).hexdigest())"
    )
    env = dict(os.environ, MAXSWITCH_MODELS=str(models_dir))
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()
