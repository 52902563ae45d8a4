"""Defaults that more than one module reads, in one dependency-free place (no numpy, no torch),
so that the CLI's help texts, the library and the docs cannot disagree."""

DEFAULT_MODEL = "what-2-4-8"  # the cheapest rung at 0.2 default's Kodak PSNR (26.64 dB) or above
# nets.DECODERS maps each decoder kind to its class (docs/RESULTS.md compares them)
DECODER_KINDS = ("direct", "mirror", "what", "what-fine")
WHAT_KINDS = ("what", "what-fine")  # the decoder kinds that read a what part (ModelConfig.what)
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
# "what+where" (0.3, format v3): switches beside a coded description of the image's values (means
# of 8, 4 or 2-pixel blocks, maxswitch/bitstream/what.py), read by decoders that fuse both
# (nets.WhatDecoder). what-2-4-8-f4, what-6-12-24-f2 and -f2-fine are their model's weights with a
# finer what part (the manifest's variants, zoo.register_variant): 4x4 blocks, steps 4/8; 2x2, 8/16;
# 2x2, 4/8. what-2-4-8-f2 (2x2, 8/16) has weights of its own since 0.5, a what-fine decoder
# (nets.WhatFineDecoder). docs/RESULTS.md measured them above the separately trained wider rungs.
WHAT_LADDER = (
    "what-2-4-8",
    "what-2-4-8-f4",
    "what-2-4-8-f2",
    "what-6-12-24-f2",
    "what-6-12-24-f2-fine",
)
LADDERS = {"what+where": WHAT_LADDER, "switch-only": SWITCH_LADDER}
LADDER = WHAT_LADDER  # the rungs of `encode -q 1..N`; the default model is one of them
LADDER_FAMILY = {"what+where": "what+where", "switch-only": "natural"}  # ladder -> its models' manifest family

# Format v2 codes the padded image in independent tiles of CONTEXT_TILE x CONTEXT_TILE pixels
# (part of the format: docs/FORMAT.md; read by entropy.py and by format.max_payload).
CONTEXT_TILE = 512

# Training time budgets in minutes when no step budget is given (`maxswitch train`, `train-context`).
TRAIN_MINUTES = 20.0
CONTEXT_MINUTES = 10.0
AUDIT_MINUTES = 20.0  # `maxswitch audit`: all of its decoders train together in this budget
