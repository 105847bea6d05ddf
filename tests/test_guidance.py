"""Issue 12 without a meaningful CLIP: weights, masks, metadata, bad input, the one-prompt special case,
the Gram mix of several style images, and the objective's arithmetic for several directions."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from PIL import Image

from clipstyle_opt.objective import losses
from clipstyle_opt.objective.augment import CropParams, sample_crop_params
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.objective.guidance import make_guidance, normalize_weights, weighted_texts
from clipstyle_opt.imageio import load_image, read_metadata, resize
from clipstyle_opt.objective.masks import load_mask
from clipstyle_opt.objective.style_objective import StyleObjective
from clipstyle_opt.testing import tolerances

from faults_helpers import TINY, error_line, fast_models, listing, no_model_load, run  # noqa: F401


# --- weights ------------------------------------------------------------------------------------------

def test_weights_are_normalized():
    assert normalize_weights([0.7, 0.3]) == pytest.approx((0.7, 0.3))
    assert normalize_weights([2, 6]) == (0.25, 0.75)
    texts = weighted_texts([("red stripes", 3.0), ("blue dots", 1.0)])
    assert [(t.text, t.weight) for t in texts] == [("red stripes", 0.75), ("blue dots", 0.25)]
    assert [t.weight for t in weighted_texts(["a", "b", "c"])] == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("prompts, weights, message", [
    (["red stripes", "blue dots"], "0.7", "1 weight(s) for 2 prompts"),
    (["red stripes", "blue dots"], "0.7,-0.3", "must be >= 0"),
    (["red stripes", "blue dots"], "0,0", "positive sum"),
    (["red stripes", "blue dots"], "nan,1", "finite"),
    (["red stripes", "blue dots"], "inf,1", "finite"),
    (["red stripes", "blue dots"], "0.5,x", "not a number"),
])
def test_bad_weights_are_one_line_config_errors(prompts, weights, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        weighted_texts(prompts, weights)


# --- command line: refused before any model loads -----------------------------------------------------

@pytest.fixture
def folder(tmp_path, photo):
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    Image.new("L", (40, 30), 0).save(tmp_path / "black.png")
    Image.new("L", (40, 30), 255).save(tmp_path / "white.png")
    (tmp_path / "notes.png").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["red stripes", "blue dots", "--weights", "0.7"], "--weights: 1 weight(s) for 2 prompts"),
    (["red stripes", "blue dots", "--weights", "0.7,0.2,0.1"], "--weights: 3 weight(s) for 2 prompts"),
    (["red stripes", "blue dots", "--weights", "1,-1"], "--weights: weights must be >= 0"),
    (["red stripes", "blue dots", "--weights", "0,0"], "--weights: the weights must have a positive sum"),
    (["red stripes", "--mask", "{folder}/notes.png"], "--mask: not an image"),
    (["red stripes", "--mask", "{folder}/black.png"], "is all black"),
    (["--region", "{folder}/black.png", "fire"], "is all black"),
    (["red stripes", "--style-image", "{folder}/photo.png", "--style-weights", "1,1"],
     "--style-weights: 2 weight(s) for 1 style images"),
    (["red stripes", "--mask", "{folder}/white.png", "--focus", "sky"], "give only one"),
    (["red stripes", "--focus-invert"], "need --focus"),
    (["red stripes", "--region", "{folder}/white.png", "fire"], "give no PROMPT"),
    ([], "give a PROMPT"),
    (["red stripes", "--fusion", "mean"], "Invalid value for '--fusion'"),
    (["red stripes", "--style-image-clip", "1.5"], "--style-image-clip must be in [0, 1]"),
])
def test_bad_guidance_is_refused_in_one_line_with_exit_2(folder, args, message, no_model_load):
    args = [a.format(folder=folder) for a in args]
    before = listing(folder)
    result = run("stylize", folder / "photo.png", *args, "-o", folder / "out.png", *TINY)
    assert listing(folder) == before
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1] if "Invalid value" in message else error_line(result.output)
    assert message in line


def test_mask_reading():
    with pytest.raises(ConfigError, match="all black"):
        load_mask(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="finite values in"):
        load_mask(torch.full((1, 1, 8, 8), 2.0))
    grey = load_mask(Image.new("RGB", (10, 6), (255, 255, 255)))
    assert grey.shape == (1, 1, 6, 10) and float(grey.min()) == 1.0


# --- the one-prompt special case ----------------------------------------------------------------------

def test_a_one_prompt_list_is_the_single_prompt_run_bit_for_bit(tiny_stylizer, photo):
    single = tiny_stylizer.stylize(photo, "fire", steps=2)
    for spec in (["fire"], [("fire", 0.4)]):
        listed = tiny_stylizer.stylize(photo, spec, steps=2, fusion="embedding")
        assert torch.equal(single.tensor, listed.tensor)
        assert listed.prompt == "fire" and "prompts" not in listed.metadata()


def test_fused_run_records_prompts_weights_and_mask_in_png_and_sidecar(folder, fast_models):
    Image.new("L", (30, 40), 255).save(folder / "mask.png")
    result = run("stylize", folder / "photo.png", "fire", "ice", "--weights", "3,1", "--mask", folder / "mask.png",
                 "--fusion", "embedding", "-o", folder / "out.png", *TINY, "--steps", "1")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((folder / "out.json").read_text())
    with Image.open(folder / "out.png") as png:
        chunk = json.loads(png.text["clipstyle"])
        assert png.text["prompt"] == "fire 0.75 + ice 0.25 (embedding)"
    for meta in (sidecar, chunk, read_metadata(folder / "out.png")):
        assert meta["prompts"] == [{"text": "fire", "weight": 0.75}, {"text": "ice", "weight": 0.25}]
        assert meta["fusion"] == "embedding" and meta["config"]["fusion"] == "embedding"
        assert meta["mask"]["path"] == str(folder / "mask.png") and len(meta["mask"]["sha256"]) == 16


# --- objective arithmetic -----------------------------------------------------------------------------

def _objective(tiny_clip, vgg16, config, content, prompt, **kwargs):
    return StyleObjective(tiny_clip, vgg16, config, content, prompt, **kwargs)


def test_loss_fusion_is_the_weighted_sum_of_single_prompt_losses(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    output = torch.rand(1, 3, 40, 64, generator=torch.Generator().manual_seed(1))
    params = sample_crop_params(8, (40, 64), 32, 0.5, torch.Generator().manual_seed(2))
    config = tiny_config.replace(threshold=0.0)
    singles = [_objective(tiny_clip, vgg16, config, content, p).terms(output, params) for p in ("fire", "ice")]
    fused = _objective(tiny_clip, vgg16, config, content, [("fire", 0.7), ("ice", 0.3)]).terms(output, params)
    rtol = tolerances.reordered()
    for key in ("dir", "patch"):
        expected = 0.7 * singles[0][key] + 0.3 * singles[1][key]
        assert torch.allclose(fused[key], expected, rtol=rtol, atol=rtol), key
    # The fast path's chunked backward agrees with the one-graph terms for several directions too.
    fused_obj = _objective(tiny_clip, vgg16, config, content, [("fire", 0.7), ("ice", 0.3)])
    leaf = output.clone().requires_grad_(True)
    values = fused_obj.backward(leaf * 1.0, params, clip_batch=3)
    assert values["patch"] == pytest.approx(float(fused["patch"]), rel=rtol)
    assert values["dir"] == pytest.approx(float(fused["dir"]), rel=rtol)


def test_embedding_fusion_is_one_direction_from_the_weighted_mean(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    config = tiny_config.replace(fusion="embedding")
    member = _objective(tiny_clip, vgg16, config, content, [("fire", 0.7), ("ice", 0.3)]).members[0]
    with torch.no_grad():
        mean = torch.nn.functional.normalize(0.7 * tiny_clip.encode_prompt("fire")
                                             + 0.3 * tiny_clip.encode_prompt("ice"), dim=-1)
        expected = losses.text_direction(mean, tiny_clip.encode_prompt(config.source_text))
    assert len(member.regions) == 1 and len(member.regions[0]) == 1
    assert torch.allclose(member.regions[0][0][0], expected, atol=tolerances.reordered())


def test_style_image_clip_adds_image_directions_with_their_share(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    a = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    b = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(4))
    config = tiny_config.replace(style_image_clip=0.4)
    member = _objective(tiny_clip, vgg16, config, content, "fire", style_image=[(a, 0.5), (b, 0.5)]).members[0]
    weights = [w for _, w in member.regions[0]]
    assert weights == pytest.approx([0.6, 0.2, 0.2])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(tiny_clip.encode_image(a)[0] - tiny_clip.encode_image(content)[0],
                                                 dim=-1)
    assert torch.allclose(member.regions[0][1][0], expected, atol=tolerances.reordered())


def test_gram_targets_are_mixed_by_weight(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    a = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    b = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(4))
    mixed = _objective(tiny_clip, vgg16, tiny_config, content, "fire", style_image=[(a, 0.25), (b, 0.75)])
    only_a = _objective(tiny_clip, vgg16, tiny_config, content, "fire", style_image=a)
    only_b = _objective(tiny_clip, vgg16, tiny_config, content, "fire", style_image=b)
    for layer in tiny_config.style_layers:
        expected = 0.25 * only_a.target_grams[layer] + 0.75 * only_b.target_grams[layer]
        assert torch.allclose(mixed.target_grams[layer], expected, rtol=tolerances.reordered(), atol=1e-9)


def test_crops_are_drawn_where_the_mask_is_and_tagged_by_region():
    mask = torch.zeros(1, 1, 64, 96)
    mask[..., 48:] = 1.0  # the right half
    params = sample_crop_params(200, (64, 96), 32, 0.5, torch.Generator().manual_seed(0), where=mask)
    assert int(params.lefts.min()) >= 48 - 31  # every crop overlaps the mask
    assert float((params.lefts >= 48).float().mean()) > 0.4
    both = CropParams.concat([params.subset(0, 3), params.subset(3, 5)])
    assert both.regions.tolist() == [0, 0, 0, 1, 1] and both.subset(2, 4).regions.tolist() == [0, 1]


def test_masked_content_loss_ignores_the_stylized_area():
    target = {"l": torch.zeros(1, 2, 4, 4)}
    features = {"l": torch.zeros(1, 2, 4, 4)}
    features["l"][..., 2:] = 5.0  # differs only on the right
    keep = torch.ones(1, 1, 16, 16)
    keep[..., 8:] = 0.0
    assert float(losses.masked_content_loss(features, target, ["l"], keep)) == 0.0
    assert math.isclose(float(losses.masked_content_loss(features, target, ["l"], torch.ones(1, 1, 16, 16))),
                        float(losses.content_loss(features, target, ["l"])))


def test_attention_weights_favour_crops_on_the_relevant_region(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    relevance = torch.zeros(1, 1, 40, 64)
    relevance[..., 32:] = 1.0  # the right half matters
    params = sample_crop_params(16, (40, 64), 24, 0.5, torch.Generator().manual_seed(5))
    on = _objective(tiny_clip, vgg16, tiny_config.replace(attention_patch=True), content, "fire",
                    relevance=relevance)
    off = _objective(tiny_clip, vgg16, tiny_config, content, "fire", relevance=relevance)
    weights = on.crop_weights(params)
    assert off.crop_weights(params) is None
    assert float(weights.mean()) == pytest.approx(1.0)
    right, left = params.lefts >= 32, params.lefts + 24 <= 32
    assert bool(right.any() and left.any())
    assert float(weights[right].min()) > 10 * float(weights[left].max())
    # Uniform weights change nothing.
    embeddings = torch.nn.functional.normalize(torch.randn(16, 32, generator=torch.Generator().manual_seed(6)), dim=-1)
    source, direction = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(7)),
                                                      dim=-1)
    assert torch.equal(losses.patch_loss(embeddings, source, direction, 0.5, torch.ones(16)),
                       losses.patch_loss(embeddings, source, direction, 0.5))


def test_eval_scores_a_fused_output_against_each_prompt_and_the_weighted_mix(tmp_path, tiny_clip, photo):
    from clipstyle_opt.evaluate import evaluate
    from clipstyle_opt.imageio import save_image

    output = resize(load_image(photo), (64, 96))
    prompts = [{"text": "fire", "weight": 0.75}, {"text": "ice", "weight": 0.25}]
    save_image(output, tmp_path / "out.png", {"prompt": "fire 0.75 + ice 0.25 (loss)", "prompts": prompts,
                                              "content": str(photo)})
    row = evaluate([tmp_path / "out.png"], clip=tiny_clip, metrics=["clip_score", "clip_direction"])[0]
    output = load_image(tmp_path / "out.png")  # what eval read: the 8-bit PNG
    with torch.no_grad():
        image = tiny_clip.encode_image(output)[0]
        texts = {t: tiny_clip.encode_text([t])[0] for t in ("fire", "ice")}
    mix = torch.nn.functional.normalize(0.75 * texts["fire"] + 0.25 * texts["ice"], dim=-1)
    rtol = tolerances.reordered()
    assert row["clip_score"] == pytest.approx(float(image @ mix), rel=rtol, abs=rtol)
    for text in ("fire", "ice"):
        assert row[f"clip_score[prompt: {text}]"] == pytest.approx(float(image @ texts[text]), rel=rtol, abs=rtol)
        assert f"clip_direction[prompt: {text}]" in row
