"""Masks that say where the style goes: reading, resizing, crop placement weights and compositing.

A mask is a (1, 1, H, W) float tensor in [0, 1]: 1 (white) = stylize, 0
(black) = keep the photo; grey values blend. Files may be any image Pillow
reads, of any size (resized to the photo, aspect not kept: a mask is drawn
over the photo); colour files are read as luminance, an alpha channel is
composited on white first, as every input image is.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ..errors import ConfigError, ImageReadError
from ..imageio import load_image

EMPTY_MASK_MAX = 1.0 / 255.0
"""A mask whose largest value is at most this (one 8-bit level) is all black: nothing would be stylized."""

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights, as Pillow's ``convert("L")``."""


def load_mask(source: Any, what: str = "--mask") -> torch.Tensor:
    """A path, PIL image, HxW/HxWx3 array or tensor -> (1, 1, H, W) float32 in [0, 1].

    Refuses (one-line `ConfigError`, exit 2: the mask is part of the command)
    a file that is not an image and a mask that is all black.
    """
    if isinstance(source, torch.Tensor) and source.ndim in (2, 3, 4) and (
            source.ndim == 2 or source.shape[-3] == 1):
        mask = source.detach().float().cpu().reshape(1, 1, *source.shape[-2:])
        if not bool(torch.isfinite(mask).all()) or mask.min() < 0 or mask.max() > 1:
            raise ConfigError(f"{what}: a mask tensor must hold finite values in [0, 1]")
    else:
        try:
            rgb = load_image(source, f"{what} image")
        except ImageReadError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        luma = torch.tensor(LUMA).reshape(1, 3, 1, 1)
        mask = (rgb * luma).sum(dim=1, keepdim=True).clamp(0.0, 1.0)
    if float(mask.max()) <= EMPTY_MASK_MAX:
        name = f" {source}" if isinstance(source, str) else ""
        raise ConfigError(f"{what}{name} is all black: nothing would be stylized (white = stylize, black = keep)")
    return mask


def resize_mask(mask: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) of a (1, 1, h, w) mask, clamped to [0, 1]."""
    if tuple(mask.shape[-2:]) == tuple(size_hw):
        return mask
    shrinking = size_hw[0] < mask.shape[-2] or size_hw[1] < mask.shape[-1]
    return F.interpolate(mask, size=size_hw, mode="bilinear", align_corners=False, antialias=shrinking).clamp(0, 1)


def composite(stylized: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * stylized + (1 - mask) * photo``, the mask resized to the images' size."""
    mask = resize_mask(mask.to(stylized.device, stylized.dtype), tuple(stylized.shape[-2:]))
    return mask * stylized + (1.0 - mask) * photo.to(stylized.device, stylized.dtype)


def window_mass(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of a (1, 1, H, W) mask over every ``size`` x ``size`` window: (H - size + 1, W - size + 1).

    Entry [t, l] belongs to the window whose top-left corner is (t, l); it is
    the share of that crop the mask covers, the crop's chance to be drawn.
    """
    return F.avg_pool2d(mask.float(), size, stride=1)[0, 0]


def union(masks: list[torch.Tensor]) -> torch.Tensor:
    """Pixelwise maximum of same-sized masks."""
    out = masks[0]
    for mask in masks[1:]:
        out = torch.maximum(out, mask)
    return out


__all__ = ["EMPTY_MASK_MAX", "composite", "load_mask", "resize_mask", "union", "window_mass"]
