"""The learned context model and the v2 payload: exact integers, round trips, agreement between
the training objective and the real coder, damaged payloads, v2 files through the codec."""

import numpy as np
import pytest
import torch
from conftest import make_image, png_bytes, random_context

import maxswitch
from maxswitch import codec
from maxswitch.bitstream import entropy
from maxswitch.bitstream import format as fmt
from maxswitch.bitstream.context import EXP, TOTAL, frequencies
from maxswitch.bitstream.switches import PayloadError
from maxswitch.training.context_train import ContextTrainer


def random_codes(channels, H, W, seed=0, p=(0.55, 0.2, 0.15, 0.1)):
    rng = np.random.default_rng(seed)
    return [rng.choice(4, size=(c, H >> (s + 1), W >> (s + 1)), p=p).astype(np.uint8) for s, c in enumerate(channels)]


def test_exp_table_is_the_documented_integers():
    assert EXP[0] == 1 << 16 and EXP[64] == round(65536 / np.e)
    assert (np.diff(EXP) <= 0).all() and EXP[-1] >= 0


def test_frequencies_are_integers_summing_to_the_total():
    params = random_context((2, 2, 2)).stages[0].torch_params()
    a1 = torch.from_numpy(np.random.default_rng(1).integers(-300, 300, (500, 8)).astype(np.float32))
    f = frequencies(a1, params)
    assert f.shape == (500, 4) and (f == np.floor(f)).all()
    assert (f.sum(1) == TOTAL).all() and (f >= 0).all()
    # the same as exact integer arithmetic, written out the slow way
    _, w2, b2, w3, b3 = params
    a2 = torch.floor((a1.clamp(0, 255) @ w2 + b2) / 64).clamp(0, 255)
    L = (a2 @ w3 + b3).numpy().astype(np.int64)
    t = np.minimum((L.max(1, keepdims=True) - L) // 16, 1023)
    e = EXP[t]
    g = e * TOTAL // e.sum(1, keepdims=True)
    g[np.arange(len(g)), t.argmin(1)] += TOTAL - g.sum(1)
    assert (f.astype(np.int64) == g).all()


@pytest.mark.parametrize("H,W", [(8, 8), (40, 24), (520, 48), (16, 1040)])
def test_payload_round_trip_across_tiles(H, W):
    cm = random_context((3, 5, 7), seed=2)
    codes = random_codes(cm.channels, H, W, seed=H + W)
    payload = entropy.encode(cm, codes)
    back = entropy.decode(cm, payload, H, W)
    assert all((a == b).all() for a, b in zip(codes, back))


def test_payload_damage_is_refused():
    cm = random_context((3, 5, 7), seed=2)
    codes = random_codes(cm.channels, 40, 24)
    payload = entropy.encode(cm, codes)
    with pytest.raises(PayloadError, match="truncated"):
        entropy.decode(cm, payload[:-4], 40, 24)
    with pytest.raises(PayloadError, match="unexpected bytes"):
        entropy.decode(cm, payload + b"\0\0\0\0", 40, 24)
    with pytest.raises(PayloadError):
        entropy.decode(cm, b"\xff\xff\xff\x7f" + payload[4:], 40, 24)


def test_training_objective_is_the_real_code_length():
    """The trainer's teacher-forced bits (fake-quantised) match the coder's payload size: the
    contexts the trainer sees are exactly the ones the decoder will have."""
    torch.manual_seed(0)
    tr = ContextTrainer((3, 5, 7), 16, 8)
    with torch.no_grad():  # make the model confident enough that a context mix-up would show
        for m in tr.stages:
            m.w3.mul_(20)
    cm = tr.export()
    H, W = 64, 96
    codes = random_codes(cm.channels, H, W, seed=5)
    with torch.no_grad():
        want = float(sum(tr.bits([torch.from_numpy(c.astype(np.int64))[None] for c in codes])))
    got = 8 * len(entropy.encode(cm, codes))
    assert abs(got - want) < 0.01 * want + 64, (got, want)


def test_v2_file_round_trip_and_info(tiny_zoo):
    png = png_bytes(make_image(72, 40, seed=3))
    v2 = maxswitch.encode(png, tiny_zoo, coding="context")
    v1 = maxswitch.encode(png, tiny_zoo, coding="zstd")
    auto = maxswitch.encode(png, tiny_zoo)  # the default: the smaller of the two
    assert auto == min(v1, v2, key=len)
    assert v2[8] == 2 and v1[8] == 1
    assert all((a == b).all() for a, b in zip(codec.parse(v2).codes, codec.parse(v1).codes))
    inf = maxswitch.info(v2)
    assert inf["coding"] == "context-ans" and inf["context_digest"]
    a, _ = codec.decode_array(v2)
    b, _ = codec.decode_array(v1)
    assert (a == b).all()


def test_v2_file_needs_the_context_model_it_names(tiny_zoo, tiny_model):
    from maxswitch.networks import zoo

    png = png_bytes(make_image(32, 32))
    data = bytearray(maxswitch.encode(png, tiny_zoo, coding="context"))
    # the same model without a context model: refused, naming the context digest
    m = zoo.load_model(tiny_zoo)
    bare = zoo.Model(m.name, m.version, m.config, m.encoder, m.decoder, m.sha256, m.encoder_digest, {}, None)
    with pytest.raises(zoo.ModelError, match="context model"):
        codec.decode_array(bytes(data), bare)
    # a header whose context digest was altered (CRC recomputed): refused before decoding
    h, payload = fmt.read(bytes(data))
    import dataclasses

    forged = fmt.write(dataclasses.replace(h, context_digest=bytes(16)), payload)
    with pytest.raises(zoo.ModelError, match="context model"):
        codec.decode_array(forged)


def test_zstd_coding_cannot_be_forged_into_version_2():
    h = fmt.Header(
        width=8,
        height=8,
        model="m",
        encoder_digest=bytes(16),
        channels=(1, 1, 1),
        raw_size=fmt.raw_size(8, 8, (1, 1, 1)),
    )
    data = bytearray(fmt.write(h, b"xx"))
    data[8] = 2  # claims v2 with coding 1
    import zlib

    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    with pytest.raises(fmt.FormatError):
        fmt.read(bytes(data))


def test_sampled_training_scores_the_same_symbols_as_the_full_pass():
    torch.manual_seed(1)
    tr = ContextTrainer((3, 5, 7), 16, 8)
    codes = [torch.from_numpy(c.astype(np.int64))[None] for c in random_codes((3, 5, 7), 32, 48, seed=9)]
    with torch.no_grad():
        for s, m in enumerate(tr.stages):
            full = float(m.bits(codes[s], codes[s + 1 :]))
            every = torch.arange(codes[s].numel())
            assert float(m.bits_sampled(codes[s], codes[s + 1 :], every)) == pytest.approx(full, rel=1e-5)


def test_row_decoder_gives_the_decoded_rows_and_forgets_old_ones(monkeypatch):
    monkeypatch.setattr(entropy, "TILE", 64)  # 3 rows x 2 columns of tiles
    torch.manual_seed(0)
    model = random_context((3, 4, 5), seed=2)
    rng = np.random.default_rng(5)
    H, W = 176, 96
    codes = [rng.integers(0, 4, (c, H >> (s + 1), W >> (s + 1)), dtype=np.uint8) for s, c in enumerate((3, 4, 5))]
    payload = entropy.encode(model, codes)
    src = entropy.RowDecoder(model, payload, H, W)
    for p0, p1 in [(0, 96), (32, 128), (96, 176), (168, 176)]:
        got = src.rows(p0, p1)
        for s in range(3):
            np.testing.assert_array_equal(got[s], codes[s][:, p0 >> (s + 1) : p1 >> (s + 1)])
        assert len(src.done) <= 2
    bad = bytearray(payload)
    bad[-3] ^= 0x5A  # inside the last row's last tile
    src = entropy.RowDecoder(model, bytes(bad), H, W)
    src.rows(0, 64)  # the rows before the damage decode
    with pytest.raises(PayloadError):
        src.rows(128, 176)
