"""``clipstyle``: the command line. It parses flags, prints, and calls the public API.

Every failure ends in one ``error:`` line on stderr (a traceback only with
``--debug``): exit 2 for a usage error (a bad flag, argument or setting),
1 for a runtime failure, 130/143 for a run stopped by SIGINT/SIGTERM.
"""
from __future__ import annotations

import functools
import hashlib
import re
import signal
import sys
import time
import traceback
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from .config import DEVICES, FUSIONS, PRECISIONS, PRESETS, VGG_ARCHS, StyleConfig, preset_summary, read_config_file
from .devices import is_out_of_memory
from .errors import ClipstyleError, ClipstyleWarning, ConfigError, NonFiniteLossError, first_line
from .imageio import check_output_file, check_writable
from .unet.tiling import DEFAULT_TILE_SIZE, STATS_MODES
from .interrupts import exit_code

# One line of help per StyleConfig field; the default shown is the reference default.
FIELD_HELP: dict[str, str] = {
    "source_text": "Text describing the content photo; the style direction is PROMPT minus this.",
    "fusion": ("How several prompts combine: loss (weighted sum of each prompt's losses) or embedding "
               "(one direction from their weighted mean text embedding)."),
    "style_image_clip": ("Share (0..1) of the CLIP guidance given to the style images' image-guided directions "
                         "(photo -> style image in CLIP space); the prompts share the rest. 0: Gram loss only."),
    "clip_model": ("Encoder (`clipstyle models`): CLIP name or file, open_clip:ARCH:TAG, local-dir:/path. "
                   "Repeat for an ensemble (NAME@WEIGHT)."),
    "clip_weights": "Comma-separated ensemble weights, one per --clip-model, normalized to sum 1 [default: equal].",
    "vgg": "VGG for content/style losses: vgg16 (bundled, offline) or vgg19 (reference; downloads).",
    "content_layers": "Comma-separated VGG layers of the content loss.",
    "style_layers": "Comma-separated VGG layers of the Gram style loss (with --style-image).",
    "size": "Training long side in px (aspect kept, sides rounded to multiples of 8).",
    "output_size": "Long side of the final image in px.",
    "max_output_size": ("Cap on the final long side when --output-size is not given (px). Outputs over "
                        "2048x2048 px are rendered tile by tile."),
    "steps": "Optimization steps.",
    "lr": "Adam learning rate.",
    "lr_decay_every": "Multiply the learning rate by --lr-decay every this many steps.",
    "lr_decay": "Learning-rate decay factor.",
    "unet_width": "Base channel width of the U-Net.",
    "early_stop": ("Patience in steps: stop once the smoothed patch loss has not improved by --early-stop-delta "
                   "for this many steps (0: off)."),
    "early_stop_delta": "Relative improvement that resets the --early-stop patience (0.01 = 1 %).",
    "coarse_steps": "Steps of a coarse phase at --coarse-size before the --steps at --size (0: none).",
    "coarse_size": "Training long side of the coarse phase in px; crops scale with it.",
    "coarse_lr": "Constant learning rate of the coarse phase.",
    "lambda_dir": "Weight of the global CLIP directional loss.",
    "lambda_patch": "Weight of the patch CLIP loss.",
    "lambda_c": "Weight of the VGG content loss.",
    "lambda_tv": "Weight of the total-variation loss.",
    "lambda_style": "Weight of the Gram style loss (only with --style-image).",
    "n_crops": "Random crops per step for the patch loss.",
    "crop_size": "Crop side in px, at most --size (clamped to the training image's short side).",
    "distortion": "Random perspective distortion of each crop, 0..1.",
    "threshold": "Patch rejection threshold on 1-cos (0 turns rejection off).",
    "attention_patch": ("Weight each crop's patch loss by the relevance of its window to the --focus text "
                        "(else the prompts), so crops on the important region count more."),
    "clip_batch": "Images per CLIP call in an uncaptured backward pass (0: all 65 at once); memory vs speed only.",
    "seed": "Seed of all randomness (U-Net init, crops).",
    "compile": "torch.compile CLIP's image tower: slow first step, faster after (pays on long runs; needs a C++ compiler).",
    "cuda_graph": "On CUDA, replay each training step as one captured CUDA graph (same result, much faster).",
    "device": "Where to compute.",
    "precision": "Autocast precision of the encoders (auto: bf16 where the hardware runs it natively).",
}
_CHOICES = {"vgg": VGG_ARCHS, "device": DEVICES, "precision": PRECISIONS, "fusion": FUSIONS}


_NONE_SHOWN = {"output_size": "the photo's own size, capped at --max-output-size", "coarse_lr": "--lr",
               "clip_batch": "16 on a CPU, 0 elsewhere"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _config_options(command: Callable) -> Callable:
    """Add one option per StyleConfig field, defaulting to the reference value.

    Only flags given on the command line override the preset and the config
    file (see `build_config`), so the defaults shown are informative.
    """
    defaults = StyleConfig()
    for item in reversed(fields(StyleConfig)):
        default = getattr(defaults, item.name)
        if isinstance(default, bool):
            flag = f"{_flag(item.name)}/--no-{item.name.replace('_', '-')}"
            command = click.option(flag, item.name, default=default, help=FIELD_HELP[item.name],
                                   show_default=True)(command)
            continue
        if item.name == "clip_model":  # repeatable: several make an ensemble
            command = click.option(_flag(item.name), item.name, multiple=True, default=(default,),
                                   help=FIELD_HELP[item.name], show_default=True)(command)
            continue
        if item.name in _CHOICES:
            kind: Any = click.Choice(_CHOICES[item.name])
        elif isinstance(default, tuple):
            kind, default = str, ",".join(default)
        elif item.name in ("output_size", "max_output_size", "clip_batch"):
            kind = int
        elif item.name == "coarse_lr":
            kind = float
        else:
            kind = type(default)
        shown: Any = True if default is not None else _NONE_SHOWN.get(item.name, "none")
        if default == "":  # an empty list: the help says what it means
            shown = False
        option = click.option(_flag(item.name), item.name, type=kind, default=default,
                              help=FIELD_HELP[item.name], show_default=shown)
        command = option(command)
    return command


def _given_on_command_line(values: dict[str, Any]) -> dict[str, Any]:
    """The StyleConfig flags the user typed, parsed (comma lists become tuples)."""
    ctx = click.get_current_context()
    out = {}
    for item in fields(StyleConfig):
        if ctx.get_parameter_source(item.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = values[item.name]
        if isinstance(item.default, tuple) or item.name == "clip_weights":
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        out[item.name] = value
    return out


def _name_the_flag(exc: ConfigError, given: dict[str, Any], file_keys: set[str], config_file: str | None) -> ConfigError:
    """The same error, naming the flag (``--crop-size``) or the config file where the bad value came from."""
    message, key = str(exc), exc.key
    if key in given and message.startswith(key):
        message = _flag(key) + message[len(key):]
    elif key in file_keys and config_file:
        message = f"{config_file}: {message}"
    return ConfigError(message, key)


def build_config(preset: str, config_file: str | None, given: dict[str, Any]) -> StyleConfig:
    """Reference defaults < preset < config file < flags given on the command line.

    A bad value's error names its flag, or the config file it came from. A
    crop size set above the training size is refused (the library clamps it).
    """
    merged: dict[str, Any] = dict(PRESETS[preset])
    file_values: dict[str, Any] = {}
    if config_file:
        try:
            file_values = read_config_file(config_file)
        except ConfigError as exc:
            raise _name_the_flag(exc, {}, {exc.key} if exc.key else set(), config_file) from None
        merged.update(file_values)
    merged.update(given)
    try:
        config = StyleConfig.from_dict(merged)
    except ConfigError as exc:
        raise _name_the_flag(exc, given, set(file_values), config_file) from None
    if ("crop_size" in given or "crop_size" in file_values) and config.crop_size > config.size:
        where = "--crop-size" if "crop_size" in given else f"{config_file}: crop_size"
        raise ConfigError(f"{where} ({config.crop_size} px) is larger than the training size --size "
                          f"({config.size} px); crops are cut from the training image", "crop_size")
    return config


def _slug(text: str, limit: int = 48) -> str:
    """A file-name part from a prompt: lower-case ASCII words joined by '-'.

    A prompt with non-ASCII characters (accents, other scripts, emoji) also
    gets a short hash of the whole text, so different prompts get different names.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:limit].rstrip("-")
    if text.isascii():
        return slug or "style"
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"prompt-{digest}"


def _names_directory(output: str) -> bool:
    path = Path(output)
    return not path.suffix or path.is_dir() or output.endswith(("/", "\\"))


def resolve_output(output: str, content: str, prompt: str) -> Path:
    """A file if ``output`` has a suffix (checked later), else a directory for ``<photo>_<prompt>.png``."""
    if not _names_directory(output):
        return Path(output)
    return Path(output) / f"{Path(content).stem}_{_slug(prompt)}.png"


def _debug_requested() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def _fail(message: str, code: int, debug: bool) -> NoReturn:
    if debug:
        click.echo(traceback.format_exc().rstrip(), err=True)
    click.echo(message, err=True)
    sys.exit(code)


def _show_warning(default: Callable, message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    if issubclass(category, ClipstyleWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        default(message, category, *args, **kwargs)


def _handle_errors(command: Callable) -> Callable:
    """Turn every failure into one line on stderr and an exit code; print our warnings as ``warning:`` lines.

    `ClipstyleError`: its message and exit code (1, or 2 for a bad setting).
    Out of memory: 1, with what to lower. Interrupted: 130 (SIGINT) or 143
    (SIGTERM). Anything else is a bug: one line and exit 1. ``--debug``
    prints the traceback first.
    """
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = _debug_requested()
        with warnings.catch_warnings():
            warnings.simplefilter("always", ClipstyleWarning)
            warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
            try:
                return command(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except ClipstyleError as exc:
                _fail(f"error: {exc}", exc.exit_code, debug)
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                _fail(f"interrupted ({signal.Signals(signum).name}): nothing more was saved", exit_code(signum), debug)
            except Exception as exc:
                if is_out_of_memory(exc):
                    _fail("error: out of memory; use smaller images or settings (see --help)", 1, debug)
                first = first_line(exc, fallback="")[:200]
                _fail(f"error: unexpected {type(exc).__name__}: {first} (a bug: rerun with --debug for the "
                      "traceback and please report it)", 1, debug)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="clipstyle_opt")
@click.option("--debug", is_flag=True, envvar="CLIPSTYLE_DEBUG",
              help="Print the full traceback of an error (also: CLIPSTYLE_DEBUG=1).")
def cli(debug: bool) -> None:
    """Text-driven image style transfer by per-image optimization (CLIPstyler).

    Errors end in one line: exit 2 for a bad flag or setting, 1 for a failure
    while running, 130/143 when interrupted. Images over 200,000,000 pixels are
    refused unless CLIPSTYLE_MAX_PIXELS allows more.
    """


_PRESET_HELP = ("Named settings under the flags. " + "; ".join(f"{name}: {preset_summary(name)}" for name in PRESETS)
                + ". preview trades detail and CLIP supervision for speed (a quarter of the pixels and crops, "
                "half the steps); the final image is still rendered at full size. fast: about a quarter of the "
                "reference's time, most steps at 256 px, the last 20 at the training size (some content "
                "fidelity lost).")


@cli.command("stylize")
@click.argument("content", type=click.Path(dir_okay=False))
@click.argument("prompts", nargs=-1)
@click.option("-o", "--output", default="outputs", show_default=True,
              help="Output file (.png, .jpg, .webp) in an existing directory, or a directory (made if missing; "
                   "gets <photo>_<prompt>.png).")
@click.option("--weights", default=None,
              help="Comma-separated weights, one per PROMPT (finite, >= 0, positive sum; normalized) "
                   "[default: equal]. See --fusion.")
@click.option("--style-image", type=click.Path(dir_okay=False), multiple=True,
              help="Style image: adds the Gram style loss (--lambda-style). Repeat it to mix several "
                   "(their Gram targets weighted by --style-weights).")
@click.option("--style-weights", default=None,
              help="Comma-separated weights, one per --style-image (normalized) [default: equal].")
@click.option("--mask", type=click.Path(dir_okay=False), default=None,
              help="Mask image: white = stylize, black = keep the photo (soft edges blend; any size, resized "
                   "to the photo). Crops are drawn inside it; the output is composited with it.")
@click.option("--region", "regions", type=(click.Path(dir_okay=False), str), multiple=True, metavar="MASK PROMPT",
              help="A mask with its own prompt and its own crops; repeat for several regions in one U-Net. "
                   "Instead of PROMPTS and --mask.")
@click.option("--focus", default=None,
              help="Stylize where the photo shows this text: its relevance map under the CLIP model (sliding "
                   "windows) becomes the mask, saved beside the output as <output>_focus.png.")
@click.option("--focus-threshold", type=click.FloatRange(0, 1), default=None,
              help="Cut the focus map at this relevance (0..1) into a hard mask [default: keep it soft].")
@click.option("--focus-invert", is_flag=True, help="Stylize everything except the --focus.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="reference", show_default=True, help=_PRESET_HELP)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="JSON or YAML file of settings (flags given here win).")
@_config_options
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--save-every", type=click.IntRange(min=1), default=None,
              help="Also write the training-size output every N steps into <output>_steps/.")
@click.option("--save-unet", is_flag=True, help="Also save the trained U-Net as <output>.unet.pt (see `clipstyle apply`).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@_handle_errors
def stylize_command(content: str, prompts: tuple[str, ...], output: str, weights: str | None,
                    style_image: tuple[str, ...], style_weights: str | None, mask: str | None,
                    regions: tuple[tuple[str, str], ...], focus: str | None, focus_threshold: float | None,
                    focus_invert: bool, preset: str, config_file: str | None, overwrite: bool,
                    save_every: int | None, save_unet: bool, quiet: bool, **flag_values: Any) -> None:
    """Stylize the photo CONTENT so that it matches the text PROMPTS (one or several; see --weights).

    Ctrl-C (or SIGTERM) stops after the current step and saves the result so
    far, marked "interrupted" in its sidecar (exit 130/143); a second Ctrl-C
    quits at once. A NaN loss stops the run and keeps the last good output.
    """
    from .devices import resolve_device, resolve_precision
    from .engine import Stylizer, focus_map_path, output_hw, training_hw
    from .objective.guidance import make_guidance
    from .imageio import read_image, save_image
    from .interrupts import GracefulStop
    from .objective.masks import load_mask
    from .encoders.prompts import check_prompts, check_text

    # Everything that can be checked is checked before any model loads.
    given = _given_on_command_line(flag_values)
    config = build_config(preset, config_file, given)
    if not prompts and not regions:
        raise ConfigError("give a PROMPT (or several, or --region MASK PROMPT)")
    if prompts and regions:
        raise ConfigError("with --region each prompt goes with its mask; give no PROMPT arguments")
    guidance = make_guidance(list(prompts) if len(prompts) != 1 else prompts[0], weights=weights,
                             style_image=list(style_image) or None, style_weights=style_weights, mask=mask,
                             regions=regions, focus=focus, focus_threshold=focus_threshold,
                             focus_invert=focus_invert, fusion=config.fusion)
    for mask_file in ([mask] if mask else []):
        load_mask(mask_file, "--mask")
    for mask_file, _ in regions:
        load_mask(mask_file, "--region mask")
    check_prompts([t.text for t in guidance.all_texts()], config.clip_model, focus=guidance.focus)
    check_text(config.source_text, "--source-text", allow_empty=True, clip_model=config.clip_model)
    try:
        resolve_precision(config.precision, resolve_device(config.device))
    except ConfigError as exc:
        raise _name_the_flag(exc, given, set(), None) from None
    make_dirs = _names_directory(output)
    inputs = [content, *style_image, config_file, mask, *(m for m, _ in regions)]
    name = " ".join(t.text for t in guidance.all_texts())
    out_path = check_writable(resolve_output(output, content, name), overwrite, inputs=inputs, create_dirs=make_dirs)
    if focus is not None:
        check_output_file(focus_map_path(out_path), overwrite, inputs=inputs, create_dirs=make_dirs)
    unet_path = out_path.with_suffix(".unet.pt")
    steps_dir = out_path.parent / f"{out_path.stem}_steps"
    if save_unet:
        check_output_file(unet_path, overwrite, inputs=inputs, create_dirs=make_dirs)
    if save_every and not overwrite and steps_dir.exists():
        raise ClipstyleError(f"{steps_dir} exists; pass --overwrite to replace its files")
    photo = read_image(content, "photo")
    training_hw(photo.height, photo.width, config, "photo")
    output_hw(photo.height, photo.width, config)  # over CLIPSTYLE_MAX_PIXELS: refused now, not after training
    for index, style_file in enumerate(style_image):
        what = "style image" if len(style_image) == 1 else f"style image {index + 1}"
        style = read_image(style_file, what)
        training_hw(style.height, style.width, config, what)

    if not quiet:
        models = config.clip_model if isinstance(config.clip_model, str) else " + ".join(config.clip_model)
        click.echo(f"loading {models} and {config.vgg} ...", err=True)
    stylizer = Stylizer(config)
    progress = None
    total_steps = config.coarse_steps + config.steps
    if not quiet and config.steps:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, desc="stylize", unit="step", dynamic_ncols=True, file=sys.stderr)

    def on_step(info: Any) -> None:
        if progress is not None:
            shown = {k: f"{v:.3g}" for k, v in info.terms.items() if k != "style" or style_image}
            shown["s/step"] = f"{info.seconds:.2f}"
            progress.set_postfix(shown, refresh=False)
            progress.update(1)
        if save_every and (info.step % save_every == 0 or info.step == info.steps):
            save_image(info.output, steps_dir / f"step_{info.step:05d}.png",
                       {"prompt": guidance.label(), "step": info.step, "terms": info.terms}, overwrite=True,
                       sidecar=False)

    started = time.perf_counter()
    with GracefulStop(notice=lambda line: click.echo(f"\n{line}", err=True)) as stop:
        try:
            result = stylizer.stylize(content, guidance, callback=on_step, should_stop=stop.requested)
        except NonFiniteLossError as exc:
            if exc.result is None:
                raise
            kept = exc.result.save(out_path, overwrite=overwrite)
            if save_unet:
                exc.result.save_unet(unet_path, overwrite=overwrite)
            raise ClipstyleError(f"{exc}; saved it as {kept}, marked stopped in its sidecar") from None
        finally:
            if progress is not None:
                progress.close()
        written = result.save(out_path, overwrite=overwrite)
        if save_unet:
            result.save_unet(unet_path, overwrite=overwrite)
    if stop.signum is not None:
        name = signal.Signals(stop.signum).name
        if result.extra.get("status") == "interrupted":
            click.echo(f"interrupted ({name}) after step {result.extra['steps_done']} of {total_steps}: saved "
                       f"{written} and its sidecar, marked interrupted", err=True)
        else:
            click.echo(f"interrupted ({name}) after the last step: the result is complete, saved {written}", err=True)
        sys.exit(exit_code(stop.signum))
    if not quiet:
        height, width = result.tensor.shape[-2:]
        early = (f"; stopped early after step {result.extra['steps_done']} of {total_steps} (--early-stop)"
                 if result.extra.get("early_stopped") else "")
        click.echo(f"wrote {written} ({width}x{height} px, {result.precision} on {result.device}) "
                   f"in {time.perf_counter() - started:.1f} s; median {result.timings['step_median_s']:.2f} s/step"
                   + early + (f"; U-Net {unet_path}" if save_unet else "")
                   + (f"; focus map {focus_map_path(written)}" if result.focus_map is not None else ""), err=True)


@cli.command("apply")
@click.argument("unet", type=click.Path(dir_okay=False))
@click.argument("content", type=click.Path())
@click.option("-o", "--output", required=True,
              help="Output image (.png, .jpg, .webp) or video (.mp4, .mov, .mkv, .webm); for a folder CONTENT, a "
                   "folder (made if missing) that gets <name>.png per photo.")
@click.option("--output-size", type=int, default=None,
              help="Long side of the output in px [default: the input's own size].")
@click.option("--output-scale", type=float, default=None,
              help="Output size as a multiple of the input's (0.5: half the width and height). Patterns keep "
                   "their size in pixels, so a smaller scale makes them larger relative to the picture.")
@click.option("--max-output-size", type=int, default=None, help="Cap on the output's long side in px [default: none].")
@click.option("--tile-size", type=int, default=DEFAULT_TILE_SIZE, show_default=True,
              help="Images larger than this (px a side) are applied tile by tile; ~0.9 KB of memory per tile pixel.")
@click.option("--norm-stats", type=click.Choice(STATS_MODES), default="thumbnail", show_default=True,
              help="Tiled images: InstanceNorm statistics from a thumbnail (one small pass) or exact (as untiled; "
                   "about 8 passes' compute).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@_handle_errors
def apply_command(unet: str, content: str, output: str, output_size: int | None, output_scale: float | None,
                  max_output_size: int | None, tile_size: int, norm_stats: str, device: str, overwrite: bool,
                  quiet: bool) -> None:
    """Restyle CONTENT with a U-Net saved by `stylize --save-unet` (no training).

    CONTENT is a photo, a folder of photos (the U-Net is loaded once), or a
    video (.mp4, .mov, .mkv, .webm, .avi: every frame, same frame rate, audio
    kept; needs the `video` extra). Outputs are written atomically.
    """
    from .cli_apply import run_apply

    run_apply(unet, content, output, output_size=output_size, output_scale=output_scale,
              max_output_size=max_output_size, tile_size=tile_size, norm_stats=norm_stats, device=device,
              overwrite=overwrite, quiet=quiet)


@cli.command("models")
@click.argument("pattern", required=False)
@click.option("--cached", "cached_only", is_flag=True, help="Only the models already in the cache.")
@_handle_errors
def models_command(pattern: str | None, cached_only: bool) -> None:
    """List the --clip-model names the backends know (optionally those containing PATTERN):
    input size in px, embedding width, and whether the weights are cached here.

    open_clip's names appear when the open_clip extra is installed. Besides these,
    --clip-model takes a checkpoint file or local-dir:/path (an open_clip folder).
    """
    from .encoders.registry import known_models

    rows = [row for row in known_models()
            if (not pattern or pattern.lower() in row["model"].lower()) and (row["cached"] or not cached_only)]
    if not rows:
        click.echo("no model matches", err=True)
        return
    width = max(len(row["model"]) for row in rows)
    click.echo(f"{'model':<{width}}  input px  width  cached")
    for row in rows:
        size = row["input_px"] or "?"
        embed = row["width"] or "?"
        click.echo(f"{row['model']:<{width}}  {size!s:>8}  {embed!s:>5}  {'yes' if row['cached'] else ''}")
    try:
        from .encoders.openclip import import_open_clip

        import_open_clip()
    except ClipstyleError as exc:
        click.echo(f"note: {exc}", err=True)


from . import cli_eval  # noqa: E402,F401  (registers eval and report)
from . import cli_sweep  # noqa: E402,F401  (registers sweep and correlate)


def main() -> None:
    """Console-script entry point. SIGTERM raises like Ctrl-C, so cleanup runs and the exit status is 143."""
    from .interrupts import raise_on_sigterm

    raise_on_sigterm()
    cli(prog_name="clipstyle")


if __name__ == "__main__":
    main()
