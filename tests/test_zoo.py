"""The shipped models: manifest consistency, checked loading, and a quality band on our example."""

import numpy as np
import pytest
from conftest import EXAMPLE

import maxswitch
from maxswitch.config import WHAT_KINDS
from maxswitch.evaluation import metrics
from maxswitch.image import load
from maxswitch.networks import zoo


def shipped():
    return zoo.manifest()["models"]


def test_manifest_lists_the_default_model_and_every_file_matches():
    names = [m["name"] for m in shipped()]
    assert zoo.DEFAULT_MODEL in names
    for m in shipped():
        data = (zoo.models_dir() / m["file"]).read_bytes()
        assert zoo.sha256_bytes(data) == m["sha256"], m["name"]
        meta = zoo.read_metadata(data)
        assert meta["name"] == m.get("variant_of", m["name"]) and meta["encoder_digest"] == m["encoder_digest"]
        assert list(meta["config"]["channels"]) == m["channels"]
        if m.get("flat_model"):  # the what+where model its flat pictures go to
            flat = zoo.shipped(m["flat_model"])
            assert {m["decoder"], flat["decoder"]} <= set(WHAT_KINDS) and not flat.get("flat_model")
        if m.get("variant_of"):  # another model's file with its own what part
            src = zoo.shipped(m["variant_of"])
            assert src["file"] == m["file"] and src["sha256"] == m["sha256"] and src["version"] == m["version"]


def test_a_variant_is_its_sources_weights_with_its_own_what_part(tmp_path):
    variants = [m for m in shipped() if m.get("variant_of")]
    assert variants
    for m in variants:
        v, src = zoo.load_model(m["name"]), zoo.load_model(m["variant_of"])
        assert v.name == m["name"] and tuple(v.config.what) == tuple(m["what"]) != tuple(src.config.what)
        assert v.config.channels == src.config.channels and v.sha256 == src.sha256
        assert all(np.array_equal(a, src.decoder_weights[k]) for k, a in v.decoder_weights.items())
        data = maxswitch.encode(EXAMPLE, m["name"])
        h = maxswitch.codec.parse(data).header
        assert h.model == m["name"]
        from maxswitch.bitstream import format as fmt
        from maxswitch.bitstream import parts

        assert parts.split(fmt.read(data)[1]).spec.factor == m["what"][0]
    with pytest.raises(zoo.ModelError, match="cannot read a what part"):
        zoo._variant(zoo.load_model("natural-6-12-24"), {"name": "x", "what": [4, 4, 8]})
    with pytest.raises(zoo.ModelError, match="bad what part"):
        zoo._variant(zoo.load_model("what-2-4-8"), {"name": "x", "what": [3, 4, 8]})


@pytest.mark.parametrize("name", [m["name"] for m in zoo.manifest()["models"]])
def test_every_shipped_model_loads_and_round_trips(name):
    model = zoo.load_model(name)
    assert model.decoder is not None and model.encoder_digest == zoo.shipped(name)["encoder_digest"]
    rgb = np.asarray(load(EXAMPLE.read_bytes()).rgb[:64, :64])
    x_hat, h = maxswitch.decode_array(maxswitch.encode(rgb, model), model)
    assert x_hat.shape == rgb.shape


def test_default_model_reconstructs_the_example(tmp_path):
    rgb = load(EXAMPLE.read_bytes()).rgb
    data = maxswitch.encode(rgb)
    x_hat, _ = maxswitch.decode_array(data)
    p = metrics.psnr(rgb, x_hat)
    assert p > 20.0, p  # an untrained decoder gives about 11 dB


def test_model_for_quality_is_the_ladder():
    from maxswitch.config import LADDER

    assert [zoo.model_for_quality(q) for q in range(1, len(LADDER) + 1)] == list(LADDER)
    with pytest.raises(zoo.ModelError):
        zoo.model_for_quality(len(LADDER) + 1)


def test_asset_without_description_is_refused(tmp_path):
    import torch
    from safetensors.torch import save

    p = tmp_path / "x.safetensors"
    p.write_bytes(save({"a": torch.zeros(1)}))
    with pytest.raises(zoo.ModelError, match="no maxswitch description"):
        zoo.load_model(str(p))
    with pytest.raises(zoo.ModelError, match="unknown model"):
        zoo.load_model("no-such-model")


def test_a_damaged_copy_of_a_shipped_model_is_refused_by_path(tmp_path):
    src = zoo.models_dir() / zoo.shipped(zoo.DEFAULT_MODEL)["file"]
    import json
    import struct

    data = bytearray(src.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    start, _ = next(v["data_offsets"] for k, v in header.items() if k.startswith("decoder."))
    data[8 + n + start + 1] ^= 0x01  # a decoder weight: the asset's own digests cannot see it
    p = tmp_path / "copy.safetensors"
    p.write_bytes(bytes(data))
    with pytest.raises(zoo.ModelError, match="claims to be shipped model"):
        zoo.load_model(str(p))
    ok = tmp_path / "ok.safetensors"
    ok.write_bytes(src.read_bytes())
    assert zoo.load_model(str(ok)).name == zoo.DEFAULT_MODEL


def test_set_figures_replaces_only_the_named_models_figures(tmp_path, monkeypatch):
    """The one writer of measured figures (benchmarks/reproduce.py and ladder_figures.py)."""
    import json

    man = {"schema": 1, "models": [{"name": "a", "figures": {"bpp": 1}}, {"name": "b"}, {"name": "c", "x": 2}]}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setenv("MAXSWITCH_MODELS", str(tmp_path))
    assert zoo.set_figures({"c": {"psnr": 30.0}, "a": {"bpp": 0.5}, "missing": {"bpp": 9}}) == ["a", "c"]
    got = json.loads((tmp_path / "manifest.json").read_text())
    assert got["models"] == [
        {"name": "a", "figures": {"bpp": 0.5}},
        {"name": "b"},
        {"name": "c", "x": 2, "figures": {"psnr": 30.0}},
    ]
    assert got["schema"] == 1
