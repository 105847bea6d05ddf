"""Where a text is in a photo: a relevance map from the CLIP model in use, for ``--focus``.

Method: sliding-window similarity. The photo is cut into overlapping square
windows (side `WINDOW_SHARE` of its short side, `GRID` positions per axis),
each window is encoded whole by the encoder's image tower, and its score is
the cosine between that embedding and the templated text embedding. Every
pixel gets the mean score of the windows that cover it; the map is then
smoothed with a Gaussian (sigma a quarter of the window side, so the
window grid leaves no blocks) and min-max scaled to [0, 1] (0 = the least
relevant place, 1 = the most).

Why this one and not gradients or attention rollout: it needs nothing but
the `ImageTextEncoder` protocol, so it works the same for OpenAI CLIP,
OpenCLIP and SigLIP (whose towers differ inside; attention or patch-token
gradients would need hooks per backend); it is one batched forward pass
with no backward; and it scores the photo the way the patch loss sees it,
as crops encoded whole. Input-gradient saliency of a ViT is, by contrast,
speckled at the patch grid and sign-unstable on texture images (seen on the
micro CLIP). The price is resolution: the map is as coarse as a window's
stride (about 1/12 of the short side), smooth by construction, which suits
a mask whose edges are composited softly anyway.
"""
from __future__ import annotations

import torch
from kornia.filters import gaussian_blur2d

from ..encoders.base import ImageTextEncoder

WINDOW_SHARE = 1.0 / 3.0
"""Window side as a share of the image's short side."""
GRID = 9
"""Window positions per axis (evenly spaced, first and last at the image borders): GRID**2 windows."""
BATCH = 32
"""Windows per encoder call."""


def window_corners(length: int, window: int, count: int) -> list[int]:
    """``count`` start offsets in px of ``window``-px windows evenly spread over ``length`` px (deduplicated)."""
    if count <= 1 or length <= window:
        return [max(0, (length - window) // 2)]
    return sorted({round(i * (length - window) / (count - 1)) for i in range(count)})


@torch.no_grad()
def relevance_map(encoder: ImageTextEncoder, image: torch.Tensor, text: str, *,
                  window_share: float = WINDOW_SHARE, grid: int = GRID) -> torch.Tensor:
    """Relevance of ``text`` at each pixel of a (1, 3, H, W) image in [0, 1] -> (1, 1, H, W) in [0, 1].

    See the module docstring for the method. A text that scores the same everywhere gives a
    flat map of 0.5.
    """
    height, width = image.shape[-2:]
    side = max(8, round(min(height, width) * window_share))
    tops, lefts = window_corners(height, side, grid), window_corners(width, side, grid)
    corners = [(top, left) for top in tops for left in lefts]
    target = encoder.encode_prompt(text).float().to(image.device)
    scores = []
    for start in range(0, len(corners), BATCH):
        batch = torch.cat([image[..., t:t + side, l:l + side] for t, l in corners[start:start + BATCH]])
        scores.append(encoder.encode_image(batch).float() @ target)
    score = torch.cat(scores).cpu()
    total = torch.zeros(height, width)
    coverage = torch.zeros(height, width)
    for (top, left), value in zip(corners, score.tolist()):
        total[top:top + side, left:left + side] += value
        coverage[top:top + side, left:left + side] += 1.0
    mean = (total / coverage.clamp_min(1.0)).reshape(1, 1, height, width)
    sigma = max(1.0, side / 4)
    kernel = 2 * int(2 * sigma) + 1
    mean = gaussian_blur2d(mean, (kernel, kernel), (sigma, sigma), border_type="replicate")
    low, high = float(mean.min()), float(mean.max())
    if high - low < 1e-6:
        return torch.full((1, 1, height, width), 0.5)
    return ((mean - low) / (high - low)).reshape(1, 1, height, width)


def focus_mask(relevance: torch.Tensor, threshold: float | None = None, invert: bool = False) -> torch.Tensor:
    """The mask a relevance map gives: soft (the map itself) or 1 where it is >= ``threshold``; inverted if asked."""
    mask = relevance if threshold is None else (relevance >= threshold).float()
    return 1.0 - mask if invert else mask


__all__ = ["BATCH", "GRID", "WINDOW_SHARE", "focus_mask", "relevance_map", "window_corners"]
