#!/usr/bin/env python3
"""Fuzz maxswitch's ``.msw`` reader (``info`` and ``decode``) for as long as you like.

Two engines share one oracle (``harness.check``) and one structure-aware mutator:

* ``--engine atheris`` (coverage-guided, libFuzzer under the hood; ``pip install atheris``):
  maxswitch's own modules are instrumented; every input goes through the custom mutator,
  which half the time uses libFuzzer's byte mutations and half the time ``harness.mutate``,
  and repairs the CRC most of the time so that the checks behind it are reached.
* ``--engine random`` (no extra dependency): the pure-Python loop ``harness.run_random``.

``--target image`` fuzzes the other door, image loading for ``encode``, with byte mutations of
small PNG, GIF, JPEG, TIFF, BMP and WebP files.

Findings (an exception outside the documented ones, a multi-line message, an inconsistency,
a slow input) are written to ``--findings`` as ``<id>.msw`` and ``<id>.txt`` and the run goes
on; figures are written to ``--stats`` every minute and at the end.

Examples::

    python fuzz/fuzz_msw.py --engine random --seconds 600
    nice -n 19 python fuzz/fuzz_msw.py --engine atheris --seconds 3600
    python fuzz/fuzz_msw.py --engine random --target image --seconds 600   # image loading
    python fuzz/fuzz_msw.py --replay fuzz/work/findings-msw/*.msw    # re-check saved inputs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--engine", choices=["atheris", "random"], default="random")
    p.add_argument(
        "--target",
        choices=["msw", "image"],
        default="msw",
        help="msw: info and decode of .msw bytes (default); image: image loading for encode.",
    )
    p.add_argument("--seconds", type=float, default=600.0, help="How long to run (default 600).")
    p.add_argument("--count", type=int, default=None, help="Stop after this many inputs (random engine).")
    p.add_argument("--seed", type=int, default=0, help="Random seed (random engine).")
    p.add_argument("--work", default=str(HERE / "work"), help="Folder for corpus, findings and stats.")
    p.add_argument("--findings", default=None, help="Where findings go (default WORK/findings).")
    p.add_argument("--stats", default=None, help="Stats JSON (default WORK/stats-ENGINE.json).")
    p.add_argument("--replay", nargs="*", default=None, help="Run check() on these files and exit.")
    p.add_argument("libfuzzer_args", nargs="*", help="Extra libFuzzer flags after --, e.g. -- -jobs=1")
    return p.parse_args(argv)


def replay(paths, target: str) -> int:
    import harness

    harness.setup()
    check = harness.check if target == "msw" else harness.check_image
    bad = 0
    for p in paths:
        try:
            out = check(Path(p).read_bytes())
            print(f"{p}: {out}")
        except harness.Finding as f:
            bad += 1
            print(f"{p}: FINDING {f.kind}: {f.detail.splitlines()[0]}")
    return 1 if bad else 0


def run_atheris(a) -> int:
    # Heavy third-party modules first, uninstrumented; then maxswitch under instrumentation.
    import atheris
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import zstandard  # noqa: F401

    with atheris.instrument_imports(include=["maxswitch"]):
        import maxswitch.bitstream.format  # noqa: F401
        import maxswitch.bitstream.switches  # noqa: F401
        import maxswitch.codec  # noqa: F401
        import maxswitch.image  # noqa: F401
        import maxswitch.networks.tiling  # noqa: F401
        import maxswitch.networks.zoo  # noqa: F401
    import harness

    st = harness.setup()
    seeds = st["seeds"] if a.target == "msw" else harness.image_seeds()
    target = harness.check if a.target == "msw" else harness.check_image
    work = Path(a.work)
    corpus = work / f"corpus-{a.target}"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(s)
    findings = a.findings or str(work / f"findings-{a.target}")
    stats_path = a.stats or str(work / f"stats-atheris-{a.target}.json")
    stats = harness.Stats()
    state = {"last": time.time()}

    def flush():
        Path(stats_path).write_text(json.dumps(stats.as_dict(), indent=1))

    def test_one(data: bytes) -> None:
        stats.inputs += 1
        try:
            out = target(bytes(data))
        except harness.Finding as f:
            out = "finding"
            harness.record(stats, bytes(data), f, findings)
        stats.outcomes[out] = stats.outcomes.get(out, 0) + 1
        now = time.time()
        if now - state["last"] > 60:
            state["last"] = now
            flush()

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            out = atheris.Mutate(data, max_size)
            if a.target == "msw" and rng.random() < 0.7:
                out = harness.fix_crc(out)
            return out
        if a.target == "image":
            return harness.mutate_image(data, rng, seeds, max_size)
        return harness.mutate(data, rng, seeds, max_size)

    import atexit

    atexit.register(flush)
    flags = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={int(a.seconds)}",
        "-max_len=65536",
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        *a.libfuzzer_args,
    ]
    atheris.Setup(flags, test_one, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


def main(argv=None) -> int:
    a = _args(argv if argv is not None else sys.argv[1:])
    if a.replay is not None:
        return replay(a.replay, a.target)
    if a.engine == "atheris":
        return run_atheris(a)
    import harness

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    run = harness.run_random if a.target == "msw" else harness.run_random_images
    stats = run(
        count=a.count,
        seconds=a.seconds,
        seed=a.seed,
        findings_dir=a.findings or str(work / f"findings-{a.target}"),
        stats_path=a.stats or str(work / f"stats-random-{a.target}.json"),
    )
    d = stats.as_dict()
    print(json.dumps(d, indent=1))
    return 1 if d["unique_findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
