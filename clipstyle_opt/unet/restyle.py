"""Restyling with a saved U-Net: photos of any size, folders of photos, and videos (``clipstyle apply``).

Output size, one rule for every input (`target_hw`):

- default: the input's own size (no cap; the only limit is
  ``$CLIPSTYLE_MAX_PIXELS`` output pixels, default 200 M, the same guard as
  for reading, so memory is what bounds it);
- ``output_size=N``: long side N px, aspect kept;
- ``output_scale=F``: F times the input's width and height (0.5 = half);
- ``max_output_size=N``: at most N px on the long side (shrinks only).

The U-Net draws its patterns at a fixed size in pixels, the size it learned at
the training size (``--size``, 512 px by default): applied to a larger image
they cover a smaller part of it (a 512 px training applied at 4096 px gives
strokes 1/8 as large relative to the picture). ``output_scale`` below 1, or
stylizing at a larger ``--size``, keeps them larger.

Where the U-Net runs (`render_hw`): an output no larger than the training size
(long side ``--size``) is rendered on the training grid, the photo resized to
its training size as in training, and the result resized to the output size.
Why: the U-Net is fitted to one photo on one pixel grid, and its stride-2
levels make it sensitive to the sampling phase. On chelsea.png at 256 px
(micro CLIP, 40 steps) the same weights scored LPIPS-VGG 0.40 on the training
grid, 0.54 to 0.57 on the photo shifted by 1, 2 or 4 px, and 0.44 shifted by 8
(the total stride); rendering at 170 instead of the training 168 rows gave
0.54, and the training-grid render resized to 170 rows 0.42. CLIPstyler itself
renders its training input. A larger output runs the U-Net at the output size
(tiled), where this costs some fidelity as well as pattern scale.

Large images are applied tile by tile (`clipstyle_opt.unet.tiling`): memory is about
6 bytes a pixel for the input and output images plus about 0.9 GB for one tile
(``tile_size`` 1024), on top of about 0.7 GB for Python and torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..errors import ConfigError
from ..imageio import MAX_PIXELS_ENV, check_min_size, fit_size, max_pixels, pil_to_rgb8, read_image
from .tiling import DEFAULT_TILE_SIZE, StatsMode, apply_tiled_uint8
from .model import StyleUNet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""Files a folder given to ``apply`` contributes (by suffix, case-insensitive)."""


@dataclass(frozen=True)
class OutputSize:
    """How big the output is (see the module docstring); at most one of ``size`` and ``scale``."""

    size: Optional[int] = None
    scale: Optional[float] = None
    max_size: Optional[int] = None

    def __post_init__(self) -> None:
        if self.size is not None and self.scale is not None:
            raise ConfigError("give --output-size or --output-scale, not both")
        if self.size is not None and self.size < 8:
            raise ConfigError(f"--output-size must be >= 8 px, got {self.size}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"--output-scale must be a number > 0, got {self.scale}")
        if self.max_size is not None and self.max_size < 8:
            raise ConfigError(f"--max-output-size must be >= 8 px, got {self.max_size}")


def target_hw(height: int, width: int, size: OutputSize) -> tuple[int, int]:
    """The output (height, width) for an input of ``height`` x ``width`` px; refuses one over the pixel limit."""
    long_side = max(height, width)
    if size.size is not None:
        scale = size.size / long_side
    elif size.scale is not None:
        scale = size.scale
    else:
        scale = 1.0
    if size.max_size is not None:
        scale = min(scale, size.max_size / long_side)
    out = (height, width) if scale == 1.0 else (max(8, round(height * scale)), max(8, round(width * scale)))
    limit = max_pixels()
    if out[0] * out[1] > limit:
        raise ConfigError(f"the output would be {out[1]}x{out[0]} = {out[0] * out[1]:,} px, over the limit of "
                          f"{limit:,} px; lower --output-size or --output-scale, or set {MAX_PIXELS_ENV}")
    return out


def render_hw(height: int, width: int, out_hw: tuple[int, int], training_size: Optional[int]) -> tuple[int, int]:
    """Where to run the U-Net for an input of ``height`` x ``width`` px and an output of ``out_hw``.

    training_size: the long side in px the U-Net was trained at (``StyleConfig.size``; None: unknown).
    Returns the training grid (`fit_size` of the input at ``training_size``, multiples of 8) when the
    output's long side is at most ``training_size``, else ``out_hw`` itself (see the module docstring).
    """
    if training_size is not None and max(out_hw) <= training_size:
        return fit_size(height, width, training_size)
    return out_hw


def training_size_of(metadata: dict) -> Optional[int]:
    """The training long side recorded in a saved U-Net's metadata (`engine.save_unet`), or None."""
    size = (metadata.get("config") or {}).get("size") if isinstance(metadata, dict) else None
    return size if isinstance(size, int) and size >= 8 else None


def resize_rgb8(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an H x W x 3 uint8 image (Pillow: antialiased when shrinking), still uint8."""
    if image.shape[:2] == tuple(hw):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image, "RGB").resize((hw[1], hw[0]), Image.Resampling.BICUBIC))


@dataclass
class Restyler:
    """A loaded U-Net and how to apply it; `image` restyles one H x W x 3 uint8 image.

    tile_size: tile side in px (margins included, a multiple of 8, >= 152);
    stats: "thumbnail" or "exact" InstanceNorm statistics for images larger than a tile (`clipstyle_opt.unet.tiling`);
    training_size: the long side in px the U-Net was trained at (`training_size_of` its metadata): outputs
    no larger are rendered on that grid and resized (`render_hw`); None runs it at the output size.
    """

    unet: StyleUNet
    size: OutputSize = OutputSize()
    tile_size: int = DEFAULT_TILE_SIZE
    stats: StatsMode = "thumbnail"
    device: Union[str, torch.device] = "cpu"
    training_size: Optional[int] = None

    def __post_init__(self) -> None:
        if self.tile_size % 8 or self.tile_size < 152:
            raise ConfigError(f"--tile-size must be a multiple of 8 and at least 152 px, got {self.tile_size}")
        self.unet = self.unet.to(self.device).eval()

    def image(self, image: np.ndarray, progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """Restyle an H x W x 3 uint8 image at the output size; returns H' x W' x 3 uint8."""
        check_min_size(image.shape[0], image.shape[1], "photo")
        out_hw = target_hw(image.shape[0], image.shape[1], self.size)
        image = resize_rgb8(image, render_hw(image.shape[0], image.shape[1], out_hw, self.training_size))
        styled = apply_tiled_uint8(self.unet, image, tile_size=self.tile_size, stats=self.stats, device=self.device,
                                   progress=progress)
        return resize_rgb8(styled, out_hw)

    def file(self, path: Union[str, Path], progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """Read, check and restyle one photo file (`ImageReadError` if it cannot be read)."""
        photo = read_image(path, "photo")
        check_min_size(photo.height, photo.width, "photo")
        target_hw(photo.height, photo.width, self.size)  # refuse before decoding work
        array = pil_to_rgb8(photo)
        del photo
        return self.image(array, progress)


def photos_in(folder: Union[str, Path]) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
