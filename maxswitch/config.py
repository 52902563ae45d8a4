"""Defaults that more than one module reads, in one dependency-free place (no numpy, no torch),
so that the CLI's help texts, the library and the docs cannot disagree."""

DEFAULT_MODEL = "natural-16-16-16"
ZSTD_LEVEL = 1  # payload coding "zstd": chosen by measurement (docs/PERFORMANCE.md, zstd level)
DEFAULT_CODING = "context"  # for models that carry a context model; "zstd" otherwise
