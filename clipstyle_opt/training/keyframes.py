"""The training step of a video: one U-Net trained on several keyframes at once.

# deviation: not in CLIPstyler, which trains one U-Net per image. Each step runs the U-Net on every
keyframe; the step's crops (``n_crops``, drawn once as for a photo) are split into equal contiguous
blocks, one block per keyframe, cut from that keyframe's output; each keyframe has its own objective
(its own content loss against its own VGG features, its own CLIP source embedding for the directional
loss). The gradient is the mean over the keyframes, so a step's scale is that of a photo's step and
the learning rate means the same. One keyframe is exactly the photo's plain step.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..objective import augment
from ..objective.style_objective import StyleObjective
from .guards import KeptWeights, grads_finite
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


__all__ = ["KeyframeStep", "crop_blocks"]
