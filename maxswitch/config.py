"""Defaults that more than one module reads, in one dependency-free place (no numpy, no torch),
so that the CLI's help texts, the library and the docs cannot disagree."""

DEFAULT_MODEL = "natural-6-12-24"
DECODER_KINDS = ("direct", "mirror")  # nets.DECODERS maps each to its class (docs/RESULTS.md compares them)
ZSTD_LEVEL = 1  # payload coding "zstd": chosen by measurement (docs/PERFORMANCE.md, zstd level)
DEFAULT_CODING = "auto"  # both codings, the smaller file is kept (zstd alone for models without a context model)

# The rate-distortion ladder of `encode -q 1..N`, cheapest first: natural-image models whose mean Kodak
# bpp and PSNR both increase strictly along it (tests/test_ladder.py checks it; docs/RESULTS.md has the
# figures). The default model is the ladder point that reaches v0.1's Kodak PSNR for the fewest bits.
LADDER = (
    "natural-4-8-16",
    "natural-6-12-24",
    "natural-16-16-16",
    "natural-32-32-32",
    "natural-48-96-192",
)

# Format v2 codes the padded image in independent tiles of CONTEXT_TILE x CONTEXT_TILE pixels
# (part of the format: docs/FORMAT.md; read by entropy.py and by format.max_payload).
CONTEXT_TILE = 512

# Training time budgets in minutes when no step budget is given (`maxswitch train`, `train-context`).
TRAIN_MINUTES = 20.0
CONTEXT_MINUTES = 10.0
AUDIT_MINUTES = 20.0  # `maxswitch audit`: all of its decoders train together in this budget
