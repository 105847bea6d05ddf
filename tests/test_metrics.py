"""Metrics: arithmetic and definitions, checked against torchmetrics where it runs offline.

The CLIP here is random-init (tiny): these tests check the arithmetic of the
CLIP metrics (crop protocol, averaging, signs), never what their values mean.
"""
from __future__ import annotations

import copy
import math
import types
from pathlib import Path

import kornia
import pytest
import torch
import torchmetrics.functional.image.dists as torchmetrics_dists
import torchmetrics.functional.image.lpips as torchmetrics_lpips
from torch.nn import functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from clipstyle_opt import StyleConfig
from clipstyle_opt.evaluate import metrics as M
from clipstyle_opt.imageio import load_image, resize
from clipstyle_opt.objective.losses import content_loss as training_content_loss
from clipstyle_opt.objective.losses import direction_scores, text_direction
from clipstyle_opt.evaluate.perceptual import (DISTS, LPIPS, _alexnet_features, channel_normalize, lpips_linear_weights,
                                      vgg16_trunk)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TORCHMETRICS_LPIPS_FILES = {"vgg16": "vgg", "alexnet": "alex"}


@pytest.fixture(scope="module")
def trunk():
    return vgg16_trunk()


@pytest.fixture(scope="module")
def nets(trunk):
    return {"vgg16": LPIPS("vgg16", trunk), "alexnet": LPIPS("alexnet"), "dists": DISTS(trunk)}


@pytest.fixture(scope="module")
def image():
    return resize(load_image(EXAMPLES / "chelsea.png"), (64, 96))


def blurred(image: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(image, (size, size), (sigma, sigma), border_type="reflect").clamp(0, 1)


def noisy(image: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (image + std * torch.randn(image.shape, generator=generator)).clamp(0, 1)


# --- content preservation -------------------------------------------------

def test_identical_images_score_perfectly(nets, image, vgg16):
    for net in ("vgg16", "alexnet"):
        assert M.lpips(nets[net], image, image).abs().max().item() < 1e-7
    assert M.dists(nets["dists"], image, image).abs().max().item() < 1e-5
    assert M.ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)
    assert M.content_loss(vgg16, image, image).item() == 0.0


@pytest.mark.parametrize("distort,strong,mild", [(blurred, 3.0, 1.0), (noisy, 0.2, 0.05)], ids=["blur", "noise"])
def test_a_stronger_distortion_ranks_worse(nets, image, vgg16, distort, strong, mild):
    # One batch per metric: row 0 strongly distorted, row 1 mildly.
    distorted = torch.cat([distort(image, strong), distort(image, mild)])
    reference = image.expand(2, -1, -1, -1)
    for name in ("vgg16", "alexnet", "dists"):
        worse, better = (M.dists if name == "dists" else M.lpips)(nets[name], distorted, reference).tolist()
        assert worse > better > 0, name
    worse, better = M.ssim(distorted, reference).tolist()
    assert worse < better < 1
    worse, better = M.content_loss(vgg16, distorted, reference).tolist()
    assert worse > better > 0


def test_lpips_linear_layers_equal_torchmetrics_copies():
    folder = Path(torchmetrics_lpips.__file__).parent / "lpips_models"
    for net, name in TORCHMETRICS_LPIPS_FILES.items():
        theirs = torch.load(folder / f"{name}.pth", map_location="cpu", weights_only=True)
        ours = lpips_linear_weights(net)
        assert len(ours) == 5
        for k, weight in enumerate(ours):
            assert torch.equal(weight, theirs[f"lin{k}.model.1.weight"].float()), (net, k)


def _torchmetrics_lpips(net: str, trunk, monkeypatch):
    """torchmetrics' LPIPS module, its backbone built from our bundled weights (it would download torchvision's)."""
    features = {"vgg16": trunk, "alexnet": _alexnet_features()}[net]
    monkeypatch.setattr(torchmetrics_lpips, "_get_tv_model_features",
                        lambda name, pretrained=False: copy.deepcopy(features))
    return torchmetrics_lpips._LPIPS(pretrained=True, net=TORCHMETRICS_LPIPS_FILES[net], pnet_rand=True).eval()


@pytest.mark.parametrize("net", ["vgg16", "alexnet"])
def test_lpips_equals_torchmetrics_on_the_same_pair(nets, trunk, image, net, monkeypatch):
    theirs = _torchmetrics_lpips(net, trunk, monkeypatch)
    x, y = blurred(image, 2.0), noisy(image, 0.05)
    ours = M.lpips(nets[net], x, y)
    with torch.no_grad():
        reference = theirs(x, y, normalize=True).flatten()
    assert ours.item() > 0.01
    # torchmetrics normalizes with sqrt(sum + 1e-8), the original with sqrt(sum) + 1e-10.
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-6), (ours, reference)


def test_dists_equals_torchmetrics_with_our_backbone(nets, trunk, image, monkeypatch):
    # torchmetrics' DISTSNetwork loads torchvision's VGG16 with downloaded weights in its constructor;
    # hand it our bundled trunk instead (it only reads `.features[0..29]`).
    monkeypatch.setattr(torchmetrics_dists, "vgg16",
                        lambda weights=None: types.SimpleNamespace(features=copy.deepcopy(trunk)))
    theirs = torchmetrics_dists.DISTSNetwork().eval()
    x, y = noisy(image, 0.1), blurred(image, 1.5)
    with torch.no_grad():
        reference = theirs(x, y).flatten()
    ours = M.dists(nets["dists"], x, y)
    assert ours.item() > 0.01
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-6), (ours, reference)


def test_ssim_agrees_with_torchmetrics(image):
    for other in (noisy(image, 0.1), blurred(image, 2.0)):
        ours = M.ssim(other, image).item()
        reference = structural_similarity_index_measure(other, image, data_range=1.0).item()
        assert ours == pytest.approx(reference, abs=1e-4)


def test_content_loss_is_the_training_loss(vgg16, image):
    other = noisy(image, 0.1)
    expected = training_content_loss(vgg16(other), vgg16(image), StyleConfig().content_layers)
    assert M.content_loss(vgg16, other, image).item() == pytest.approx(expected.item(), rel=1e-6)


def test_channel_normalization_gives_unit_vectors():
    features = torch.randn(2, 7, 5, 4) * 3
    norms = channel_normalize(features).pow(2).sum(dim=1).sqrt()
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)


def test_content_of_another_size_is_resized_to_the_output(nets, image):
    larger = resize(image, (128, 192))  # the same photo at twice the size
    assert M.lpips(nets["vgg16"], image, larger).item() < 0.05
    assert M.ssim(image, larger).item() > 0.9


# --- CLIP -----------------------------------------------------------------

def test_clip_score_is_the_cosine_with_the_plain_prompt(tiny_clip, image):
    expected = F.cosine_similarity(tiny_clip.encode_image(image), tiny_clip.encode_text(["fire"]), dim=-1)
    score = M.clip_score(tiny_clip, image, "fire")
    assert score.shape == (1,) and -1 <= score.item() <= 1
    assert score.item() == pytest.approx(expected.item(), abs=1e-6)
    templated = M.clip_score(tiny_clip, image, "fire", templates=True)
    by_hand = tiny_clip.encode_image(image)[0] @ tiny_clip.encode_prompt("fire")
    assert templated.item() == pytest.approx(by_hand.item(), abs=1e-6)


def test_patch_score_is_the_mean_of_hand_made_crops(tiny_clip, image):
    seed, n = 7, 64
    # By hand, following the documented protocol: 512 px long side, then sides, tops, lefts from one generator.
    height, width = image.shape[-2:]
    scaled = resize(image, (round(height * 512 / width), 512))
    big_h, big_w = scaled.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    sides = torch.randint(64, 225, (n,), generator=generator)
    tops = (torch.rand(n, generator=generator) * (big_h - sides + 1)).floor().long()
    lefts = (torch.rand(n, generator=generator) * (big_w - sides + 1)).floor().long()
    text = tiny_clip.encode_text(["fire"])[0]
    crops = []
    for top, left, side in zip(tops.tolist(), lefts.tolist(), sides.tolist()):
        crop = scaled[..., top:top + side, left:left + side]
        assert crop.shape[-2:] == (side, side) and 64 <= side <= 224
        crops.append(crop)
    # Resized to the model's input as ClipEncoder.preprocess would, so all crops fit one batch;
    # a few go through encode_image one by one to confirm that.
    size = tiny_clip.input_resolution
    batch = torch.cat([F.interpolate(c, size=(size, size), mode="bicubic", align_corners=False)
                       if c.shape[-1] != size else c for c in crops])
    cosines = (tiny_clip.encode_image(batch) @ text).tolist()
    for crop, cosine in zip(crops[:3], cosines):
        assert float(tiny_clip.encode_image(crop)[0] @ text) == pytest.approx(cosine, abs=1e-5)
    expected = sum(cosines) / n

    score = M.patch_clip_score(tiny_clip, image, "fire", seed=seed)
    assert score == pytest.approx(expected, abs=1e-5)
    per_crop = M.patch_clip_scores(tiny_clip, image, "fire", seed=seed)
    assert torch.allclose(per_crop, torch.tensor(cosines), atol=1e-5)
    assert M.patch_clip_score(tiny_clip, image, "fire", seed=seed) == score  # repeatable
    assert M.patch_clip_score(tiny_clip, image, "fire", seed=seed + 1) != score


def test_patch_boxes_stay_inside_small_and_wide_images():
    generator = torch.Generator().manual_seed(0)
    for height, width in [(100, 512), (512, 70), (40, 40)]:
        for top, left, side in M.patch_boxes(height, width, generator):
            assert side <= min(height, width) and top + side <= height and left + side <= width


def test_directional_similarity_flips_sign_when_swapped(tiny_clip, image):
    other = blurred(noisy(image, 0.3), 2.0)
    forward = M.clip_directional_similarity(tiny_clip, other, image, "fire")
    backward = M.clip_directional_similarity(tiny_clip, image, other, "fire")
    assert abs(forward.item()) > 1e-4
    assert forward.item() == pytest.approx(-backward.item(), abs=1e-6)
    assert -1 <= forward.item() <= 1


def test_directional_similarity_is_one_minus_the_training_directional_loss(tiny_clip, image):
    other = noisy(image, 0.3)
    direction = text_direction(tiny_clip.encode_prompt("fire"), tiny_clip.encode_prompt("a Photo"))
    loss = direction_scores(tiny_clip.encode_image(other), tiny_clip.encode_image(image)[0], direction)
    similarity = M.clip_directional_similarity(tiny_clip, other, image, "fire", "a Photo")
    assert similarity.item() == pytest.approx(1 - loss.item(), abs=1e-5)
