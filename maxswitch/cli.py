"""The ``maxswitch`` command line: a thin layer over the library.

Exit codes (decided in ``main`` only): 0 success, 1 bad data or a failure, 2 usage error,
130 interrupted. Data goes to stdout, every message to stderr, one line per error.
"""

from __future__ import annotations

import json
import os
import sys

import click

from . import __version__

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
    from .codec import CodecError
    from .format import FormatError
    from .image import ImageError
    from .switches import PayloadError
    from .zoo import ModelError

    return (CodecError, FormatError, ImageError, PayloadError, ModelError)


_common_threads = click.option("-t", "--threads", type=click.IntRange(1, 256), default=None,
                               help="CPU threads for the networks (default: torch's choice).")
_common_tile = click.option("--tile", type=click.IntRange(0, 1 << 16), default=None,
                            help="Tile side in pixels (multiple of 8; 0 = never tile; default: tile images over 4 MP).")
_common_max_pixels = click.option("--max-pixels", type=click.IntRange(1), default=None,
                                  help="Refuse images with more pixels (default 256,000,000).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="maxswitch")
def cli():
    """maxswitch: an image codec that stores only a CNN's max-pool switches.

    Use - for stdin or stdout: cat a.png | maxswitch encode - - | maxswitch decode - - > b.png
    """


@cli.command()
@click.argument("input", metavar="IN")
@click.argument("output", metavar="OUT")
@click.option("-m", "--model", default=None, help="Model name or asset path (default natural-16-16-16).")
@click.option("-q", "--quality", type=click.IntRange(1, 10), default=None,
              help="Pick a shipped natural-image model by rate: 1 cheapest .. 10 richest.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--level", type=click.IntRange(1, 22), default=None, help="zstd level (default 9).")
@_common_tile
@_common_threads
@_common_max_pixels
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def encode(input, output, model, quality, force, level, tile, threads, max_pixels, quiet):
    """Encode image IN into OUT (.msw) as switches only."""
    from . import codec, image, switches
    from .zoo import model_for_quality

    if model and quality:
        raise click.UsageError("give -m or -q, not both")
    if quality:
        model = model_for_quality(quality)
    data = _read_input(input, "an image")
    kw = dict(max_pixels=max_pixels or image.DEFAULT_MAX_PIXELS, level=level or switches.ZSTD_LEVEL,
              tile=tile, threads=threads)
    loaded = image.load(data, kw["max_pixels"])
    if loaded.frames > 1:
        _say(quiet, f"maxswitch: warning: {input} has {loaded.frames} frames; encoding the first")
    out = codec.encode(loaded, model, **kw)
    _write_output(output, out, force, input_path=input)
    if not quiet:
        inf = codec.info(out)
        _say(quiet, f"{input}: {inf['width']}x{inf['height']} -> {inf['file_bytes']} bytes, "
                    f"{inf['bpp']:.4f} bpp, {inf['bits_per_switch']:.3f} bits/switch, model {inf['model']}")


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
    data = _read_input(input, "a .msw file")
    im = codec.decode(data, model, max_pixels=max_pixels or image.DEFAULT_MAX_PIXELS, tile=tile, threads=threads)
    _write_output(output, image.save(im, fmt_name), force, input_path=input)
    _say(quiet or output == "-", f"{input}: decoded {im.width}x{im.height} to {output}")


@cli.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(file, as_json):
    """Describe a .msw file: header, model, sizes, bpp, bits per switch."""
    from . import codec

    d = codec.info(_read_input(file, "a .msw file"))
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
    click.echo(f"{'name':24} {'ver':>3} {'channels':>11} {'data':16} {'bpp':>6} {'PSNR':>6}  measured on")
    for m in rows:
        figs = m.get("figures", {})
        tag = " (default)" if m["name"] == DEFAULT_MODEL else ""
        bpp = figs.get("bpp")
        ps = figs.get("psnr")
        click.echo(f"{m['name']:24} {m['version']:>3} {','.join(map(str, m['channels'])):>11} "
                   f"{m.get('data', ''):16} {bpp if bpp is not None else '-':>6} "
                   f"{ps if ps is not None else '-':>6}  {figs.get('dataset', '-')}{tag}")


@cli.command()
@click.argument("data_dir", metavar="DATA_DIR")
@click.option("-o", "--output", required=True, help="Model asset to write (.safetensors).")
@click.option("--name", required=True, help="Model name recorded in the asset and in every file it encodes.")
@click.option("--arch", default="16,16,16", show_default=True, help="Encoder channels per stage.")
@click.option("--decoder", type=click.Choice(["direct", "mirror"]), default="direct", show_default=True)
@click.option("--widths", default="64,48,32", show_default=True, help="Decoder widths (coarse to fine).")
@click.option("--pool", type=click.Choice(["max", "avg"]), default="max", show_default=True,
              help="avg: the no-switch control experiment.")
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
def train(data_dir, output, name, arch, decoder, widths, pool, encoder_seed, encoder_from, split, val_dir,
          val_split, resize, minutes, steps, patch, batch, lr, seed, model_version, checkpoint, resume, threads):
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
    recipe = Recipe(patch=patch, batch=batch, lr=lr, steps=steps,
                    minutes=None if steps and minutes is None else (minutes or 20.0),
                    seed=seed, threads=threads or 2)
    try:
        run_training(data_dir, output, name, cfg, recipe, val_dir=val_dir, encoder=encoder, split=split,
                     val_split=val_split, resize=resize, checkpoint=checkpoint or output + ".ckpt",
                     resume=resume, version=model_version)
    except TrainError as e:
        raise Failure(str(e)) from None


def main(argv=None) -> int:
    """Run the CLI; map every outcome to one exit code and at most one line on stderr."""
    from .atomic import OutputExists

    try:
        cli.main(args=argv, prog_name="maxswitch", standalone_mode=False)
        return EXIT_OK
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("maxswitch: interrupted", err=True)
        return EXIT_INTERRUPT
    except click.UsageError as e:
        hint = f" (see 'maxswitch {e.ctx.info_name} --help')" if e.ctx and e.ctx.info_name != "maxswitch" else " (see 'maxswitch --help')"
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
        click.echo(f"maxswitch: internal error: {type(e).__name__}: {e} (set MAXSWITCH_DEBUG=1 for a traceback)", err=True)
        return EXIT_FAIL


def entry() -> None:
    sys.exit(main())
