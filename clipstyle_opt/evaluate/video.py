"""Temporal consistency of a stylized video, measured as the field measures it, beside per-frame style and content.

The flow-warped temporal error (Lai et al., "Learning Blind Video Temporal Consistency",
ECCV 2018): for each pair of consecutive frames, output frame t-1 is warped onto frame t
with the optical flow of the *input* video (t -> t-1), occluded pixels are masked out
(forward-backward consistency, `clipstyle_opt.unet.flow.occlusion_mask`), and the mean
absolute difference over the valid pixels and the three channels is taken (values in
[0, 1]); the video's error is the mean over pairs. The input video's own error is the floor:
flow error, lighting change and occlusions the mask misses leave it above 0 for any real clip.

# deviation: Lai et al. use FlowNet2 flow; we use OpenCV's DIS flow (no learned weights,
# `clipstyle_opt.unet.flow`), and the absolute difference. Compare our figures with each
# other, input against output, not with published tables.

Beside it, per frame, the patch CLIP score and LPIPS to the input frame
(`clipstyle_opt.evaluate.evaluator.Evaluator.score`), so that consistency bought by washing
out the style shows as a lower patch score and a lower LPIPS.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..errors import ImageReadError
from ..unet.flow import FlowFn, dis_flow, occlusion_mask, warp_back
from ..unet.render import resize_rgb8
from ..unet.video import frames_rgb, is_video, probe

VIDEO_METRICS: tuple[str, ...] = ("warp_error", "warp_error_input")
"""Columns a video adds to `clipstyle eval`'s rows (lower is better)."""


def pair_error(previous: np.ndarray, current: np.ndarray, backward: np.ndarray, valid: np.ndarray) -> float:
    """Mean absolute error, over ``valid`` pixels and 3 channels, between ``current`` and ``previous`` warped by
    ``backward`` (the flow t -> t-1); frames H x W x 3 in [0, 1] (float) or uint8 (scaled to [0, 1]). NaN if no
    pixel is valid."""
    scale = 1.0 / 255.0 if previous.dtype == np.uint8 else 1.0
    warped = warp_back(previous.astype(np.float32) * scale, backward)
    if not valid.any():
        return float("nan")
    return float(np.abs(current.astype(np.float32) * scale - warped)[valid].mean())


def warped_errors(frames: Iterable[np.ndarray], reference: Optional[Iterable[np.ndarray]] = None, *,
                  flow: FlowFn = dis_flow) -> list[float]:
    """The flow-warped error of every consecutive pair of ``frames`` (see the module docstring), in [0, 1].

    reference: the input video's frames, whose flow and occlusions are used (None: ``frames`` are the
    input); resized (Pillow bicubic) to the frames' size when they differ. flow: flow(a, b) on uint8
    frames (`clipstyle_opt.unet.flow.dis_flow`; tests pass an exact one). A pair whose mask leaves no
    valid pixel is skipped.
    """
    errors: list[float] = []
    previous: Optional[tuple[np.ndarray, np.ndarray]] = None
    pairs: Iterator[tuple[np.ndarray, np.ndarray]] = (
        ((frame, frame) for frame in frames) if reference is None else zip(frames, reference))
    for frame, ref in pairs:
        ref = resize_rgb8(ref, frame.shape[:2]) if ref.shape[:2] != frame.shape[:2] else ref
        if previous is not None:
            prev_frame, prev_ref = previous
            backward, forward = flow(ref, prev_ref), flow(prev_ref, ref)
            error = pair_error(prev_frame, frame, backward, occlusion_mask(backward, forward))
            if not math.isnan(error):
                errors.append(error)
        previous = (frame, ref)
    return errors


def warp_error(frames: Iterable[np.ndarray], reference: Optional[Iterable[np.ndarray]] = None, *,
               flow: FlowFn = dis_flow) -> float:
    """Mean of `warped_errors` over the pairs (0.0 for fewer than two frames)."""
    errors = warped_errors(frames, reference, flow=flow)
    return float(np.mean(errors)) if errors else 0.0


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def frame_scores(evaluator: Any, output: Sequence[np.ndarray], content: Sequence[np.ndarray],
                 prompt: str | Sequence[tuple[str, float]], source_text: str, every: int = 1) -> dict[str, float]:
    """The evaluator's chosen metrics on every ``every``-th (output frame, input frame) pair, averaged."""
    rows = [evaluator.score(_tensor(out), _tensor(inp), prompt, source_text)
            for index, (out, inp) in enumerate(zip(output, content)) if index % every == 0]
    return {name: float(np.mean([row[name] for row in rows])) for name in rows[0]} if rows else {}


def score_video(evaluator: Any, job: Any, every: int = 1) -> dict[str, Any]:
    """One `clipstyle eval` row for a video output against its input video (``job.content``).

    The frame metrics are averaged over every ``every``-th frame pair; ``warp_error`` (the output's)
    and ``warp_error_input`` (the input's, the floor) use every pair.
    """
    if not is_video(job.content):
        raise ImageReadError(f"{job.image} is a video; its content must be the input video, got {job.content}")
    info = probe(job.image)
    probe(job.content)
    output, content = list(frames_rgb(job.image)), list(frames_rgb(job.content))
    if len(output) != len(content):
        raise ImageReadError(f"{job.image} has {len(output)} frames but {job.content} has {len(content)}; "
                             "a video is scored against the video it was made from")
    if min(info.width, info.height) < 16:
        raise ImageReadError(f"{job.image} is too small to evaluate ({info.width}x{info.height} px; need >= 16)")
    started = time.perf_counter()
    scores = frame_scores(evaluator, output, content, job.prompts or job.prompt, job.source_text, every)
    resized = [resize_rgb8(frame, output[0].shape[:2]) for frame in content]
    scores["warp_error"] = warp_error(output, resized)
    scores["warp_error_input"] = warp_error(resized)
    return {"image": str(job.image), "content": str(job.content), "prompt": job.prompt,
            "source_text": job.source_text, "width": info.width, "height": info.height, "frames": len(output),
            **scores, "seconds": round(time.perf_counter() - started, 3)}


__all__ = ["VIDEO_METRICS", "frame_scores", "pair_error", "score_video", "warp_error", "warped_errors"]
