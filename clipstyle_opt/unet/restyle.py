"""Restyling with a saved U-Net: photos of any size, folders of photos, and videos (``clipstyle apply``).

Output size and the grid the U-Net runs on: one rule for every surface,
`clipstyle_opt.sizing` (`target_hw`, `render_hw`), which says why an output no
larger than the training size is rendered on the training grid.

The U-Net draws its patterns at a fixed size in pixels, the size it learned at
the training size (``--size``, 512 px by default): applied to a larger image
they cover a smaller part of it (a 512 px training applied at 4096 px gives
strokes 1/8 as large relative to the picture). ``output_scale`` below 1, or
stylizing at a larger ``--size``, keeps them larger.

Large images are applied tile by tile (`clipstyle_opt.unet.tiling`): memory is about
6 bytes a pixel for the input and output images plus about 0.9 GB for one tile
(``tile_size`` 1024), on top of about 0.7 GB for Python and torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..errors import ConfigError
from ..imageio import check_min_size, pil_to_rgb8, read_image
from ..sizing import OutputSize, target_hw
from .model import StyleUNet
from .render import render
from .tiling import DEFAULT_TILE_SIZE, StatsMode

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""Files a folder given to ``apply`` contributes (by suffix, case-insensitive)."""


@dataclass
class Restyler:
    """A loaded U-Net and how to apply it; `image` restyles one H x W x 3 uint8 image.

    tile_size: tile side in px (margins included, a multiple of 8, >= 152);
    stats: "thumbnail" or "exact" InstanceNorm statistics for images larger than a tile (`clipstyle_opt.unet.tiling`);
    training_size: the long side in px the U-Net was trained at (`unet.io.training_size_of` its metadata):
    outputs no larger are rendered on that grid and resized (`clipstyle_opt.sizing.render_hw`); None runs it
    at the output size.
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
        return render(self.unet, image, out_hw, self.training_size, tile_size=self.tile_size, stats=self.stats,
                      device=self.device, progress=progress)

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
