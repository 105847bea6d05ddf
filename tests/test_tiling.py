"""Tiled application of the U-Net: equal to the untiled network where that fits, for any tile layout."""
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle_opt.unet import tiling
from clipstyle_opt.unet.model import apply_unet, seeded_unet
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.imageio import load_image
from clipstyle_opt.sizing import OutputSize, target_hw
from clipstyle_opt.unet.model import StyleUNet


TILE = 304  # core 160 px + 2 x 72 px margins


@pytest.fixture(scope="module")
def unet():
    """A width-2 U-Net (same architecture and reach as width 16) whose output spans [0, 1] rather than
    sitting at sigmoid(0): random weights, the last layer scaled up, so any error shows."""
    net = seeded_unet(2, 3).eval()
    with torch.no_grad():
        net.to_rgb.weight.mul_(8)
    return net


@pytest.fixture(scope="module")
def picture():
    image = load_image(Path(__file__).resolve().parent.parent / "examples" / "coffee.png")
    image = image[..., 40:349, 150:461]  # 309 x 311: neither side a multiple of 8; 2 x 2 tiles of 304 px
    return (image * 255).round() / 255  # 8-bit values, so the uint8 path sees the same image


def untiled(net, image):
    with torch.no_grad():
        return apply_unet(net, image)


def to8(image):
    return image[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def test_plan_covers_the_padded_image_once_with_aligned_tiles():
    plan = tiling.plan_tiles(309, 311, TILE, 72)
    assert plan.padded == (312, 312) and len(plan.tiles) == 4
    covered = np.zeros(plan.padded, int)
    for tile in plan.tiles:
        y0, y1, x0, x1 = tile.core
        covered[y0:y1, x0:x1] += 1
        assert all(v % 8 == 0 for v in (*tile.core, *tile.box))
        assert tile.box[1] - tile.box[0] <= TILE and tile.box[3] - tile.box[2] <= TILE
        assert tile.box[0] == max(0, y0 - 72) and tile.box[3] == min(312, x1 + 72)
    assert (covered == 1).all()


def test_exact_statistics_make_tiled_equal_untiled(unet, picture):
    reference = untiled(unet, picture)
    assert reference.std() > 0.1  # the output varies: a wrong tile would show
    tiled = tiling.apply_tiled(unet, picture, tile_size=TILE, stats="exact")
    # in float: differences of summation order only; after quantization to 8 bits: at most one level
    assert (tiled - reference).abs().max() <= 1 / 255
    assert np.abs(to8(tiled).astype(int) - to8(reference)).max() <= 1


def test_the_8_bit_path_quantizes_as_images_are_saved(unet, picture):
    rgb8 = to8(picture)
    tiled8 = tiling.apply_tiled_uint8(unet, rgb8, tile_size=TILE)
    assert np.array_equal(tiled8, to8(tiling.apply_tiled(unet, picture, tile_size=TILE)))


def test_tiles_are_seamless_whatever_the_statistics(unet, picture):
    """Thumbnail statistics change the image a little, but every tile uses the same ones: the tiled output
    equals the untiled network run with those statistics frozen."""
    source = tiling.TileSource(picture)
    small = tiling._thumbnail(source, TILE)
    stats = tiling.norm_statistics(unet, small, tiling.plan_tiles(small.height, small.width, TILE, 72),
                                   torch.device("cpu"))
    reference = untiled(tiling.frozen_copy(unet, stats), picture)
    tiled = tiling.apply_tiled(unet, picture, tile_size=TILE, stats="thumbnail")
    assert (tiled - reference).abs().max() <= 1 / 255


def test_an_image_that_fits_in_one_tile_is_the_untiled_computation(unet, picture):
    assert torch.equal(tiling.apply_tiled(unet, picture, tile_size=1024), untiled(unet, picture))


def test_per_tile_statistics_would_show_seams(unet, picture):
    """What the frozen statistics prevent: each tile normalized by its own statistics differs visibly."""
    plan = tiling.plan_tiles(309, 311, TILE, 72)
    source = tiling.TileSource(picture)
    out = torch.empty_like(picture)
    for tile in plan.tiles:
        y0, y1, x0, x1 = tile.core
        with torch.no_grad():
            piece = unet(source.cut(tile.box))
        y1, x1 = min(y1, 309), min(x1, 311)
        out[..., y0:y1, x0:x1] = piece[..., y0 - tile.box[0]:y1 - tile.box[0], x0 - tile.box[2]:x1 - tile.box[2]]
    assert (out - untiled(unet, picture)).abs().max() > 10 / 255


def test_the_margin_covers_the_measured_receptive_field():
    measured = tiling.receptive_radius(StyleUNet(1), _measure=True)
    assert measured == tiling.STYLE_UNET_RADIUS == 69
    assert tiling.margin_for(StyleUNet(16)) == 72


def test_output_size_rules(monkeypatch):
    assert target_hw(6000, 8000, OutputSize()) == (6000, 8000)  # no cap by default
    assert target_hw(6000, 8000, OutputSize(scale=0.5)) == (3000, 4000)
    assert target_hw(6000, 8000, OutputSize(size=1000)) == (750, 1000)
    assert target_hw(6000, 8000, OutputSize(max_size=2000)) == (1500, 2000)
    with pytest.raises(ConfigError, match="not both"):
        OutputSize(size=100, scale=2.0)
    monkeypatch.setenv("CLIPSTYLE_MAX_PIXELS", "1000000")
    with pytest.raises(ConfigError, match="over the limit of 1,000,000 px"):
        target_hw(1000, 1000, OutputSize(scale=1.5))
