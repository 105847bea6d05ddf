"""Shots and keyframes of a video: where the cuts are, which frames a U-Net trains on, and per-shot statistics.

Shot cuts: colour-histogram difference (Zhang, Kankanhalli & Smoliar, "Automatic partitioning of
full-motion video", 1993). Each frame's histogram has `HIST_BINS` bins per RGB channel on a
thumbnail, normalized to sum 1 per channel; the distance between consecutive frames is the total
variation distance (half the L1 distance, in [0, 1]) averaged over the channels, and a cut is
declared where it exceeds ``threshold`` (`CUT_THRESHOLD`). Why a histogram: it ignores where
things are, so camera motion and moving objects barely change it (a pan over the coffee photo
measures 0.01 to 0.03), while a cut to another scene changes the colours at once (0.3 and more).
It misses cuts between shots of the same colours and gradual transitions (fades and dissolves
become one shot), which only means those shots share their statistics.

Keyframes: `pick_keyframes` spreads K frames over the shots in proportion to their length, at
least one per shot while K allows, each at the centre of an equal part of its shot.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .model import apply_unet
from .norms import NormStats, check_norms, whole_stats

HIST_BINS = 32
"""Histogram bins per RGB channel."""
CUT_THRESHOLD = 0.3
"""Histogram distance (0..1) above which consecutive frames are in different shots."""

Shot = tuple[int, int]
"""A shot: frames [start, stop) of the video, 0-based."""


def histogram(frame: np.ndarray) -> np.ndarray:
    """The 3 x `HIST_BINS` colour histogram of an H x W x 3 uint8 frame, each channel summing to 1.

    Computed on every 4th pixel of every 4th row (enough for a histogram, a sixteenth of the work)."""
    sample = frame[::4, ::4].reshape(-1, 3)
    bins = (sample.astype(np.int32) * HIST_BINS) // 256
    counts = np.stack([np.bincount(bins[:, c], minlength=HIST_BINS) for c in range(3)]).astype(np.float64)
    return counts / counts.sum(axis=1, keepdims=True)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two `histogram` results, averaged over channels, in [0, 1]."""
    return float(0.5 * np.abs(a - b).sum(axis=1).mean())


def find_shots(histograms: Sequence[np.ndarray], threshold: float = CUT_THRESHOLD) -> list[Shot]:
    """Cut the frames whose `histogram` values are given into shots (see the module docstring)."""
    if not histograms:
        return []
    starts = [0] + [i for i in range(1, len(histograms))
                    if histogram_distance(histograms[i - 1], histograms[i]) > threshold]
    return list(zip(starts, starts[1:] + [len(histograms)]))


def shots_of(frames: Iterable[np.ndarray], threshold: float = CUT_THRESHOLD) -> list[Shot]:
    """`find_shots` of a sequence of H x W x 3 uint8 frames."""
    return find_shots([histogram(frame) for frame in frames], threshold)


def _allocate(lengths: Sequence[int], count: int) -> list[int]:
    """Split ``count`` keyframes over shots of ``lengths``: one per shot first (while there are enough, else
    the longest shots get one), the rest by largest remainder in proportion to length; never more than a
    shot's frames."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    each = [0] * len(lengths)
    for i in order[:count]:
        each[i] = 1
    left = count - sum(each)
    total = sum(lengths)
    while left > 0:
        room = [i for i in order if each[i] < lengths[i]]
        if not room:
            break
        # the shot furthest below its proportional share gets the next one
        best = max(room, key=lambda i: lengths[i] * count / total - each[i])
        each[best] += 1
        left -= 1
    return each


def pick_keyframes(shots: Sequence[Shot], count: int) -> list[int]:
    """``count`` frame indices spread over ``shots`` (sorted, distinct); fewer only if the video is shorter."""
    if count < 1:
        raise ValueError(f"keyframes must be >= 1, got {count}")
    lengths = [stop - start for start, stop in shots]
    picked = []
    for (start, _), length, n in zip(shots, lengths, _allocate(lengths, count)):
        picked += [start + min(length - 1, (2 * i + 1) * length // (2 * n)) for i in range(n)]
    return sorted(set(picked))


def shot_of(shots: Sequence[Shot], frame: int) -> int:
    """The index of the shot that holds ``frame``."""
    for index, (start, stop) in enumerate(shots):
        if start <= frame < stop:
            return index
    raise IndexError(f"frame {frame} is in no shot")


def pooled_stats(per_frame: Sequence[Sequence[NormStats]]) -> list[NormStats]:
    """Per norm layer, the moments of the keyframes' inputs pooled as if they were one image.

    per_frame: for each keyframe (all of one size, so equal pixel counts), its `frame_stats`. The
    pooled mean is the mean of means; the pooled variance the mean of variances plus the variance of
    the means (the law of total variance). One keyframe gives its own statistics exactly.
    """
    pooled = []
    for layer in zip(*per_frame):
        means = torch.stack([s.mean for s in layer])
        variances = torch.stack([s.var for s in layer])
        pooled.append(NormStats(means.mean(dim=0), variances.mean(dim=0) + means.var(dim=0, unbiased=False)))
    return pooled


def frame_stats(unet: nn.Module, image: torch.Tensor) -> list[NormStats]:
    """Each InstanceNorm layer's input moments for one (1, 3, h, w) image in [0, 1] (sides multiples of 8 or
    reflect-padded as `apply_unet` pads), from one ordinary forward pass: what the layers normalize by."""
    norms = check_norms(unet)
    found: list[NormStats] = []
    handles = [norm.register_forward_pre_hook(lambda _m, args: found.append(whole_stats(args[0])))
               for _, norm in norms]
    device = next(unet.parameters()).device
    try:
        with torch.inference_mode():
            apply_unet(unet.eval(), image.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return found


# deviation: not in CLIPstyler, which renders each frame with its own InstanceNorm statistics. Freezing one
# shot's statistics (pooled over its keyframes with `pooled_stats`, not recomputed through the layers in
# turn as `tiling.norm_statistics` does: one forward per keyframe instead of one per layer) keeps the
# normalization from following each frame's content, which is a source of flicker.


__all__ = ["CUT_THRESHOLD", "HIST_BINS", "Shot", "find_shots", "frame_stats", "histogram", "histogram_distance",
           "pick_keyframes", "pooled_stats", "shot_of", "shots_of"]
