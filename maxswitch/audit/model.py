"""The network an audit reads: a factory's network with file or random weights, or a maxswitch encoder.

``MODEL`` is one of:

* ``package.module:function`` or ``path/to/file.py:function``: a function that takes no argument
  and returns an ``nn.Module`` taking a float image (B, 3, H, W). A module path is imported with
  the working folder first on ``sys.path`` (as ``python -m`` does). Its weights are those the
  factory gives, called under ``torch.manual_seed(seed)`` so that a random initialisation is
  repeatable; ``weights`` replaces them from a local file: safetensors, or a state dict read by
  ``torch.load(weights_only=True)`` (never a pickle of code), loaded strictly.
* a maxswitch model: a shipped model's name or an asset path. Its fixed encoder is probed
  exactly as ``encode`` and ``train`` run it (``EncoderProbe``).

Nothing is downloaded. Every refusal is an ``AuditError`` whose message is one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import MaxswitchError
from ..networks.pooling import PoolLayer, Probe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("unit", "imagenet", "signed", "raw")


class AuditError(MaxswitchError):
    """An audit input that cannot be used: the model, its weights, the data or a setting."""


def normalizer(kind: str):
    """uint8 (B, 3, H, W) -> the network's float input: ``unit`` x/255, ``imagenet`` (x/255 - mean) / std
    with ImageNet's statistics, ``signed`` x/127.5 - 1, ``raw`` x as float (0..255)."""
    if kind not in NORMALIZATIONS:
        raise AuditError(f"unknown input normalisation {kind!r} ({', '.join(NORMALIZATIONS)})")

    def norm(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if kind == "raw":
            return x
        if kind == "signed":
            return x / 127.5 - 1
        x = x / 255
        if kind == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    return norm


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def import_factory(spec: str):
    """The function named by ``package.module:function`` or ``file.py:function``.

    Raises:
        AuditError: the module cannot be imported or has no such function.
    """
    where, _, fn_name = spec.rpartition(":")
    if not where or not fn_name:
        raise AuditError(f"model {spec!r}: a factory is package.module:function or path/to/file.py:function")
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = Path(where)
        if not path.is_file():
            raise AuditError(f"cannot import {where}: no such file")
        name = "maxswitch_audit_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        try:
            mspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module  # dataclasses and pickling look modules up here
            mspec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001  the user's code: any error is a refusal
            sys.modules.pop(name, None)
            raise AuditError(f"cannot import {where}: {_first_line(e)}") from None
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except Exception as e:  # noqa: BLE001
            raise AuditError(f"cannot import {where}: {_first_line(e)}") from None
        finally:
            sys.path.remove(os.getcwd())
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AuditError(f"{where} has no function {fn_name!r}")
    return fn


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a ``torch.save``d dict of tensors (``weights_only``).

    A dict holding the state dict under ``state_dict`` or ``model`` is unwrapped, and a common
    ``module.`` prefix (DistributedDataParallel's) is dropped.

    Raises:
        AuditError: unreadable file, a pickle of code, or no dict of tensors.
    """
    if not os.path.isfile(path):
        raise AuditError(f"weights {path}: no such file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            sd = load_file(path)
        except Exception as e:  # noqa: BLE001
            raise AuditError(f"weights {path}: not a readable safetensors file ({_first_line(e)})") from None
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  pickle errors, a zip that is not torch's, ...
            raise AuditError(
                f"weights {path}: not a plain state dict (torch.load with weights_only=True refused it: {_first_line(e)})"
            ) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise AuditError(f"weights {path}: expected a dict of tensors (a state dict)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def fit_weights(net: nn.Module, sd: dict[str, torch.Tensor], path: str) -> None:
    """Load ``sd`` into ``net`` strictly; a mismatch is one line naming what does not fit."""
    have = net.state_dict()
    missing = [k for k in have if k not in sd]
    extra = [k for k in sd if k not in have]
    shaped = [k for k in have if k in sd and tuple(have[k].shape) != tuple(sd[k].shape)]
    if missing or extra or shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({missing[0]}{', ...' if len(missing) > 1 else ''})")
        if extra:
            parts.append(f"{len(extra)} unexpected ({extra[0]}{', ...' if len(extra) > 1 else ''})")
        if shaped:
            k = shaped[0]
            parts.append(
                f"{len(shaped)} of another shape ({k}: file {tuple(sd[k].shape)}, network {tuple(have[k].shape)})"
            )
        raise AuditError(f"weights {path} do not fit the network: " + "; ".join(parts))
    net.load_state_dict(sd, strict=True)


def state_digest(net: nn.Module) -> str:
    """SHA-256 of a network's state dict: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EncoderProbe:
    """A maxswitch model's fixed encoder, probed like ``Probe``: three 2x2 stride-2 pooling stages.

    Its switches are computed on the CPU, where its integer arithmetic is exact, in the training
    data workers as ``train`` computes them (``in_data``), so an audit sees the bits ``encode`` writes.
    """

    in_data = True

    def __init__(self, model):
        self.model = model
        self.encoder = model.encoder
        self.data_encoder = model.encoder
        self.layers: list[PoolLayer] = []
        self.notes: list[str] = []

    def discover(self, side: int, device=None) -> list[PoolLayer]:
        chans = self.encoder.channels
        self.layers = [
            PoolLayer(
                index=s + 1,
                name=f"stage{s + 1}",
                kind="encoder",
                kernel=(2, 2),
                stride=(2, 2),
                padding=(0, 0),
                dilation=(1, 1),
                ceil_mode=False,
                in_shape=(c, side >> s, side >> s),
                out_shape=(c, side >> (s + 1), side >> (s + 1)),
                scale=float(2 ** (s + 1)),
            )
            for s, c in enumerate(chans)
        ]
        self.notes = ["maxswitch encoder: switches computed exactly on the CPU, all three stages every time"]
        return self.layers

    def switches(self, images: torch.Tensor, upto: int) -> list[torch.Tensor]:
        """Switches of stages 1..``upto`` of uint8 images (B, 3, H, W), H and W multiples of 8."""
        codes = self.encoder(images.cpu())
        return [c.long().to(images.device) for c in codes[:upto]]


class NoSwitches:
    """The data workers' encoder for a factory network: crops only (the audit computes switches on
    its device, where the network is)."""

    def __call__(self, region):
        return []


@dataclass
class Target:
    """The audited network: its probe, and what the report records about it."""

    probe: object  # Probe or EncoderProbe
    description: dict = field(default_factory=dict)
    model: object = None  # zoo.Model for a maxswitch model, else None

    @property
    def data_encoder(self):
        return self.probe.data_encoder if self.probe.in_data else NoSwitches()


def load_target(
    spec: str,
    *,
    weights: str | None = None,
    random_seed: int | None = None,
    seed: int = 0,
    normalize: str = "unit",
) -> Target:
    """Build the network ``spec`` names (see the module's doc) and describe it.

    Args:
        weights: a local weights file for a factory's network.
        random_seed: build a factory's network with untrained weights drawn from this seed.
        seed: the seed of the factory call when neither ``weights`` nor ``random_seed`` is given.
        normalize: how images become the network's input (``normalizer``).

    Raises:
        AuditError: see the module's doc.
    """
    if ":" not in spec:
        from ..networks.zoo import ModelError, load_model

        if weights is not None or random_seed is not None:
            raise AuditError(f"{spec} is a maxswitch model: its encoder is fixed (no --weights or --random)")
        try:
            model = load_model(spec)
        except ModelError as e:
            raise AuditError(
                f"model {spec!r}: not a maxswitch model ({e}); a network is given as package.module:function "
                "or path/to/file.py:function"
            ) from None
        return Target(
            EncoderProbe(model),
            {
                "spec": spec,
                "kind": "maxswitch",
                "name": model.name,
                "version": model.version,
                "channels": list(model.config.channels),
                "encoder_digest": model.encoder_digest,
                "weights": {"source": "asset", "sha256": model.sha256},
                "normalize": "uint8 (the encoder's own integer input)",
            },
            model,
        )
    if weights is not None and random_seed is not None:
        raise AuditError("give --weights or --random, not both")
    norm = normalizer(normalize)
    factory = import_factory(spec)
    torch.manual_seed(seed if random_seed is None else random_seed)
    try:
        net = factory()
    except Exception as e:  # noqa: BLE001
        raise AuditError(f"factory {spec} failed: {_first_line(e)}") from None
    if not isinstance(net, nn.Module):
        raise AuditError(f"factory {spec} returned a {type(net).__name__}, not a torch.nn.Module")
    source = {"source": "factory", "seed": seed}
    if random_seed is not None:
        source = {"source": "random", "seed": random_seed}
    if weights is not None:
        fit_weights(net, read_weights(weights), weights)
        source = {"source": "file", "file": os.path.basename(weights), "sha256": file_sha256(weights)}
    source["state_sha256"] = state_digest(net)
    return Target(
        Probe(net, norm),
        {
            "spec": spec,
            "kind": "factory",
            "class": type(net).__qualname__
            if type(net).__module__.startswith("maxswitch_audit_")  # imported from a file: the spec names it
            else f"{type(net).__module__}.{type(net).__qualname__}",
            "parameters": sum(p.numel() for p in net.parameters()),
            "weights": source,
            "normalize": normalize,
        },
    )
