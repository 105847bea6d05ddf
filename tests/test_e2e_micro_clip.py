"""End to end with a CLIP that means something: the micro CLIP trained on procedural
textures (tests/data/micro_clip.pt, see tests/data/README) and the bundled VGG16,
through the public API on a real photo.

The micro model only knows colour/pattern captions, so prompts come from its
vocabulary. These tests are what a random-init CLIP cannot show: that the text
direction has the right sign, that the patch rejection keeps the right patches,
and that the content loss keeps the photo.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipstyle_opt import StyleConfig, Stylizer, losses
from clipstyle_opt.imageio import load_image, resize

ROOT = Path(__file__).resolve().parent.parent
MICRO_CLIP = ROOT / "tests" / "data" / "micro_clip.pt"
PHOTO = ROOT / "examples" / "astronaut.png"
SIZE = 128


@pytest.fixture(scope="module")
def stylizer(vgg16) -> Stylizer:
    config = StyleConfig(clip_model=str(MICRO_CLIP), size=SIZE, steps=60, n_crops=16, crop_size=64,
                         device="cpu", precision="fp32", max_output_size=SIZE)
    return Stylizer(config, vgg=vgg16)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return resize(load_image(PHOTO), (SIZE, SIZE))


def similarity(stylizer: Stylizer, image: torch.Tensor, prompt: str) -> float:
    """Cosine between the micro CLIP's image embedding and the templated prompt embedding."""
    with torch.no_grad():
        return float(stylizer.clip.encode_image(image)[0] @ stylizer.clip.encode_prompt(prompt))


def content_distance(stylizer: Stylizer, image: torch.Tensor, photo: torch.Tensor) -> float:
    """The VGG content loss (conv4_2 + conv5_2 MSE) between an output and the photo."""
    with torch.no_grad():
        return float(losses.content_loss(stylizer.vgg(image), stylizer.vgg(photo), ("conv4_2", "conv5_2")))


_runs: dict = {}


def run(stylizer: Stylizer, photo: torch.Tensor, prompt: str, **overrides):
    key = (prompt, tuple(sorted(overrides.items())))
    if key not in _runs:
        _runs[key] = stylizer.stylize(photo, prompt, **overrides)
    return _runs[key]


@pytest.mark.parametrize("prompt, other", [("red stripes", "green dots"), ("green dots", "red stripes")])
def test_output_moves_toward_the_prompt(stylizer, photo, prompt, other):
    result = run(stylizer, photo, prompt)
    before = similarity(stylizer, photo, prompt)
    after = similarity(stylizer, result.tensor, prompt)
    unrelated = similarity(stylizer, result.tensor, other)
    print(f"{prompt}: similarity before {before:.3f}, after {after:.3f}; to {other!r} after {unrelated:.3f}")
    assert after > before + 0.2
    assert after > unrelated + 0.2


def test_content_loss_keeps_the_photo(stylizer, photo):
    kept = content_distance(stylizer, run(stylizer, photo, "red stripes").tensor, photo)
    lost = content_distance(stylizer, run(stylizer, photo, "red stripes", lambda_c=0.0).tensor, photo)
    print(f"content distance with lambda_c=150: {kept:.1f}; with lambda_c=0: {lost:.1f}")
    assert kept < 100.0 < lost


def test_without_clip_losses_the_similarity_does_not_rise(stylizer, photo):
    """Trained on content and TV alone, the 60-step U-Net keeps a colour cast that depends on
    its seed, and the micro CLIP's similarity with it scatters (seen: -0.014, -0.411, -0.563
    for seeds 0-2, against -0.173 for the photo). So one seed proves little: the mean over
    three must not rise, while with the CLIP losses on every seed reaches 0.17 to 0.34."""
    before = similarity(stylizer, photo, "red stripes")
    afters = [similarity(stylizer, run(stylizer, photo, "red stripes", lambda_dir=0.0, lambda_patch=0.0,
                                       seed=seed).tensor, "red stripes") for seed in (0, 1, 2)]
    mean_after = sum(afters) / len(afters)
    print(f"CLIP losses off: similarity before {before:.3f}, after {', '.join(f'{a:.3f}' for a in afters)}")
    assert mean_after < before + 0.03


def test_patch_rejection_keeps_patches_that_do_not_yet_match(stylizer, photo):
    history = run(stylizer, photo, "red stripes").history
    # At the start no crop follows the text direction (scores near 1 > 0.7), so none is rejected.
    assert history[0]["patch"] > 0.7
    # As the crops take on the prompt, more fall below the threshold and are rejected.
    assert history[-1]["patch"] < history[0]["patch"] - 0.1
