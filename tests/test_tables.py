"""Payload coding 3 (context tables): round trips, the rules a table must follow, assets, the
fit, goldens across threads and tiles, damaged payloads, the CLI."""

import hashlib
import os

import numpy as np
import pytest
from conftest import EXAMPLE, ROOT, make_image, random_table, run_cli, switches_digest_in_fresh_process
from PIL import Image

import maxswitch
from maxswitch import codec
from maxswitch.bitstream import entropy
from maxswitch.bitstream.context import ContextError
from maxswitch.bitstream.switches import PayloadError
from maxswitch.bitstream.tables import MAX_FEATURES, TableModel
from maxswitch.networks import zoo

EXPECTED = ROOT / "tests" / "expected"
REGEN = bool(os.environ.get("MAXSWITCH_REGEN_GOLDEN"))
CH = (4, 6, 8)


def _codes(H, W, seed=0, channels=CH):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4, (c, H >> (s + 1), W >> (s + 1)), dtype=np.uint8) for s, c in enumerate(channels)]


@pytest.mark.parametrize("H,W", [(8, 8), (48, 64), (520, 40), (72, 1032)])
def test_round_trip_across_tiles(H, W):
    t = random_table(CH, seed=3)
    codes = _codes(H, W, seed=H + W)
    back = entropy.decode(t, entropy.encode(t, codes), H, W)
    assert all((a == b).all() for a, b in zip(codes, back))


@pytest.mark.parametrize("seed", range(12))
def test_compiled_coder_gives_the_references_words(seed):
    """tablecoder.py (numba) against the definition (numpy + constriction): same words, and
    each decodes the other's, on random causal tables of up to 8 features and tiles of odd
    sizes at every stage (a phase lattice then has an odd row or column)."""
    rng = np.random.default_rng(seed)
    channels = tuple(int(c) for c in rng.integers(1, 6, 3))
    t = random_table(channels, seed=seed, max_features=int(rng.integers(0, MAX_FEATURES + 1)))
    assert t.compiled
    h, w = int(rng.integers(1, 24)), int(rng.integers(1, 24))  # stage 3's grid; stages 2, 1: 2x, 4x
    codes = _codes(8 * h, 8 * w, seed=seed, channels=channels)
    shapes = [a.shape for a in codes]
    fast, ref = t.encode_tile(codes), t.encode_tile_reference(codes)
    assert fast.dtype == ref.dtype == np.uint32 and fast.tolist() == ref.tolist()
    for back in (t.decode_tile(ref, shapes), t.decode_tile_reference(fast, shapes)):
        assert all((a == b).all() for a, b in zip(codes, back))


def test_compiled_coder_on_the_shipped_tables(monkeypatch):
    """The default model's tables (845,573 rows, features of every kind) on the example image."""
    monkeypatch.delenv("MAXSWITCH_MODELS", raising=False)
    monkeypatch.setattr(zoo, "_LOADED", {})
    m = zoo.load_model("natural-6-12-24")
    codes = codec.compute_switches(m, np.asarray(Image.open(EXAMPLE).convert("RGB")))
    tile = entropy._tile_codes(codes, entropy.tiles(codes[0].shape[1] * 2, codes[0].shape[2] * 2)[0])
    fast = m.table.encode_tile(tile)
    assert fast.tolist() == m.table.encode_tile_reference(tile).tolist()
    back = m.table.decode_tile(fast, [a.shape for a in tile])
    assert all((a == b).all() for a, b in zip(tile, back))


def test_reference_path_round_trip(monkeypatch):
    """Without numba the reference path codes the tiles (and gives the same payload)."""
    t = random_table(CH, seed=11)
    codes = _codes(48, 72, seed=5)
    fast = entropy.encode(t, codes)
    monkeypatch.setattr(t, "compiled", False)
    assert entropy.encode(t, codes) == fast
    back = entropy.decode(t, fast, 48, 72)
    assert all((a == b).all() for a, b in zip(codes, back))


@pytest.mark.parametrize("compiled", [True, False])
def test_malformed_streams_are_refused_by_both_paths(monkeypatch, compiled):
    t = random_table(CH, seed=12)
    codes = _codes(16, 24, seed=1)
    monkeypatch.setattr(t, "compiled", compiled)
    words = t.encode_tile(codes)
    shapes = [a.shape for a in codes]
    with pytest.raises((ValueError, RuntimeError)):  # a stream never ends with a zero word
        t.decode_tile(np.append(words, np.uint32(0)), shapes)
    with pytest.raises((ValueError, RuntimeError)):  # words left after the last switch
        t.decode_tile(np.concatenate([np.uint32([7, 9]), words]), shapes)


def test_probabilities_are_the_tables_ones():
    """A table without features codes each symbol in exactly -log2(q / 2^16) bits (to the
    coder's few bits of overhead): what the file costs is what the table says."""
    t = random_table(CH, seed=4, max_features=0)
    codes = _codes(64, 64, seed=2)
    ideal = 0.0
    for s in range(3):
        for c in range(CH[s]):
            for k, (py, px) in enumerate(((0, 0), (1, 1), (0, 1), (1, 0))):
                q = t.q[t.offsets[t.table_index(s, c, k)]].astype(float) / 65536
                ideal -= np.log2(q[codes[s][c, py::2, px::2]]).sum()
    got = 8 * (len(entropy.encode(t, codes)) - 4)
    assert ideal <= got <= ideal + 64


def _table_with(features_row, t=None):
    t = t or random_table(CH, seed=5, max_features=0)
    f = t.features.copy()
    f[features_row[0]] = features_row[1] + [-1] * (MAX_FEATURES - len(features_row[1]))
    return f


@pytest.mark.parametrize(
    "row,feats,why",
    [
        (0, [0], "not causal"),  # stage 1, channel 0, phase 0: no neighbour is decoded yet
        (0, [8], "not causal"),  # channel 0 has no earlier channel
        (4 * 4 - 1, [8 + 4 + 6], "not causal"),  # stage 1's parent stage has 6 channels: 8+4+6 is past them
        (4 * (4 + 6 + 8) - 1, [8 + 8], "not causal"),  # stage 3 has no parent stage
    ],
)
def test_tables_with_non_causal_features_are_refused(row, feats, why):
    t = random_table(CH, seed=5, max_features=0)
    f = _table_with((row, feats), t)
    from maxswitch.bitstream.tables import card

    size = int(np.prod([card(x) for x in feats]))
    offsets = t.offsets.copy()
    offsets[row + 1 :] += size - 1
    q = np.concatenate([t.q[: t.offsets[row]], np.tile(t.q[t.offsets[row]], (size, 1)), t.q[t.offsets[row] + 1 :]])
    with pytest.raises(ContextError, match=why):
        TableModel(CH, f, offsets, q)


def test_malformed_tables_are_refused():
    t = random_table(CH, seed=6)
    bad_q = t.q.copy()
    bad_q[0, 0] += 1  # row no longer sums to 2^16
    with pytest.raises(ContextError, match="summing to 2"):
        TableModel(CH, t.features, t.offsets, bad_q)
    with pytest.raises(ContextError, match="do not match"):
        TableModel((4, 6, 9), t.features, t.offsets, t.q)
    off = t.offsets.copy()
    off[1] += 1
    with pytest.raises(ContextError):
        TableModel(CH, t.features, off, t.q)


def test_asset_round_trip_and_digest(tmp_path):
    import torch

    from maxswitch.networks.nets import Encoder, ModelConfig, build_decoder

    cfg = ModelConfig(CH, "direct", (8, 8, 8), encoder_seed=1)
    t = random_table(CH, seed=7)
    torch.manual_seed(0)
    zoo.save_model(
        tmp_path / "m.safetensors", "m-4-6-8", 1, cfg, Encoder.random(CH, seed=1), build_decoder(cfg), table=t
    )
    m = zoo.load_model(str(tmp_path / "m.safetensors"))
    assert m.table.digest() == t.digest() == m.table_digest and m.context is None
    assert (m.table.q == t.q).all() and m.table.q.dtype == np.uint16
    assert random_table(CH, seed=8).digest() != t.digest()


def test_fit_is_deterministic_and_learns():
    from maxswitch.training.tables_fit import TableRecipe, fit_tables

    m = zoo.load_model("natural-6-12-24")
    imgs = [np.asarray(make_image(96, 80, seed=i)) for i in range(4)]
    a = fit_tables(m, imgs, TableRecipe(max_contexts=64))
    b = fit_tables(m, imgs, TableRecipe(max_contexts=64), workers=2)
    assert a.digest() == b.digest()
    codes = [np.asarray(c) for c in codec.compute_switches(m, imgs[0])]
    n = sum(c.size for c in codes)
    assert 8 * len(entropy.encode(a, codes)) < 2 * n  # below 2 bits per switch on what it was fitted on


def test_damaged_payloads_raise_payload_error():
    t = random_table(CH, seed=9)
    p = bytearray(entropy.encode(t, _codes(48, 64)))
    for i in (5, len(p) // 2, len(p) - 2):
        bad = bytearray(p)
        bad[i] ^= 0x41
        try:
            back = entropy.decode(t, bytes(bad), 48, 64)
        except PayloadError:
            continue
        assert not all((a == b).all() for a, b in zip(_codes(48, 64), back))  # decoded, but not the original


# ----------------------------------------------------------------------------- goldens


def _encode(model, threads, **kw):
    import torch

    before = torch.get_num_threads()
    try:
        return maxswitch.encode(EXAMPLE, model, threads=threads, coding="table", **kw)
    finally:
        torch.set_num_threads(before)


def _golden(name, data):
    p = EXPECTED / name
    if REGEN or not p.exists():
        p.write_bytes(data)
    return p.read_bytes()


def test_tiny_model_table_golden_across_threads_tiles_and_processes(tiny_model, tiny_zoo, encoder_path):
    one = _encode(tiny_zoo, 1)
    two = _encode(tiny_zoo, 2, tile=64)
    assert one == two
    assert one == _golden("example.tiny-4-6-8.v2-table.msw", one), "table coding changed: the golden no longer matches"
    inf = maxswitch.info(one)
    assert (inf["format_version"], inf["coding"]) == (2, "context-table")
    # another process, 2 threads, decodes it to the switches of the v1 golden
    got = switches_digest_in_fresh_process(EXPECTED / "example.tiny-4-6-8.v2-table.msw", tiny_model[0].parent)
    v1 = codec.parse((EXPECTED / "example.tiny-4-6-8.msw").read_bytes())
    assert got == hashlib.sha256(b"".join(c.tobytes() for c in v1.codes)).hexdigest()


def test_default_model_table_golden(monkeypatch, encoder_path):
    monkeypatch.delenv("MAXSWITCH_MODELS", raising=False)
    monkeypatch.setattr(zoo, "_LOADED", {})
    m = zoo.load_model("natural-6-12-24")
    one, two = _encode(m, 1), _encode(m, 2)
    assert one == two == _golden("example.natural-6-12-24.v2-table.msw", one)
    zstd = codec.parse(maxswitch.encode(EXAMPLE, m, coding="zstd"))
    assert all((a == b).all() for a, b in zip(codec.parse(one).codes, zstd.codes))


# ----------------------------------------------------------------------------- CLI


def test_cli_table_coding_and_a_model_without_tables(tmp_path, tiny_model):
    env = {"MAXSWITCH_MODELS": str(tiny_model[0].parent)}
    out = tmp_path / "a.msw"
    r = run_cli("encode", "-m", "tiny-4-6-8", "--coding", "table", EXAMPLE, out, env=env)
    assert r.returncode == 0 and b"context-table" in r.stderr, r.stderr
    r = run_cli("info", out, env=env)
    assert b"context-table" in r.stdout
    r = run_cli("decode", out, tmp_path / "a.png", env=env)
    assert r.returncode == 0, r.stderr
    # a model of the same encoder without the tables cannot decode it: one line, exit 1
    r = run_cli("encode", "-m", "natural-16-16-16", "--coding", "table", EXAMPLE, tmp_path / "b.msw")
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1 and b"no context tables" in r.stderr
    assert not (tmp_path / "b.msw").exists()
