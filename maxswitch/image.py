"""Reading and writing images with Pillow: modes, EXIF orientation, 16 bit, padding, cropping.

Policy (also in README and docs/FORMAT.md):

* The encoder always sees 8-bit RGB. Greyscale is replicated to three channels; palette and
  CMYK images are converted to RGB; 16-bit and 32-bit integer images are scaled to 8 bits;
  EXIF orientation is applied first, so the image is coded as it is displayed.
* Alpha is dropped (switches carry no transparency): RGBA and LA decode as RGB and L; ``load``
  reports it among ``dropped`` when some pixel was not opaque, so the caller can warn.
* The colour kind of the input (grey or colour, with or without alpha) is recorded in the
  file so that a greyscale input decodes to a greyscale image.
* Animated images: the first frame is coded; ``load`` reports the frame count so the caller
  can warn.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .bitstream.format import MAGIC as MSW_MAGIC
from .bitstream.format import MAX_SIDE
from .errors import MaxswitchError

# Colour kinds recorded in the .msw header (fixed ids, never reordered).
KIND_GREY, KIND_GREY_ALPHA, KIND_RGB, KIND_RGB_ALPHA = 1, 2, 3, 4

DEFAULT_MAX_PIXELS = 256_000_000  # in the spirit of Pillow's MAX_IMAGE_PIXELS, larger for photo sensors


class ImageError(MaxswitchError):
    """An input that is not an image we can code (unreadable, empty, too large)."""


@dataclass
class LoadedImage:
    """An image ready for the encoder.

    Attributes:
        rgb: uint8 array (H, W, 3) (for a grey source, a read-only view of its grey values).
        kind: one of the KIND_* ids (colour kind of the source).
        bit_depth: bits per sample of the source (8 or 16).
        frames: number of frames in the source (first one is used).
        dropped: what the source carried that a .msw file does not keep: "alpha" (some
            pixel not opaque), "ICC profile", "EXIF" (EXIF orientation is applied to the
            pixels first).
    """

    rgb: np.ndarray
    kind: int
    bit_depth: int
    frames: int = 1
    dropped: tuple = ()

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def _kind_of(mode: str, has_transparency: bool) -> int:
    grey = mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La")
    alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or has_transparency
    if grey:
        return KIND_GREY_ALPHA if alpha else KIND_GREY
    return KIND_RGB_ALPHA if alpha else KIND_RGB


def _to_rgb8(im: Image.Image) -> tuple[np.ndarray, int]:
    """Convert any Pillow image to uint8 (H, W, 3); return it and the source bit depth."""
    mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # a strip of rows at a time: whole-image int64 or float64 temporaries were 8 bytes per
        # pixel each (a 16-bit 16000 x 16000 PNG peaked at 5.1 GB; docs/SECURITY.md)
        w, h = im.size
        step = max(1, (8 << 20) // max(1, w))
        strips = [(y, min(h, y + step)) for y in range(0, h, step)]

        def strip(y0, y1, dtype):
            return np.asarray(im.crop((0, y0, w, y1)), dtype=dtype)

        grey = np.empty((h, w), np.uint8)
        if mode == "F":
            top = 0.0
            for y0, y1 in strips:
                a = strip(y0, y1, np.float64)
                a = a[np.isfinite(a)]
                top = max(top, float(a.max(initial=0.0)))
            # [0, 1] (the float convention), else 8-bit, 16-bit or the data's own range: scaled, not clipped
            hi = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0 if top <= 65535.0 else top
            for y0, y1 in strips:
                a = np.nan_to_num(strip(y0, y1, np.float64), nan=0.0, posinf=hi, neginf=0.0)
                grey[y0:y1] = np.clip(np.round(a / hi * 255), 0, 255).astype(np.uint8)
            depth = 32
        else:
            top = max((int(strip(y0, y1, np.int64).max(initial=0)) for y0, y1 in strips), default=0)
            # the sample range: 16-bit modes, else the smallest of 8, 16 and 32 bits that holds the data
            # (a 32-bit integer image is scaled from its full range, not clipped at 65535)
            depth = 16 if mode.startswith("I;16") else (8 if top <= 255 else 16 if top <= 65535 else 32)
            full = (1 << depth) - 1 if depth < 32 else (1 << 31) - 1
            for y0, y1 in strips:
                a = (strip(y0, y1, np.int64).clip(0, full) * 255 + full // 2) // full  # the nearest 8-bit level
                grey[y0:y1] = a.clip(0, 255).astype(np.uint8)
        return _grey_rgb(grey), depth
    if mode in ("LA", "La", "1", "L"):
        return _grey_rgb(_by_strips(im, "L")), 8
    try:
        return _by_strips(im, "RGB"), 8
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds
        raise ImageError(f"cannot convert image mode {mode} to RGB: {e}") from None


def _transparent(im: Image.Image) -> bool:
    """Whether a loaded image has a pixel that is not opaque: an alpha band below 255 somewhere,
    or a transparent colour or palette entry declared (``transparency``)."""
    bands = im.getbands()
    for band in ("A", "a"):
        if band in bands:
            return im.getchannel(band).getextrema()[0] < 255
    return "transparency" in im.info


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) grey as the (H, W, 3) RGB the encoder sees: a read-only view of the grey bytes
    repeated, not a copy (a 256-megapixel grey picture saves 512 MB)."""
    return np.broadcast_to(grey[:, :, None], (*grey.shape, 3))


def _by_strips(im: Image.Image, mode: str) -> np.ndarray:
    """The picture in ``mode`` ("RGB" or "L") as a new uint8 array, converted a strip of rows at a
    time: ``np.asarray(im)`` goes through ``tobytes``, which holds the picture's bytes twice
    (its pieces and their join) beside Pillow's own copy (a 256-megapixel RGB encode peaked at
    2.9 GB that way; docs/SECURITY.md). Every conversion used here is per pixel, so strips give
    the whole picture's values."""
    w, h = im.size
    out = np.empty((h, w, 3) if mode == "RGB" else (h, w), np.uint8)
    step = max(1, (8 << 20) // max(1, 4 * w))
    for y0 in range(0, h, step):
        piece = im.crop((0, y0, w, min(h, y0 + step)))
        out[y0 : y0 + piece.height] = np.asarray(piece if piece.mode == mode else piece.convert(mode))
    return out


_PIL_LIMIT_LOCK = threading.Lock()


def _over_limit(w: int, h: int, max_pixels: int) -> ImageError:
    return ImageError(f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")


def _rawmode(im: Image.Image) -> str:
    """The raw mode of the file's pixel data where Pillow's mode hides it (a 48-bit PNG opens
    as RGB, a 16-bit grey+alpha PNG as RGBA); "" when unknown."""
    try:
        raw = im.tile[0][3]
        raw = raw[0] if isinstance(raw, tuple) else raw
        return raw if isinstance(raw, str) else ""
    except (IndexError, TypeError, AttributeError):
        return ""


def load(data, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode image bytes, or an open seekable binary file (then the file's bytes are not held),
    in any format Pillow reads, into a LoadedImage.

    The pixel limit is checked from the file's header, before any pixel is decoded; Pillow's
    own decompression-bomb limit is set to the same number for the duration of the call, so
    ``max_pixels`` is the one limit in force (raise it with ``--max-pixels``). Pillow's warnings
    about damaged files are swallowed: the result or the ``ImageError`` says what matters. (Pillow
    also logs to the ``PIL`` logger; the CLI mutes it, see ``cli.quiet_libraries``.)

    Raises:
        ImageError: empty input, not an image, truncated, or more than ``max_pixels``.
    """
    if hasattr(data, "read"):  # an open file: Pillow reads what it needs from it
        fp = data
        head = fp.read(8)
        fp.seek(0)
    else:
        fp, head = None, data[:8]
    if not head:
        raise ImageError("input is empty (0 bytes)")
    if head == MSW_MAGIC:
        raise ImageError("input is a .msw file, not an image (use 'maxswitch decode' to decode it)")
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                im = Image.open(fp if fp is not None else io.BytesIO(data))
                w, h = im.size
                if w * h > max_pixels:
                    raise _over_limit(w, h, max_pixels)
                if w > MAX_SIDE or h > MAX_SIDE:  # the format's limit, before the encoder runs
                    raise ImageError(f"image is {w}x{h}; a .msw file holds at most {MAX_SIDE} pixels per side")
                if w <= 0 or h <= 0:
                    raise ImageError("image has no pixels")
                frames = getattr(im, "n_frames", 1)
                im.seek(0)
                raw = _rawmode(im)
                im.load()
                transparency = "transparency" in im.info
                dropped = ("alpha",) if _transparent(im) else ()
                dropped += tuple(
                    name for key, name in (("icc_profile", "ICC profile"), ("exif", "EXIF")) if im.info.get(key)
                )
                kind = _kind_of(im.mode, transparency)
                if raw.startswith("LA;16") and kind == KIND_RGB_ALPHA:
                    kind = KIND_GREY_ALPHA
                # in place: without it Pillow returns a copy even when nothing turns (a second
                # 4-byte-per-pixel image: a 256-megapixel encode peaked at 3.0 GB)
                ImageOps.exif_transpose(im, in_place=True)
                rgb, depth = _to_rgb8(im)
                if ";16" in raw and depth == 8:
                    depth = 16
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = f"{int(m.group(1))} pixels" if m else "more pixels than allowed"
        raise ImageError(f"image has {n}, over the limit of {max_pixels}") from None
    except MemoryError:
        raise ImageError("image is too large to decode in the memory available") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not a readable image: no image format recognised") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageError(f"not a readable image: {msg}") from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError("image has no pixels")
    if rgb.strides[2] != 0:  # not a grey picture's view (``_grey_rgb``)
        rgb = np.ascontiguousarray(rgb)
    return LoadedImage(rgb, kind, depth, frames, dropped)


def pad_to_multiple(rgb: np.ndarray, m: int = 8) -> np.ndarray:
    """Pad (H, W, 3) by edge replication on the bottom and right to multiples of ``m``."""
    h, w = rgb.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return rgb
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")


def to_pil(rgb: np.ndarray, kind: int) -> Image.Image:
    """Turn decoded uint8 (H, W, 3) into a Pillow image of the recorded colour kind."""
    im = Image.fromarray(rgb, "RGB")
    if kind in (KIND_GREY, KIND_GREY_ALPHA):
        im = im.convert("L")
    return im


def as_written(rgb: np.ndarray, kind: int) -> np.ndarray:
    """The pixels of uint8 (H, W, 3) as ``decode`` writes them for colour kind ``kind``: (H, W)
    for the grey kinds (``to_pil``'s conversion; a grey image replicated to RGB gives back its
    own values exactly), else (H, W, 3) as is. What ``decode --compare``, ``compare``, ``bench``
    and ``encode --target-psnr`` measure, so that they agree with the decoded file."""
    if kind in (KIND_GREY, KIND_GREY_ALPHA):
        return np.asarray(to_pil(rgb, kind))
    return rgb


def bands_to_pil(bands, kind: int, size: tuple[int, int]) -> Image.Image:
    """``to_pil`` of the image made of uint8 (rows, W, 3) bands from the top (``tiling.decode_bands``),
    pasted one by one into the Pillow image: the decoded array is never held whole beside it.
    ``size`` is (H, W)."""
    grey = kind in (KIND_GREY, KIND_GREY_ALPHA)
    im = Image.new("L" if grey else "RGB", (size[1], size[0]))
    y = 0
    for band in bands:
        im.paste(to_pil(np.ascontiguousarray(band), kind), (0, y))
        y += band.shape[0]
    if y != size[0]:
        raise ValueError(f"bands hold {y} rows, the image has {size[0]}")
    return im


_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
}


def recognised(prefix: bytes) -> bool:
    """Whether Pillow recognises an image format in a file's first bytes (an image whose header
    lies further, past a large metadata block, counts: only "no format" is False)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.open(io.BytesIO(prefix))
    except Image.UnidentifiedImageError:
        return False
    except Exception:  # noqa: BLE001 - a format was recognised and its header is cut or damaged
        return True
    return True


def format_for(path: str | None) -> str:
    """Pick the output format from a file name's extension (PNG for stdout, and for a character
    device or a FIFO such as ``/dev/null``, which are written through)."""
    if not path or path == "-":
        return "PNG"
    ext = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in _FORMATS and _is_stream(path):
        return "PNG"
    if ext not in _FORMATS:
        raise ImageError(
            f"unknown output image extension {ext or '(none)'!r}; use one of {', '.join(sorted(_FORMATS))}"
        )
    return _FORMATS[ext]


def _is_stream(path: str) -> bool:
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


# largest side each output format can hold (libjpeg: 65,500; libwebp: 16,383)
MAX_SIDE_OF = {"JPEG": 65500, "WEBP": 16383}


STREAM_PNG_PIXELS = 32_000_000  # decoded images above this are written as PNG band by band
# zlib level of the PNGs that decoding writes: 1 writes a Kodak image in 29 ms of CPU where
# Pillow's default 6 takes 127 ms (and 10 s of a 40-megapixel decode), for 9 % more bytes;
# the pixels are the same (docs/PERFORMANCE.md, "One image, one process")
PNG_LEVEL = 1


def png_chunks(rgb, kind: int, rows: int = 256, level: int = PNG_LEVEL, size: tuple[int, int] | None = None):
    """PNG bytes of decoded uint8 RGB, yielded band by band.

    ``rgb`` is either a whole (H, W, 3) array, cut into bands of ``rows`` rows, or an
    iterable of (rows_i, W, 3) bands from the top (``tiling.decode_bands``), with ``size``
    = (H, W). For images over ``STREAM_PNG_PIXELS``: ``to_pil`` + ``save`` would hold a
    second, 4-byte-per-pixel copy in Pillow and the whole file in memory (a 256-megapixel
    decode peaked at 2.2 GB that way; docs/SECURITY.md). Here the extra memory is one band,
    and with bands the decoded image is never held whole. Grey kinds are converted by
    Pillow band by band (the same values as ``to_pil``). Each row is filtered with PNG's Sub
    filter; the pixels are those ``save`` would write, the bytes are not.
    """
    import struct
    import zlib

    if isinstance(rgb, np.ndarray):
        (h, w), bands = rgb.shape[:2], (rgb,)
    else:
        (h, w), bands = size, rgb
    grey = kind in (KIND_GREY, KIND_GREY_ALPHA)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    yield b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if grey else 2, 0, 0, 0))
    z = zlib.compressobj(level)
    done = 0
    for piece in bands:
        if piece.shape[1] != w or done + piece.shape[0] > h:
            raise ValueError("bands do not fit the declared PNG size")
        done += piece.shape[0]
        yield from _png_rows(z, chunk, piece, rows, w, grey)
    if done != h:
        raise ValueError(f"bands hold {done} rows, the PNG declares {h}")
    yield chunk(b"IDAT", z.flush()) + chunk(b"IEND", b"")


def _png_rows(z, chunk, piece: np.ndarray, rows: int, w: int, grey: bool):
    """IDAT chunks of a band, filtered and compressed ``rows`` rows at a time (the buffers
    here are a few copies of ``rows`` rows, whatever the band's height)."""
    rows = max(1, min(rows, (16 << 20) // (3 * w)))  # a wide picture: fewer rows per step
    for y in range(0, piece.shape[0], rows):
        band = piece[y : y + rows]
        if grey:
            band = np.asarray(Image.fromarray(np.ascontiguousarray(band), "RGB").convert("L"))[..., None]
        c = band.shape[2]
        line = np.empty((band.shape[0], 1 + w * c), dtype=np.uint8)
        line[:, 0] = 1  # filter type Sub: each byte minus the byte one pixel to its left
        flat = band.reshape(band.shape[0], w * c)
        line[:, 1 : 1 + c] = flat[:, :c]
        np.subtract(flat[:, c:], flat[:, :-c], out=line[:, 1 + c :])
        out = z.compress(line)
        if out:
            yield chunk(b"IDAT", out)


def tiff_chunks(bands, kind: int, size: tuple[int, int]):
    """An uncompressed baseline TIFF of uint8 (rows, W, 3) bands from the top, yielded band by
    band (as ``png_chunks`` does for PNG): the picture is never held whole, neither as an array
    nor as a Pillow image (4 bytes per pixel: a 1,048,576 x 244 decode to TIFF peaked at 2.24 GB
    that way; docs/SECURITY.md). One strip per row; grey kinds are written as 8-bit grey,
    converted by Pillow band by band (the values of ``to_pil``). Pixels are those ``save`` writes.
    """
    import struct

    h, w = size
    grey = kind in (KIND_GREY, KIND_GREY_ALPHA)
    spp = 1 if grey else 3
    row = w * spp
    n_tags = 10
    ifd = 8
    extra = ifd + 2 + 12 * n_tags + 4  # after the IFD: BitsPerSample (RGB), the strip arrays, the pixels
    bps_at = extra
    offs_at = bps_at + (8 if not grey else 0)
    counts_at = offs_at + 4 * h
    data_at = counts_at + 4 * h if h > 1 else offs_at  # one strip: its offset and size are in the tags
    if data_at + row * h > 0xFFFFFFFF:
        raise ImageError(f"image of {w}x{h} is too large for a TIFF file (4 GiB)")

    def tag(t, typ, count, value):
        return struct.pack("<HHI", t, typ, count) + (
            struct.pack("<HH", value, 0) if typ == 3 and count == 1 else struct.pack("<I", value)
        )

    tags = [
        tag(256, 4, 1, w),
        tag(257, 4, 1, h),
        tag(258, 3, spp, 8) if grey else tag(258, 3, 3, bps_at),
        tag(259, 3, 1, 1),  # no compression
        tag(262, 3, 1, 1 if grey else 2),  # BlackIsZero / RGB
        tag(273, 4, h, offs_at) if h > 1 else tag(273, 4, 1, data_at),
        tag(277, 3, 1, spp),
        tag(278, 4, 1, 1),  # one row per strip
        tag(279, 4, h, counts_at) if h > 1 else tag(279, 4, 1, row),
        tag(284, 3, 1, 1),  # chunky
    ]
    head = b"II*\x00" + struct.pack("<I", ifd) + struct.pack("<H", n_tags) + b"".join(tags) + struct.pack("<I", 0)
    if not grey:
        head += struct.pack("<HHHH", 8, 8, 8, 0)
    if h > 1:
        head += np.arange(data_at, data_at + row * h, row, dtype="<u4").tobytes()
        head += np.full(h, row, "<u4").tobytes()
    assert len(head) == data_at
    yield head
    done = 0
    for piece in bands:
        if piece.shape[1] != w or done + piece.shape[0] > h:
            raise ValueError("bands do not fit the declared TIFF size")
        done += piece.shape[0]
        if grey:
            piece = np.asarray(Image.fromarray(np.ascontiguousarray(piece), "RGB").convert("L"))
        yield np.ascontiguousarray(piece).tobytes()
    if done != h:
        raise ValueError(f"bands hold {done} rows, the TIFF declares {h}")


def check_fits(fmt: str, width: int, height: int) -> None:
    """Raise ImageError if a ``width`` x ``height`` image is larger than ``fmt`` can hold
    (checked before decoding as well as in ``save``)."""
    limit = MAX_SIDE_OF.get(fmt)
    if limit and max(width, height) > limit:
        raise ImageError(f"{width}x{height} is too large for {fmt} (at most {limit} pixels per side); decode to .png")


def save(im: Image.Image, fmt: str, fp=None):
    """Encode a Pillow image in ``fmt`` (lossless PNG by default) into the file object ``fp``,
    or, without one, return its bytes as a view of the buffer Pillow wrote.

    Raises:
        ImageError: the image is larger than the format can hold.
    """
    check_fits(fmt, im.width, im.height)
    buf = io.BytesIO() if fp is None else fp
    if fmt == "JPEG":
        im.save(buf, fmt, quality=95)
    elif fmt == "WEBP":
        im.save(buf, fmt, lossless=True)
    elif fmt == "PNG":
        im.save(buf, fmt, compress_level=PNG_LEVEL)
    else:
        im.save(buf, fmt)
    return buf.getbuffer() if fp is None else None
