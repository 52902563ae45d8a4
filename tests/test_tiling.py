"""Tiles and fast paths: tiled = untiled (switches byte for byte, decoded pixels without seams),
fast encoder = reference encoder, vectorised packing = bitarray packing, bounded memory."""

import hashlib
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from bitarray import bitarray
from conftest import EXAMPLE, make_image, run_cli

import maxswitch
from maxswitch import codec
from maxswitch.bitstream import switches as sw
from maxswitch.networks import tiling
from maxswitch.networks.nets import Encoder, ModelConfig, build_decoder
from maxswitch.networks.zoo import DEFAULT_MODEL, load_model


def _rand_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _adversarial_images():
    """Images that stress ties, ReLU at zero and the extremes of the exact range."""
    yield np.zeros((32, 48, 3), np.uint8)
    yield np.full((32, 48, 3), 255, np.uint8)
    yield np.full((32, 48, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:40, 0:56]
    yield np.repeat((((yy + xx) % 2) * 255).astype(np.uint8)[:, :, None], 3, 2)  # checkerboard
    yield np.repeat(((yy // 3 % 2) * 255).astype(np.uint8)[:, :, None], 3, 2)  # stripes
    yield _rand_rgb(40, 56, seed=3)
    yield np.array(make_image(64, 40, seed=2))


def _hash(codes) -> str:
    return hashlib.sha256(b"".join(np.asarray(c).tobytes() for c in codes)).hexdigest()


# ----------------------------------------------------------------------------- fast encoder


@pytest.mark.parametrize("channels", [(4, 6, 8), (16, 16, 16), (6, 12, 24), (32, 32, 32)])
def test_fast_encoder_equals_reference_path(channels):
    enc = Encoder.random(channels, seed=11)
    assert enc._fast_params() is not None
    for rgb in _adversarial_images():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # channels-last view, as the codec passes it
        fast, ref = enc(x), enc.forward_reference(x)
        for a, b in zip(fast, ref):
            assert a.dtype == torch.uint8 and a.is_contiguous()
            assert torch.equal(a, b)
        # an NCHW-contiguous batch takes the same path
        batch = torch.stack([x[0].contiguous(), x[0].flip(-1).contiguous()])
        for a, b in zip(enc(batch), enc.forward_reference(batch)):
            assert torch.equal(a, b)


def test_fast_encoder_is_refused_where_it_would_not_be_exact():
    enc = Encoder.random((64, 64, 64), seed=0)
    assert enc._fast_params() is not None  # typical weights (mean |w| ~ 2) leave room
    enc.w1.fill_(7)
    enc.b1.fill_(2**20)  # 4 * (9 * 64 * 1023 * 7 + 2^20) > 2^24 > 9 * 64 * 1023 * 7 + 2^20
    assert enc.dtype == torch.float32 and enc._fast_params() is None
    x = torch.from_numpy(_rand_rgb(16, 24)).permute(2, 0, 1)[None]
    for a, b in zip(enc(x), enc.forward_reference(x)):
        assert torch.equal(a, b)


def test_golden_switches_of_a_seeded_encoder():
    """Recorded with the plain conv/ReLU/max-pool encoder (commit 7987f7c) before the fast path."""
    img = np.array(make_image(96, 64, seed=4))
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    enc = Encoder.random((16, 16, 16), seed=0)
    assert enc.digest() == "d0139e29960d6b22f2092b4bb226370b53114aa898b161327757a06972aee8ee"
    assert _hash(enc(x)) == "bef94b055251906c2a9907a04ba8f6369db0a81af87d845a2b4101cf28b8e1a0"
    assert _hash(Encoder.random((6, 12, 24), seed=7)(x)) == (
        "9fd40833f5b2673d6cb718f63682f2b27e486f4ee9dafb09f7f672068f52221e"
    )


def test_shipped_model_fast_encoder_equals_reference_on_the_example():
    from maxswitch.image import load

    m = load_model(DEFAULT_MODEL)
    rgb = load(EXAMPLE.read_bytes()).rgb
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]
    for a, b in zip(m.encoder(x), m.encoder.forward_reference(x)):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- packing


def _bitarray_pack(codes) -> bytes:
    flat = np.concatenate([np.asarray(c, np.uint8).reshape(-1) for c in codes])
    bits = np.stack([flat >> 1, flat & 1], 1).astype(np.uint8)
    ba = bitarray(endian="big")
    ba.pack(bits.tobytes())
    return ba.tobytes()


@pytest.mark.parametrize("sizes", [[0], [1], [3], [4], [5, 7], [16, 3, 1], [4096, 1024, 257], [6, 10, 3, 1]])
def test_vectorised_pack_equals_bitarray_and_unpack_inverts_it(sizes):
    rng = np.random.default_rng(len(sizes) * 100 + sum(sizes))
    codes = [rng.integers(0, 4, n, dtype=np.uint8) for n in sizes]
    packed = sw.pack(codes)
    assert packed == _bitarray_pack(codes)
    shapes = [(1, 1, n) for n in sizes]
    if all(n > 0 for n in sizes):
        for a, b in zip(codes, sw.unpack(packed, shapes)):
            np.testing.assert_array_equal(a, b.reshape(-1))


def test_pack_takes_strided_and_non_uint8_arrays():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (4, 6, 10), dtype=np.uint8)
    assert sw.pack([a[:, :, ::2]]) == _bitarray_pack([a[:, :, ::2]])
    assert sw.pack([a.astype(np.int64)]) == _bitarray_pack([a])


# ----------------------------------------------------------------------------- tiled encoding


@pytest.mark.parametrize("channels", [(4, 6, 8), (16, 16, 16)])
@pytest.mark.parametrize("size", [(61, 83), (40, 136)])
def test_tiled_switches_equal_untiled_for_every_tile_size(channels, size):
    enc = Encoder.random(channels, seed=5)
    rgb = np.asarray(make_image(size[1], size[0], seed=sum(size)))
    whole = tiling.encode_tiled(enc, rgb, 0)
    padded = np.pad(rgb, ((0, (-size[0]) % 8), (0, (-size[1]) % 8), (0, 0)), mode="edge")
    ref = enc.forward_reference(torch.from_numpy(padded).permute(2, 0, 1)[None])
    for a, b in zip(whole, ref):
        assert torch.equal(a, b)
    for t in (8, 24, 40):
        for a, b in zip(tiling.encode_tiled(enc, rgb, t), whole):
            assert torch.equal(a, b), f"tile {t}"


def test_tiled_encode_gives_the_same_file_bytes():
    m = load_model(DEFAULT_MODEL)
    rgb = _rand_rgb(100, 140, seed=9)
    ref = maxswitch.encode(rgb, m, tile=0)
    for t in (16, 48, 64):
        assert maxswitch.encode(rgb, m, tile=t) == ref


@pytest.fixture
def threads():
    """Set torch's thread count for a test; restore it after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_tiles_in_parallel_give_the_same_switches_and_pixels(threads):
    torch.manual_seed(4)
    cfg = ModelConfig((4, 6, 8), "direct", (8, 8, 8))
    enc, dec = Encoder.random(cfg.channels, seed=6), build_decoder(cfg).eval()
    rgb = _rand_rgb(70, 100, seed=2)
    threads(1)
    codes1 = tiling.encode_tiled(enc, rgb, 24)
    pix1 = tiling.decode_tiled(dec, codes1, 24)
    threads(3)  # three tile workers, torch's own threading off meanwhile
    codes3 = tiling.encode_tiled(enc, rgb, 24)
    pix3 = tiling.decode_tiled(dec, codes3, 24)
    assert torch.get_num_threads() == 3
    for a, b in zip(codes1, codes3):
        assert torch.equal(a, b)
    assert np.abs(pix1.astype(int) - pix3).max() <= 1


def test_a_failing_tile_stops_the_run_and_restores_threads(threads):
    threads(2)
    done = []

    def fn(job, threads_for_tile):
        assert threads_for_tile == 1  # tiles on threads of their own, one thread each
        if job == 3:
            raise RuntimeError("tile 3")
        time.sleep(0.02)
        done.append(job)

    with pytest.raises(RuntimeError, match="tile 3"):
        tiling._run_tiles(list(range(50)), fn)
    assert torch.get_num_threads() == 2 and len(done) < 25  # the queued tiles were cancelled


def test_tile_argument_is_checked():
    enc = Encoder.random((4, 4, 4), seed=0)
    with pytest.raises(ValueError, match="multiple of 8"):
        tiling.encode_tiled(enc, _rand_rgb(32, 32), 12)


def test_large_images_are_tiled_by_default(monkeypatch):
    enc = Encoder.random((4, 6, 8), seed=1)
    rgb = _rand_rgb(72, 96, seed=4)
    calls = []
    real = enc.forward
    monkeypatch.setattr(enc, "forward", lambda x: calls.append(tuple(x.shape)) or real(x))
    monkeypatch.setattr(tiling, "AUTO_TILE_PIXELS", 32 * 32)
    monkeypatch.setattr(tiling, "ENCODER_TILE", 32)
    tiled = tiling.encode_tiled(enc, rgb)
    assert len(calls) == 3 * 3 and max(s[2] for s in calls) == 32 + 2 * tiling.ENCODER_MARGIN
    for a, b in zip(tiled, tiling.encode_tiled(enc, rgb, 0)):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- tiled decoding


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_fast_decoder_equals_the_module():
    torch.manual_seed(0)
    cfg = ModelConfig((4, 6, 8), "direct", (16, 12, 8))
    dec = build_decoder(cfg).eval()
    with torch.no_grad():  # a decoder whose output spans the whole range, clamping included
        dec.l1[4].weight.mul_(20)
    enc = Encoder.random(cfg.channels, seed=2)
    codes = enc(torch.from_numpy(_rand_rgb(48, 64)).permute(2, 0, 1)[None])
    with torch.inference_mode():
        ref = dec(codes)[0].clamp(0, 1).mul(255).permute(1, 2, 0).numpy()
    got = tiling.decode_tiled(dec, codes, 0)
    assert got.dtype == np.uint8 and got.shape == (48, 64, 3)
    assert 0 < (ref < 0.5).mean() and 0 < (ref > 254.5).mean()  # both clamps are exercised
    assert np.abs(got - ref).max() <= 0.5 + 1e-3  # rounding of the same value, up to float noise


@pytest.mark.parametrize("kind", ["direct", "mirror"])
def test_tiled_decoding_has_no_seams(kind):
    torch.manual_seed(1)
    cfg = ModelConfig((4, 6, 8), kind, (16, 12, 8))
    dec = build_decoder(cfg).eval()
    enc = Encoder.random(cfg.channels, seed=3)
    rgb = np.asarray(make_image(150, 100, seed=6))
    codes = tiling.encode_tiled(enc, rgb, 0)
    whole = tiling.decode_tiled(dec, codes, 0)
    for t in (16, 64):
        tiled = tiling.decode_tiled(dec, codes, t)
        assert np.abs(tiled.astype(int) - whole).max() <= 1, f"tile {t}"
        assert (tiled != whole).mean() < 1e-3 and _psnr(tiled, whole) > 60


def test_shipped_model_tiled_decode_matches_untiled():
    m = load_model(DEFAULT_MODEL)
    rgb = np.asarray(make_image(203, 141, seed=8))  # not multiples of 8: the output is cropped
    data = maxswitch.encode(rgb, m)
    whole, _ = codec.decode_array(data, m, tile=0)
    tiled, _ = codec.decode_array(data, m, tile=64)
    assert whole.shape == tiled.shape == rgb.shape
    assert np.abs(tiled.astype(int) - whole).max() <= 1 and _psnr(tiled, whole) > 60


def test_decode_size_crops_and_is_checked():
    torch.manual_seed(2)
    cfg = ModelConfig((4, 6, 8), "direct", (8, 8, 8))
    dec = build_decoder(cfg).eval()
    codes = Encoder.random(cfg.channels, seed=1)(torch.from_numpy(_rand_rgb(40, 48)).permute(2, 0, 1)[None])
    full = tiling.decode_tiled(dec, codes, 0)
    np.testing.assert_array_equal(tiling.decode_tiled(dec, codes, 16, size=(37, 45)), full[:37, :45])
    with pytest.raises(ValueError, match="does not fit"):
        tiling.decode_tiled(dec, codes, 0, size=(41, 48))


# ----------------------------------------------------------------------------- CLI and memory


def test_cli_tile_option_gives_the_same_file(tmp_path, tiny_zoo):
    src = tmp_path / "in.png"
    make_image(90, 70, seed=1).save(src)
    for t in ("0", "16"):
        r = run_cli(
            "encode",
            "-m",
            tiny_zoo,
            "--tile",
            t,
            "--quiet",
            src,
            tmp_path / f"t{t}.msw",
            env={"MAXSWITCH_MODELS": os.environ["MAXSWITCH_MODELS"]},
        )
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "t0.msw").read_bytes() == (tmp_path / "t16.msw").read_bytes()


@pytest.mark.slow
def test_50_megapixel_round_trip_stays_under_2_gb(tmp_path):
    """8660x5773 through the CLI, encode and decode each in a fresh process; peak RSS < 2 GB."""
    from PIL import Image

    h, w = 5773, 8660
    small = np.asarray(make_image(w // 8, h // 8, seed=3))
    Image.fromarray(small).resize((w, h), Image.BILINEAR).save(tmp_path / "big.png", compress_level=1)
    script = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    peaks = []
    for args in (["encode", "-f", "big.png", "big.msw"], ["decode", "-f", "big.msw", "back.png"]):
        r = subprocess.run(
            [sys.executable, "-c", script, sys.executable, "-m", "maxswitch", *args, "--quiet"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert r.returncode == 0, r.stderr
        peaks.append(int(r.stdout.split()[-1]) * 1024)  # ru_maxrss is in KiB on Linux
    assert max(peaks) < 2 * 10**9, peaks
    assert Image.open(tmp_path / "back.png").size == (w, h)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_decoder_fast_path_follows_in_place_weight_changes():
    """The cached inference form of a decoder must not outlive an in-place weight change
    (optimizer.step, load_state_dict): it once disagreed by up to 76 of 255."""
    import torch

    from maxswitch.networks.nets import ModelConfig, build_decoder
    from maxswitch.networks.tiling import decode_tiled

    torch.manual_seed(0)
    dec = build_decoder(ModelConfig((2, 2, 2), "direct", (8, 8, 8))).eval()
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 4, (2, 32 >> s, 32 >> s)).astype(np.uint8) for s in range(3)]
    before = decode_tiled(dec, codes, None)
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # in place: same storage, new values
    after = decode_tiled(dec, codes, None)
    with torch.inference_mode():
        want = dec([torch.from_numpy(c[None]) for c in codes])[0].clamp(0, 1).mul(255).permute(1, 2, 0).numpy()
    assert not np.array_equal(before, after)
    assert np.abs(after - want).max() <= 0.5 + 1e-3


def test_decode_bands_join_to_the_whole_decode_and_stream_png_in_bounded_memory(tmp_path):
    import io
    import tracemalloc

    from PIL import Image

    from maxswitch import image

    m = load_model(DEFAULT_MODEL)
    rgb = np.asarray(make_image(800, 2400, seed=3))  # 7 x 19 tiles of 128
    data = maxswitch.encode(rgb, m, coding="zstd")
    whole, h = codec.decode_array(data, m, tile=128)
    tracemalloc.start()
    try:
        h, bands = codec.decode_bands(data, m, tile=128)
        before = tracemalloc.get_traced_memory()[0]  # the switches are decoded by now
        tracemalloc.reset_peak()
        with open(tmp_path / "o.png", "wb") as f:
            for chunk in image.png_chunks(bands, h.kind, rows=32, size=(h.height, h.width)):
                f.write(chunk)
        extra = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert extra < whole.nbytes / 3, f"{extra} bytes beyond the switches for a {whole.nbytes}-byte image"
    got = np.asarray(Image.open(io.BytesIO((tmp_path / "o.png").read_bytes())).convert("RGB"))
    np.testing.assert_array_equal(got, whole)


def test_cli_streams_large_png_decodes_with_the_same_pixels(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import Image

    from maxswitch import image
    from maxswitch.cli import cli

    rgb = np.asarray(make_image(300, 200, seed=4))
    (tmp_path / "a.msw").write_bytes(maxswitch.encode(rgb))
    whole, _ = codec.decode_array((tmp_path / "a.msw").read_bytes(), tile=64)
    monkeypatch.setattr(image, "STREAM_PNG_PIXELS", 1000)
    calls = []
    real = image.png_chunks
    monkeypatch.setattr(image, "png_chunks", lambda *a, **k: calls.append(k) or real(*a, **k))
    r = CliRunner().invoke(cli, ["decode", str(tmp_path / "a.msw"), str(tmp_path / "a.png"), "--tile", "64", "--quiet"])
    assert r.exit_code == 0, r.output
    assert calls and calls[0].get("size") == (200, 300)  # the band-by-band path ran
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png").convert("RGB")), whole)


@pytest.mark.parametrize("ext,grey", [(".tif", False), (".webp", False), (".bmp", True)])
def test_cli_non_png_outputs_pasted_band_by_band_have_the_decoded_pixels(tmp_path, ext, grey):
    from click.testing import CliRunner
    from PIL import Image

    from maxswitch.cli import cli

    rgb = np.asarray(make_image(300, 200, seed=5))
    src = Image.fromarray(rgb).convert("L") if grey else Image.fromarray(rgb)
    (tmp_path / "a.msw").write_bytes(maxswitch.encode(src))
    want = maxswitch.decode((tmp_path / "a.msw").read_bytes(), tile=64)  # the whole-array path
    r = CliRunner().invoke(
        cli, ["decode", str(tmp_path / "a.msw"), str(tmp_path / f"a{ext}"), "--tile", "64", "--quiet"]
    )
    assert r.exit_code == 0, r.output
    got = Image.open(tmp_path / f"a{ext}")
    assert got.mode == want.mode == ("L" if grey else "RGB")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("coding", ["zstd", "context", "table"])
def test_switches_decoded_band_by_band_give_the_same_pixels(monkeypatch, coding):
    from maxswitch.bitstream import entropy

    monkeypatch.setattr(entropy, "TILE", 128)  # several rows of context tiles (encode and decode alike)
    m = load_model(DEFAULT_MODEL)
    if coding == "context" and m.context is None:  # the default (what-2-4-8) has context tables only
        m = load_model("natural-6-12-24")
    rgb = np.asarray(make_image(200, 330, seed=12))
    data = maxswitch.encode(rgb, m, coding=coding)
    whole, _ = codec.decode_array(data, m, tile=64)
    monkeypatch.setattr(codec, "LAZY_SWITCH_PIXELS", 0)  # v2 too: rows of tiles decoded as bands need them
    h, bands = codec.decode_bands(data, m, tile=64)
    np.testing.assert_array_equal(codec.join_bands(bands, h.height, h.width), whole)


def test_damage_found_part_way_through_a_banded_decode_leaves_no_output(monkeypatch, tmp_path, capsys):
    import zlib

    from maxswitch import image
    from maxswitch.bitstream import entropy
    from maxswitch.cli import main

    monkeypatch.setattr(entropy, "TILE", 128)
    data = bytearray(maxswitch.encode(np.asarray(make_image(200, 330, seed=12)), "natural-6-12-24", coding="context"))
    data[len(data) - 4 - 3] ^= 0x5A  # in the last tile, then the CRC made right again
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    (tmp_path / "bad.msw").write_bytes(bytes(data))
    monkeypatch.setattr(codec, "LAZY_SWITCH_PIXELS", 0)
    monkeypatch.setattr(image, "STREAM_PNG_PIXELS", 0)
    rc = main(["decode", str(tmp_path / "bad.msw"), str(tmp_path / "o.png"), "--tile", "64"])
    err = capsys.readouterr().err
    assert rc == 1 and "corrupt" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.msw"]  # no output, no temporary


def test_write_atomic_takes_a_writer_that_seeks(tmp_path):
    from maxswitch.atomic import write_atomic

    def writer(f):
        f.write(b"xxxx-body")
        f.seek(0)
        f.write(b"head")

    write_atomic(str(tmp_path / "o.bin"), writer)
    assert (tmp_path / "o.bin").read_bytes() == b"head-body"
    write_atomic(os.devnull, writer, overwrite=True)  # a device: written through, from a buffer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.bin"]
