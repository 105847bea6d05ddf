"""Training phases: what each phase trains on (size, photo, style images, masks, relevance, objective), and
each step's crops."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..config import StyleConfig
from ..encoders.base import ImageTextEncoder
from ..encoders.vgg import VGGFeatures
from ..errors import ConfigError
from ..imageio import load_image, resize
from ..objective import augment
from ..objective.guidance import Guidance
from ..objective.masks import load_mask, resize_mask, union
from ..objective.style_objective import StyleObjective
from ..sizing import training_hw


@dataclass
class Phase:
    """One training phase: its settings, training size (h, w) in px, photo (1, 3, h, w) in [0, 1], crop masks,
    union mask and relevance map ((1, 1, h, w) in [0, 1], or None) and objective."""

    config: StyleConfig
    hw: tuple[int, int]
    content: torch.Tensor
    crop_masks: list[torch.Tensor]
    mask: torch.Tensor | None
    relevance: torch.Tensor | None
    objective: StyleObjective
    keyframes: tuple[tuple[torch.Tensor, StyleObjective], ...] = ()
    """A video's keyframes, (photo, objective) each, this phase's own first: trained together by
    `clipstyle_opt.training.keyframes.KeyframeStep`; () for a photo."""


def coarse_config(config: StyleConfig) -> StyleConfig:
    """The settings of the coarse phase (``coarse_steps`` > 0) that comes before ``config``'s own steps.

    deviation: not in CLIPstyler. Training size ``coarse_size`` (no larger than ``size``), crops scaled
    with it (the reference's 128 px crops on 512 px become 64 px on 256 px), learning rate ``coarse_lr``
    (``lr`` if None) without decay, no early stop. The fine phase then runs ``steps`` steps at ``size``
    from the coarse phase's weights, with a fresh optimizer.
    """
    size = min(config.coarse_size, config.size)
    return config.replace(size=size, crop_size=max(8, round(config.crop_size * size / config.size)),
                          steps=config.coarse_steps, lr=config.coarse_lr or config.lr,
                          lr_decay_every=config.coarse_steps, early_stop=0, coarse_steps=0)


def phase_masks(guidance: Guidance, content_train: torch.Tensor, clip: ImageTextEncoder,
                device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """(per-region crop masks, relevance map) at the training size, on ``device``; ([], None) without masks.

    content_train: the (1, 3, h, w) photo in [0, 1] at the training size; clip: the encoder that
    maps the ``focus`` text's relevance (`clipstyle_opt.objective.relevance`).
    """
    train_hw = tuple(content_train.shape[-2:])
    if guidance.mask is not None:
        return [resize_mask(load_mask(guidance.mask), train_hw).to(device)], None
    if guidance.regions:
        return [resize_mask(load_mask(region.mask, "--region mask"), train_hw).to(device)
                for region in guidance.regions], None
    if guidance.focus is not None:
        from ..objective.relevance import focus_mask, relevance_map

        relevance = relevance_map(clip, content_train, guidance.focus).to(device)
        mask = focus_mask(relevance, guidance.focus_threshold, guidance.focus_invert)
        if float(mask.max()) <= 0:
            raise ConfigError(f"--focus-threshold {guidance.focus_threshold:g} leaves nothing to stylize; "
                              "lower it")
        return [mask], relevance
    return [], None


def build_phase(config: StyleConfig, content_full: torch.Tensor, guidance: Guidance,
                encoders: list[tuple[ImageTextEncoder, float]], vgg: VGGFeatures, device: torch.device,
                batched_crops: bool) -> Phase:
    """Everything one training phase needs at ``config.size``: the photo, style images, masks and objective.

    content_full: the (1, 3, H, W) photo in [0, 1] at its own size; encoders: (encoder, weight) pairs, the
    first of which maps relevance; batched_crops: False builds the reference's unbatched objective.
    """
    clip = encoders[0][0]
    train_hw = training_hw(*content_full.shape[-2:], config)
    content_train = resize(content_full, train_hw).to(device)
    styles: list[tuple[torch.Tensor, float]] = []
    for index, item in enumerate(guidance.images):
        what = "style image" if len(guidance.images) == 1 else f"style image {index + 1}"
        style_full = load_image(item.source, what)
        styles.append((resize(style_full, training_hw(*style_full.shape[-2:], config, what)).to(device),
                       item.weight))
    style_tensor: Any = styles[0][0] if len(styles) == 1 else (styles or None)
    crop_masks, relevance = phase_masks(guidance, content_train, clip, device)
    mask = union(crop_masks) if crop_masks else None
    attention = relevance
    if config.attention_patch and attention is None:
        from ..objective.relevance import relevance_map

        attention = sum(t.weight * relevance_map(clip, content_train, t.text) for t in guidance.texts)
    objective = StyleObjective(encoders, vgg, config, content_train, guidance, style_tensor,
                               batched=batched_crops, mask=mask,
                               relevance=None if attention is None else attention.to(device))
    return Phase(config, train_hw, content_train, crop_masks, mask, relevance, objective)


def draw_crops(config: StyleConfig, train_hw: tuple[int, int], generator: torch.Generator,
               crop_masks: Sequence[torch.Tensor]) -> augment.CropParams:
    """One step's crops: uniform (no mask, the reference), drawn where the mask is, or per region
    ``n_crops // regions`` (at least 1) each drawn in its own mask and tagged with its region."""
    if not crop_masks:
        return augment.sample_crop_params(config.n_crops, train_hw, config.crop_size, config.distortion, generator)
    if len(crop_masks) == 1:
        return augment.sample_crop_params(config.n_crops, train_hw, config.crop_size, config.distortion, generator,
                                          where=crop_masks[0])
    each = max(1, config.n_crops // len(crop_masks))
    return augment.CropParams.concat([
        augment.sample_crop_params(each, train_hw, config.crop_size, config.distortion, generator, where=mask)
        for mask in crop_masks])


__all__ = ["Phase", "build_phase", "coarse_config", "draw_crops", "phase_masks"]
