"""Stylize a whole video from a sentence: one U-Net trained on keyframes of its shots, every frame rendered.

>>> from clipstyle_opt.video import stylize_video
>>> done = stylize_video("clip.mp4", "a watercolor painting", "out.mp4", steps=100)  # doctest: +SKIP
>>> done.shots, done.keyframes                                                       # doctest: +SKIP

1. Shots and keyframes (`clipstyle_opt.unet.shots`): a first pass over the frames finds the cuts
   (colour-histogram difference) and spreads ``keyframes`` frames over the shots.
2. Training (`clipstyle_opt.training.keyframes`): one U-Net on all keyframes at once, the crops of
   every step split over them, each keyframe with its own content loss; ``Stylizer.stylize`` with
   ``keyframes``, so every setting means what it means for a photo.
3. Rendering (`clipstyle_opt.unet.temporal`): every frame, with the InstanceNorm statistics of its
   shot's keyframes (``consistency="frozen"``) or its own (``"per-frame"``, as `clipstyle apply`),
   optionally blended with the flow-warped previous output (``blend``); timestamps, frame rate and
   audio kept (`clipstyle_opt.unet.video.stylize_video`), written atomically, with a JSON sidecar.

`clipstyle_opt.stylize` takes a video path too and lands here.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .config import ENCODER_KEYS, StyleConfig
from .engine import Stylizer
from .errors import ClipstyleError, ConfigError, ImageReadError, first_line
from .imageio import ImageSource, atomic_write, check_output_file, sidecar_path
from .objective.guidance import Guidance, PromptSpec
from .result import Result, StepInfo
from .sizing import output_hw, render_hw
from .unet.norms import NormStats
from .unet.render import resize_rgb8
from .unet.shots import CUT_THRESHOLD, Shot, find_shots, frame_stats, histogram, pick_keyframes, pooled_stats
from .unet.temporal import FrameRenderer
from .unet.video import OUTPUT_SUFFIXES, frames_rgb, probe
from .unet.video import stylize_video as write_video

DEFAULT_KEYFRAMES = 4
"""Keyframes a U-Net trains on by default (`benchmarks/bench_video.py` compares 1, 4 and 8)."""
CONSISTENCY = ("frozen", "per-frame")
"""How frames are normalized: their shot's keyframe statistics, or each its own."""
DEFAULT_CONSISTENCY = "frozen"
"""Chosen from `benchmarks/bench_video.py`'s measurements (docs/guides/video.md)."""
DEFAULT_BLEND = 0.5
"""Flow-guided blending weight by default. Measured (`benchmarks/bench_video.py`, docs/guides/video.md): at 0.5 the
warped error fell by 37 to 49 % against frozen statistics alone (13 % under an independent flow) while the patch
CLIP score and LPIPS to the input stayed within 1 %, so it is on; 0.8 did no better under the independent flow.
0 turns it off."""


@dataclass
class VideoResult:
    """What `stylize_video` made: the written file, its frame count, the shots, the keyframes (0-based frame
    indices) and the training `Result` (its image is the first keyframe stylized, its ``unet`` the U-Net)."""

    output: Path
    frames: int
    shots: list[Shot]
    keyframes: list[int]
    result: Result
    timings: dict[str, float] = field(default_factory=dict)


def _decode_error(source: Path, exc: Exception) -> ImageReadError:
    return ImageReadError(f"cannot decode the video {source} ({type(exc).__name__}: {first_line(exc)[:120]})")


def scan(source: str | Path, threshold: float = CUT_THRESHOLD) -> tuple[int, list[Shot]]:
    """(frame count, shots) of a video, from one decoding pass; `ImageReadError` for a damaged or empty one."""
    source = Path(source)
    probe(source)
    try:
        histograms = [histogram(frame) for frame in frames_rgb(source)]
    except ClipstyleError:
        raise
    except Exception as exc:  # av.error.InvalidDataError and friends, mid-stream
        raise _decode_error(source, exc) from None
    if not histograms:
        raise ImageReadError(f"no frames could be decoded from {source}")
    return len(histograms), find_shots(histograms, threshold)


def read_frames(source: str | Path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (0-based), decoded in one pass and kept as H x W x 3 uint8."""
    wanted, found = set(indices), {}
    try:
        for index, frame in enumerate(frames_rgb(source)):
            if index in wanted:
                found[index] = frame
            if len(found) == len(wanted):
                break
    except Exception as exc:
        raise _decode_error(Path(source), exc) from None
    missing = wanted - set(found)
    if missing:
        raise ImageReadError(f"{source}: frame {min(missing)} could not be decoded the second time")
    return found


def shot_statistics(unet: torch.nn.Module, shots: Sequence[Shot], frames: dict[int, np.ndarray],
                    out_hw: tuple[int, int], training_size: Optional[int],
                    device: torch.device | str = "cpu") -> list[list[NormStats]]:
    """Per shot, the InstanceNorm statistics pooled over its frames in ``frames`` (`pooled_stats`), each frame
    first resized to the render grid; a shot with none of them takes its middle frame, which must be there."""
    out = []
    for start, stop in shots:
        inside = [frames[i] for i in sorted(frames) if start <= i < stop] or [frames[(start + stop - 1) // 2]]
        per_frame = []
        for frame in inside:
            grid = resize_rgb8(frame, render_hw(frame.shape[0], frame.shape[1], out_hw, training_size))
            tensor = torch.from_numpy(grid.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
            per_frame.append(frame_stats(unet.to(device), tensor))
        out.append(pooled_stats(per_frame))
    return out


def check_video_output(target: str | Path, source: str | Path, overwrite: bool, *,
                       inputs: Sequence[Any] = ()) -> Path:
    """The checked output path of a video (suffix, not an input, writable) and of its JSON sidecar."""
    target = Path(target)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"a video's output must end in {', '.join(OUTPUT_SUFFIXES)}, got {target.name}")
    for path in (target, sidecar_path(target)):
        check_output_file(path, overwrite, inputs=[source, *inputs], create_dirs=True)
    return target


def stylize_video(source: str | Path, prompt: PromptSpec | Guidance, output: str | Path, *,
                  config: StyleConfig | None = None, stylizer: Stylizer | None = None,
                  keyframes: int = DEFAULT_KEYFRAMES, consistency: str = DEFAULT_CONSISTENCY,
                  blend: float = DEFAULT_BLEND, shot_threshold: float = CUT_THRESHOLD,
                  style_image: ImageSource | Sequence[ImageSource] | None = None, overwrite: bool = False,
                  callback: Callable[[StepInfo], None] | None = None,
                  on_frame: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, **overrides: Any) -> VideoResult:
    """Train one U-Net on ``keyframes`` frames of ``source`` for ``prompt`` and write every frame to ``output``.

    keyframes: frames to train on (>= 1; spread over the shots). consistency: "frozen" (each shot's
    keyframe statistics) or "per-frame". blend: weight in [0, 1) of the flow-warped previous output (0:
    off). shot_threshold: histogram distance (0..1) of a cut. overrides: `StyleConfig` fields (steps=...)
    and guidance keywords, as `Stylizer.stylize` takes them. callback: after every training step;
    on_frame(done, total): after every rendered frame. Errors: `ImageReadError` for a missing, damaged or
    empty video (nothing written), `ConfigError` for bad options, and those of `Stylizer.stylize`.
    """
    source = Path(source)
    if keyframes < 1:
        raise ConfigError(f"--keyframes must be >= 1, got {keyframes}")
    if consistency not in CONSISTENCY:
        raise ConfigError(f"--consistency must be one of {', '.join(CONSISTENCY)}, got {consistency!r}")
    if not 0.0 <= blend < 1.0:
        raise ConfigError(f"--blend must be in [0, 1), got {blend}")
    if not 0.0 < shot_threshold <= 1.0:
        raise ConfigError(f"--shot-threshold must be in (0, 1], got {shot_threshold}")
    target = check_video_output(output, source, overwrite)
    started = time.perf_counter()
    info = probe(source)
    base = stylizer.config if stylizer is not None else (config or StyleConfig())
    settings = {k: v for k, v in overrides.items() if k in StyleConfig.__dataclass_fields__}
    out_hw = output_hw(info.height, info.width, base.replace(**settings) if settings else base)
    count, shots = scan(source, shot_threshold)
    picked = pick_keyframes(shots, keyframes)
    needed = set(picked) | {(a + b - 1) // 2 for a, b in shots}
    frames = read_frames(source, sorted(needed))
    timings = {"scan_s": round(time.perf_counter() - started, 3)}

    if stylizer is None:  # the encoder settings make the Stylizer, as `engine.stylize` does
        encoder_settings = {k: overrides.pop(k) for k in list(overrides) if k in ENCODER_KEYS}
        stylizer = Stylizer(base.replace(**encoder_settings) if encoder_settings else base)
    train_frames = [frames[i] for i in picked]
    result = stylizer.stylize(train_frames[0], prompt, style_image=style_image, callback=callback,
                              should_stop=should_stop, keyframes=train_frames[1:], **overrides)
    if result.extra.get("status") == "interrupted":
        raise ClipstyleError(f"interrupted while training, after step {result.extra.get('steps_done')}; "
                             "no video was written")
    unet, run_config = result.unet, result.config
    timings["train_s"] = round(time.perf_counter() - started - timings["scan_s"], 3)

    rendered = time.perf_counter()
    device = stylizer.device
    stats = (shot_statistics(unet, shots, frames, out_hw, run_config.size, device)
             if consistency == "frozen" else None)
    renderer = FrameRenderer(unet, out_hw, run_config.size, shots, stats, blend=blend, device=device)
    progress = None if on_frame is None else (lambda done: on_frame(done, count))
    target.parent.mkdir(parents=True, exist_ok=True)
    written = write_video(source, target, renderer, out_hw, progress=progress)
    timings["render_s"] = round(time.perf_counter() - rendered, 3)
    timings["render_fps"] = round(written / max(timings["render_s"], 1e-9), 3)

    metadata = {**result.metadata(), "content": str(source), "video": {
        "frames": written, "shots": [list(s) for s in shots], "keyframes": picked, "consistency": consistency,
        "blend": blend, "shot_threshold": shot_threshold, "output_size": list(out_hw)}}
    metadata["timings"] = {**metadata.get("timings", {}), **timings}
    text = json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(sidecar_path(target), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return VideoResult(target, written, shots, picked, result, timings)


def stylize(content: ImageSource, prompt: PromptSpec | Guidance, *, config: StyleConfig | None = None,
            output: str | Path | None = None, **options: Any) -> Any:
    """`clipstyle_opt.engine.stylize` for photos; for a video path (`is_video`), `stylize_video` to ``output``
    (required), returning its `VideoResult`."""
    from .engine import stylize as stylize_photo
    from .unet.video import is_video

    if isinstance(content, (str, Path)) and is_video(content):
        if output is None:
            raise ConfigError("stylizing a video needs output='out.mp4'")
        return stylize_video(content, prompt, output, config=config, **options)
    if output is not None:
        raise ConfigError("output= is for videos; save a photo's result with result.save(path)")
    return stylize_photo(content, prompt, config=config, **options)


__all__ = ["CONSISTENCY", "DEFAULT_BLEND", "DEFAULT_CONSISTENCY", "DEFAULT_KEYFRAMES", "VideoResult",
           "check_video_output", "read_frames", "scan", "shot_statistics", "stylize", "stylize_video"]
