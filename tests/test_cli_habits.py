"""CLI habits of cwebp and zstd (issue 12) and the reliability promises of docs/SECURITY.md
(issue 13), through a real subprocess: many files in one call, -o/-c, --compare, compare,
special outputs, signals, closed and full stdout, one line per failure."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_image, run_cli


@pytest.fixture
def env(tiny_model):
    return {"MAXSWITCH_MODELS": str(tiny_model[0].parent)}


@pytest.fixture
def pngs(tmp_path):
    out = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        make_image(48 + 8 * i, 40, seed=i).save(p)
        out.append(p)
    return out


def no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.startswith(".maxswitch-")]


def test_batch_encode_and_decode_with_one_bad_file(env, pngs, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli(
        "encode", "--output-dir", out, "-j", "2", "-m", "tiny-4-6-8", "--quiet", pngs[0], bad, pngs[1], pngs[2], env=env
    )
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "bad.png" in lines[0] and "not a readable image" in lines[0]
    assert sorted(os.listdir(out)) == ["img0.msw", "img1.msw", "img2.msw"]
    dec = tmp_path / "dec"
    dec.mkdir()
    r = run_cli("decode", "--output-dir", dec, "-j", "2", "--quiet", *sorted(out.iterdir()), env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(dec)) == ["img0.dec.png", "img1.dec.png", "img2.dec.png"]
    # a second run refuses to overwrite, file by file, and leaves the others
    r = run_cli("decode", "--output-dir", dec, "--quiet", *sorted(out.iterdir()), env=env)
    assert r.returncode == 1 and len(r.stderr.decode().strip().splitlines()) == 3


def test_output_dir_collisions_are_usage_errors_and_a_missing_folder_is_made(env, pngs, tmp_path):
    (tmp_path / "a").mkdir()
    twin = tmp_path / "a" / "img0.png"
    twin.write_bytes(pngs[0].read_bytes())
    r = run_cli("encode", "--output-dir", tmp_path / "x", "-m", "tiny-4-6-8", pngs[0], twin, env=env)
    assert r.returncode == 2 and b"both be written" in r.stderr and not (tmp_path / "x").exists()
    r = run_cli("encode", "--output-dir", tmp_path / "new" / "sub", "-m", "tiny-4-6-8", "--quiet", *pngs, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "new" / "sub")) == ["img0.msw", "img1.msw", "img2.msw"]
    r = run_cli("decode", "--output-dir", tmp_path / "dec", "--quiet", tmp_path / "new" / "sub" / "img0.msw", env=env)
    assert r.returncode == 0 and (tmp_path / "dec" / "img0.dec.png").is_file(), r.stderr
    r = run_cli("encode", "--output-dir", pngs[1], "-m", "tiny-4-6-8", pngs[0], env=env)  # a file, not a folder
    assert r.returncode == 2 and b"not a folder" in r.stderr


def test_dash_o_dash_c_and_default_names(env, pngs, tmp_path):
    r = run_cli("encode", pngs[0], "-o", tmp_path / "x.msw", "-m", "tiny-4-6-8", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("encode", pngs[0], "-c", "-m", "tiny-4-6-8", "--quiet", env=env)
    assert r.returncode == 0 and r.stdout == (tmp_path / "x.msw").read_bytes()
    r = run_cli("encode", pngs[1], "-m", "tiny-4-6-8", "--quiet", env=env)  # default: img1.msw
    assert r.returncode == 0 and (tmp_path / "img1.msw").is_file()
    r = run_cli("decode", tmp_path / "x.msw", "-c", env=env)
    assert r.returncode == 0 and r.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_cli("encode", pngs[0], "-o", tmp_path / "y.msw", "-c", "-m", "tiny-4-6-8", env=env)
    assert r.returncode == 2


def test_an_image_extension_is_not_an_encoder_output(env, pngs, tmp_path):
    r = run_cli("encode", pngs[0], tmp_path / "x.webp", "-m", "tiny-4-6-8", env=env)
    assert r.returncode == 2 and not (tmp_path / "x.webp").exists()


def test_decode_compare_and_the_compare_command(env, pngs, tmp_path):
    msw = tmp_path / "x.msw"
    assert run_cli("encode", pngs[0], msw, "-m", "tiny-4-6-8", "--quiet", env=env).returncode == 0
    r = run_cli("decode", msw, tmp_path / "x.png", "--compare", pngs[0], "--quiet", env=env)
    assert r.returncode == 0 and b"PSNR" in r.stderr and b"SSIM" in r.stderr
    r = run_cli("compare", pngs[0], tmp_path / "x.png", env=env)
    assert r.returncode == 0 and b"psnr" in r.stdout
    r = run_cli("compare", pngs[0], msw, env=env)  # a .msw file is decoded first
    assert r.returncode == 0 and b"psnr" in r.stdout
    r = run_cli("compare", pngs[0], pngs[1], env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1


def test_verbose_prints_timings(env, pngs, tmp_path):
    r = run_cli("encode", pngs[0], tmp_path / "v.msw", "-m", "tiny-4-6-8", "-v", env=env)
    assert r.returncode == 0 and b"encode" in r.stderr and b" ms" in r.stderr


def test_empty_model_name_is_a_one_line_usage_error_and_the_bare_command_prints_the_help(env, pngs, tmp_path):
    r = run_cli("encode", pngs[0], tmp_path / "e.msw", "-m", "", env=env)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    r = run_cli(env=env)  # the help, on stderr (stdout is for data), as a usage error
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b"" and err.startswith("Usage: maxswitch")
    assert "encode" in err and "decode" in err and "-h, --help" in err


def test_output_exists_is_checked_before_the_work(env, pngs, tmp_path):
    out = tmp_path / "x.msw"
    out.write_bytes(b"keep")
    r = run_cli("encode", pngs[0], out, "-m", "tiny-4-6-8", "-v", env=env)
    assert r.returncode == 1 and b"already exists" in r.stderr and b"encode" not in r.stderr.split(b"error")[0]
    assert out.read_bytes() == b"keep"


# ----------------------------------------------------------------- special outputs (issue 13, 4)


def test_character_devices_are_written_through_never_replaced(env, pngs):
    for force in ([], ["-f"]):
        r = run_cli("encode", pngs[0], "-o", "/dev/null", "-m", "tiny-4-6-8", "--quiet", *force, env=env)
        assert r.returncode == 0, r.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_fifos_are_written_through(env, pngs, tmp_path):
    fifo = tmp_path / "pipe.msw"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    r = run_cli("encode", pngs[0], fifo, "-m", "tiny-4-6-8", "--quiet", env=env)
    data = reader.communicate(timeout=60)[0]
    assert r.returncode == 0 and data[:4] == b"\x89MSW" and os.path.exists(fifo) and not os.path.isfile(fifo)


def test_symlinks_are_refused_even_with_force(env, pngs, tmp_path):
    target = tmp_path / "t.msw"
    target.write_bytes(b"keep")
    link = tmp_path / "l.msw"
    link.symlink_to(target)
    r = run_cli("encode", pngs[0], link, "-f", "-m", "tiny-4-6-8", env=env)
    assert r.returncode == 1 and b"symbolic link" in r.stderr
    assert link.is_symlink() and target.read_bytes() == b"keep"


# ----------------------------------------------------------------- signals and stdout (issue 13)


def test_a_signal_during_the_write_leaves_no_temporary_file(monkeypatch, tmp_path):
    """The CLI's handler removes the temporary files being written, then ends the process:
    here the handler's cleanup runs in the middle of write_atomic (in process)."""
    from maxswitch import atomic

    seen = []

    def signal_arrives(fd):
        seen.append(os.listdir(tmp_path))
        atomic.remove_temporaries()  # what the handler does before os._exit
        raise SystemExit(143)

    monkeypatch.setattr(atomic.os, "fsync", signal_arrives)
    with pytest.raises(SystemExit):
        atomic.write_atomic(str(tmp_path / "x.msw"), b"data" * 1000)
    assert len(seen[0]) == 1 and seen[0][0].startswith(".maxswitch-")  # it was there
    assert os.listdir(tmp_path) == [] and not atomic._LIVE


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_to_a_running_encode_exits_128_plus_n_without_files(env, tmp_path, sig):
    big = tmp_path / "big.png"
    make_image(1200, 900, seed=1).save(big)
    out = tmp_path / "big.msw"
    e = dict(os.environ, **env)
    p = subprocess.Popen(
        [sys.executable, "-m", "maxswitch", "encode", str(big), str(out), "-m", "tiny-4-6-8", "-t", "1"],
        stderr=subprocess.PIPE,
        env=e,
        cwd=ROOT,
    )
    time.sleep(2.5)  # past the start-up: inside reading, encoding or writing
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    assert no_temp_files(tmp_path)
    if p.returncode == 0:  # finished before the signal: a whole file
        assert out.read_bytes()[:4] == b"\x89MSW"
    else:
        assert p.returncode == 128 + sig, err
        assert len(err.splitlines()) == 1 and not out.exists()


def test_closed_stdout_is_a_failure_not_success(env, pngs, tmp_path):
    msw = tmp_path / "x.msw"
    assert run_cli("encode", pngs[0], msw, "-m", "tiny-4-6-8", "--quiet", env=env).returncode == 0
    e = dict(os.environ, **env, PYTHONUNBUFFERED="1")
    big = tmp_path / "big.msw"
    make_image(600, 400).save(tmp_path / "big.png")
    assert run_cli("encode", tmp_path / "big.png", big, "-m", "tiny-4-6-8", "--quiet", env=env).returncode == 0
    p = subprocess.Popen(
        [sys.executable, "-m", "maxswitch", "decode", str(big), "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=e,
    )
    p.stdout.read(10)
    p.stdout.close()  # as `| head -c 10`
    p.wait(timeout=120)
    assert p.returncode != 0


def test_full_stdout_is_one_line_and_exit_1(env, pngs, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    msw = tmp_path / "x.msw"
    assert run_cli("encode", pngs[0], msw, "-m", "tiny-4-6-8", "--quiet", env=env).returncode == 0
    e = dict(os.environ, **env)
    with open("/dev/full", "wb") as full:
        for args in (["info", str(msw)], ["decode", str(msw), "-"]):
            r = subprocess.run([sys.executable, "-m", "maxswitch", *args], stdout=full, stderr=subprocess.PIPE, env=e)
            assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, (args, r.stderr)


def test_file_named_model_is_required_without_dash_m(env, tiny_model, pngs, tmp_path):
    """A file made by a model that is not shipped is refused, naming it, even when a shipped
    model shares its encoder; with -m it decodes."""
    from maxswitch.networks.zoo import load_model, save_model

    m = load_model(str(tiny_model[0]))
    mine = tmp_path / "mine.safetensors"
    save_model(mine, "my-model", 1, m.config, m.encoder, m.decoder, context=m.context)
    msw = tmp_path / "x.msw"
    assert run_cli("encode", pngs[0], msw, "-m", mine, "--quiet", env=env).returncode == 0
    r = run_cli("decode", msw, tmp_path / "x.png", env=env)
    assert r.returncode == 1 and b"my-model" in r.stderr and not (tmp_path / "x.png").exists()
    r = run_cli("decode", msw, tmp_path / "x.png", "-m", mine, "--quiet", env=env)
    assert r.returncode == 0, r.stderr


def test_dropped_icc_profile_and_exif_are_said(env, tmp_path):
    from PIL import Image

    p = tmp_path / "icc.png"
    exif = Image.Exif()
    exif[0x010F] = "maker"
    make_image(32, 24).save(p, icc_profile=b"\0" * 128, exif=exif)
    r = run_cli("encode", p, tmp_path / "icc.msw", "-m", "tiny-4-6-8", env=env)
    assert r.returncode == 0 and b"ICC profile and EXIF not kept" in r.stderr
    r = run_cli("encode", p, tmp_path / "q.msw", "-m", "tiny-4-6-8", "--quiet", env=env)
    assert r.returncode == 0 and r.stderr == b""


def test_bench_json_to_stdout(env, pngs, tiny_model):
    import json

    folder = pngs[0].parent
    r = run_cli(
        "bench", folder, "-m", str(tiny_model[0]), "--no-baselines", "--json", "-", "--quiet", "-j", "1", env=env
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["name"].startswith("maxswitch") and "Rate and distortion" in r.stderr.decode()
    assert not (folder / "-").exists()


def test_man_pages_are_those_of_the_cli():
    """docs/man/*.1 are generated from the CLI's help (tools/make_man.py): a change to an
    option or a help text must come with `make man`."""
    pytest.importorskip("click_man")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "tools" / "make_man.py"), "--check"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    page = (root / "docs" / "man" / "maxswitch-encode.1").read_text()
    assert ".SH OPTIONS" in page and "--output-dir" in page.replace("\\-", "-")
