"""The ``maxswitch`` command line: a thin layer over the library.

Exit codes (decided in ``main`` only): 0 success, 1 bad data or a failure, 2 usage error,
130 interrupted. Data goes to stdout, every message to stderr, one line per error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from . import __version__
from .config import DEFAULT_MODEL, LADDER
from .config import ZSTD_LEVEL as ZSTD_LEVEL_DEFAULT

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130


class Failure(click.ClickException):
    """A failure reported as one line on stderr with exit code 1."""

    exit_code = EXIT_FAIL


def _read_input(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError:
        raise Failure(f"{path} is a folder, not {what}") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror}") from None


def _read_upto(f, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = f.read(min(n - got, 1 << 24))
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _read_msw(path: str) -> bytes:
    """Read a .msw file, but no further than its header says it goes: a wrong file (an ISO
    image, /dev/zero, an endless pipe) is refused after its first bytes, never read whole."""
    from .format import PREFIX_MAX, FormatError, declared_length

    if path == "-":
        return _read_stream(sys.stdin.buffer, declared_length, PREFIX_MAX, FormatError)
    try:
        with open(path, "rb") as f:
            return _read_stream(f, declared_length, PREFIX_MAX, FormatError)
    except IsADirectoryError:
        raise Failure(f"{path} is a folder, not a .msw file") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror}") from None


def _read_stream(f, declared_length, prefix_max: int, FormatError) -> bytes:
    data = b""
    for step in (8, 21, prefix_max):  # magic, then the name's length, then the payload's
        data += _read_upto(f, step - len(data))
        total = declared_length(data)
        if total is not None or len(data) < step:
            break
    if total is None:  # shorter than a header: read() reports it
        return data
    data += _read_upto(f, total - len(data))
    if len(data) == total and f.read(1):
        raise FormatError("unexpected bytes after the end of the file")
    return data


def _write_output(path: str, data: bytes, force: bool, input_path: str | None = None) -> None:
    from .atomic import OutputExists, write_atomic

    if path == "-":
        if sys.stdout.isatty():
            raise Failure("refusing to write binary data to a terminal; redirect stdout or give an output file")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
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
    except OutputExists as e:
        raise Failure(str(e)) from None
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror or e}") from None


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        click.echo(msg, err=True)


def _codec_errors():
    """The exception types that mean bad data or a model problem (exit 1, one line)."""
    from .errors import MaxswitchError

    return (MaxswitchError,)


_common_threads = click.option(
    "-t",
    "--threads",
    type=click.IntRange(1, 256),
    default=None,
    help="CPU threads for the networks (default: torch's choice).",
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


@cli.command()
@click.argument("input", metavar="IN")
@click.argument("output", metavar="OUT")
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
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option(
    "--coding",
    type=click.Choice(["context", "zstd"]),
    default=None,
    help="Payload coding: context (format v2, the model's learned context model; default when the "
    "model has one) or zstd (format v1).",
)
@click.option(
    "--level",
    type=click.IntRange(1, 22),
    default=None,
    help=f"zstd level for --coding zstd (default {ZSTD_LEVEL_DEFAULT}).",
)
@_common_tile
@_common_threads
@_common_max_pixels
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def encode(input, output, model, quality, force, coding, level, tile, threads, max_pixels, quiet):
    """Encode image IN into OUT (.msw) as switches only."""
    from . import codec, image, switches
    from .zoo import model_for_quality

    if model and quality:
        raise click.UsageError("give -m or -q, not both")
    if quality:
        model = model_for_quality(quality)
    data = _read_input(input, "an image")
    kw = dict(
        max_pixels=max_pixels or image.DEFAULT_MAX_PIXELS,
        level=level or switches.ZSTD_LEVEL,
        tile=tile,
        threads=threads,
        coding=coding,
    )
    loaded = load_image(data, kw["max_pixels"])
    if loaded.frames > 1:
        _say(quiet, f"maxswitch: warning: {input} has {loaded.frames} frames; encoding frame 1 (the first)")
    out = codec.encode(loaded, model, **kw)
    _write_output(output, out, force, input_path=input)
    if not quiet:
        inf = codec.info(out, max_pixels=None)  # our own output, already within the limit
        _say(
            quiet,
            f"{input}: {inf['width']}x{inf['height']} -> {inf['file_bytes']} bytes, "
            f"{inf['bpp']:.4f} bpp, {inf['bits_per_switch']:.3f} bits/switch, model {inf['model']}",
        )


def _default_output(input: str) -> str:
    if input == "-":
        return "-"
    root, ext = os.path.splitext(input)
    return (root if ext.lower() == ".msw" else input) + ".png"


@cli.command()
@click.argument("input", metavar="IN")
@click.argument("output", metavar="[OUT]", required=False)
@click.option("-m", "--model", default=None, help="Decode with this model (it must share the file's encoder).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@_common_tile
@_common_threads
@_common_max_pixels
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def decode(input, output, model, force, tile, threads, max_pixels, quiet):
    """Decode IN (.msw) into an image; OUT defaults to IN with .png, its extension picks the format."""
    from . import codec, image

    output = output or _default_output(input)
    fmt_name = image.format_for(output)
    data = _read_msw(input)
    im = codec.decode(data, model, max_pixels=max_pixels or image.DEFAULT_MAX_PIXELS, tile=tile, threads=threads)
    _write_output(output, image.save(im, fmt_name), force, input_path=input)
    _say(quiet or output == "-", f"{input}: decoded {im.width}x{im.height} to {output}")


@cli.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_common_max_pixels
def info(file, as_json, max_pixels):
    """Describe a .msw file: header, model, sizes, bpp, bits per switch."""
    from . import codec, image

    d = codec.info(_read_msw(file), max_pixels=max_pixels or image.DEFAULT_MAX_PIXELS)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        click.echo(f"{k:18} {v}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def models(as_json):
    """List the shipped models and their measured figures."""
    from .zoo import DEFAULT_MODEL, manifest

    man = manifest()
    if as_json:
        click.echo(json.dumps(man, indent=2))
        return
    rows = man.get("models", [])
    if not rows:
        click.echo("no shipped models found", err=True)
        return
    click.echo(
        f"{'name':26} {'ver':>3} {'channels':>10} {'family':16} {'raw bpp':>7} {'bpp':>6} {'PSNR':>6} {'RMSE':>7}  measured on"
    )
    for m in rows:
        f = m.get("figures", {})
        cell = lambda k, fmt: format(f[k], fmt) if f.get(k) is not None else "-"  # noqa: E731
        tag = "  (default)" if m["name"] == DEFAULT_MODEL else ""
        click.echo(
            f"{m['name']:26} {m['version']:>3} {','.join(map(str, m['channels'])):>10} {m['family']:16} "
            f"{2 * m['switches_per_pixel']:7.2f} {cell('bpp', '.3f'):>6} {cell('psnr', '.2f'):>6} "
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
    help="Model name or asset path; repeat for several (default natural-16-16-16).",
)
@click.option("--all-models", is_flag=True, help="Benchmark every shipped model.")
@click.option("--ladder", is_flag=True, help="Benchmark the -q ladder (the natural-image models of -q 1..N).")
@click.option(
    "--coding",
    type=click.Choice(["default", "context", "zstd", "both"]),
    default="default",
    show_default=True,
    help="Payload coding of each model; both: every model twice, as two RD curves (v2 context and v1 zstd).",
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
    "--json", "json_path", metavar="FILE", help="Write results in CompressAI's schema (a folder: one file per curve)."
)
@click.option("--csv", "csv_path", metavar="FILE", help="Write one row per image and codec setting.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Draw the rate-distortion curves (needs matplotlib).")
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
    from . import bench as benchlib
    from .atomic import write_atomic
    from .zoo import DEFAULT_MODEL, manifest

    if sum(map(bool, (models, all_models, ladder))) > 1:
        raise click.UsageError("give one of -m, --all-models and --ladder")
    if all_models:
        models = tuple(m["name"] for m in manifest().get("models", []))
        if not models:
            raise Failure("no shipped models found")
    if ladder:
        from .config import LADDER

        models = LADDER
    models = models or (DEFAULT_MODEL,)
    if coding != "default":
        from .zoo import shipped

        def has_context(key: str) -> bool:  # shipped models say so in the manifest; paths are tried
            entry = shipped(key)
            return entry is None or bool(entry.get("context_digest"))

        wanted = ("context", "zstd") if coding == "both" else (coding,)
        models = tuple(f"{m}@{c}" for m in models for c in wanted if c == "zstd" or has_context(m))
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
    if json_path:
        _check_output_path(json_path, "--json", folder_ok=True)
    if csv_path:
        _check_output_path(csv_path, "--csv")
    progress = None if quiet else benchlib.Progress()

    def warn(msg):
        if progress:
            progress.clear()
        click.echo(f"maxswitch: warning: {msg}", err=True)

    try:
        if plot_path:
            benchlib.check_matplotlib()
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
        outputs = {}
        if json_path:
            outputs.update(benchlib.json_outputs(result, json_path))
        if csv_path:
            outputs[csv_path] = benchlib.csv_bytes(result)
        if plot_path:
            outputs[plot_path] = benchlib.plot_bytes(result, plot_fmt)
    except benchlib.BenchError as e:
        raise Failure(str(e)) from None
    click.echo(benchlib.format_report(result, markdown=markdown), nl=False)
    for path, data in outputs.items():
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
@click.option("--decoder", type=click.Choice(["direct", "mirror"]), default="direct", show_default=True)
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
@click.option("--split", default=None, help="Named split of DATA_DIR (holdout-train, lfw-train, ...).")
@click.option("--val", "val_dir", default=None, help="Validation folder.")
@click.option("--val-split", default=None, help="Named split of the validation folder.")
@click.option("--resize", type=int, default=None, help="Resize training images to this square size.")
@click.option("--minutes", type=float, default=None, help="Time budget (default 20 unless --steps).")
@click.option("--steps", type=int, default=None, help="Step budget (repeatable with --seed).")
@click.option("--patch", type=int, default=96, show_default=True)
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--version", "model_version", type=int, default=1, show_default=True)
@click.option("--checkpoint", default=None, help="Checkpoint file (default OUTPUT.ckpt).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint.")
@_common_threads
def train(
    data_dir,
    output,
    name,
    arch,
    decoder,
    widths,
    pool,
    encoder_seed,
    encoder_from,
    split,
    val_dir,
    val_split,
    resize,
    minutes,
    steps,
    patch,
    batch,
    lr,
    seed,
    model_version,
    checkpoint,
    resume,
    threads,
):
    """Train a decoder on the switches of DATA_DIR's images and write a model asset."""
    from .nets import ModelConfig, parse_channels
    from .train import Recipe, TrainError
    from .train import train as run_training
    from .zoo import load_model, valid_name

    if not valid_name(name):
        raise click.BadParameter("use lower-case letters, digits, '.', '_' and '-'", param_hint="--name")
    try:
        channels = parse_channels(arch)
        wid = parse_channels(widths)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    encoder = None
    if encoder_from:
        src = load_model(encoder_from)
        if tuple(src.config.channels) != channels:
            raise click.BadParameter(f"{encoder_from} has channels {src.config.channels}, not {channels}")
        encoder, encoder_seed = src.encoder, src.config.encoder_seed
    cfg = ModelConfig(channels, decoder, wid, pool, encoder_seed)
    recipe = Recipe(
        patch=patch,
        batch=batch,
        lr=lr,
        steps=steps,
        minutes=None if steps and minutes is None else (minutes or 20.0),
        seed=seed,
        threads=threads or 2,
    )
    try:
        run_training(
            data_dir,
            output,
            name,
            cfg,
            recipe,
            val_dir=val_dir,
            encoder=encoder,
            split=split,
            val_split=val_split,
            resize=resize,
            checkpoint=checkpoint or output + ".ckpt",
            resume=resume,
            version=model_version,
        )
    except TrainError as e:
        raise Failure(str(e)) from None


@cli.command("train-context")
@click.argument("model", metavar="MODEL")
@click.argument("data_dir", metavar="DATA_DIR")
@click.option("-o", "--output", required=True, help="Model asset to write: MODEL plus its context model.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--split", default=None, help="Named split of DATA_DIR (holdout-train, lfw-train, ...).")
@click.option("--val", "val_dir", default=None, help="Folder whose images measure the trained coder.")
@click.option("--val-split", default=None, help="Named split of the validation folder.")
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Time budget (default 10 unless --steps).",
)
@click.option("--steps", type=click.IntRange(1), default=None, help="Step budget (repeatable with --seed).")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option(
    "--patch", type=click.IntRange(16), default=64, show_default=True, help="Crop side in pixels (multiple of 8)."
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option("--hidden", default="32,32", show_default=True, help="Hidden widths of the context MLP.")
@click.option("--seed", type=int, default=0, show_default=True)
@_common_threads
def train_context_cmd(
    model, data_dir, output, force, split, val_dir, val_split, minutes, steps, batch, patch, lr, hidden, seed, threads
):
    """Fit the learned context model (format v2's entropy model) to MODEL's switches on DATA_DIR."""
    from .context_train import measure, switch_maps, train_context
    from .train import TrainError, list_images, load_rgb, select_split
    from .zoo import load_model, save_model

    if patch % 8:
        raise click.BadParameter(f"must be a multiple of 8, got {patch}", param_hint="--patch")
    try:
        widths = tuple(int(x) for x in hidden.split(","))
        if len(widths) != 2 or min(widths) < 1 or max(widths) > 256:
            raise ValueError
    except ValueError:
        raise click.BadParameter("two widths in 1..256, e.g. 32,32", param_hint="--hidden") from None
    if os.path.exists(output) and not force:
        raise Failure(f"{output} already exists (use -f to overwrite)")
    import torch

    torch.set_num_threads(threads or 2)
    m = load_model(model)
    try:
        paths = select_split(list_images(data_dir), split)
        rgbs = load_rgb(paths)
        if not rgbs:
            raise TrainError(f"no readable images in {data_dir}")
        maps = switch_maps(m, rgbs)
        val = None
        if val_dir:
            val = switch_maps(m, load_rgb(select_split(list_images(val_dir), val_split)), flips=False)
    except TrainError as e:
        raise Failure(str(e)) from None
    click.echo(f"{m.name}: {len(rgbs)} training images ({len(maps)} with mirrors)", err=True)
    cm, record = train_context(
        m,
        maps,
        minutes=minutes or (None if steps else 10.0),
        steps=steps,
        batch=batch,
        patch=patch,
        lr=lr,
        hidden=widths,
        seed=seed,
        log=lambda msg: click.echo(f"{m.name}: {msg}", err=True),
    )
    record.update(train_dir=os.path.basename(os.path.normpath(data_dir)), split=split, train_images=len(rgbs))
    if val:
        record["val_bits_per_switch"] = round(measure(cm, val), 4)
        click.echo(f"{m.name}: validation {record['val_bits_per_switch']} bits/switch (real coder)", err=True)
    meta_record = dict(m.meta.get("record", {}), context=record)
    save_model(output, m.name, m.version, m.config, m.encoder, m.decoder, meta_record, context=cm)
    click.echo(f"{m.name}: wrote {output}", err=True)


@contextlib.contextmanager
def _mute_fd2():
    """Send file descriptor 2 to /dev/null meanwhile: libtiff prints warnings about damaged
    files there from C ("Using code not yet in table"), where Python cannot catch them. Used
    around image decoding only, which prints nothing of ours."""
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


def main(argv=None) -> int:
    """Run the CLI; map every outcome to one exit code and at most one line on stderr."""
    from .atomic import OutputExists

    quiet_libraries()

    try:
        cli.main(args=argv, prog_name="maxswitch", standalone_mode=False)
        return EXIT_OK
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("maxswitch: interrupted", err=True)
        return EXIT_INTERRUPT
    except click.UsageError as e:
        hint = (
            f" (see 'maxswitch {e.ctx.info_name} --help')"
            if e.ctx and e.ctx.info_name != "maxswitch"
            else " (see 'maxswitch --help')"
        )
        click.echo(f"maxswitch: usage error: {e.format_message()}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as e:
        click.echo(f"maxswitch: error: {e.format_message()}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("maxswitch: interrupted", err=True)
        return EXIT_INTERRUPT
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); say nothing more on a closed pipe
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_FAIL
    except OutputExists as e:
        click.echo(f"maxswitch: error: {e}", err=True)
        return EXIT_FAIL
    except MemoryError:
        click.echo("maxswitch: error: out of memory (try --tile 512)", err=True)
        return EXIT_FAIL
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback
        if isinstance(e, _codec_errors()):
            click.echo(f"maxswitch: error: {e}", err=True)
            return EXIT_FAIL
        if isinstance(e, OSError):
            click.echo(f"maxswitch: error: {e.strerror or e}", err=True)
            return EXIT_FAIL
        if os.environ.get("MAXSWITCH_DEBUG"):
            raise
        click.echo(
            f"maxswitch: internal error: {type(e).__name__}: {e} (set MAXSWITCH_DEBUG=1 for a traceback)", err=True
        )
        return EXIT_FAIL


def entry() -> None:
    sys.exit(main())
