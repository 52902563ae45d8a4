"""Everyday use through a real subprocess (issue 22): the README's encode-then-decode flow,
shell completion, man pages, tiny and transparent images, the messages of common mistakes,
training's feedback, refits that never replace a model, coding 3's tables from the CLI, bench
measuring what decode writes, and encode's targets."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_image, run_cli
from PIL import Image

from maxswitch import codec
from maxswitch.config import LADDER
from maxswitch.evaluation import metrics
from maxswitch.networks import zoo


@pytest.fixture
def env(tiny_model):
    return {"MAXSWITCH_MODELS": str(tiny_model[0].parent)}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        make_image(64, 48, seed=i).save(d / f"im{i}.png")
    return d


def one_line(r) -> str:
    err = r.stderr.decode()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ----------------------------------------------------------------- the README's flow, completion, man


def test_the_readme_encode_then_decode_never_touches_the_original(env, tmp_path):
    photo = tmp_path / "photo.png"
    make_image(48, 40).save(photo)
    before = photo.read_bytes()
    assert run_cli("encode", "photo.png", "-m", "tiny-4-6-8", env=env, cwd=tmp_path).returncode == 0
    r = run_cli("decode", "photo.msw", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "photo.dec.png").is_file() and photo.read_bytes() == before
    r = run_cli("decode", "photo.msw", "photo.png", env=env, cwd=tmp_path)  # the original's name
    err = one_line(r)
    assert r.returncode == 1 and "photo.dec.png" in err and "-f" not in err and photo.read_bytes() == before
    r = run_cli("decode", "photo.msw", env=env, cwd=tmp_path)  # its own earlier output: -f is the hint
    assert r.returncode == 1 and "use -f to overwrite" in one_line(r)


@pytest.mark.parametrize("shell, words", [("bash", "complete -o nosort"), ("zsh", "compdef"), ("fish", "complete")])
def test_shell_completion_scripts(shell, words):
    exe = shutil.which("maxswitch", path=os.path.dirname(sys.executable))
    assert exe, "the maxswitch command is not installed beside this Python"
    env = dict(os.environ, _MAXSWITCH_COMPLETE=f"{shell}_source")
    r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and words in r.stdout and "maxswitch" in r.stdout, r.stderr
    env = dict(os.environ, _MAXSWITCH_COMPLETE="bash_complete", COMP_WORDS="maxswitch fit", COMP_CWORD="1")
    r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "fit-tables" in r.stdout, r.stderr


def test_man_pages_are_found_after_make_install():
    """`make install` (the README's set-up) links docs/man/*.1 into the virtual environment, where
    man finds them once its bin folder is on PATH (`. .venv/bin/activate`)."""
    if not (Path(sys.prefix) / ".installed").is_file():
        pytest.skip("this Python's environment was not made by `make install`")
    if not shutil.which("man"):
        pytest.skip("no man command here")
    env = dict(os.environ, PATH=f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '')}")
    env.pop("MANPATH", None)
    for page in ("maxswitch", "maxswitch-encode", "maxswitch-fit-tables"):
        r = subprocess.run(["man", "-w", page], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, (page, r.stderr)
        assert Path(r.stdout.strip()).resolve() == (ROOT / "docs" / "man" / f"{page}.1").resolve()


# ----------------------------------------------------------------- images and messages


def test_a_1x1_image_compares_and_a_failed_compare_leaves_no_output(env, tmp_path):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "one.png")
    assert run_cli("encode", "one.png", "-m", "tiny-4-6-8", env=env, cwd=tmp_path).returncode == 0
    r = run_cli("decode", "one.msw", "one.dec.png", "--compare", "one.png", env=env, cwd=tmp_path)
    assert r.returncode == 0 and b"PSNR" in r.stderr and b"SSIM" not in r.stderr, r.stderr
    make_image(8, 8).save(tmp_path / "other.png")
    r = run_cli("decode", "one.msw", "x.png", "--compare", "other.png", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "cannot compare" in one_line(r) and not (tmp_path / "x.png").exists()


def test_alpha_is_dropped_with_a_warning_only_when_something_was_transparent(env, tmp_path):
    a = np.full((24, 32, 4), 255, np.uint8)
    a[..., :3] = np.asarray(make_image(32, 24))
    Image.fromarray(a, "RGBA").save(tmp_path / "opaque.png")
    a[0, 0, 3] = 0
    Image.fromarray(a, "RGBA").save(tmp_path / "alpha.png")
    r = run_cli("encode", "alpha.png", "-m", "tiny-4-6-8", env=env, cwd=tmp_path)
    assert r.returncode == 0 and b"warning: alpha.png: alpha not kept" in r.stderr, r.stderr
    r = run_cli("encode", "opaque.png", "-m", "tiny-4-6-8", env=env, cwd=tmp_path)
    assert r.returncode == 0 and b"warning" not in r.stderr, r.stderr


def test_an_unknown_model_suggests_the_name_and_where_to_look(env, tmp_path):
    make_image(16, 16).save(tmp_path / "a.png")
    r = run_cli("encode", "a.png", "-m", "tiny-4-6-9", env=env, cwd=tmp_path)
    err = one_line(r)
    assert r.returncode == 1 and "did you mean tiny-4-6-8?" in err and "maxswitch models" in err and "-q" in err


def test_a_non_image_input_is_named(env, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    r = run_cli("encode", "notes.txt", "n.msw", "-m", "tiny-4-6-8", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "notes.txt: not a readable image" in one_line(r)
    r = run_cli("encode", "-", "n.msw", "-m", "tiny-4-6-8", input=b"junk", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "stdin: not a readable image" in one_line(r)
    assert not (tmp_path / "n.msw").exists()


def test_compare_prints_what_decode_compare_prints(env, tmp_path):
    make_image(48, 40).save(tmp_path / "a.png")
    assert run_cli("encode", "a.png", "-m", "tiny-4-6-8", env=env, cwd=tmp_path).returncode == 0
    r = run_cli("decode", "a.msw", "b.png", "--compare", "a.png", env=env, cwd=tmp_path)
    psnr = re.search(rb"PSNR (\d+\.\d\d) dB, SSIM (\d\.\d{4})", r.stderr)
    r = run_cli("compare", "a.png", "b.png", env=env, cwd=tmp_path)
    lines = dict(line.split() for line in r.stdout.decode().splitlines())
    assert psnr and lines["psnr"] == psnr.group(1).decode() and lines["ssim"] == psnr.group(2).decode()
    assert re.fullmatch(r"\d\.\d{4}", lines["rmse"]) and lines["ms_ssim"] == "-"  # too small for MS-SSIM
    assert all(v == "-" or re.fullmatch(r"(\d+\.\d\d|\d\.\d{4}|inf)", v) for v in lines.values()), lines


def test_greyscale_is_measured_as_decode_writes_it(env, tiny_model, tmp_path):
    """bench, compare and decode --compare measure the greyscale file decode writes, not its RGB."""
    d = tmp_path / "grey"
    d.mkdir()
    make_image(64, 48, mode="L").save(d / "g.png")
    r = run_cli("encode", d / "g.png", tmp_path / "g.msw", "-m", "tiny-4-6-8", env=env)
    assert r.returncode == 0
    assert run_cli("decode", tmp_path / "g.msw", tmp_path / "back.png", env=env).returncode == 0
    back = np.asarray(Image.open(tmp_path / "back.png"))
    assert back.ndim == 2  # decode writes greyscale
    want = metrics.psnr(np.asarray(Image.open(d / "g.png")), back)
    r = run_cli("bench", d, "-m", str(tiny_model[0]), "--no-baselines", "--json", "-", "--quiet", "-j", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"]["psnr-rgb"][0] == pytest.approx(want, abs=1e-9)
    r = run_cli("compare", d / "g.png", tmp_path / "g.msw", "--json", env=env)
    assert json.loads(r.stdout)["psnr"] == pytest.approx(want, abs=1e-9)
    r = run_cli("decode", tmp_path / "g.msw", tmp_path / "c.png", "--compare", d / "g.png", env=env)
    assert f"PSNR {want:.2f} dB".encode() in r.stderr


# ----------------------------------------------------------------- encode's targets (the shipped ladder)


@pytest.fixture(scope="module")
def rungs(tmp_path_factory):
    """A small photograph-like image and, for every rung of config.LADDER, its file's bpp and the
    PSNR of its decoded image (measured here with the library, as -q k writes it)."""
    path = tmp_path_factory.mktemp("ladder") / "p.png"
    make_image(64, 48, seed=5).save(path)
    x = np.asarray(Image.open(path).convert("RGB"))
    out = []
    for q in range(1, len(LADDER) + 1):
        data = codec.encode(x, quality=q)
        out.append((8 * len(data) / x[..., 0].size, metrics.psnr(x, codec.decode_array(data)[0]), data))
    return path, out


def test_target_psnr_picks_the_cheapest_rung_that_reaches_it(rungs, tmp_path):
    path, measured = rungs
    target = sorted(p for _, p, _ in measured)[len(measured) // 2] - 1e-6  # a PSNR some rungs reach
    want = next(q for q, (_, p, _) in enumerate(measured, 1) if p >= target)
    r = run_cli("encode", path, tmp_path / "t.msw", "--target-psnr", f"{target:.6f}")
    assert r.returncode == 0 and f"-q {want} (".encode() in r.stderr, r.stderr
    assert (tmp_path / "t.msw").read_bytes() == measured[want - 1][2]  # the file of that rung
    assert f"{want} trial encode".encode() in r.stderr
    r = run_cli("encode", path, tmp_path / "u.msw", "--target-psnr", "99")  # out of reach: the best, said
    best = max(range(len(measured)), key=lambda i: measured[i][1]) + 1
    assert r.returncode == 0 and b"warning" in r.stderr and f"-q {best} (".encode() in r.stderr


def test_target_bpp_picks_the_best_rung_within_the_size(rungs, tmp_path):
    path, measured = rungs
    target = measured[2][0] + 1e-6  # rung 3's size: rungs 1..3 fit
    want = max(q for q, (b, _, _) in enumerate(measured, 1) if b <= target)
    r = run_cli("encode", path, tmp_path / "t.msw", "--target-bpp", f"{target:.6f}")
    assert r.returncode == 0 and f"-q {want} (".encode() in r.stderr, r.stderr
    assert (tmp_path / "t.msw").read_bytes() == measured[want - 1][2]
    r = run_cli("encode", path, tmp_path / "u.msw", "--target-bpp", "0.01")  # even -q 1 is over
    assert r.returncode == 0 and b"even -q 1 is over" in r.stderr and (tmp_path / "u.msw").is_file()
    r = run_cli("encode", path, tmp_path / "v.msw", "--target-bpp", "3", "-q", "2")
    assert r.returncode == 2 and not (tmp_path / "v.msw").exists()


# ----------------------------------------------------------------- training and refits


def _train(folder, out, *extra):
    return run_cli(
        "train", folder, "-o", out, "--name", "t-4-4-4", "--arch", "4,4,4", "--widths", "8,8,8", "--patch", "32",
        "--batch", "2", "-t", "1", "--workers", "0", *extra,
    )  # fmt: skip


def test_training_says_how_it_went_and_removes_its_checkpoint(folder, tmp_path):
    out = tmp_path / "m.safetensors"
    r = _train(folder, out, "--steps", "3", "--val", folder)
    assert r.returncode == 0, r.stderr
    last = r.stderr.decode().strip().splitlines()[-1]
    assert re.search(
        r"done: 3 steps in [\d.]+ min, training mse [\d.]+ \(~[\d.]+ dB\), validation PSNR [\d.]+ dB", last
    )
    assert "step 1/3" in r.stderr.decode()  # the first progress line, then every minute in a log
    assert not (tmp_path / "m.safetensors.ckpt").exists()
    r = _train(folder, tmp_path / "k.safetensors", "--steps", "2", "--keep-checkpoint")
    assert r.returncode == 0 and (tmp_path / "k.safetensors.ckpt").is_file()
    assert b"checkpoint kept" in r.stderr


def test_warm_up_is_scaled_to_the_budget():
    from maxswitch.training.train import WARMUP_SHARE, Recipe, _lr_at

    r = Recipe(lr=1.0, min_lr=0.0, warmup=100)
    assert _lr_at(r, 0.0, 0) == pytest.approx(0.01)  # starts low
    assert _lr_at(r, WARMUP_SHARE, 3) == pytest.approx(0.5 * (1 + np.cos(np.pi * WARMUP_SHARE)))  # done at 5%
    assert _lr_at(r, 0.001, 99) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.001)))  # or at 100 steps


def test_train_context_never_replaces_a_model(env, tiny_model, folder, tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(tiny_model[0].read_bytes())
    before = model.read_bytes()
    img = tmp_path / "a.png"
    make_image(40, 32).save(img)
    coded = tmp_path / "a.msw"
    assert run_cli("encode", img, coded, "-m", model, "--coding", "context", env=env).returncode == 0
    args = ["--steps", "2", "--batch", "2", "--patch", "32", "--workers", "0", "-t", "1"]
    r = run_cli("train-context", model, folder, "-o", model, "-f", *args, env=env)  # README 0.2's command
    err = one_line(r)
    assert r.returncode == 1 and "in place" in err and "-o NEW.safetensors" in err and model.read_bytes() == before
    new = tmp_path / "m2.safetensors"
    r = run_cli("train-context", model, folder, "-o", new, "--name", "mine", *args, env=env)
    assert r.returncode == 0 and b"done: 2 steps" in r.stderr, r.stderr
    m, src = zoo.load_model(str(new)), zoo.load_model(str(model))
    assert (m.name, m.version) == ("mine", src.version + 1) and m.context_digest != src.context_digest
    assert m.table_digest == src.table_digest  # the tables depend on the encoder alone: kept
    r = run_cli("train-context", model, folder, "-o", new, "-f", *args, env=env)  # a model with learned codings
    assert r.returncode == 1 and "undecodable" in one_line(r)
    r = run_cli("decode", coded, tmp_path / "a.dec.png", "-m", model, env=env)  # the old file still decodes
    assert r.returncode == 0, r.stderr


def test_fit_tables_writes_a_new_model_with_its_tables(env, tiny_model, folder, tmp_path):
    out = tmp_path / "t.safetensors"
    r = run_cli("fit-tables", tiny_model[0], folder, "-o", out, "--workers", "2", env=env)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "fit-tables: switches" in err and "fit-tables: tables" in err and "done:" in err.splitlines()[-1]
    m, src = zoo.load_model(str(out)), zoo.load_model(str(tiny_model[0]))
    assert m.version == src.version + 1 and m.table_digest != src.table_digest
    assert m.context_digest == src.context_digest and m.meta["record"]["table"]["images"] == 4
    img = tmp_path / "a.png"
    make_image(40, 32).save(img)
    assert run_cli("encode", img, tmp_path / "a.msw", "-m", out, "--coding", "table", env=env).returncode == 0
    assert run_cli("decode", tmp_path / "a.msw", tmp_path / "b.png", "-m", out, env=env).returncode == 0
    r = run_cli("fit-tables", out, folder, "-o", out, "-f", env=env)
    assert r.returncode == 1 and "in place" in one_line(r)


def test_fit_tables_defaults_are_the_recipe_s():
    from maxswitch.cli import fit_tables_cmd
    from maxswitch.training.tables_fit import TableRecipe

    defaults = {p.name: p.default for p in fit_tables_cmd.params}
    r = TableRecipe()
    assert (defaults["max_contexts"], defaults["samples_per_context"], defaults["alpha"]) == (
        r.max_contexts,
        r.samples_per_context,
        r.alpha,
    )
