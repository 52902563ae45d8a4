#!/usr/bin/env python3
"""Fuzz the command line as a process: lying sizes, signals during writes, closed and full stdout.

The in-process fuzzer (fuzz_msw.py) checks what the library does with bytes; these are the
shapes that only a whole process shows (docs/SECURITY.md, issue 13), each a random trial:

* ``lie``: a valid file whose header claims other sizes (width, height, payload length, up to
  2^32 - 1) with a payload of another length, as a sparse file of up to 3 GiB or through a pipe
  fed up to 256 MiB; ``info`` or ``decode`` under ``--max-pixels``. Oracle: non-zero exit, one
  line on stderr, peak RSS (``wait4``'s ru_maxrss) under 300 MB for ``info`` and 2 GB for
  ``decode``, and an end within 20 s.
* ``signal``: ``encode`` or ``decode`` to a file (new, or an existing one with ``-f``) killed by
  SIGINT, SIGTERM or SIGHUP at a random moment in its first 3 s. Oracle: exit 0 with a complete
  output, or 128 + the signal with the output absent or, when it existed, untouched; at most one
  line on stderr; no ``.maxswitch-*.tmp`` left in the folder.
* ``stdout``: ``decode ... -`` or ``info`` into /dev/full, or into a pipe whose reader closes after
  a random number of bytes. Oracle: non-zero exit (or death by SIGPIPE), at most one line on stderr.

Findings go to ``--findings`` as ``<n>.txt`` (the trial and what broke), and the run goes on.

    python fuzz/fuzz_process.py --seconds 1800 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

RSS_LIMIT_KB = 300 * 1024  # info (no torch)
DECODE_RSS_LIMIT_KB = 2048 * 1024  # decode (torch and a model loaded)
# A SIGINT during the interpreter's own start-up (site, the package finder: about 50 to 90 ms,
# before any line of maxswitch runs) gets Python's KeyboardInterrupt traceback; no code of ours
# can run earlier. Counted apart, not a finding (docs/SECURITY.md).
STARTUP = "startup"


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "maxswitch", *map(str, args)]


def run(cmd, stdin=None, stdout=subprocess.DEVNULL, timeout=20.0, feed: bytes | None = None, feed_zeros=0):
    """Run a process; return (exit status or None after ``timeout``, stderr text, peak RSS in KB)."""
    t0 = time.time()
    p = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if (feed is not None or feed_zeros) else stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    if feed is not None or feed_zeros:
        try:
            p.stdin.write(feed or b"")
            chunk = bytes(1 << 20)
            for _ in range(feed_zeros >> 20):
                p.stdin.write(chunk)
        except (BrokenPipeError, OSError):
            pass
        try:
            p.stdin.close()
        except OSError:
            pass
    deadline = t0 + timeout
    while True:  # wait4: this child's own peak RSS, not the largest of all children so far
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            p.kill()
            os.wait4(p.pid, 0)
            p.returncode = -9
            return None, p.stderr.read().decode(errors="replace"), 0
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, p.stderr.read().decode(errors="replace"), ru.ru_maxrss


def one_line(err: str) -> bool:
    return len([x for x in err.splitlines() if x.strip()]) <= 1


def lying_header(seed: bytes, rng: random.Random) -> tuple[bytes, int]:
    """A copy of ``seed`` whose header lies; returns (bytes, how many zero bytes follow)."""
    import harness

    lay = harness.layout(seed)
    data = bytearray(seed)
    big = [2**32 - 1, 2**31, 2**20, 1 << 30, rng.randrange(1, 2**32)]
    field = rng.choice(["width", "height", "length", "all"])
    if field in ("width", "all"):
        data[12:16] = rng.choice(big).to_bytes(4, "little")
    if field in ("height", "all"):
        data[16:20] = rng.choice(big).to_bytes(4, "little")
    if field in ("length", "all") and lay:
        data[lay["len"] : lay["len"] + 4] = rng.choice(big).to_bytes(4, "little")
    data = harness.fix_crc(bytes(data)) if rng.random() < 0.5 else bytes(data)
    return data, rng.choice([0, 1 << 20, 64 << 20, 256 << 20])


def trial_lie(rng, seeds, tmp: Path) -> str | None:
    data, zeros = lying_header(rng.choice(seeds), rng)
    cmd_name = rng.choice(["info", "decode"])
    mp = rng.choice(["1000", "100000", "16000000"])
    if rng.random() < 0.5:  # a sparse file: the bytes, then a hole of up to 3 GiB
        f = tmp / "lie.msw"
        f.write_bytes(data)
        with open(f, "r+b") as h:
            h.truncate(len(data) + rng.choice([0, 1 << 30, 3 << 30]))
        args = [cmd_name, f, "--max-pixels", mp] + (["-o", tmp / "o.png", "-f"] if cmd_name == "decode" else [])
        code, err, rss = run(cli(*args))
        f.unlink()
    else:  # through a pipe
        args = [cmd_name, "-", "--max-pixels", mp] + (["-o", tmp / "o.png", "-f"] if cmd_name == "decode" else [])
        code, err, rss = run(cli(*args), feed=data, feed_zeros=zeros)
    if code is None:
        return f"lie: {cmd_name} still running after 20 s"
    if code == 0:
        return f"lie: {cmd_name} exited 0 on a lying header"
    if not one_line(err):
        return f"lie: {cmd_name} printed {len(err.splitlines())} lines: {err[:400]!r}"
    limit = RSS_LIMIT_KB if cmd_name == "info" else DECODE_RSS_LIMIT_KB
    if rss > limit:
        return f"lie: {cmd_name} peak RSS {rss // 1024} MB"
    return None


def trial_signal(rng, seeds, tmp: Path, example: Path, msw: Path) -> str | None:
    sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
    what = rng.choice(["encode", "decode"])
    out = tmp / ("out.msw" if what == "encode" else "out.png")
    existed = rng.random() < 0.5
    old = b"old content, must survive"
    if existed:
        out.write_bytes(old)
    elif out.exists():
        out.unlink()
    src = example if what == "encode" else msw
    cmd = cli(what, src, "-o", out, *(["-f"] if existed else []), *(["-m", "fuzz-4-6-8"] if what == "encode" else []))
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(rng.uniform(0, 3.0))
    try:
        p.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        return f"signal: {what} did not end 30 s after {sig.name}"
    err = err.decode(errors="replace")
    left = [x.name for x in tmp.iterdir() if x.name.startswith(".maxswitch-")]
    if left:
        return f"signal: {what} + {sig.name} left {left}"
    if not one_line(err):
        if sig == signal.SIGINT and "KeyboardInterrupt" in err and "/maxswitch/" not in err:
            return STARTUP  # before any maxswitch code ran: the interpreter's own start-up
        return f"signal: {what} + {sig.name} printed {err!r}"
    if p.returncode == 0:
        if not out.exists() or out.read_bytes() == old:
            return f"signal: {what} exited 0 without writing its output"
    elif p.returncode in (128 + sig, -sig):
        if existed and out.read_bytes() != old:
            return f"signal: {what} + {sig.name} changed the existing output"
        if not existed and out.exists():
            return f"signal: {what} + {sig.name} left a partial output"
    else:
        return f"signal: {what} + {sig.name} exited {p.returncode}: {err[:300]!r}"
    return None


def trial_stdout(rng, seeds, tmp: Path, msw: Path) -> str | None:
    what = rng.choice(["decode", "info"])
    cmd = cli(*(["decode", msw, "-"] if what == "decode" else ["info", msw]))
    if rng.random() < 0.5:
        with open("/dev/full", "wb") as full:
            code, err, _ = run(cmd, stdout=full)
        if code is None or code == 0 or not one_line(err):
            return f"stdout: {what} > /dev/full: exit {code}, {err[:300]!r}"
        return None
    n = rng.choice([0, 1, 10, 4096, 65536])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    p.stdout.read(n)
    p.stdout.close()  # the reader goes away
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        return f"stdout: {what} hung after its reader closed"
    err = err.decode(errors="replace")
    if p.returncode == 0 and what == "decode":  # its output is far longer than what was read
        return f"stdout: decode exited 0 though its reader closed after {n} bytes"
    if not one_line(err):
        return f"stdout: {what} | head -c {n}: {err[:300]!r}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--findings", default=str(HERE / "work" / "findings-process"))
    ap.add_argument("--stats", default=str(HERE / "work" / "stats-process.json"))
    a = ap.parse_args()
    import harness

    state = harness.setup(tempfile.mkdtemp(prefix="maxswitch-fuzz-process-"))
    seeds = state["seeds"]
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="maxswitch-fuzz-out-"))
    example = ROOT / "examples" / "example.png"
    msw = tmp / "example.msw"
    model = ["-m", harness.MODEL_NAME]  # the fuzz model (MAXSWITCH_MODELS points at it): fast processes
    subprocess.run(cli("encode", *model, example, "-o", msw, "-f", "--quiet"), check=True, cwd=ROOT)
    findings = Path(a.findings)
    counts = {"lie": 0, "signal": 0, "stdout": 0}
    found = 0
    t_end = time.time() + a.seconds
    while time.time() < t_end:
        kind = rng.choice(["lie", "signal", "stdout"])
        counts[kind] += 1
        if kind == "lie":
            bad = trial_lie(rng, seeds, tmp)
        elif kind == "signal":
            bad = trial_signal(rng, seeds, tmp, example, msw)
        else:
            bad = trial_stdout(rng, seeds, tmp, msw)
        if bad == STARTUP:
            counts["sigint_in_interpreter_startup"] = counts.get("sigint_in_interpreter_startup", 0) + 1
        elif bad:
            found += 1
            findings.mkdir(parents=True, exist_ok=True)
            (findings / f"{found}.txt").write_text(bad + "\n")
            print(f"finding {found}: {bad}", file=sys.stderr)
    stats = {"seconds": a.seconds, "seed": a.seed, "trials": counts, "findings": found}
    Path(a.stats).parent.mkdir(parents=True, exist_ok=True)
    Path(a.stats).write_text(json.dumps(stats, indent=1) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
