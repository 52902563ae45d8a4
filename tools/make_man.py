"""Write the man pages of maxswitch and its commands (docs/man/*.1) from the CLI's own help.

    python tools/make_man.py [--check]       (or: make man)

The pages are made by click-man from the click commands, so they say what ``--help`` says;
the date on each page is the one in ``DATE`` below (a fixed date keeps the files
reproducible: bump it when the CLI changes). ``--check`` exits 1 if the committed pages
differ from what the CLI gives now (tests/test_cli_batch.py runs it). The wheel installs
them under share/man/man1 (pyproject.toml).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "man"
DATE = "2026-12-02"


def render(target: Path) -> None:
    from click_man.core import write_man_pages

    sys.path.insert(0, str(ROOT))
    from maxswitch import __version__
    from maxswitch.cli import cli

    write_man_pages("maxswitch", cli, version=__version__, target_dir=str(target), date=DATE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with docs/man instead of writing")
    args = ap.parse_args()
    if not args.check:
        TARGET.mkdir(parents=True, exist_ok=True)
        render(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        render(Path(tmp))
        want = {p.name: p.read_bytes() for p in Path(tmp).glob("*.1")}
    have = {p.name: p.read_bytes() for p in TARGET.glob("*.1")}
    stale = sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))
    if stale:
        print(f"man pages out of date: {', '.join(stale)}; run `make man`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
