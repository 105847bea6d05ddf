"""Issue 12 end to end with the micro CLIP (tests/data/micro_clip.pt): weighted prompts, a mask, the focus
relevance map, and the Gram mix of two style images.

Settings are those of tests/test_e2e_micro_clip.py (128 px, 60 steps, 16 crops of 64 px, the reference
loss weights), whose run cache this module shares, so "red stripes" alone is trained once per session.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipstyle_opt.objective import losses
from clipstyle_opt.objective.relevance import relevance_map
from microclip.textures import render_texture

from test_e2e_micro_clip import SIZE, photo, run, similarity, stylizer  # noqa: F401  (fixtures and run cache)

PROMPTS = ("red stripes", "blue dots")


@pytest.fixture(scope="module")
def fused_runs(stylizer, photo):
    """Outputs by name: each prompt alone, and the 0.8/0.2 and 0.2/0.8 mixes under loss fusion."""
    out = {prompt: run(stylizer, photo, prompt).tensor for prompt in PROMPTS}
    for weights in ((0.8, 0.2), (0.2, 0.8)):
        out[weights] = run(stylizer, photo, PROMPTS, weights=weights).tensor
    return out


def test_heavier_prompt_wins(stylizer, fused_runs):
    """0.8 red stripes + 0.2 blue dots ends closer to red stripes than 0.2/0.8 does, and the reverse."""
    mostly_red, mostly_blue = fused_runs[(0.8, 0.2)], fused_runs[(0.2, 0.8)]
    red = [similarity(stylizer, image, "red stripes") for image in (mostly_red, mostly_blue)]
    blue = [similarity(stylizer, image, "blue dots") for image in (mostly_red, mostly_blue)]
    print(f"similarity to 'red stripes': 0.8/0.2 {red[0]:.3f}, 0.2/0.8 {red[1]:.3f}; "
          f"to 'blue dots': {blue[0]:.3f}, {blue[1]:.3f}")
    assert red[0] > red[1] + 0.05
    assert blue[1] > blue[0] + 0.05


# Seen (AMD EPYC, 60 steps): 'red stripes' singles -0.341..0.515, fused 0.8/0.2 0.403, 0.2/0.8 -0.198;
# 'blue dots' singles -0.400..0.494, fused 0.8/0.2 -0.275, 0.2/0.8 0.564. A fused output can
# overshoot the single-prompt output of its heavier prompt a little (0.564 > 0.494): "between"
# holds up to this margin, not strictly.
BETWEEN_MARGIN = 0.1


def test_each_fused_output_scores_between_the_single_prompt_outputs(stylizer, fused_runs):
    for prompt in PROMPTS:
        singles = sorted(similarity(stylizer, fused_runs[p], prompt) for p in PROMPTS)
        for weights in ((0.8, 0.2), (0.2, 0.8)):
            value = similarity(stylizer, fused_runs[weights], prompt)
            print(f"{prompt!r}: singles {singles[0]:.3f}..{singles[1]:.3f}, fused {weights} {value:.3f}")
            assert singles[0] - BETWEEN_MARGIN <= value <= singles[1] + BETWEEN_MARGIN


MASK_TOLERANCE = 2.0 / 255.0
"""Mean absolute difference allowed outside the mask, in [0, 1] units: the composite copies the photo
there exactly (the mask is 0); the bound leaves room for the bilinear mask edge (the 8 px band next to
the border is excluded) and 8-bit rounding."""


def test_a_mask_keeps_the_photo_outside_and_styles_inside(stylizer, photo):
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., SIZE // 2:] = 1.0  # stylize the right half
    result = run(stylizer, photo, "red stripes", mask=mask)
    half = SIZE // 2
    outside = float((result.tensor[..., : half - 8] - photo[..., : half - 8]).abs().mean())
    before = similarity(stylizer, photo[..., half:], "red stripes")
    after = similarity(stylizer, result.tensor[..., half:], "red stripes")
    print(f"mask: outside mean |diff| {outside:.5f}; right half similarity {before:.3f} -> {after:.3f}")
    assert outside <= MASK_TOLERANCE
    assert after > before + 0.1


def halves(seed: int) -> torch.Tensor:
    """128 px: green dots on the left half, blue stripes on the right (the project's texture generator)."""
    rng = np.random.default_rng(seed)
    left = render_texture("green", "dots", SIZE, rng)[:, : SIZE // 2]
    right = render_texture("blue", "stripes", SIZE, rng)[:, SIZE // 2:]
    return torch.from_numpy(np.concatenate([left, right], axis=1)).permute(2, 0, 1)[None]


def right_share(relevance: torch.Tensor) -> float:
    return float(relevance[..., SIZE // 2:].sum() / relevance.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_focus_map_finds_each_texture(stylizer, seed, monkeypatch):
    """Seen: 0.85 / 0.82 of the mass on the right for "blue stripes", 0.16 / 0.11 for "green dots"."""
    image = halves(seed)
    stripes = right_share(relevance_map(stylizer.clip, image, "blue stripes"))
    dots = right_share(relevance_map(stylizer.clip, image, "green dots"))
    print(f"seed {seed}: right-half share of relevance: 'blue stripes' {stripes:.2f}, 'green dots' {dots:.2f}")
    assert stripes > 0.7
    assert dots < 0.3
    # The text direction flipped (a sign bug) puts the mass on the wrong side: these checks would fail.
    encode = stylizer.clip.encode_prompt
    monkeypatch.setattr(stylizer.clip, "encode_prompt", lambda text, *a, **k: -encode(text, *a, **k))
    assert right_share(relevance_map(stylizer.clip, image, "blue stripes")) < 0.3


def gram_distance(vgg, image: torch.Tensor, style: torch.Tensor, layers) -> float:
    with torch.no_grad():
        target = {layer: losses.gram_matrix(feature) for layer, feature in vgg(style).items()}
        return float(losses.style_loss(vgg(image), target, layers))


def test_an_even_gram_mix_lies_between_the_single_image_results(stylizer, photo):
    """The VGG-only part (CLIP losses off): styled toward red stripes, toward blue dots, or their
    0.5/0.5 Gram mix; the mix's output is nearer each style image than the other image's output is."""
    rng = np.random.default_rng(0)
    styles = [torch.from_numpy(render_texture(c, p, SIZE, rng)).permute(2, 0, 1)[None]
              for c, p in (("red", "stripes"), ("blue", "dots"))]
    settings = dict(lambda_dir=0.0, lambda_patch=0.0, lambda_style=1e5, steps=30)
    outputs = [stylizer.stylize(photo, "red stripes", style_image=s, **settings).tensor for s in styles]
    mixed = stylizer.stylize(photo, "red stripes", style_image=styles, style_weights=[0.5, 0.5], **settings).tensor
    layers = stylizer.config.style_layers
    for index, style in enumerate(styles):
        own, other = outputs[index], outputs[1 - index]
        d_own, d_mix, d_other = (gram_distance(stylizer.vgg, x, style, layers) for x in (own, mixed, other))
        print(f"style image {index}: Gram distance of its own output {d_own:.3g}, mix {d_mix:.3g}, "
              f"other output {d_other:.3g}")
        assert d_own < d_mix < d_other
