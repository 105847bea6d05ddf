"""InstanceNorm statistics frozen for tiling: per-channel moments over a whole image, and norm layers that use them.

Why frozen: the U-Net's InstanceNorm layers normalize each channel over the whole image; a tile
normalized by its own statistics would not match its neighbours (see `clipstyle_opt.unet.tiling`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn


@dataclass
class NormStats:
    """Per-channel mean and biased variance of one InstanceNorm layer's input over the whole image (float64)."""

    mean: torch.Tensor
    var: torch.Tensor


class FrozenInstanceNorm(nn.Module):
    """InstanceNorm with given statistics: ``(x - mean) / sqrt(var + eps)``, in place under inference."""

    def __init__(self, stats: NormStats, eps: float) -> None:
        super().__init__()
        self.register_buffer("mean", stats.mean.float().view(1, -1, 1, 1))
        self.register_buffer("inv_std", torch.rsqrt(stats.var + eps).float().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (1, C, H, W) normalized with the frozen per-channel mean and 1/std (in place under
        inference mode).
        """
        if torch.is_inference_mode_enabled():
            return x.sub_(self.mean).mul_(self.inv_std)
        return (x - self.mean) * self.inv_std


def norm_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every InstanceNorm layer, frozen or not, in module order."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, (nn.InstanceNorm2d, FrozenInstanceNorm))]


def replace_norms(net: nn.Module, make: Callable[[str, nn.Module], nn.Module]) -> None:
    """Replace every norm layer of ``net`` in place by ``make(name, layer)``."""
    for name, norm in norm_layers(net):
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, make(name, norm))


def check_norms(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """`norm_layers`, refusing any that tiling cannot freeze (affine or with running statistics)."""
    norms = norm_layers(unet)
    for name, norm in norms:
        if not isinstance(norm, nn.InstanceNorm2d) or norm.affine or norm.track_running_stats:
            raise ValueError(f"tiling supports InstanceNorm2d without affine or running stats only; {name} is {norm}")
    return norms


def frozen_copy(unet: nn.Module, stats: Sequence[NormStats]) -> nn.Module:
    """A copy of ``unet`` whose InstanceNorm layers use ``stats`` (one per layer, in module order)."""
    norms = check_norms(unet)
    if len(norms) != len(stats):
        raise ValueError(f"{len(stats)} statistics for {len(norms)} norm layers")
    net = copy.deepcopy(unet).eval()
    by_name = {name: (s, norm.eps) for (name, norm), s in zip(norms, stats)}
    replace_norms(net, lambda name, _norm: FrozenInstanceNorm(*by_name[name]))
    return net



class Moments:
    """Chan et al.'s parallel combination of per-region count, mean and sum of squared deviations, in float64."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, region: torch.Tensor) -> None:
        """Fold a region's values (1, C, H, W) into the running count, mean and squared deviations."""
        values = region.detach().double().flatten(2)[0]  # (C, n)
        n = values.shape[1]
        mean = values.mean(dim=1)
        m2 = (values - mean[:, None]).square().sum(dim=1)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def stats(self) -> NormStats:
        """The per-channel mean and (biased) variance of everything added so far."""
        return NormStats(self.mean.clone(), self.m2 / self.count)



def whole_stats(x: torch.Tensor) -> NormStats:
    """Moments of one (1, C, h, w) tensor over all its pixels, in float64 on the CPU."""
    values = x.detach().double().flatten(2)[0].cpu()
    return NormStats(values.mean(dim=1), values.var(dim=1, unbiased=False))



__all__ = ["FrozenInstanceNorm", "Moments", "NormStats", "check_norms", "frozen_copy", "norm_layers", "replace_norms",
           "whole_stats"]
