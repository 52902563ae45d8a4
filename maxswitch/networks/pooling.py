"""Max-pool switches of any torch network: find its max-pooling layers and record every window's switch.

A **switch** is where a window's maximum lies inside the window: ``a * kW + b`` for the cell
(a, b) of a kH x kW window, row-major, counted in the window's own cells (steps of the
dilation), so a value in 0..kH*kW-1. The 2x2 codes of maxswitch's encoders (``row * 2 + column``,
nets.py) are the case kH = kW = 2. Overlapping windows (ResNet's 3x3 stride 2), padding, dilation
and ceil mode are all covered: torch's ``return_indices`` gives the flat index of the maximum in
the input plane, and ``window_positions`` turns it into the position inside the window that
produced it (the window's first cell may lie in the padding; padding is never a maximum).

How pools are caught: every 2-D max pooling torch runs, whether it comes from ``nn.MaxPool2d``,
``F.max_pool2d`` (however it was imported), ``torch.max_pool2d``, ``torch.ops.aten`` or a
TorchScript module, reaches the ATen operator ``max_pool2d_with_indices``. ``Probe`` runs the
network under a ``TorchDispatchMode`` that sees each such call with its arguments and its result,
indices included, so nothing is computed twice. Each call is named after the innermost module
running it (global forward hooks): an ``nn.MaxPool2d``'s path (``features.4``), or for any other
call the path of the module whose code called it and the source line (``layer1:max_pool2d``,
``site`` ``model.py:42``); the k-th call of the same site in one forward is ``NAME#k``.

What is not caught, and says so: other max-type pooling (adaptive, fractional, 3-D) is seen and
listed in ``Probe.notes`` but not audited; max pooling written by hand (``unfold`` and ``amax``,
a reshape and ``max``) and code compiled by ``torch.compile`` into fused kernels are not seen.

A forward that has recorded the deepest layer asked for stops there (an exception raised by the
mode and caught by the probe), so the rest of the network never runs.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import MaxswitchError

aten = torch.ops.aten
_MAX2D = (aten.max_pool2d_with_indices.default,)
_MAX2D_NO_INDICES = (aten.max_pool2d.default,)
# max-type poolings that are seen but not audited (their "switches" are not windows of one geometry)
_OTHER_MAX = {
    aten.adaptive_max_pool2d.default: "adaptive max pooling (2-D)",
    aten.adaptive_max_pool1d.default: "adaptive max pooling (1-D)",
    aten.adaptive_max_pool3d.default: "adaptive max pooling (3-D)",
    aten.fractional_max_pool2d.default: "fractional max pooling (2-D)",
    aten.fractional_max_pool3d.default: "fractional max pooling (3-D)",
    aten.max_pool3d_with_indices.default: "max pooling (3-D)",
}
_TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.abspath(__file__)


class PoolingError(MaxswitchError):
    """A network whose pooling cannot be audited (none found, or it failed to run)."""


@dataclass(frozen=True)
class PoolLayer:
    """One max-pooling call of a forward, as found on a probe input.

    Attributes:
        index: 1-based position in forward order.
        name: module path, ``PATH:max_pool2d`` for a call outside an ``nn.MaxPool2d``,
            ``stageS`` for a maxswitch encoder; ``#k`` marks the k-th call of one site.
        kind: "module", "functional" or "encoder".
        kernel, stride, padding, dilation: (vertical, horizontal) pairs.
        ceil_mode: torch's ceil mode.
        in_shape: (C, H, W) of its input on the probe image.
        out_shape: (C, h, w) of its output (the switch map) on the probe image.
        scale: the probe image's side over the switch map's side (2 for the first 2x2 pool).
        site: source file and line of the call ("" for modules and encoders).
    """

    index: int
    name: str
    kind: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    scale: float
    site: str = ""

    @property
    def positions(self) -> int:
        """Cells in a window: the number of values a switch can take."""
        return self.kernel[0] * self.kernel[1]

    @property
    def level(self) -> int:
        """log2 of the scale, rounded: the decoder level whose resolution this layer's switches have."""
        return max(0, round(math.log2(self.scale)))

    @property
    def bits(self) -> float:
        """Raw bits of one switch: log2 of the positions."""
        return math.log2(self.positions)

    def window(self) -> str:
        """``3x3/2 pad 1`` style: kernel, stride, and padding, dilation, ceil mode where not the default."""
        pair = lambda p: str(p[0]) if p[0] == p[1] else f"{p[0]},{p[1]}"  # noqa: E731
        s = f"{self.kernel[0]}x{self.kernel[1]}/{pair(self.stride)}"
        if any(self.padding):
            s += f" pad {pair(self.padding)}"
        if self.dilation != (1, 1):
            s += f" dil {pair(self.dilation)}"
        if self.ceil_mode:
            s += " ceil"
        return s

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("kernel", "stride", "padding", "dilation", "in_shape", "out_shape"):
            d[k] = list(d[k])
        d["positions"] = self.positions
        d["window"] = self.window()
        return d


def _pair(v, default=None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def pool_args(args: tuple, kwargs: dict) -> tuple:
    """(input, kernel, stride, padding, dilation, ceil_mode) of an ``aten.max_pool2d*`` call, as pairs."""
    names = ("self", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    vals = dict(zip(names, args))
    vals.update(kwargs)
    kernel = _pair(vals["kernel_size"])
    return (
        vals["self"],
        kernel,
        _pair(vals.get("stride"), kernel),
        _pair(vals.get("padding", 0), 0),
        _pair(vals.get("dilation", 1), 1),
        bool(vals.get("ceil_mode", False)),
    )


def window_positions(indices: torch.Tensor, in_width: int, stride, padding, dilation, kernel) -> torch.Tensor:
    """Turn ``return_indices``' flat input indices into switches: positions inside each window.

    Args:
        indices: int64 (..., h, w), flat indices into an (H, ``in_width``) input plane.
        stride, padding, dilation, kernel: (vertical, horizontal) pairs of the pooling.

    Returns:
        int64 (..., h, w) in 0..kH*kW-1: ``a * kW + b`` for cell (a, b) of the window.
    """
    h, w = indices.shape[-2:]
    dev = indices.device
    rows, cols = indices.div(in_width, rounding_mode="floor"), indices.remainder(in_width)
    top = torch.arange(h, device=dev).view(h, 1) * stride[0] - padding[0]  # first row of window i
    left = torch.arange(w, device=dev).view(1, w) * stride[1] - padding[1]
    a = (rows - top).div_(dilation[0], rounding_mode="floor")
    b = (cols - left).div_(dilation[1], rounding_mode="floor")
    return a.mul_(kernel[1]).add_(b)


class _Stop(Exception):
    """Raised by the capture mode once the deepest wanted layer is recorded."""


class _Capture(TorchDispatchMode):
    """Record every 2-D max pooling of a forward (see the module's doc)."""

    def __init__(self, probe: "Probe", upto: int | None):
        super().__init__()
        self.probe, self.upto = probe, upto
        self.calls: list[dict] = []
        self.counts: dict[str, int] = {}
        self.other: list[str] = []

    def _site(self) -> tuple[str, str, str]:
        """(name, kind, source line) of the call being recorded."""
        stack = self.probe._stack
        mod = stack[-1] if stack else None
        path = self.probe._names.get(id(mod)) if mod is not None else None
        if mod is not None and isinstance(mod, nn.MaxPool2d) and path is not None:
            return path, "module", ""
        where = ""
        f = sys._getframe(2)
        while f is not None:
            fn = os.path.abspath(f.f_code.co_filename)
            if not fn.startswith(_TORCH_DIR) and fn != _HERE:
                where = f"{os.path.basename(fn)}:{f.f_lineno}"
                break
            f = f.f_back
        if path:
            owner = path
        elif mod is not None and path is None:  # a module outside the network's tree (built in forward)
            owner = type(mod).__name__
        else:  # the network's own forward
            owner = "<model>"
        return f"{owner}:max_pool2d", "functional", where

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MAX2D or func in _MAX2D_NO_INDICES:
            x, kernel, stride, padding, dilation, ceil = pool_args(args, kwargs)
            out, idx = aten.max_pool2d_with_indices.default(
                x, list(kernel), list(stride), list(padding), list(dilation), ceil
            )
            name, kind, where = self._site()
            self.counts[name] = self.counts.get(name, 0) + 1
            if self.counts[name] > 1:
                name = f"{name}#{self.counts[name]}"
            switches = window_positions(idx, x.shape[-1], stride, padding, dilation, kernel)
            self.calls.append(
                dict(
                    name=name,
                    kind=kind,
                    site=where,
                    kernel=kernel,
                    stride=stride,
                    padding=padding,
                    dilation=dilation,
                    ceil_mode=ceil,
                    in_shape=tuple(x.shape[-3:]),
                    out_shape=tuple(out.shape[-3:]),
                    switches=switches,
                )
            )
            if self.upto is not None and len(self.calls) >= self.upto:
                raise _Stop
            return (out, idx) if func in _MAX2D else out
        if func in _OTHER_MAX:
            self.other.append(_OTHER_MAX[func])
        return func(*args, **kwargs)


class Probe:
    """A network (``nn.Module`` taking a float (B, 3, H, W) image) whose max-pool switches are read.

    ``discover`` runs it once on a probe image to list its pooling layers (``layers``) and what
    the audit cannot see (``notes``); ``switches`` then returns, for a batch of images, the
    switches of the layers 1..``upto`` and stops the forward there.

    Args:
        network: the module (put in eval mode: batch norm uses its running statistics).
        normalize: maps uint8 images (B, 3, H, W) on the network's device to its float input.
    """

    in_data = False  # the audit computes switches on its device (audit_model.EncoderProbe: in the data workers)

    def __init__(self, network: nn.Module, normalize):
        self.network = network.eval()
        self.normalize = normalize
        self._names = {id(m): n for n, m in network.named_modules()}
        self._stack: list[nn.Module] = []
        self.layers: list[PoolLayer] = []
        self.notes: list[str] = []

    def _run(self, images: torch.Tensor, upto: int | None) -> _Capture:
        """Run the network under the capture mode (and the module-stack hooks); stop after ``upto`` pools."""
        self._stack = []

        def pre(mod, args):
            self._stack.append(mod)

        def post(mod, args, out):
            if self._stack and self._stack[-1] is mod:
                self._stack.pop()

        cap = self._last = _Capture(self, upto)  # kept when the forward fails: discover reports what it saw
        h1, h2 = register_module_forward_pre_hook(pre), register_module_forward_hook(post)
        try:
            with torch.no_grad(), cap:
                self.network(self.normalize(images))
        except _Stop:
            pass
        finally:
            h1.remove()
            h2.remove()
            self._stack = []
        return cap

    def discover(self, side: int, device: torch.device | str = "cpu") -> list[PoolLayer]:
        """Run the whole network once on a grey-noise image of ``side`` x ``side`` pixels and list
        its 2-D max poolings in forward order (also kept as ``self.layers``; ``self.notes`` says
        what was seen but not audited, and whether the forward stopped early on an error).

        Raises:
            PoolingError: no 2-D max pooling ran before the forward ended or failed.
        """
        g = torch.Generator().manual_seed(0)
        img = torch.randint(0, 256, (1, 3, side, side), generator=g, dtype=torch.uint8).to(device)
        failure = None
        try:
            cap = self._run(img, None)
        except Exception as e:  # noqa: BLE001  the user's network: any error is reported, not raised
            cap, failure = self._last, e
        self.layers = [
            PoolLayer(
                index=i + 1,
                name=c["name"],
                kind=c["kind"],
                kernel=c["kernel"],
                stride=c["stride"],
                padding=c["padding"],
                dilation=c["dilation"],
                ceil_mode=c["ceil_mode"],
                in_shape=c["in_shape"],
                out_shape=c["out_shape"],
                scale=side / max(1, c["out_shape"][-1]),
                site=c["site"],
            )
            for i, c in enumerate(cap.calls)
        ]
        self.notes = [f"seen but not audited: {n}" for n in dict.fromkeys(cap.other)]
        self.notes.append(
            "not seen by the audit: max pooling written by hand (unfold or reshape, then max) and code "
            "compiled by torch.compile"
        )
        if failure is not None:
            msg = f"{type(failure).__name__}: {str(failure).splitlines()[0] if str(failure) else ''}"
            if not self.layers:
                raise PoolingError(
                    f"the network failed on a {side} x {side} image before any max pooling ({msg}); "
                    "a larger --patch may help"
                )
            self.notes.append(
                f"the probe forward on a {side} x {side} image stopped at an error after max pooling "
                f"{len(self.layers)} ({msg}); max poolings after that point, if any, are not audited"
            )
        if not self.layers:
            raise PoolingError(
                "the network has no 2-D max pooling (no nn.MaxPool2d, no F.max_pool2d call): nothing to audit"
            )
        return self.layers

    def switches(self, images: torch.Tensor, upto: int) -> list[torch.Tensor]:
        """Switches of layers 1..``upto`` of uint8 images (B, 3, H, W) on the network's device.

        Returns:
            ``upto`` int64 tensors (B, C, h, w), values in 0..positions-1; the forward stops after
            layer ``upto``.

        Raises:
            PoolingError: the forward ran fewer pools, or others, than discovery found.
        """
        cap = self._run(images, upto)
        got = [c["name"] for c in cap.calls]
        want = [lay.name for lay in self.layers[:upto]]
        if got != want:
            raise PoolingError(
                f"the network's max poolings changed between calls (found {want}, now {got}): "
                "data-dependent pooling cannot be audited"
            )
        return [c["switches"] for c in cap.calls]
