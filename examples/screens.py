"""Draw six screenshot-like pictures: flat panels, text, charts, gradients (no third-party content).

Photographs have texture everywhere; screens do not. In a flat area every pooling window ties, so
switch-only coding knows nothing there but what the edges around it say (docs/RESULTS.md,
"Synthetic content"). These pictures are the project's own test set for that case, drawn with
Pillow's built-in bitmap font, deterministic (no noise, no randomness):

    python examples/screens.py OUT_DIR        # writes OUT_DIR/screen-*.png (the test set)
    maxswitch bench OUT_DIR --ladder          # then measure them
    python examples/screens.py --train DIR N  # N random screens for training (other pictures)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

W, H = 512, 384


def _font():
    return ImageFont.load_default(size=14) if hasattr(ImageFont, "FreeTypeFont") else ImageFont.load_default()


def _text_lines(d: ImageDraw.ImageDraw, x: int, y: int, n: int, fill, step: int = 18, width: int = 40) -> None:
    words = "the quick brown fox jumps over the lazy dog 0123456789 switches carry where".split()
    for i in range(n):
        line = " ".join(words[(i * 3 + k) % len(words)] for k in range(width // 6))
        d.text((x, y + i * step), line[:width], fill=fill, font=_font())


def window() -> Image.Image:
    """An application window: title bar, side panel, text, two buttons."""
    im = Image.new("RGB", (W, H), (236, 236, 236))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, W, 28], fill=(45, 85, 160))
    d.text((10, 6), "maxswitch - settings", fill=(255, 255, 255), font=_font())
    d.rectangle([0, 28, 130, H], fill=(210, 220, 235))
    for i, label in enumerate(["General", "Models", "Coding", "About"]):
        if i == 1:
            d.rectangle([0, 40 + 28 * i, 130, 64 + 28 * i], fill=(120, 150, 210))
        d.text((12, 44 + 28 * i), label, fill=(20, 20, 20), font=_font())
    d.rectangle([150, 45, W - 20, 250], fill=(255, 255, 255), outline=(160, 160, 160))
    _text_lines(d, 160, 55, 10, (30, 30, 30))
    for i, (col, label) in enumerate([((46, 160, 67), "Apply"), ((200, 50, 45), "Cancel")]):
        x0 = 300 + i * 100
        d.rounded_rectangle([x0, 300, x0 + 85, 332], 6, fill=col)
        d.text((x0 + 18, 308), label, fill=(255, 255, 255), font=_font())
    return im


def chart() -> Image.Image:
    """A bar chart with axes, grid and labels on white."""
    im = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.text((150, 10), "bits per pixel by codec", fill=(0, 0, 0), font=_font())
    for i in range(6):
        y = 340 - 55 * i
        d.line([50, y, W - 20, y], fill=(220, 220, 220))
        d.text((15, y - 8), f"{i * 2}", fill=(60, 60, 60), font=_font())
    d.line([50, 40, 50, 340], fill=(0, 0, 0), width=2)
    d.line([50, 340, W - 20, 340], fill=(0, 0, 0), width=2)
    colours = [(230, 85, 13), (49, 130, 189), (49, 163, 84), (117, 107, 177), (222, 45, 38), (253, 174, 107)]
    for i, (v, c) in enumerate(zip([7.5, 3.2, 1.1, 0.4, 2.3, 5.0], colours)):
        x0 = 70 + i * 72
        d.rectangle([x0, 340 - int(v * 27.5), x0 + 48, 339], fill=c)
        d.text((x0 + 4, 350), f"c{i}", fill=(0, 0, 0), font=_font())
    return im


def gradients() -> Image.Image:
    """Linear and radial gradients with flat shapes over them."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([255 * x / W, 255 * y / H, 255 * (1 - x / W)], -1)
    r = np.hypot(x - 380, y - 120) / 160
    disc = r < 1
    img[disc] = (np.array([250, 250, 250]) * (1 - r[..., None]) + np.array([40, 40, 120]) * r[..., None])[disc]
    im = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.rectangle([40, 220, 200, 340], fill=(250, 210, 40))
    d.ellipse([230, 250, 330, 350], fill=(30, 30, 30))
    d.polygon([(60, 40), (180, 60), (120, 170)], fill=(200, 30, 120))
    return im


def terminal() -> Image.Image:
    """A dark terminal with coloured monospace text."""
    im = Image.new("RGB", (W, H), (30, 32, 40))
    d = ImageDraw.Draw(im)
    colours = [(200, 200, 200), (120, 220, 120), (240, 200, 80), (110, 170, 250), (240, 110, 110)]
    lines = [
        "$ maxswitch encode photo.png -q 2",
        "photo.png: 768x512 -> 102 KB, 2.1 bpp",
        "$ maxswitch info photo.msw",
        "format_version   3",
        "what_bytes       6555",
        "$ ls -l",
        "-rw-r--r-- 1 user user 104857 photo.msw",
        "$ make test",
        "412 passed, 5 skipped in 290.1s",
    ]
    for i in range(19):
        d.text((10, 8 + 20 * i), lines[i % len(lines)], fill=colours[i % len(colours)], font=_font())
    return im


def slide() -> Image.Image:
    """A presentation slide: big title, coloured blocks, bullet text."""
    im = Image.new("RGB", (W, H), (250, 248, 240))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, W, 70], fill=(150, 20, 30))
    d.text((20, 18), "WHAT AND WHERE", fill=(255, 255, 255), font=ImageFont.load_default(size=32))
    for i, c in enumerate([(60, 120, 200), (80, 170, 90), (240, 170, 40)]):
        d.rectangle([30 + 160 * i, 100, 160 + 160 * i, 190], fill=c)
    for i in range(5):
        d.ellipse([34, 222 + 28 * i, 42, 230 + 28 * i], fill=(150, 20, 30))
    _text_lines(d, 52, 216, 5, (40, 40, 40), step=28, width=48)
    return im


def sheet() -> Image.Image:
    """A spreadsheet: header row, grid lines, numbers, one highlighted column."""
    im = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, W, 24], fill=(217, 225, 242))
    d.rectangle([192, 24, 288, H], fill=(255, 242, 204))
    for c in range(6):
        d.line([96 * c, 0, 96 * c, H], fill=(190, 190, 190))
        d.text((96 * c + 8, 5), "ABCDEF"[c], fill=(0, 0, 0), font=_font())
    for r in range(1, 17):
        y = 24 * r
        d.line([0, y, W, y], fill=(190, 190, 190))
        for c in range(6):
            d.text((96 * c + 8, y + 5), f"{(r * 37 + c * 101) % 1000 / 10:.1f}", fill=(20, 20, 20), font=_font())
    return im


def random_screen(seed: int, width: int = 384, height: int = 288) -> Image.Image:
    """A random screen for training (never one of ``SCREENS``, which are the test set): flat
    panels, bars, lines, gradients and text in random colours, sizes and places."""
    rng = np.random.default_rng([seed, 20261202])

    def colour():
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    if rng.random() < 0.3:  # a gradient background
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        a, b = np.array(colour(), np.float32), np.array(colour(), np.float32)
        t = (x / width if rng.random() < 0.5 else y / height)[..., None]
        im = Image.fromarray(np.clip(a * (1 - t) + b * t, 0, 255).round().astype(np.uint8))
    else:
        im = Image.new("RGB", (width, height), colour())
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(6, height // 2))
        kind = rng.integers(4)
        if kind == 0:
            d.rectangle([x0, y0, x1, y1], fill=colour(), outline=colour() if rng.random() < 0.4 else None)
        elif kind == 1:
            d.rounded_rectangle([x0, y0, x1, y1], int(rng.integers(2, 10)), fill=colour())
        elif kind == 2:
            d.line([x0, y0, x1, y1], fill=colour(), width=int(rng.integers(1, 4)))
        else:
            d.ellipse([x0, y0, x1, y1], fill=colour())
    fg = colour()
    for _ in range(int(rng.integers(2, 14))):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 16))
        n = int(rng.integers(4, 40))
        text = "".join(chr(int(c)) for c in rng.integers(33, 127, n))
        size = int(rng.choice([10, 12, 14, 16, 20, 28]))
        d.text((x, y), text, fill=fg if rng.random() < 0.6 else colour(), font=ImageFont.load_default(size=size))
    return im


SCREENS = {
    "window": window,
    "chart": chart,
    "gradients": gradients,
    "terminal": terminal,
    "slide": slide,
    "sheet": sheet,
}


def write_all(out_dir: str | Path) -> list[Path]:
    """Write every picture as OUT_DIR/screen-NAME.png; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in SCREENS.items():
        p = out / f"screen-{name}.png"
        draw().save(p, optimize=True)
        paths.append(p)
    return paths


def write_training(out_dir: str | Path, n: int) -> list[Path]:
    """Write ``n`` random training screens as OUT_DIR/train-screen-NNNN.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out / f"train-screen-{i:04d}.png"
        random_screen(i).save(p)
        paths.append(p)
    return paths


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--train":
        paths = write_training(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 2:
        paths = write_all(sys.argv[1])
    else:
        sys.exit("usage: python examples/screens.py OUT_DIR | --train OUT_DIR N")
    for p in paths:
        print(p)
