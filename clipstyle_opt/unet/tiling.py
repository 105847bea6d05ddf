"""Apply a trained U-Net to an image of any size in bounded memory, tile by tile, without seams.

Two things make a tile's output equal the untiled output (to float rounding),
so tiles are simply stitched, with no blending to hide differences:

1. Context. Each tile is cut with a margin of `margin_for` px around the core
   it contributes: the U-Net's receptive-field radius (69 px for the reference
   architecture, measured by `receptive_radius`) rounded up to a multiple of 8,
   so 72 px. Core and tile edges lie on multiples of 8, so the three stride-2
   levels see the same pixel grid as the untiled image. Every output pixel
   comes from the one tile whose core holds it, computed from exactly the
   inputs the untiled network would use.
2. Statistics. The U-Net's 18 InstanceNorm layers normalize each channel by
   its mean and variance over the *whole* image; per tile these differ, and
   the seams would show. The statistics are computed once for the whole image
   and frozen in every tile (`norm_statistics`): exactly (``stats="exact"``:
   norm k needs norms 1..k-1 fixed, so it takes one pass per norm layer, about
   eight forward passes' compute in all) or, the default for images larger
   than a tile, from a thumbnail that fits in one tile (``stats="thumbnail"``,
   one small pass).

# deviation: not in CLIPstyler, which applies the U-Net to one 512 px image.
The thumbnail statistics are Thumbnail Instance Normalization (Chen et al.,
"Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance
Normalization", AAAI 2022); they change the output slightly against the
untiled network (figures in benchmarks/RESULTS.md), uniformly, so without
seams. An image that fits in one tile is the untiled computation itself.

Memory: about ``TILE_BYTES_PER_PIXEL`` bytes per pixel of one tile (float32,
width 16) on top of the input and output images; the image size is limited
only by the memory for those two (3 bytes a pixel each at 8 bits).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional, Union

import numpy as np
import torch
from torch import nn

from .model import StyleUNet, apply_unet
from .norms import Moments, NormStats, check_norms, frozen_copy, replace_norms, whole_stats

StatsMode = Literal["thumbnail", "exact"]
STATS_MODES: tuple[str, ...] = ("thumbnail", "exact")
DEFAULT_TILE_SIZE = 1024
"""Default tile side in px, margins included (multiple of 8): about 0.9 GB of working memory per tile."""
TILE_BYTES_PER_PIXEL = 900
"""Peak working memory of the width-16 U-Net per pixel of a tile (float32 activations and skips), roughly."""
ALIGN = 8
"""Tiles start on multiples of this (the U-Net's total stride)."""

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each tile forward (statistics passes included)."""


@dataclass(frozen=True)
class Tile:
    """One tile in padded-image pixel coordinates (half-open ranges, all multiples of 8).

    core: the output pixels this tile contributes; box: the input it reads (core plus margins, clipped).
    """

    core: tuple[int, int, int, int]  # y0, y1, x0, x1
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class TilePlan:
    """How an ``height`` x ``width`` image is cut: the padded size (multiples of 8) and the tiles, row-major."""

    height: int
    width: int
    padded: tuple[int, int]
    margin: int
    tiles: tuple[Tile, ...]

    @property
    def single(self) -> bool:
        """Whether the plan is one tile (the image is rendered in one piece)."""
        return len(self.tiles) == 1


def _round_up(value: int, multiple: int = ALIGN) -> int:
    return -(-value // multiple) * multiple


def _spans(length: int, core: int) -> list[tuple[int, int]]:
    """Split [0, length) (a multiple of 8) into about-equal spans of at most ``core`` px, each a multiple of 8."""
    count = max(1, math.ceil(length / core))
    step = _round_up(math.ceil(length / count))
    edges = list(range(0, length, step)) + [length]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def plan_tiles(height: int, width: int, tile_size: int, margin: int) -> TilePlan:
    """Cut an image into tiles of at most ``tile_size`` px a side (margins included) with ``margin`` px of context.

    An image whose padded size fits in ``tile_size`` x ``tile_size`` is one tile.
    """
    if tile_size % ALIGN or margin % ALIGN:
        raise ValueError(f"tile_size and margin must be multiples of {ALIGN}, got {tile_size} and {margin}")
    if tile_size < 2 * margin + ALIGN:
        raise ValueError(f"tile_size must be at least {2 * margin + ALIGN} px (twice the {margin} px margin plus "
                         f"{ALIGN}), got {tile_size}")
    padded = (_round_up(height), _round_up(width))
    if max(padded) <= tile_size:
        whole = (0, padded[0], 0, padded[1])
        return TilePlan(height, width, padded, margin, (Tile(whole, whole),))
    core = tile_size - 2 * margin
    tiles = []
    for y0, y1 in _spans(padded[0], core if padded[0] > tile_size else padded[0]):
        for x0, x1 in _spans(padded[1], core if padded[1] > tile_size else padded[1]):
            box = (max(0, y0 - margin), min(padded[0], y1 + margin), max(0, x0 - margin), min(padded[1], x1 + margin))
            tiles.append(Tile((y0, y1, x0, x1), box))
    return TilePlan(height, width, padded, margin, tuple(tiles))


# --- the receptive field ---------------------------------------------------------------------------

_RADIUS_CACHE: dict[tuple[str, int], int] = {}


STYLE_UNET_RADIUS = 69
"""`receptive_radius` of `StyleUNet` (any width), as measured; tests/test_tiling.py measures it again."""


def receptive_radius(unet: nn.Module, probe: int = 256, _measure: bool = False) -> int:
    """The U-Net's receptive-field radius in px: how far from an output pixel an input pixel can change it.

    Measured, not derived: on a copy with positive conv weights and the norms
    removed (so no path cancels), the support of the gradient of one output
    pixel with respect to the input, for each of the 8 phases of the stride-8
    grid; the largest reach. 69 px for `StyleUNet` at any width. Cached per
    class and width.
    """
    key = (type(unet).__qualname__, int(getattr(unet, "width", 0)))
    if type(unet) is StyleUNet and not _measure:
        return STYLE_UNET_RADIUS
    if key in _RADIUS_CACHE:
        return _RADIUS_CACHE[key]
    # the reach does not depend on the width: probe a width-1 twin where there is one (seconds, not minutes)
    probe_net = (StyleUNet(1) if type(unet) is StyleUNet else copy.deepcopy(unet)).cpu().double().eval()
    replace_norms(probe_net, lambda name, norm: nn.Identity())
    with torch.no_grad():
        for module in probe_net.modules():
            if isinstance(module, nn.Conv2d):  # averaging filters: every path counts, nothing overflows
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    head = _last_conv(probe_net)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, _i, out: captured.append(out))  # before any output squashing
    try:
        # one sample per phase of the stride-8 grid; samples do not interact once the norms are gone
        image = torch.ones(ALIGN, 3, probe, probe, dtype=torch.float64, requires_grad=True)
        probe_net(image)
    finally:
        handle.remove()
    centre = probe // 2 - ALIGN // 2
    phases = torch.arange(ALIGN)
    captured[0][phases, :, centre + phases, centre + phases].sum().backward()
    assert image.grad is not None
    radius = 0
    for phase in range(ALIGN):
        reached = image.grad[phase].abs().sum(dim=0) > 0
        rows = reached.any(dim=1).nonzero().flatten()
        cols = reached.any(dim=0).nonzero().flatten()
        if int(rows.min()) == 0 or int(rows.max()) == probe - 1:  # the probe was too small to contain it
            return receptive_radius(unet, probe * 2, _measure)
        pixel = centre + phase
        radius = max(radius, pixel - int(rows.min()), int(rows.max()) - pixel,
                     pixel - int(cols.min()), int(cols.max()) - pixel)
    _RADIUS_CACHE[key] = radius
    return radius


def margin_for(unet: nn.Module) -> int:
    """Context margin of each tile: the receptive-field radius rounded up to a multiple of 8 (72 px)."""
    return _round_up(receptive_radius(unet))


def _last_conv(net: nn.Module) -> nn.Module:
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the network has no convolution")
    return getattr(net, "to_rgb", convs[-1])


# --- cutting tiles and their statistics over the whole image ----------------------------------------

class _Stop(Exception):
    """Raised from a hook to end a forward pass once the wanted norm's input has been seen."""


class TileSource:
    """Tiles of an image in padded coordinates, reflect-padded at the bottom/right as `model.apply_unet` pads.

    ``image``: (1, 3, H, W) float tensor in [0, 1], or an H x W x 3 uint8 array
    (kept at 8 bits: a tile becomes float only when it is cut).
    """

    def __init__(self, image: Union[torch.Tensor, np.ndarray]) -> None:
        if isinstance(image, torch.Tensor):
            if image.ndim != 4 or image.shape[:2] != (1, 3):
                raise ValueError(f"image tensor must be (1, 3, H, W), got {tuple(image.shape)}")
            self.height, self.width = int(image.shape[-2]), int(image.shape[-1])
        else:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image array must be H x W x 3 uint8, got {image.shape} {image.dtype}")
            self.height, self.width = int(image.shape[0]), int(image.shape[1])
        self.image = image

    @staticmethod
    def _index(start: int, stop: int, length: int) -> np.ndarray:
        index = np.arange(start, stop)
        return np.where(index >= length, 2 * (length - 1) - index, index)  # F.pad(mode="reflect") on one side

    def cut(self, box: tuple[int, int, int, int]) -> torch.Tensor:
        """The (1, 3, h, w) float32 tile for ``box`` = (y0, y1, x0, x1)."""
        rows = self._index(box[0], box[1], self.height)
        cols = self._index(box[2], box[3], self.width)
        if isinstance(self.image, torch.Tensor):
            return self.image.index_select(2, torch.from_numpy(rows)).index_select(3, torch.from_numpy(cols)).float()
        block = self.image[np.ix_(rows, cols)]
        # the same arithmetic as imageio.load_image, so an 8-bit file gives the same floats
        return torch.from_numpy(block.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def norm_statistics(unet: nn.Module, source: TileSource, plan: TilePlan, device: torch.device,
                    progress: Optional[Progress] = None, done: int = 0, total: int = 0) -> list[NormStats]:
    """Mean and variance of every InstanceNorm layer's input over the whole (padded) image, as untiled.

    One tile: one forward, reading each norm's input. Several: for each norm
    layer in turn, every tile is run up to that layer with the earlier layers
    frozen at their statistics, and its core region is accumulated.
    """
    norms = check_norms(unet)
    if plan.single:
        found: list[NormStats] = []
        handles = [norm.register_forward_pre_hook(
            lambda _m, args: found.append(whole_stats(args[0]))) for _, norm in norms]
        try:
            with torch.inference_mode():
                unet(source.cut(plan.tiles[0].box).to(device))
        finally:
            for handle in handles:
                handle.remove()
        if progress is not None:
            progress(done + 1, total)
        return found
    stats: list[NormStats] = []
    for index, (name, _) in enumerate(norms):
        # norms after this one are never reached in this pass: any statistics of the right width do
        pending = [NormStats(torch.zeros(n.num_features, dtype=torch.float64),
                             torch.ones(n.num_features, dtype=torch.float64)) for _, n in norms[index:]]
        net = frozen_copy(unet, [*stats, *pending]).to(device)
        target = net.get_submodule(name)
        moments: Optional[Moments] = None
        for tile in plan.tiles:
            def grab(_m: nn.Module, args: tuple[torch.Tensor, ...], tile: Tile = tile) -> None:
                nonlocal moments
                x = args[0]
                scale = (tile.box[1] - tile.box[0]) // x.shape[-2]
                y0, y1, x0, x1 = ((c - o) // scale for c, o in zip(tile.core, (tile.box[0],) * 2 + (tile.box[2],) * 2))
                if moments is None:
                    moments = Moments(x.shape[1])
                moments.add(x[..., y0:y1, x0:x1].cpu())
                raise _Stop
            handle = target.register_forward_pre_hook(grab)
            try:
                with torch.inference_mode():
                    net(source.cut(tile.box).to(device))
            except _Stop:
                pass
            finally:
                handle.remove()
            done += 1
            if progress is not None:
                progress(done, total)
        assert moments is not None
        stats.append(moments.stats())
    return stats



# --- applying -------------------------------------------------------------------------------------------

def stats_passes(plan: TilePlan, stats: StatsMode, n_norms: int) -> int:
    """Tile forwards the statistics take (for progress totals)."""
    if plan.single:
        return 0
    return n_norms * len(plan.tiles) if stats == "exact" else 1


def _thumbnail(source: TileSource, tile_size: int) -> TileSource:
    """The image scaled to fit in one tile (Pillow bicubic on 8 bits, antialiased), for thumbnail statistics.

    Float and 8-bit sources of the same picture get the same thumbnail, without a float copy of a large image.
    """
    from PIL import Image

    scale = min(1.0, tile_size / max(source.height, source.width))
    height = max(ALIGN, int(source.height * scale) // ALIGN * ALIGN)
    width = max(ALIGN, int(source.width * scale) // ALIGN * ALIGN)
    image = source.image
    if isinstance(image, torch.Tensor):
        image = image[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    small = Image.fromarray(np.ascontiguousarray(image), "RGB").resize((width, height), Image.Resampling.BICUBIC)
    return TileSource(np.asarray(small))


def iter_tiles(unet: nn.Module, image: Union[torch.Tensor, np.ndarray], *, tile_size: int = DEFAULT_TILE_SIZE,
               stats: StatsMode = "thumbnail", device: Union[str, torch.device] = "cpu",
               progress: Optional[Progress] = None, norm_stats: Optional[list[NormStats]] = None,
               ) -> Iterator[tuple[tuple[int, int, int, int], torch.Tensor]]:
    """Yield ``(core, output)`` per tile: the core box (y0, y1, x0, x1) cropped to the image, and the U-Net's
    (1, 3, h, w) float32 output there on the CPU, in [0, 1]. See the module docstring.

    norm_stats: given statistics (one per norm layer) used for every tile instead of computing the image's
    own (``stats`` is then unused): how a video frame is rendered with its shot's statistics."""
    if stats not in STATS_MODES:
        raise ValueError(f"stats must be one of {', '.join(STATS_MODES)}, got {stats!r}")
    device = torch.device(device)
    source = TileSource(image)
    unet = unet.to(device).eval()
    if norm_stats is not None:
        yield from _with_stats(unet, source, tile_size, device, progress, norm_stats)
        return
    fits = max(_round_up(source.height), _round_up(source.width)) <= tile_size
    plan = plan_tiles(source.height, source.width, tile_size, 0 if fits else margin_for(unet))
    n_norms = len(check_norms(unet))
    total = stats_passes(plan, stats, n_norms) + len(plan.tiles)
    if plan.single:
        with torch.inference_mode():
            output = apply_unet(unet, source.cut((0, source.height, 0, source.width)).to(device))
        if progress is not None:
            progress(1, 1)
        yield (0, source.height, 0, source.width), output.float().cpu()
        return
    if stats == "exact":
        norm_stats = norm_statistics(unet, source, plan, device, progress, 0, total)
    else:
        small = _thumbnail(source, tile_size)
        small_plan = plan_tiles(small.height, small.width, tile_size, plan.margin)
        norm_stats = norm_statistics(unet, small, small_plan, device, progress, 0, total)
    done = stats_passes(plan, stats, n_norms)
    net = frozen_copy(unet, norm_stats).to(device)
    for tile in plan.tiles:
        with torch.inference_mode():
            output = net(source.cut(tile.box).to(device))
        cy0, cy1, cx0, cx1 = tile.core
        by0, _, bx0, _ = tile.box
        y1, x1 = min(cy1, plan.height), min(cx1, plan.width)
        core = output[..., cy0 - by0:y1 - by0, cx0 - bx0:x1 - bx0].float().cpu()
        del output
        done += 1
        if progress is not None:
            progress(done, total)
        if y1 > cy0 and x1 > cx0:
            yield (cy0, y1, cx0, x1), core


def _with_stats(unet: nn.Module, source: TileSource, tile_size: int, device: torch.device,
                progress: Optional[Progress], norm_stats: list[NormStats],
                ) -> Iterator[tuple[tuple[int, int, int, int], torch.Tensor]]:
    """`iter_tiles` with given statistics: every tile (one, if the image fits) through the frozen network."""
    fits = max(_round_up(source.height), _round_up(source.width)) <= tile_size
    plan = plan_tiles(source.height, source.width, tile_size, 0 if fits else margin_for(unet))
    net = frozen_copy(unet, norm_stats).to(device)
    for done, tile in enumerate(plan.tiles, 1):
        with torch.inference_mode():
            output = net(source.cut(tile.box).to(device))  # boxes on multiples of 8, reflect-padded as apply_unet
        cy0, cy1, cx0, cx1 = tile.core
        by0, _, bx0, _ = tile.box
        y1, x1 = min(cy1, plan.height), min(cx1, plan.width)
        core = output[..., cy0 - by0:y1 - by0, cx0 - bx0:x1 - bx0].float().cpu()
        if progress is not None:
            progress(done, len(plan.tiles))
        if y1 > cy0 and x1 > cx0:
            yield (cy0, y1, cx0, x1), core


def apply_tiled(unet: nn.Module, image: torch.Tensor, *, tile_size: int = DEFAULT_TILE_SIZE,
                stats: StatsMode = "thumbnail", device: Union[str, torch.device] = "cpu",
                progress: Optional[Progress] = None) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> the stylized (1, 3, H, W) float32 on the CPU, tile by tile."""
    out = torch.empty(1, 3, image.shape[-2], image.shape[-1], dtype=torch.float32)
    for (y0, y1, x0, x1), tile in iter_tiles(unet, image, tile_size=tile_size, stats=stats, device=device,
                                             progress=progress):
        out[..., y0:y1, x0:x1] = tile
    return out


def apply_tiled_uint8(unet: nn.Module, image: np.ndarray, *, tile_size: int = DEFAULT_TILE_SIZE,
                      stats: StatsMode = "thumbnail", device: Union[str, torch.device] = "cpu",
                      progress: Optional[Progress] = None,
                      norm_stats: Optional[list[NormStats]] = None) -> np.ndarray:
    """H x W x 3 uint8 -> the stylized H x W x 3 uint8, never holding the image as floats.

    Each tile is quantized as `imageio.to_pil` quantizes (clamp, x255, round). norm_stats: see `iter_tiles`.
    """
    out = np.empty_like(image)
    for (y0, y1, x0, x1), tile in iter_tiles(unet, image, tile_size=tile_size, stats=stats, device=device,
                                             progress=progress, norm_stats=norm_stats):
        out[y0:y1, x0:x1] = tile[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return out
