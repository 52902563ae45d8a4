"""Hardening against bad input (docs/SECURITY.md): fuzzing, corruption, bounds, nothing lost,
every kind of image, tampered weights.

Complements test_format.py (truncation, field ranges), test_switches.py, test_image.py (mode
policy) and test_cli.py (exit codes); nothing here repeats them.
"""

import errno
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_image, png_bytes
from PIL import Image

import maxswitch
from maxswitch import atomic, cli, codec
from maxswitch import image as imagelib
from maxswitch.bitstream import format as fmt
from maxswitch.bitstream import switches as sw
from maxswitch.networks import zoo

sys.path.insert(0, str(ROOT / "fuzz"))
import harness  # noqa: E402

DOCUMENTED = (fmt.FormatError, sw.PayloadError, zoo.ModelError, codec.CodecError)


def refresh_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def call(argv, capsys):
    """Run the CLI's main() in this process; return (exit code, stdout, stderr)."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maxswitch: "), err


# ------------------------------------------------------------------ fuzzing


@pytest.fixture(scope="module")
def fuzz_state(tmp_path_factory):
    """The fuzz harness's tiny model and seeds; MAXSWITCH_MODELS restored afterwards."""
    old = os.environ.get("MAXSWITCH_MODELS")
    st = harness.setup(str(tmp_path_factory.mktemp("fuzzmodels")))
    yield st
    if old is None:
        os.environ.pop("MAXSWITCH_MODELS", None)
    else:
        os.environ["MAXSWITCH_MODELS"] = old
    zoo._LOADED.clear()


@pytest.fixture
def fuzz_env(fuzz_state, monkeypatch):
    monkeypatch.setenv("MAXSWITCH_MODELS", fuzz_state["models_dir"])
    monkeypatch.setattr(zoo, "_LOADED", {})
    return fuzz_state


def test_short_deterministic_fuzz_run_finds_nothing(fuzz_env, tmp_path):
    stats = harness.run_random(count=3000, seed=2024, findings_dir=str(tmp_path))
    d = stats.as_dict()
    assert d["unique_findings"] == 0, json.dumps(d["findings"], indent=1)
    # the mutator gets past the CRC and zstd: some mutants decode, many are refused
    assert d["outcomes"].get("refused", 0) > 1000
    assert d["outcomes"].get("decoded", 0) > 0 and d["outcomes"].get("info-only", 0) > 0


def test_short_deterministic_image_fuzz_run_finds_nothing(tmp_path):
    stats = harness.run_random_images(count=1500, seed=7, findings_dir=str(tmp_path))
    d = stats.as_dict()
    assert d["unique_findings"] == 0, json.dumps(d["findings"], indent=1)
    assert d["outcomes"].get("refused", 0) > 100 and d["outcomes"].get("decoded", 0) > 100


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "fuzz" / "regressions").glob("image-*")))
def test_damaged_images_make_no_noise_on_stderr(name, tiny_zoo, tmp_path, capfd):
    """Pillow's warnings and log lines, and libtiff's prints from C, would add lines to the CLI's
    one-line error (found by fuzz/ --target image)."""
    src = ROOT / "fuzz" / "regressions" / name
    harness.check_image(src.read_bytes())  # raises Finding on an escaped warning or a print
    rc = cli.main(["encode", str(src), str(tmp_path / "x.msw"), "-m", tiny_zoo, "--quiet"])
    err = capfd.readouterr().err
    if rc == 0:
        assert err == ""
    else:
        assert rc == 1
        assert_one_line_error(err)


def test_seeds_decode_and_fuzz_regressions_are_refused(fuzz_env):
    for s in fuzz_env["seeds"]:
        assert harness.check(s) == "decoded"
    regressions = sorted((ROOT / "fuzz" / "regressions").glob("*.msw"))  # found by fuzz/
    assert regressions
    for p in regressions:
        harness.check(p.read_bytes())  # raises Finding if the old crash is back
        with pytest.raises(DOCUMENTED):
            codec.decode(p.read_bytes())


def test_channel_plan_that_disagrees_with_the_model_is_refused(fuzz_env):
    data = bytearray(fuzz_env["seeds"][3])
    lay = harness.layout(bytes(data))
    struct.pack_into("<HHH", data, lay["channels"], 4, 6, 9)
    data = harness.rebuild(bytes(data), payload=sw.compress(bytes(fmt.raw_size(40, 24, (4, 6, 9)))))
    assert maxswitch.info(data)["channels"] == [4, 6, 9]  # a well-formed file ...
    with pytest.raises(fmt.FormatError, match="channel plan"):  # ... that this model cannot decode
        maxswitch.decode(data)


# ------------------------------------------------------------------ corruption


def small_file(fuzz_env) -> bytes:
    data = fuzz_env["seeds"][0]  # 1x1 image, channels 4,6,8
    assert len(data) < 200
    return data


def test_every_single_bit_flip_of_a_valid_file_is_refused(fuzz_env):
    data = small_file(fuzz_env)
    assert maxswitch.decode(data).size == (1, 1)
    t0 = time.perf_counter()
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(DOCUMENTED):
            maxswitch.decode(bytes(bad))
    assert time.perf_counter() - t0 < 30


def test_bit_flips_behind_a_repaired_crc_are_refused_or_harmless(fuzz_env):
    """An attacker can fix the CRC; then the zstd checksum, field checks and model checks stand."""
    data = small_file(fuzz_env)
    h, _ = fmt.read(data)
    payload_start = len(data) - 4 - len(fmt.read(data)[1])
    accepted = []
    for i in range((len(data) - 4) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        try:
            img = maxswitch.decode(refresh_crc(bytes(bad)))
        except DOCUMENTED:
            continue
        accepted.append(i // 8)
        assert img.size[0] * img.size[1] <= 1 << 24
    # accepted flips can only be in header fields that are free to vary (colour kind, bit
    # depth, width and height within the padded size) or in zstd's frame header (window size),
    # never in the switch data itself: the zstd content checksum covers it
    checked_body = range(payload_start + 6, len(data) - 4 - 4)
    assert not any(b in checked_body for b in accepted), sorted(set(accepted))


def test_bit_flips_through_the_cli(fuzz_env, tmp_path, capsys):
    data = small_file(fuzz_env)
    for byte in (0, 8, 12, 20, 40, len(data) // 2, len(data) - 9, len(data) - 1):
        bad = bytearray(data)
        bad[byte] ^= 0x04
        p = tmp_path / f"f{byte}.msw"
        p.write_bytes(bytes(bad))
        rc, out, err = call(["decode", p, tmp_path / f"f{byte}.png"], capsys)
        assert rc == 1, (byte, err)
        assert_one_line_error(err)
        assert not (tmp_path / f"f{byte}.png").exists()


def test_bit_flips_in_a_real_subprocess(fuzz_env, tmp_path):
    """A few flips through `python -m maxswitch decode` itself (header, payload, CRC)."""
    from conftest import run_cli

    data = small_file(fuzz_env)
    for byte, bit in ((13, 0x01), (len(data) // 2, 0x80), (len(data) - 2, 0x10)):
        bad = bytearray(data)
        bad[byte] ^= bit
        r = run_cli("decode", "-", "-", input=bytes(bad), env={"MAXSWITCH_MODELS": fuzz_env["models_dir"]})
        assert r.returncode == 1 and r.stdout == b"", byte
        err = r.stderr.decode()
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "checksum" in err, err


# ------------------------------------------------------------------ bounds


def crafted(width, height, channels, payload, raw=None, model="fuzz-4-6-8", digest=bytes(16)):
    raw = fmt.raw_size(width, height, channels) if raw is None else raw
    body = fmt.MAGIC + struct.pack("<BBBBII", 1, 1, 3, 8, width, height) + bytes([len(model)]) + model.encode()
    body += digest + struct.pack("<HHHII", *channels, raw, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_header_sizes_refused_before_allocation():
    """A 1 MiB x 1 MiB, 65535-channel header: refused by the pixel limit at once, in info too."""
    data = crafted(1 << 20, 1 << 20, (65535, 65535, 65535), b"\x28\xb5\x2f\xfd" + bytes(20), raw=0xFFFFFFFF)
    tracemalloc.start()
    try:
        for f in (maxswitch.info, maxswitch.decode):
            with pytest.raises(fmt.FormatError, match="over the limit"):
                f(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_payload_size_is_bounded_before_zstd_inflates():
    """A 64 MiB zstd bomb behind a header that promises 24 bytes: refused without inflating
    (its length alone is more than 24 bytes of switches can take)."""
    bomb = sw.compress(bytes(64 << 20), level=1)
    assert len(bomb) < 1 << 16
    data = crafted(1, 1, (4, 6, 8), bomb)
    tracemalloc.start()
    try:
        with pytest.raises(fmt.FormatError, match="more than this image's switches can take"):
            maxswitch.info(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_frame_that_lies_about_its_size_is_stopped_at_the_promise():
    """A frame whose header says 100 bytes but whose blocks hold 64 MiB is cut off, not inflated."""
    frame = bytearray(sw.compress(bytes(64 << 20), level=1))
    # rewrite the frame header: single-segment, 1-byte content size 100 (FHD 0x20 | checksum 0x04)
    real = zstandard_blocks(bytes(frame))
    lie = bytes([0x28, 0xB5, 0x2F, 0xFD, 0x24, 100]) + real
    tracemalloc.start()
    try:
        with pytest.raises(sw.PayloadError):
            sw.decompress(lie, 100)
        with pytest.raises(sw.PayloadError):
            sw.decompress(lie, 100, keep=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def zstandard_blocks(frame: bytes) -> bytes:
    """The blocks and checksum of a zstd frame (everything after its header)."""
    import zstandard

    return frame[zstandard.frame_header_size(frame) :]


def test_info_verifies_a_huge_valid_payload_in_bounded_memory():
    """info checks the whole zstd frame (size, checksum) without holding the switches."""
    channels = (4, 6, 8)
    w, h = 8192, 8192  # 64 MP: 24 MiB of packed switches
    raw = fmt.raw_size(w, h, channels)
    data = crafted(w, h, channels, sw.compress(bytes(raw), level=1))
    tracemalloc.start()
    try:
        inf = maxswitch.info(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert inf["width"] == w and inf["switches"] == 4 * raw
    assert peak < 4 << 20, peak
    with pytest.raises(fmt.FormatError, match="over the limit of 1000000"):
        maxswitch.info(data, max_pixels=1_000_000)


def test_info_has_a_pixel_limit_too(capsys, tmp_path):
    data = crafted(20000, 20000, (4, 6, 8), b"\x28\xb5\x2f\xfd")
    p = tmp_path / "big.msw"
    p.write_bytes(data)
    rc, out, err = call(["info", p, "--max-pixels", "1000"], capsys)
    assert rc == 1 and "over the limit of 1000" in err and "--max-pixels" in err
    assert_one_line_error(err)


class Endless(io.RawIOBase):
    """A stream that never ends (like /dev/zero or a hostile pipe) and counts what is read."""

    def __init__(self, head: bytes = b""):
        self.head, self.read_bytes = head, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = len(b)
        chunk = (self.head[self.read_bytes :] + bytes(n))[:n]
        b[:n] = chunk
        self.read_bytes += n
        return n


def test_cli_reads_no_further_than_the_header_says(fuzz_env):
    read = lambda f: cli._read_stream(f, fmt.declared_length, fmt.PREFIX_MAX, fmt.FormatError)  # noqa: E731
    zero = Endless()
    with pytest.raises(fmt.FormatError, match="magic"):
        read(zero)
    assert zero.read_bytes <= 8
    good = fuzz_env["seeds"][3]
    tail = Endless(good)
    with pytest.raises(fmt.FormatError, match="unexpected bytes"):
        read(tail)
    assert tail.read_bytes <= len(good) + 1
    assert read(io.BytesIO(good)) == good
    for cut in (0, 5, 8, 20, 21, 60, len(good) - 1):
        assert read(io.BytesIO(good[:cut])) == good[:cut]  # short files: read() says what is wrong


def test_cli_refuses_a_non_msw_file_after_its_first_bytes(tmp_path, capsys):
    big = tmp_path / "big.iso"
    with open(big, "wb") as f:
        f.truncate(1 << 36)  # a sparse 64 GiB file: reading it whole would exhaust memory
    rc, _, err = call(["info", big], capsys)
    assert rc == 1 and "bad magic" in err
    assert_one_line_error(err)


def test_unpack_memory_is_one_byte_per_switch():
    shapes = [(4, 512, 512), (6, 256, 256), (8, 128, 128)]
    n = sum(int(np.prod(s)) for s in shapes)
    packed = bytes(-(-2 * n // 8))
    tracemalloc.start()
    try:
        sw.unpack(packed, shapes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * n  # linear: the output (1 byte per switch) and a small multiple in passing


# ------------------------------------------------------------------ nothing lost


@pytest.fixture
def enc_args(tiny_zoo, tmp_path):
    src = tmp_path / "in.png"
    make_image(40, 24).save(src)
    return src, tiny_zoo


def no_temp_files(folder: Path):
    return not [p.name for p in folder.iterdir() if p.name.startswith(".maxswitch-")]


def test_disk_full_gives_an_error_and_no_file(enc_args, tmp_path, capsys, monkeypatch):
    src, model = enc_args
    out = tmp_path / "out.msw"

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", enospc)
    rc, _, err = call(["encode", src, out, "-m", model], capsys)
    assert rc == 1 and "No space left on device" in err
    assert_one_line_error(err)
    assert not out.exists() and no_temp_files(tmp_path)
    # with -f over an existing file: the old file survives whole
    out.write_bytes(b"old contents")
    rc, _, err = call(["encode", src, out, "-m", model, "-f"], capsys)
    assert rc == 1 and out.read_bytes() == b"old contents" and no_temp_files(tmp_path)


def test_disk_full_on_a_real_tiny_file_system(enc_args, tmp_path, capsys):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src, model = enc_args
        big = tmp_path / "big.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(big)
        rc, _, err = call(["encode", big, mnt / "out.msw", "-m", model], capsys)
        assert rc == 1 and "No space left" in err, err
        assert_one_line_error(err)
        assert list(mnt.iterdir()) == []
        rc, _, err = call(["encode", src, mnt / "small.msw", "-m", model, "--quiet"], capsys)
        assert rc == 0 and [p.name for p in mnt.iterdir()] == ["small.msw"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_interrupt_during_the_write_leaves_nothing(enc_args, tmp_path, capsys, monkeypatch):
    src, model = enc_args
    out = tmp_path / "out.msw"

    def ctrl_c(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", ctrl_c)
    rc, _, err = call(["encode", src, out, "-m", model], capsys)
    assert rc == 130 and "interrupted" in err
    assert not out.exists() and no_temp_files(tmp_path)


def test_sigint_to_a_running_process_leaves_no_output(tiny_model, tmp_path):
    """Ctrl-C for real: a subprocess waiting on its input gets SIGINT; exit 130, no file.

    A non-interactive shell (as CI runs) starts background jobs with SIGINT ignored, and Python
    then never installs its Ctrl-C handler: the child gets SIGINT's default back before exec,
    so that the signal really arrives. stdin stays open until the process has exited, so the
    end of input cannot race the signal."""
    out = tmp_path / "out.msw"
    env = dict(os.environ, MAXSWITCH_MODELS=str(tiny_model[0].parent))
    p = subprocess.Popen(
        [sys.executable, "-m", "maxswitch", "encode", "-m", "tiny-4-6-8", "-", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        p.stdin.write(png_bytes(make_image(40, 24))[:100])  # half an image; the rest never comes
        p.stdin.flush()
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until it blocks reading stdin (Linux), else 5 s
            try:
                sc = Path(f"/proc/{p.pid}/syscall").read_text().split()
            except OSError:
                sc = None
            if sc is None:
                time.sleep(5)
                break
            if sc[:2] == ["0", "0x0"]:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
        p.stdin.close()
    lines = err.decode().strip().splitlines()
    assert p.returncode == 130, err
    assert lines == ["maxswitch: interrupted"], err
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_and_no_self_overwrite_on_decode(enc_args, tmp_path, capsys):
    src, model = enc_args
    msw = tmp_path / "a.msw"
    assert call(["encode", src, msw, "-m", model, "--quiet"], capsys)[0] == 0
    before = msw.read_bytes()
    target = tmp_path / "a.dec.png"  # decode's default name (never a.png, the original's usual name)
    target.write_bytes(b"keep")
    rc, _, err = call(["decode", msw], capsys)
    assert rc == 1 and "exists" in err and target.read_bytes() == b"keep"
    # the input as output, directly or through a link, even with -f
    link = tmp_path / "link.png"
    link.symlink_to(msw)
    odd = tmp_path / "odd.png"  # a .msw file under an image's name
    odd.write_bytes(before)
    for src_, dst in ((msw, link), (odd, odd)):
        rc, _, err = call(["decode", src_, dst, "-f"], capsys)
        assert rc == 1 and "is the input" in err, err
    assert odd.read_bytes() == before
    rc, _, err = call(["encode", src, tmp_path / "in.png", "-f", "-m", model], capsys)
    assert rc == 2 and "image extension" in err  # an image's name is never an encoder output
    assert msw.read_bytes() == before and no_temp_files(tmp_path)


def test_outputs_get_the_usual_permissions(enc_args, tmp_path, capsys):
    src, model = enc_args
    old = os.umask(0o022)
    try:
        assert call(["encode", src, tmp_path / "p.msw", "-m", model, "--quiet"], capsys)[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "p.msw").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------ every kind of image


def _save(im, fmt_name, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt_name, **kw)
    return buf.getvalue()


def _png(width, height, bit_depth, colour_type, rows: bytes, extra=b"") -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def _png16_rgb(w=6, h=4):
    a = np.random.default_rng(3).integers(0, 65536, (h, w * 3)).astype(">u2")
    return _png(w, h, 16, 2, b"".join(b"\0" + r.tobytes() for r in a))


def _png16_grey_alpha(w=5, h=3):
    a = np.random.default_rng(4).integers(0, 65536, (h, w * 2)).astype(">u2")
    return _png(w, h, 16, 4, b"".join(b"\0" + r.tobytes() for r in a))


def _exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CCW on display
    return _save(make_image(30, 10), "PNG", exif=exif.tobytes())


def _animated(fmt_name):
    frames = [make_image(16, 8, seed=i) for i in range(4)]
    if fmt_name == "GIF":
        frames = [f.convert("P") for f in frames]
    return _save(frames[0], fmt_name, save_all=True, append_images=frames[1:])


def _float_tiff():
    a = np.array([[np.nan, np.inf, -np.inf, 3e38, -1.0, 0.5]], dtype=np.float32)
    return _save(Image.fromarray(a, "F"), "TIFF")


IMAGES = {
    # name: (bytes, expected (width, height, kind, bit depth) or an error substring)
    "rgb": (lambda: png_bytes(make_image(20, 12)), (20, 12, 3, 8)),
    "grey": (lambda: png_bytes(make_image(20, 12, mode="L")), (20, 12, 1, 8)),
    "grey 16-bit": (
        lambda: _save(Image.fromarray((np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300)), "PNG"),
        (8, 6, 1, 16),
    ),
    "rgb 16-bit (48-bit PNG)": (_png16_rgb, (6, 4, 3, 16)),
    "grey+alpha 16-bit": (_png16_grey_alpha, (5, 3, 2, 16)),
    "rgba": (lambda: png_bytes(make_image(20, 12, mode="RGBA")), (20, 12, 4, 8)),
    "palette": (lambda: _save(make_image(20, 12).convert("P"), "GIF"), (20, 12, 3, 8)),
    "cmyk jpeg": (lambda: _save(make_image(20, 12).convert("CMYK"), "JPEG"), (20, 12, 3, 8)),
    "exif-rotated": (_exif_rotated, (10, 30, 3, 8)),
    "animated gif": (lambda: _animated("GIF"), (16, 8, 3, 8)),
    "animated png": (lambda: _animated("PNG"), (16, 8, 3, 8)),
    "animated webp": (lambda: _animated("WEBP"), (16, 8, 3, 8)),
    "float tiff with nan and inf": (_float_tiff, (6, 1, 1, 32)),
    "1x1": (lambda: png_bytes(make_image(1, 1)), (1, 1, 3, 8)),
    "1x10000": (lambda: png_bytes(make_image(1, 10000)), (1, 10000, 3, 8)),
    "10000x1": (lambda: png_bytes(make_image(10000, 1)), (10000, 1, 3, 8)),
    "0 bytes": (lambda: b"", "input is empty"),
    "text": (lambda: b"hello, I am not a picture\n", "no image format recognised"),
    "pdf": (lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "no image format recognised"),
    "a .msw file": (lambda: fmt.MAGIC + bytes(60), "is a .msw file"),
    "truncated jpeg": (lambda: _save(make_image(64, 64), "JPEG")[:300], "not a readable image"),
    "png with a broken IDAT": (lambda: _png(4, 4, 8, 2, b"x" * 52)[:-30] + b"\0" * 30, "not a readable image"),
    "png header bomb 100000x100000": (lambda: _png(100000, 100000, 8, 2, b"\0" * 100), "over the limit of 256000000"),
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_kind_of_image_is_encoded_or_clearly_refused(name, tiny_zoo, recwarn):
    make, want = IMAGES[name]
    data = make()
    if isinstance(want, str):
        with pytest.raises(imagelib.ImageError, match=want) as e:
            maxswitch.encode(data, tiny_zoo)
        assert "\n" not in str(e.value) and "0x" not in str(e.value)  # one line, no object reprs
        return
    w, h, kind, depth = want
    out = maxswitch.encode(data, tiny_zoo)
    inf = maxswitch.info(out)
    assert (inf["width"], inf["height"]) == (w, h)
    assert (inf["colour"], inf["source_bit_depth"]) == (fmt.KINDS[kind], depth)
    assert maxswitch.decode(out).size == (w, h)
    assert not [x for x in recwarn.list if issubclass(x.category, RuntimeWarning)]


def test_pixel_limit_replaces_pillows_own(tiny_zoo):
    """--max-pixels is the one limit: above Pillow's default when raised, ours when lowered."""
    data = png_bytes(make_image(50, 40))
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000  # a stricter global setting does not leak into our policy ...
    try:
        assert imagelib.load(data, max_pixels=2000).width == 50
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with pytest.raises(imagelib.ImageError, match="2000 pixels, over the limit of 1999"):
        imagelib.load(data, max_pixels=1999)
    with pytest.raises(imagelib.ImageError, match="over the limit of 999"):  # Pillow's bomb check, our words
        imagelib.load(data, max_pixels=999)
    assert Image.MAX_IMAGE_PIXELS == saved  # ... and ours does not leak out


def test_animated_input_says_which_frame_is_encoded(tiny_zoo, tmp_path, capsys):
    p = tmp_path / "anim.gif"
    p.write_bytes(_animated("GIF"))
    rc, _, err = call(["encode", p, tmp_path / "a.msw", "-m", tiny_zoo], capsys)
    assert rc == 0
    assert "4 frames; encoding frame 1 (the first)" in err


def test_bad_images_through_the_cli_are_one_line(tiny_zoo, tmp_path, capsys):
    for name in ("0 bytes", "text", "a .msw file", "truncated jpeg"):
        p = tmp_path / "x.img"
        p.write_bytes(IMAGES[name][0]())
        rc, _, err = call(["encode", p, tmp_path / "x.msw", "-m", tiny_zoo], capsys)
        assert rc == 1, name
        assert_one_line_error(err)
        assert not (tmp_path / "x.msw").exists()


# ------------------------------------------------------------------ tampered weights


def test_weights_that_do_not_match_the_manifest_are_refused(tiny_model, tmp_path, monkeypatch, capsys):
    src = tiny_model[0].parent
    models = tmp_path / "models"
    shutil.copytree(src, models)
    # a good file first, made with the untampered copy
    monkeypatch.setenv("MAXSWITCH_MODELS", str(models))
    monkeypatch.setattr(zoo, "_LOADED", {})
    good = maxswitch.encode(png_bytes(make_image(16, 16)), "tiny-4-6-8")
    (tmp_path / "g.msw").write_bytes(good)
    # flip one byte near the end of the asset (decoder weights: the file still parses)
    asset = models / "tiny-4-6-8.safetensors"
    raw = bytearray(asset.read_bytes())
    raw[-10] ^= 0x01
    asset.write_bytes(bytes(raw))
    monkeypatch.setattr(zoo, "_LOADED", {})
    with pytest.raises(zoo.ModelError, match="SHA-256.*refusing"):
        zoo.load_model("tiny-4-6-8")
    with pytest.raises(zoo.ModelError, match="SHA-256"):
        maxswitch.decode(good)
    rc, _, err = call(["decode", tmp_path / "g.msw", tmp_path / "g.png"], capsys)
    assert rc == 1 and "SHA-256" in err and not (tmp_path / "g.png").exists()
    assert_one_line_error(err)
    # a tampered manifest (hash edited to match nothing) is refused the same way
    asset.write_bytes(tiny_model[0].read_bytes())
    man = json.loads((models / "manifest.json").read_text())
    man["models"][0]["sha256"] = "0" * 64
    (models / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setattr(zoo, "_LOADED", {})
    with pytest.raises(zoo.ModelError, match="SHA-256"):
        zoo.load_model("tiny-4-6-8")


def test_bad_tile_size_is_a_usage_error(enc_args, tmp_path, capsys):
    src, model = enc_args
    rc, _, err = call(["encode", src, tmp_path / "t.msw", "-m", model, "--tile", "12"], capsys)
    assert rc == 2 and "multiple of 8" in err
    assert_one_line_error(err)
    assert not (tmp_path / "t.msw").exists()


def _lying_header(width, height, channels, plen, model="fuzz-4-6-8") -> bytes:
    """The first bytes of a v1 file whose header declares a payload of ``plen`` bytes."""
    raw = fmt.raw_size(width, height, channels) & 0xFFFFFFFF
    body = fmt.MAGIC + struct.pack("<BBBBII", 1, 1, 3, 8, width, height) + bytes([len(model)]) + model.encode()
    return body + bytes(16) + struct.pack("<HHHII", *channels, raw, plen)


@pytest.mark.parametrize(
    "dims,plen,limit,match",
    [
        (((1 << 20), (1 << 20), (4, 6, 8)), 3 << 30, 1000, "over the limit"),  # the campaign's file
        ((64, 64, (4, 6, 8)), 3 << 30, None, "more than this image's switches"),  # small image, huge payload
    ],
)
def test_headers_that_lie_are_refused_before_the_payload_is_read(tmp_path, dims, plen, limit, match):
    """A sparse 3 GiB file behind a lying header: the reader stops after the header (it used to
    read everything first: 6.2 GB peak and 29.5 s before 'checksum mismatch')."""
    p = tmp_path / "s.msw"
    with open(p, "wb") as f:
        f.write(_lying_header(*dims, plen))
        f.truncate(len(_lying_header(*dims, plen)) + plen + 4)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(fmt.FormatError, match=match):
            cli._read_msw(str(p), limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_lying_header_through_a_pipe_is_refused_after_the_header():
    """The same through stdin: the process reads the header, refuses, exits 1 with one line."""
    from conftest import run_cli

    head = _lying_header(1 << 20, 1 << 20, (4, 6, 8), 1 << 30)
    r = run_cli("info", "-", "--max-pixels", "1000", input=head + bytes(1 << 20))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and b"over the limit" in r.stderr


def test_zstd_window_over_128_mib_is_refused():
    """docs/FORMAT.md allows a 128 MiB window; a frame declaring 2 GiB is refused, not allocated."""
    real = sw.compress(bytes(1000), level=1)
    # frame header: FHD 0x44 (2-byte content size, not single-segment, checksum), window
    # descriptor 0xA8 (2^(10+21) = 2 GiB), content size 1000 - 256
    lie = bytes([0x28, 0xB5, 0x2F, 0xFD, 0x44, 0xA8]) + (1000 - 256).to_bytes(2, "little") + zstandard_blocks(real)
    with pytest.raises(sw.PayloadError):
        sw.decompress(lie, 1000)
    ok = bytes([0x28, 0xB5, 0x2F, 0xFD, 0x44, 0x50]) + (1000 - 256).to_bytes(2, "little") + zstandard_blocks(real)
    assert sw.decompress(ok, 1000) == bytes(1000)  # a 1 MiB window (0x50) is fine
