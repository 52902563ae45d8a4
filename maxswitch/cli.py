"""The ``maxswitch`` command line: a thin layer over the library.

Exit codes (decided in ``main`` only): 0 success, 1 bad data or a failure, 2 usage error,
130 interrupted. Data goes to stdout, every message to stderr, one line per error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading

import click

from . import __version__
from .config import AUDIT_MINUTES, CONTEXT_MINUTES, DECODER_KINDS, DEFAULT_CODING, DEFAULT_MODEL, LADDER, TRAIN_MINUTES
from .config import ZSTD_LEVEL as ZSTD_LEVEL_DEFAULT

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130


class Failure(click.ClickException):
    """A failure reported as one line on stderr with exit code 1."""

    exit_code = EXIT_FAIL


MAX_INPUT_BYTES = 1 << 30  # an image from a pipe or device larger than this is refused (docs/SECURITY.md, "Limits")


def _read_input(path: str, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """An image file or pipe, read whole but bounded: a stream in no image format (``/dev/zero``,
    an ISO image) is refused after its first MiB, and anything over ``limit`` bytes after that
    many, with one line, instead of growing until the kernel kills the process."""
    from .image import ImageError, recognised

    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
    except IsADirectoryError:
        raise Failure(f"{path} is a folder, not {what}") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror}") from None
    try:
        out = bytearray(_read_upto(f, 1 << 20))
        if len(out) == 1 << 20 and not recognised(bytes(out)):
            raise ImageError("not a readable image: no image format recognised")
        while True:
            b = f.read(min(1 << 24, limit + 1 - len(out)))
            if not b:
                break
            out += b
            if len(out) > limit:
                raise ImageError(f"input is over {limit} bytes, the most maxswitch reads as an image")
        return bytes(out)
    except IsADirectoryError:
        raise Failure(f"{path} is a folder, not {what}") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror}") from None
    finally:
        if path != "-":
            f.close()


@contextlib.contextmanager
def _open_input(path: str, what: str):
    """An image input for ``image.load``: a regular file open for reading (Pillow reads what it
    needs: the file's bytes are not held beside the picture), else the bytes of the bounded
    ``_read_input``."""
    import stat

    f = None
    if path != "-":
        try:
            f = open(path, "rb")
        except IsADirectoryError:
            raise Failure(f"{path} is a folder, not {what}") from None
        except OSError as e:
            raise Failure(f"cannot read {path}: {e.strerror}") from None
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            f.close()
            f = None
    try:
        yield f if f is not None else _read_input(path, what)
    finally:
        if f is not None:
            f.close()


def _model_known(key: str | None) -> bool:
    """Whether a model name or path names an asset that exists, checked without loading it (no
    torch): a shipped model whose file is present, or a file."""
    from .config import DEFAULT_MODEL
    from .networks.zoo import models_dir, shipped

    key = key or DEFAULT_MODEL
    entry = shipped(key)
    if entry is not None:
        return (models_dir() / entry["file"]).is_file()
    return os.path.isfile(key)


def _starts_with_msw(path: str) -> bool:
    """Whether a file starts with the .msw magic (a pipe: its first bytes are peeked, not taken)."""
    from .bitstream.format import MAGIC

    if path == "-":
        return sys.stdin.buffer.peek(8)[:8] == MAGIC
    try:
        with open(path, "rb") as f:
            return f.read(8) == MAGIC
    except OSError:
        return False  # _read_input says why


def _read_upto(f, n: int) -> bytes:
    """Up to ``n`` bytes (fewer at the end of the file), for the small reads of a header."""
    out = bytearray()
    while len(out) < n:
        b = f.read(n - len(out))
        if not b:
            break
        out += b
    return bytes(out)


SPOOL_BYTES = 64 << 20  # a larger .msw file is read from its file on demand (a pipe's is spooled), not held


def _read_msw(path: str, max_pixels: int | None = None, before_payload=None):
    """Read a .msw file, but no further than its header says it goes: a wrong file (an ISO
    image, /dev/zero, an endless pipe) is refused after its first bytes, never read whole, and
    a header whose sizes exceed the pixel limit or lie about its payload is refused before the
    payload is read. A file over ``SPOOL_BYTES`` is not held: a regular file is left where it
    is and a pipe's bytes go to an unlinked temporary file (``format.FileBytes``); smaller ones
    are read once into one buffer. ``before_payload(header)`` runs before a large payload is
    read (decode checks the model there: a header with another channel plan is refused before
    its payload)."""
    import stat

    from .bitstream.format import PREFIX_MAX, FileBytes, FormatError, check_prefix, declared_length

    def declared(prefix):
        n = declared_length(prefix)
        if n is not None:
            h = check_prefix(prefix, max_pixels)
            if before_payload is not None and h is not None and n > SPOOL_BYTES:
                before_payload(h)
        return n

    if path == "-":
        return _read_stream(sys.stdin.buffer, declared, PREFIX_MAX, FormatError)
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise Failure(f"{path} is a folder, not a .msw file") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and st.st_size > SPOOL_BYTES:
            head = _read_upto(f, PREFIX_MAX)
            total = declared(head)
            if total is not None and st.st_size > total:
                raise FormatError("unexpected bytes after the end of the file")
            keep, f = f, None
            return FileBytes(keep)  # read on demand; closed when dropped
        return _read_stream(f, declared, PREFIX_MAX, FormatError)
    except IsADirectoryError:
        raise Failure(f"{path} is a folder, not a .msw file") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror}") from None
    finally:
        if f is not None:
            f.close()


def _read_stream(f, declared_length, prefix_max: int, FormatError, spool: int | None = None):
    """Read a .msw file from a stream up to its declared end (see ``_read_msw``): bytes of a
    short file, a bytearray read once, or over ``spool`` bytes a ``format.FileBytes`` of an
    unlinked temporary file."""
    import tempfile

    from .bitstream.format import FileBytes

    spool = SPOOL_BYTES if spool is None else spool
    data = b""
    for step in (8, 21, prefix_max):  # magic, then the name's length, then the payload's
        data += _read_upto(f, step - len(data))
        total = declared_length(data)
        if total is not None or len(data) < step:
            break
    if total is None:  # shorter than a header: read() reports it
        return data
    if total > spool:  # never held: into a temporary file without a name (nothing left behind)
        tmp = tempfile.TemporaryFile(prefix=".maxswitch-")
        tmp.write(data)
        got, buf = len(data), bytearray(1 << 20)
        view = memoryview(buf)
        while got < total:
            n = f.readinto(view[: min(len(buf), total - got)])
            if not n:
                break
            tmp.write(view[:n])
            got += n
        tmp.flush()
        if got == total and f.read(1):
            tmp.close()
            raise FormatError("unexpected bytes after the end of the file")
        return FileBytes(tmp)
    out = bytearray(total)  # the one copy of the file: no chunks to join
    out[: len(data)] = data
    view, got = memoryview(out), len(data)
    while got < total:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    del view
    if got < total:
        return bytes(out[:got])  # truncated: read() says so
    if f.read(1):
        raise FormatError("unexpected bytes after the end of the file")
    return out


def _write_output(path: str, data, force: bool, input_path: str | None = None) -> None:
    """Write bytes, or an iterable of byte strings (a PNG written band by band), to a path or stdout."""
    from .atomic import OutputExists, UnsafeOutput, write_atomic

    if path == "-":
        from .atomic import write_all

        if sys.stdout.isatty():
            raise Failure("refusing to write binary data to a terminal; redirect stdout or give an output file")
        sys.stdout.flush()
        try:
            for piece in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                write_all(sys.stdout.fileno(), piece)  # every byte or an error: no silent short write
        except BrokenPipeError:
            raise
        except OSError as e:
            raise Failure(f"cannot write to stdout: {e.strerror or e}") from None
        return
    if input_path and input_path != "-" and os.path.exists(path):
        try:
            if os.path.samefile(input_path, path):
                raise Failure(f"output {path} is the input file; choose another output")
        except OSError:
            pass
    if os.path.isdir(path):
        raise Failure(f"output {path} is a folder")
    try:
        write_atomic(path, data, overwrite=force)
    except (OutputExists, UnsafeOutput) as e:
        raise Failure(str(e)) from None
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror or e}") from None


_STDERR = threading.RLock()  # messages and the muting of fd 2 (``_mute_fd2``) take turns
_BAR = None  # the progress bar on stderr (progress.WorkBar) while one is drawn: messages go above it


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        with _STDERR:
            if _BAR is None or not _BAR.write(msg):
                click.echo(msg, err=True)


@contextlib.contextmanager
def _progress(total: int, desc: str, unit: str, quiet: bool):
    """A bar on stderr for work that lasts (shown after a second, on a terminal, without --quiet):
    yields it (a ``progress.WorkBar``), or None where none is drawn (or another one already is)."""
    global _BAR
    if quiet or _BAR is not None or not sys.stderr.isatty():
        yield None
        return
    from .progress import WorkBar

    bar = WorkBar(total, desc, unit)
    _BAR = bar
    try:
        yield bar
    finally:
        _BAR = None
        bar.close()


class _Advance:
    """A ``progress(done, total)`` callback (``codec.encode``'s) that draws a ``_progress`` bar,
    made at the first call, when the total is known; safe from the codec's threads."""

    def __init__(self, stack: contextlib.ExitStack, desc: str, unit: str, quiet: bool):
        self.stack, self.desc, self.unit, self.quiet = stack, desc, unit, quiet
        self.bar, self.n, self.lock = None, 0, threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self.lock:
            if self.bar is None:
                self.bar = self.stack.enter_context(_progress(total, self.desc, self.unit, self.quiet)) or False
            if self.bar and done > self.n:
                self.bar.update(done - self.n)
                self.n = done


def _codec_errors():
    """The exception types that mean bad data or a model problem (exit 1, one line)."""
    from .errors import MaxswitchError

    return (MaxswitchError,)


def _codec_message(e: Exception) -> str:
    """A library error's message with the hint that names the CLI's flags, if one applies."""
    from .networks.zoo import UnknownModelError

    if isinstance(e, UnknownModelError):
        return (
            f"{e} ('maxswitch models' lists the shipped models; encode -q 1..{len(LADDER)} picks a rung of "
            "the ladder without naming one)"
        )
    return f"{e} (see --max-pixels)" if "over the limit of" in str(e) else str(e)


_common_threads = click.option(
    "-t",
    "--threads",
    type=click.IntRange(1, 256),
    default=None,
    help="CPU threads (default: every CPU this process may use).",
)

_common_device = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where the network trains: auto (CUDA when available), cpu, cuda or cuda:N. "
    "Switches are always computed on the CPU, where they are exact.",
)


def _options(*decorators):
    """Several click options as one decorator (shared by the training commands)."""

    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def _training_options(minutes_default: float, val_help: str):
    """Data selection and budget options of ``train`` and ``train-context`` (one definition).

    Their parameter names are the keywords of ``train.decoder_setup`` and ``train.context_setup``,
    which check them (``_training_errors`` turns a bad one into a usage error on its option).
    """
    return _options(
        click.option("--split", default=None, help="Named split of DATA_DIR (holdout-train, lfw-train, ...)."),
        click.option("--val", "val_dir", default=None, help=val_help),
        click.option("--val-split", default=None, help="Named split of the validation folder."),
        click.option(
            "--minutes",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help=f"Time budget in minutes (default {minutes_default:g} unless --steps).",
        ),
        click.option("--steps", type=click.IntRange(1), default=None, help="Step budget (repeatable with --seed)."),
        click.option("--batch", type=click.IntRange(1), default=16, show_default=True, help="Global batch (crops)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--workers",
            type=click.IntRange(0, 64),
            default=None,
            help="Data worker processes per training process, decoding and encoding crops "
            "(default: a quarter of the CPUs, 1 to 8; 0: in the training process).",
        ),
        _common_device,
    )


def _check_tile(ctx, param, value):
    if value is not None and value % 8:
        raise click.BadParameter(f"must be a multiple of 8, got {value}")
    return value


_common_tile = click.option(
    "--tile",
    type=click.IntRange(0, 1 << 16),
    default=None,
    callback=_check_tile,
    help="Tile side in pixels (multiple of 8; 0 = never tile; default: 512 for images over 0.59 MP).",
)
_common_max_pixels = click.option(
    "--max-pixels", type=click.IntRange(1), default=None, help="Refuse images with more pixels (default 256,000,000)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="maxswitch")
def cli():
    """maxswitch: an image codec that stores only a CNN's max-pool switches.

    Use - for stdin or stdout: cat a.png | maxswitch encode - - | maxswitch decode - - > b.png
    """


# ----------------------------------------------------------------------------- encode / decode

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def _plan_outputs(paths, output, to_stdout, output_dir, default_output, what) -> list[tuple[str, str]]:
    """(input, output) pairs from the command line's files and output options.

    IN OUT; IN (OUT from ``default_output``); IN -o OUT; IN -c; --output-dir DIR IN...
    """
    if output_dir is not None:
        if output or to_stdout:
            raise click.UsageError("--output-dir takes no -o or -c")
        if os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise click.UsageError(f"--output-dir {output_dir} is not a folder")
        if "-" in paths:
            raise click.UsageError("--output-dir reads files, not stdin (-)")
        pairs = [(p, os.path.join(output_dir, os.path.basename(default_output(p)))) for p in paths]
        seen: dict[str, str] = {}
        for i, o in pairs:
            if o in seen:
                raise click.UsageError(f"{seen[o]} and {i} would both be written to {o}")
            seen[o] = i
        return pairs
    if output or to_stdout:
        if output and to_stdout:
            raise click.UsageError("give -o or -c, not both")
        if len(paths) != 1:
            raise click.UsageError(f"-o and -c take one {what}; for several use --output-dir")
        return [(paths[0], "-" if to_stdout else output)]
    if len(paths) == 1:
        return [(paths[0], default_output(paths[0]))]
    if len(paths) == 2:
        return [(paths[0], paths[1])]
    raise click.UsageError(f"{len(paths)} files given: IN [OUT], or --output-dir DIR IN...")


def _make_output_dir(output_dir: str | None) -> None:
    """Create ``--output-dir`` (and its parents) when it does not exist yet, once every check
    that needs no work has passed."""
    if output_dir is None:
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise Failure(f"cannot create folder {output_dir}: {e.strerror or e}") from None


def _check_output(path: str, force: bool, input_path: str | None, exists=None) -> None:
    """Refuse an output before any work is done: a terminal, the input itself, a missing
    folder, a folder, or an existing file without -f (``exists(path)``, if given, says so
    in its own words)."""
    from .atomic import OutputExists, check_target

    if path == "-":
        if sys.stdout.isatty():
            raise Failure("refusing to write binary data to a terminal; redirect stdout or give an output file")
        return
    if input_path and input_path != "-" and os.path.exists(path):
        try:
            if os.path.samefile(input_path, path):
                raise Failure(f"output {path} is the input file; choose another output")
        except OSError:
            pass
    try:
        check_target(path, force)
    except OutputExists as e:
        raise Failure(exists(path) if exists else str(e)) from None
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror}" if e.strerror else str(e)) from None


class _Batch:
    """Runs one job per (input, output); one line per failed file; exit 1 at the end if any failed."""

    def __init__(self, pairs, verbose: bool, jobs: int = 1, quiet: bool = False):
        import threading

        self.pairs, self.verbose, self.failed, self.jobs = pairs, verbose, 0, max(1, jobs)
        self.quiet = quiet
        self._lock = threading.Lock()
        self._bar = None

    def _one(self, job, inp, out) -> None:
        import time

        t0 = time.perf_counter()
        try:
            job(inp, out)
        except (Failure, *_codec_errors()) as e:
            if len(self.pairs) == 1:
                if isinstance(e, Failure):
                    raise
                # bad data: the one line names the file it came from (stdin: "stdin")
                raise Failure(f"{'stdin' if inp == '-' else _oneline(inp)}: {_codec_message(e)}") from None
            msg = e.format_message() if isinstance(e, click.ClickException) else _codec_message(e)
            with self._lock, _STDERR:
                click.echo(f"maxswitch: error: {_oneline(inp)}: {msg}", err=True)
                self.failed += 1
            return
        if self.verbose:
            _say(False, f"{_oneline(inp)}: {1000 * (time.perf_counter() - t0):.0f} ms in all")

    def _done(self, job, inp, out) -> None:
        try:
            self._one(job, inp, out)
        finally:
            if self._bar is not None:
                self._bar.update(1)

    def run(self, job) -> None:
        with _progress(len(self.pairs), "files", "file", self.quiet or len(self.pairs) == 1) as bar:
            self._bar = bar
            self._run(job)
        if self.failed:
            raise click.exceptions.Exit(EXIT_FAIL)

    def _run(self, job) -> None:
        if self.jobs == 1 or len(self.pairs) == 1:
            for inp, out in self.pairs:
                self._done(job, inp, out)
        else:
            # files on threads, one thread each: the networks, numpy and the coders release the
            # GIL, and the model is loaded once and shared
            from concurrent.futures import ThreadPoolExecutor

            from . import threads

            with threads.limited(1), ThreadPoolExecutor(self.jobs) as ex:
                for f in [ex.submit(self._done, job, inp, out) for inp, out in self.pairs]:
                    f.result()


def _oneline(s: str) -> str:
    """A file name fit for a one-line message (control characters escaped)."""
    return s.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 for c in s) else s


def _encode_default_output(path: str) -> str:
    if path == "-":
        return "-"
    root, ext = os.path.splitext(path)
    return (root if ext.lower() in _IMAGE_EXTS else path) + ".msw"


@cli.command()
@click.argument("paths", metavar="IN [OUT]", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output file (instead of a second argument).")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to stdout.")
@click.option("--output-dir", default=None, help="Encode every IN into this folder (made if missing) as NAME.msw.")
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="Files coded at once (batches)."
)
@click.option("-m", "--model", default=None, help=f"Model name or asset path (default {DEFAULT_MODEL}).")
@click.option(
    "-q",
    "--quality",
    type=click.IntRange(1, len(LADDER)),
    default=None,
    help=f"A rung of the rate-distortion ladder: 1 (fewest bits) .. {len(LADDER)} (best picture): "
    + ", ".join(f"{i + 1} {n}" for i, n in enumerate(LADDER))
    + ".",
)
@click.option(
    "--target-bpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="BPP",
    help="Per image, the best -q rung whose file is at most BPP bits per pixel (rungs tried from -q 1 up "
    f"to the first over the size: at most {len(LADDER)} trial encodes).",
)
@click.option(
    "--target-psnr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="DB",
    help="Per image, the cheapest -q rung whose decoded image reaches DB dB PSNR (rungs tried from -q 1 up "
    f"to the first that does: at most {len(LADDER)} trial encodes, each decoded).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite outputs that exist.")
@click.option(
    "--coding",
    type=click.Choice(["auto", "context", "table", "zstd"]),
    default=DEFAULT_CODING,
    show_default=True,
    help="Payload coding: table (format v2, the model's context tables: fast), context (format v2, the "
    "model's MLP context model: smallest, slow), zstd (format v1), or auto: the model's fastest learned "
    "coding and zstd, keeping the smaller file.",
)
@click.option(
    "--level",
    type=click.IntRange(1, 22),
    default=None,
    help=f"zstd level for --coding zstd (default {ZSTD_LEVEL_DEFAULT}).",
)
@click.option(
    "--what",
    "what_choice",
    type=click.Choice(["auto", "model"]),
    default="auto",
    show_default=True,
    help="The what part of a what+where model's file: auto gives pictures that are mostly flat "
    "(screenshots, charts: 35% or more of their 8x8 blocks) 2x2 blocks and, where the model names one, "
    "its decoder for flat pictures; model keeps the model and its own what part.",
)
@_common_tile
@_common_threads
@_common_max_pixels
@click.option("-v", "--verbose", is_flag=True, help="Print timings of each step.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def encode(
    paths,
    output,
    to_stdout,
    output_dir,
    jobs,
    model,
    quality,
    target_bpp,
    target_psnr,
    force,
    coding,
    level,
    what_choice,
    tile,
    threads,
    max_pixels,
    verbose,
    quiet,
):
    """Encode images into .msw files that hold only switches.

    \b
    Examples:
      maxswitch encode photo.png                  # writes photo.msw
      maxswitch encode -q 1 photo.png small.msw   # the cheapest ladder rung
      maxswitch encode --target-psnr 27 photo.png # the cheapest rung reaching 27 dB
      maxswitch encode --output-dir out/ *.png    # many files, one process
      cat photo.png | maxswitch encode - - > photo.msw
    """
    import time

    from . import codec, image
    from .bitstream import switches
    from .networks.zoo import load_model, model_for_quality

    if model is not None and not model.strip():
        raise click.BadParameter("is empty", param_hint="-m")
    chosen = [flag for flag, v in (("-m", model), ("-q", quality), ("--target-bpp", target_bpp)) if v]
    chosen += ["--target-psnr"] if target_psnr else []
    if len(chosen) > 1:
        raise click.UsageError(f"give one of -m, -q, --target-bpp and --target-psnr, not {' and '.join(chosen)}")
    pairs = _plan_outputs(paths, output, to_stdout, output_dir, _encode_default_output, "image")
    for _, out in pairs:
        if os.path.splitext(out)[1].lower() in _IMAGE_EXTS:
            raise click.UsageError(f"output {out} has an image extension; .msw files are not images (use NAME.msw)")
    targeted = target_bpp is not None or target_psnr is not None
    key = model_for_quality(quality) if quality else model
    rungs = [load_model(n) for n in LADDER] if targeted else []
    kw = dict(
        max_pixels=max_pixels or image.DEFAULT_MAX_PIXELS,
        level=level or switches.ZSTD_LEVEL,
        tile=tile,
        threads=None if jobs > 1 else threads,  # with -j, one torch thread per file
        coding=coding,
        what=what_choice,
    )
    for m in rungs:
        if coding == "context" and m.context is None:
            raise Failure(f"model {m.name} has no context model; use --coding zstd")
        if coding == "table" and m.table is None:
            raise Failure(f"model {m.name} has no context tables; use --coding context or zstd")
    lock, loaded_model = threading.Lock(), []

    def model_now():
        """The model, loaded (with torch) on first use: a single picture is then read before torch
        and the model take their 0.28 GB, and its Pillow copy is gone by then (docs/SECURITY.md:
        encode's peak memory). Its problems are still found before any picture is read (below)."""
        with lock:
            if not loaded_model:
                m = load_model(key)
                if coding == "context" and m.context is None:
                    raise Failure(f"model {m.name} has no context model; use --coding zstd")
                if coding == "table" and m.table is None:
                    raise Failure(f"model {m.name} has no context tables; use --coding context or zstd")
                loaded_model.append(m)
            return loaded_model[0]

    if not targeted and (len(pairs) > 1 or not _model_known(key)):
        model_now()  # several pictures: load it once, first; an unknown model: its error now

    def job(inp, out):
        _check_output(out, force, inp)
        t0 = time.perf_counter()
        with _open_input(inp, "an image") as src:
            loaded = load_image(src, kw["max_pixels"])
        if loaded.dropped:
            notes = ["a .msw file keeps RGB or grey pixels only"]
            notes += ["transparent pixels decode opaque"] if "alpha" in loaded.dropped else []
            notes += ["colours decode as sRGB"] if "ICC profile" in loaded.dropped else []
            what = ", ".join(loaded.dropped[:-1]) + " and " * (len(loaded.dropped) > 1) + loaded.dropped[-1]
            _say(quiet, f"maxswitch: warning: {_oneline(inp)}: {what} not kept ({'; '.join(notes)})")
        if loaded.frames > 1:
            _say(quiet, f"maxswitch: warning: {_oneline(inp)} has {loaded.frames} frames; encoding frame 1 (the first)")
        t1 = time.perf_counter()
        if targeted:
            pick = codec.encode_for_target(loaded, bpp=target_bpp, psnr=target_psnr, ladder=rungs, **kw)
            msw = pick.data
            got = f"{pick.psnr:.2f} dB" if target_psnr is not None else f"{pick.bpp:.3f} bpp"
            rung = f"-q {pick.quality} ({got}; {pick.trials} trial encode{'s' * (pick.trials > 1)})"
            if not pick.reached:
                wanted = f"{target_psnr:g} dB" if target_psnr is not None else f"{target_bpp:g} bpp"
                which = "no rung reaches" if target_psnr is not None else "even -q 1 is over"
                _say(quiet, f"maxswitch: warning: {_oneline(inp)}: {which} {wanted}; wrote {rung}")
        else:
            with contextlib.ExitStack() as stack:
                advance = _Advance(stack, _oneline(os.path.basename(inp)), "tiles", quiet)
                msw = codec.encode(loaded, model_now(), progress=advance, release_pixels=True, **kw)
        del loaded
        t2 = time.perf_counter()
        _write_output(out, msw, force, input_path=inp)
        t3 = time.perf_counter()
        if verbose:
            _say(
                False,
                f"{_oneline(inp)}: read {1e3 * (t1 - t0):.0f} ms, encode {1e3 * (t2 - t1):.0f} ms, "
                f"write {1e3 * (t3 - t2):.0f} ms",
            )
        if not quiet:
            inf = codec.info(msw, max_pixels=None)  # our own output, already within the limit
            _say(
                quiet,
                f"{_oneline(inp)}: {inf['width']}x{inf['height']} -> {inf['file_bytes']} bytes, "
                f"{inf['bpp']:.4f} bpp, {inf['bits_per_switch']:.3f} bits/switch, model {inf['model']}, "
                f"{inf['coding']}"
                + (f", what {inf['what'].split()[0]}" if "what" in inf else "")
                + (f", {rung}" if targeted else ""),
            )

    _make_output_dir(output_dir)
    _Batch(pairs, verbose, jobs, quiet).run(job)


def _default_output(input: str) -> str:
    """NAME.msw -> NAME.dec.png: never NAME.png, the usual name of the image NAME.msw was encoded from."""
    if input == "-":
        return "-"
    root, ext = os.path.splitext(input)
    return (root if ext.lower() == ".msw" else input) + ".dec.png"


def _decoded_exists(inp: str):
    """The message for an existing decode output: where it bears IN's own name with an image
    extension it may be the original image, so the message asks for another name, not -f."""

    def message(out: str) -> str:
        stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
        if inp != "-" and stem(out) == stem(inp) and os.path.splitext(out)[1].lower() in _IMAGE_EXTS:
            return (
                f"{out} already exists and may be the image {os.path.basename(inp)} was encoded from; "
                f"give another output name (the default is {os.path.basename(_default_output(inp))})"
            )
        return f"{out} already exists (use -f to overwrite)"

    return message


@cli.command()
@click.argument("paths", metavar="IN [OUT]", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output image (its extension picks the format).")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write PNG to stdout.")
@click.option("--output-dir", default=None, help="Decode every IN into this folder (made if missing) as NAME.dec.png.")
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="Files decoded at once (batches)."
)
@click.option("-m", "--model", default=None, help="Decode with this model (it must share the file's encoder).")
@click.option("-f", "--force", is_flag=True, help="Overwrite outputs that exist.")
@click.option("--compare", "original", default=None, help="Print PSNR and SSIM against this original image.")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where the decoder network runs: cpu (ONNX Runtime or torch), or cuda / cuda:N (torch on a GPU).",
)
@_common_tile
@_common_threads
@_common_max_pixels
@click.option("-v", "--verbose", is_flag=True, help="Print timings of each step.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def decode(
    paths,
    output,
    to_stdout,
    output_dir,
    jobs,
    model,
    force,
    original,
    device,
    tile,
    threads,
    max_pixels,
    verbose,
    quiet,
):
    """Decode .msw files into images (OUT defaults to IN with .dec.png; its extension picks the format).

    \b
    Examples:
      maxswitch decode photo.msw                   # writes photo.dec.png
      maxswitch decode photo.msw -c | display -    # to stdout
      maxswitch decode --output-dir out/ *.msw
      maxswitch decode photo.msw x.png --compare photo.png
    """
    import time

    from . import codec, image
    from .networks.zoo import load_model
    from .progress import counted

    if model is not None and not model.strip():
        raise click.BadParameter("is empty", param_hint="-m")
    pairs = _plan_outputs(paths, output, to_stdout, output_dir, _default_output, ".msw file")
    if original and len(pairs) != 1:
        raise click.UsageError("--compare takes one file")
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", device):
        raise click.BadParameter(f"{device!r}: use cpu, cuda or cuda:N", param_hint="--device")
    for _, out in pairs:
        image.format_for(out)  # an unknown extension is refused before any work
    m = load_model(model) if model else None
    ref = None
    if original:
        with _open_input(original, "an image") as src:
            ref = load_image(src, max_pixels or image.DEFAULT_MAX_PIXELS)

    def job(inp, out):
        with contextlib.ExitStack() as stack:
            decode_one(inp, out, stack)

    def decode_one(inp, out, stack):
        _check_output(out, force, inp, exists=_decoded_exists(inp))
        t0 = time.perf_counter()
        limit = max_pixels or image.DEFAULT_MAX_PIXELS
        data = _read_msw(inp, limit, before_payload=lambda h: codec.resolve_model(h, m))
        t1 = time.perf_counter()
        h, bands = codec.decode_bands(
            data, m, max_pixels=limit, tile=tile, threads=None if jobs > 1 else threads, device=device
        )
        del data  # checked and its switches decoded: the network runs band by band below
        bar = stack.enter_context(_progress(h.height, _oneline(os.path.basename(inp)), "rows", quiet))
        if bar is not None:
            bands = counted(bands, bar)
        t2 = time.perf_counter()
        fmt_out = image.format_for(out)
        image.check_fits(fmt_out, h.width, h.height)  # before the network runs
        if fmt_out == "PNG" and ref is None and h.width * h.height > image.STREAM_PNG_PIXELS:
            # decoded and written band by band: the image is never held whole (docs/SECURITY.md)
            rgb, payload = None, image.png_chunks(bands, h.kind, size=(h.height, h.width))
        elif fmt_out == "TIFF" and ref is None and h.width * h.height > image.STREAM_PNG_PIXELS:
            rgb, payload = None, image.tiff_chunks(bands, h.kind, (h.height, h.width))  # likewise
        elif ref is None:  # into Pillow band by band (no whole numpy copy beside Pillow's), then
            # straight into the output file rather than a buffer of the whole encoded image
            im, rgb = image.bands_to_pil(bands, h.kind, (h.height, h.width)), None
            payload = image.save(im, fmt_out) if out == "-" else (lambda f: image.save(im, fmt_out, f))
        else:
            rgb = codec.join_bands(bands, h.height, h.width)
            payload = image.save(image.to_pil(rgb, h.kind), fmt_out)
            # measured before the output is written: a comparison that fails leaves no file
            measured = _compare_line(ref, rgb, h.kind, inp)
        _write_output(out, payload, force, input_path=inp)
        t3 = time.perf_counter()
        timing = f"read {1e3 * (t1 - t0):.0f} ms, switches {1e3 * (t2 - t1):.0f} ms, network + write {1e3 * (t3 - t2):.0f} ms"
        if verbose:
            _say(False, f"{_oneline(inp)}: {timing}")
        if ref is not None:
            _say(False, measured)
        _say(quiet or out == "-", f"{_oneline(inp)}: decoded {h.width}x{h.height} to {_oneline(out)}")

    _make_output_dir(output_dir)
    _Batch(pairs, verbose, jobs, quiet).run(job)


_MEASURE_FORMAT = {
    "psnr": ".2f",
    "rmse": ".4f",
    "ssim": ".4f",
    "ms_ssim": ".4f",
    "block_psnr": ".2f",
}  # as decode --compare


def _distortion(ref, rgb, kind: int) -> dict:
    """``metrics.distortion`` of a decoded uint8 (H, W, 3) against the loaded original ``ref``,
    both as ``decode`` writes colour kind ``kind`` (greyscale as greyscale)."""
    from . import image
    from .evaluation import metrics

    a, b = image.as_written(ref.rgb, kind), image.as_written(rgb, kind)
    if a.shape[:2] != b.shape[:2]:
        raise Failure(f"cannot compare: {a.shape[1]}x{a.shape[0]} against {b.shape[1]}x{b.shape[0]}")
    return metrics.distortion(a, b)


def _compare_line(ref, rgb, kind: int, name: str) -> str:
    """``decode --compare``'s line; SSIM and MS-SSIM only where the image is large enough for them."""
    d = _distortion(ref, rgb, kind)
    parts = [f"PSNR {d['psnr']:{_MEASURE_FORMAT['psnr']}} dB"]
    parts += [
        f"{label} {d[k]:{_MEASURE_FORMAT[k]}}"
        for k, label in (("ssim", "SSIM"), ("ms_ssim", "MS-SSIM"))
        if d[k] is not None
    ]
    return f"{_oneline(name)}: {', '.join(parts)}"


@cli.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_common_max_pixels
def compare(a, b, as_json, max_pixels):
    """Print PSNR, SSIM and MS-SSIM of image B against image A (either may be a .msw file).

    Greyscale images (and .msw files of them, as decode writes them) are measured as greyscale.
    """
    import numpy as np

    from . import codec, image
    from .evaluation import metrics

    def load(path):
        """uint8 (H, W, 3) and colour kind: a .msw file as decode writes it, an image as loaded."""
        limit = max_pixels or image.DEFAULT_MAX_PIXELS
        if _starts_with_msw(path):
            rgb, h = codec.decode_array(_read_msw(path, limit), max_pixels=limit)
            return rgb, h.kind
        with _open_input(path, "an image") as src:
            loaded = load_image(src, limit)
            return loaded.rgb, loaded.kind

    x, y = (image.as_written(*load(p)) for p in (a, b))  # greyscale as greyscale (H, W)
    if x.shape[:2] != y.shape[:2]:
        raise Failure(f"images differ in size: {x.shape[1]}x{x.shape[0]} and {y.shape[1]}x{y.shape[0]}")
    if x.ndim != y.ndim:  # greyscale against colour: the grey one as RGB
        x, y = (np.repeat(v[..., None], 3, axis=2) if v.ndim == 2 else v for v in (x, y))
    d = metrics.distortion(x, y)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for k, v in d.items():  # as decode --compare prints them; --json gives every digit
        click.echo(f"{k:10} {'-' if v is None else format(v, _MEASURE_FORMAT.get(k, 'g'))}")


@cli.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_common_max_pixels
def info(file, as_json, max_pixels):
    """Describe a .msw file: header, model, sizes, bpp, bits per switch."""
    from . import codec, image

    limit = max_pixels or image.DEFAULT_MAX_PIXELS
    d = codec.info(_read_msw(file, limit), max_pixels=limit)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        click.echo(f"{k:18} {v}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def models(as_json):
    """List the shipped models and their measured figures."""
    from .networks.zoo import DEFAULT_MODEL, manifest

    man = manifest()
    if as_json:
        click.echo(json.dumps(man, indent=2))
        return
    rows = man.get("models", [])
    if not rows:
        click.echo("no shipped models found", err=True)
        return
    click.echo(
        f"{'name':26} {'ver':>3} {'-q':>2} {'channels':>10} {'family':16} {'coding':7} {'raw bpp':>7} {'bpp':>6} "
        f"{'PSNR':>6} {'RMSE':>7}  measured on"
    )
    for m in rows:
        f = m.get("figures", {})
        cell = lambda k, fmt: format(f[k], fmt) if f.get(k) is not None else "-"  # noqa: E731
        tag = "  (default)" if m["name"] == DEFAULT_MODEL else ""
        rung = str(LADDER.index(m["name"]) + 1) if m["name"] in LADDER else "-"
        coding = "table" if m.get("table_digest") else "context" if m.get("context_digest") else "zstd"
        click.echo(
            f"{m['name']:26} {m['version']:>3} {rung:>2} {','.join(map(str, m['channels'])):>10} {m['family']:16} "
            f"{coding:7} {2 * m['switches_per_pixel']:7.2f} {cell('bpp', '.3f'):>6} {cell('psnr', '.2f'):>6} "
            f"{cell('rmse', '.4f'):>7}  {f.get('dataset', 'not measured')}{tag}"
        )


def _default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_output_path(path: str, option: str, folder_ok: bool = False) -> None:
    """Fail before a long run, not after it, if an output cannot be written."""
    if folder_ok and (path.endswith(("/", os.sep)) or os.path.isdir(path)):
        if not os.path.isdir(path):
            raise click.BadParameter(f"folder {path} does not exist", param_hint=option)
        return
    if os.path.isdir(path):
        raise click.BadParameter(f"{path} is a folder", param_hint=option)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise click.BadParameter(f"folder {parent} does not exist", param_hint=option)


@cli.command()
@click.argument("dataset_dir", metavar="DATASET_DIR")
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    help=f"Model name or asset path; repeat for several (default {DEFAULT_MODEL}).",
)
@click.option("--all-models", is_flag=True, help="Benchmark every shipped model.")
@click.option(
    "--ladder", is_flag=True, help="Benchmark every ladder: the -q rungs and the switch-only family, one curve each."
)
@click.option(
    "--coding",
    type=click.Choice(["default", "auto", "context", "table", "zstd", "both"]),
    default="default",
    show_default=True,
    help="Payload coding of each model (default: encode's default, auto); both: every model twice, as two "
    "RD curves (auto and zstd, the v1 reference).",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 256), default=None, help="Worker processes (default: one per CPU core)."
)
@click.option(
    "-t",
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="torch threads per worker (other values may change a few decoded pixels).",
)
@click.option(
    "--qualities",
    default=",".join(map(str, (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100))),
    show_default=True,
    help="JPEG and WebP quality sweep (1..100, comma-separated).",
)
@click.option("--no-baselines", is_flag=True, help="Measure the models only (no JPEG, WebP, PNG).")
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    help="Write results in CompressAI's schema (a folder: one file per curve; -: stdout, the report to stderr).",
)
@click.option("--csv", "csv_path", metavar="FILE", help="Write one row per image and codec setting.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Draw the rate-distortion curves (needs matplotlib).")
@click.option(
    "--reference",
    multiple=True,
    metavar="FILE.json",
    help="A curve measured elsewhere (CompressAI's schema, as --json writes it) for BD-rates and the plot; "
    "repeatable. benchmarks/reference/ keeps maxswitch 0.1's ladder.",
)
@click.option("--markdown", is_flag=True, help="Print the tables in Markdown.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images in sorted order.")
@_common_max_pixels
@click.option("--quiet", is_flag=True, help="No progress bar (warnings still go to stderr).")
def bench(
    dataset_dir,
    models,
    all_models,
    ladder,
    coding,
    jobs,
    threads,
    qualities,
    no_baselines,
    json_path,
    csv_path,
    plot_path,
    reference,
    markdown,
    limit,
    max_pixels,
    quiet,
):
    """Measure rate, distortion and speed of models on DATASET_DIR's images beside JPEG, WebP and PNG.

    Every image under DATASET_DIR (recursively, sorted) goes through each model, through JPEG
    and WebP over a quality sweep, through PNG, and through JPEG and WebP at each model's bpp
    and PSNR (quality searched per image). The tables go to stdout, progress to stderr.
    """
    from .atomic import write_atomic
    from .evaluation import bench as benchlib
    from .evaluation import plot as plotlib
    from .evaluation import report
    from .networks.zoo import DEFAULT_MODEL, manifest

    if sum(map(bool, (models, all_models, ladder))) > 1:
        raise click.UsageError("give one of -m, --all-models and --ladder")
    if all_models:
        models = tuple(m["name"] for m in manifest().get("models", []))
        if not models:
            raise Failure("no shipped models found")
    if ladder:
        from .config import LADDERS

        models = tuple(m for rungs in LADDERS.values() for m in rungs)
    models = models or (DEFAULT_MODEL,)
    if coding != "default":
        from .networks.zoo import shipped

        def has_coding(key: str, c: str) -> bool:  # shipped models say so in the manifest; paths are tried
            entry = shipped(key)
            return c not in ("context", "table") or entry is None or bool(entry.get(f"{c}_digest"))

        wanted = ("auto", "zstd") if coding == "both" else (coding,)
        models = tuple(f"{m}@{c}" for m in models for c in wanted if has_coding(m, c))
    try:
        sweep = tuple(int(q) for q in qualities.split(",") if q.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, got {qualities!r}", param_hint="--qualities"
        ) from None
    if any(not 1 <= q <= 100 for q in sweep) or (not sweep and not no_baselines):
        raise click.BadParameter(f"qualities must lie in 1..100, got {qualities!r}", param_hint="--qualities")
    plot_fmt = None
    if plot_path:
        plot_fmt = os.path.splitext(plot_path)[1].lower().lstrip(".")
        if plot_fmt not in ("png", "svg", "pdf"):
            raise click.BadParameter("use a .png, .svg or .pdf file name", param_hint="--plot")
        _check_output_path(plot_path, "--plot")
    if json_path and json_path != "-":
        _check_output_path(json_path, "--json", folder_ok=True)
    if csv_path:
        _check_output_path(csv_path, "--csv")
    try:
        references = [benchlib.load_reference(p) for p in reference]
    except benchlib.BenchError as e:
        raise Failure(str(e)) from None
    progress = None if quiet else benchlib.Progress()

    def warn(msg):
        if progress:
            progress.clear()
        click.echo(f"maxswitch: warning: {msg}", err=True)

    try:
        if plot_path:
            plotlib.check_matplotlib()
        result = benchlib.run(
            dataset_dir,
            models or (DEFAULT_MODEL,),
            qualities=sweep,
            baselines=not no_baselines,
            jobs=jobs or _default_jobs(),
            threads=threads,
            limit=limit,
            max_pixels=max_pixels,
            progress=progress,
            warn=warn,
        )
        result.references = references
        outputs = {}
        if json_path:
            outputs.update(report.json_outputs(result, json_path))
        if csv_path:
            outputs[csv_path] = report.csv_bytes(result)
        if plot_path:
            outputs[plot_path] = plotlib.plot_bytes(result, plot_fmt)
    except benchlib.BenchError as e:
        raise Failure(str(e)) from None
    # --json -: the JSON is the data on stdout, the readable report goes to stderr
    click.echo(report.format_report(result, markdown=markdown), nl=False, err=json_path == "-")
    for path, data in outputs.items():
        if path == "-":
            _write_output("-", data, True)
            continue
        try:
            write_atomic(path, data, overwrite=True)
        except OSError as e:
            raise Failure(f"cannot write {path}: {e.strerror or e}") from None
    if result.skipped:
        click.echo(f"maxswitch: warning: skipped {len(result.skipped)} unreadable image file(s)", err=True)


@cli.command()
@click.argument("data_dir", metavar="DATA_DIR")
@click.option("-o", "--output", required=True, help="Model asset to write (.safetensors).")
@click.option("--name", required=True, help="Model name recorded in the asset and in every file it encodes.")
@click.option("--arch", default="16,16,16", show_default=True, help="Encoder channels per stage.")
@click.option("--decoder", type=click.Choice(DECODER_KINDS), default="direct", show_default=True)
@click.option("--widths", default="64,48,32", show_default=True, help="Decoder widths (coarse to fine).")
@click.option(
    "--pool",
    type=click.Choice(["max", "avg"]),
    default="max",
    show_default=True,
    help="avg: the no-switch control experiment.",
)
@click.option("--encoder-seed", type=int, default=0, show_default=True)
@click.option("--encoder-from", default=None, help="Reuse the encoder of this model (name or path).")
@click.option(
    "--what",
    default=None,
    metavar="F,SY,SC",
    help="Train a decoder that also reads a what part: F x F block means, luma and chroma steps (e.g. 8,4,8).",
)
@click.option("--init-from", default=None, help="Start from this model's decoder (same channels and widths).")
@_training_options(TRAIN_MINUTES, "Validation folder (its first 24 images, held in memory).")
@click.option("--resize", type=click.IntRange(8), default=None, help="Resize training images to this square size.")
@click.option("--patch", type=click.IntRange(8), default=96, show_default=True, help="Crop side (multiple of 8).")
@click.option(
    "--model-version",
    "model_version",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Version number recorded in the asset.",
)
@click.option("--checkpoint", default=None, help="Checkpoint file (default OUTPUT.ckpt).")
@click.option(
    "--checkpoint-every",
    type=click.FloatRange(min=0),
    default=180.0,
    show_default=True,
    metavar="SECONDS",
    help="Write the checkpoint this often (0: after every step).",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint (it must exist).")
@click.option(
    "--keep-checkpoint",
    is_flag=True,
    help="Keep the checkpoint once the model is written (default: removed), to continue later with a "
    "larger budget and --resume.",
)
@click.option("-f", "--force", is_flag=True, help="Replace OUTPUT and its checkpoint if they exist.")
@click.option(
    "-t", "--threads", type=click.IntRange(1, 256), default=2, show_default=True, help="CPU threads for training."
)
@click.option("--amp", is_flag=True, help="Mixed precision (bf16 autocast) for the decoder; CUDA only.")
def train(
    data_dir, output, name, val_dir, split, val_split, resize, model_version, resume, keep_checkpoint, force, **settings
):
    """Train a decoder on the switches of DATA_DIR's images and write a model asset.

    DATA_DIR: a folder (searched recursively) or a text file listing image paths, one per
    line. Crops are decoded and encoded on the fly by worker processes, so memory does not
    grow with the dataset. Many processes: torchrun --nproc_per_node=N -m maxswitch train ...
    (--batch is the global batch); docs/TRAINING.md, "Training on a cluster".

    Progress goes to stderr every few seconds on a terminal and every minute in a log; the
    warm-up is the first 100 steps or 5% of the budget, whichever ends sooner; a closing line
    gives the steps, the training loss and the validation PSNR (with --val).
    """
    from .training.train import decoder_setup
    from .training.train import train as run_training

    with _training_errors("use -f to replace it, or --resume to continue"):
        setup = decoder_setup(name, output, resume=resume, replace=force, **settings)
        run_training(
            data_dir,
            output,
            name,
            setup.config,
            setup.recipe,
            val_dir=val_dir,
            encoder=setup.encoder,
            split=split,
            val_split=val_split,
            resize=resize,
            checkpoint=setup.checkpoint,
            resume=resume,
            version=model_version,
            init=setup.init,
            keep_checkpoint=keep_checkpoint,
        )


def _new_model_options(what: str):
    """Output, name and version of a refitted model (``train-context``, ``fit-tables``)."""
    return _options(
        click.option(
            "-o",
            "--output",
            required=True,
            help=f"Model asset to write: MODEL with {what}; a new file, never MODEL itself.",
        ),
        click.option(
            "-f",
            "--force",
            is_flag=True,
            help="Overwrite OUTPUT if it exists (never a model with its own context model or tables).",
        ),
        click.option("--name", default=None, help="Name recorded in OUTPUT (default: MODEL's name)."),
        click.option(
            "--model-version",
            "model_version",
            type=click.IntRange(1),
            default=None,
            help="Version recorded in OUTPUT (default: MODEL's version + 1: a refitted model is a new asset).",
        ),
    )


def _check_new_model(model: str, output: str, name: str | None, force: bool) -> None:
    """A refit's checks before any work: a valid name, and an output that replaces no model."""
    from .networks.zoo import valid_name
    from .training.train import check_new_asset

    if name is not None and not valid_name(name):
        raise click.BadParameter(f"{name!r}: use lower-case letters, digits, '.', '_' and '-'", param_hint="--name")
    with _training_errors("use -f to overwrite"):
        check_new_asset(model, output, replace=force)


@cli.command("train-context")
@click.argument("model", metavar="MODEL")
@click.argument("data_dir", metavar="DATA_DIR")
@_new_model_options("a new context model")
@_training_options(CONTEXT_MINUTES, "Folder whose images (the first 24) measure the trained coder.")
@click.option(
    "--patch", type=click.IntRange(16), default=64, show_default=True, help="Crop side in pixels (multiple of 8)."
)
@click.option(
    "--symbols", type=click.IntRange(1), default=4096, show_default=True, help="Symbols scored per stage and step."
)
@click.option("--hidden", default="32,32", show_default=True, help="Hidden widths of the context MLP.")
@_common_threads
def train_context_cmd(
    model, data_dir, output, force, name, split, val_dir, val_split, symbols, model_version, **settings
):
    """Fit the learned context model (format v2's entropy model) to MODEL's switches on DATA_DIR
    and write a new model: MODEL with the new context model, as the next version.

    MODEL is never replaced: the files it coded name its context model and decode only with it.
    DATA_DIR: a folder (searched recursively) or a text file listing image paths. Crops are
    streamed; torchrun runs it on many processes as it runs train.

    \b
    Example:
      maxswitch train-context m.safetensors DATA_DIR -o m-v2.safetensors
    """
    from .training.context_train import train_context_asset
    from .training.train import context_setup

    _check_new_model(model, output, name, force)
    with _training_errors("use -f to overwrite"):
        recipe, hidden = context_setup(**settings)
        train_context_asset(
            model,
            data_dir,
            output,
            recipe,
            hidden=hidden,
            symbols=symbols,
            split=split,
            val_dir=val_dir,
            val_split=val_split,
            version=model_version,
            name=name,
            log=lambda msg: click.echo(msg, err=True),
        )


@cli.command("fit-tables")
@click.argument("model", metavar="MODEL")
@click.argument("data_dir", metavar="DATA_DIR")
@_new_model_options("new context tables")
@click.option("--split", default=None, help="Named split of DATA_DIR (holdout-train, lfw-train, ...).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Processes fitting tables at once (default: one per CPU core).",
)
@click.option(
    "--max-contexts",
    type=click.IntRange(1),
    default=16384,
    show_default=True,
    help="Rows per table at most (the asset's size).",
)
@click.option(
    "--samples-per-context",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Training samples per table row at least.",
)
@click.option(
    "--alpha", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True, help="Back-off smoothing."
)
@click.option("--quiet", is_flag=True, help="No progress (warnings and the closing line still go to stderr).")
def fit_tables_cmd(
    model, data_dir, output, force, name, model_version, split, workers, max_contexts, samples_per_context, alpha, quiet
):
    """Fit the context tables of payload coding 3 (the fast learned coding: --coding table) to
    MODEL's switches on DATA_DIR's images and write a new model: MODEL with the new tables.

    The tables are counted, not trained: every image is held in memory; the 300 BSDS500
    training images take minutes on 2 cores (docs/TRAINING.md). MODEL is never replaced.

    \b
    Example:
      maxswitch fit-tables m.safetensors ../shared/data/train-bsds500 -o m-tables.safetensors
    """
    from .progress import Progress
    from .training.tables_fit import TableRecipe, fit_tables_asset

    _check_new_model(model, output, name, force)
    recipe = TableRecipe(alpha=alpha, max_contexts=max_contexts, samples_per_context=samples_per_context)
    bars: dict = {}

    def progress(stage, done, total):
        bars.setdefault(stage, Progress(desc=f"fit-tables: {stage}"))(done, total, "")

    with _training_errors("use -f to overwrite"):
        fit_tables_asset(
            model,
            data_dir,
            output,
            recipe,
            split=split,
            name=name,
            version=model_version,
            workers=workers or _default_jobs(),
            log=lambda msg: click.echo(msg, err=True),
            progress=None if quiet else progress,
        )


@cli.command()
@click.argument("model", metavar="MODEL")
@click.argument("data_dir", metavar="DATA_DIR")
@click.option(
    "--weights", default=None, metavar="FILE", help="The network's weights: safetensors or a torch state dict."
)
@click.option("--random", type=int, default=None, metavar="SEED", help="Untrained weights drawn from this seed.")
@click.option(
    "--normalize",
    type=click.Choice(["unit", "imagenet", "signed", "raw"]),
    default="unit",
    show_default=True,
    help="The network's input: x/255, ImageNet mean and std, x/127.5-1 or 0..255.",
)
@click.option("--layers", default="all", show_default=True, help="Pooling layers to audit: indices, ranges or names.")
@click.option(
    "--inputs",
    type=click.Choice(["alone", "upto", "both"]),
    default="alone",
    show_default=True,
    help="What a layer's decoder reads: its switches alone, those of every layer up to it, or both decoders.",
)
@click.option(
    "--controls",
    type=click.Choice(["deepest", "each", "none"]),
    default="deepest",
    show_default=True,
    help="Train the two controls (no switches, avg-pool positions) for the deepest audited layer, each, or none.",
)
@_training_options(AUDIT_MINUTES, "Held-out images (default: DATA_DIR's holdout-val split).")
@click.option("--val-images", type=click.IntRange(1), default=24, show_default=True, help="Held-out images measured.")
@click.option("--resize", type=click.IntRange(8), default=None, help="Resize every image to this square size.")
@click.option("--patch", type=click.IntRange(8), default=96, show_default=True, help="Crop side (multiple of 8).")
@click.option("--width", type=click.IntRange(1, 256), default=16, show_default=True, help="Decoder base width.")
@click.option("--eval-every", type=click.IntRange(1), default=None, help="Measure PSNR every N steps as well.")
@click.option("--checkpoint", default=None, help="Checkpoint file of the decoders (default: none).")
@click.option(
    "--checkpoint-every",
    type=click.FloatRange(min=0),
    default=180.0,
    show_default=True,
    metavar="SECONDS",
    help="Write the checkpoint this often.",
)
@click.option("--resume", is_flag=True, help="Continue from --checkpoint.")
@click.option(
    "-t", "--threads", type=click.IntRange(1, 256), default=2, show_default=True, help="CPU threads for training."
)
@click.option("--amp", is_flag=True, help="Mixed precision (bf16 autocast) for the decoders; CUDA only.")
@click.option("--json", "json_path", metavar="FILE", help="Write the report as JSON (-: stdout, the table to stderr).")
@click.option("--markdown", is_flag=True, help="Print the table in Markdown.")
@click.option("--grid", "grid_path", metavar="FILE.png", help="Originals beside each decoder's reconstruction.")
@click.option("--grid-images", type=click.IntRange(1), default=4, show_default=True, help="Images in the grid.")
def audit(model, data_dir, json_path, markdown, grid_path, **settings):
    """Measure how much of its input image a network's max-pool switches give away.

    MODEL is a factory, package.module:function or path/to/file.py:function, returning a torch
    network (weights: --weights FILE, --random SEED, or as the factory builds them), or a
    maxswitch model by name or path. Every 2-D max pooling it runs is found (nn.MaxPool2d and
    F.max_pool2d calls, any window), and each window's switch is recorded as the position of
    its maximum inside the window. For each audited layer a decoder learns to rebuild the image
    from those switches on DATA_DIR's crops; the table gives PSNR, SSIM and MS-SSIM on held-out
    images, the switches' raw and coded bits per pixel, and two controls: no switches, and an
    average pool's positions. The network runs only as far as the deepest audited layer.
    Nothing is downloaded. The decoders train in train's loop: checkpoints, --resume, devices,
    and torchrun --nproc_per_node=N -m maxswitch audit ... (--batch is the global batch).
    What the figures bound: docs/AUDIT.md.

    \b
    Examples:
      maxswitch audit examples/vgg16_like.py:vgg16_like photos/ --random 0 --normalize imagenet
      maxswitch audit my_package.nets:build photos/ --weights w.safetensors --layers 1-3 --grid g.png
      maxswitch audit natural-16-16-16 photos/ --inputs both --steps 2000 --json report.json
    """
    from .audit.model import AuditError
    from .audit.report import format_table, grid_png, json_bytes
    from .audit.run import audit_setup, run_audit
    from .networks.pooling import PoolingError
    from .progress import Progress

    if json_path and json_path != "-":
        _check_output_path(json_path, "--json")
    if grid_path:
        if not grid_path.lower().endswith(".png"):
            raise click.BadParameter("use a .png file name", param_hint="--grid")
        _check_output_path(grid_path, "--grid")
    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    with _training_errors("use another --checkpoint, or --resume"):
        try:
            setup = audit_setup(model, data_dir, **settings)
            result = run_audit(setup, log=say, progress=lambda: Progress(desc="audit: held-out images"))
        except (AuditError, PoolingError) as e:
            raise Failure(str(e)) from None
    if result is None:  # a torchrun rank other than 0
        return
    outputs = {}
    if json_path:
        outputs[json_path] = json_bytes(result.report)
    if grid_path:
        outputs[grid_path] = grid_png(result.report, result.grid)
    click.echo(format_table(result.report, markdown=markdown), nl=False, err=json_path == "-")
    from .atomic import write_atomic

    for path, data in outputs.items():
        if path == "-":
            click.echo(data.decode(), nl=False)  # JSON: text
            continue
        try:
            write_atomic(path, data, overwrite=True)
        except OSError as e:
            raise Failure(f"cannot write {path}: {e.strerror or e}") from None


@contextlib.contextmanager
def _training_errors(exists_hint: str):
    """The training library's errors as the CLI reports them: a bad setting is a usage error on
    its option (exit 2; the setting ``encoder_from`` is ``--encoder-from``), an output that exists
    (with ``exists_hint``) and any other data problem a failure (exit 1)."""
    from .training.dataset import DataError
    from .training.train import OutputExistsError, SettingError

    try:
        yield
    except SettingError as e:
        raise click.BadParameter(str(e), param_hint="--" + e.setting.replace("_", "-")) from None
    except OutputExistsError as e:
        raise Failure(f"{e} ({exists_hint})") from None
    except DataError as e:
        raise Failure(str(e)) from None


@contextlib.contextmanager
def _mute_fd2():
    """Send file descriptor 2 to /dev/null meanwhile: libtiff prints warnings about damaged
    files there from C ("Using code not yet in table"), where Python cannot catch them. Used
    around image decoding only, which prints nothing of ours. Holds ``_STDERR`` so that no
    other thread of a batch (-j) writes a message into the muted descriptor."""
    with _STDERR:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def load_image(data: bytes, max_pixels: int):
    """``image.load`` as the CLI runs it: no warning, log line or C library print on stderr."""
    from . import image

    quiet_libraries()
    with _mute_fd2():
        return image.load(data, max_pixels)


def quiet_libraries() -> None:
    """Mute library loggers that would add lines to stderr (Pillow logs about damaged TIFFs
    through Python's last-resort handler); the one-line error says what matters."""
    import logging

    logging.getLogger("PIL").setLevel(logging.CRITICAL + 1)


_STDERR_FD = None  # a duplicate of the original fd 2, for the signal handler's line


def _install_signal_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP end the process at once: temporary files are removed, one
    line goes to stderr, and the exit status is 128 + the signal (130 for Ctrl-C).

    The handler never raises: an exception raised by a Python signal handler can surface inside
    C++ code that called back into Python (torch's import), where it aborts the process with
    ``std::terminate`` and several lines (found by fuzz/fuzz_process.py). Nothing else needs
    unwinding: outputs are written atomically (atomic.py) and stdout is data already sent.
    A signal that is ignored when the process starts (``nohup``, background jobs) stays ignored.
    """
    import signal
    import threading

    global _STDERR_FD
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        _STDERR_FD = os.dup(2)  # fd 2 may be muted (_mute_fd2) when a signal arrives
    except OSError:
        _STDERR_FD = None

    def on_signal(signum, frame):
        from .atomic import remove_temporaries

        remove_temporaries(final=True)
        name = "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"
        try:
            os.write(_STDERR_FD if _STDERR_FD is not None else 2, f"maxswitch: {name}\n".encode())
        except OSError:
            pass
        os._exit(128 + signum)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)


def _line(msg) -> str:
    """One line: control characters (a newline in a file name) escaped."""
    s = str(msg)
    return s.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 for c in s) else s


def _err(msg: str) -> None:
    click.echo(_line(msg), err=True)


def main(argv=None) -> int:
    """Run the CLI; map every outcome to one exit code and at most one line on stderr."""

    from .atomic import OutputExists

    quiet_libraries()
    args = sys.argv[1:] if argv is None else list(argv)
    complete = os.environ.get("_MAXSWITCH_COMPLETE")
    if complete:  # shell completion (click reads this variable in cli.main, which is not used here)
        from click.shell_completion import shell_complete

        return shell_complete(cli, {}, "maxswitch", "_MAXSWITCH_COMPLETE", complete)
    try:
        if not args:  # the help, on stderr: stdout is for data; a bare command is a usage error (2)
            click.echo(click.Context(cli, info_name="maxswitch", **cli.context_settings).get_help(), err=True)
            return EXIT_USAGE
        # make_context/invoke rather than cli.main: click's main prints an empty line on Ctrl-C
        with cli.make_context("maxswitch", args) as ctx:
            cli.invoke(ctx)
        sys.stdout.flush()
        return EXIT_OK
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        _err("maxswitch: interrupted")
        return EXIT_INTERRUPT
    except click.UsageError as e:
        hint = (
            f" (see 'maxswitch {e.ctx.info_name} --help')"
            if e.ctx and e.ctx.info_name != "maxswitch"
            else " (see 'maxswitch --help')"
        )
        _err(f"maxswitch: usage error: {e.format_message()}{hint}")
        return EXIT_USAGE
    except click.ClickException as e:
        _err(f"maxswitch: error: {e.format_message()}")
        return e.exit_code
    except KeyboardInterrupt:
        _err("maxswitch: interrupted")
        return EXIT_INTERRUPT
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); say nothing more on a closed pipe
        _silence_stdout()
        return EXIT_FAIL
    except OutputExists as e:
        _err(f"maxswitch: error: {e}")
        return EXIT_FAIL
    except MemoryError:
        _err("maxswitch: error: out of memory")
        return EXIT_FAIL
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback
        if isinstance(e, _codec_errors()):
            _err(f"maxswitch: error: {_codec_message(e)}")
            return EXIT_FAIL
        if isinstance(e, OSError):
            if e.errno is not None and e.filename is None and _is_stdout_error():
                _silence_stdout()
                _err(f"maxswitch: error: cannot write to stdout: {e.strerror}")
                return EXIT_FAIL
            _err(f"maxswitch: error: {e.strerror or e}")
            return EXIT_FAIL
        if os.environ.get("MAXSWITCH_DEBUG"):
            raise
        _err(f"maxswitch: internal error: {type(e).__name__}: {e} (set MAXSWITCH_DEBUG=1 for a traceback)")
        return EXIT_FAIL


def _is_stdout_error() -> bool:
    """Whether stdout cannot take more output (it raised on the last flush)."""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush says nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    try:
        sys.stdout = open(os.devnull, "w")
    except OSError:
        pass


def entry() -> None:
    """The ``maxswitch`` command: the CLI with its signal handlers (tests call ``main``)."""
    _install_signal_handlers()
    rc = main()
    # the work is done and every output is whole: a signal that arrives now, while the
    # interpreter shuts down, must not turn success into a kill
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    sys.exit(rc)
