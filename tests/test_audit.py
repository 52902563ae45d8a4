"""``maxswitch audit`` on tiny networks and a few generated images: the report, the refusals, and
its agreement with ``maxswitch train`` and the shipped decoders (maxswitch/audit*.py)."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_image, run_cli

from maxswitch.audit.decoder import SwitchDecoder, load_direct
from maxswitch.audit.run import decoder_specs, pack_switches
from maxswitch.bitstream import switches as sw
from maxswitch.cli import cli, main

TINY = '''
import torch
from torch import nn


class Tiny(nn.Module):
    """Two max poolings of different shapes: 2x2 stride 2, then ResNet's overlapping 3x3 stride 2."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(4, 5, 3, padding=1)
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x):
        return self.pool2(self.c2(self.pool1(self.c1(x)))).mean()


def tiny():
    return Tiny()


def flat():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2))


def broken():
    raise RuntimeError("no GPU here")
'''


@pytest.fixture
def net_file(tmp_path):
    p = tmp_path / "tinynet.py"
    p.write_text(TINY)
    return p


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        make_image(48, 40, seed=i).save(d / f"im{i}.png")
    return d


def audit_args(model, data, *extra):
    return ["audit", str(model), str(data), "--steps", "2", "--batch", "2", "--patch", "32", "--workers", "0", *extra]


def run(*args):
    return CliRunner().invoke(cli, [*audit_args(*args[:2]), *args[2:]])


def test_tiny_network_report_has_every_field(net_file, images, tmp_path):
    out, grid = tmp_path / "r.json", tmp_path / "g.png"
    r = run(f"{net_file}:tiny", images, "--random", "3", "--json", str(out), "--grid", str(grid), "--inputs", "both")
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert [(p["name"], p["window"], p["positions"]) for p in rep["pools"]] == [
        ("pool1", "2x2/2", 4),
        ("pool2", "3x3/2 pad 1", 9),
    ]
    assert [row["key"] for row in rep["rows"]] == ["L1", "L2", "L1-2"]
    assert [row["key"] for row in rep["controls"]] == ["none", "avg"]
    for row in rep["rows"] + rep["controls"]:
        assert 0 < row["psnr"] < 60 and 0 <= row["ssim"] <= 1
        assert row["ms_ssim"] is None  # 48 x 40 images: too small for MS-SSIM
    l1, l2, both = rep["rows"]
    # raw bits: 4 channels x (48/2 x 40/2) windows x 2 bits, then 5 x (12 x 10) x log2(9), per pixel
    assert l1["raw_bpp"] == pytest.approx(4 * 24 * 20 * 2 / (48 * 40), abs=1e-3)
    assert l2["raw_bpp"] == pytest.approx(5 * 12 * 10 * np.log2(9) / (48 * 40), abs=1e-3)
    assert both["raw_bpp"] == pytest.approx(l1["raw_bpp"] + l2["raw_bpp"], abs=1e-3)
    assert 0 < l1["zstd_bpp"] and l1["learned_bpp"] is None
    assert rep["model"]["weights"]["source"] == "random" and rep["model"]["weights"]["seed"] == 3
    assert len(rep["model"]["weights"]["state_sha256"]) == 64
    assert rep["training"]["steps"] == 2 and rep["training"]["recipe"]["batch"] == 2
    assert rep["data"]["train_images"] == 3 and rep["data"]["val_images"] == 1  # the holdout rule
    assert rep["reference"] is None
    assert "pool2" in r.output and "control: no switches" in r.output  # the table on stdout
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size[1] > 40 and im.size[0] > 6 * 48  # original, three layers' rows, two controls


def test_same_seed_same_report(net_file, images, tmp_path):
    reps = []
    for name in ("a.json", "b.json"):
        r = run(f"{net_file}:tiny", images, "--random", "0", "--layers", "2", "--json", str(tmp_path / name))
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / name).read_text())
        rep["training"].pop("minutes")
        reps.append(rep)
    assert reps[0] == reps[1]


def test_layers_by_name_markdown_and_json_on_stdout(net_file, images):
    r = run(f"{net_file}:tiny", images, "--layers", "pool2", "--controls", "none", "--markdown", "--json", "-")
    assert r.exit_code == 0, r.output
    start = r.stdout.index("{")
    rep = json.loads(r.stdout[start:])
    assert [row["key"] for row in rep["rows"]] == ["L2"] and rep["controls"] == []
    assert "| layer | name |" in r.output


def one_line_failure(capsys, *args) -> str:
    rc = main(list(args))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.count("\n") == 1, err
    return err


def test_refusals_are_one_line(net_file, images, tmp_path, capsys):
    err = one_line_failure(capsys, *audit_args(f"{net_file}:flat", images))
    assert "no 2-D max pooling" in err
    err = one_line_failure(capsys, *audit_args("no_such_package.nets:vgg", images))
    assert "cannot import no_such_package.nets" in err
    err = one_line_failure(capsys, *audit_args(f"{tmp_path}/missing.py:tiny", images))
    assert "no such file" in err
    err = one_line_failure(capsys, *audit_args(f"{net_file}:nope", images))
    assert "has no function 'nope'" in err
    err = one_line_failure(capsys, *audit_args(f"{net_file}:broken", images))
    assert "failed: RuntimeError: no GPU here" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = one_line_failure(capsys, *audit_args(f"{net_file}:tiny", empty))
    assert "no images found" in err
    err = one_line_failure(capsys, *audit_args("not-a-model", images))
    assert "not a maxswitch model" in err


def test_refusal_through_a_real_process(net_file, images):
    r = run_cli(*audit_args(f"{net_file}:flat", images))
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b""
    assert err.startswith("maxswitch: error: the network has no 2-D max pooling") and err.count("\n") == 1, err


def test_weights_are_loaded_safely_and_must_fit(net_file, images, tmp_path, capsys):
    from safetensors.torch import save_file

    from maxswitch.audit.model import import_factory

    net = import_factory(f"{net_file}:tiny")()
    good = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(good))
    pt = tmp_path / "w.pt"
    torch.save({"state_dict": net.state_dict()}, pt)
    for w in (good, pt):
        r = run(f"{net_file}:tiny", images, "--weights", str(w), "--layers", "1", "--controls", "none")
        assert r.exit_code == 0, r.output
    sd = dict(net.state_dict())
    sd["c2.weight"] = torch.zeros(7, 4, 3, 3)
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad))
    err = one_line_failure(capsys, *audit_args(f"{net_file}:tiny", images), "--weights", str(bad))
    assert "do not fit the network" in err and "c2.weight: file (7, 4, 3, 3), network (5, 4, 3, 3)" in err
    del sd["c2.weight"]
    sd["extra"] = torch.zeros(1)
    save_file(sd, str(bad))
    err = one_line_failure(capsys, *audit_args(f"{net_file}:tiny", images), "--weights", str(bad))
    assert "1 missing (c2.weight)" in err and "1 unexpected (extra)" in err

    class Code:  # a pickle that would run code: weights_only refuses it
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Code()}, evil)
    err = one_line_failure(capsys, *audit_args(f"{net_file}:tiny", images), "--weights", str(evil))
    assert "not a plain state dict" in err and "pwned" not in err


def test_bad_settings_are_usage_errors(net_file, images):
    bad = (["--layers", "7"], ["--layers", "pool9"], ["--patch", "30"], ["--resume"], ["--val-split", "odd"])
    for extra in bad:
        r = run(f"{net_file}:tiny", images, *extra)
        assert r.exit_code == 2, (extra, r.output)


def test_decoder_specs():
    specs = decoder_specs([1, 3], "both", "each")
    assert {k: v[0] for k, v in specs.items()} == {
        "L1": [1],
        "L3": [3],
        "L1-3": [1, 2, 3],
        "none-L1": [1],
        "avg-L1": [1],
        "none-L3": [3],
        "avg-L3": [3],
    }
    assert list(decoder_specs([2], "upto", "deepest")) == ["L1-2", "none", "avg"]


def test_packing_two_bit_switches_is_format_v1s_and_wider_ones_round_trip():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (3, 5, 7), dtype=np.uint8)
    assert pack_switches(codes, 4) == bytes(sw.pack([codes]))
    codes = rng.integers(0, 9, (2, 5, 7))
    packed = np.frombuffer(pack_switches(codes, 9), np.uint8)
    bits = np.unpackbits(packed)[: codes.size * 4].reshape(-1, 4)
    assert np.array_equal(bits @ np.array([8, 4, 2, 1]), codes.reshape(-1))


def test_the_audit_decoder_is_the_shipped_decoder_for_three_stages():
    """Reading natural-16-16-16's three stages, the audit's decoder family holds the shipped
    decoder itself: its weights load, and the image is the same."""
    from maxswitch.networks.zoo import load_model

    m = load_model("natural-16-16-16")
    dec = SwitchDecoder([(1, 16, 4), (2, 16, 4), (3, 16, 4)])
    load_direct(dec, m.decoder)
    img = torch.from_numpy(np.array(make_image(64, 40, seed=5))).permute(2, 0, 1)[None].contiguous()
    codes = m.encoder(img)
    with torch.no_grad():
        assert torch.equal(dec(codes, (40, 64)), m.decoder(codes))


def test_auditing_a_maxswitch_model_trains_what_train_trains(tiny_zoo, images, tmp_path):
    """The decoder that reads all three stages of a maxswitch model starts and trains exactly as
    ``maxswitch train --encoder-from`` does: same weights after the same steps."""
    from safetensors.torch import load_file

    asset, ck = tmp_path / "t.safetensors", tmp_path / "a.ckpt"
    common = ["--steps", "3", "--batch", "2", "--patch", "32", "--workers", "0", "--seed", "4"]
    r = CliRunner().invoke(
        cli,
        ["train", str(images), "-o", str(asset), "--name", "t", "--arch", "4,6,8", "--encoder-from", tiny_zoo]
        + ["--split", "holdout-train", "-t", "2", *common],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli,
        ["audit", tiny_zoo, str(images), "--layers", "3", "--inputs", "upto", "--controls", "none"]
        + ["--checkpoint", str(ck), "--json", str(tmp_path / "r.json"), *common],
    )
    assert r.exit_code == 0, r.output
    trained = load_file(str(asset))
    audited = torch.load(ck, weights_only=True)["module"]
    n = 0
    for k, v in trained.items():
        if k.startswith("decoder."):
            head, rest = k[len("decoder.") :].split(".", 1)
            assert torch.equal(v, audited[f"decoders.L1-3.levels.{3 - int(head[1])}.{rest}"]), k
            n += 1
    assert n == 18
    rep = json.loads((tmp_path / "r.json").read_text())
    row = rep["rows"][0]
    assert row["reads"] == [1, 2, 3] and row["learned_bpp"] > 0 and row["zstd_bpp"] > 0
    assert rep["reference"]["decoder"] == f"shipped decoder of {tiny_zoo}" and rep["model"]["kind"] == "maxswitch"
    # a checkpoint that has spent its budget is measured again without training
    r = CliRunner().invoke(
        cli,
        ["audit", tiny_zoo, str(images), "--layers", "3", "--inputs", "upto", "--controls", "none"]
        + ["--checkpoint", str(ck), "--resume", "--json", str(tmp_path / "again.json"), *common],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "again.json").read_text())["rows"] == rep["rows"]
