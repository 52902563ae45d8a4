"""Model assets: the shipped manifest, finding a model by name or path, safe, checked loading.

A model asset is one safetensors file (never a pickle) holding the encoder's integer
parameters (``encoder.*``), the decoder's float weights (``decoder.*``) and, in the
safetensors metadata, the model's own description under the key ``"maxswitch"`` (a JSON
object with ``name``, ``version`` and the ``ModelConfig``). The model is rebuilt from that
description, never from tensor shapes.

``models/manifest.json`` lists the shipped assets with their SHA-256, training record and
measured figures. Loading a shipped model checks the file's SHA-256 against the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import struct
from functools import lru_cache
from pathlib import Path

from ..config import DEFAULT_MODEL, WHAT_KINDS  # noqa: F401  (DEFAULT_MODEL re-exported)
from ..errors import MaxswitchError

ASSET_SCHEMA = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ModelError(MaxswitchError):
    """A model that cannot be found, does not match its manifest or is malformed."""


class UnknownModelError(ModelError):
    """A name that is neither a shipped model nor a file."""


def models_dir() -> Path:
    """The folder of shipped models: ``$MAXSWITCH_MODELS`` or the package's ``models/``."""
    env = os.environ.get("MAXSWITCH_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]  # the package, maxswitch/
    for cand in (here.parent / "models", here / "models"):
        if (cand / "manifest.json").is_file():
            return cand
    return here.parent / "models"


@lru_cache(maxsize=1)
def _manifest_cached(path: str, mtime: float) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def manifest() -> dict:
    """The parsed ``models/manifest.json`` (``{"models": [...]}``); empty if absent."""
    p = models_dir() / "manifest.json"
    if not p.is_file():
        return {"schema": ASSET_SCHEMA, "models": []}
    return _manifest_cached(str(p), p.stat().st_mtime)


def shipped(name: str) -> dict | None:
    """The manifest entry of a shipped model, or None."""
    for m in manifest().get("models", []):
        if m["name"] == name:
            return m
    return None


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_metadata(data: bytes) -> dict:
    """Read the safetensors header's ``__metadata__`` without loading tensors."""
    if len(data) < 8:
        raise ModelError("model file is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, 100_000_000):
        raise ModelError("model file header is larger than the file")
    try:
        header = json.loads(data[8 : 8 + n])
        meta = json.loads(header["__metadata__"]["maxswitch"])
    except (ValueError, KeyError, TypeError):
        raise ModelError("model file carries no maxswitch description") from None
    return meta


class _Later:
    """A part of a model built on first use (the torch forms: importing torch takes seconds)."""

    def __init__(self, build):
        self.build = build


class Model:
    """A loaded model: the fixed encoder, the decoder and its description.

    Attributes:
        name: e.g. ``"natural-16-16-16"``.
        version: integer version of the decoder weights.
        config: the ``modelconfig.ModelConfig``.
        switch_encoder: ``encoder.SwitchEncoder``, the encoder that ``codec.encode`` runs (numpy
            and numba: encoding never imports torch).
        encoder: ``nets.Encoder`` (torch, the reference and training form), built on first use.
        decoder: ``nn.Module`` in eval mode, or None if the asset has no decoder; built on first
            use (it imports torch), from ``decoder_weights``.
        decoder_weights: the decoder's float32 arrays by parameter name (numpy), or None: what
            the fast decoder (``fastdecode.py``) is built from without torch.
        sha256: SHA-256 of the asset file.
        encoder_digest: ``Encoder.digest()``, the identity recorded in .msw files.
        meta: the full description stored in the file.
        context: ``context.ContextModel`` for payload coding 2, or None.
        table: ``tables.TableModel`` for payload coding 3, or None.
    """

    def __init__(
        self,
        name: str,
        version: int,
        config,
        encoder,
        decoder,
        sha256: str,
        encoder_digest: str,
        meta: dict,
        context=None,
        table=None,
        decoder_weights: dict | None = None,
    ):
        self.name, self.version, self.config = name, version, config
        self.sha256, self.encoder_digest, self.meta = sha256, encoder_digest, meta
        self.context, self.table = context, table
        self._encoder, self._decoder, self.decoder_weights = encoder, decoder, decoder_weights
        self._switch_encoder = None

    @property
    def encoder(self):
        if isinstance(self._encoder, _Later):
            self._encoder = self._encoder.build()
        return self._encoder

    @property
    def switch_encoder(self):
        if self._switch_encoder is None:
            from .encoder import SwitchEncoder

            enc = self._encoder
            self._switch_encoder = enc if isinstance(enc, SwitchEncoder) else SwitchEncoder.from_torch(self.encoder)
        return self._switch_encoder

    @property
    def decoder(self):
        if self._decoder is None and self.decoder_weights is not None:
            self._decoder = _build_decoder(self.config, self.decoder_weights)
        return self._decoder

    @property
    def has_decoder(self) -> bool:
        """Whether the model can decode (without building its decoder)."""
        return self._decoder is not None or self.decoder_weights is not None

    @property
    def context_digest(self) -> str | None:
        """SHA-256 (hex) of the context model, or None."""
        return self.meta.get("context_digest") if self.context is not None else None

    @property
    def table_digest(self) -> str | None:
        """SHA-256 (hex) of the context tables, or None."""
        return self.meta.get("table_digest") if self.table is not None else None


def save_model(
    path: str | Path,
    name: str,
    version: int,
    config,
    encoder,
    decoder,
    record: dict | None = None,
    context=None,
    table=None,
) -> str:
    """Write a model asset atomically; return its SHA-256.

    Args:
        record: free-form training record (data, steps, recipe) stored in the metadata.
    """
    from safetensors.torch import save

    if not valid_name(name):
        raise ModelError(f"model name {name!r} must match {_NAME_RE.pattern}")
    tensors = {f"encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    if decoder is not None:
        tensors.update({f"decoder.{k}": v.detach().float().contiguous() for k, v in decoder.state_dict().items()})
    meta = {
        "schema": ASSET_SCHEMA,
        "name": name,
        "version": int(version),
        "config": config.to_dict(),
        "encoder_digest": encoder.digest(),
        "record": record or {},
    }
    if context is not None:
        tensors.update(context.tensors())
        meta["context_digest"] = context.digest()
    if table is not None:
        tensors.update(table.tensors())
        meta["table_digest"] = table.digest()
    data = save(tensors, metadata={"maxswitch": json.dumps(meta, sort_keys=True)})
    from ..atomic import write_atomic

    write_atomic(str(path), data, overwrite=True)
    return sha256_bytes(data)


def _build(data: bytes, sha: str) -> Model:
    """A model from an asset's bytes, without torch: the encoder, tables and context model as
    numpy arrays, the decoder's weights kept for ``Model.decoder`` to build on first use."""
    from safetensors.numpy import load

    from .encoder import SwitchEncoder
    from .modelconfig import ModelConfig

    meta = read_metadata(data)
    if meta.get("schema") != ASSET_SCHEMA:
        raise ModelError(
            f"model asset schema {meta.get('schema')} is not supported (this maxswitch reads {ASSET_SCHEMA})"
        )
    try:
        cfg = ModelConfig.from_dict(meta["config"])
        tensors = load(data)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"malformed model asset: {e}") from None
    unknown = [k for k in tensors if not k.startswith(("encoder.", "decoder.", "context.", "table."))]
    if unknown:
        raise ModelError(f"malformed model asset: unknown tensor {unknown[0]}")
    enc_sd = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
    dec_sd = {k[len("decoder.") :]: v for k, v in tensors.items() if k.startswith("decoder.")}
    want = {f"{p}{s}" for p in "wb" for s in range(3)} | {"shifts"}
    try:
        if set(enc_sd) != want:
            raise ValueError(f"encoder tensors {sorted(enc_sd)} are not {sorted(want)}")
        enc = SwitchEncoder.from_tensors(cfg.channels, cfg.pool, enc_sd)
    except (ValueError, TypeError) as e:
        raise ModelError(f"model weights do not match their description: {e}") from None
    digest = enc.digest()
    if meta.get("encoder_digest") != digest:
        raise ModelError("model's encoder weights do not match the digest recorded in the asset")
    from ..bitstream.context import ContextModel
    from ..bitstream.tables import TableModel

    ctx = _learned_part(ContextModel, "context", "context model", cfg, tensors, meta)
    table = _learned_part(TableModel, "table", "context tables", cfg, tensors, meta)
    model = Model(meta["name"], int(meta["version"]), cfg, None, None, sha, digest, meta, ctx, table, dec_sd or None)
    model._switch_encoder = enc
    model._encoder = _Later(lambda: _torch_encoder(cfg, enc_sd))
    return model


def _torch_encoder(cfg, enc_sd: dict):
    """The ``nets.Encoder`` of an asset's encoder arrays."""
    import torch

    from .nets import Encoder

    enc = Encoder(cfg.channels, cfg.pool)
    enc.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in enc_sd.items()}, strict=True)
    return enc


def _build_decoder(cfg, dec_sd: dict):
    """The decoder module (eval mode) of an asset's decoder arrays."""
    import torch

    from .nets import build_decoder

    dec = build_decoder(cfg)
    try:
        dec.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in dec_sd.items()}, strict=True)
    except RuntimeError as e:
        raise ModelError(f"model weights do not match their description: {str(e).splitlines()[0]}") from None
    return dec.eval()


def _learned_part(cls, prefix: str, what: str, cfg, tensors: dict, meta: dict):
    """The asset's ``prefix.*`` tensors as a ``cls`` (a context model or context tables), checked
    against the digest its metadata records; None if the asset has none."""
    from ..bitstream.context import ContextError

    if not any(k.startswith(prefix + ".") for k in tensors):
        return None
    try:
        part = cls.from_tensors(cfg.channels, tensors)
    except ContextError as e:
        raise ModelError(f"malformed {what}: {e}") from None
    if meta.get(f"{prefix}_digest") != part.digest():
        raise ModelError(f"model's {what} does not match the digest recorded in the asset")
    return part


_LOADED: dict[str, Model] = {}


def load_model(name_or_path: str | None = None) -> Model:
    """Load a shipped model by name, or an asset file by path, checking its SHA-256.

    A shipped model's file must hash to the manifest's SHA-256. A file given by path that
    names a shipped model *and its version* must hash the same (a damaged or altered copy of a
    shipped model is refused); any other file is a user model, checked only against the
    digests it records of its own encoder and context model.

    Raises:
        ModelError: unknown name, missing file, SHA-256 mismatch or malformed asset.
    """
    key = name_or_path or DEFAULT_MODEL
    if key in _LOADED:
        return _LOADED[key]
    entry = shipped(key)
    if entry is not None:
        path = models_dir() / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(
                f"model {key!r} is not installed ({path.name} is missing): research models stay in the "
                "repository; run from a checkout or pass the file's path"
            ) from None
        except OSError as e:
            raise ModelError(f"shipped model {key!r}: cannot read {path}: {e.strerror}") from None
        sha = sha256_bytes(data)
        if sha != entry["sha256"]:
            raise ModelError(
                f"model {key!r}: file {path.name} has SHA-256 {sha[:16]}..., manifest says {entry['sha256'][:16]}...; refusing to load"
            )
        model = _build(data, sha)
        if entry.get("variant_of"):
            model = _variant(model, entry)
    elif os.path.sep in key or key.endswith(".safetensors") or os.path.isfile(key):
        try:
            data = Path(key).read_bytes()
        except OSError as e:
            raise ModelError(f"cannot read model file {key}: {e.strerror}") from None
        sha = sha256_bytes(data)
        model = _build(data, sha)
        entry = shipped(model.name)
        if entry is not None and int(entry.get("version", -1)) == model.version and entry["sha256"] != sha:
            raise ModelError(
                f"{key} claims to be shipped model {model.name} v{model.version}, but its SHA-256 "
                f"{sha[:16]}... is not the manifest's {entry['sha256'][:16]}...; refusing to load"
            )
    else:
        import difflib

        close = difflib.get_close_matches(key, [m["name"] for m in manifest().get("models", [])], n=1)
        hint = f"; did you mean {close[0]}?" if close else " (not a shipped model's name, nor a file)"
        raise UnknownModelError(f"unknown model {key!r}{hint}")
    _LOADED[key] = model
    return model


def _variant(model: Model, entry: dict) -> Model:
    """The model of a manifest entry that names another model's file (``register_variant``):
    the same encoder, decoder and coders, under the entry's name, writing and reading the entry's
    what part."""
    from ..bitstream.what import WhatSpec

    spec = tuple(int(v) for v in entry.get("what", ()))
    try:
        WhatSpec(*spec)
    except (TypeError, ValueError) as e:
        raise ModelError(f"model {entry['name']!r}: bad what part {spec} in the manifest: {e}") from None
    if model.config.decoder not in WHAT_KINDS or spec[0] > 8:
        raise ModelError(f"model {entry['name']!r}: {model.name} cannot read a what part of {spec[0]}-pixel blocks")
    cfg = dataclasses.replace(model.config, what=spec)
    meta = {**model.meta, "name": entry["name"], "variant_of": model.name}
    return Model(
        entry["name"],
        model.version,
        cfg,
        model._encoder,
        model._decoder,
        model.sha256,
        model.encoder_digest,
        meta,
        model.context,
        model.table,
        model.decoder_weights,
    )


def register_variant(source: str, name: str, what: tuple, figures: dict | None = None) -> dict:
    """Add a manifest entry ``name`` that is shipped model ``source``'s file with another what
    part ``what`` (F, SY, SC): a rung that costs no new weights. ``register`` of the source
    keeps its variants' SHA-256 in step."""
    src = shipped(source)
    if src is None:
        raise ModelError(f"unknown model {source!r}")
    if not valid_name(name):
        raise ModelError(f"model name {name!r} must match {_NAME_RE.pattern}")
    skip = ("figures", "training", "context_training", "table_training", "flat_model")
    entry = {k: v for k, v in src.items() if k not in skip}
    entry.update(name=name, variant_of=source, what=[int(v) for v in what], figures=figures or {})
    _variant(load_model(source), entry)  # refused here if the decoder cannot read it

    def add(man: dict) -> dict:
        models = [m for m in man.get("models", []) if m["name"] != name] + [entry]
        models.sort(key=lambda m: (m["family"], m["switches_per_pixel"], m["name"]))
        return {"schema": ASSET_SCHEMA, "models": models}

    edit_manifest(add)
    return entry


def set_flat_model(name: str, flat: str | None) -> None:
    """Name in shipped what+where model ``name``'s manifest entry the shipped what+where model
    ``flat`` that encodes and decodes its mostly flat pictures (``codec._for_picture``: screens,
    charts), or remove it (``flat`` None). ``register`` keeps it."""

    def what_model(n: str) -> bool:
        return shipped(n) is not None and load_model(n).config.decoder in WHAT_KINDS

    if not what_model(name):
        raise ModelError(f"{name!r} is not a shipped what+where model")
    if flat is not None and (not what_model(flat) or shipped(flat).get("flat_model")):
        raise ModelError(f"{flat!r} is not a shipped what+where model without a flat model of its own")

    def put(man: dict) -> dict:
        for m in man["models"]:
            if m["name"] == name:
                m.pop("flat_model", None)
                if flat is not None:
                    m["flat_model"] = flat
        return man

    edit_manifest(put)


def asset_path(name_or_path: str) -> Path:
    """The file a model name or path stands for: a shipped model's asset, else the path itself."""
    entry = shipped(name_or_path)
    return models_dir() / entry["file"] if entry is not None else Path(name_or_path)


def find_by_digest(encoder_digest: str, prefer: str | None = None) -> str | None:
    """Name of a shipped model whose encoder has this digest (``prefer`` first)."""
    models = manifest().get("models", [])
    if prefer:
        for m in models:
            if m["name"] == prefer and m.get("encoder_digest", "").startswith(encoder_digest):
                return m["name"]
    for m in models:
        if m.get("encoder_digest", "").startswith(encoder_digest):
            return m["name"]
    return None


def register(asset: str | Path, family: str, data: str, figures: dict | None = None) -> dict:
    """Add or replace an asset's entry in ``models/manifest.json`` (the asset must be in models/).

    The entry is computed from the asset itself (name, version, SHA-256, channels, record);
    ``figures`` holds measured rate and quality with the command that measured them.
    """
    asset = Path(asset)
    raw = asset.read_bytes()
    meta = read_metadata(raw)
    cfg = meta["config"]
    chans = cfg["channels"]
    rec = meta.get("record", {})
    old = shipped(meta["name"]) or {}
    entry = {
        "name": meta["name"],
        "version": meta["version"],
        "file": asset.name,
        "sha256": sha256_bytes(raw),
        "bytes": len(raw),
        "family": family,
        "data": data,
        "channels": chans,
        "decoder": cfg["decoder"],
        "widths": cfg["widths"],
        "pool": cfg["pool"],
        "switches_per_pixel": sum(c / 4 ** (s + 1) for s, c in enumerate(chans)),
        "raw_bits_per_pixel_value": round(2 * sum(c / 4 ** (s + 1) for s, c in enumerate(chans)) / 3, 4),
        "encoder_digest": meta["encoder_digest"],
        "context_digest": meta.get("context_digest"),
        "table_digest": meta.get("table_digest"),
        "training": {
            k: rec.get(k)
            for k in (
                "train_dir",
                "split",
                "train_images",
                "steps",
                "minutes",
                "val_psnr",
                "recipe",
                "processes",
                "torch",
                "device",
            )
            if k in rec
        },
        "context_training": rec.get("context"),
        "table_training": rec.get("table"),
        "figures": figures if figures is not None else old.get("figures", {}),
    }
    if old.get("flat_model"):  # set by set_flat_model, kept
        entry["flat_model"] = old["flat_model"]

    def add(man: dict) -> dict:
        models = [m for m in man.get("models", []) if m["name"] != entry["name"]] + [entry]
        for m in models:  # its variants name the same file
            if m.get("variant_of") == entry["name"]:
                m.update({k: entry[k] for k in ("version", "file", "sha256", "bytes")})
        models.sort(key=lambda m: (m["family"], m["switches_per_pixel"], m["name"]))
        return {"schema": ASSET_SCHEMA, "models": models}

    edit_manifest(add)
    return entry


def edit_manifest(change) -> None:
    """Apply ``change(manifest) -> manifest`` to models/manifest.json under a file lock.

    Several training and measuring processes may write the manifest at once; the lock keeps
    each read-modify-write whole, and the write itself is atomic.
    """
    import fcntl

    from ..atomic import write_atomic

    path = models_dir() / "manifest.json"
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        man = json.loads(path.read_text()) if path.is_file() else {"schema": ASSET_SCHEMA, "models": []}
        write_atomic(str(path), (json.dumps(change(man), indent=1) + "\n").encode(), overwrite=True)
    _LOADED.clear()


def set_figures(figures: dict[str, dict]) -> list[str]:
    """Replace the measured ``figures`` of the manifest's models named in ``figures`` (name -> figures;
    written by ``benchmarks/reproduce.py`` and ``benchmarks/ladder_figures.py``). Other entries and
    names the manifest does not list are left alone.

    Returns:
        The names whose figures were written, in manifest order.
    """
    written: list[str] = []

    def put(man: dict) -> dict:
        for m in man["models"]:
            if m["name"] in figures:
                m["figures"] = figures[m["name"]]
                written.append(m["name"])
        return man

    edit_manifest(put)
    return written


def model_for_quality(q: int) -> str:
    """The model of ladder rung ``q`` (1 = cheapest .. len(LADDER)); see ``config.LADDER``."""
    from ..config import LADDER

    if not 1 <= q <= len(LADDER):
        raise ModelError(f"quality must be 1..{len(LADDER)}, got {q}")
    return LADDER[q - 1]
