"""Batches of texture images with their captions and labels, for training and held-out checks.

`make_batch` gives plain labelled textures (the zero-shot checks);
`make_training_batch` gives what the trainer consumes: textures (some over
clutter), some pure clutter, and captions naming both attributes, one, or
neither, with the labels that `TrainingBatch.positives` turns into
multi-positive contrastive targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from microclip.captions import Attributes, caption_for, caption_matches, partial_caption
from microclip.textures import COLOURS, PATTERNS, render_clutter, render_texture


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _random_texture(size: int, rng: np.random.Generator, blend_fraction: float,
                    colours: Optional[Sequence[str]] = None) -> tuple[np.ndarray, str, str]:
    """One random colour x pattern texture, blended over clutter with probability ``blend_fraction``.

    colours: the colours to draw from (default all of `COLOURS`)."""
    choices = list(COLOURS) if colours is None else list(colours)
    colour = choices[int(rng.integers(len(choices)))]
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    image = render_texture(colour, pattern, size, rng)
    if rng.random() < blend_fraction:
        alpha = rng.uniform(0.45, 0.9)
        image = alpha * image + (1 - alpha) * render_clutter(size, rng)
    return image, colour, pattern


def make_batch(n: int, size: int, rng: np.random.Generator, *, templated_fraction: float = 0.0,
               blend_fraction: float = 0.0) -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
    """``n`` random textures (uniform colour and pattern) with captions and labels.

    size: side in px. templated_fraction: see `caption_for`. blend_fraction in
    [0, 1]: the share of images blended over photo-like clutter (texture
    opacity 0.45..0.9). Returns images (N, 3, size, size) float32 in [0, 1],
    captions, and (colour, pattern) labels.
    """
    images, captions, labels = [], [], []
    for _ in range(n):
        image, colour, pattern = _random_texture(size, rng, blend_fraction)
        images.append(image)
        captions.append(caption_for(colour, pattern, rng, templated_fraction))
        labels.append((colour, pattern))
    return _to_tensor(images), captions, labels


@dataclass
class TrainingBatch:
    """Image-caption pairs with the attributes needed for multi-positive contrastive targets.

    images: (N, 3, S, S) float32 in [0, 1]. image_labels[i]: (colour, pattern)
    of image i, (None, None) for pure clutter ("a photo"). caption_labels[j]:
    what caption j names: (colour, pattern), (colour, None), (None, pattern),
    or (None, None) for the photo caption.
    """

    images: torch.Tensor
    captions: list[str]
    image_labels: list[Attributes]
    caption_labels: list[Attributes]

    def positives(self) -> torch.Tensor:
        """(N images, N captions) bool: caption j truly describes image i."""
        return torch.tensor([[caption_matches(img, cap) for cap in self.caption_labels]
                             for img in self.image_labels], dtype=torch.bool)


def make_training_batch(n: int, size: int, rng: np.random.Generator, *, templated_fraction: float = 0.4,
                        blend_fraction: float = 0.3, photo_fraction: float = 0.05,
                        partial_fraction: float = 0.2, colours: Optional[Sequence[str]] = None) -> TrainingBatch:
    """A training batch: textures (some blended over clutter), some pure clutter, mixed captions.

    photo_fraction: share of pure clutter images captioned "a photo".
    partial_fraction: share of texture captions naming only the colour or
    only the pattern. templated_fraction, blend_fraction: see `make_batch`.
    colours: draw the textures from these colours only (default all of `COLOURS`).
    """
    images, captions, image_labels, caption_labels = [], [], [], []
    for _ in range(n):
        if rng.random() < photo_fraction:
            images.append(render_clutter(size, rng))
            image_labels.append((None, None))
            caption_labels.append((None, None))
            captions.append(partial_caption(None, None, rng, templated_fraction))
            continue
        image, colour, pattern = _random_texture(size, rng, blend_fraction, colours)
        images.append(image)
        image_labels.append((colour, pattern))
        named: Attributes = (colour, pattern)
        if rng.random() < partial_fraction:
            named = (colour, None) if rng.random() < 0.5 else (None, pattern)
        caption_labels.append(named)
        captions.append(partial_caption(*named, rng, templated_fraction))
    return TrainingBatch(_to_tensor(images), captions, image_labels, caption_labels)
