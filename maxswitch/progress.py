"""Progress on stderr, drawn by tqdm: ``bench``'s bar over images, the bar in training's log lines,
and ``WorkBar``, the bar of a long decode or batch in the CLI (on a terminal only).

tqdm draws and times the bar (rate, elapsed and remaining time). Where stderr is not a terminal
(a log file, a pipe, CI) tqdm would write every redraw behind a carriage return on one endless
line; there ``Progress`` writes tqdm's rendering of the bar as a line of its own once per tenth
of the work instead. Training prints progress as log lines (every 50 steps, under torchrun from
rank 0 only, between evaluation lines), so ``bar`` renders a bar as text for such a line.
"""

from __future__ import annotations

import sys
import time

_FORMAT = "{desc} [{bar:28}] {n_fmt}/{total_fmt} {elapsed} elapsed, ~{remaining} left"
_ASCII = ".#"  # the bar's characters: to do, done


class Progress:
    """A progress callback ``progress(done, total, name)`` on a stream (stderr): a tqdm bar
    redrawn in place on a terminal (with the current item's name), a line per tenth otherwise."""

    def __init__(self, stream=None, desc: str = "bench"):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.desc, self.t0, self.last_tenth = desc, time.monotonic(), -1
        self._bar = None

    def __call__(self, done: int, total: int, name: str) -> None:
        from tqdm import tqdm

        if not self.tty:
            if done * 10 // total > self.last_tenth:
                self.last_tenth = done * 10 // total
                line = tqdm.format_meter(
                    done, total, time.monotonic() - self.t0, prefix=self.desc, ascii=_ASCII, bar_format=_FORMAT
                )
                self.stream.write(line + "\n")
                self.stream.flush()
            return
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                desc=self.desc,
                file=self.stream,
                ascii=_ASCII,
                bar_format=_FORMAT + "{postfix}",
                dynamic_ncols=True,
                mininterval=0,
                smoothing=0,  # the mean rate so far: images take similar times
            )
        self._bar.set_postfix_str(name if done < total else "", refresh=False)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self._bar.close()
            self._bar = None

    def clear(self) -> None:
        """Clear the bar's line so that a warning prints on a line of its own (redrawn at the next call)."""
        if self._bar is not None:
            self._bar.clear()


def bar(fraction: float, width: int = 20) -> str:
    """A bar as text for a log line, such as ``[#####...............]  25%``."""
    from tqdm import tqdm

    f = min(max(fraction, 0.0), 1.0)
    return tqdm.format_meter(f, 1.0, 0, ascii=_ASCII, bar_format=f"[{{bar:{width}}}] {{percentage:3.0f}}%")


class WorkBar:
    """Progress of one long piece of work (the rows of a large image, the files of a batch) as a
    tqdm bar on a terminal, drawn only once the work has taken ``delay`` seconds, so that quick
    work prints nothing; silent where the stream is not a terminal (a log, a pipe, CI) or
    ``enabled`` is False (``--quiet``). ``write`` prints a message above the bar."""

    def __init__(self, total: int, desc: str, unit: str, stream=None, enabled: bool = True, delay: float = 1.0):
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        if enabled and tty and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=self.stream,
                ascii=_ASCII,
                bar_format=_FORMAT,
                dynamic_ncols=True,
                delay=delay,
                leave=False,
            )

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def write(self, msg: str) -> bool:
        """Print ``msg`` above the bar; False (nothing printed) when there is no bar."""
        if self._bar is None:
            return False
        self._bar.write(msg, file=self.stream)
        return True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def counted(bands, bar: WorkBar):
    """Yield the bands of ``tiling.decode_bands``, advancing ``bar`` by their rows."""
    for band in bands:
        yield band
        bar.update(band.shape[0])
