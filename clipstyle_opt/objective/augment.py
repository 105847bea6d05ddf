"""Random crops with a random perspective warp, for the patch loss.

The reference crops, warps and resizes its 64 patches one by one in a Python
loop. Here the parameters are drawn once from one ``torch.Generator`` and all
crops go through a single gather, a single kornia perspective warp and a
single resize. `apply_per_crop` computes the same result crop by crop (the
reference's structure), for the equivalence test and the benchmark baseline.

Conventions follow the reference's torchvision ``RandomPerspective(fill=0)``
followed by ``Resize(224)``, checked in ``tests/test_augment.py`` against
torchvision's own functional ``perspective`` on the same corner points:

- torchvision places pixel centres at half-integer coordinates (pixel ``i``
  spans ``[i, i + 1]``) and reads the corner points in that frame; kornia with
  ``align_corners=True`` puts pixel centres on integers. The homographies here
  are therefore built from the corner points shifted by half a pixel.
  Without the shift our warps differed by up to 0.84 per pixel (mean 0.057)
  on a random 128 px crop.
- torchvision fills with 0 by warping a channel of ones with the image and
  multiplying by it, so pixels whose bilinear footprint straddles the border
  are attenuated once by the zero padding and once more by that mask. We do
  the same (the mask needs no gradient; it costs one extra 1-channel warp).
- ``Resize(224)`` on a tensor is bilinear (the 2021 torchvision the reference
  pinned did not antialias tensors; upscaling 128 px crops it would not matter).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from torch.nn import functional as F

from .masks import window_mass


@dataclass
class CropParams:
    """Where each of N crops sits and how it is warped.

    tops, lefts: (N,) int64 top-left corners in px; size: crop side in px;
    homographies: (N, 3, 3) float32 maps from source to warped crop pixel
    coordinates, pixel centres on integers (kornia's ``align_corners=True`` frame);
    regions: (N,) int64 index of the region (mask) each crop was drawn in, or None (one region, the whole image).
    """

    tops: torch.Tensor
    lefts: torch.Tensor
    size: int
    homographies: torch.Tensor
    regions: torch.Tensor | None = None

    def to(self, device: torch.device) -> "CropParams":
        """The same crops with every tensor moved to ``device``."""
        regions = None if self.regions is None else self.regions.to(device)
        return CropParams(self.tops.to(device), self.lefts.to(device), self.size, self.homographies.to(device),
                          regions)

    def __len__(self) -> int:
        return int(self.tops.shape[0])

    def subset(self, start: int, stop: int) -> "CropParams":
        """Crops ``start`` to ``stop - 1``."""
        regions = None if self.regions is None else self.regions[start:stop]
        return CropParams(self.tops[start:stop], self.lefts[start:stop], self.size, self.homographies[start:stop],
                          regions)

    @staticmethod
    def concat(parts: "list[CropParams]") -> "CropParams":
        """The crops of ``parts`` one after the other (same size), each part's crops tagged with its index."""
        regions = torch.cat([torch.full((len(p),), index, dtype=torch.int64) for index, p in enumerate(parts)])
        return CropParams(torch.cat([p.tops for p in parts]), torch.cat([p.lefts for p in parts]), parts[0].size,
                          torch.cat([p.homographies for p in parts]), regions)


def _randint_below(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in [0, high) elementwise (high >= 1)."""
    uniform = torch.rand(high.shape, generator=generator)
    return torch.minimum((uniform * high).floor(), high - 1).long()


def sample_crop_params(n: int, image_hw: tuple[int, int], size: int, distortion: float,
                       generator: torch.Generator, where: torch.Tensor | None = None) -> CropParams:
    """Draw ``n`` crops of ``size`` px (clamped to the short side) with perspective ``distortion`` in [0, 1].

    where: None (corners uniform, as the reference), or a (1, 1, H, W) mask in
    [0, 1]: each crop's corner is then drawn with probability proportional to
    the share of its window the mask covers (`masks.window_mass`), so crops
    land where the style goes.

    The corner displacements follow torchvision's RandomPerspective, which
    the reference uses: each corner moves inward by up to distortion * half
    the side, integer pixels. Those corners are read in torchvision's frame
    (pixel centres at +0.5), hence the half-pixel shift into kornia's.
    """
    height, width = image_hw
    size = min(size, height, width)
    if where is None:
        tops = _randint_below(torch.full((n,), height - size + 1, dtype=torch.float64), generator)
        lefts = _randint_below(torch.full((n,), width - size + 1, dtype=torch.float64), generator)
    else:
        mass = window_mass(where.cpu(), size)  # (H - size + 1, W - size + 1)
        flat = mass.flatten().double()
        if float(flat.sum()) <= 0:  # a mask too thin for any window: fall back to uniform corners
            flat = torch.ones_like(flat)
        corners = torch.multinomial(flat, n, replacement=True, generator=generator)
        tops, lefts = corners // mass.shape[1], corners % mass.shape[1]
    half = size // 2
    reach = torch.tensor(float(int(distortion * half) + 1), dtype=torch.float64)
    shifts = _randint_below(reach.expand(n, 4, 2), generator).float()  # (N, corner, xy)
    last = float(size - 1)
    start = torch.tensor([[0.0, 0.0], [last, 0.0], [last, last], [0.0, last]]).expand(n, 4, 2)
    inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    end = start + inward * shifts
    homographies = get_perspective_transform((start - 0.5).contiguous(), (end - 0.5).contiguous())
    return CropParams(tops, lefts, size, homographies)


CROP_RESIZE_MODE = "bilinear"
"""How warped crops are resized to the encoder's input size: as the reference's
``torchvision.transforms.Resize`` (bilinear, no antialiasing)."""


def _resize(patches: torch.Tensor, out_size: int | None) -> torch.Tensor:
    if out_size is None or patches.shape[-1] == out_size:
        return patches
    return F.interpolate(patches, size=(out_size, out_size), mode=CROP_RESIZE_MODE, align_corners=False,
                         antialias=False)


def _zero_filled(patches: torch.Tensor, warp: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``warp(patches)`` filled as torchvision's ``fill=0``: times the warp of a channel of ones (no gradient)."""
    with torch.no_grad():
        coverage = warp(patches.new_ones(patches.shape[0], 1, *patches.shape[-2:]))
    return warp(patches) * coverage


def _warp(patches: torch.Tensor, homographies: torch.Tensor) -> torch.Tensor:
    """Perspective-warp (N, C, S, S) patches with zero fill, as torchvision's ``perspective(fill=0)``."""
    size = patches.shape[-1]
    homographies = homographies.to(patches.device, patches.dtype)
    return _zero_filled(patches, lambda x: warp_perspective(x, homographies, (size, size), padding_mode="zeros",
                                                            align_corners=True))


class _GatherCrops(torch.autograd.Function):
    """(1, C, H, W) image -> (N, C, S, S) square crops at integer corners, with a deterministic backward.

    Written by hand because the plain gather's backward (index_put_ with
    accumulate) is not deterministic on the CPU or on CUDA once crops overlap,
    which they do: the same seed then gives a different image from run to run.
    Here the backward adds each crop's gradient into its window in crop order.
    """

    @staticmethod
    def forward(ctx, image: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,  # type: ignore[override]
                size: int) -> torch.Tensor:
        ctx.save_for_backward(tops, lefts)
        ctx.size, ctx.image_shape = size, image.shape
        offsets = torch.arange(size, device=image.device)
        rows = (tops.to(image.device)[:, None] + offsets)[:, :, None]  # (N, S, 1)
        cols = (lefts.to(image.device)[:, None] + offsets)[:, None, :]  # (N, 1, S)
        return image[0][:, rows, cols].transpose(0, 1)  # (N, C, S, S)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        tops, lefts = ctx.saved_tensors
        size = ctx.size
        grad_image = grad.new_zeros(ctx.image_shape)
        for index, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist())):
            grad_image[0, :, top:top + size, left:left + size] += grad[index]
        return grad_image, None, None, None


def apply_batched(image: torch.Tensor, params: CropParams, out_size: int | None = None) -> torch.Tensor:
    """Crops of a (1, C, H, W) image -> (N, C, out, out): one gather, one warp, one resize."""
    if image.shape[0] != 1:
        raise ValueError("apply_batched takes a single image (batch of 1)")
    patches = _GatherCrops.apply(image, params.tops, params.lefts, params.size)
    return _resize(_warp(patches, params.homographies), out_size)


class StaticCrops:
    """Crop parameters held in fixed device buffers, for a training step captured as a CUDA graph.

    A captured graph replays fixed kernels on fixed memory: every step's crops
    must be copied into the same tensors (`load`), and nothing in the crop path
    may read a value back to the host. So, unlike `apply_batched`, the warp
    takes inverse homographies computed on the host (kornia's warp inverts on
    the device, and CUDA's inverse reads an error flag back) and the gather's
    backward is an ``index_add_`` (the deterministic `_GatherCrops` loops over the
    corners on the host). On CUDA the warp's own backward (grid_sample) adds
    atomically anyway, so this gives up no determinism there.

    tops, lefts: (N,) int64; inverse: (N, 3, 3) float32 maps from warped-crop
    to source-crop pixel coordinates (pixel centres on integers); size: crop side in px.
    """

    regions: torch.Tensor | None = None  # one region: crops of several regions select by value (host reads)

    def __init__(self, n: int, size: int, device: torch.device) -> None:
        self.size = size
        self.tops = torch.zeros(n, dtype=torch.int64, device=device)
        self.lefts = torch.zeros(n, dtype=torch.int64, device=device)
        self.inverse = torch.eye(3, device=device).repeat(n, 1, 1)

    def __len__(self) -> int:
        return int(self.tops.shape[0])

    def load(self, params: CropParams) -> None:
        """Copy ``params`` (same number and size of crops) into the buffers."""
        if len(params) != len(self) or params.size != self.size:
            raise ValueError(f"{len(params)} crops of {params.size} px do not fit buffers for {len(self)} "
                             f"of {self.size}")
        self.tops.copy_(params.tops, non_blocking=True)
        self.lefts.copy_(params.lefts, non_blocking=True)
        self.inverse.copy_(torch.linalg.inv(params.homographies.double()).float(), non_blocking=True)


class _GatherCropsOnDevice(torch.autograd.Function):
    """`_GatherCrops` without host reads: the backward scatters with ``index_add_`` (atomic on CUDA)."""

    @staticmethod
    def forward(ctx, image: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,  # type: ignore[override]
                size: int) -> torch.Tensor:
        _, channels, height, width = image.shape
        offsets = torch.arange(size, device=image.device)
        rows = tops[:, None, None] + offsets[None, :, None]  # (N, S, 1)
        cols = lefts[:, None, None] + offsets[None, None, :]  # (N, 1, S)
        flat = (rows * width + cols).reshape(-1)  # (N * S * S,) positions in the flattened image
        ctx.save_for_backward(flat)
        ctx.image_shape = image.shape
        n = tops.shape[0]
        picked = image.reshape(channels, height * width).index_select(1, flat)  # (C, N * S * S)
        return picked.reshape(channels, n, size, size).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (flat,) = ctx.saved_tensors
        _, channels, height, width = ctx.image_shape
        grad_image = grad.new_zeros(channels, height * width)
        grad_image.index_add_(1, flat, grad.transpose(0, 1).reshape(channels, -1))
        return grad_image.reshape(ctx.image_shape), None, None, None


def _warp_by_inverse(patches: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The perspective warp of `_warp` (zero fill times coverage), from inverse homographies (N, 3, 3).

    Each output pixel (x, y) samples the patch bilinearly at inverse @ (x, y, 1),
    pixel centres on integers (grid_sample with align_corners=True), as kornia's
    ``warp_perspective`` does with the forward homography.
    """
    n, _, size, _ = patches.shape
    axis = torch.arange(size, device=patches.device, dtype=torch.float32)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)  # (1, S*S, xy1)
    source = points @ inverse.to(torch.float32).transpose(1, 2)  # (N, S*S, 3)
    xy = source[..., :2] / source[..., 2:]
    grid = (xy * (2.0 / max(size - 1, 1)) - 1.0).reshape(n, size, size, 2).to(patches.dtype)
    return _zero_filled(patches, lambda x: F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                                         align_corners=True))


def apply_static(image: torch.Tensor, crops: StaticCrops, out_size: int | None = None) -> torch.Tensor:
    """`apply_batched` for crops in `StaticCrops` buffers, with no host reads (capturable as a CUDA graph)."""
    if image.shape[0] != 1:
        raise ValueError("apply_static takes a single image (batch of 1)")
    patches = _GatherCropsOnDevice.apply(image, crops.tops, crops.lefts, crops.size)
    return _resize(_warp_by_inverse(patches, crops.inverse), out_size)


def apply_per_crop(image: torch.Tensor, params: CropParams, out_size: int | None = None) -> torch.Tensor:
    """Same result as `apply_batched`, crop by crop in a Python loop (the reference's structure)."""
    patches = []
    size = params.size
    for i in range(params.tops.shape[0]):
        top, left = int(params.tops[i]), int(params.lefts[i])
        crop = image[:, :, top:top + size, left:left + size]
        patches.append(_resize(_warp(crop, params.homographies[i:i + 1]), out_size))
    return torch.cat(patches, dim=0)
