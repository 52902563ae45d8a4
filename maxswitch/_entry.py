"""The ``maxswitch`` command's first lines: a Ctrl-C that arrives while the CLI is still being
imported (click, numpy; up to a few hundred ms on a cold cache) ends the process with the
CLI's own one line and exit 130 instead of Python's KeyboardInterrupt traceback. Nothing has
been read or written yet, so there is nothing to clean up. Found by fuzz/fuzz_process.py."""

import os
import signal


def _interrupted(signum, frame):
    os.write(2, b"maxswitch: interrupted\n")
    os._exit(130)


def main() -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when SIGINT is ignored
        signal.signal(signal.SIGINT, _interrupted)
    from .cli import entry

    entry()  # installs the CLI's own handlers first
