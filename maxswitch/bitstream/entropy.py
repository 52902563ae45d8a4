"""Payload coding 2 (format version 2): switches -> ANS streams driven by the context model.

The padded image is cut into tiles of ``config.CONTEXT_TILE`` x ``config.CONTEXT_TILE`` pixels (the last
row and column of tiles may be smaller), coded independently in row-major order: a tile's
context never looks outside it, so tiles decode in any order and memory stays bounded by a
tile. Payload::

    for each tile:  u32 W (number of 32-bit words), then W little-endian u32 words

The words are those of constriction's ``AnsCoder`` (a stack: the encoder pushes the passes
in reverse so that the decoder pops them in order), with ``Categorical(perfect=False)``
models whose probabilities are the context model's integer frequencies ``f_k``, summing to
2^24 - 4, which constriction turns into ``(f_k + 1) / 2^24`` exactly (docs/FORMAT.md).
"""

from __future__ import annotations

import struct

import numpy as np

from ..config import CONTEXT_TILE as TILE
from .context import ContextModel, StageCoder
from .switches import PayloadError

_U32 = struct.Struct("<I")


def _constriction():
    import constriction

    return constriction


def tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) pixel spans of the tiles of a padded image, row-major."""
    return [
        (y, min(y + TILE, height), x, min(x + TILE, width))
        for y in range(0, height, TILE)
        for x in range(0, width, TILE)
    ]


def _tile_codes(codes: list[np.ndarray], t) -> list[np.ndarray]:
    y0, y1, x0, x1 = t
    return [
        np.ascontiguousarray(c[:, y0 >> (s + 1) : y1 >> (s + 1), x0 >> (s + 1) : x1 >> (s + 1)])
        for s, c in enumerate(codes)
    ]


def _passes(model: ContextModel, codes: list[np.ndarray]):
    """Yield, in decoding order, (coder, c, k, ys, xs, last_phase_of_channel) over all stages."""
    for s in (2, 1, 0):
        coder = StageCoder(model, s, codes[s], codes[s + 1 :])
        steps = list(coder.passes())
        for i, (c, k, ys, xs) in enumerate(steps):
            last = i + 1 == len(steps) or steps[i + 1][0] != c
            yield coder, c, k, ys, xs, last


def encode_tile(model, codes: list[np.ndarray]) -> np.ndarray:
    """One tile's switches (3 arrays (C_s, h_s, w_s) uint8) -> its ANS words (uint32).

    ``model`` is a ``ContextModel`` (coding 2) or a ``tables.TableModel`` (coding 3, which
    codes its own tiles); the tiles and the payload layout are the same for both."""
    if hasattr(model, "encode_tile"):
        return model.encode_tile(codes)
    return ans_encode(tile_steps(model, codes))


def tile_steps(model, codes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The model's part of ``encode_tile``: per step in decoding order, the symbols (n,) int32
    and their integer frequencies (n, 4) float64 (a table model gives them as one step)."""
    if hasattr(model, "tile_steps"):
        return [model.tile_steps(codes)]
    work = [c.copy() for c in codes]
    steps = []
    for coder, c, k, ys, xs, last in _passes(model, work):
        f = coder.freqs(c, k, ys, xs)
        sym = work[coder.s][c, ys, xs].astype(np.int32)
        steps.append((sym, f.astype(np.float64)))
        if last:
            coder.finish_channel(c)
    return steps


def ans_encode(steps: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The entropy coder's part of ``encode_tile``: steps -> ANS words (uint32)."""
    cs = _constriction()
    family = cs.stream.model.Categorical(perfect=False)
    enc = cs.stream.stack.AnsCoder()
    for sym, f in reversed(steps):
        enc.encode_reverse(sym, family, f)
    return enc.get_compressed()


def ans_decode(words: np.ndarray, freqs: list[np.ndarray]) -> list[np.ndarray]:
    """The entropy coder alone, for measuring its share of decoding: words and the
    frequencies of every step (as ``tile_steps`` gives them) -> the symbols of each step."""
    cs = _constriction()
    family = cs.stream.model.Categorical(perfect=False)
    dec = cs.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    return [np.asarray(dec.decode(family, f)) for f in freqs]


def decode_tile(model: ContextModel, words: np.ndarray, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Inverse of ``encode_tile``: ANS words -> 3 arrays of the given (C_s, h_s, w_s) shapes.

    Raises:
        PayloadError: the words do not decode to exactly these switches (corrupt payload).
    """
    if hasattr(model, "decode_tile"):
        try:
            return model.decode_tile(words, shapes)
        except (ValueError, RuntimeError) as e:  # ContextError included
            raise PayloadError(f"payload does not decode: {e}") from None
    cs = _constriction()
    family = cs.stream.model.Categorical(perfect=False)
    codes = [np.zeros(s, np.uint8) for s in shapes]
    try:
        # the constructor checks the words too (a stack never ends in a zero word): found by fuzzing
        dec = cs.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        for coder, c, k, ys, xs, last in _passes(model, codes):
            f = coder.freqs(c, k, ys, xs).astype(np.float64)
            coder.commit(c, ys, xs, np.asarray(dec.decode(family, f), dtype=np.uint8))
            if last:
                coder.finish_channel(c)
    except (ValueError, RuntimeError) as e:
        raise PayloadError(f"payload does not decode: {e}") from None
    if not dec.is_empty():
        raise PayloadError("payload has data left after its last switch (corrupt)")
    return codes


def _workers() -> int:
    """Tiles coded at once: the codec's thread count (the CLI's -t), as for the networks."""
    from .. import threads

    return threads.get()


def _map(fn, items: list, model) -> list:
    """``[fn(x) for x in items]``, on threads when there are several tiles and threads and the
    model's tiles gain from them; results keep their order.

    The MLP's tiles do (their heavy parts, torch's layers, release the GIL), and so do the context
    tables' with their compiled coder (``tablecoder.py``, which releases the GIL). The tables'
    reference path does not: its work is many short numpy calls and constriction, which holds
    the GIL, and two threads made it slower on the 2-core machine of docs/PERFORMANCE.md, so
    ``TableModel.tile_threads`` is False there."""
    n = min(_workers(), len(items)) if getattr(model, "tile_threads", True) else 1
    if n <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    from .. import threads

    with threads.limited(1), ThreadPoolExecutor(n) as ex:  # one thread per tile, not several per op
        return list(ex.map(fn, items))


def encode(model: ContextModel, codes: list[np.ndarray], progress=None) -> bytes:
    """All switches of a padded image (3 arrays (C_s, H/2^s, W/2^s)) -> the v2 payload.

    The bytes do not depend on the number of threads: tiles are independent. ``progress``, if
    given, is called with 1 after each tile (from the tiles' threads)."""
    H, W = codes[0].shape[1] * 2, codes[0].shape[2] * 2

    def one(t):
        words = encode_tile(model, _tile_codes(codes, t))
        if progress is not None:
            progress(1)
        return words

    parts = _map(one, tiles(H, W), model)
    pieces = []
    for words in parts:
        pieces += (_U32.pack(len(words)), words.astype("<u4", copy=False).tobytes())
    del parts
    return b"".join(pieces)  # the payload's one copy beside its pieces


def tile_spans(payload, height: int, width: int):
    """Walk a v2 payload's tile lengths: ((y0, y1, x0, x1), offset of the words, word count)
    per tile, checking that they add up to the payload exactly. Reads 4 bytes per tile, so a
    payload left in its file (``format.FileBytes``) is not read whole."""
    pos, n = 0, len(payload)
    for t in tiles(height, width):
        if pos + 4 > n:
            raise PayloadError("payload is truncated (tile header missing)")
        (nw,) = _U32.unpack(payload[pos : pos + 4])
        pos += 4
        if nw > (n - pos) // 4:
            raise PayloadError("payload is truncated inside a tile")
        yield t, pos, nw
        pos += 4 * nw
    if pos != n:
        raise PayloadError(f"{n - pos} unexpected bytes after the last tile of the payload")


def tile_words(payload, pos: int, nw: int) -> np.ndarray:
    """A tile's words (a view of a bytes-like payload, a copy of a ``FileBytes`` one's)."""
    return np.frombuffer(payload[pos : pos + 4 * nw], dtype="<u4")


def iter_tiles(payload, height: int, width: int):
    """Split a v2 payload into ((y0, y1, x0, x1), words) per tile, checking the lengths."""
    for t, pos, nw in tile_spans(payload, height, width):
        yield t, tile_words(payload, pos, nw)


def _decode_tiles(model: ContextModel, items: list) -> list[list[np.ndarray]]:
    """Decode ((y0, y1, x0, x1), words) tiles, on threads as ``encode`` does; results in order."""
    C = model.channels

    def one(item):
        (y0, y1, x0, x1), words = item
        return decode_tile(model, words, [(c, (y1 - y0) >> (s + 1), (x1 - x0) >> (s + 1)) for s, c in enumerate(C)])

    return _map(one, items, model)


def decode(model: ContextModel, payload, height: int, width: int) -> list[np.ndarray]:
    """The v2 payload of a padded ``height`` x ``width`` image -> its switches."""
    C = model.channels
    out = [np.zeros((c, height >> (s + 1), width >> (s + 1)), np.uint8) for s, c in enumerate(C)]
    items = list(iter_tiles(payload, height, width))
    for ((y0, y1, x0, x1), _), part in zip(items, _decode_tiles(model, items)):
        for s in range(3):
            out[s][:, y0 >> (s + 1) : y1 >> (s + 1), x0 >> (s + 1) : x1 >> (s + 1)] = part[s]
    return out


_LUT4 = np.array([[(b >> k) & 3 for k in (0, 2, 4, 6)] for b in range(256)], np.uint8)


def _pack4(a: np.ndarray) -> np.ndarray:
    """(C, h, w) codes 0..3 -> (C, h, ceil(w / 4)) bytes, four codes per byte along the width."""
    C, h, w = a.shape
    if w % 4:
        a = np.concatenate([a, np.zeros((C, h, 4 - w % 4), np.uint8)], axis=2)
    q = a.reshape(C, h, -1, 4)
    return q[..., 0] | q[..., 1] << 2 | q[..., 2] << 4 | q[..., 3] << 6


def _unpack4(p: np.ndarray, w: int) -> np.ndarray:
    """Inverse of ``_pack4`` for ``w`` codes per row."""
    C, h, n = p.shape
    return _LUT4[p].reshape(C, h, 4 * n)[:, :, :w]


class RowDecoder:
    """The switches of a v2 payload decoded one row of tiles at a time, as rows are asked for.

    ``rows(p0, p1)`` (pixel rows of the padded image, multiples of 8, asked for in increasing
    order) gives what ``decode`` would give for those rows; rows of tiles that lie wholly
    above a request are forgotten, so memory holds about two rows of tiles, not the image.
    A decoded row of tiles is kept packed (2 bits per switch) and decoded a few tiles at a
    time, so a wide picture (1,048,576 x 244, whose one row of tiles is the whole picture)
    holds its switches at a quarter of a byte each. The payload's tile structure is checked
    when the object is made (reading 4 bytes per tile); a damaged tile raises
    ``PayloadError`` when its row is first needed.
    """

    def __init__(self, model: ContextModel, payload, height: int, width: int):
        self.model, self.size = model, (height, width)  # the padded image's (H, W)
        self.payload = payload
        self.channels = list(model.channels)
        self.by_row: dict[int, list] = {}  # the tiles' spans: their words are read when decoded
        for t, pos, nw in tile_spans(payload, height, width):
            self.by_row.setdefault(t[0] // TILE, []).append((t, pos, nw))
        self.done: dict[int, list[np.ndarray]] = {}

    def _row(self, r: int) -> list[np.ndarray]:
        if r not in self.done:
            spans = self.by_row[r]
            (y0, y1, _, _), W = spans[0][0], self.size[1]
            C = self.model.channels
            packed = [np.empty((c, (y1 - y0) >> (s + 1), -(-(W >> (s + 1)) // 4)), np.uint8) for s, c in enumerate(C)]
            group = 2 * _workers()
            for i in range(0, len(spans), group):
                chunk = spans[i : i + group]
                items = [(t, tile_words(self.payload, pos, nw)) for t, pos, nw in chunk]
                parts = _decode_tiles(self.model, items)
                del items
                x0 = chunk[0][0][2]
                for s in range(3):
                    a = np.concatenate([p[s] for p in parts], axis=2)
                    q = _pack4(a)  # x0 >> (s + 1) is a multiple of 4: tiles start on whole bytes
                    packed[s][:, :, (x0 >> (s + 1)) // 4 : (x0 >> (s + 1)) // 4 + q.shape[2]] = q
                del parts
            self.done[r] = packed
        return self.done[r]

    def rows(self, p0: int, p1: int) -> list[np.ndarray]:
        first, last = p0 // TILE, (p1 - 1) // TILE
        for r in [r for r in self.done if r < first]:
            del self.done[r]
        W = self.size[1]
        out = []
        for s in range(3):
            pieces = []
            for r in range(first, last + 1):
                lo = max(p0, r * TILE) - r * TILE
                hi = min(p1, (r + 1) * TILE) - r * TILE
                pieces.append(_unpack4(self._row(r)[s][:, lo >> (s + 1) : hi >> (s + 1)], W >> (s + 1)))
            out.append(pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1))
        return out
