"""Training through the CLI on a few generated images: asset written, resume, repeatability, errors."""

import pytest
import torch
from click.testing import CliRunner
from conftest import make_image

from maxswitch.cli import cli
from maxswitch.networks import zoo
from maxswitch.training.train import SPLITS, TrainError, list_images, select_split


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i in range(4):
        make_image(48, 40, seed=i).save(d / ("sub" if i % 2 else ".") / f"im{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def train_args(folder, out, *extra):
    return [
        "train",
        str(folder),
        "-o",
        str(out),
        "--name",
        "t-4-4-4",
        "--arch",
        "4,4,4",
        "--widths",
        "8,8,8",
        "--patch",
        "32",
        "--batch",
        "2",
        "--threads",
        "1",
        *extra,
    ]


def test_train_writes_a_usable_asset_and_repeats_with_a_seed(folder, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for out in (a, b):
        r = CliRunner().invoke(cli, train_args(folder, out, "--steps", "6", "--val", str(folder)))
        assert r.exit_code == 0, r.output
    # same seed, steps and threads: the same weights and record, but for the wall-clock minutes
    # it took (0.0 or 0.1 on a loaded machine: comparing whole files made this test flaky)
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = (zoo.load_model(str(p)).meta for p in (a, b))
    for meta in (ma, mb):
        meta["record"].pop("minutes")
    assert ma == mb
    m = zoo.load_model(str(a))
    assert m.name == "t-4-4-4" and m.config.channels == (4, 4, 4)
    assert m.meta["record"]["steps"] == 6 and m.meta["record"]["train_images"] == 4
    from maxswitch import codec

    data = codec.encode(make_image(16, 16), str(a))
    assert codec.decode(data, str(a)).size == (16, 16)


def test_resume_continues_from_the_checkpoint(folder, tmp_path):
    out = tmp_path / "m.safetensors"
    assert CliRunner().invoke(cli, train_args(folder, out, "--steps", "3", "--keep-checkpoint")).exit_code == 0
    r = CliRunner().invoke(cli, train_args(folder, out, "--steps", "5", "--resume"))
    assert r.exit_code == 0, r.output
    assert "resumed at step 3" in r.output
    assert zoo.load_model(str(out)).meta["record"]["steps"] == 5
    assert not (tmp_path / "m.safetensors.ckpt").exists()  # removed once the model is written


def test_empty_or_unreadable_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(cli, train_args(empty, tmp_path / "x.safetensors", "--steps", "1"))
    assert r.exit_code == 1 and "no images found" in r.output
    (empty / "bad.png").write_bytes(b"garbage")
    r = CliRunner().invoke(cli, train_args(empty, tmp_path / "x.safetensors", "--steps", "1"))
    assert r.exit_code == 1 and "could be read" in r.output
    r = CliRunner().invoke(cli, train_args(tmp_path / "nope", tmp_path / "x.safetensors", "--steps", "1"))
    assert r.exit_code == 1 and "no such folder or file" in r.output
    r = CliRunner().invoke(cli, train_args(empty, tmp_path / "x.safetensors", "--name", "Bad Name"))
    assert r.exit_code == 2


def test_splits_are_fixed_by_byte_order(tmp_path):
    names = [f"{c}.png" for c in "BaCbAc"] + [f"z{i:02d}.png" for i in range(24)]
    paths = [tmp_path / n for n in names]
    test = select_split(paths, "lfw-test")
    train = select_split(paths, "lfw-train")
    assert len(test) == 3 and len(test) + len(train) == 30 and not set(test) & set(train)
    assert test[0].name == "A.png"  # upper case sorts first in byte order
    assert len(select_split(paths, "holdout-val")) == 2
    with pytest.raises(TrainError):
        select_split(paths, "nope")
    assert set(SPLITS) >= {"lfw-train", "lfw-test"}


def test_list_images_is_recursive_and_sorted(folder):
    got = [str(p.relative_to(folder)) for p in list_images(folder)]
    assert got == ["im0.png", "im2.png", "sub/im1.png", "sub/im3.png"]  # notes.txt is not an image


def test_train_refuses_what_used_to_go_wrong_silently(folder, tmp_path):
    out = tmp_path / "m.safetensors"
    assert CliRunner().invoke(cli, train_args(folder, out, "--steps", "2", "--keep-checkpoint")).exit_code == 0
    before = out.read_bytes()
    r = CliRunner().invoke(cli, train_args(folder, out, "--steps", "2"))  # exists, no -f
    assert r.exit_code == 1 and "already exists" in r.output and out.read_bytes() == before
    r = CliRunner().invoke(cli, train_args(folder, out, "--steps", "2", "--resume"))  # budget spent
    assert r.exit_code == 1 and "already spent" in r.output and out.read_bytes() == before
    r = CliRunner().invoke(cli, train_args(folder, tmp_path / "n.safetensors", "--steps", "2", "--resume"))
    assert r.exit_code == 1 and "no checkpoint" in r.output
    for bad in (["--steps", "0"], ["--steps", "-3"], ["--batch", "0"], ["--minutes", "0"], ["--patch", "30"]):
        r = CliRunner().invoke(cli, train_args(folder, tmp_path / "z.safetensors", *bad))
        assert r.exit_code == 2, (bad, r.output)
    r = CliRunner().invoke(cli, train_args(folder, tmp_path / "z.safetensors", "--widths", "8,8"))
    assert r.exit_code == 2 and "decoder widths" in r.output
    r = CliRunner().invoke(cli, train_args(folder, out, "--steps", "2", "-f"))
    assert r.exit_code == 0 and "validation PSNR" not in r.output  # no --val: no "None"


def test_train_context_writes_the_next_version_with_a_working_context_model(folder, tmp_path, tiny_model):
    out = tmp_path / "ctx.safetensors"
    args = ["train-context", str(tiny_model[0]), str(folder), "-o", str(out), "--steps", "3", "--batch", "2"]
    r = CliRunner().invoke(cli, [*args, "--patch", "32", "--workers", "0", "-t", "1", "--val", str(folder)])
    assert r.exit_code == 0, r.output
    src, m = zoo.load_model(str(tiny_model[0])), zoo.load_model(str(out))
    assert m.version == src.version + 1 and m.context_digest != src.context_digest
    rec = m.meta["record"]["context"]
    assert rec["steps"] == 3 and rec["processes"] == 1 and rec["val_bits_per_switch"] > 0
    from maxswitch import codec

    data = codec.encode(make_image(40, 32), m, coding="context")
    assert codec.decode(data, m).size == (40, 32)


# ------------------------------------------------------------------ settings (the library behind the CLI)


def test_decoder_setup_builds_the_config_and_recipe_the_cli_used_to(tmp_path):
    from maxswitch import config
    from maxswitch.networks.nets import ModelConfig
    from maxswitch.training.dataset import default_workers
    from maxswitch.training.train import Recipe, decoder_setup

    out = str(tmp_path / "m.safetensors")
    s = decoder_setup("m-4-4-4", out, arch="4x4x4", widths="8,8,8", decoder="mirror", pool="avg", encoder_seed=3)
    assert s.config == ModelConfig((4, 4, 4), "mirror", (8, 8, 8), "avg", 3)
    assert s.checkpoint == out + ".ckpt" and s.encoder is None
    assert s.recipe == Recipe(patch=96, minutes=config.TRAIN_MINUTES, device="auto", workers=default_workers())
    # a step budget alone has no time budget; both are kept when both are given
    assert decoder_setup("m", out, steps=5).recipe.minutes is None
    assert decoder_setup("m", out, steps=5, minutes=2.5).recipe.minutes == 2.5
    assert decoder_setup("m", out, checkpoint="c.ckpt", workers=0, threads=None).recipe.threads == 2


def test_decoder_setup_starts_a_fine_what_decoder_from_a_what_decoder(tmp_path):
    import torch

    from maxswitch.networks.nets import WhatFineDecoder
    from maxswitch.networks.zoo import load_model
    from maxswitch.training.train import SettingError, decoder_setup

    out = str(tmp_path / "m.safetensors")
    kw = dict(arch="2,4,8", widths="64,48,32", what="2,4,8", encoder_from="what-2-4-8")
    s = decoder_setup("m", out, decoder="what-fine", init_from="what-2-4-8", **kw)
    assert s.config.decoder == "what-fine" and s.config.what == (2, 4, 8) and type(s.init) is WhatFineDecoder
    src = load_model("what-2-4-8").decoder
    codes = [torch.randint(0, 4, (1, c, 32 >> s, 32 >> s), dtype=torch.uint8) for s, c in enumerate((2, 4, 8))]
    pic = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(s.init(codes, pic), src(codes, pic), atol=1e-5)  # it starts as its source
    assert decoder_setup("m", out, decoder="direct", **kw).config.decoder == "what"  # --what alone: "what"
    with pytest.raises(SettingError, match="needs --what") as e:
        decoder_setup("m", out, decoder="what-fine", arch="2,4,8")
    assert e.value.setting == "decoder"


@pytest.mark.parametrize(
    "kw, setting",
    [
        ({"name": "Bad Name"}, "name"),
        ({"arch": "4,4"}, "arch"),
        ({"widths": "8,8"}, "widths"),
        ({"decoder": "nope"}, "decoder"),
        ({"pool": "min"}, "pool"),
        ({"patch": 30}, "patch"),
        ({"patch": 0}, "patch"),
        ({"batch": 0}, "batch"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"minutes": -1.0}, "minutes"),
        ({"workers": -1}, "workers"),
    ],
)
def test_decoder_setup_names_the_bad_setting_without_cli_flags(tmp_path, kw, setting):
    from maxswitch.errors import MaxswitchError
    from maxswitch.training.train import SettingError, decoder_setup

    kw = {"name": "m", **kw}
    with pytest.raises(SettingError) as e:
        decoder_setup(kw.pop("name"), str(tmp_path / "m.safetensors"), **kw)
    assert e.value.setting == setting and "--" not in str(e.value) and isinstance(e.value, MaxswitchError)


def test_decoder_setup_refuses_existing_outputs_unless_asked(tmp_path, tiny_model):
    from maxswitch.training.train import OutputExistsError, SettingError, decoder_setup

    out = tmp_path / "m.safetensors"
    (tmp_path / "m.safetensors.ckpt").write_bytes(b"")
    with pytest.raises(OutputExistsError, match="m.safetensors.ckpt already exists") as e:
        decoder_setup("m", str(out))
    assert "--" not in str(e.value)
    decoder_setup("m", str(out), resume=True)
    decoder_setup("m", str(out), replace=True)
    lent = decoder_setup("m", str(out), replace=True, arch="4,6,8", encoder_from=str(tiny_model[0]))
    assert lent.encoder is not None and lent.config.channels == (4, 6, 8)
    with pytest.raises(SettingError, match="has channels") as e:
        decoder_setup("m", str(out), replace=True, arch="4,4,4", encoder_from=str(tiny_model[0]))
    assert e.value.setting == "encoder_from"


def test_context_setup(tmp_path):
    from maxswitch import config
    from maxswitch.training.train import SettingError, context_setup

    recipe, hidden = context_setup(hidden="16,8", lr=1e-3, workers=0)
    assert hidden == (16, 8) and recipe.patch == 64 and recipe.minutes == config.CONTEXT_MINUTES
    assert recipe.min_lr == 1e-5 and recipe.warmup == 1 and recipe.threads == 2
    assert context_setup(steps=3)[0].minutes is None
    for kw, setting in (({"hidden": "32"}, "hidden"), ({"hidden": "0,4"}, "hidden"), ({"patch": 8}, "patch")):
        with pytest.raises(SettingError) as e:
            context_setup(**kw)
        assert e.value.setting == setting


def test_train_context_cli_reports_bad_settings_on_their_option(folder, tmp_path, tiny_model):
    out = tmp_path / "ctx.safetensors"
    base = ["train-context", str(tiny_model[0]), str(folder), "-o", str(out)]
    r = CliRunner().invoke(cli, [*base, "--hidden", "32"])
    assert r.exit_code == 2 and "--hidden" in r.output
    r = CliRunner().invoke(cli, [*base, "--patch", "20"])
    assert r.exit_code == 2 and "multiple of 8" in r.output
    out.write_bytes(b"")
    r = CliRunner().invoke(cli, [*base, "--steps", "1"])
    assert r.exit_code == 1 and "already exists (use -f to overwrite)" in r.output
