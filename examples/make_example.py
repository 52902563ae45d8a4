"""Draw examples/example.png, the project's own test picture (no third-party content).

A small synthetic landscape with the things a codec finds hard: smooth gradients, hard
edges, fine texture, saturated colours and text, plus the mild sensor noise of a real camera
(sigma 2 levels). The noise matters to switch-only coding: in a perfectly flat area every pooling
window ties, all switches there are the same, and the decoder learns nothing about its colour
(docs/RESULTS.md measures this). Deterministic:

    python examples/make_example.py examples/example.png
"""

import sys

import numpy as np
from PIL import Image, ImageDraw


def draw(width: int = 384, height: int = 256, seed: int = 7, sensor_noise: float = 2.0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([90 + 100 * y / height, 140 + 80 * y / height, 235 - 40 * y / height], -1)
    img = sky.copy()
    ridge = 0.55 * height + 18 * np.sin(x / 37.0) + 9 * np.sin(x / 11.0 + 1.3)
    mountain = y > ridge
    img[mountain] = np.stack([70 + 0.2 * y, 95 + 0.15 * y, 60 + 0.1 * y], -1)[mountain]
    grass = y > 0.78 * height
    noise = rng.normal(0, 18, (height, width, 1))
    img[grass] = (np.array([60, 150, 50]) + noise)[grass]
    sun = (x - 0.78 * width) ** 2 + (y - 0.22 * height) ** 2 < (0.07 * width) ** 2
    img[sun] = [255, 220, 90]
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    d.rectangle([40, 120, 110, 200], fill=(200, 60, 40), outline=(20, 20, 20), width=3)
    d.polygon([(30, 122), (75, 85), (120, 122)], fill=(120, 40, 30))
    for i in range(6):
        d.line([(150 + 12 * i, 230), (150 + 12 * i, 170)], fill=(240, 240, 240), width=2)
    d.text((10, 8), "maxswitch", fill=(255, 255, 255))
    a = np.asarray(im).astype(np.float32) + rng.normal(0, sensor_noise, (height, width, 3))
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB")


if __name__ == "__main__":
    draw().save(sys.argv[1] if len(sys.argv) > 1 else "examples/example.png", optimize=True)
