"""The encoder's switches (exact, tie rule, shapes) and the decoders' contracts."""

import pytest
import torch
import torch.nn.functional as F

from maxswitch.networks.nets import (
    Encoder,
    ModelConfig,
    build_decoder,
    codes_to_indices,
    decoder_macs_per_pixel,
    encoder_macs_per_pixel,
    one_hot_codes,
    parse_channels,
)


def reference_switches(enc: Encoder, img: torch.Tensor):
    """Independent float64 implementation: explicit windows, argmax = first maximum."""
    x = img.double() - 128
    out = []
    for s in range(3):
        w = getattr(enc, f"w{s}").double()
        b = getattr(enc, f"b{s}").double()
        y = F.relu(F.conv2d(x, w, b, padding=1))
        B, C, H, W = y.shape
        win = y.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(B, C, H // 2, W // 2, 4)
        v = win.max(-1).values
        # first maximum in row-major order, computed without torch's tie rule
        is_max = win == v.unsqueeze(-1)
        code = torch.where(is_max, torch.arange(4).double(), torch.full_like(win, 9.0)).min(-1).values
        out.append(code.to(torch.uint8))
        x = torch.clamp(torch.floor(v / 2 ** int(enc.shifts[s])), max=1023)
    return out


@pytest.mark.parametrize("channels", [(4, 6, 8), (16, 16, 16), (6, 12, 24)])
def test_switches_match_independent_float64_reference(channels):
    enc = Encoder.random(channels, seed=1)
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 40, 56), generator=g, dtype=torch.uint8)
    got = enc(img)
    ref = reference_switches(enc, img)
    for s, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == (2, channels[s], 40 >> (s + 1), 56 >> (s + 1))
        assert torch.equal(a, b), f"stage {s + 1}"


def test_ties_go_to_the_first_position():
    enc = Encoder.random((4, 4, 4), seed=0)
    flat = torch.full((1, 3, 32, 32), 77, dtype=torch.uint8)  # constant: interior windows tie
    flat[:, :, 16:, :] = 200  # two flat halves
    codes = enc(flat)
    assert int(codes[0][:, :, 1:7, 1:-1].max()) == 0  # away from the zero padding and the edge
    for a, b in zip(codes, reference_switches(enc, flat)):
        assert torch.equal(a, b)


def test_encoder_is_exact_in_float32_for_shipped_plans():
    for plan in [(8, 8, 8), (6, 12, 24), (16, 16, 16), (32, 32, 32), (48, 96, 192), (64, 64, 64)]:
        assert Encoder.exact_dtype(plan, 2**20) == torch.float32
    assert Encoder.exact_dtype((512, 512, 512), 2**20) == torch.float64


def test_random_encoder_is_seeded_and_integer():
    a, b = Encoder.random((8, 8, 8), seed=5), Encoder.random((8, 8, 8), seed=5)
    assert a.digest() == b.digest()
    assert Encoder.random((8, 8, 8), seed=6).digest() != a.digest()
    assert int(a.w0.abs().max()) <= 7


def test_avg_pool_has_no_switches():
    enc = Encoder.random((4, 4, 4), seed=0, pool="avg")
    img = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    assert all(int(c.max()) == 0 for c in enc(img))


def test_encoder_rejects_bad_input():
    enc = Encoder.random((4, 4, 4), seed=0)
    with pytest.raises(ValueError, match="multiples of 8"):
        enc(torch.zeros(1, 3, 12, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        enc(torch.zeros(1, 3, 16, 16))


def test_one_hot_and_unpool_indices():
    codes = torch.tensor([[[[0, 3], [1, 2]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    oh = one_hot_codes(codes)
    assert oh.shape == (1, 4, 2, 2) and torch.equal(oh.argmax(1, keepdim=True).to(torch.uint8), codes)
    idx = codes_to_indices(codes)  # into a 4x4 plane
    assert idx.tolist() == [[[[0 * 4 + 0, 1 * 4 + 3], [2 * 4 + 1, 3 * 4 + 2]]]]
    # the indices are those max_pool2d would return for a map with maxima at the codes
    x = torch.zeros(1, 1, 4, 4).view(-1)
    x[idx.view(-1)] = 1.0
    _, ref = F.max_pool2d(x.view(1, 1, 4, 4), 2, return_indices=True)
    assert torch.equal(ref, idx)


@pytest.mark.parametrize("kind", ["direct", "mirror"])
def test_decoders_output_rgb_of_the_padded_size(kind):
    cfg = ModelConfig((4, 6, 8), kind, (8, 8, 8))
    dec = build_decoder(cfg)
    codes = [
        torch.randint(0, 4, (2, c, 24 >> (s + 1), 32 >> (s + 1)), dtype=torch.uint8) for s, c in enumerate(cfg.channels)
    ]
    assert dec(codes).shape == (2, 3, 24, 32)
    assert decoder_macs_per_pixel(cfg) > 0


def test_decoder_output_depends_on_switches_only():
    """Same switches -> same output, whatever the pixels were."""
    cfg = ModelConfig((4, 6, 8), "direct", (8, 8, 8))
    enc, dec = Encoder.random(cfg.channels, seed=2), build_decoder(cfg).eval()
    img = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    codes = enc(img)
    with torch.no_grad():
        assert torch.equal(dec(codes), dec([c.clone() for c in codes]))


def test_config_round_trip_and_validation():
    cfg = ModelConfig((6, 12, 24), "mirror", (16, 16, 16), encoder_seed=9)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.switches_per_pixel == pytest.approx(6 / 4 + 12 / 16 + 24 / 64)
    with pytest.raises(ValueError):
        ModelConfig((1, 2), "direct", (1, 1, 1))
    with pytest.raises(ValueError):
        ModelConfig((1, 2, 3), "nope", (1, 1, 1))
    assert parse_channels("6,12,24") == (6, 12, 24)
    with pytest.raises(ValueError):
        parse_channels("6,12")
    assert encoder_macs_per_pixel((16, 16, 16)) == 3 * 16 * 9 + 16 * 16 * 9 / 4 + 16 * 16 * 9 / 16


def test_model_config_is_hashable_and_reads_0_1_descriptions():
    from maxswitch.networks.nets import ModelConfig

    cfg = ModelConfig((4, 6, 8))
    assert hash(cfg) == hash(ModelConfig((4, 6, 8)))
    old = dict(cfg.to_dict(), extra={})  # 0.1's assets carry an unused "extra"
    assert ModelConfig.from_dict(old) == cfg
