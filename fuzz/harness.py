"""Fuzz target, seed corpus and structure-aware mutator for ``.msw`` decoding.

The promise under test (docs/SECURITY.md): any byte string given to ``info`` or ``decode``
ends in success or in one of the codec's documented errors (``FormatError``, ``PayloadError``,
``ModelError``, ``CodecError``) with a one-line message; never another exception, a hang or
unbounded memory. ``check`` is that oracle; everything else here feeds it.

Used by ``fuzz/fuzz_msw.py`` (the long-running driver, atheris or pure Python) and by
``tests/test_hardening.py`` (a short, deterministic run of the pure-Python driver).

Most random bytes die at the CRC-32, so the mutator is structure-aware: it rewrites header
fields to boundary values, swaps in other zstd frames (bombs, frames without checksum or
size, several frames, skippable frames) and, most of the time, repairs the CRC so that the
later checks (field ranges, sizes, the model, zstd) are the ones being exercised.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

# Pixel limit used while fuzzing: small, so that a mutant that passes every check still
# decodes in milliseconds. The default limit is exercised by tests/test_hardening.py.
FUZZ_MAX_PIXELS = 1 << 16
# One input taking more CPU time than this is a finding ("slow"). CPU time, not wall time: on a
# shared machine a process at nice 19 can wait seconds for a core, which says nothing about us.
SLOW_SECONDS = 2.0
MODEL_NAME = "fuzz-4-6-8"
WHAT_MODEL_NAME = "fuzz-what"  # the what+where (format v3) model beside it
CHANNELS = (4, 6, 8)

_state: dict = {}


# --------------------------------------------------------------------------- setup


def _random_context(channels, seed: int = 0):
    """A context model with integer weights drawn by numpy (the same on every machine)."""
    import numpy as np

    from maxswitch.bitstream.context import ContextModel, StageNet, stage_layouts

    rng = np.random.default_rng(seed)
    stages = [
        StageNet(
            rng.integers(-30, 31, (lay.rows, 8)),
            rng.integers(-20, 21, (8, 6)),
            rng.integers(-200, 201, 6),
            rng.integers(-10, 11, (6, 4)),
            rng.integers(-300, 301, 4),
        )
        for lay in stage_layouts(channels)
    ]
    return ContextModel(tuple(channels), stages)


def setup(workdir: str | None = None) -> dict:
    """Build the tiny model (fixed seed) in a models folder, point ``MAXSWITCH_MODELS`` at it and
    make the seed files. Idempotent; returns the state dict (``seeds``, ``models_dir``)."""
    if _state:
        return _state
    import torch

    from maxswitch import codec
    from maxswitch.networks import zoo
    from maxswitch.networks.nets import Encoder, ModelConfig, build_decoder

    d = Path(workdir or tempfile.mkdtemp(prefix="maxswitch-fuzz-models-"))
    d.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(CHANNELS, "direct", (8, 8, 8), encoder_seed=5)
    enc = Encoder.random(cfg.channels, seed=5)
    torch.manual_seed(0)
    dec = build_decoder(cfg).eval()
    path = d / f"{MODEL_NAME}.safetensors"
    from maxswitch.bitstream.tables import TableModel

    sha = zoo.save_model(
        path, MODEL_NAME, 1, cfg, enc, dec, context=_random_context(CHANNELS), table=TableModel.random(CHANNELS, seed=5)
    )
    entry = {
        "name": MODEL_NAME,
        "version": 1,
        "file": path.name,
        "sha256": sha,
        "family": "natural",
        "channels": list(CHANNELS),
        "switches_per_pixel": cfg.switches_per_pixel,
        "encoder_digest": enc.digest(),
    }
    # a what model (format v3) on the same encoder, coders and untrained decoder
    from maxswitch.networks.nets import WhatDecoder

    wcfg = ModelConfig(CHANNELS, "what", (8, 8, 8), encoder_seed=5, what=(8, 4, 8))
    wpath = d / f"{WHAT_MODEL_NAME}.safetensors"
    wsha = zoo.save_model(
        wpath,
        WHAT_MODEL_NAME,
        1,
        wcfg,
        enc,
        WhatDecoder.from_direct(dec, CHANNELS, (8, 8, 8)).eval(),
        context=_random_context(CHANNELS),
        table=TableModel.random(CHANNELS, seed=5),
    )
    wentry = dict(entry, name=WHAT_MODEL_NAME, file=wpath.name, sha256=wsha, family="what+where")
    (d / "manifest.json").write_text(json.dumps({"schema": 1, "models": [entry, wentry]}))
    os.environ["MAXSWITCH_MODELS"] = str(d)
    zoo._LOADED.clear()
    torch.set_num_threads(1)
    model = zoo.load_model(MODEL_NAME)
    seeds = []
    for i, (w, h, mode) in enumerate(
        [
            (1, 1, "RGB"),
            (8, 8, "RGB"),
            (13, 7, "L"),
            (40, 24, "RGB"),
            (3, 17, "RGBA"),
            (64, 48, "RGB"),
            (9, 9, "LA"),
            (100, 2, "RGB"),
        ]
    ):
        seeds.append(_image(w, h, i, mode))
    # format v1 seeds first (tests index them), then the same pictures in format v2 (codings 2 and 3)
    pictures = seeds
    seeds = [codec.encode(x, model, coding=c) for c in ("zstd", "context", "table") for x in pictures]
    # then format v3 (the what part and the switch checksum around codings 1 to 3)
    what_model = zoo.load_model(WHAT_MODEL_NAME)
    seeds += [codec.encode(x, what_model, coding=c) for c in ("zstd", "context", "table") for x in pictures]
    # decode every seed once: the compiled coder of coding 3 is compiled (or loaded from numba's
    # cache) on its first use, seconds of CPU the "slow" oracle must not charge to an input
    for data in seeds:
        codec.decode_array(data)
    _state.update(seeds=seeds, models_dir=str(d), model=model)
    return _state


def _image(width: int, height: int, seed: int, mode: str):
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 5 + seed), 128 + 100 * np.cos(y / 4), 255 * x / max(1, width)], -1)
    a = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(a, "RGB")
    return im if mode == "RGB" else im.convert(mode)


# --------------------------------------------------------------------------- oracle


class Finding(Exception):
    """The promise was broken; ``kind`` names how, the message says where."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def expected_errors():
    from maxswitch.errors import MaxswitchError

    return (MaxswitchError,)


def _message_ok(e: BaseException) -> None:
    msg = str(e)
    if not msg.strip() or "\n" in msg or "\r" in msg:
        raise Finding("bad-message", f"{type(e).__name__} message is not one non-empty line: {msg!r}")


def check(data: bytes) -> str:
    """Run ``info`` and ``decode`` on ``data``; return "refused", "info-only" or "decoded".

    Raises:
        Finding: any other exception (with its traceback), a multi-line or empty message, an
        inconsistency (``info`` refuses what ``decode`` accepts, wrong output shape), or an
        input slower than SLOW_SECONDS.
    """
    from maxswitch import codec

    ok = expected_errors()
    t0 = time.process_time()
    outcome = "refused"
    try:
        try:
            inf = codec.info(data, max_pixels=FUZZ_MAX_PIXELS)
        except ok as e:
            _message_ok(e)
            inf = None
        try:
            img = codec.decode(data, max_pixels=FUZZ_MAX_PIXELS)
        except ok as e:
            _message_ok(e)
            img = None
        # the CLI's bounded reader of files and pipes must agree with the parser
        import io

        from maxswitch import cli
        from maxswitch.bitstream import format as fmt

        try:
            got = cli._read_stream(io.BytesIO(data), fmt.declared_length, fmt.PREFIX_MAX, fmt.FormatError)
        except ok as e:
            _message_ok(e)
            got = None
        if inf is not None and got != data:
            raise Finding("inconsistent", "the CLI's stream reader refused or cut a file that info accepted")
        # the same bytes left in a file (format.FileBytes: how the CLI reads files over 64 MiB
        # and spools pipes) must give what the bytes give
        spooled = None
        try:
            spooled = cli._read_stream(io.BytesIO(data), fmt.declared_length, fmt.PREFIX_MAX, fmt.FormatError, spool=0)
            inf2 = codec.info(spooled, max_pixels=FUZZ_MAX_PIXELS) if isinstance(spooled, fmt.FileBytes) else inf
        except ok as e:
            _message_ok(e)
            inf2 = None
        finally:
            if isinstance(spooled, fmt.FileBytes):
                spooled.close()
        if (inf2 is None) != (inf is None) or (inf is not None and inf2 != inf):
            raise Finding("inconsistent", "info of the file left on disk (FileBytes) differs from info of its bytes")
        if got is not None and len(got) > len(data):
            raise Finding("inconsistent", "the stream reader returned more bytes than it was given")
        if img is not None:
            if inf is None:
                raise Finding("inconsistent", "decode accepted a file that info refused")
            if img.size != (inf["width"], inf["height"]):
                raise Finding("inconsistent", f"decoded {img.size}, header says {inf['width']}x{inf['height']}")
            outcome = "decoded"
        elif inf is not None:
            outcome = "info-only"
    except Finding:
        raise
    except BaseException as e:  # noqa: BLE001 - anything else breaks the promise
        if isinstance(e, KeyboardInterrupt):
            raise
        raise Finding("exception", f"{type(e).__name__}: {e}\n{traceback.format_exc()}") from e
    dt = time.process_time() - t0
    if dt > SLOW_SECONDS:
        raise Finding("slow", f"{dt:.2f} s of CPU for one input of {len(data)} bytes")
    return outcome


def signature(f: Finding) -> str:
    """A short id of a finding: its kind and the innermost maxswitch frame (dedupes repeats)."""
    where = ""
    tb = f.__cause__.__traceback__ if f.__cause__ is not None else None
    for fr in traceback.extract_tb(tb) if tb else []:
        if "maxswitch" in fr.filename:
            where = f"{Path(fr.filename).name}:{fr.lineno}"
    head = "" if f.kind == "slow" else f.detail.splitlines()[0][:80]
    return hashlib.sha1(f"{f.kind}|{where}|{head.split(':')[0]}".encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- mutator

INTERESTING_U32 = [
    0,
    1,
    2,
    7,
    8,
    9,
    15,
    16,
    17,
    63,
    64,
    65,
    255,
    256,
    4095,
    4096,
    65535,
    65536,
    (1 << 20) - 1,
    1 << 20,
    (1 << 20) + 1,
    1 << 24,
    (1 << 31) - 1,
    1 << 31,
    0xFFFFFFFE,
    0xFFFFFFFF,
]
INTERESTING_U16 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 255, 256, 32767, 32768, 65534, 65535]
INTERESTING_U8 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 255]


def layout(data: bytes) -> dict | None:
    """Offsets of a file's fields if its fixed part parses far enough, else None (versions 1 and 2:
    version 2 has a 16-byte context digest after the encoder digest)."""
    if len(data) < 21:
        return None
    n = data[20]
    off = 21 + n
    extra = 16 if data[8] == 2 else 0
    if len(data) < off + 30 + extra:
        return None
    f = off + 16 + extra
    return {"name": 21, "digest": off, "channels": f, "raw": f + 6, "len": f + 10, "payload": f + 14}


def fix_crc(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def rebuild(data: bytes, payload: bytes | None = None, fix_raw: bool = True, fix_len: bool = True) -> bytes:
    """Re-assemble a file around a (new) payload, repairing raw size, length and CRC as asked."""
    lay = layout(data)
    if lay is None:
        return data
    head = bytearray(data[: lay["payload"]])
    if payload is None:
        plen = struct.unpack_from("<I", data, lay["len"])[0]
        payload = (
            data[lay["payload"] : lay["payload"] + plen]
            if len(data) >= lay["payload"] + plen + 4
            else data[lay["payload"] : -4]
        )
    if fix_raw:
        from maxswitch.bitstream import format as fmt

        w, h = struct.unpack_from("<II", head, 12)
        chans = struct.unpack_from("<HHH", head, lay["channels"])
        r = fmt.raw_size(w, h, chans)
        if r <= 0xFFFFFFFF:
            struct.pack_into("<I", head, lay["raw"], r)
    if fix_len:
        struct.pack_into("<I", head, lay["len"], len(payload))
    body = bytes(head) + payload
    return body + struct.pack("<I", zlib.crc32(body))


_BOMBS: dict = {}


def _zstd_frame(raw: bytes, checksum: bool = True, size: bool = True, level: int = 1) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level, write_checksum=checksum, write_content_size=size).compress(raw)


def _bomb(n: int) -> bytes:
    """A small zstd frame of ``n`` zero bytes (cached); n is kept under 64 MiB."""
    n = min(n, 64 << 20)
    if n not in _BOMBS:
        if len(_BOMBS) > 16:
            _BOMBS.clear()
        _BOMBS[n] = _zstd_frame(bytes(n))
    return _BOMBS[n]


def _payload_of(data: bytes) -> bytes:
    lay = layout(data)
    if lay is None:
        return b""
    return data[lay["payload"] : -4]


def _mutate_payload(data: bytes, rng: random.Random) -> bytes:
    from maxswitch.bitstream import format as fmt

    lay = layout(data)
    if lay is None:
        return data
    raw = struct.unpack_from("<I", data, lay["raw"])[0]
    w, h = struct.unpack_from("<II", data, 12)
    chans = struct.unpack_from("<HHH", data, lay["channels"])
    want = fmt.raw_size(w, h, chans)
    payload = _payload_of(data)
    choice = rng.randrange(10)
    if choice == 0:  # a bomb of the declared size (or near it)
        n = rng.choice([raw, want, raw + 1, max(0, raw - 1), raw * 2])
        return rebuild(data, _bomb(n), fix_raw=False)
    if choice == 1:  # frame without checksum / without size
        body = bytes(rng.randrange(256) & 0x1B for _ in range(min(raw, 4096)))
        return rebuild(data, _zstd_frame(body, checksum=rng.random() < 0.5, size=rng.random() < 0.5), fix_raw=False)
    if choice == 2:  # two frames, or trailing junk, or a skippable frame before or after
        extra = rng.choice([payload, b"junk", struct.pack("<II", 0x184D2A50, 4) + b"skip", b"\0"])
        new = payload + extra if rng.random() < 0.5 else extra + payload
        return rebuild(data, new, fix_raw=False)
    if choice == 3:  # random codes of the right length, properly framed
        body = bytes(rng.getrandbits(8) for _ in range(min(want, 1 << 16)))
        return rebuild(data, _zstd_frame(body, level=rng.choice([1, 3, 19])), fix_raw=False)
    if choice == 4:  # empty or tiny payload
        return rebuild(data, rng.choice([b"", b"\x28\xb5\x2f\xfd", payload[:4], payload[:8]]), fix_raw=False)
    # flip or set bytes inside the frame (its header: sizes, window, flags), then fix CRC
    p = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        if not p:
            break
        i = rng.randrange(min(len(p), 18)) if rng.random() < 0.5 else rng.randrange(len(p))
        if rng.random() < 0.5:
            p[i] ^= 1 << rng.randrange(8)
        else:
            p[i] = rng.choice(INTERESTING_U8)
    return rebuild(data, bytes(p), fix_raw=False)


def _mutate_field(data: bytes, rng: random.Random) -> bytes:
    lay = layout(data)
    b = bytearray(data)
    if lay is None or rng.random() < 0.1:
        i = rng.randrange(min(len(b), 21)) if b else 0
        if b:
            b[i] = rng.choice(INTERESTING_U8)
        return bytes(b)
    field = rng.choice(
        [
            "version",
            "coding",
            "kind",
            "depth",
            "width",
            "height",
            "wh",
            "namelen",
            "name",
            "digest",
            "chan",
            "chans",
            "raw",
            "len",
        ]
    )
    if field in ("version", "coding", "kind", "depth"):
        b[{"version": 8, "coding": 9, "kind": 10, "depth": 11}[field]] = rng.choice(INTERESTING_U8)
    elif field in ("width", "height"):
        struct.pack_into("<I", b, 12 if field == "width" else 16, rng.choice(INTERESTING_U32))
    elif field == "wh":
        side = rng.choice([1, 7, 8, 255, 256, 1024, 4096, 1 << 20])
        struct.pack_into("<II", b, 12, side, rng.choice([1, side, 1 << 20]))
    elif field == "namelen":
        b[20] = rng.choice(INTERESTING_U8)
    elif field == "name":
        i = 21 + rng.randrange(max(1, b[20]))
        if i < len(b):
            b[i] = rng.choice(b"aZ-._/\x00\xff 0")
    elif field == "digest":
        b[lay["digest"] + rng.randrange(16)] ^= 1 << rng.randrange(8)
    elif field == "chan":
        struct.pack_into("<H", b, lay["channels"] + 2 * rng.randrange(3), rng.choice(INTERESTING_U16))
    elif field == "chans":
        c = rng.choice(INTERESTING_U16)
        struct.pack_into("<HHH", b, lay["channels"], c, c, c)
    elif field == "raw":
        struct.pack_into("<I", b, lay["raw"], rng.choice(INTERESTING_U32))
    else:
        struct.pack_into("<I", b, lay["len"], rng.choice(INTERESTING_U32))
    data = bytes(b)
    r = rng.random()
    if r < 0.5:
        return rebuild(data, fix_raw=field not in ("raw",), fix_len=field != "len")
    if r < 0.8:
        return fix_crc(data)
    return data


def _mutate_bytes(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    b = bytearray(data)
    op = rng.randrange(8)
    if op == 0 and b:  # flip bits
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
    elif op == 1 and b:  # set bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice(INTERESTING_U8)
    elif op == 2:  # truncate
        del b[rng.randrange(len(b) + 1) :]
    elif op == 3:  # insert
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
    elif op == 4 and b:  # delete a run
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 16)]
    elif op == 5:  # append
        b += rng.choice([b"\0", b"\0" * 4, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))])
    elif op == 6:  # splice with another seed
        o = rng.choice(seeds)
        i, j = rng.randrange(len(b) + 1), rng.randrange(len(o) + 1)
        b = b[:i] + o[j:]
    else:  # duplicate a run
        if b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 64)]
    out = bytes(b)
    return fix_crc(out) if rng.random() < 0.6 else out


def mutate(data: bytes, rng: random.Random, seeds: list[bytes], max_size: int = 1 << 20) -> bytes:
    """One to three structure-aware mutations of ``data``."""
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        r = rng.random()
        if r < 0.35:
            data = _mutate_field(data, rng)
        elif r < 0.6:
            data = _mutate_payload(data, rng)
        else:
            data = _mutate_bytes(data, rng, seeds)
    return data[:max_size]


# --------------------------------------------------------------------------- pure-Python driver


class Stats:
    def __init__(self):
        self.inputs = 0
        self.outcomes: dict[str, int] = {}
        self.findings: dict[str, dict] = {}
        self.t0 = time.time()

    def as_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "seconds": round(time.time() - self.t0, 1),
            "outcomes": self.outcomes,
            "unique_findings": len(self.findings),
            "findings": {
                k: {"kind": v["kind"], "count": v["count"], "first": v["detail"].splitlines()[0][:200]}
                for k, v in self.findings.items()
            },
        }


def record(stats: Stats, data: bytes, f: Finding, findings_dir: str | None) -> None:
    sig = signature(f)
    entry = stats.findings.setdefault(sig, {"kind": f.kind, "detail": f.detail, "count": 0})
    entry["count"] += 1
    if findings_dir and entry["count"] == 1:
        os.makedirs(findings_dir, exist_ok=True)
        Path(findings_dir, f"{sig}.msw").write_bytes(data)
        Path(findings_dir, f"{sig}.txt").write_text(f.detail)


def run_random(
    count: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    findings_dir: str | None = None,
    stats_path: str | None = None,
    stats_every: float = 60.0,
) -> Stats:
    """Pure-Python fuzzing loop: mutate seeds (and earlier interesting mutants), run ``check``.

    Deterministic for a given ``seed`` and ``count``. Stops after ``count`` inputs or
    ``seconds`` seconds, whichever comes first.
    """
    st = setup()
    seeds = list(st["seeds"])
    pool = list(seeds)
    rng = random.Random(seed)
    stats = Stats()
    last = time.time()
    while True:
        if count is not None and stats.inputs >= count:
            break
        if seconds is not None and time.time() - stats.t0 >= seconds:
            break
        data = mutate(rng.choice(pool), rng, seeds)
        stats.inputs += 1
        try:
            out = check(data)
        except Finding as f:
            out = "finding"
            record(stats, data, f, findings_dir)
        stats.outcomes[out] = stats.outcomes.get(out, 0) + 1
        if out in ("info-only", "decoded") and len(pool) < 4096:
            pool.append(data)  # mutants that get far are worth mutating further
        if stats_path and time.time() - last > stats_every:
            last = time.time()
            Path(stats_path).write_text(json.dumps(stats.as_dict(), indent=1))
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats.as_dict(), indent=1))
    return stats


# --------------------------------------------------------------------------- image target


def image_seeds() -> list[bytes]:
    """Small images in the formats and modes the encoder meets (deterministic)."""
    import io

    from PIL import Image

    out = []

    def save(im, f, **kw):
        buf = io.BytesIO()
        im.save(buf, f, **kw)
        out.append(buf.getvalue())

    base = _image(12, 9, 1, "RGB")
    save(base, "PNG")
    save(base.convert("L"), "PNG")
    save(base.convert("RGBA"), "PNG")
    save(base.convert("P"), "GIF")
    save(base, "JPEG", quality=80)
    save(base.convert("CMYK"), "JPEG")
    save(base, "TIFF")
    save(base, "BMP")
    save(base, "WEBP", lossless=True)
    save(Image.fromarray((np.arange(108, dtype=np.uint16).reshape(9, 12) * 600)), "PNG")
    frames = [_image(8, 8, i, "RGB") for i in range(3)]
    save(frames[0].convert("P"), "GIF", save_all=True, append_images=[f.convert("P") for f in frames[1:]])
    save(frames[0], "PNG", save_all=True, append_images=frames[1:])
    return out


def check_image(data: bytes, max_pixels: int = FUZZ_MAX_PIXELS) -> str:
    """``image.load`` on ``data``, as the CLI runs it: an image or ``ImageError`` with a
    one-line message, and nothing else written to stderr (warnings, logging, C libraries)."""
    import warnings

    from maxswitch import cli
    from maxswitch import image as imagelib

    t0 = time.process_time()
    noise = _StderrCapture()
    try:
        try:
            with warnings.catch_warnings(record=True) as caught, noise:
                warnings.simplefilter("always")
                li = cli.load_image(data, max_pixels)
            if caught:
                raise Finding("noisy", f"a warning escaped load(): {caught[0].category.__name__}: {caught[0].message}")
            if noise.text:
                raise Finding("noisy", f"something was printed to stderr: {noise.text[:200]!r}")
            outcome = "decoded"
            if li.rgb.dtype != np.uint8 or li.rgb.ndim != 3 or li.rgb.shape[2] != 3:
                raise Finding("inconsistent", f"load gave {li.rgb.dtype} {li.rgb.shape}")
            if li.width * li.height > max_pixels:
                raise Finding("inconsistent", "an image over the pixel limit was loaded")
        except imagelib.ImageError as e:
            _message_ok(e)
            if noise.text:
                raise Finding("noisy", f"something was printed to stderr: {noise.text[:200]!r}") from None
            if " at 0x" in str(e):
                raise Finding("bad-message", f"message carries an object address: {e}") from None
            outcome = "refused"
    except Finding:
        raise
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        raise Finding("exception", f"{type(e).__name__}: {e}\n{traceback.format_exc()}") from e
    dt = time.process_time() - t0
    if dt > SLOW_SECONDS:
        raise Finding("slow", f"{dt:.2f} s of CPU for one image of {len(data)} bytes")
    return outcome


class _StderrCapture:
    """Capture what is written to file descriptor 2 (by C code too) while active."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self.text = ""
        self._saved = os.dup(2)
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        import sys

        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()
        return False


def mutate_image(data: bytes, rng: random.Random, seeds: list[bytes], max_size: int = 1 << 16) -> bytes:
    """Byte-level mutations of an image (no structure repair: Pillow's own checks are the target)."""
    for _ in range(rng.choice([1, 1, 2, 4])):
        data = _mutate_bytes(data, rng, seeds)
        if rng.random() < 0.3 and len(data) > 24:  # big-endian size fields of PNG/GIF/BMP headers
            b = bytearray(data)
            i = rng.randrange(8, min(len(b) - 4, 64))
            b[i : i + 4] = struct.pack(rng.choice([">I", "<I"]), rng.choice(INTERESTING_U32))
            data = bytes(b)
    return data[:max_size]


def run_random_images(
    count: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    findings_dir: str | None = None,
    stats_path: str | None = None,
) -> Stats:
    """Pure-Python fuzzing of image loading (the encoder's input side)."""
    seeds = image_seeds()
    rng = random.Random(seed)
    stats = Stats()
    last = time.time()
    while not (
        (count is not None and stats.inputs >= count) or (seconds is not None and time.time() - stats.t0 >= seconds)
    ):
        data = mutate_image(rng.choice(seeds), rng, seeds)
        stats.inputs += 1
        try:
            out = check_image(data)
        except Finding as f:
            out = "finding"
            record(stats, data, f, findings_dir)
        stats.outcomes[out] = stats.outcomes.get(out, 0) + 1
        if stats_path and time.time() - last > 60:
            last = time.time()
            Path(stats_path).write_text(json.dumps(stats.as_dict(), indent=1))
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats.as_dict(), indent=1))
    return stats
