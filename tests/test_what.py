"""The what part and format version 3: exact integer coding, parts, the switch checksum, round
trips through every switch coding, goldens, damaged files, and the what decoder's tiles."""

import json
import struct

import numpy as np
import pytest
import torch
from conftest import EXAMPLE, ROOT, make_image, random_context, random_table, run_cli

import maxswitch
from maxswitch.bitstream import format as fmt
from maxswitch.bitstream import parts, what
from maxswitch.bitstream.switches import PayloadError
from maxswitch.networks import zoo

EXPECTED = ROOT / "tests" / "expected"
SPEC = what.WhatSpec(8, 4, 8)


# ----------------------------------------------------------------------------- what.py


def test_ycocg_is_lossless_on_every_colour_sample():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4096, 3))
    rgb[:8] = [
        [0, 0, 0],
        [255, 255, 255],
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 0, 255],
        [0, 255, 255],
        [1, 2, 3],
    ]
    assert np.array_equal(what.from_ycocg(what.to_ycocg(rgb)), rgb)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (5, 6), (40, 33)])
def test_prediction_residuals_invert_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    q = rng.integers(-70, 70, (3, *shape))
    r = what.residuals(q)
    assert np.array_equal(what.unresidual(r), q)
    flat = np.full((3, *shape), 17)
    assert np.count_nonzero(what.residuals(flat)) == 3  # only each plane's first value is predicted from 0


def test_block_means_round_and_pad_like_the_spec():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (24, 40, 3)).astype(np.uint8)
    m = what.block_means(img, 8)
    want = np.floor(img.reshape(3, 8, 5, 8, 3).astype(np.int64).sum(axis=(1, 3)) / 64 + 0.5)
    assert np.array_equal(m, want)
    assert what.block_means(img, 16).shape == (2, 3, 3)  # 24 x 40 padded by edge replication to 32 x 48


def test_what_part_round_trip_and_error_bound():
    img = np.asarray(make_image(96, 64, seed=2))
    data, pic = what.encode(img, SPEC)
    assert np.array_equal(what.decode(data, SPEC, 64, 96), pic)
    means = what.block_means(img, 8)
    assert np.abs(pic.astype(int) - means).max() <= 8  # steps 4 and 8 in YCoCg: a few levels at most
    flat = np.full((64, 96, 3), (200, 30, 90), np.uint8)
    fdata, fpic = what.encode(flat, SPEC)
    assert len(fdata) < 40 and np.abs(fpic.astype(int) - [200, 30, 90]).max() <= 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "wrong-size", "garbage"])
def test_damaged_what_part_is_refused(damage):
    img = np.asarray(make_image(64, 64, seed=3))
    data, _ = what.encode(img, SPEC)
    h, w = 64, 64
    if damage == "truncate":
        data = data[:-3]
    elif damage == "flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x10
        data = bytes(b)
    elif damage == "wrong-size":
        h = 72
    else:
        data = b"\x00" * 20
    with pytest.raises(what.WhatError):
        what.decode(data, SPEC, h, w)


def test_spec_limits():
    for bad in [(1, 4, 8), (32, 4, 8), (6, 4, 8), (8, 0, 8), (8, 4, 256)]:
        with pytest.raises(ValueError):
            what.WhatSpec(*bad)
    for f in (2, 4, 8, 16):
        assert what.WhatSpec(f).factor == f


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_level3_picture_is_the_rounded_means_in_numpy_and_torch_alike(factor):
    """The picture a what decoder's level 3 reads, from a file's picture of any block size: the
    same integers from bitstream.what (numpy, the runners) and nets.what_maps (torch)."""
    from maxswitch.networks.nets import what_maps

    rng = np.random.default_rng(factor)
    H, W = 48, 64
    pic = rng.integers(0, 256, (1, 3, H // factor, W // factor), dtype=np.uint8)
    got = what.level3_picture(pic, factor)
    k = 8 // factor
    s = pic.astype(np.int64).reshape(1, 3, H // 8, k, W // 8, k).sum(axis=(3, 5))
    assert np.array_equal(got, (s + k * k // 2) // (k * k))
    sw = [torch.zeros((1, 1, H >> s, W >> s), dtype=torch.uint8) for s in (1, 2, 3)]
    w8, wf, f = what_maps([*sw, torch.from_numpy(pic)])
    assert f == factor and np.array_equal(w8.numpy(), got) and wf.shape == pic.shape
    with pytest.raises(what.WhatError):
        what.level3_picture(pic, 16)


# ----------------------------------------------------------------------------- parts.py


def test_parts_join_and_split():
    p = parts.join(SPEC, b"WHAT", 0xDEADBEEF, b"switches")
    s = parts.split(p)
    assert (s.spec, bytes(s.what), s.checksum, bytes(s.switches)) == (SPEC, b"WHAT", 0xDEADBEEF, b"switches")
    for bad in [p[:5], p[:3] + b"\x01" + p[4:], b"\x07" + p[1:], p[:4] + struct.pack("<I", 99) + p[8:]]:
        with pytest.raises(PayloadError):
            parts.split(bad)


def _codes(H, W, channels=(4, 6, 8), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4, (c, H >> (s + 1), W >> (s + 1))).astype(np.uint8) for s, c in enumerate(channels)]


def test_switch_checksum_is_the_same_from_every_source_and_catches_swapped_tiles(monkeypatch):
    from maxswitch.bitstream import switches as sw

    monkeypatch.setattr(parts, "CONTEXT_TILE", 64)
    H, W = 128, 192
    codes = _codes(H, W)
    ref = parts.switch_checksum(codes, H, W)
    packed = sw.PackedRows(sw.pack(codes), [c.shape for c in codes])
    assert parts.switch_checksum(packed, H, W) == ref
    swapped = [c.copy() for c in codes]
    for s, c in enumerate(swapped):  # swap the first two tiles of the first row
        t = 64 >> (s + 1)
        a, b = c[:, :t, :t].copy(), c[:, :t, t : 2 * t].copy()
        c[:, :t, :t], c[:, :t, t : 2 * t] = b, a
    assert parts.switch_checksum(swapped, H, W) != ref


# ----------------------------------------------------------------------------- version-3 files


@pytest.fixture(scope="session")
def what_zoo(tmp_path_factory):
    """A folder with tiny-4-6-8 (switch-only) and tiny-what-4-6-8 (what decoder, the same encoder,
    context model and tables), both untrained."""
    from maxswitch.networks.nets import DirectDecoder, Encoder, ModelConfig, WhatDecoder
    from maxswitch.networks.zoo import save_model

    d = tmp_path_factory.mktemp("whatmodels")
    enc = Encoder.random((4, 6, 8), seed=3)
    ctx, tab = random_context((4, 6, 8)), random_table((4, 6, 8), seed=1)
    torch.manual_seed(0)
    direct = DirectDecoder((4, 6, 8), (8, 8, 8))
    entries = []
    what_dec = WhatDecoder.from_direct(direct, (4, 6, 8), (8, 8, 8))
    with torch.no_grad():  # the what input's weights away from zero, so that level 3 reads it
        what_dec.l3[0].weight[:, -3:].normal_(0, 0.5)
    for name, cfg, dec in [
        ("tiny-4-6-8", ModelConfig((4, 6, 8), "direct", (8, 8, 8), encoder_seed=3), direct),
        ("tiny-what-4-6-8", ModelConfig((4, 6, 8), "what", (8, 8, 8), encoder_seed=3, what=(8, 4, 8)), what_dec),
        # the same decoder writing and reading finer what parts (4 and 2-pixel blocks)
        ("tiny-what-4-6-8-f4", ModelConfig((4, 6, 8), "what", (8, 8, 8), encoder_seed=3, what=(4, 4, 8)), what_dec),
        ("tiny-what-4-6-8-f2", ModelConfig((4, 6, 8), "what", (8, 8, 8), encoder_seed=3, what=(2, 8, 16)), what_dec),
    ]:
        path = d / f"{name}.safetensors"
        sha = save_model(path, name, 1, cfg, enc, dec.eval(), context=ctx, table=tab)
        entries.append({"name": name, "version": 1, "file": path.name, "sha256": sha, "family": "test"})
    (d / "manifest.json").write_text(json.dumps({"schema": 1, "models": entries}))
    return d


@pytest.fixture
def wz(what_zoo, monkeypatch):
    monkeypatch.setenv("MAXSWITCH_MODELS", str(what_zoo))
    monkeypatch.setattr(zoo, "_LOADED", {})
    return "tiny-what-4-6-8"


@pytest.mark.parametrize("coding", ["zstd", "context", "table"])
def test_version_3_round_trip_every_coding(wz, coding):
    data = maxswitch.encode(EXAMPLE, wz, coding=coding)
    h, payload = fmt.read(data)
    assert (
        h.version == 3
        and fmt.CODINGS[h.coding] == {"zstd": "zstd", "context": "context-ans", "table": "context-table"}[coding]
    )
    p = parts.split(payload)
    assert p.spec == SPEC
    parsed = maxswitch.codec.parse(data)
    plain = maxswitch.encode(EXAMPLE, "tiny-4-6-8", coding=coding)  # the same switches, without the what part
    assert all(np.array_equal(a, b) for a, b in zip(parsed.codes, maxswitch.codec.parse(plain).codes))
    inf = maxswitch.info(data)
    assert inf["format_version"] == 3 and inf["what_bytes"] == len(p.what)
    assert inf["header_bytes"] + parts.HEAD_BYTES + inf["what_bytes"] + inf["payload_bytes"] == len(data)
    rgb, _ = maxswitch.decode_array(data)
    assert rgb.shape == (256, 384, 3)


def test_version_3_decode_is_the_same_in_tiles_and_threads(wz):
    data = maxswitch.encode(EXAMPLE, wz)
    whole, _ = maxswitch.decode_array(data, tile=0, threads=1)
    for tile, threads in [(64, 1), (48, 2), (128, 2)]:
        tiled, _ = maxswitch.decode_array(data, tile=tile, threads=threads)
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.parametrize("suffix, spec", [("-f4", (4, 4, 8)), ("-f2", (2, 8, 16))])
def test_finer_what_parts_round_trip_alike_in_tiles_threads_and_runtimes(wz, suffix, spec, monkeypatch):
    """A what decoder reads what parts of 4 and 2-pixel blocks: its level 3 their 8x8 means, its
    fusion the finer picture; the same pixels whole or tiled, on 1 or 2 threads, on ONNX Runtime
    or torch (within a rounding step), and a golden file for the 4-pixel blocks."""
    import os

    name = wz + suffix
    data = maxswitch.encode(EXAMPLE, name, coding="table")
    assert data == maxswitch.encode(EXAMPLE, name, coding="table", threads=2, tile=64)
    _, payload = fmt.read(data)
    p = parts.split(payload)
    assert p.spec == what.WhatSpec(*spec)
    assert len(p.what) > len(parts.split(fmt.read(maxswitch.encode(EXAMPLE, wz, coding="table"))[1]).what)
    if suffix == "-f4":
        golden = EXPECTED / "example.tiny-what-4-6-8-f4.v3-table.msw"
        if os.environ.get("MAXSWITCH_REGEN_GOLDEN"):
            golden.write_bytes(data)
        assert data == golden.read_bytes(), "encoding changed"
    whole, _ = maxswitch.decode_array(data, tile=0, threads=1)
    for tile, threads in [(64, 1), (48, 2)]:
        tiled, _ = maxswitch.decode_array(data, tile=tile, threads=threads)
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    monkeypatch.setenv("MAXSWITCH_DECODER", "torch")
    ref, _ = maxswitch.decode_array(data, tile=0)
    assert np.abs(ref.astype(int) - whole.astype(int)).max() <= 1


def test_a_what_part_of_16_pixel_blocks_is_refused_by_what_decoders(wz, what_zoo, tmp_path):
    data = maxswitch.encode(EXAMPLE, wz, coding="zstd")
    _, payload = fmt.read(data)
    p = parts.split(payload)
    H, W = 256, 384
    spec16 = what.WhatSpec(16, 4, 8)
    w16, _ = what.encode(np.zeros((H, W, 3), np.uint8), spec16)
    f = tmp_path / "a.msw"
    f.write_bytes(_rewrite(data, parts.join(spec16, w16, p.checksum, bytes(p.switches))))
    r = run_cli("decode", f, tmp_path / "a.png", env={"MAXSWITCH_MODELS": str(what_zoo)})
    assert r.returncode == 1 and "2, 4 or 8-pixel blocks" in r.stderr.decode(), r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1 and not (tmp_path / "a.png").exists()


def test_what_decoder_fast_form_matches_its_forward():
    from maxswitch.networks.nets import DirectDecoder, WhatDecoder
    from maxswitch.networks.tiling import decode_tiled

    torch.manual_seed(1)
    dec = WhatDecoder.from_direct(DirectDecoder((4, 8, 16), (16, 12, 8)), (4, 8, 16), (16, 12, 8))
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    H, W = 136, 200
    codes = [
        torch.randint(0, 4, (1, c, H >> (s + 1), W >> (s + 1)), dtype=torch.uint8) for s, c in enumerate((4, 8, 16))
    ]
    pic = torch.randint(0, 256, (1, 3, H // 8, W // 8), dtype=torch.uint8)
    with torch.no_grad():
        ref = (dec(codes, pic)[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(int)
    for tile in (0, 48, 64):
        out = decode_tiled(dec, codes + [pic], tile=tile)
        assert np.abs(out.astype(int) - ref).max() <= 1


def test_fine_what_decoder_starts_as_its_what_decoder_and_reads_blocks_at_level_1():
    from maxswitch.networks.nets import DirectDecoder, WhatDecoder, WhatFineDecoder

    torch.manual_seed(2)
    ch, wid = (4, 6, 8), (8, 8, 8)
    dec = WhatDecoder.from_direct(DirectDecoder(ch, wid), ch, wid)
    fine = WhatFineDecoder.from_what(dec, ch, wid)
    H, W = 32, 48
    codes = [torch.randint(0, 4, (1, c, H >> (s + 1), W >> (s + 1)), dtype=torch.uint8) for s, c in enumerate(ch)]
    pic = torch.randint(0, 256, (1, 3, H // 2, W // 2), dtype=torch.uint8)
    pic[0, :, 4, 4:6] = 100
    with torch.no_grad():
        # level 1's what input starts at zero (float sums in another order: not bit for bit)
        assert torch.allclose(dec(codes, pic), fine(codes, pic), atol=1e-5)
        fine.l1[0].weight[:, -3:].normal_(0, 0.5)
        # two 2x2 blocks of one 8x8 block changed by +1 and -1: its mean stays, so the what
        # decoder's network sees nothing new (level 3 reads the same means); the fine one does
        other = pic.clone()
        other[0, :, 4, 4], other[0, :, 4, 5] = 101, 99
        undo = lambda d, p: d(codes, p) - nets_fuse_part(p)  # noqa: E731
        assert torch.allclose(undo(dec, pic), undo(dec, other), atol=1e-5)
        assert (undo(fine, pic) - undo(fine, other)).abs().max() > 1e-3


def nets_fuse_part(pic):
    """The what picture's own term of ``nets.fuse`` at F = 2: what each decode adds for it."""
    return torch.nn.functional.interpolate(pic.float() / 255.0, scale_factor=2, mode="bilinear", align_corners=False)


def test_fusion_puts_the_what_picture_into_flat_areas():
    # a flat red picture: every switch ties, only the what part says "red"; with the switch
    # path silenced (its last layer zero) the decode is the what picture, upsampled
    from maxswitch.networks.nets import DirectDecoder, WhatDecoder
    from maxswitch.networks.tiling import decode_tiled

    dec = WhatDecoder.from_direct(DirectDecoder((4, 6, 8), (8, 8, 8)), (4, 6, 8), (8, 8, 8))
    with torch.no_grad():
        dec.l1[4].weight.zero_()
        dec.l1[4].bias.zero_()
    flat = np.full((64, 96, 3), (200, 20, 30), np.uint8)
    _, pic = what.encode(flat, SPEC)
    codes = [np.zeros((c, 64 >> (s + 1), 96 >> (s + 1)), np.uint8) for s, c in enumerate((4, 6, 8))]
    out = decode_tiled(dec, [*codes, torch.from_numpy(pic).permute(2, 0, 1)[None]], tile=0)
    assert np.abs(out.astype(int) - [200, 20, 30]).max() <= 3


def test_version_3_goldens_across_threads_tiles_and_processes(wz, what_zoo):
    import os

    regen = bool(os.environ.get("MAXSWITCH_REGEN_GOLDEN"))
    for coding in ("zstd", "table"):
        name = f"example.tiny-what-4-6-8.v3-{coding}.msw"
        a = maxswitch.encode(EXAMPLE, wz, coding=coding, threads=1)
        b = maxswitch.encode(EXAMPLE, wz, coding=coding, threads=2, tile=64)
        assert a == b
        if regen:
            (EXPECTED / name).write_bytes(a)
        assert a == (EXPECTED / name).read_bytes(), f"{name}: encoding changed"
        r = run_cli("encode", EXAMPLE, "-", "-m", wz, "--coding", coding, env={"MAXSWITCH_MODELS": str(what_zoo)})
        assert r.returncode == 0, r.stderr
        assert r.stdout == a


def _rewrite(data: bytes, payload: bytes) -> bytes:
    """The file with another payload and a repaired CRC (what a sender could do)."""
    h, old = fmt.read(data)
    return fmt.write(h, payload)


def test_damaged_parts_with_a_repaired_crc_are_refused(wz, what_zoo, tmp_path):
    data = maxswitch.encode(EXAMPLE, wz, coding="zstd")
    _, payload = fmt.read(data)
    p = parts.split(payload)
    bad_what = bytearray(p.what)
    bad_what[len(bad_what) // 2] ^= 0xFF
    cases = {
        "what": parts.join(p.spec, bytes(bad_what), p.checksum, bytes(p.switches)),
        "checksum": parts.join(p.spec, bytes(p.what), p.checksum ^ 1, bytes(p.switches)),
        "short-what": parts.join(p.spec, bytes(p.what)[:-4], p.checksum, bytes(p.switches)),
        "head": b"\x05" + bytes(payload)[1:],
    }
    env = {"MAXSWITCH_MODELS": str(what_zoo)}
    for label, pl in cases.items():
        f = tmp_path / f"{label}.msw"
        f.write_bytes(_rewrite(data, pl))
        out = tmp_path / f"{label}.png"
        r = run_cli("decode", f, out, env=env)
        assert r.returncode == 1, (label, r.stderr)
        assert len(r.stderr.decode().strip().splitlines()) == 1, (label, r.stderr)
        assert "Traceback" not in r.stderr.decode() and not out.exists()


def test_table_tiles_swapped_with_a_repaired_crc_are_refused(wz):
    img = np.asarray(make_image(1024, 64, seed=5))  # two 512-pixel context tiles side by side
    data = maxswitch.encode(img, wz, coding="table")
    _, payload = fmt.read(data)
    p = parts.split(payload)
    tiles = [bytes(t[1]) for t in _tile_spans(bytes(p.switches))]
    assert len(tiles) == 2 and len(tiles[0]) != 0
    swapped = parts.join(p.spec, bytes(p.what), p.checksum, tiles[1] + tiles[0])
    bad = _rewrite(data, swapped)
    with pytest.raises((PayloadError, fmt.FormatError)):
        maxswitch.decode_array(bad)


def _tile_spans(sw_payload: bytes):
    """(offset, bytes) of each tile of a coding-2/3 payload: u32 word count, then the words."""
    out, off = [], 0
    while off < len(sw_payload):
        (n,) = struct.unpack_from("<I", sw_payload, off)
        out.append((off, sw_payload[off : off + 4 + 4 * n]))
        off += 4 + 4 * n
    return out


def test_a_switch_only_model_refuses_a_version_3_file_and_back(wz):
    v3 = maxswitch.encode(EXAMPLE, wz)
    v2 = maxswitch.encode(EXAMPLE, "tiny-4-6-8")
    with pytest.raises(zoo.ModelError, match="switches only"):
        maxswitch.decode_array(v3, "tiny-4-6-8")
    with pytest.raises(zoo.ModelError, match="needs a what part"):
        maxswitch.decode_array(v2, wz)


def test_cli_info_shows_the_parts(wz, what_zoo, tmp_path):
    f = tmp_path / "a.msw"
    f.write_bytes(maxswitch.encode(EXAMPLE, wz))
    r = run_cli("info", f, "--json", env={"MAXSWITCH_MODELS": str(what_zoo)})
    assert r.returncode == 0, r.stderr
    inf = json.loads(r.stdout)
    assert inf["format_version"] == 3 and inf["what"].startswith("8x8") and inf["what_bytes"] > 0


def _screen(h=64, w=96):
    """A screenshot-like picture: flat panels whose edges fall inside 8x8 blocks, a one-pixel
    rule and a few dark glyph-like strokes."""
    img = np.full((h, w, 3), (236, 236, 240), np.uint8)
    img[5:27, 3:61] = (40, 90, 200)  # a blue panel, edges off the 8-pixel grid
    img[35:60, 50:93] = (250, 250, 250)
    img[31, :] = (120, 120, 120)
    for x in range(55, 90, 6):
        img[40:50, x : x + 2] = (20, 20, 20)
    return img


def test_flat_share_counts_whole_flat_blocks_in_any_row_chunking():
    assert what.flat_share(np.full((40, 24, 3), 7, np.uint8)) == 1.0
    noise = np.random.default_rng(0).integers(0, 256, (40, 24, 3), dtype=np.uint8)
    assert what.flat_share(noise) == 0.0
    assert what.flat_share(np.zeros((7, 100, 3), np.uint8)) == 0.0  # no whole 8x8 block
    half = np.full((16, 16, 3), 9, np.uint8)
    half[0, 0, 2] = 11  # one sample two levels off: that block is not flat
    assert what.flat_share(half) == 0.75
    half[0, 0, 2] = 8  # one level: still flat, whichever way (no uint8 wrap-around)
    assert what.flat_share(half) == 1.0
    # a drawn gradient, one level per pixel across and down, is flat; at two levels per pixel not
    ramp = (np.arange(32)[:, None] + np.arange(48)[None, :]).astype(np.uint8)
    assert what.flat_share(np.dstack([ramp, 255 - ramp, ramp // 2])) == 1.0
    assert what.flat_share(np.dstack([2 * ramp] * 3)) == 0.0
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[:, ::2] = 1
    assert what.flat_share(stripes) == 1.0 and what.flat_share(stripes * 2) == 0.0  # steps, not spread
    img = _screen(130, 77)  # partial blocks at the right and bottom edges are not counted
    assert what.flat_share(img, rows=8) == what.flat_share(img) == what.flat_share(img, rows=64)


def test_flat_pictures_get_2x2_blocks_and_photographs_keep_the_models():
    assert what.is_flat(_screen())
    assert what.flat_spec(what.WhatSpec(8, 4, 8)) == what.WhatSpec(2, 4, 8)
    assert what.flat_spec(what.WhatSpec(2, 8, 16)) == what.WhatSpec(2, 4, 8)
    assert what.flat_spec(what.WhatSpec(4, 2, 4)) == what.WhatSpec(2, 2, 4)  # never coarser
    from PIL import Image

    photo = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    assert what.flat_share(photo) < what.FLAT_SHARE and not what.is_flat(photo)


def test_encode_what_auto_writes_a_finer_part_for_a_flat_picture(wz):
    img = _screen()
    auto, own = maxswitch.encode(img, wz), maxswitch.encode(img, wz, what="model")
    assert parts.split(fmt.read(auto)[1]).spec == what.WhatSpec(2, 4, 8)
    assert parts.split(fmt.read(own)[1]).spec == SPEC
    assert maxswitch.codec.parse(auto).codes[0].tobytes() == maxswitch.codec.parse(own).codes[0].tobytes()
    assert maxswitch.decode_array(auto)[0].shape == img.shape
    assert maxswitch.encode(EXAMPLE, wz) == maxswitch.encode(EXAMPLE, wz, what="model")  # a photograph: as before
    with pytest.raises(maxswitch.codec.CodecError, match="what choice"):
        maxswitch.encode(img, wz, what="fine")


def test_the_shipped_default_decodes_a_flat_picture_better_with_its_finer_part():
    # the trained default rung: 2x2 blocks put the panels' edges back where 8x8 means blur them
    from maxswitch.evaluation import metrics

    img = _screen()
    auto, own = maxswitch.encode(img), maxswitch.encode(img, what="model")
    a, o = maxswitch.decode_array(auto)[0], maxswitch.decode_array(own)[0]
    assert metrics.psnr(img, a) > metrics.psnr(img, o) + 1  # measured: 22.6 against 21.2 dB


def test_cli_encode_what_choice(wz, what_zoo, tmp_path):
    from PIL import Image

    src = tmp_path / "screen.png"
    Image.fromarray(_screen()).save(src)
    env = {"MAXSWITCH_MODELS": str(what_zoo)}
    for choice, factor in [(None, "2x2"), ("auto", "2x2"), ("model", "8x8")]:
        out = tmp_path / f"{choice}.msw"
        r = run_cli("encode", src, out, "-m", wz, *(["--what", choice] if choice else []), env=env)
        assert r.returncode == 0 and f", what {factor}".encode() in r.stderr, r.stderr
        r = run_cli("info", out, "--json", env=env)
        assert json.loads(r.stdout)["what"].startswith(factor)
    r = run_cli("encode", src, tmp_path / "x.msw", "-m", wz, "--what", "fine", env=env)
    assert r.returncode == 2 and b"--what" in r.stderr and not (tmp_path / "x.msw").exists()


@pytest.fixture
def flat_zoo(what_zoo, tmp_path, monkeypatch):
    """The tiny what zoo, where tiny-what-4-6-8 names a decoder for flat pictures,
    tiny-what-4-6-8-flat: a fine what decoder (as the shipped one) from its weights, level 1's
    what input away from zero, writing 2x2 blocks, steps 2/4."""
    import shutil

    from maxswitch.networks.nets import ModelConfig, WhatFineDecoder
    from maxswitch.networks.zoo import save_model

    d = tmp_path / "zoo"
    shutil.copytree(what_zoo, d)
    man = json.loads((d / "manifest.json").read_text())
    base = next(e for e in man["models"] if e["name"] == "tiny-what-4-6-8")
    base["flat_model"] = "tiny-what-4-6-8-flat"
    m = zoo.load_model(str(d / base["file"]))
    fine = WhatFineDecoder.from_what(m.decoder, m.config.channels, m.config.widths)
    with torch.no_grad():
        fine.l1[0].weight[:, -3:].normal_(0, 0.5)
    cfg = ModelConfig(m.config.channels, "what-fine", m.config.widths, encoder_seed=3, what=(2, 2, 4))
    path = d / "tiny-what-4-6-8-flat.safetensors"
    sha = save_model(path, "tiny-what-4-6-8-flat", 1, cfg, m.encoder, fine.eval(), context=m.context, table=m.table)
    man["models"].append(
        {"name": "tiny-what-4-6-8-flat", "version": 1, "file": path.name, "sha256": sha, "family": "test"}
    )
    (d / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setenv("MAXSWITCH_MODELS", str(d))
    monkeypatch.setattr(zoo, "_LOADED", {})
    return d


def test_a_model_with_a_flat_decoder_hands_flat_pictures_to_it(flat_zoo):
    img = _screen()
    data = maxswitch.encode(img, "tiny-what-4-6-8")
    h, payload = fmt.read(data)
    assert h.model == "tiny-what-4-6-8-flat" and parts.split(payload).spec == what.WhatSpec(2, 2, 4)
    assert maxswitch.decode_array(data)[0].shape == img.shape
    own = maxswitch.encode(img, "tiny-what-4-6-8", what="model")
    assert fmt.read(own)[0].model == "tiny-what-4-6-8"
    assert fmt.read(maxswitch.encode(EXAMPLE, "tiny-what-4-6-8"))[0].model == "tiny-what-4-6-8"  # a photograph
    other = maxswitch.encode(img, "tiny-what-4-6-8-f4")  # no flat decoder named: 2x2 blocks of its own
    assert fmt.read(other)[0].model == "tiny-what-4-6-8-f4"
    assert parts.split(fmt.read(other)[1]).spec == what.WhatSpec(2, 4, 8)


def test_decoding_with_the_model_that_encoded_uses_its_flat_decoder(flat_zoo, monkeypatch):
    # bench, encode --target-psnr and scripts decode with the model they encoded with; a file
    # that model handed to its flat decoder must be decoded by that decoder
    from maxswitch.networks import fastdecode
    from maxswitch.networks.nets import WhatFineDecoder

    img = _screen()
    data = maxswitch.encode(img, "tiny-what-4-6-8")
    used = []
    real = maxswitch.codec.load_model
    monkeypatch.setattr(maxswitch.codec, "load_model", lambda name: used.append(name) or real(name))
    a = maxswitch.decode_array(data, "tiny-what-4-6-8")[0]
    assert used[-1] == "tiny-what-4-6-8-flat"
    assert np.array_equal(a, maxswitch.decode_array(data)[0])
    assert isinstance(zoo.load_model("tiny-what-4-6-8-flat").decoder, WhatFineDecoder)
    if fastdecode.available():  # ONNX Runtime decodes it as torch does
        monkeypatch.setenv("MAXSWITCH_DECODER", "onnx")
        monkeypatch.setattr(zoo, "_LOADED", {})
        assert np.abs(maxswitch.decode_array(data)[0].astype(int) - a).max() <= 1
        assert fastdecode.runner_for(zoo.load_model("tiny-what-4-6-8-flat")).fine
    with pytest.raises(zoo.ModelError):  # any other model still refuses a file it does not name
        maxswitch.decode_array(data, "tiny-4-6-8")


def test_a_fine_what_decoder_decodes_alike_in_tiles_threads_processes_and_runtimes(flat_zoo, monkeypatch):
    """The flat decoder of the tiny zoo is a what-fine decoder (level 1 reads the 2x2 picture):
    the same file from 1 or 2 threads and any tile, in another process, and the same pixels
    (within a rounding step) whole or tiled, on ONNX Runtime or torch."""
    import subprocess
    import sys

    img = _screen(130, 77)
    data = maxswitch.encode(img, "tiny-what-4-6-8")
    assert fmt.read(data)[0].model == "tiny-what-4-6-8-flat"
    assert data == maxswitch.encode(img, "tiny-what-4-6-8", threads=2, tile=64)
    code = (
        "import sys, numpy as np, maxswitch; from PIL import Image;"
        "sys.stdout.buffer.write(maxswitch.encode(np.asarray(Image.open(sys.argv[1])), 'tiny-what-4-6-8'))"
    )
    from PIL import Image

    src = flat_zoo / "screen.png"
    Image.fromarray(img).save(src)
    out = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, check=True).stdout
    assert out == data
    whole, _ = maxswitch.decode_array(data, tile=0, threads=1)
    for tile, threads in [(64, 1), (48, 2), (16, 2)]:
        tiled, _ = maxswitch.decode_array(data, tile=tile, threads=threads)
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1, (tile, threads)
    from maxswitch.networks import fastdecode

    for runtime in ("onnx", "torch") if fastdecode.available() else ("torch",):
        monkeypatch.setenv("MAXSWITCH_DECODER", runtime)
        other, _ = maxswitch.decode_array(data, tile=48, threads=2)
        assert np.abs(other.astype(int) - whole.astype(int)).max() <= 1, runtime


def test_set_flat_model_writes_checks_and_survives_register(what_zoo, tmp_path, monkeypatch):
    import shutil

    d = tmp_path / "zoo"
    shutil.copytree(what_zoo, d)
    man = json.loads((d / "manifest.json").read_text())
    for e in man["models"]:  # what register's sort reads
        e["switches_per_pixel"] = 1.0
    (d / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setenv("MAXSWITCH_MODELS", str(d))
    monkeypatch.setattr(zoo, "_LOADED", {})
    zoo.set_flat_model("tiny-what-4-6-8", "tiny-what-4-6-8-f2")
    assert zoo.shipped("tiny-what-4-6-8")["flat_model"] == "tiny-what-4-6-8-f2"
    assert fmt.read(maxswitch.encode(_screen(), "tiny-what-4-6-8"))[0].model == "tiny-what-4-6-8-f2"
    zoo.register(d / "tiny-what-4-6-8.safetensors", "test", "made in a test")
    assert zoo.shipped("tiny-what-4-6-8")["flat_model"] == "tiny-what-4-6-8-f2"
    for name, flat in [("tiny-4-6-8", "tiny-what-4-6-8-f2"), ("tiny-what-4-6-8-f4", "tiny-4-6-8"), ("x", None)]:
        with pytest.raises(zoo.ModelError, match="what\\+where model"):
            zoo.set_flat_model(name, flat)
    with pytest.raises(zoo.ModelError):  # a flat model does not hand on again
        zoo.set_flat_model("tiny-what-4-6-8-f4", "tiny-what-4-6-8")
    zoo.set_flat_model("tiny-what-4-6-8", None)
    assert "flat_model" not in zoo.shipped("tiny-what-4-6-8")
