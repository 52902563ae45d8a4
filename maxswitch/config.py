"""Defaults that more than one module reads, in one dependency-free place (no numpy, no torch),
so that the CLI's help texts, the library and the docs cannot disagree."""

DEFAULT_MODEL = "natural-6-12-24"
DECODER_KINDS = ("direct", "mirror", "what")  # nets.DECODERS maps each to its class (docs/RESULTS.md compares them)
ZSTD_LEVEL = 1  # payload coding "zstd": chosen by measurement (docs/PERFORMANCE.md, zstd level)
DEFAULT_CODING = "auto"  # both codings, the smaller file is kept (zstd alone for models without a context model)

# The rate-distortion ladders, cheapest rung first: per family, models whose mean Kodak bpp and PSNR
# both increase strictly along it (tests/test_ladder.py checks it; docs/RESULTS.md has the figures).
# "switch-only" is 0.2's ladder, the paper's setting (files hold switches and nothing else); it stays
# shipped and benchmarked so that the paper's claim stays measurable.
SWITCH_LADDER = (
    "natural-4-8-16",
    "natural-6-12-24",
    "natural-16-16-16",
    "natural-32-32-32",
    "natural-48-96-192",
)
LADDERS = {"switch-only": SWITCH_LADDER}
LADDER = SWITCH_LADDER  # the rungs of `encode -q 1..N`; the default model is one of them
LADDER_FAMILY = {"switch-only": "natural"}  # ladder -> the manifest family of its models

# Format v2 codes the padded image in independent tiles of CONTEXT_TILE x CONTEXT_TILE pixels
# (part of the format: docs/FORMAT.md; read by entropy.py and by format.max_payload).
CONTEXT_TILE = 512

# Training time budgets in minutes when no step budget is given (`maxswitch train`, `train-context`).
TRAIN_MINUTES = 20.0
CONTEXT_MINUTES = 10.0
