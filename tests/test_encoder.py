"""The encoder without torch (encoder.SwitchEncoder, numba) against nets.Encoder (torch): the
same switches, bit for bit, on random images of odd sizes, 8- and 16-bit inputs, every
shipped model's encoder, every thread count and tile size; and encoding and decoding (both
payload codings) never import torch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import make_image, png_bytes
from PIL import Image

import maxswitch
from maxswitch import codec, image, threads
from maxswitch.networks import tiling, zoo
from maxswitch.networks.encoder import SwitchEncoder
from maxswitch.networks.nets import Encoder

SHIPPED = [m["name"] for m in zoo.manifest()["models"] if (zoo.models_dir() / m["file"]).is_file()]


def _rand(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_encoder_gives_torchs_switches(name):
    m = zoo.load_model(name)
    assert m.switch_encoder.digest() == m.encoder_digest == m.encoder.digest()
    for seed, (h, w) in enumerate([(8, 8), (37, 53), (61, 99)]):
        rgb = _rand(h, w, seed)
        want = codec.compute_switches(m, rgb, encoder="torch")
        got = codec.compute_switches(m, rgb, encoder="numba")
        assert _same(got, want), (name, h, w)


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("channels", [(4, 6, 8), (3, 1, 5), (16, 32, 64)])
def test_random_encoders_on_random_images_of_odd_sizes(channels, pool):
    for seed in range(3):
        enc = Encoder.random(channels, seed=seed, pool=pool)
        fast = SwitchEncoder.from_torch(enc)
        assert fast.digest() == enc.digest()
        rng = np.random.default_rng(seed)
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        rgb = _rand(h, w, seed)
        assert _same(tiling.encode_tiled(fast, rgb, 0), tiling.encode_tiled(enc, rgb, 0)), (channels, h, w)


def test_extreme_parameters_and_ties():
    """Weights at +-7, biases at the limits of float32 exactness, flat images (every window ties)."""
    enc = Encoder((8, 8, 8))
    g = torch.Generator().manual_seed(5)
    for s in range(3):
        w = getattr(enc, f"w{s}")
        w.copy_(torch.randint(-7, 8, w.shape, generator=g, dtype=torch.int8))
        getattr(enc, f"b{s}").copy_(torch.randint(-(2**18), 2**18, (8,), generator=g, dtype=torch.int32))
    enc.shifts.copy_(torch.tensor([0, 3, 6], dtype=torch.int32))
    fast = SwitchEncoder.from_torch(enc)
    for rgb in (np.zeros((24, 40, 3), np.uint8), np.full((24, 40, 3), 255, np.uint8), _rand(40, 24, 9)):
        assert _same(tiling.encode_tiled(fast, rgb, 0), tiling.encode_tiled(enc, rgb, 0))


def test_float64_fallback_for_wide_encoders():
    """Channel counts whose partial sums pass 2^24 run in float64 in both paths."""
    enc = Encoder.random((8, 300, 8), seed=2)
    fast = SwitchEncoder.from_torch(enc)
    assert fast.dtype is np.float64 and enc.dtype == torch.float64
    rgb = _rand(32, 24, 4)
    assert _same(tiling.encode_tiled(fast, rgb, 0), tiling.encode_tiled(enc, rgb, 0))


@pytest.mark.parametrize("bits", [8, 16])
def test_both_paths_give_the_same_bytes_for_8_and_16_bit_inputs(tiny_zoo, bits, monkeypatch):
    a = _rand(45, 67, bits).astype(np.uint16) * (257 if bits == 16 else 1)
    im = Image.fromarray(np.ascontiguousarray(a[..., 0])) if bits == 16 else Image.fromarray(a.astype(np.uint8), "RGB")
    data = png_bytes(im)
    assert image.load(data, 10**6).bit_depth == bits
    out = {}
    for path in ("numba", "torch"):
        monkeypatch.setenv("MAXSWITCH_ENCODER", path)
        out[path] = [maxswitch.encode(data, tiny_zoo, coding=c) for c in ("zstd", "table", "context")]
    assert out["numba"] == out["torch"]


def test_same_bytes_across_paths_threads_and_tiles(tiny_zoo, monkeypatch):
    data = png_bytes(make_image(203, 117, seed=3))
    seen = set()
    before = threads.get()
    try:
        for path in ("numba", "torch"):
            monkeypatch.setenv("MAXSWITCH_ENCODER", path)
            for t in (1, 2):
                for tile in (0, 8, 24, 64, None):
                    seen.add(maxswitch.encode(data, tiny_zoo, threads=t, tile=tile, coding="table"))
    finally:
        threads.set(before)
    assert len(seen) == 1


def test_unknown_encoder_is_refused(tiny_zoo, monkeypatch):
    monkeypatch.setenv("MAXSWITCH_ENCODER", "gpu")
    with pytest.raises(codec.CodecError, match="unknown encoder"):
        maxswitch.encode(png_bytes(make_image(16, 16)), tiny_zoo)


def test_rejects_bad_input():
    fast = SwitchEncoder.from_torch(Encoder.random((4, 4, 4), seed=0))
    with pytest.raises(ValueError, match="multiples of 8"):
        fast(np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        fast(np.zeros((16, 16, 3), np.float32))


# ----------------------------------------------------------------------------- no torch


def _without_torch(*args, env=None, input=None):
    """Run the CLI in a fresh process in which ``import torch`` fails."""
    code = "import sys; sys.modules['torch'] = None; from maxswitch.cli import main; sys.exit(main(sys.argv[1:]))"
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, env=e, input=input, timeout=300
    )


def test_encode_info_models_help_and_compare_run_without_torch(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(png_bytes(make_image(70, 50, seed=1)))
    out = tmp_path / "a.msw"
    r = _without_torch("encode", "--quiet", src, out)
    assert r.returncode == 0, r.stderr.decode()
    with_torch = maxswitch.encode(src.read_bytes())
    assert out.read_bytes() == with_torch
    for args in (("info", out), ("models",), ("--help",), ("encode", "--help"), ("compare", src, src)):
        r = _without_torch(*args)
        assert r.returncode == 0, (args, r.stderr.decode())
    # the MLP context model (coding 2, the other rungs' default) computes without torch too
    ctx = tmp_path / "c.msw"
    r = _without_torch("encode", "--quiet", "-m", "natural-6-12-24", "--coding", "context", src, ctx)
    assert r.returncode == 0, r.stderr.decode()
    assert ctx.read_bytes() == maxswitch.encode(src.read_bytes(), "natural-6-12-24", coding="context")


def test_decode_runs_without_torch_where_onnxruntime_is_installed(tmp_path, monkeypatch):
    """Both families decode without torch: the default (what+where, nets.WhatDecoder) and the
    switch-only direct decoders, in every coding; each within a rounding step of torch."""
    pytest.importorskip("onnxruntime")
    src = tmp_path / "a.png"
    src.write_bytes(png_bytes(make_image(70, 50, seed=1)))
    for model, coding in ((None, None), ("natural-6-12-24", None), ("natural-6-12-24", "context")):
        msw = tmp_path / "a.msw"
        msw.write_bytes(maxswitch.encode(src.read_bytes(), model, coding=coding))
        out = tmp_path / "b.png"
        r = _without_torch("decode", "--quiet", "-f", msw, out)
        assert r.returncode == 0, (model, coding, r.stderr.decode())
        got = np.asarray(Image.open(out))
        assert got.shape == (50, 70, 3)
        # the torch path on the same file: within a rounding step
        monkeypatch.setenv("MAXSWITCH_DECODER", "torch")
        want = np.asarray(maxswitch.decode(msw.read_bytes()))
        monkeypatch.delenv("MAXSWITCH_DECODER")
        assert np.abs(got.astype(int) - want).max() <= 2, (model, coding)
