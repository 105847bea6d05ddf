"""Render a trained U-Net at an output size: the one way the engine, ``apply_unet_file`` and `Restyler` run it.

The grid it runs on is `clipstyle_opt.sizing.render_hw`'s: the training grid for an output no
larger than the training size, else the output size itself; the result is resized to the output
size. Float tensors and 8-bit arrays go through the same steps, each with its own resize
(`imageio.resize` on floats, Pillow on 8 bits), so an 8-bit image is never held as floats.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union, overload

import numpy as np
import torch
from torch import nn

from ..devices import resolve_device
from ..imageio import ImageSource, check_min_size, load_image, resize
from ..sizing import OutputSize, render_hw, target_hw
from .io import load_unet, training_size_of
from .model import apply_unet
from .tiling import DEFAULT_TILE_SIZE, Progress, StatsMode, apply_tiled, apply_tiled_uint8


def resize_rgb8(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an H x W x 3 uint8 image (Pillow: antialiased when shrinking), still uint8."""
    if image.shape[:2] == tuple(hw):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image, "RGB").resize((hw[1], hw[0]), Image.Resampling.BICUBIC))


@overload
def render(unet: nn.Module, image: torch.Tensor, out_hw: tuple[int, int], training_size: Optional[int], *,
           tile_size: int = ..., stats: StatsMode = ..., device: Union[str, torch.device] = ...,
           untiled_pixels: int = ..., progress: Optional[Progress] = ...) -> torch.Tensor: ...
@overload
def render(unet: nn.Module, image: np.ndarray, out_hw: tuple[int, int], training_size: Optional[int], *,
           tile_size: int = ..., stats: StatsMode = ..., device: Union[str, torch.device] = ...,
           untiled_pixels: int = ..., progress: Optional[Progress] = ...) -> np.ndarray: ...


def render(unet: nn.Module, image: Union[torch.Tensor, np.ndarray], out_hw: tuple[int, int],
           training_size: Optional[int], *, tile_size: int = DEFAULT_TILE_SIZE, stats: StatsMode = "thumbnail",
           device: Union[str, torch.device] = "cpu", untiled_pixels: int = 0,
           progress: Optional[Progress] = None) -> Union[torch.Tensor, np.ndarray]:
    """Restyle ``image`` with ``unet`` and return it at ``out_hw`` (height, width) px.

    image: (1, 3, H, W) float in [0, 1] (returns (1, 3, h, w) float32 on the CPU), or an H x W x 3
    uint8 array (returns h x w x 3 uint8). training_size: the U-Net's training long side in px (None:
    unknown), which picks the grid (`render_hw`). untiled_pixels: a float image whose grid has at most
    this many pixels runs in one piece (`apply_unet` without gradients) rather than through
    `clipstyle_opt.unet.tiling`; tile_size and stats are the tiling's.
    """
    if isinstance(image, np.ndarray):
        grid = resize_rgb8(image, render_hw(image.shape[0], image.shape[1], out_hw, training_size))
        styled = apply_tiled_uint8(unet, grid, tile_size=tile_size, stats=stats, device=device, progress=progress)
        return resize_rgb8(styled, out_hw)
    grid_hw = render_hw(*image.shape[-2:], out_hw, training_size)
    grid_input = resize(image, grid_hw)
    if grid_hw[0] * grid_hw[1] <= untiled_pixels:
        with torch.no_grad():
            styled = apply_unet(unet.eval(), grid_input.to(device)).float().cpu()
    else:  # bounded memory for large outputs
        styled = apply_tiled(unet, grid_input, tile_size=tile_size, stats=stats, device=device, progress=progress)
    return resize(styled, out_hw)


def apply_unet_file(unet_path: str | Path, content: ImageSource, *, output_size: int | None = None,
                    max_output_size: int | None = None, output_scale: float | None = None, device: str = "auto",
                    tile_size: int = DEFAULT_TILE_SIZE, stats: StatsMode = "thumbnail") -> torch.Tensor:
    """Restyle ``content`` with a saved U-Net; returns (1, 3, H, W) in [0, 1] on the CPU.

    Output size: the content's own by default (no cap), else ``output_size`` (long side, px)
    or ``output_scale`` (times each side), at most ``max_output_size`` on the long side
    (`clipstyle_opt.sizing.target_hw`). Images larger than ``tile_size`` are applied tile by
    tile (`clipstyle_opt.unet.tiling`); for bounded memory on files use `clipstyle_opt.unet.restyle.Restyler`.
    An output no larger than the training size saved with the U-Net is rendered on that grid and
    resized (`clipstyle_opt.sizing.render_hw`), so the photo it was trained on comes out as trained.
    """
    unet, metadata = load_unet(unet_path)
    torch_device = resolve_device(device)
    image = load_image(content, "photo")
    check_min_size(*image.shape[-2:], "photo")
    hw = target_hw(*image.shape[-2:], OutputSize(output_size, output_scale, max_output_size))
    return render(unet, image, hw, training_size_of(metadata), tile_size=tile_size, stats=stats, device=torch_device)


__all__ = ["apply_unet_file", "render", "resize_rgb8"]
