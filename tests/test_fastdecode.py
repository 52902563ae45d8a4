"""The direct and what decoders on ONNX Runtime (fastdecode.py) against the torch reference:
within 0.05 dB of it on every shipped direct and what model, tiles that join, regions at the
image's edges, and torch for every decoder it does not handle."""

import numpy as np
import pytest
import torch
from conftest import EXAMPLE, make_image

from maxswitch import codec
from maxswitch.evaluation import metrics
from maxswitch.networks import fastdecode, tiling, zoo
from maxswitch.networks.nets import DirectDecoder, ModelConfig, WhatDecoder, WhatFineDecoder, build_decoder

pytest.importorskip("onnxruntime")

DIRECT = [
    m["name"]
    for m in zoo.manifest()["models"]
    if m.get("decoder") == "direct" and m.get("pool", "max") == "max" and (zoo.models_dir() / m["file"]).is_file()
]
WHAT = [
    m["name"]
    for m in zoo.manifest()["models"]
    if m.get("decoder") in ("what", "what-fine") and (zoo.models_dir() / m["file"]).is_file()
]


def _example():
    from PIL import Image

    return np.asarray(Image.open(EXAMPLE).convert("RGB"))


def _psnr(a, b) -> float:
    return metrics.psnr(a, b)


@pytest.mark.parametrize("name", DIRECT)
def test_every_shipped_direct_decoder_within_0_05_db_of_torch(name):
    m = zoo.load_model(name)
    runner = fastdecode.runner_for(m)
    assert runner is not None
    rgb = _example()
    codes = codec.compute_switches(m, rgb)
    fast = tiling.decode_tiled(runner, codes, 0, rgb.shape[:2])
    ref = tiling.decode_tiled(m.decoder, codes, 0, rgb.shape[:2])  # torch, DirectRunner
    assert np.abs(fast.astype(int) - ref).max() <= 2
    assert abs(_psnr(rgb, fast) - _psnr(rgb, ref)) <= 0.05
    # and the plain module (DirectDecoder.forward), the definition both follow
    with torch.inference_mode():
        x = m.decoder([torch.from_numpy(c)[None] for c in codes])[0]
    plain = x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()[: rgb.shape[0], : rgb.shape[1]]
    assert abs(_psnr(rgb, fast) - _psnr(rgb, plain)) <= 0.05


@pytest.mark.parametrize("name", WHAT)
def test_every_shipped_what_decoder_within_0_05_db_of_torch(name, monkeypatch):
    m = zoo.load_model(name)
    runner = fastdecode.runner_for(m)
    assert isinstance(runner, fastdecode.OrtRunner) and runner.what and runner.margin == WhatDecoder.TILE_MARGIN
    rgb = _example()
    data = codec.encode(rgb, name)
    monkeypatch.setenv("MAXSWITCH_DECODER", "onnx")
    fast, _ = codec.decode_array(data)
    monkeypatch.setenv("MAXSWITCH_DECODER", "torch")
    ref, _ = codec.decode_array(data)
    assert np.abs(fast.astype(int) - ref).max() <= 2
    assert abs(_psnr(rgb, fast) - _psnr(rgb, ref)) <= 0.05


def _tiny():
    cfg = ModelConfig((4, 6, 8), "direct", (8, 12, 16))
    torch.manual_seed(0)
    dec = build_decoder(cfg).eval()
    for p in dec.parameters():  # weights of a trained size, so that rounding shows
        p.data.mul_(3.0)
    return cfg, dec


@pytest.mark.parametrize("size", [(8, 8), (40, 24), (104, 136), (61, 97)])
def test_regions_and_tiles_match_the_torch_runner(size):
    cfg, dec = _tiny()
    runner = fastdecode.runner_for_module(dec)
    assert runner is not None
    H, W = (-(-v // 8) * 8 for v in size)
    rng = np.random.default_rng(sum(size))
    codes = [rng.integers(0, 4, (c, H >> (s + 1), W >> (s + 1)), dtype=np.uint8) for s, c in enumerate(cfg.channels)]
    ref = tiling.decode_tiled(dec, codes, 0, size)
    whole = tiling.decode_tiled(runner, codes, 0, size)
    assert whole.shape == size + (3,)
    assert np.abs(whole.astype(int) - ref).max() <= 1
    for tile in (8, 16, 40):
        tiled = tiling.decode_tiled(runner, codes, tile, size)
        assert np.abs(tiled.astype(int) - whole).max() <= 1, tile


def _tiny_what(kind="what"):
    cfg = ModelConfig((4, 6, 8), kind, (8, 12, 16), what=(8, 4, 8))
    torch.manual_seed(1)
    dec = build_decoder(cfg).eval()
    assert type(dec) is {"what": WhatDecoder, "what-fine": WhatFineDecoder}[kind]
    for p in dec.parameters():
        p.data.mul_(3.0)
    return cfg, dec


@pytest.mark.parametrize("kind", ["what", "what-fine"])
@pytest.mark.parametrize("factor", [8, 4, 2])
@pytest.mark.parametrize("size", [(8, 8), (40, 24), (104, 136), (61, 97)])
def test_what_regions_and_tiles_match_the_torch_runner(size, factor, kind):
    """The fusion's block means and bilinear edges, tile by tile and at the image's edges, for
    what pictures of 8, 4 and 2-pixel blocks; a fine what decoder's level 1 reads its blocks at
    its own scale in every tile."""
    cfg, dec = _tiny_what(kind)
    runner = fastdecode.runner_for_module(dec)
    assert runner is not None and runner.what and runner.fine == (kind == "what-fine")
    H, W = (-(-v // 8) * 8 for v in size)
    rng = np.random.default_rng(sum(size) + 1)
    codes = [rng.integers(0, 4, (c, H >> (s + 1), W >> (s + 1)), dtype=np.uint8) for s, c in enumerate(cfg.channels)]
    pic = rng.integers(0, 256, (3, H // factor, W // factor), dtype=np.uint8)
    src = tiling.WithWhat(tiling.as_source(codes), pic[None])
    ref = tiling.join_bands(tiling.decode_bands(dec, src, 0, size), *size)
    whole = tiling.join_bands(tiling.decode_bands(runner, src, 0, size), *size)
    assert whole.shape == size + (3,)
    assert np.abs(whole.astype(int) - ref).max() <= 1
    # the module itself (WhatDecoder.forward), the definition
    with torch.inference_mode():
        x = dec([torch.from_numpy(c)[None] for c in codes], torch.from_numpy(pic)[None])[0]
    plain = x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()[: size[0], : size[1]]
    assert np.abs(whole.astype(int) - plain).max() <= 1
    for tile in (8, 16, 40):
        tiled = tiling.join_bands(tiling.decode_bands(runner, src, tile, size), *size)
        assert np.abs(tiled.astype(int) - whole).max() <= 1, tile


def test_decoders_it_does_not_handle_go_to_torch(monkeypatch):
    cfg, dec = _tiny()
    mirror = build_decoder(ModelConfig((4, 6, 8), "mirror", (8, 12, 16)))
    assert fastdecode.runner_for_module(mirror) is None

    class WithMore(DirectDecoder):  # a subclass may compute something else: not taken
        pass

    assert fastdecode.runner_for_module(WithMore(cfg.channels, cfg.widths)) is None
    sd = {k: v.numpy() for k, v in dec.state_dict().items()}
    assert fastdecode.direct_weights(cfg.channels, sd) is not None
    assert fastdecode.direct_weights(cfg.channels, {**sd, "what.0.weight": np.zeros(3, np.float32)}) is None
    assert fastdecode.direct_weights((4, 6, 9), sd) is None
    assert fastdecode.direct_weights(cfg.channels, sd, what=True) is None  # level 3 lacks the what input

    class WhatWithMore(WhatDecoder):
        pass

    wcfg, wdec = _tiny_what()
    assert fastdecode.runner_for_module(WhatWithMore(wcfg.channels, wcfg.widths)) is None
    wsd = {k: v.numpy() for k, v in wdec.state_dict().items()}
    assert fastdecode.direct_weights(wcfg.channels, wsd, what=True) is not None
    assert fastdecode.direct_weights(wcfg.channels, wsd) is None
    assert fastdecode.direct_weights(wcfg.channels, wsd, what=True, fine=True) is None  # level 1 lacks it

    class FineWithMore(WhatFineDecoder):
        pass

    fcfg, fdec = _tiny_what("what-fine")
    assert fastdecode.runner_for_module(FineWithMore(fcfg.channels, fcfg.widths)) is None
    fsd = {k: v.numpy() for k, v in fdec.state_dict().items()}
    assert fastdecode.direct_weights(fcfg.channels, fsd, what=True, fine=True) is not None
    assert fastdecode.direct_weights(fcfg.channels, fsd, what=True) is None
    monkeypatch.setenv("MAXSWITCH_DECODER", "torch")
    assert fastdecode.runner_for_module(dec) is None


def test_codec_decodes_with_onnxruntime_and_torch_alike(tiny_zoo, monkeypatch):
    from conftest import png_bytes

    data = codec.encode(png_bytes(make_image(90, 70, seed=2)), tiny_zoo)
    m = zoo.load_model(tiny_zoo)
    monkeypatch.setenv("MAXSWITCH_DECODER", "onnx")
    assert isinstance(codec.decoder_runner(m), fastdecode.OrtRunner)
    fast, _ = codec.decode_array(data)
    # auto: torch is imported in this process, so its DirectRunner decodes
    monkeypatch.setenv("MAXSWITCH_DECODER", "auto")
    assert isinstance(codec.decoder_runner(m), torch.nn.Module)
    monkeypatch.setenv("MAXSWITCH_DECODER", "torch")
    m._ort_runner = None
    assert isinstance(codec.decoder_runner(m), torch.nn.Module)
    ref, _ = codec.decode_array(data)
    assert np.abs(fast.astype(int) - ref).max() <= 1
    monkeypatch.setenv("MAXSWITCH_DECODER", "gpu")
    with pytest.raises(codec.CodecError, match="unknown decoder"):
        codec.decoder_runner(m)


def test_a_decoder_on_another_torch_device_runs_the_module_tile_by_tile():
    """``--device cuda`` runs ``TorchRunner(decoder, device)``: a copy of the module, tile by tile
    with its margin. On the CPU as that device it gives the reference's pixels, what decoders too."""
    for cfg, dec in (_tiny(), _tiny_what()):
        size = (61, 97)
        H, W = (-(-v // 8) * 8 for v in size)
        rng = np.random.default_rng(5)
        codes = [
            rng.integers(0, 4, (c, H >> (s + 1), W >> (s + 1)), dtype=np.uint8) for s, c in enumerate(cfg.channels)
        ]
        src = tiling.as_source(codes)
        if cfg.decoder == "what":
            src = tiling.WithWhat(src, rng.integers(0, 256, (1, 3, H // 8, W // 8), dtype=np.uint8))
        ref = tiling.join_bands(tiling.decode_bands(dec, src, 0, size), *size)
        runner = tiling.TorchRunner(dec, torch.device("cpu"))
        assert runner.fast is None and runner.decoder is not dec and runner.tile == tiling.GPU_TILE
        for tile in (0, 16):
            got = tiling.join_bands(tiling.decode_bands(runner, src, tile, size), *size)
            assert np.abs(got.astype(int) - ref).max() <= 1, (cfg.decoder, tile)


def test_decode_on_a_device_this_machine_lacks_is_one_line_and_no_file(tmp_path):
    import subprocess
    import sys

    from conftest import png_bytes

    import maxswitch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    msw = tmp_path / "a.msw"
    msw.write_bytes(maxswitch.encode(png_bytes(make_image(40, 30, seed=3))))
    for device, code in (("cuda", 1), ("cuda:3", 1), ("tpu", 2)):
        out = tmp_path / "a.png"
        r = subprocess.run(
            [sys.executable, "-m", "maxswitch", "decode", "--device", device, str(msw), str(out)],
            capture_output=True,
            timeout=120,
        )
        err = r.stderr.decode().strip()
        assert r.returncode == code and len(err.splitlines()) == 1 and "device" in err, (device, err)
        assert not out.exists()
    with pytest.raises(codec.CodecError, match="CUDA is not available"):
        codec.decode_array(msw.read_bytes(), device="cuda")
