"""``clipstyle``: the command line. It parses flags, prints, and calls the public API."""
from __future__ import annotations

import functools
import re
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import click

from .config import DEVICES, PRECISIONS, PRESETS, VGG_ARCHS, StyleConfig, preset_summary, read_config_file
from .errors import ClipstyleError, ConfigError
from .imageio import check_writable

# One line of help per StyleConfig field; the default shown is the reference default.
FIELD_HELP: dict[str, str] = {
    "source_text": "Text describing the content photo; the style direction is PROMPT minus this.",
    "clip_model": "CLIP model name (downloaded and cached) or a local checkpoint file.",
    "vgg": "VGG for content/style losses: vgg16 (bundled, offline) or vgg19 (reference; downloads).",
    "content_layers": "Comma-separated VGG layers of the content loss.",
    "style_layers": "Comma-separated VGG layers of the Gram style loss (with --style-image).",
    "size": "Training long side in px (aspect kept, sides rounded to multiples of 8).",
    "output_size": "Long side of the final image in px.",
    "max_output_size": "Cap on the final long side when --output-size is not given (px).",
    "steps": "Optimization steps.",
    "lr": "Adam learning rate.",
    "lr_decay_every": "Multiply the learning rate by --lr-decay every this many steps.",
    "lr_decay": "Learning-rate decay factor.",
    "unet_width": "Base channel width of the U-Net.",
    "lambda_dir": "Weight of the global CLIP directional loss.",
    "lambda_patch": "Weight of the patch CLIP loss.",
    "lambda_c": "Weight of the VGG content loss.",
    "lambda_tv": "Weight of the total-variation loss.",
    "lambda_style": "Weight of the Gram style loss (only with --style-image).",
    "n_crops": "Random crops per step for the patch loss.",
    "crop_size": "Crop side in px (clamped to the training image's short side).",
    "distortion": "Random perspective distortion of each crop, 0..1.",
    "threshold": "Patch rejection threshold on 1-cos (0 turns rejection off).",
    "clip_batch": "Images per CLIP call in the backward pass (0: all 65 at once); memory vs speed only.",
    "seed": "Seed of all randomness (U-Net init, crops).",
    "compile": "torch.compile CLIP's image tower: slow first step, faster after (pays on long runs; needs a C++ compiler).",
    "device": "Where to compute.",
    "precision": "Autocast precision of the encoders (auto: bf16 where the hardware runs it natively).",
}
_CHOICES = {"vgg": VGG_ARCHS, "device": DEVICES, "precision": PRECISIONS}


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
        if item.name in _CHOICES:
            kind: Any = click.Choice(_CHOICES[item.name])
        elif isinstance(default, tuple):
            kind, default = str, ",".join(default)
        elif item.name == "output_size":
            kind = int
        else:
            kind = type(default)
        shown: Any = True if default is not None else "the photo's own size, capped at --max-output-size"
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
        if isinstance(item.default, tuple):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        out[item.name] = value
    return out


def build_config(preset: str, config_file: str | None, given: dict[str, Any]) -> StyleConfig:
    """Reference defaults < preset < config file < flags given on the command line."""
    merged: dict[str, Any] = dict(PRESETS[preset])
    if config_file:
        merged.update(read_config_file(config_file))
    merged.update(given)
    return StyleConfig.from_dict(merged)


def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug[:limit].rstrip("-") or "style"


def resolve_output(output: str, content: str, prompt: str) -> Path:
    """A file if ``output`` has a suffix (checked later), else a directory for ``<photo>_<prompt>.png``."""
    path = Path(output)
    if path.suffix and not path.is_dir() and not output.endswith(("/", "\\")):
        return path
    return path / f"{Path(content).stem}_{_slug(prompt)}.png"


def _handle_errors(command: Callable) -> Callable:
    """Turn user-caused errors into one line on stderr and the error's exit code."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ClipstyleError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="clipstyle_opt")
def cli() -> None:
    """Text-driven image style transfer by per-image optimization (CLIPstyler)."""


_PRESET_HELP = ("Named settings under the flags. " + "; ".join(f"{name}: {preset_summary(name)}" for name in PRESETS)
                + ". preview trades detail and CLIP supervision for speed (a quarter of the pixels and crops, "
                "half the steps); the final image is still rendered at full size.")


@cli.command("stylize")
@click.argument("content", type=click.Path(dir_okay=False))
@click.argument("prompt")
@click.option("-o", "--output", default="outputs", show_default=True,
              help="Output file (.png, .jpg, .webp) or directory (gets <photo>_<prompt>.png).")
@click.option("--style-image", type=click.Path(dir_okay=False), default=None,
              help="Optional style image: adds the Gram style loss (--lambda-style).")
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
def stylize_command(content: str, prompt: str, output: str, style_image: str | None, preset: str,
                    config_file: str | None, overwrite: bool, save_every: int | None, save_unet: bool,
                    quiet: bool, **flag_values: Any) -> None:
    """Stylize the photo CONTENT so that it matches the text PROMPT."""
    from .engine import Stylizer
    from .imageio import read_image, save_image

    config = build_config(preset, config_file, _given_on_command_line(flag_values))
    out_path = check_writable(resolve_output(output, content, prompt), overwrite)
    unet_path = out_path.with_suffix(".unet.pt")
    steps_dir = out_path.parent / f"{out_path.stem}_steps"
    if not overwrite:
        if save_unet and unet_path.exists():
            raise ClipstyleError(f"{unet_path} exists; pass --overwrite to replace it")
        if save_every and steps_dir.exists():
            raise ClipstyleError(f"{steps_dir} exists; pass --overwrite to replace its files")
    read_image(content)  # fail on a bad photo before loading any model
    if style_image:
        read_image(style_image)

    if not quiet:
        click.echo(f"loading CLIP {config.clip_model} and {config.vgg} ...", err=True)
    stylizer = Stylizer(config)
    progress = None
    if not quiet and config.steps:
        from tqdm import tqdm

        progress = tqdm(total=config.steps, desc="stylize", unit="step", dynamic_ncols=True, file=sys.stderr)

    def on_step(info: Any) -> None:
        if progress is not None:
            shown = {k: f"{v:.3g}" for k, v in info.terms.items() if k != "style" or style_image}
            shown["s/step"] = f"{info.seconds:.2f}"
            progress.set_postfix(shown, refresh=False)
            progress.update(1)
        if save_every and (info.step % save_every == 0 or info.step == info.steps):
            save_image(info.output, steps_dir / f"step_{info.step:05d}.png",
                       {"prompt": prompt, "step": info.step, "terms": info.terms}, overwrite=True, sidecar=False)

    started = time.perf_counter()
    try:
        result = stylizer.stylize(content, prompt, style_image=style_image, callback=on_step)
    finally:
        if progress is not None:
            progress.close()
    written = result.save(out_path, overwrite=overwrite)
    if save_unet:
        result.save_unet(unet_path, overwrite=overwrite)
    if not quiet:
        height, width = result.tensor.shape[-2:]
        click.echo(f"wrote {written} ({width}x{height} px, {result.precision} on {result.device}) "
                   f"in {time.perf_counter() - started:.1f} s; median {result.timings['step_median_s']:.2f} s/step"
                   + (f"; U-Net {unet_path}" if save_unet else ""), err=True)


@cli.command("apply")
@click.argument("unet", type=click.Path(dir_okay=False))
@click.argument("content", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, help="Output image file (.png, .jpg, .webp).")
@click.option("--output-size", type=int, default=None, help="Long side in px [default: the photo's own size, capped].")
@click.option("--max-output-size", type=int, default=2048, show_default=True, help="Cap on the long side (px).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@_handle_errors
def apply_command(unet: str, content: str, output: str, output_size: int | None, max_output_size: int,
                  device: str, overwrite: bool) -> None:
    """Restyle CONTENT with a U-Net saved by `stylize --save-unet` (no training)."""
    from .engine import apply_unet_file, load_unet
    from .imageio import save_image

    out_path = check_writable(output, overwrite)
    _, metadata = load_unet(unet)
    if output_size is not None and not 8 <= output_size <= 16384:
        raise ConfigError(f"--output-size must be in 8..16384 px, got {output_size}")
    image = apply_unet_file(unet, content, output_size=output_size, max_output_size=max_output_size, device=device)
    save_image(image, out_path, {**metadata, "content": content, "applied_from": unet}, overwrite=overwrite)
    click.echo(f"wrote {out_path}", err=True)


from . import cli_eval  # noqa: E402,F401  (registers eval and report)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="clipstyle")


if __name__ == "__main__":
    main()
