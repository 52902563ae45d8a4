"""The direct decoder on ONNX Runtime: decoding without torch.

``nets.DirectDecoder`` (torch) is the reference and the form training uses; ``nets.DirectRunner``
its inference form in torch. This module builds the same computation, region by region, as one
ONNX graph of standard operators straight from the decoder's weights (numpy arrays by parameter
name, as a model asset holds them: ``l3.0.weight`` ...), and runs it with ONNX Runtime, which
imports in about 0.15 s and 50 MB where torch takes about 2 s and 220 MB (docs/PERFORMANCE.md),
and whose convolutions fuse their ReLU. ``nets.WhatDecoder`` (the what+where family) runs here
too: its what picture joins level 3's input and the graph ends with its ``fuse``; so does
``nets.WhatFineDecoder``, whose level 1 also reads the what picture (``half_picture``). Any other
decoder kind, or a decoder with other parameters, decodes with torch (``runner_for`` returns None); so does every decoder when
``onnxruntime`` is not installed or ``MAXSWITCH_DECODER=torch``, and, by default, in a process
that has imported torch anyway (``codec.decoder_runner``).

The graph of a region, level by level (3, 2, 1, at 1/8, 1/4, 1/2 scale), as ``DirectRunner``:
the level's switches (uint8, the region with its context) are made one-hot (channel 4c + code),
joined after the coarser level's output (pixel-shuffled by ``DepthToSpace``, mode CRD, and
cropped to the level's input rectangle), and go through conv 3x3 + ReLU, conv 3x3 + ReLU and
the 1x1 convolution; the last level's output, with ``(x + 0.5) * 255`` folded into its 1x1
weights, is pixel-shuffled, cropped, clamped to 0..255, rounded (half to even, as torch) and
cast to uint8 (H, W, 3). A what decoder's region is first grown by one 8-pixel block on each side
(inside the image), as ``nets.WhatRunner``; before the clamp, ``fuse`` adds the bilinear
upsampling (``Resize``, linear, half-pixel centres, edges clamped) of the what picture less the
region's 8x8 means (``AveragePool``), and the region is cropped back. Float sums are ordered differently from torch's, so pixels can differ by
a rounding step; tests/test_fastdecode.py holds them within 0.05 dB of the reference and checks
that tiles still join without seams.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

from ..config import WHAT_KINDS
from . import onnxgraph as og

OUT_CELLS = (2, 2, 0)  # nets.DirectRunner.OUT_CELLS: cells beyond the output each level produces
TILE_MARGIN = 32  # nets.DirectDecoder.TILE_MARGIN
WHAT_MARGIN = 40  # nets.WhatDecoder.TILE_MARGIN
WHAT_FACTOR = 8  # bitstream.what.LEVEL3: the block size of level 3's what picture
WHAT_GROW = 8  # nets.WhatRunner.GROW: pixels a what decoder's region grows by for the fusion
WHAT_CHANNELS = 3
_LEVELS = ("l3", "l2", "l1")


def _import_quietly():
    """``import onnxruntime`` with file descriptor 2 muted: where the home is not writable (a
    service user, a read-only container) its C++ logger prints a warning about its telemetry
    cache at import, before any setting can stop it. Only the import is muted."""
    if "onnxruntime" in sys.modules:
        return sys.modules["onnxruntime"]
    try:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        import onnxruntime

        return onnxruntime
    os.dup2(devnull, 2)
    try:
        import onnxruntime
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return onnxruntime


def available() -> bool:
    """Whether ONNX Runtime is importable and not turned off (``MAXSWITCH_DECODER=torch``)."""
    if os.environ.get("MAXSWITCH_DECODER", "").lower() == "torch":
        return False
    try:
        onnxruntime = _import_quietly()
    except ImportError:
        return False
    if hasattr(onnxruntime, "disable_telemetry_events"):
        # nothing leaves this machine, and where the home is not writable its cache warns on stderr
        onnxruntime.disable_telemetry_events()
    return True


def direct_weights(channels, weights: dict, what: bool = False, fine: bool = False) -> dict | None:
    """The weights as this module reads them if they are exactly a direct decoder's for this
    channel plan (conv 3x3, conv 3x3, conv 1x1 per level, widths read from the shapes), or with
    ``what`` a what decoder's (level 3 reads 3 more channels, the what picture), with ``fine``
    too a fine what decoder's (level 1 as well), else None."""
    want = {f"{lv}.{i}.{p}" for lv in _LEVELS for i in (0, 2, 4) for p in ("weight", "bias")}
    if weights is None or set(weights) != want:
        return None
    w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    c1, c2, c3 = channels
    if fine and not what:
        return None
    prev = WHAT_CHANNELS if what else 0
    for lv, c in zip(_LEVELS, (c3, c2, c1)):
        a, b, o = w[f"{lv}.0.weight"], w[f"{lv}.2.weight"], w[f"{lv}.4.weight"]
        width = a.shape[0]
        extra = WHAT_CHANNELS if fine and lv == "l1" else 0
        if (
            a.shape != ((width, 4 * c + prev, 3, 3) if lv == "l3" else (width, prev + 4 * c + extra, 3, 3))
            or b.shape != (width, width, 3, 3)
            or o.ndim != 4
            or o.shape[1:] != (width, 1, 1)
            or o.shape[0] % 4
            or any(w[f"{lv}.{i}.bias"].shape != (w[f"{lv}.{i}.weight"].shape[0],) for i in (0, 2, 4))
        ):
            return None
        prev = o.shape[0] // 4
    return w if prev == 3 else None


def graph(channels, w: dict, what: bool = False, factor: int = WHAT_FACTOR, fine: bool = False) -> bytes:
    """The ONNX model of a region (see the module docstring); inputs ``c3, c2, c1`` uint8
    (1, 4 C_s, h, w) the one-hot switches, ``s2, e2, s1, e1, so, eo`` int64 (2,) the crops of
    each level's upsampled output (rows, columns; the last one the output pixels of the region)
    and ``sp, ep`` (2,) the pixels kept, from ``sp`` to ``ep``; with ``what``, ``wn`` float
    (1, 3, h3, w3) level 3's picture under its input (``what / 255 - 0.5``) and ``wf`` float
    (1, 3, rows / F, columns / F) the file's what picture (0..255, blocks of ``factor`` = F
    pixels) under the region's pixels; with ``fine`` too, ``wh`` float (1, 3, h1, w1) level 1's
    picture under its input (``half_picture``, as ``wn``).
    Output ``rgb`` uint8 (1, rows, columns, 3)."""
    nodes, inits = [], []
    inits += [og.tensor("axes", np.array([2, 3], np.int64))]
    inits += [og.tensor("lo", np.array(0.0, np.float32)), og.tensor("hi", np.array(255.0, np.float32))]
    pads = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    up = None
    for i, lv in enumerate(_LEVELS):
        wa, ba = w[f"{lv}.0.weight"], w[f"{lv}.0.bias"]
        wb, bb = w[f"{lv}.2.weight"], w[f"{lv}.2.bias"]
        wc, bc = w[f"{lv}.4.weight"], w[f"{lv}.4.bias"]
        if i == 2:  # the RGB output: fold (x + 0.5) * 255
            wc, bc = wc * np.float32(255.0), (bc + np.float32(0.5)) * np.float32(255.0)
        width, n = wb.shape[0], wc.shape[0] // 4
        # the second conv gets one more output channel, 1 everywhere (zero weights, bias 1), which
        # carries the 1x1 conv's bias through the transposed conv below (its own bias is one per
        # output channel, the 1x1 conv's one per channel and pixel of the 2x2 block)
        wb1 = np.concatenate([wb, np.zeros((1,) + wb.shape[1:], np.float32)])
        bb1 = np.concatenate([bb, np.ones(1, np.float32)])
        # 1x1 conv (channel 4k + 2di + dj) then pixel shuffle = transposed conv 2x2, stride 2
        wt = np.concatenate([wc[:, :, 0, 0], bc[:, None]], axis=1).reshape(n, 2, 2, width + 1).transpose(3, 0, 1, 2)
        for name, arr in (("wa", wa), ("ba", ba), ("wb", wb1), ("bb", bb1), ("wt", wt)):
            inits.append(og.tensor(f"{lv}.{name}", np.ascontiguousarray(arr, np.float32)))
        nodes.append(og.node("Cast", [f"c{3 - i}"], [f"{lv}.oh"], to=og.FLOAT))
        x = f"{lv}.oh"
        if what and up is None:  # level 3 reads the what picture after its switches
            nodes.append(og.node("Concat", [x, "wn"], [f"{lv}.in"], axis=1))
            x = f"{lv}.in"
        if up is not None:  # the coarser level's output, cropped to this level's input, then its switches
            nodes.append(og.node("Slice", [up, f"s{3 - i}", f"e{3 - i}", "axes"], [f"{lv}.upc"]))
            more = ["wh"] if fine and lv == "l1" else []  # a fine what decoder's level 1 reads it too
            nodes.append(og.node("Concat", [f"{lv}.upc", x, *more], [f"{lv}.in"], axis=1))
            x = f"{lv}.in"
        nodes.append(og.node("Conv", [x, f"{lv}.wa", f"{lv}.ba"], [f"{lv}.y1"], **pads))
        nodes.append(og.node("Relu", [f"{lv}.y1"], [f"{lv}.r1"]))
        nodes.append(og.node("Conv", [f"{lv}.r1", f"{lv}.wb", f"{lv}.bb"], [f"{lv}.y2"], **pads))
        nodes.append(og.node("Relu", [f"{lv}.y2"], [f"{lv}.r2"]))
        nodes.append(
            og.node("ConvTranspose", [f"{lv}.r2", f"{lv}.wt"], [f"{lv}.up"], kernel_shape=[2, 2], strides=[2, 2])
        )
        up = f"{lv}.up"
    nodes.append(og.node("Slice", [up, "so", "eo", "axes"], ["px"]))
    if what:  # fuse: px - up(avg(px)) + up(wf) = px + up(wf - avg(px)), up linear
        f = factor
        inits.append(og.tensor("scales", np.array([1, 1, f, f], np.float32)))
        nodes.append(og.node("AveragePool", ["px"], ["avg"], kernel_shape=[f, f], strides=[f, f]))
        nodes.append(og.node("Sub", ["wf", "avg"], ["dw"]))
        resize = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        nodes.append(og.node("Resize", ["dw", "", "scales"], ["dwup"], **resize))
        nodes.append(og.node("Add", ["px", "dwup"], ["fused"]))
        px = "fused"
    else:
        px = "px"
    nodes.append(og.node("Slice", [px, "sp", "ep", "axes"], ["pxc"]))
    nodes.append(og.node("Clip", ["pxc", "lo", "hi"], ["clip"]))
    nodes.append(og.node("Round", ["clip"], ["round"]))
    nodes.append(og.node("Cast", ["round"], ["u8"], to=og.UINT8))
    nodes.append(og.node("Transpose", ["u8"], ["rgb"], perm=[0, 2, 3, 1]))
    c1, c2, c3 = channels
    inputs = [og.value_info(f"c{s}", og.UINT8, [1, 4 * c, f"h{s}", f"w{s}"]) for s, c in ((3, c3), (2, c2), (1, c1))]
    inputs += [og.value_info(n, og.INT64, [2]) for n in ("s2", "e2", "s1", "e1", "so", "eo", "sp", "ep")]
    if what:
        inputs += [og.value_info("wn", og.FLOAT, [1, WHAT_CHANNELS, "h3", "w3"])]
        inputs += [og.value_info("wf", og.FLOAT, [1, WHAT_CHANNELS, "hb", "wb"])]
    if fine:
        inputs += [og.value_info("wh", og.FLOAT, [1, WHAT_CHANNELS, "h1", "w1"])]
    outputs = [og.value_info("rgb", og.UINT8, [1, "rows", "cols", 3])]
    return og.model(nodes, inits, inputs, outputs)


_LEVELS4 = np.arange(4, dtype=np.uint8).reshape(1, 1, 4, 1, 1)


def one_hot(codes: np.ndarray) -> np.ndarray:
    """(1, C, h, w) codes -> uint8 (1, 4C, h, w), channel 4c + k = (code_c == k)."""
    B, C, h, w = codes.shape
    return np.equal(codes[:, :, None], _LEVELS4).view(np.uint8).reshape(B, 4 * C, h, w)


class OrtRunner:
    """Decodes regions of an image with ONNX Runtime (``block``), one session per thread count
    (a session is safe to run from several threads at once). With ``what``, the decoder is a
    ``nets.WhatDecoder``'s and ``codes`` carries the what picture as a 4th map; with ``fine``
    too, a ``nets.WhatFineDecoder``'s."""

    # tiles of this side by default, whatever the image's size: as fast as whole images (by CPU
    # time), a quarter of the memory on a photo, and two tiles or more keep 2 threads busy
    # (docs/PERFORMANCE.md)
    tile = 256

    def __init__(self, channels, weights: dict, what: bool = False, fine: bool = False):
        self.channels, self.what, self.fine, self.weights = tuple(channels), what, fine, weights
        self.margin = WHAT_MARGIN if what else TILE_MARGIN
        self.model = graph(self.channels, weights, what, fine=fine)
        self._sessions: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def session(self, threads: int, factor: int = WHAT_FACTOR):
        """The session for ``threads`` (and, for a what decoder, what pictures of ``factor``)."""
        key = (threads, factor if self.what else WHAT_FACTOR)
        with self._lock:
            if key not in self._sessions:
                import onnxruntime as ort

                # the process-wide logger too: where the home is not writable it warns about its
                # telemetry cache on every session (a read-only install, docs/SECURITY.md)
                ort.set_default_logger_severity(3)
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.log_severity_level = 3  # errors only: its warnings are not the user's business
                # no busy-waiting between operators: on a shared machine it only burns CPU
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                model = (
                    self.model if key[1] == WHAT_FACTOR else graph(self.channels, self.weights, True, key[1], self.fine)
                )
                self._sessions[key] = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            return self._sessions[key]

    def block(self, codes, y0: int, y1: int, x0: int, x1: int, th: int, tw: int, threads: int = 1) -> np.ndarray:
        """The uint8 (th, tw, 3) pixels at rows y0.., columns x0.. of the image whose switches
        ``codes`` holds (3 arrays (C_s, H/2^s, W/2^s) or (1, C_s, ...), and for a what decoder
        the what picture (3, H/8, W/8) as a 4th; [y0, y1) x [x0, x1) in multiples of 8,
        th <= y1 - y0, tw <= x1 - x0), as ``nets.DirectRunner.region`` (``nets.WhatRunner``)."""
        codes = [c[0] if c.ndim == 4 else c for c in codes]
        H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
        g = WHAT_GROW if self.what else 0  # a what decoder's region grows by one block
        ry0, ry1, rx0, rx1 = max(0, y0 - g), min(H, y1 + g), max(0, x0 - g), min(W, x1 + g)
        feeds, rects = _level_feeds(codes, ry0, ry1, rx0, rx1)
        iy0, iy1, ix0, ix1 = rects[0]
        feeds["sp"] = np.array([y0 - ry0, x0 - rx0], np.int64)
        feeds["ep"] = feeds["sp"] + np.array([th, tw], np.int64)
        f = WHAT_FACTOR
        if self.what:
            from ..bitstream.what import level3_picture

            pic = codes[3]  # the file's what picture (3, H/F, W/F)
            f = H // pic.shape[-2]
            k = WHAT_FACTOR // f
            w8 = level3_picture(pic[:, iy0 * k : iy1 * k, ix0 * k : ix1 * k], f)
            feeds["wn"] = w8[None].astype(np.float32) / np.float32(255.0) - np.float32(0.5)
            feeds["wf"] = pic[None, :, ry0 // f : ry1 // f, rx0 // f : rx1 // f].astype(np.float32)
            if self.fine:  # level 1's input cells, each block over its F/2 cells (nets.half_picture)
                hy0, hy1, hx0, hx1 = rects[2]
                k = f // 2
                by0, bx0 = hy0 // k, hx0 // k
                part = pic[:, by0 : -(-hy1 // k), bx0 : -(-hx1 // k)]
                if k > 1:
                    part = part.repeat(k, axis=-2).repeat(k, axis=-1)
                part = part[:, hy0 - by0 * k : hy1 - by0 * k, hx0 - bx0 * k : hx1 - bx0 * k]
                feeds["wh"] = part[None].astype(np.float32) / np.float32(255.0) - np.float32(0.5)
        return self.session(threads, f).run(["rgb"], feeds)[0][0]


def _level_feeds(codes, y0: int, y1: int, x0: int, x1: int) -> tuple[dict, list]:
    """The graph's switch and crop inputs for the pixels [y0, y1) x [x0, x1) (multiples of 8),
    and each level's input rectangle (levels 3, 2, 1; its cells: rows iy0..iy1, columns
    ix0..ix1)."""
    H, W = codes[0].shape[-2] * 2, codes[0].shape[-1] * 2
    feeds = {}
    prev = None
    rects = []
    for lvl, (s, cod) in enumerate(zip((3, 2, 1), (codes[2], codes[1], codes[0]))):
        f = 8 >> lvl
        ko = OUT_CELLS[lvl]
        nh, nw = H // f, W // f
        oy0, oy1 = max(0, y0 // f - ko), min(nh, y1 // f + ko)
        ox0, ox1 = max(0, x0 // f - ko), min(nw, x1 // f + ko)
        iy0, iy1 = max(0, oy0 - 2), min(nh, oy1 + 2)
        ix0, ix1 = max(0, ox0 - 2), min(nw, ox1 + 2)
        feeds[f"c{s}"] = one_hot(cod[None, :, iy0:iy1, ix0:ix1])
        if prev is not None:  # the coarser output, upsampled, starts at 2 * its origin
            py0, px0 = prev
            ay, ax = iy0 - 2 * py0, ix0 - 2 * px0
            feeds[f"s{s}"] = np.array([ay, ax], np.int64)
            feeds[f"e{s}"] = np.array([ay + iy1 - iy0, ax + ix1 - ix0], np.int64)
        rects.append((iy0, iy1, ix0, ix1))
        prev = (iy0, ix0)
    feeds["so"] = np.array([oy0 - iy0, ox0 - ix0], np.int64) * 2  # in pixels
    feeds["eo"] = np.array([oy1 - iy0, ox1 - ix0], np.int64) * 2
    return feeds, rects


def runner_for(model) -> OrtRunner | None:
    """The ONNX Runtime runner of a ``zoo.Model``'s decoder (made once per model), or None where
    this path does not apply (another decoder kind, no onnxruntime, ``MAXSWITCH_DECODER=torch``):
    then torch decodes."""
    cfg = getattr(model, "config", None)
    if cfg is None or cfg.decoder not in ("direct", *WHAT_KINDS) or not available():
        return None
    what, fine = cfg.decoder in WHAT_KINDS, cfg.decoder == "what-fine"
    if getattr(model, "_ort_runner", None) is None:
        if model.decoder_weights is not None:
            w = direct_weights(cfg.channels, model.decoder_weights, what, fine)
            model._ort_runner = OrtRunner(cfg.channels, w, what, fine) if w is not None else False
        else:  # a model made around a torch decoder
            model._ort_runner = runner_for_module(model.decoder) or False
    return model._ort_runner or None


def runner_for_module(decoder) -> OrtRunner | None:
    """The ONNX Runtime runner of a torch ``nets.DirectDecoder``, ``nets.WhatDecoder`` or
    ``nets.WhatFineDecoder`` (exactly those classes: a subclass may compute something else), or
    None."""
    from .nets import DirectDecoder, WhatDecoder, WhatFineDecoder

    fine = type(decoder) is WhatFineDecoder
    what = type(decoder) is WhatDecoder or fine
    if type(decoder) is not DirectDecoder and not what or not available():
        return None
    sd = {k: v.detach().cpu().numpy() for k, v in decoder.state_dict().items()}
    c3 = (decoder.l3[0].in_channels - (WHAT_CHANNELS if what else 0)) // 4
    c2 = (decoder.l2[0].in_channels - decoder.l3[4].out_channels // 4) // 4
    c1 = (decoder.l1[0].in_channels - (WHAT_CHANNELS if fine else 0) - decoder.l2[4].out_channels // 4) // 4
    w = direct_weights((c1, c2, c3), sd, what, fine)
    return None if w is None else OrtRunner((c1, c2, c3), w, what, fine)
