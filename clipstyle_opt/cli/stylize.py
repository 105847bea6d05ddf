"""``clipstyle stylize``: train a U-Net on one photo for text prompts (and style images), write the image."""
from __future__ import annotations

import signal
import sys
import time
from typing import Any

import click

from ..config import PRESETS, preset_summary
from ..errors import ClipstyleError, ConfigError, NonFiniteLossError
from ..imageio import check_output_file, check_writable
from ..interrupts import exit_code
from ..unet.video import is_video
from .stylize_video import run_video, video_options
from .common import (build_config, config_options, given_on_command_line, handle_errors, name_the_flag,
                     names_directory, resolve_output)

_PRESET_HELP = ("Named settings under the flags. " + "; ".join(f"{name}: {preset_summary(name)}" for name in PRESETS)
                + ". preview trades detail and CLIP supervision for speed (a quarter of the pixels and crops, "
                "half the steps); the final image is still rendered at full size. fast: about a quarter of the "
                "reference's time, most steps at 256 px, the last 20 at the training size (some content "
                "fidelity lost).")


@click.command("stylize")
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
@config_options
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--save-every", type=click.IntRange(min=1), default=None,
              help="Also write the training-size output every N steps into <output>_steps/.")
@click.option("--save-unet", is_flag=True, help="Also save the trained U-Net as <output>.unet.pt (see `clipstyle apply`).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@video_options
@handle_errors
def stylize_command(content: str, prompts: tuple[str, ...], output: str, weights: str | None,
                    style_image: tuple[str, ...], style_weights: str | None, mask: str | None,
                    regions: tuple[tuple[str, str], ...], focus: str | None, focus_threshold: float | None,
                    focus_invert: bool, preset: str, config_file: str | None, overwrite: bool,
                    save_every: int | None, save_unet: bool, quiet: bool, keyframes: int | None,
                    consistency: str | None, blend: float | None, shot_threshold: float | None,
                    **flag_values: Any) -> None:
    """Stylize the photo CONTENT so that it matches the text PROMPTS (one or several; see --weights).

    A video CONTENT (.mp4, .mov, .mkv, .webm, .avi) trains one U-Net on --keyframes frames spread over
    its shots and renders every frame into -o (a video file; audio, timestamps and frame rate kept).

    Ctrl-C (or SIGTERM) stops after the current step and saves the result so
    far, marked "interrupted" in its sidecar (exit 130/143); a second Ctrl-C
    quits at once. A NaN loss stops the run and keeps the last good output.
    """
    from ..devices import resolve_device, resolve_precision
    from ..engine import Stylizer
    from ..result import focus_map_path
    from ..sizing import output_hw, training_hw
    from ..objective.guidance import make_guidance
    from ..imageio import read_image, save_image
    from ..interrupts import GracefulStop
    from ..objective.masks import load_mask
    from ..encoders.prompts import check_prompts, check_text

    # Everything that can be checked is checked before any model loads.
    given = given_on_command_line(flag_values)
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
        raise name_the_flag(exc, given, set(), None) from None
    video_settings = {"keyframes": keyframes, "consistency": consistency, "blend": blend,
                      "shot_threshold": shot_threshold}
    if is_video(content):
        return run_video(content, guidance, config, output, overwrite=overwrite, save_unet=save_unet, quiet=quiet,
                         refused={"--mask": mask, "--region": regions, "--focus": focus, "--save-every": save_every},
                         **video_settings)
    given_video = [f"--{k.replace('_', '-')}" for k, v in video_settings.items() if v is not None]
    if given_video:
        raise ConfigError(f"{', '.join(given_video)} apply to a video; {content} is a photo")
    make_dirs = names_directory(output)
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


__all__ = ["stylize_command"]
