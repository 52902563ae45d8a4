"""Image loading policy: modes, bit depths, EXIF rotation, padding, output formats."""

import io

import numpy as np
import pytest
from conftest import make_image, png_bytes
from PIL import Image

from maxswitch import image as imagelib


def load(im, fmt="PNG", **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return imagelib.load(buf.getvalue())


@pytest.mark.parametrize("mode,kind", [("RGB", 3), ("RGBA", 4), ("L", 1), ("LA", 2), ("P", 3), ("1", 1), ("CMYK", 3)])
def test_modes_become_rgb8_and_record_their_kind(mode, kind):
    im = make_image(20, 12, mode=mode)
    li = load(im, "TIFF" if mode == "CMYK" else "PNG")
    assert li.rgb.shape == (12, 20, 3) and li.rgb.dtype == np.uint8
    assert li.kind == kind


def test_greyscale_is_replicated():
    li = load(make_image(9, 7, mode="L"))
    assert (li.rgb[..., 0] == li.rgb[..., 1]).all() and (li.rgb[..., 1] == li.rgb[..., 2]).all()


def test_16_bit_png_is_scaled_to_8_bits():
    a = np.arange(64 * 8, dtype=np.uint16).reshape(8, 64) * 128
    im = Image.fromarray(a.astype(np.int32), "I").convert("I;16")
    li = load(im)
    assert li.bit_depth == 16 and li.kind == 1
    np.testing.assert_array_equal(li.rgb[..., 0], ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))


def test_exif_rotation_is_applied():
    im = make_image(30, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    li = load(im, "JPEG", exif=exif.tobytes())
    assert (li.width, li.height) == (10, 30)


def test_palette_with_transparency_counts_as_alpha():
    im = make_image(8, 8).convert("P")
    im.info["transparency"] = 0
    assert load(im, transparency=0).kind == 4


def test_animated_gif_reports_frames():
    frames = [make_image(8, 8, seed=i).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    li = imagelib.load(buf.getvalue())
    assert li.frames == 3


@pytest.mark.parametrize(
    "data,msg",
    [
        (b"", "empty"),
        (b"hello, not an image", "not a readable image"),
        (png_bytes(make_image(32, 32))[:60], "not a readable image"),
    ],
)
def test_bad_inputs_raise_image_error(data, msg):
    with pytest.raises(imagelib.ImageError, match=msg):
        imagelib.load(data)


def test_pixel_limit():
    with pytest.raises(imagelib.ImageError, match="over the limit"):
        imagelib.load(png_bytes(make_image(100, 100)), max_pixels=9999)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 9), (8, 8), (17, 31)])
def test_pad_to_multiple_replicates_edges(h, w):
    a = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    p = imagelib.pad_to_multiple(a)
    assert p.shape[0] % 8 == 0 and p.shape[1] % 8 == 0
    np.testing.assert_array_equal(p[:h, :w], a)
    np.testing.assert_array_equal(p[-1, -1], a[-1, -1])


def test_output_format_from_extension():
    assert imagelib.format_for("a.PNG") == "PNG"
    assert imagelib.format_for("a.jpg") == "JPEG"
    assert imagelib.format_for("-") == "PNG"
    with pytest.raises(imagelib.ImageError, match="extension"):
        imagelib.format_for("a.xyz")


@pytest.mark.parametrize("fmt,side", [("WEBP", 16384), ("JPEG", 65501)])
def test_outputs_too_large_for_their_format_are_refused_in_one_line(fmt, side):
    from PIL import Image

    from maxswitch import image

    with pytest.raises(image.ImageError, match="too large for"):
        image.save(Image.new("RGB", (side, 1)), fmt)


@pytest.mark.parametrize(
    "mode,values,want",
    [
        ("I", [0, 1 << 20, (1 << 31) - 1], [0, 0, 255]),  # 32-bit integers: the full range, not clipped
        ("I", [0, 30000, 65535], [0, 117, 255]),  # 16-bit range in an I image
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        ("F", [0.0, 32767.5, 65535.0], [0, 128, 255]),  # a 16-bit float range: scaled
    ],
)
def test_wide_samples_are_scaled_not_clipped(mode, values, want):
    from PIL import Image

    from maxswitch import image

    a = np.array([values], dtype=np.int32 if mode == "I" else np.float32)
    rgb, depth = image._to_rgb8(Image.fromarray(a, mode))
    assert list(rgb[0, :, 0]) == want


@pytest.mark.parametrize("kind", [imagelib.KIND_RGB, imagelib.KIND_GREY])
def test_png_written_band_by_band_has_the_pixels_of_the_pillow_path(kind):
    rgb = np.asarray(make_image(203, 77, seed=9))
    data = b"".join(imagelib.png_chunks(rgb, kind, rows=16))
    want = imagelib.to_pil(rgb, kind)
    got = Image.open(io.BytesIO(data))
    got.load()
    assert got.mode == want.mode and got.size == want.size
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_large_decodes_are_written_band_by_band(tmp_path, tiny_zoo, monkeypatch):
    """Over STREAM_PNG_PIXELS the CLI writes the PNG band by band: same pixels as below it."""
    from maxswitch import cli

    src = tmp_path / "a.png"
    make_image(96, 64, seed=2).save(src)
    msw = tmp_path / "a.msw"
    assert cli.main(["encode", str(src), str(msw), "-m", "tiny-4-6-8", "--quiet"]) == 0
    assert cli.main(["decode", str(msw), str(tmp_path / "whole.png"), "--quiet"]) == 0
    monkeypatch.setattr(imagelib, "STREAM_PNG_PIXELS", 0)
    assert cli.main(["decode", str(msw), str(tmp_path / "bands.png"), "--quiet"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f)) for f in ("whole.png", "bands.png"))
    assert np.array_equal(a, b)
