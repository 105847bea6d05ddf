"""The training step of a video: one U-Net trained on several keyframes at once.

# deviation: not in CLIPstyler, which trains one U-Net per image. Each step runs the U-Net on every
keyframe; the step's crops (``n_crops``, drawn once as for a photo) are split into equal contiguous
blocks, one block per keyframe, cut from that keyframe's output; each keyframe has its own objective
(its own content loss against its own VGG features, its own CLIP source embedding for the directional
loss). The gradient is the mean over the keyframes, so a step's scale is that of a photo's step and
the learning rate means the same. One keyframe is exactly the photo's plain step.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ..config import StyleConfig
from ..encoders.base import ImageTextEncoder
from ..encoders.vgg import VGGFeatures
from ..errors import ConfigError
from ..imageio import ImageSource, load_image
from ..objective import augment
from ..objective.guidance import Guidance
from ..objective.style_objective import StyleObjective
from .guards import KeptWeights, grads_finite
from .phases import Phase, build_phase
from .steps import adam_options


def crop_blocks(n_crops: int, n_keyframes: int) -> list[tuple[int, int]]:
    """[start, stop) of each keyframe's block of a step's ``n_crops`` crops: contiguous, sizes differing by at
    most one, none empty (``n_crops`` >= ``n_keyframes``)."""
    if n_crops < n_keyframes:
        raise ValueError(f"{n_crops} crops cannot be split over {n_keyframes} keyframes")
    bounds = [round(i * n_crops / n_keyframes) for i in range(n_keyframes + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class KeyframeStep:
    """`TrainingStep` over several keyframes: (content (1, 3, h, w) on the device, its objective) pairs."""

    def __init__(self, unet: nn.Module, keyframes: Sequence[tuple[torch.Tensor, StyleObjective]], lr: float,
                 device: torch.device, kept: KeptWeights, clip_batch: int = 0) -> None:
        self.unet, self.keyframes, self.kept, self.clip_batch = unet, list(keyframes), kept, clip_batch
        self.optimizer = torch.optim.Adam(unet.parameters(), lr=lr, **adam_options(device))

    def step(self, params: augment.CropParams, lr: float) -> tuple[dict[str, float], bool, torch.Tensor]:
        """See `clipstyle_opt.training.steps.TrainingStep.step`; the values are the keyframes' means and the
        output returned is the first keyframe's."""
        self.kept.record()
        self.optimizer.zero_grad(set_to_none=True)
        share = 1.0 / len(self.keyframes)
        values: dict[str, float] = {}
        first = None
        for (content, objective), (start, stop) in zip(self.keyframes, crop_blocks(len(params), len(self.keyframes))):
            output = self.unet(content)
            for name, value in objective.backward(output, params.subset(start, stop), self.clip_batch).items():
                values[name] = values.get(name, 0.0) + share * value
            first = output.detach() if first is None else first
        for parameter in self.unet.parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(share)
        finite = grads_finite(self.unet)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        assert first is not None
        return values, finite, first

    def fallback_state(self) -> dict[str, torch.Tensor] | None:
        """See `clipstyle_opt.training.steps.TrainingStep.fallback_state`."""
        return self.kept.fallback_state()


def load_keyframes(sources: Sequence[ImageSource], first: torch.Tensor, guidance: Guidance, config: StyleConfig,
                   batched: bool) -> list[torch.Tensor]:
    """The keyframes after the first, as (1, 3, H, W) tensors in [0, 1], checked against the first (same size)
    and the settings (no mask, regions or focus; batched crops; ``n_crops`` >= the number of frames).
    Raises `ConfigError` or `ImageReadError` with one line."""
    if guidance.mask is not None or guidance.regions or guidance.focus is not None:
        raise ConfigError("keyframes (a video) cannot take a mask, regions or focus")
    if not batched:
        raise ConfigError("keyframes (a video) need batched crops; the reference step kind trains one photo")
    if config.n_crops < len(sources) + 1:
        raise ConfigError(f"{len(sources) + 1} keyframes need at least as many crops; raise --n-crops "
                          f"(now {config.n_crops}) or lower --keyframes")
    frames = [load_image(source, f"keyframe {index + 2}") for index, source in enumerate(sources)]
    for index, frame in enumerate(frames):
        if frame.shape[-2:] != first.shape[-2:]:
            raise ConfigError(f"keyframe {index + 2} is {tuple(frame.shape[-2:])} px, the first "
                              f"{tuple(first.shape[-2:])}: keyframes are frames of one video")
    return frames


def keyframe_phase(config: StyleConfig, frames: Sequence[torch.Tensor], guidance: Guidance,
                   encoders: list[tuple[ImageTextEncoder, float]], vgg: VGGFeatures, device: torch.device) -> Phase:
    """One phase over every keyframe: the first frame's phase, holding each frame's (photo, objective)."""
    built = [build_phase(config, frame, guidance, encoders, vgg, device, True) for frame in frames]
    return replace(built[0], keyframes=tuple((phase.content, phase.objective) for phase in built))


__all__ = ["KeyframeStep", "crop_blocks", "keyframe_phase", "load_keyframes"]
