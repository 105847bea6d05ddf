"""The small U-Net that CLIPstyler trains per content image.

Input and output: NCHW float RGB in [0, 1]; both sides must be multiples of 8.
Fully convolutional, so a U-Net trained at 512 px applies to larger images.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResidualConvBlock(nn.Module):
    """Two 3x3 conv -> InstanceNorm (no affine) -> ReLU, plus a 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.InstanceNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.InstanceNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x`` (N, C_in, H, W): (N, C_out, H, W), the shortcut added."""
        out = self.body(x)
        if torch.is_grad_enabled():
            return out + self.shortcut(x)
        return out.add_(self.shortcut(x))  # applying: one full-size tensor less at the peak


class StyleUNet(nn.Module):
    """Reference U-Net: widths w, 2w, 4w down, 8w bottleneck (w = 16: ~0.6 M parameters)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.width = width
        self.lift = nn.Conv2d(3, w, 1)
        self.stem = ResidualConvBlock(w, w)
        level_widths = (w, 2 * w, 4 * w)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        previous = w
        for channels in level_widths:
            self.down_blocks.append(ResidualConvBlock(previous, channels))
            self.downsamples.append(nn.Conv2d(channels, channels, 4, stride=2, padding=1))
            previous = channels
        self.bottleneck = ResidualConvBlock(previous, 8 * w)
        self.up_blocks = nn.ModuleList()
        previous = 8 * w
        for channels in reversed(level_widths):
            self.up_blocks.append(ResidualConvBlock(previous + channels, channels))
            previous = channels
        self.head_block = ResidualConvBlock(previous + w, w)
        self.to_rgb = nn.Conv2d(w, 3, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The stylized image (N, 3, H, W) in [0, 1] of ``image`` (N, 3, H, W) in [0, 1]; H and W must be
        multiples of 8 (else ValueError).
        """
        if image.shape[-1] % 8 or image.shape[-2] % 8:
            raise ValueError(f"U-Net input sides must be multiples of 8, got {tuple(image.shape[-2:])}")
        # Each tensor is let go as soon as it is used (del, pop): applying a large tile without
        # gradients, that keeps about 40 % less at the full-size peak. Autograd keeps what it needs.
        stem = self.stem(self.lift(image))
        x = stem
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for block in self.up_blocks:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = torch.cat([x, skips.pop()], dim=1)
            x = block(x)
        x = torch.cat([x, stem], dim=1)
        del stem
        x = self.head_block(x)
        return torch.sigmoid(self.to_rgb(x))


def seeded_unet(width: int, seed: int) -> StyleUNet:
    """A freshly initialised U-Net whose weights depend only on ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StyleUNet(width)


def apply_unet(unet: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Run the U-Net on an NCHW image in [0, 1] of any size: reflect-pad to multiples of 8, then crop back."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else image
    return unet(padded)[..., :height, :width]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
