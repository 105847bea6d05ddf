"""Render a video's frames with a trained U-Net, consistently over time: frozen per-shot statistics and
optional flow-guided blending.

`FrameRenderer` is the ``stylize_frame`` function `clipstyle_opt.unet.video.stylize_video` calls
once per frame, in order. Three modes, measured against each other by ``benchmarks/bench_video.py``:

- per-frame (``shot_stats=None``): every frame as `clipstyle apply` renders a photo, its InstanceNorm
  statistics its own (CLIPstyler's video script does this);
- frozen statistics: every frame of a shot through the U-Net with the statistics of that shot's
  keyframes (`clipstyle_opt.unet.shots`), so the normalization does not follow each frame's content;
- blending (``blend`` > 0): the previous output, warped onto this frame with the input's optical flow
  (`clipstyle_opt.unet.flow`), mixed in with weight ``blend`` where the flow is trusted (forward-backward
  check), and not across a cut. Recursive: the previous output is itself blended.

# deviation: not in CLIPstyler. The blending is the simple recursive scheme of flow-guided video
# filters, not a learned one (Lai et al.). Its default weight is measured in docs/guides/video.md.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..sizing import render_hw
from .flow import dis_flow, occlusion_mask, warp_back
from .norms import NormStats
from .render import render, resize_rgb8
from .shots import Shot, shot_of
from .tiling import DEFAULT_TILE_SIZE, apply_tiled_uint8


class FrameRenderer:
    """Stylizes a video's frames in order (call it once per frame): H x W x 3 uint8 -> ``out_hw`` uint8.

    unet: the trained U-Net; training_size: its training long side in px (picks the render grid,
    `clipstyle_opt.sizing.render_hw`); shots: the video's shots (frame ranges); shot_stats: one list of
    `NormStats` per shot (computed on the render grid), or None for per-frame statistics; blend: weight
    in [0, 1) of the warped previous output where the flow is trusted (0: off).
    """

    def __init__(self, unet: nn.Module, out_hw: tuple[int, int], training_size: Optional[int],
                 shots: Sequence[Shot], shot_stats: Optional[Sequence[list[NormStats]]] = None, *,
                 blend: float = 0.0, device: Union[str, torch.device] = "cpu",
                 tile_size: int = DEFAULT_TILE_SIZE) -> None:
        if not 0.0 <= blend < 1.0:
            raise ValueError(f"blend must be in [0, 1), got {blend}")
        if shot_stats is not None and len(shot_stats) != len(shots):
            raise ValueError(f"{len(shot_stats)} statistics for {len(shots)} shots")
        self.unet, self.out_hw, self.training_size = unet.eval(), tuple(out_hw), training_size
        self.shots, self.shot_stats, self.blend = list(shots), shot_stats, blend
        self.device, self.tile_size = device, tile_size
        self.index = 0
        self._previous: Optional[tuple[int, np.ndarray, np.ndarray]] = None  # (shot, input, output) at out_hw

    def styled(self, frame: np.ndarray, shot: int) -> np.ndarray:
        """One frame through the U-Net, without blending: per-frame or with shot ``shot``'s statistics."""
        if self.shot_stats is None:
            return render(self.unet, frame, self.out_hw, self.training_size, device=self.device,
                          tile_size=self.tile_size)
        grid = resize_rgb8(frame, render_hw(frame.shape[0], frame.shape[1], self.out_hw, self.training_size))
        styled = apply_tiled_uint8(self.unet, grid, tile_size=self.tile_size, device=self.device,
                                   norm_stats=list(self.shot_stats[shot]))
        return resize_rgb8(styled, self.out_hw)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        shot = shot_of(self.shots, min(self.index, self.shots[-1][1] - 1))
        self.index += 1
        out = self.styled(frame, shot)
        if not self.blend:
            return out
        source = resize_rgb8(frame, self.out_hw)
        previous = self._previous
        if previous is not None and previous[0] == shot:
            _, prev_source, prev_out = previous
            backward, forward = dis_flow(source, prev_source), dis_flow(prev_source, source)
            valid = occlusion_mask(backward, forward)[..., None]
            warped = warp_back(prev_out, backward)
            mixed = np.where(valid, self.blend * warped + (1.0 - self.blend) * out, out)
            out = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        self._previous = (shot, source, out)
        return out


__all__ = ["FrameRenderer"]
