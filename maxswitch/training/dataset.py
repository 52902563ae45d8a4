"""Streaming training data: random crops of images and their switches, computed on the fly.

Nothing grows with the dataset but the list of its paths: each sample decodes its image
(workers keep the last few), cuts an aligned crop with a margin, and runs the fixed encoder
on the CPU over crop and margin, where its integer arithmetic is exact (nets.py). With a
margin of 8 pixels the crop's switches are those of the whole image at that place: a
stage-3 switch reads pixels up to 7 beyond its 8 x 8 window (three 3 x 3 convolutions at
scales 1, 2 and 4, each after a 2 x 2 pooling); ``tests/test_dataset.py`` checks equality. So
training sees exactly what ``maxswitch encode`` writes.

Samples are a pure function of (seed, global sample index): index ``g`` belongs to epoch
``g // (N * k)`` (N images, k crops per image); an epoch visits every image k times in an
order drawn from (seed, epoch); the crop's place and mirroring come from (seed, g). A global
batch of step s is the indices ``[s * B, (s + 1) * B)``, split between ranks in contiguous
slices, so a run continues identically after ``--resume``, with any number of processes.

Shapes: a sample is ``image`` uint8 (3, P, P) and ``codes`` 3 x uint8 (C_s, P / 2^s, P / 2^s).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .. import image as imagelib
from ..errors import MaxswitchError
from ..imagefiles import walk

MARGIN = 8  # pixels of context around a crop: a stage-3 switch reads 7 pixels beyond its window


class DataError(MaxswitchError):
    """Training data that cannot be used: no images, none readable, none large enough."""


def list_images(source: str | Path) -> list[Path]:
    """Image files of a folder (recursively; which files: ``imagefiles``, the rule bench uses too)
    or of a text file listing one path per line (relative paths are relative to the list's
    folder; ``#`` comments). Sorted by path in byte order, so a split is the same on every machine."""
    source = Path(source)
    if source.is_dir():
        return [source / rel for rel in walk(source)[0]]
    if not source.exists():
        raise DataError(f"{source}: no such folder or file")
    if not source.is_file():
        raise DataError(f"{source} is not a folder or a file listing image paths")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{source}: not a readable list of image paths ({e})") from None
    paths = [source.parent / s for s in (x.strip() for x in lines) if s and not s.startswith("#")]
    return sorted(paths, key=os.fsencode)


def read_rgb(path: Path, resize: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3), padded to multiples of 8 by edge replication as ``encode`` pads.

    Raises:
        OSError, imagelib.ImageError: unreadable file.
    """
    rgb = imagelib.load(Path(path).read_bytes()).rgb
    if resize:
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((resize, resize), Image.BICUBIC))
    return imagelib.pad_to_multiple(rgb)


def crop_switches(encoder, rgb: np.ndarray, y: int, x: int, patch: int, mirror: bool = False):
    """The crop of ``rgb`` (H, W, 3, padded) at (y, x), multiples of 8, and its switches.

    The encoder runs over the crop and up to ``MARGIN`` pixels around it (fewer at the image's
    border, which the whole-image encoder sees the same way). ``mirror``: the crop of the
    mirror image, at column ``x`` of the mirror image.

    Returns:
        image uint8 (3, P, P) and 3 uint8 tensors (C_s, P / 2^s, P / 2^s).
    """
    H, W = rgb.shape[:2]
    src = rgb[:, ::-1] if mirror else rgb
    y0, y1 = max(0, y - MARGIN), min(H, y + patch + MARGIN)
    x0, x1 = max(0, x - MARGIN), min(W, x + patch + MARGIN)
    region = torch.from_numpy(np.array(src[y0:y1, x0:x1])).permute(2, 0, 1)[None]  # a writable copy
    codes = encoder(region)
    oy, ox = y - y0, x - x0
    out = []
    for s, c in enumerate(codes):
        f = 2 ** (s + 1)
        out.append(c[0, :, oy // f : (oy + patch) // f, ox // f : (ox + patch) // f].contiguous())
    img = region[0, :, oy : oy + patch, ox : ox + patch].contiguous()
    return img, out


class SwitchCrops(torch.utils.data.Dataset):
    """Random aligned crops of a list of images and their switches (see the module's doc).

    Args:
        paths: image files.
        encoder: ``nets.Encoder`` (runs on the CPU).
        patch: crop side, a multiple of 8.
        seed: the stream's seed.
        crops_per_image: k; consecutive indices share an image, so a worker decodes it once.
        resize: resize every image to this square side first (faces).
        with_images: False returns an empty image tensor (context-model training needs codes only).
    """

    CACHE = 4  # decoded images kept per worker

    def __init__(
        self,
        paths,
        encoder,
        patch: int,
        seed: int = 0,
        crops_per_image: int = 2,
        resize: int | None = None,
        with_images: bool = True,
        what=None,
    ):
        if patch % 8 or patch < 8:
            raise DataError(f"the crop side must be a positive multiple of 8, got {patch}")
        if not paths:
            raise DataError("no images to train on")
        self.paths = [str(p) for p in paths]
        self.encoder = encoder
        self.patch, self.seed, self.k, self.resize = patch, seed, max(1, crops_per_image), resize
        self.with_images = with_images
        self.what = what  # a what.WhatSpec: samples also carry their what picture (nets.WhatDecoder)
        self._perm_epoch, self._perm = -1, None
        self._cache: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._bad: dict[str, str] = {}  # path -> reason, reported once by each worker
        self._reported: set[str] = set()

    def __len__(self) -> int:
        """Samples in one epoch (indices past it continue into the next epochs)."""
        return len(self.paths) * self.k

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
            self._perm_epoch = epoch
        return self._perm

    def _image(self, path: str) -> np.ndarray | None:
        """The padded image, or None if it is unreadable or smaller than the crop."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if path in self._bad:
            return None
        try:
            rgb = read_rgb(Path(path), self.resize)
        except (OSError, imagelib.ImageError) as e:
            self._bad[path] = str(getattr(e, "strerror", None) or e)
            return None
        if min(rgb.shape[:2]) < self.patch:
            self._bad[path] = f"smaller than the {self.patch} x {self.patch} crop ({rgb.shape[1]} x {rgb.shape[0]})"
            return None
        self._cache[path] = rgb
        while len(self._cache) > self.CACHE:
            self._cache.popitem(last=False)
        return rgb

    def __getitem__(self, g: int) -> dict:
        n = len(self.paths)
        epoch, within = divmod(int(g), n * self.k)
        order = self._order(epoch)
        slot = within // self.k
        rgb = None
        for j in range(n):  # an unusable image: the next one in this epoch's order takes its place
            path = self.paths[order[(slot + j) % n]]
            rgb = self._image(path)
            if rgb is not None:
                break
        new_bad = [(p, r) for p, r in self._bad.items() if p not in self._reported]
        self._reported.update(p for p, _ in new_bad)
        if rgb is None:
            return {"fatal": f"none of the {n} images is readable and at least {self.patch} x {self.patch} pixels"}
        rng = np.random.default_rng([self.seed, 1 << 32, int(g)])
        H, W = rgb.shape[:2]
        y = 8 * int(rng.integers(0, (H - self.patch) // 8 + 1))
        x = 8 * int(rng.integers(0, (W - self.patch) // 8 + 1))
        img, codes = crop_switches(self.encoder, rgb, y, x, self.patch, mirror=bool(rng.integers(2)))
        sample = {"image": img, "codes": codes, "bad": new_bad}
        if self.what is not None:  # the crop is aligned to the 8-pixel grid, so are its blocks
            from ..bitstream import what as whatlib

            q = whatlib.describe(img.permute(1, 2, 0).numpy(), self.what)
            sample["what"] = torch.from_numpy(whatlib.dequantize(q, self.what)).permute(2, 0, 1).contiguous()
        if not self.with_images:
            sample["image"] = img[:, :0, :0]
        return sample


def collate(samples: list[dict]) -> dict:
    """Stack a batch; ``bad`` gathers the unreadable files first met while making it. ``codes`` has
    as many switch maps as the samples (none where an audit computes a network's switches itself)."""
    fatal = [s["fatal"] for s in samples if "fatal" in s]
    if fatal:
        return {"fatal": fatal[0]}
    out = {} if "what" not in samples[0] else {"what": torch.stack([s["what"] for s in samples])}
    return out | {
        "image": torch.stack([s["image"] for s in samples]),
        "codes": [torch.stack([s["codes"][i] for s in samples]) for i in range(len(samples[0]["codes"]))],
        "bad": [b for s in samples for b in s["bad"]],
    }


class StepBatches(torch.utils.data.Sampler):
    """Index lists of one rank's share of global batches ``start_step, start_step + 1, ...``."""

    def __init__(self, start_step: int, global_batch: int, rank: int = 0, world: int = 1):
        self.step, self.B, self.rank, self.world = start_step, global_batch, rank, world
        self.b = global_batch // world

    def __iter__(self):
        s = self.step
        while True:
            base = s * self.B + self.rank * self.b
            yield list(range(base, base + self.b))
            s += 1


def _worker_init(_):
    torch.set_num_threads(1)  # one encoder thread per worker: workers are the parallelism


def loader(dataset: SwitchCrops, start_step: int, global_batch: int, rank: int, world: int, workers: int):
    """An endless DataLoader over ``dataset`` for one rank, from global step ``start_step``."""
    kw = dict(persistent_workers=True, prefetch_factor=2, worker_init_fn=_worker_init) if workers else {}
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatches(start_step, global_batch, rank, world),
        num_workers=workers,
        collate_fn=collate,
        **kw,
    )


def default_workers() -> int:
    """Data workers per process: a quarter of the CPUs this process may use, at least 1, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 4))
