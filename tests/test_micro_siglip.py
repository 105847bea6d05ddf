"""The bundled micro SigLIP (tests/data/micro_siglip, see microclip/README).

Trained here by ``python -m microclip.train_micro_clip --family siglip`` on the same
procedural textures as the micro CLIP, with SigLIP's pairwise sigmoid loss.
These tests check that it loads through the project's ``local-dir:`` backend
the way a downloaded SigLIP folder does (config, safetensors, tokenizer; mean
and std from the folder), and that it carries meaning on textures it never
saw (a generator seed the training never used).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES
from microclip.batches import make_batch
from microclip.scoring import zero_shot_accuracy
from microclip.textures import render_clutter, render_texture

FOLDER = Path(__file__).resolve().parent / "data" / "micro_siglip"
HELD_OUT_SEED = 20_241_128  # never used by the training script (it draws from --seed 0)


@pytest.fixture(scope="module")
def micro_siglip():
    from clipstyle_opt.encoders.registry import load_encoder

    return load_encoder(f"local-dir:{FOLDER}", "cpu")


@pytest.fixture(scope="module")
def held_out():
    images, _, labels = make_batch(320, 96, np.random.default_rng(HELD_OUT_SEED))
    return images, labels


def test_folder_layout_and_size():
    names = {p.name for p in FOLDER.iterdir()}
    assert {"open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"} <= names
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) <= 20 * 2**20
    config = json.loads((FOLDER / "open_clip_config.json").read_text())
    assert config["model_cfg"]["custom_text"] and config["model_cfg"]["vision_cfg"]["timm_pool"] == "map"
    assert config["model_cfg"]["text_cfg"]["pool_type"] == "last"


def test_loads_as_a_siglip_with_its_own_preprocessing(micro_siglip):
    assert micro_siglip.input_resolution == 64
    assert micro_siglip.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert micro_siglip.std.flatten().tolist() == [0.5, 0.5, 0.5]
    assert micro_siglip.model.logit_bias is not None  # the sigmoid loss's learned bias
    assert micro_siglip.model.logit_bias.item() < 0


def test_tokenizer_is_the_folder_s_own(micro_siglip):
    """SigLIP's layout: pad 0, eos 1, text canonicalized (case and punctuation do not matter),
    padded to the full context; the caption words are single pieces."""
    tokens = micro_siglip.tokenizer(["Red stripes.", "red stripes"])
    assert tokens.shape == (2, micro_siglip.context_length)
    assert torch.equal(tokens[0], tokens[1])
    row = tokens[0].tolist()
    assert row[:3].count(0) == 0 and row[2] == 1 and set(row[3:]) == {0}  # "red" "stripes" </s> <pad>...
    unseen = micro_siglip.tokenizer(["zebra"])[0].tolist()
    assert 2 not in unseen[:5]  # an unseen word falls apart into letters, not <unk>


# The bar: >= 90 % colour, >= 80 % pattern. The bundled model reaches 88 % joint pattern on
# this held-out seed (87 % on the trainer's); chance is 12.5 %.
PATTERN_FLOOR = 0.8


def test_zero_shot_plain_captions(micro_siglip, held_out):
    acc = zero_shot_accuracy(micro_siglip, *held_out)
    print(acc)
    assert acc["joint_colour"] >= 0.9 and acc["colour"] >= 0.9, acc
    assert acc["joint_pattern"] >= PATTERN_FLOOR and acc["pattern"] >= PATTERN_FLOOR, acc


def test_zero_shot_templated_prompts(micro_siglip, held_out):
    """Prompts through the 79 ImageNet templates (averaged), as the stylization encodes them."""
    acc = zero_shot_accuracy(micro_siglip, *held_out, templates=IMAGENET_TEMPLATES)
    print(acc)
    assert acc["joint_colour"] >= 0.9 and acc["colour"] >= 0.9, acc
    assert acc["joint_pattern"] >= PATTERN_FLOOR, acc


def test_texture_over_clutter_direction(micro_siglip):
    """E_I(texture over clutter) - E_I(clutter) agrees with E_T("red stripes") - E_T("a Photo"),
    the direction the stylization follows."""
    rng = np.random.default_rng(HELD_OUT_SEED + 1)
    clutter = torch.from_numpy(np.stack([render_clutter(96, rng) for _ in range(16)])).permute(0, 3, 1, 2)
    stripes = torch.from_numpy(np.stack([render_texture("red", "stripes", 96, rng) for _ in range(16)]))
    styled = 0.7 * stripes.permute(0, 3, 1, 2) + 0.3 * clutter
    with torch.no_grad():
        image_dir = micro_siglip.encode_image(styled) - micro_siglip.encode_image(clutter)
    text_dir = micro_siglip.encode_prompt("red stripes") - micro_siglip.encode_prompt("a Photo")
    cosine = torch.nn.functional.cosine_similarity(image_dir, text_dir[None], dim=-1)
    print(f"direction cosines: mean {float(cosine.mean()):.3f}, min {float(cosine.min()):.3f}")
    assert float(cosine.mean()) > 0.2 and bool((cosine > 0).all()), cosine
