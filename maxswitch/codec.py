"""The codec: image -> switches -> .msw bytes, and back. The CLI and the API both call this.

encode:  image.load -> pad to x8 -> Encoder -> payload coding -> format.write
decode:  format.read -> payload decoding -> Decoder -> crop -> image

Payload codings: ``"context"`` (format version 2, coding 2: the model's learned MLP context
model and an ANS coder, ``context.py``, ``entropy.py``), ``"table"`` (format version 2, coding
3: context tables of counts and the same coder, ``tables.py``, 4 to 5 times faster for about 4 %
more bits), ``"zstd"`` (format version 1, packed switches in a zstd frame, ``switches.py``).
``"auto"``, the default, codes with the model's fastest learned coding (tables where it has
them, else its context model) and with zstd, and keeps the smaller file.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import image as imagelib
from .bitstream import format as fmt
from .bitstream import switches as sw
from .config import DEFAULT_CODING
from .errors import MaxswitchError
from .networks.zoo import DEFAULT_MODEL, Model, ModelError, load_model

CODINGS = ("auto", "context", "table", "zstd")
WHAT_CHOICES = ("auto", "model")  # encode(what=...): the what part per picture, or the model's own


class CodecError(MaxswitchError):
    """A file or image the codec cannot process; the message is meant for the user."""


def _as_loaded(img, max_pixels: int) -> imagelib.LoadedImage:
    from PIL import Image

    if isinstance(img, imagelib.LoadedImage):
        return img
    if isinstance(img, (str, Path)):
        return imagelib.load(Path(img).read_bytes(), max_pixels)
    if isinstance(img, (bytes, bytearray, memoryview)):
        return imagelib.load(bytes(img), max_pixels)
    if isinstance(img, Image.Image):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return imagelib.load(buf.getvalue(), max_pixels)
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
            raise CodecError(f"expected a uint8 array (H, W, 3), got {img.dtype} {img.shape}")
        return imagelib.LoadedImage(np.ascontiguousarray(img), imagelib.KIND_RGB, 8)
    raise CodecError(f"cannot encode an object of type {type(img).__name__}")


def _model(model) -> Model:
    if isinstance(model, Model):
        return model
    return load_model(model)


def _msw_bytes(data) -> bytes:
    """A .msw file given as bytes, a path or an open binary file -> its bytes (bytes-like
    objects and ``format.FileBytes`` as they are: never copied)."""
    if isinstance(data, (bytes, bytearray, memoryview, fmt.FileBytes)):
        return data
    if isinstance(data, (str, Path)):
        return Path(data).read_bytes()
    if hasattr(data, "read"):
        return data.read()
    raise CodecError(f"cannot decode an object of type {type(data).__name__}; give bytes or a path")


def set_threads(threads: int | None) -> None:
    """Set the codec's threads, torch's included (None: leave them as they are; ``threads.py``)."""
    if threads:
        from . import threads as th

        th.set(int(threads))


ENCODERS = ("numba", "torch")  # MAXSWITCH_ENCODER picks one; numba (encoder.SwitchEncoder) by default


def compute_switches(
    model: Model, rgb: np.ndarray, tile: int | None = None, encoder: str | None = None, progress=None
) -> list[np.ndarray]:
    """Run the encoder on a uint8 (H, W, 3) image; return 3 arrays (C_s, H'/2^s, W'/2^s).

    The image is padded to multiples of 8 (H' x W') by edge replication, tile by tile, as
    ``image.pad_to_multiple`` would: an already padded image gives the same switches.
    ``encoder``: "numba" (``encoder.SwitchEncoder``, no torch) or "torch" (``nets.Encoder``, the
    reference); the same switches, bit for bit. Default: ``$MAXSWITCH_ENCODER`` or "numba".
    ``progress``: called with 1 after each encoder tile, if given.
    """
    import os

    from .networks.tiling import encode_tiled

    kind = encoder or os.environ.get("MAXSWITCH_ENCODER") or "numba"
    if kind not in ENCODERS:
        raise CodecError(f"unknown encoder {kind!r} (choose from {', '.join(ENCODERS)})")
    codes = encode_tiled(model.switch_encoder if kind == "numba" else model.encoder, rgb, tile, progress)
    return [np.asarray(c[0]) for c in codes]


DECODERS = ("auto", "onnx", "torch")  # MAXSWITCH_DECODER picks one; auto by default


def _torch_device(device: str):
    """A torch device for ``--device`` (``cuda`` or ``cuda:N``; ``cpu`` is the default path and
    never comes here), or CodecError where it cannot be had."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CodecError(f"unknown device {device!r} (cpu, cuda or cuda:N)") from None
    if dev.type != "cuda":
        raise CodecError(f"unsupported device {device!r} (cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise CodecError(f"device {device!r}: CUDA is not available on this machine")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CodecError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def decoder_runner(model: Model, decoder: str | None = None, device: str | None = None):
    """What decodes ``model``'s switches: the ONNX Runtime runner of a direct decoder
    (``fastdecode.py``) or the torch decoder module (the reference, and every other decoder kind).

    ``decoder``: "onnx", "torch", or "auto" (the default, or ``$MAXSWITCH_DECODER``): ONNX Runtime,
    unless torch is already imported in this process, whose ``DirectRunner`` decodes a photo in
    about 15 % less time (docs/PERFORMANCE.md): one picture from a shell then never pays torch's
    2 s import, and a program that has torch loaded anyway gets its faster decoder. The two give
    the same picture within a rounding step (tests/test_fastdecode.py).

    ``device``: None or "cpu" for the above; "cuda" or "cuda:N" runs the torch decoder on that
    GPU, tile by tile (``tiling.TorchRunner``; the tile size is ``tile``'s, the whole band when 0)."""
    import os
    import sys

    from .networks.fastdecode import runner_for

    if device not in (None, "cpu"):
        dev = _torch_device(device)  # checked before the model's decoder is built
        if not model.has_decoder:
            raise CodecError(f"model {model.name} has no decoder")
        from .networks.tiling import TorchRunner

        return TorchRunner(model.decoder, dev)

    kind = decoder or os.environ.get("MAXSWITCH_DECODER") or "auto"
    if kind not in DECODERS:
        raise CodecError(f"unknown decoder {kind!r} (choose from {', '.join(DECODERS)})")
    if not model.has_decoder:
        raise CodecError(f"model {model.name} has no decoder")
    if kind == "torch" or (kind == "auto" and sys.modules.get("torch") is not None):
        return model.decoder
    return runner_for(model) or model.decoder


def reconstruct(
    model: Model, codes: list[np.ndarray], tile: int | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Run the decoder on switches; return uint8 (H, W, 3) of ``size`` (default: the padded size)."""
    from .networks.tiling import decode_tiled

    return decode_tiled(decoder_runner(model), codes, tile, size)


def encode(
    img,
    model=None,
    *,
    max_pixels: int = imagelib.DEFAULT_MAX_PIXELS,
    level: int = sw.ZSTD_LEVEL,
    tile: int | None = None,
    threads: int | None = None,
    coding: str | None = None,
    quality: int | None = None,
    progress=None,
    release_pixels: bool = False,
    what: str = "auto",
) -> bytes:
    """Compress an image into a .msw byte string: its switches and, for a what+where model, its
    what part.

    Args:
        img: a path, encoded image bytes, a PIL image or a uint8 array (H, W, 3).
        model: a shipped model's name, an asset path or a loaded ``Model``
            (default ``config.DEFAULT_MODEL``).
        max_pixels: refuse larger images (decompression-bomb guard).
        level: zstd level (coding "zstd" only).
        tile: encode in tiles of this many pixels per side (same bytes as untiled).
        threads: torch threads.
        coding: "auto" (the default: the model's fastest learned coding and zstd, the smaller
            file is kept), "context" (format v2, the model's MLP context model), "table"
            (format v2, the model's context tables) or "zstd" (format v1).
        quality: a rung of the rate-distortion ladder, 1..len(config.LADDER), instead of a model.
        progress: called as ``progress(done, total)`` as the work advances (encoder tiles, payload
            tiles), from the threads that do it; for a progress bar.
        release_pixels: with a ``LoadedImage``, drop its pixels (``rgb`` becomes None) once the
            switches are computed, so that they are not held while the switches are coded.
        what: for a what+where model, "auto" (the default: pictures that are mostly flat, such
            as screenshots, get the model's decoder for flat pictures where its manifest entry
            names one, else a what part of 2x2 blocks: ``_for_picture``) or "model" (the model
            and its own what part for every picture).

    Returns:
        The complete file. The same image and model always give the same bytes.
    """
    set_threads(threads)
    if quality is not None:
        if model is not None:
            raise CodecError("give a model or a quality, not both")
        from .networks.zoo import model_for_quality

        model = model_for_quality(quality)
    m = _model(model or DEFAULT_MODEL)
    coding = coding or DEFAULT_CODING
    if what not in WHAT_CHOICES:
        raise CodecError(f"unknown what choice {what!r} (choose from {', '.join(WHAT_CHOICES)})")
    if coding not in CODINGS:
        raise CodecError(f"unknown payload coding {coding!r} (choose from {', '.join(CODINGS)})")
    if coding == "context" and m.context is None:
        raise CodecError(f"model {m.name} has no context model; use the zstd coding")
    if coding == "table" and m.table is None:
        raise CodecError(f"model {m.name} has no context tables; use the context or zstd coding")
    loaded = _as_loaded(img, max_pixels)
    m, spec = _for_picture(m, loaded.rgb, what, coding)
    learned = None if coding == "zstd" else "table" if coding == "table" else "context"
    if coding == "auto":
        learned = "table" if m.table is not None else "context" if m.context is not None else None
    step = _Steps(progress, loaded.height, loaded.width, tile, learned is not None, coding in ("table", "context"))
    codes = compute_switches(m, loaded.rgb, tile, progress=step)  # pads to multiples of 8 tile by tile
    base = dict(
        width=loaded.width,
        height=loaded.height,
        model=m.name,
        encoder_digest=bytes.fromhex(m.encoder_digest)[: fmt.DIGEST_BYTES],
        channels=m.config.channels,
        kind=loaded.kind,
        bit_depth=loaded.bit_depth,
        raw_size=fmt.raw_size(loaded.width, loaded.height, m.config.channels),
    )
    wrap = _what_wrapper(spec, loaded.rgb, codes)  # version 3: the what part beside the switches
    if release_pixels:
        loaded.rgb = None
    v2 = None
    if learned is not None:
        from .bitstream import entropy

        table = learned == "table"
        h = fmt.Header(
            **base,
            coding=fmt.CODING_TABLE if table else fmt.CODING_CONTEXT,
            version=2,
            context_digest=bytes.fromhex(m.table_digest if table else m.context_digest)[: fmt.DIGEST_BYTES],
        )
        v2 = fmt.write(*wrap(h, entropy.encode(m.table if table else m.context, codes, step)))
        if coding != "auto":
            return v2
    packed = sw.pack(codes)
    del codes
    v1 = fmt.write(*wrap(fmt.Header(**base), sw.compress(packed, level)))
    step(1)
    # auto: the smaller file (the context model, trained on photographs, can lose to zstd's long
    # matches on synthetic pictures with flat areas); ties go to the context coding
    return v1 if v2 is not None and len(v1) < len(v2) else (v2 or v1)


class _Steps:
    """``encode``'s progress: counts units of work (encoder tiles, payload tiles, the zstd
    payload) and reports ``(done, total)`` to a callback, from any thread."""

    def __init__(self, progress, height: int, width: int, tile, learned: bool, learned_only: bool):
        import threading

        from .bitstream.entropy import tiles
        from .networks.tiling import encoder_tiles

        self.progress, self.done, self.lock = progress, 0, threading.Lock()
        ctx = len(tiles(-(-height // 8) * 8, -(-width // 8) * 8)) if learned else 0
        self.total = encoder_tiles(height, width, tile) + ctx + (0 if learned_only else 1)

    def __call__(self, n: int) -> None:
        if self.progress is None:
            return
        with self.lock:
            self.done += n
            done = self.done
        self.progress(done, self.total)


def _what_spec(m: Model):
    """The what part a model's files carry (a ``what.WhatSpec``), or None for switch-only models."""
    if not m.config.what:
        return None
    from .bitstream.what import WhatSpec

    return WhatSpec(*m.config.what)


def _for_picture(m: Model, rgb: np.ndarray, choice: str, coding: str):
    """The model and what part (a ``what.WhatSpec``, None for switch-only models) that ``encode``
    writes this picture with: ``m`` and its own what part, except with ``choice`` "auto" for a
    mostly flat picture (``what.is_flat``), which gets the model's manifest ``flat_model`` (a
    decoder trained on such pictures, when it has the coding asked for) and its what part, or
    else ``m`` with 2x2 blocks (``what.flat_spec``)."""
    spec = _what_spec(m)
    if spec is None or choice != "auto":
        return m, spec
    from .bitstream import what

    if not what.is_flat(rgb):
        return m, spec
    flat = _flat_model(m)
    if flat:
        f = _model(flat)
        if not ((coding == "context" and f.context is None) or (coding == "table" and f.table is None)):
            return f, _what_spec(f)
    return m, what.flat_spec(spec)


def _flat_model(m: Model) -> str | None:
    """The name of the decoder for flat pictures that shipped model ``m``'s manifest entry names
    (``flat_model``), or None."""
    from .networks.zoo import shipped

    entry = shipped(m.name)
    return entry.get("flat_model") if entry and entry.get("sha256") == m.sha256 else None


def _what_wrapper(spec, rgb: np.ndarray, codes: list[np.ndarray]):
    """``wrap(header, switch_payload) -> (header, payload)``: unchanged for switch-only models
    (``spec`` None); else the version-3 header and payload (the what part ``spec`` of ``rgb``,
    the switches' checksum)."""
    if spec is None:
        return lambda h, payload: (h, payload)
    from .bitstream import parts, what

    H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
    rgb = imagelib.pad_to_multiple(rgb)
    what_bytes, _ = what.encode(rgb, spec)
    head = parts.join(spec, what_bytes, parts.switch_checksum(codes, H, W), b"")

    def wrap(h: fmt.Header, payload: bytes):
        digest = h.context_digest or bytes(fmt.DIGEST_BYTES)
        return dataclasses.replace(h, version=fmt.VERSION_WHAT, context_digest=digest), head + payload

    return wrap


@dataclass
class TargetPick:
    """The rung ``encode_for_target`` chose for one image.

    Attributes:
        data: the .msw file of that rung.
        quality: the rung, 1..len(ladder) (``-q``).
        bpp: the file's bits per pixel.
        psnr: its PSNR in dB as ``decode`` writes it (a PSNR target only, else None).
        reached: whether the target is met (else the nearest rung: the cheapest for a size,
            the best for a PSNR).
        trials: trial encodes made (for a PSNR target, each with a decode).
    """

    data: bytes
    quality: int
    bpp: float
    psnr: float | None
    reached: bool
    trials: int


def encode_for_target(
    img,
    *,
    bpp: float | None = None,
    psnr: float | None = None,
    ladder=None,
    max_pixels: int = imagelib.DEFAULT_MAX_PIXELS,
    level: int = sw.ZSTD_LEVEL,
    tile: int | None = None,
    threads: int | None = None,
    coding: str | None = None,
    what: str = "auto",
) -> TargetPick:
    """Encode an image on the rung of the ladder that meets a target, chosen for this image.

    Rungs are tried from the cheapest (``-q 1``) up, each a trial encode in memory:

    * ``bpp``: the best rung whose whole file is at most ``bpp`` bits per pixel. The search
      stops at the first rung over the size (the ladder's rates increase along it:
      tests/test_ladder.py), so it costs that many trial encodes, at most ``len(ladder)``, and
      no decoding. When even rung 1 is over, rung 1 is returned (``reached`` False).
    * ``psnr``: the cheapest rung whose decoded image, as ``decode`` writes it, has at least
      ``psnr`` dB against the image. Each trial is encoded and decoded; the search stops at the
      first rung that reaches the PSNR, at most ``len(ladder)`` trials. When none does, the rung
      of the highest PSNR is returned (``reached`` False).

    Args:
        img: as ``encode``.
        ladder: model names, cheapest first (default ``config.LADDER``).
        max_pixels, level, tile, threads, coding, what: as ``encode``, for every trial.

    Raises:
        CodecError: neither or both targets, or a target that is not positive.
    """
    from .config import LADDER
    from .evaluation import metrics

    if (bpp is None) == (psnr is None):
        raise CodecError("give one target: a bpp or a PSNR")
    target = bpp if bpp is not None else psnr
    if not target > 0:
        raise CodecError(f"the target must be above 0, got {target}")
    ladder = tuple(ladder or LADDER)
    loaded = _as_loaded(img, max_pixels)
    x = imagelib.as_written(loaded.rgb, loaded.kind) if psnr is not None else None
    pick = None
    for q, name in enumerate(ladder, 1):
        data = encode(
            loaded, name, max_pixels=max_pixels, level=level, tile=tile, threads=threads, coding=coding, what=what
        )
        rate = 8 * len(data) / (loaded.width * loaded.height)
        if bpp is not None:
            if rate > bpp:
                pick = pick or TargetPick(data, q, rate, None, False, q)
                pick.trials = q
                return pick
            pick = TargetPick(data, q, rate, None, True, q)
            continue
        rgb, h = decode_array(data, name, max_pixels=max_pixels, tile=tile, threads=threads)
        p = metrics.psnr(x, imagelib.as_written(rgb, h.kind))
        if pick is None or p > pick.psnr or p >= psnr:
            pick = TargetPick(data, q, rate, p, p >= psnr, q)
        if p >= psnr:
            return pick
    pick.trials = len(ladder)
    return pick


@dataclass
class Parsed:
    """A verified .msw file: its header and its decoded switches (C_s, H/2^s, W/2^s)."""

    header: fmt.Header
    codes: list[np.ndarray]
    payload_size: int
    file_size: int


def parse(data: bytes, max_pixels: int | None = imagelib.DEFAULT_MAX_PIXELS, model=None) -> Parsed:
    """Verify a .msw byte string and decode its switches.

    A zstd file (format v1) needs no model; a context-coded file (v2) needs the context
    model of the model it names (or of ``model``).

    Raises:
        fmt.FormatError, sw.PayloadError, ModelError: damaged or invalid files.
    """
    data = _msw_bytes(data)
    h, payload = fmt.read(data, max_pixels)
    m = resolve_model(h, model) if h.coding in fmt.LEARNED_CODINGS else None
    switches = _split(h, payload)[1]
    return Parsed(h, _unpack(h, switches, m), len(payload), len(data))


def _split(h: fmt.Header, payload):
    """(parts.Parts or None, the switches' payload) of a verified file's payload."""
    if h.version != fmt.VERSION_WHAT:
        return None, payload
    from .bitstream import parts

    p = parts.split(payload)
    return p, p.switches


def _what_picture(h: fmt.Header, p, src):
    """Check a version-3 file's switch checksum against ``src`` (3 arrays or a row source,
    read a row of tiles at a time) and decode its what part: uint8 (1, 3, H/8, W/8) (numpy)."""
    from .bitstream import parts, what

    H, W = h.padded
    if parts.switch_checksum(src, H, W) != p.checksum:
        raise sw.PayloadError("the switches do not match the file's switch checksum: the payload is corrupt")
    try:
        pic = what.decode(bytes(p.what[:]), p.spec, H, W)
    except what.WhatError as e:
        raise sw.PayloadError(str(e)) from None
    return np.ascontiguousarray(pic.transpose(2, 0, 1)[None])


def _unpack(h: fmt.Header, payload: bytes, model: Model | None, rows: bool = False):
    """A verified payload's switches: 3 arrays (C_s, H/2^s, W/2^s), or with ``rows`` a source of
    rows for ``tiling.decode_bands`` where that saves memory: zstd switches kept packed
    (``switches.PackedRows``), context tiles of images over ``LAZY_SWITCH_PIXELS`` decoded when
    their rows are first needed (``entropy.RowDecoder``)."""
    H, W = h.padded
    if h.coding in fmt.LEARNED_CODINGS:
        from .bitstream import entropy

        if rows and h.width * h.height > LAZY_SWITCH_PIXELS:
            return entropy.RowDecoder(_learned(h, model), payload, H, W)
        return entropy.decode(_learned(h, model), payload, H, W)
    packed = sw.decompress(payload, h.raw_size)
    pad = 8 * h.raw_size - 2 * h.switch_count  # the last byte's unused low bits: zero (docs/FORMAT.md)
    if pad and packed[-1] & ((1 << pad) - 1):
        raise sw.PayloadError("the packed switches' padding bits are not zero (corrupt)")
    shapes = sw.shapes(H, W, h.channels)
    return sw.PackedRows(packed, shapes) if rows else sw.unpack(packed, shapes)


def _learned(h: fmt.Header, m: Model):
    """The model part that codes a learned payload: the context model or the tables."""
    return m.table if h.coding == fmt.CODING_TABLE else m.context


def resolve_model(h: fmt.Header, model=None) -> Model:
    """The model that decodes a file: ``model`` if given, else the shipped model the file names.

    A file is never decoded by a model it does not name unless the caller passes one: a
    shipped model of another name that happens to share the encoder is not substituted. A file
    that names the decoder for flat pictures of the model passed (``_for_picture``) is decoded by
    that decoder, as ``encode`` with that model wrote it.

    Raises:
        ModelError: the model is not shipped, or its encoder (or, for context-coded files,
            its context model) is not the file's.
    """
    from .networks.zoo import shipped

    if model is None:
        if shipped(h.model) is None:
            raise ModelError(
                f"file was made with model {h.model!r} (encoder {h.encoder_digest.hex()[:12]}), "
                f"which this maxswitch does not ship; pass its asset with -m"
            )
        m = load_model(h.model)
    else:
        m = _model(model)
        if h.model != m.name and h.model == _flat_model(m):  # a flat picture that m handed on
            m = load_model(h.model)
    if not m.encoder_digest.startswith(h.encoder_digest.hex()):
        raise ModelError(
            f"model {m.name} has a different encoder than the one that made this file "
            f"(file {h.encoder_digest.hex()[:12]}, model {m.encoder_digest[:12]})"
        )
    if h.coding == fmt.CODING_CONTEXT and (
        m.context is None or not m.context_digest.startswith(h.context_digest.hex())
    ):
        have = m.context_digest[:12] if m.context is not None else "none"
        raise ModelError(f"file was coded with context model {h.context_digest.hex()[:12]}; model {m.name} has {have}")
    if h.coding == fmt.CODING_TABLE and (m.table is None or not m.table_digest.startswith(h.context_digest.hex())):
        have = m.table_digest[:12] if m.table is not None else "none"
        raise ModelError(f"file was coded with context tables {h.context_digest.hex()[:12]}; model {m.name} has {have}")
    if tuple(m.config.channels) != tuple(h.channels):
        raise fmt.FormatError(
            f"file's channel plan {','.join(map(str, h.channels))} does not match its encoder's "
            f"({','.join(map(str, m.config.channels))}): the header is corrupt"
        )
    return m


def decode_array(
    data: bytes,
    model=None,
    *,
    max_pixels: int | None = imagelib.DEFAULT_MAX_PIXELS,
    tile: int | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> tuple[np.ndarray, fmt.Header]:
    """Decode a .msw byte string to uint8 RGB (height, width, 3) and its header (``device``: as
    ``decoder_runner``'s)."""
    from .networks.tiling import join_bands

    h, bands = decode_bands(data, model, max_pixels=max_pixels, tile=tile, threads=threads, device=device)
    return join_bands(bands, h.height, h.width), h


LAZY_SWITCH_PIXELS = 32_000_000  # v2 images above this decode their switches row of tiles by row of tiles


def decode_bands(
    data,
    model=None,
    *,
    max_pixels: int | None = imagelib.DEFAULT_MAX_PIXELS,
    tile: int | None = None,
    threads: int | None = None,
    device: str | None = None,
):
    """``decode_array`` without ever holding the decoded image: (header, bands), where bands
    yields uint8 (rows, width, 3) from the top (``tiling.decode_bands``).

    The file is read and checked (CRC, sizes, model, and for zstd files the whole payload's
    checksum) before this returns. The switches are not held whole either: zstd files keep
    them packed (2 bits each) and unpack a band at a time; context-coded files over
    ``LAZY_SWITCH_PIXELS`` decode a row of tiles when a band first needs it, so a damaged
    tile there raises ``PayloadError`` from the iterator, part-way through (``write_atomic``
    then removes its temporary file); smaller ones are decoded whole here.
    """
    from .networks.tiling import decode_bands as bands

    set_threads(threads)
    h, payload = fmt.read(_msw_bytes(data), max_pixels)
    m = resolve_model(h, model)  # before inflating: the header must agree with the model
    runner = decoder_runner(m, device=device)
    p, switches = _split(h, payload)
    if p is None and m.config.what:
        raise ModelError(f"model {m.name} needs a what part (format version 3); this file has only switches")
    if p is not None and not m.config.what:
        raise ModelError(f"file has a what part (format version 3); model {m.name} decodes switches only")
    if p is not None and p.spec.factor > 8:
        raise ModelError(f"model {m.name} reads what parts of 2, 4 or 8-pixel blocks; this file's are {p.spec.factor}")
    codes = _unpack(h, switches, m, rows=True)
    if p is not None:
        from .networks.tiling import WithWhat, as_source

        check = _unpack(h, switches, m, rows=True) if isinstance(codes, entropy_row_decoder()) else codes
        pic = _what_picture(h, p, check)
        codes = WithWhat(as_source(codes), pic)
    del payload, switches
    return h, bands(runner, codes, tile, (h.height, h.width))


def entropy_row_decoder():
    """entropy.RowDecoder (imported on use): it forgets the rows it has given, so a checksum
    pass over it needs a second one."""
    from .bitstream.entropy import RowDecoder

    return RowDecoder


def join_bands(bands, height: int, width: int) -> np.ndarray:
    """The whole uint8 (height, width, 3) image from ``decode_bands``' bands."""
    from .networks.tiling import join_bands as join

    return join(bands, height, width)


def decode(data: bytes, model=None, **kw):
    """Decode a .msw byte string to a PIL image of the source's size and colour kind.

    Args:
        data: the file's bytes.
        model: override the model the file names (must share its encoder).
        kw: ``max_pixels``, ``tile``, ``threads`` as in ``decode_array``.
    """
    rgb, h = decode_array(data, model, **kw)
    return imagelib.to_pil(rgb, h.kind)


def info(data: bytes, max_pixels: int | None = imagelib.DEFAULT_MAX_PIXELS) -> dict:
    """Describe a .msw file: header fields, sizes, bpp and bits per switch.

    The whole file is verified in bounded memory: the CRC, and for zstd files the zstd
    checksum and sizes (the switches are decoded in steps and counted, never held); for
    context-coded files the tile structure of the payload (decoding them needs the model).
    """
    data = _msw_bytes(data)
    h, payload = fmt.read(data, max_pixels)
    p, switches = _split(h, payload)
    if h.coding in fmt.LEARNED_CODINGS:
        from .bitstream import entropy

        H, W = h.padded
        for _ in entropy.iter_tiles(switches, H, W):
            pass
    else:
        sw.decompress(switches, h.raw_size, keep=False)
    file_size, payload_size = len(data), len(switches)
    n = h.switch_count
    parts_info = {}
    if p is not None:
        from .bitstream.parts import HEAD_BYTES

        parts_info = {
            "what": f"{p.spec.factor}x{p.spec.factor} block means, steps {p.spec.step_y}/{p.spec.step_c}",
            "what_bytes": len(p.what),
            "what_bpp": round(8 * len(p.what) / (h.width * h.height), 4),
            "parts_header_bytes": HEAD_BYTES,
            "switch_checksum": f"{p.checksum:08x}",
        }
    return {
        "format_version": h.version,
        "model": h.model,
        "encoder_digest": h.encoder_digest.hex(),
        "channels": list(h.channels),
        "width": h.width,
        "height": h.height,
        "colour": fmt.KINDS[h.kind],
        "source_bit_depth": h.bit_depth,
        "coding": fmt.CODINGS[h.coding],
        "context_digest": h.context_digest.hex() or None,
        "file_bytes": file_size,
        "header_bytes": len(data) - len(payload),
        "payload_bytes": payload_size,  # the switches' part (version 3: without the what part)
        "switches": n,
        "bits_per_switch": round(8 * payload_size / n, 4),
        "bpp": round(8 * file_size / (h.width * h.height), 4),
        "raw_bpp": round(2 * n / (h.width * h.height), 4),
    } | parts_info
