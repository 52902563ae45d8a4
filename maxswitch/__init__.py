"""maxswitch: an image codec that stores only a CNN's max-pool switches.

Public API (torch is imported only when a function needs it)::

    import maxswitch
    data = maxswitch.encode("photo.png")            # bytes of a .msw file
    img = maxswitch.decode(data)                     # PIL image
    maxswitch.info(data)                             # header, sizes, bpp
    model = maxswitch.load_model("natural-16-16-16")
"""

__version__ = "0.5.0"  # the one in pyproject.toml too (tests/test_cli.py checks they agree)

__all__ = ["encode", "decode", "decode_array", "info", "load_model", "__version__"]


def __getattr__(name):
    if name in ("encode", "decode", "decode_array", "info", "parse"):
        from . import codec

        return getattr(codec, name)
    if name == "load_model":
        from .networks.zoo import load_model

        return load_model
    raise AttributeError(f"module 'maxswitch' has no attribute {name!r}")
