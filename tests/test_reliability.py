"""Issue 23: lying headers, read-only installs, wide pictures, signals at any moment, bounded
reads, the per-side limit before encoding, /dev/null, and the strictness of codings 2 and 3."""

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_image, png_bytes, random_table, run_cli

from maxswitch import cli, codec
from maxswitch.bitstream import entropy, tablecoder
from maxswitch.bitstream import format as fmt

# ------------------------------------------------------------------ the bound on L


def test_max_payload_is_the_documented_formula_per_coding():
    h = fmt.Header(1000, 700, "m", bytes(16), (6, 12, 24), coding=fmt.CODING_TABLE, version=2, context_digest=bytes(16))
    H, W = h.padded
    total = 0
    for y0, y1, x0, x1 in entropy.tiles(H, W):
        n = sum(c * ((y1 - y0) >> (s + 1)) * ((x1 - x0) >> (s + 1)) for s, c in enumerate(h.channels))
        total += 4 + 4 * (-(-16 * n // 32) + 3 + (n >> 28))
    assert fmt.max_payload(h) == total
    h2 = fmt.Header(
        1000, 700, "m", bytes(16), (6, 12, 24), coding=fmt.CODING_CONTEXT, version=2, context_digest=bytes(16)
    )
    assert fmt.max_payload(h2) > fmt.max_payload(h) > 2 * h.switch_count


@pytest.mark.parametrize("shape", [(8, 8), (40, 24), (512, 512), (24, 512)])
def test_a_tile_at_the_smallest_probabilities_fits_the_bound(shape):
    """Every switch at q = 1 of 65536 (16 bits): the words stay within ``tile_words_max``."""
    from maxswitch.bitstream.tables import TableModel

    m = random_table((2, 3, 4), seed=1)
    q = np.zeros_like(m.q)
    q[:] = (1, 1, 1, 65533)
    m = TableModel(m.channels, m.features, m.offsets, q)
    rng = np.random.default_rng(0)
    h, w = shape
    codes = [rng.integers(0, 3, (c, h >> (s + 1), w >> (s + 1))).astype(np.uint8) for s, c in enumerate(m.channels)]
    n = sum(a.size for a in codes)
    words = m.encode_tile(codes)
    assert len(words) <= fmt.tile_words_max(n, fmt.CODING_TABLE)
    assert len(words) >= n // 2  # 16 bits each: the bound is tight


# ------------------------------------------------------------------ files left on disk


def test_file_bytes_read_like_bytes(tmp_path, tiny_zoo):
    """``format.FileBytes`` (a file read on demand) gives what its bytes give: header, payload,
    info and the decoded picture, for every coding."""
    png = png_bytes(make_image(100, 70))
    for coding in ("zstd", "context", "table"):
        data = codec.encode(png, tiny_zoo, coding=coding)
        p = tmp_path / f"{coding}.msw"
        p.write_bytes(data)
        fb = fmt.FileBytes(open(p, "rb"))
        try:
            assert len(fb) == len(data) and fb[:] == data and fb[5] == data[5] and fb[-1] == data[-1]
            h1, p1 = fmt.read(data)
            h2, p2 = fmt.read(fb)
            assert h1 == h2 and isinstance(p2, fmt.FileBytes) and p2[:] == bytes(p1)
            assert codec.info(fb) == codec.info(data)
            a = codec.decode_array(fb)[0]
            assert np.array_equal(a, codec.decode_array(data)[0])
        finally:
            fb.close()


def test_the_stream_reader_reads_into_one_buffer_or_spools(fuzz_seed_file):
    data = fuzz_seed_file
    got = cli._read_stream(io.BytesIO(data), fmt.declared_length, fmt.PREFIX_MAX, fmt.FormatError)
    assert isinstance(got, bytearray) and got == data
    spooled = cli._read_stream(io.BytesIO(data), fmt.declared_length, fmt.PREFIX_MAX, fmt.FormatError, spool=0)
    try:
        assert isinstance(spooled, fmt.FileBytes) and spooled[:] == data
    finally:
        spooled.close()


@pytest.fixture
def fuzz_seed_file(tiny_zoo):
    return codec.encode(png_bytes(make_image(40, 30)), tiny_zoo, coding="table")


def _lying_header(coding: int, width: int, height: int, channels=(4, 6, 8)) -> tuple[bytes, int]:
    h = fmt.Header(
        width,
        height,
        "tiny-4-6-8",
        bytes(16),
        channels,
        coding=coding,
        version=fmt.VERSION_OF_CODING[coding],
        context_digest=bytes(16) if coding != 1 else b"",
        raw_size=fmt.raw_size(width, height, channels),
    )
    plen = min(fmt.max_payload(h), 0xFFFFFFFF)
    name = h.model.encode()
    body = fmt.MAGIC + struct.pack("<BBBBII", h.version, coding, 3, 8, width, height) + bytes([len(name)]) + name
    body += h.encoder_digest + h.context_digest + struct.pack("<HHHII", *channels, h.raw_size, plen)
    return body, plen


# Run a command and print its peak RSS: a child forked from pytest would count pytest's own pages
# (Linux keeps the high-water mark of the memory a process had before exec), so a small
# interpreter forks the command instead.
_RSS = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, st, ru = os.wait4(p.pid, 0)\n"
    "sys.stderr.write(f'peak-rss {ru.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(st))\n"
)


def _peak_rss_of(args, header: bytes, zeros: int, env) -> tuple[int, str]:
    """Run the CLI fed a header then ``zeros`` zero bytes through a pipe; (peak RSS in bytes, its stderr)."""
    e = dict(os.environ)
    e.update(env)
    feeder = subprocess.Popen(
        ["sh", "-c", f"cat; head -c {zeros} /dev/zero"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    p = subprocess.Popen(
        [sys.executable, "-S", "-c", _RSS, sys.executable, "-m", "maxswitch", *args],
        stdin=feeder.stdout,
        stderr=subprocess.PIPE,
        env=e,
    )
    feeder.stdin.write(header)
    feeder.stdin.close()
    feeder.stdout.close()
    err = p.communicate(timeout=300)[1].decode()
    feeder.wait()
    assert p.returncode == 1, err
    lines = err.strip().splitlines()
    return int(lines[-1].split()[1]) * 1024, "\n".join(lines[:-1])


@pytest.mark.parametrize("coding", [1, 2, 3])
def test_a_lying_header_on_a_pipe_costs_no_memory(coding, tiny_model, tmp_path):
    """A header that declares a 300 MB payload, followed by zeros on a pipe: ``info`` and
    ``decode`` read it to its end (spooled to an unlinked temporary file, not held) and refuse
    it at the CRC, in a small, constant amount of memory (docs/SECURITY.md has the 2 GB case)."""
    body, plen = _lying_header(coding, 16000, 16000)
    want = min(plen, 300 << 20)
    assert want > cli.SPOOL_BYTES
    body = body[:-4] + struct.pack("<I", want)  # L as declared (within the bound); that many zeros follow
    env = {"MAXSWITCH_MODELS": str(tiny_model[0].parent), "TMPDIR": str(tmp_path)}
    for args in (["info", "-"], ["decode", "-", "-c"]):
        peak, err = _peak_rss_of(args, body, want + 4, env)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and ("checksum" in lines[0] or "model" in lines[0] or "encoder" in lines[0]), err
        assert peak < 250 << 20, (args, peak)
    assert os.listdir(tmp_path) == []  # the spool had no name


# ------------------------------------------------------------------ read-only install


def test_a_read_only_install_without_a_writable_home_encodes_and_decodes(tmp_path):
    """numba's disk cache has nowhere to go (``__pycache__`` cannot be made, HOME and
    NUMBA_CACHE_DIR are not folders): the default encode and decodes of every coding work,
    with at most one warning line (it used to end in 'internal error: RuntimeError: cannot
    cache function ...: no locator available')."""
    pkg = tmp_path / "install"
    shutil.copytree(ROOT / "maxswitch", pkg / "maxswitch", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "maxswitch" / "__pycache__").write_bytes(b"")  # a file: no folder can be made there, even by root
    os.symlink(ROOT / "models", pkg / "models")
    for d in (pkg / "maxswitch", pkg):
        os.chmod(d, 0o555)
    img = tmp_path / "x.png"
    make_image(64, 48).save(img)
    env = {
        "PYTHONPATH": str(pkg),
        "HOME": "/dev/null/home",
        "XDG_CACHE_HOME": "/dev/null/cache",
        "NUMBA_CACHE_DIR": "/dev/null/numba",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    out = tmp_path / "out"
    out.mkdir()
    try:
        r = run_cli("encode", img, out / "x.msw", "--quiet", env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert len(r.stderr.decode().splitlines()) <= 1
        # every coding: the default (what-2-4-8) has tables, natural-6-12-24 the context model too
        for model, coding in (("what-2-4-8", "table"), ("what-2-4-8", "zstd"), ("natural-6-12-24", "context")):
            r = run_cli(
                "encode", img, out / f"{coding}.msw", "-m", model, "--coding", coding, "--quiet", env=env, cwd=tmp_path
            )
            assert r.returncode == 0, r.stderr
            r = run_cli("decode", out / f"{coding}.msw", out / f"{coding}.png", "--quiet", env=env, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
            assert len(r.stderr.decode().splitlines()) <= 1, r.stderr
    finally:
        for d in (pkg / "maxswitch", pkg):
            os.chmod(d, 0o755)


# ------------------------------------------------------------------ signals at any moment

_SLOW_OPEN = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    sys.path.insert(0, {root!r})
    from maxswitch import atomic, cli
    cli._install_signal_handlers()
    real_open = os.open
    entered = threading.Event()

    def slow_open(path, flags, mode=0o777, **kw):
        if os.path.basename(str(path)).startswith(".maxswitch-"):
            entered.set()
            time.sleep(0.4)  # a slow file system: the signal arrives while the file is created
        return real_open(path, flags, mode, **kw)

    os.open = slow_open
    folder = sys.argv[1]
    jobs = int(sys.argv[2])
    threads = [
        threading.Thread(target=atomic.write_atomic, args=(os.path.join(folder, f"out{{i}}.msw"), b"x" * 100))
        for i in range(jobs)
    ]
    for t in threads:
        t.start()
    entered.wait(5)
    time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("not ended")
    """
)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_signal_while_a_worker_thread_creates_the_temporary_file_leaves_nothing(tmp_path, jobs):
    """The temporary file is being created by another thread (as ``-j 2`` and the tile pools
    do) in an ``open()`` slowed by 400 ms when SIGTERM arrives: the handler waits for the
    creation, removes it and exits 143; no ``.maxswitch-*.tmp`` is left (4 of 4 were before)."""
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_OPEN.format(root=str(ROOT)))
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, str(script), str(out), str(jobs)], capture_output=True, timeout=60)
    assert r.returncode == 128 + signal.SIGTERM, (r.stdout, r.stderr)
    assert os.listdir(out) == []


# ------------------------------------------------------------------ bounded reads


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "/dev/zero", "{tmp}/z.msw", "-m", "tiny-4-6-8"],
        ["compare", "/dev/zero", "{png}"],
        ["decode", "{msw}", "{tmp}/d.png", "--compare", "/dev/zero"],
    ],
)
def test_endless_inputs_are_refused_after_their_first_bytes(args, tiny_zoo, tmp_path):
    png = tmp_path / "x.png"
    make_image(32, 24).save(png)
    msw = tmp_path / "x.msw"
    msw.write_bytes(codec.encode(str(png), tiny_zoo))
    argv = [a.format(tmp=tmp_path, png=png, msw=msw) for a in args]
    r = run_cli(*argv, env={"MAXSWITCH_MODELS": os.environ["MAXSWITCH_MODELS"]})
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "no image format recognised" in lines[0], r.stderr


def test_an_endless_image_pipe_is_bounded(monkeypatch):
    """A stream that starts like an image and never ends is refused at the byte limit."""
    buf = io.BytesIO()
    make_image(8, 8).save(buf, "BMP")
    head = buf.getvalue()[:54]  # a BMP's headers: recognised from them alone

    class Endless(io.RawIOBase):
        sent = 0

        def readable(self):
            return True

        def readinto(self, b):
            n = len(b)
            chunk = (head[self.sent :] + bytes(n))[:n] if self.sent < len(head) else bytes(n)
            b[:n] = chunk
            self.sent += n
            return n

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless())))
    from maxswitch.image import ImageError

    with pytest.raises(ImageError, match="over 4194304 bytes"):
        cli._read_input("-", "an image", limit=4 << 20)


# ------------------------------------------------------------------ the per-side limit, /dev/null


def test_the_per_side_limit_is_checked_before_encoding(tmp_path, tiny_zoo):
    """A 1 x 1,048,577 PNG is refused from its header (it used to encode for 10 s first)."""
    raw = zlib.compress(b"\x00" + bytes(3 * (fmt.MAX_SIDE + 1)))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", fmt.MAX_SIDE + 1, 1, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    from maxswitch.image import ImageError, load

    with pytest.raises(ImageError, match="per side"):
        load(png)


def test_decode_to_dev_null_is_written_through(tiny_zoo, tmp_path, capsys):
    msw = tmp_path / "x.msw"
    msw.write_bytes(codec.encode(png_bytes(make_image(32, 24)), tiny_zoo))
    assert cli.main(["decode", str(msw), "/dev/null", "--quiet"]) == 0
    assert cli.main(["decode", str(msw), "-o", "/dev/null", "--quiet"]) == 0


# ------------------------------------------------------------------ codings 2 and 3: the end of a tile


def test_every_stream_that_decodes_cleanly_is_the_encoding_of_what_it_decodes_to():
    """Why stricter end-of-tile rules cannot catch a cut, swapped or empty stream without a
    format change (docs/FORMAT.md, "The end of a tile"): the decoder is a bijection between
    clean streams and switches. Random word streams that decode cleanly re-encode to the same
    words; shorter and longer ones are refused."""
    m = random_table((2, 3, 4), seed=2)
    shapes = [(c, 16 >> (s + 1), 24 >> (s + 1)) for s, c in enumerate(m.channels)]
    rng = np.random.default_rng(5)
    clean = 0
    for i in range(3000):
        words = rng.integers(0, 1 << 32, rng.integers(0, 8), dtype=np.uint64).astype(np.uint32)
        try:
            codes = tablecoder.decode_tile(m, words, shapes)
        except ValueError:
            continue
        clean += 1
        assert np.array_equal(m.encode_tile(codes), words)
    real = [rng.integers(0, 4, s).astype(np.uint8) for s in shapes]
    words = m.encode_tile(real)
    for bad in (words[1:], words[:-1], np.concatenate([words, words[-1:]])):
        if len(bad) and bad[-1] == 0:
            continue
        try:
            got = tablecoder.decode_tile(m, bad, shapes)
        except ValueError:
            continue
        assert np.array_equal(m.encode_tile(got), bad)  # then it is another picture's exact stream
    assert clean > 0


def test_a_refill_without_words_happens_in_every_valid_tile():
    """The rule "refuse a refill when no word is left" would refuse files maxswitch writes:
    the state of a valid tile drops below 2^32 with its words spent before its last switch
    (the first switches the encoder codes, from state 0, push no word)."""
    m = random_table((2, 3, 4), seed=3)
    rng = np.random.default_rng(1)
    shapes = [(c, 64 >> (s + 1), 64 >> (s + 1)) for s, c in enumerate(m.channels)]
    codes = [rng.integers(0, 4, s).astype(np.uint8) for s in shapes]
    words = [int(w) for w in m.encode_tile(codes)]
    rows = tablecoder.known_rows(m, codes)
    pos, state = len(words) - 1, 0
    state = words[pos] << 32 | words[pos - 1]
    pos -= 2
    starved = None
    for i, r in enumerate(rows):
        c = [0, int(r[0]), int(r[0] + r[1]), int(r[0] + r[1] + r[2]), 65536]
        x = state & 0xFFFFFF
        s = sum((x >> 8) >= c[j] for j in (1, 2, 3))
        state = (state >> 24) * ((c[s + 1] - c[s]) << 8) + x - (c[s] << 8)
        if state < 1 << 32:
            if pos >= 0:
                state = state << 32 | words[pos]
                pos -= 1
            elif starved is None and i < len(rows) - 1:
                starved = i
    assert state == 0 and pos == -1 and starved is not None and starved < len(rows) - 1


def test_coding_1_padding_bits_must_be_zero():
    """The last packed byte's unused bits are zero (FORMAT.md); a payload whose zstd frame was
    rebuilt around nonzero ones is refused. (Padding exists only where the switch count is not a
    multiple of 4: a last stage of an odd number of channels, as here.)"""
    from maxswitch.bitstream import switches as sw

    channels = (1, 1, 1)
    h = fmt.Header(8, 8, "m", bytes(16), channels, raw_size=fmt.raw_size(8, 8, channels))
    pad = 8 * h.raw_size - 2 * h.switch_count
    assert pad == 6
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 4, s).astype(np.uint8) for s in sw.shapes(8, 8, channels)]
    packed = bytes(sw.pack(codes))
    assert packed[-1] & ((1 << pad) - 1) == 0
    got = codec._unpack(h, sw.compress(packed), None)
    assert all(np.array_equal(a, b) for a, b in zip(got, codes))
    bad = bytearray(packed)
    bad[-1] |= 1
    with pytest.raises(sw.PayloadError, match="padding"):
        codec._unpack(h, sw.compress(bytes(bad)), None)


# ------------------------------------------------------------------ wide pictures


def test_a_wide_picture_is_decoded_in_bands_of_bounded_size(tiny_zoo, monkeypatch):
    """With the band budget lowered so that this picture counts as wide, bands are fewer rows
    than a tile and hold the pixels of the whole-image decode (up to float rounding)."""
    from maxswitch.networks import tiling

    data = codec.encode(png_bytes(make_image(1200, 60)), tiny_zoo, coding="table")
    ref = codec.decode_array(data)[0]
    monkeypatch.setattr(tiling, "BAND_SWITCHES", 1200 * 100)
    h, bands = codec.decode_bands(data, tile=512)
    got = list(bands)
    assert max(b.shape[0] for b in got) < 60 and sum(b.shape[0] for b in got) == 60
    assert np.abs(np.concatenate(got).astype(int) - ref.astype(int)).max() <= 1


def test_the_row_decoder_keeps_rows_packed_and_gives_the_switches(tiny_zoo):
    from maxswitch.networks.zoo import load_model

    m = load_model(tiny_zoo)
    data = codec.encode(png_bytes(make_image(1100, 40)), m, coding="table")
    h, payload = fmt.read(data)
    H, W = h.padded
    whole = entropy.decode(m.table, payload, H, W)
    rd = entropy.RowDecoder(m.table, payload, H, W)
    for p0, p1 in ((0, 16), (8, 40)):
        for s, a in enumerate(rd.rows(p0, p1)):
            assert np.array_equal(a, whole[s][:, p0 >> (s + 1) : p1 >> (s + 1)])
    assert all(p.dtype == np.uint8 and p.shape[2] == -(-(W >> (s + 1)) // 4) for s, p in enumerate(rd.done[0]))


def test_sources_are_not_read_whole_for_a_file(tmp_path, tiny_zoo, monkeypatch):
    """Decoding a file left on disk reads its payload in pieces (a row of tiles, a group of
    zstd blocks, CRC steps), never the whole payload at once."""
    data = codec.encode(png_bytes(make_image(1100, 600)), tiny_zoo, coding="table")
    p = tmp_path / "x.msw"
    p.write_bytes(data)
    sizes = []
    real = os.pread

    def spy(fd, n, off):
        sizes.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", spy)
    fb = fmt.FileBytes(open(p, "rb"))
    try:
        fmt.FileBytes.CACHE = 1 << 12
        h, payload = fmt.read(fb)
        from maxswitch.networks.zoo import load_model

        rd = entropy.RowDecoder(load_model(tiny_zoo).table, payload, *h.padded)
        sizes.clear()
        rd.rows(0, 8)
        assert sizes and max(sizes) < len(payload) // 2
    finally:
        fmt.FileBytes.CACHE = 1 << 16
        fb.close()


def test_paths_used_above_exist():
    assert Path(fmt.__file__).is_file()


@pytest.mark.parametrize("kind", [1, 3])
def test_large_tiffs_are_written_band_by_band_with_the_pixels_of_save(kind, monkeypatch, tmp_path):
    """Over ``STREAM_PNG_PIXELS`` the CLI writes a TIFF band by band (``image.tiff_chunks``): the
    picture is not held as a Pillow image; the pixels are those Pillow's writer gives."""
    from PIL import Image

    from maxswitch import image

    rng = np.random.default_rng(kind)
    a = rng.integers(0, 256, (37, 29, 3)).astype(np.uint8)
    data = b"".join(image.tiff_chunks([a[:10], a[10:11], a[11:]], kind, (37, 29)))
    got = Image.open(io.BytesIO(data))
    ref = image.to_pil(a, kind)
    assert got.mode == ref.mode and np.array_equal(np.asarray(got), np.asarray(ref))
    with pytest.raises(ValueError):
        b"".join(image.tiff_chunks([a[:10]], kind, (37, 29)))


def test_the_cli_streams_large_tiffs(tiny_zoo, monkeypatch, tmp_path, capsys):
    from PIL import Image

    from maxswitch import image

    msw = tmp_path / "x.msw"
    msw.write_bytes(codec.encode(png_bytes(make_image(70, 40)), tiny_zoo))
    assert cli.main(["decode", str(msw), str(tmp_path / "a.tif"), "--quiet"]) == 0
    monkeypatch.setattr(image, "STREAM_PNG_PIXELS", 0)
    assert cli.main(["decode", str(msw), str(tmp_path / "b.tif"), "--quiet"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("a.tif", "b.tif"))
    assert np.array_equal(a, b)
