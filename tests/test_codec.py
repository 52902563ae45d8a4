"""The codec end to end with a tiny model: round trips over sizes and modes, determinism, identity."""

import numpy as np
import pytest
import torch
from conftest import make_image, png_bytes

import maxswitch
from maxswitch import codec
from maxswitch.bitstream.format import FormatError
from maxswitch.networks import zoo


@pytest.mark.parametrize("w,h", [(1, 1), (1, 10), (7, 9), (8, 8), (16, 8), (33, 17), (64, 48), (100, 3)])
def test_round_trip_sizes(tiny_zoo, w, h):
    data = maxswitch.encode(png_bytes(make_image(w, h)), tiny_zoo)
    inf = maxswitch.info(data)
    assert (inf["width"], inf["height"]) == (w, h)
    im = maxswitch.decode(data)
    assert im.size == (w, h) and im.mode == "RGB"


@pytest.mark.parametrize("mode,out_mode", [("RGB", "RGB"), ("RGBA", "RGB"), ("L", "L"), ("LA", "L"), ("P", "RGB")])
def test_round_trip_modes(tiny_zoo, mode, out_mode):
    data = maxswitch.encode(png_bytes(make_image(24, 16, mode=mode)), tiny_zoo)
    assert maxswitch.decode(data).mode == out_mode


def test_api_accepts_paths_arrays_and_pil(tiny_zoo, tmp_path):
    im = make_image(24, 16)
    p = tmp_path / "a.png"
    im.save(p)
    a = maxswitch.encode(p, tiny_zoo)
    assert maxswitch.encode(str(p), tiny_zoo) == a
    assert maxswitch.encode(im, tiny_zoo) == a
    assert maxswitch.encode(np.asarray(im), tiny_zoo) == a
    with pytest.raises(codec.CodecError):
        maxswitch.encode(np.zeros((4, 4), np.float32), tiny_zoo)


def test_encoding_is_deterministic_across_threads(tiny_zoo):
    img = png_bytes(make_image(64, 40, seed=4))
    before = torch.get_num_threads()
    try:
        a = maxswitch.encode(img, tiny_zoo, threads=1)
        b = maxswitch.encode(img, tiny_zoo, threads=2)
    finally:
        torch.set_num_threads(before)
    assert a == b


def test_switches_survive_the_file_exactly(tiny_zoo):
    m = zoo.load_model(tiny_zoo)
    rgb = np.asarray(make_image(40, 24))
    codes = codec.compute_switches(m, rgb)
    p = codec.parse(maxswitch.encode(rgb, m))
    for a, b in zip(codes, p.codes):
        np.testing.assert_array_equal(a, b)


def test_file_names_its_model_and_encoder(tiny_zoo):
    data = maxswitch.encode(png_bytes(make_image(8, 8)), tiny_zoo)
    inf = maxswitch.info(data)
    m = zoo.load_model(tiny_zoo)
    assert inf["model"] == "tiny-4-6-8" and m.encoder_digest.startswith(inf["encoder_digest"])
    assert inf["switches"] == 4 * 16 + 6 * 4 + 8 * 1
    assert inf["bpp"] == pytest.approx(8 * len(data) / 64, abs=1e-3)


def test_unknown_model_is_refused_with_its_name(tiny_zoo, tmp_path):
    from maxswitch.networks.nets import Encoder, ModelConfig, build_decoder

    cfg = ModelConfig((4, 6, 8), "direct", (8, 8, 8), encoder_seed=99)
    other = tmp_path / "other.safetensors"
    zoo.save_model(other, "other-model", 1, cfg, Encoder.random(cfg.channels, 99), build_decoder(cfg))
    data = maxswitch.encode(png_bytes(make_image(16, 16)), str(other))
    with pytest.raises(zoo.ModelError, match="other-model"):
        maxswitch.decode(data)
    # decoding with the right asset works; with a different encoder it is refused
    assert maxswitch.decode(data, str(other)).size == (16, 16)
    tiny = maxswitch.encode(png_bytes(make_image(16, 16)), tiny_zoo)
    with pytest.raises(zoo.ModelError, match="different encoder"):
        maxswitch.decode(tiny, str(other))


def test_corrupt_payload_refused(tiny_zoo):
    data = bytearray(maxswitch.encode(png_bytes(make_image(16, 16)), tiny_zoo))
    data[-6] ^= 0x10  # inside the payload
    with pytest.raises(FormatError, match="checksum"):
        maxswitch.decode(bytes(data))


def test_api_is_symmetric_paths_bytes_and_quality(tiny_zoo, tmp_path):
    """encode takes a path, decode and info take a path (str or Path) or bytes; quality= picks a
    ladder rung (here, the ladder points at the tiny zoo's only model)."""
    from pathlib import Path

    import maxswitch
    from maxswitch import config

    src = tmp_path / "a.png"
    make_image(40, 24).save(src)
    data = maxswitch.encode(str(src), tiny_zoo)
    p = tmp_path / "a.msw"
    p.write_bytes(data)
    a = maxswitch.decode(data)
    for x in (str(p), Path(p)):
        assert maxswitch.decode(x).tobytes() == a.tobytes()
        assert maxswitch.info(x) == maxswitch.info(data)
    with pytest.raises(maxswitch.codec.CodecError):
        maxswitch.decode(12)
    import unittest.mock

    with unittest.mock.patch.object(config, "LADDER", (tiny_zoo,)):
        assert maxswitch.encode(str(src), quality=1) == data
