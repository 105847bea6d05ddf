"""A CLIP-free measure of whether a stylization drew stripes.

Used by the end-to-end tests with the micro models and by `microclip.pattern_check`.
It lives in the kit rather than in ``clipstyle_opt.testing`` because it only
answers the kit's question (did a model that knows "stripes" make the U-Net
draw them?); nothing in the package or in a user's test needs it.
"""
from __future__ import annotations

import torch
from kornia.filters import spatial_gradient


def orientation_coherence(image: torch.Tensor) -> float:
    """How much of an image's edge energy shares one orientation, in [0, 1].

    image: (1, C, H, W) float in [0, 1]. From the structure tensor summed over
    the whole image and its channels: |(Jxx - Jyy, 2 Jxy)| / (Jxx + Jyy).
    Parallel stripes give a value near 1; dots, noise, or a photo's edges in
    all directions give a low one. It needs no CLIP, so it checks what a
    person would see, not what a micro model scores.
    """
    grad = spatial_gradient(image.float())  # (1, C, 2, H, W): d/dx, d/dy
    gx, gy = grad[:, :, 0], grad[:, :, 1]
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    return float(torch.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy))
