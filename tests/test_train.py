"""Training through the CLI on a few generated images: asset written, resume, repeatability, errors."""

import pytest
from click.testing import CliRunner
from conftest import make_image

from maxswitch import zoo
from maxswitch.cli import cli
from maxswitch.train import SPLITS, TrainError, list_images, select_split


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
    assert a.read_bytes() == b.read_bytes()  # same seed, steps and threads: same weights
    m = zoo.load_model(str(a))
    assert m.name == "t-4-4-4" and m.config.channels == (4, 4, 4)
    assert m.meta["record"]["steps"] == 6 and m.meta["record"]["train_images"] == 4
    from maxswitch import codec

    data = codec.encode(make_image(16, 16), str(a))
    assert codec.decode(data, str(a)).size == (16, 16)


def test_resume_continues_from_the_checkpoint(folder, tmp_path):
    out = tmp_path / "m.safetensors"
    assert CliRunner().invoke(cli, train_args(folder, out, "--steps", "3")).exit_code == 0
    r = CliRunner().invoke(cli, train_args(folder, out, "--steps", "5", "--resume"))
    assert r.exit_code == 0, r.output
    assert "resumed at step 3" in r.output
    assert zoo.load_model(str(out)).meta["record"]["steps"] == 5


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
    assert CliRunner().invoke(cli, train_args(folder, out, "--steps", "2")).exit_code == 0
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
