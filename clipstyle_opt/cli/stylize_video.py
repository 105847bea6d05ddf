"""``clipstyle stylize clip.mp4 PROMPT -o out.mp4``: the video half of `stylize` (checks, two progress bars)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..config import StyleConfig
from ..errors import ConfigError
from ..objective.guidance import Guidance
from ..unet.shots import CUT_THRESHOLD
from ..video import DEFAULT_BLEND, DEFAULT_CONSISTENCY, DEFAULT_KEYFRAMES
from .common import names_directory, slug

VIDEO_OPTIONS = (
    click.option("--keyframes", type=click.IntRange(min=1), default=None,
                 help=f"Video: frames the U-Net trains on, spread over the shots [default: {DEFAULT_KEYFRAMES}]."),
    click.option("--consistency", type=click.Choice(["frozen", "per-frame"]), default=None,
                 help="Video: normalize every frame with its shot's keyframe statistics (frozen) or with its own "
                      f"(per-frame, as `apply`) [default: {DEFAULT_CONSISTENCY}]."),
    click.option("--blend", type=click.FloatRange(0, 1, max_open=True), default=None,
                 help="Video: weight (0..1) of the previous output, warped by the input's optical flow, mixed into "
                      f"each frame where the flow is trusted; 0 turns it off [default: {DEFAULT_BLEND:g}]."),
    click.option("--shot-threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
                 help="Video: colour-histogram distance (0..1) between consecutive frames that counts as a cut "
                      f"[default: {CUT_THRESHOLD:g}]."),
)
"""The options only a video takes; `video_options` adds them to a command."""


def video_options(command: Any) -> Any:
    """Add the video-only options of `clipstyle stylize` (keyframes, consistency, blending) to ``command``."""
    for option in reversed(VIDEO_OPTIONS):
        command = option(command)
    return command


def video_target(output: str, content: str, name: str) -> Path:
    """``-o``: a video file, or a directory for ``<clip>_<prompt>.mp4``."""
    if names_directory(output):
        return Path(output) / f"{Path(content).stem}_{slug(name)}.mp4"
    return Path(output)


def _bar(quiet: bool, total: int, unit: str, desc: str) -> Any:
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr)


def run_video(content: str, guidance: Guidance, config: StyleConfig, output: str, *, overwrite: bool,
              save_unet: bool, quiet: bool, refused: dict[str, Any], **video: Any) -> None:
    """Stylize the video ``content``: check, train (one bar), render (another bar), report one line.

    refused: photo-only options given on the command line (name -> value); any set one is a usage error.
    video: keyframes, consistency, blend, shot_threshold (None: the defaults of `clipstyle_opt.video`).
    """
    from ..unet.video import import_av, probe
    from ..video import check_video_output, stylize_video

    given = [name for name, value in refused.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} cannot be used on a video")
    import_av()
    target = video_target(output, content, " ".join(t.text for t in guidance.all_texts()))
    check_video_output(target, content, overwrite, inputs=[*(i.source for i in guidance.images)])
    unet_path = target.with_suffix(".unet.pt")
    if save_unet:
        from ..imageio import check_output_file

        check_output_file(unet_path, overwrite, inputs=[content], create_dirs=True)
    info = probe(content)
    options = {k: v for k, v in video.items() if v is not None}
    if not quiet:
        models = config.clip_model if isinstance(config.clip_model, str) else " + ".join(config.clip_model)
        click.echo(f"loading {models} and {config.vgg} ...", err=True)
    steps = _bar(quiet, config.coarse_steps + config.steps, "step", "train")
    frames = _bar(quiet, info.frames, "frame", "render")

    def on_step(step: Any) -> None:
        if steps is not None:
            steps.set_postfix({k: f"{v:.3g}" for k, v in step.terms.items() if k in ("total", "patch", "content")},
                              refresh=False)
            steps.update(1)

    def on_frame(done: int, total: int) -> None:
        if frames is not None:
            if steps is not None and not steps.disable:
                steps.close()
            frames.total = max(total, done)
            frames.n = done
            frames.refresh()

    started = time.perf_counter()
    try:
        done = stylize_video(content, guidance, target, config=config, overwrite=overwrite, callback=on_step,
                             on_frame=on_frame, **options)
    finally:
        for bar in (steps, frames):
            if bar is not None:
                bar.close()
    if save_unet:
        done.result.save_unet(unet_path, overwrite=overwrite)
    if not quiet:
        click.echo(f"wrote {done.output} ({done.frames} frames, {len(done.shots)} shot(s), keyframes "
                   f"{', '.join(str(k) for k in done.keyframes)}) in {time.perf_counter() - started:.1f} s; "
                   f"rendering {done.timings['render_fps']:.2f} frames/s"
                   + (f"; U-Net {unet_path}" if save_unet else ""), err=True)


__all__ = ["VIDEO_OPTIONS", "run_video", "video_options", "video_target"]
