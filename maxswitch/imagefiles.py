"""Which files of a folder are images: one rule for training (``dataset.list_images``) and
``maxswitch bench`` (``bench.list_images``). No torch, no numpy.

The rule: a regular file (or a link to one) whose extension Pillow opens, in any case (what
``image.load`` reads; a damaged one is still listed and reported when it is read); nothing
hidden (a file or folder whose name starts with ``.``); links to folders are not followed.
Paths are sorted in byte order of their path below the folder, so a split (``train.select_split``)
or ``bench --limit`` picks the same files on every machine.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (``.png``, ...) of the formats Pillow can open here."""
    from PIL import Image

    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (``image_extensions``)."""
    return os.path.splitext(name)[1].lower() in image_extensions()


def walk(folder: str | Path) -> tuple[list[str], list[str]]:
    """The files below ``folder`` (recursively), as POSIX paths relative to it, sorted by bytes.

    Returns:
        (images, others): files with an image extension, and every other visible file.
    """
    root = Path(folder)
    images, others = [], []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            if not p.is_file():  # a dangling link, a FIFO, a socket
                continue
            (images if is_image_name(f) else others).append(p.relative_to(root).as_posix())
    key = os.fsencode
    return sorted(images, key=key), sorted(others, key=key)
