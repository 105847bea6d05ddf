"""The procedural texture generator and the bundled micro CLIP (tests/data/micro_clip.pt).

The micro CLIP is trained by microclip/train_micro_clip.py on textures from
`microclip.textures`; these tests check that it loads like an
OpenAI checkpoint and that it carries meaning on images it never saw (a
generator seed the training never used).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES
from microclip.batches import make_batch, make_training_batch
from microclip.captions import caption_for
from microclip.scoring import encode_images, encode_texts, zero_shot_accuracy
from microclip.textures import COLOURS, PATTERNS, render_clutter, render_texture

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip
    from clip.model import build_model

CHECKPOINT = Path(__file__).resolve().parent / "data" / "micro_clip.pt"
HELD_OUT_SEED = 20_241_127  # never used by the training script (it draws from --seed 0)


# ---------------------------------------------------------------- generator

def test_palette_and_patterns():
    assert len(COLOURS) >= 8 and len(PATTERNS) >= 8
    for rgb in COLOURS.values():
        assert len(rgb) == 3 and all(0 <= v <= 255 for v in rgb)


def test_every_colour_and_pattern_renders():
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        for pattern in PATTERNS:
            image = render_texture(colour, pattern, 40, rng)
            assert image.shape == (40, 40, 3) and image.dtype == np.float32
            assert 0.0 <= image.min() and image.max() <= 1.0
            assert image.std() > 0.01, (colour, pattern)  # not a flat colour
    clutter = render_clutter(40, rng)
    assert clutter.shape == (40, 40, 3) and clutter.dtype == np.float32
    assert 0.0 <= clutter.min() and clutter.max() <= 1.0


def test_foreground_is_the_named_colour():
    """The pixels nearest the named colour are the pattern's, not the background's."""
    rng = np.random.default_rng(3)
    for colour, rgb in COLOURS.items():
        image = render_texture(colour, "checkerboard", 64, rng)
        target = np.asarray(rgb, dtype=np.float32) / 255
        near = np.linalg.norm(image - target, axis=-1) < 0.2
        assert 0.3 < near.mean() < 0.7, colour


def test_unknown_names_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        render_texture("mauve", "stripes", 16, rng)
    with pytest.raises(ValueError):
        render_texture("red", "paisley", 16, rng)


def test_make_batch_is_deterministic_per_seed():
    a_images, a_captions, a_labels = make_batch(12, 32, np.random.default_rng(5), templated_fraction=0.5,
                                                blend_fraction=0.5)
    b_images, b_captions, b_labels = make_batch(12, 32, np.random.default_rng(5), templated_fraction=0.5,
                                                blend_fraction=0.5)
    c_images, c_captions, _ = make_batch(12, 32, np.random.default_rng(6), templated_fraction=0.5,
                                         blend_fraction=0.5)
    assert a_images.shape == (12, 3, 32, 32) and a_images.dtype == torch.float32
    assert 0.0 <= float(a_images.min()) and float(a_images.max()) <= 1.0
    assert torch.equal(a_images, b_images) and a_captions == b_captions and a_labels == b_labels
    assert not torch.equal(a_images, c_images) and a_captions != c_captions
    for caption, (colour, pattern) in zip(a_captions, a_labels):
        assert colour in caption and pattern in caption


def test_captions_name_colour_and_pattern():
    rng = np.random.default_rng(1)
    captions = [caption_for("red", "stripes", rng, templated_fraction=0.5) for _ in range(60)]
    assert all("red" in c and "stripes" in c for c in captions)
    assert any(c.endswith(".") for c in captions) and any(c == "red stripes" for c in captions)
    batch = make_training_batch(64, 24, np.random.default_rng(2))
    positives = batch.positives()
    assert positives.shape == (64, 64) and bool(positives.diagonal().all())


def test_training_batch_restricted_to_some_colours():
    batch = make_training_batch(48, 24, np.random.default_rng(4), colours=("red", "blue"), photo_fraction=0.1)
    colours = {label[0] for label in batch.image_labels}
    assert colours <= {"red", "blue", None} and {"red", "blue"} <= colours


# ---------------------------------------------------------------- checkpoint

@pytest.fixture(scope="module")
def micro_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = clip.load(str(CHECKPOINT), jit=False, device="cpu")
    return model.eval()


@pytest.fixture(scope="module")
def held_out():
    """Plain textures at 96 px (resized to the model's 64 px as the project does), fresh seed."""
    images, _, labels = make_batch(320, 96, np.random.default_rng(HELD_OUT_SEED))
    return images, labels


def test_checkpoint_size_and_layout():
    assert CHECKPOINT.stat().st_size <= 20 * 2**20
    state = torch.load(CHECKPOINT, map_location="cpu")
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert state["positional_embedding"].shape[0] == 77  # clip.tokenize's default context


def test_checkpoint_round_trip(micro_clip):
    """clip.load == build_model on the raw state dict; text heads as build_model infers them."""
    state = torch.load(CHECKPOINT, map_location="cpu")
    built = build_model(dict(state)).float().eval()
    width = state["ln_final.weight"].shape[0]
    assert micro_clip.transformer.resblocks[0].attn.num_heads == width // 64
    assert built.transformer.resblocks[0].attn.num_heads == width // 64
    for name, value in built.state_dict().items():
        assert torch.equal(value, micro_clip.state_dict()[name]), name
    images, _, _ = make_batch(4, 64, np.random.default_rng(0))
    texts = ["red stripes", "a photo of a blue dots."]
    torch.testing.assert_close(encode_images(micro_clip, images), encode_images(built, images))
    torch.testing.assert_close(encode_texts(micro_clip, texts), encode_texts(built, texts))
    # Trimmed tokens (used by the helpers) give the full 77-token embedding.
    with torch.no_grad():
        full = micro_clip.encode_text(clip.tokenize(texts)).float()
    torch.testing.assert_close(encode_texts(micro_clip, texts), torch.nn.functional.normalize(full, dim=-1),
                               atol=1e-5, rtol=1e-4)


def test_zero_shot_plain_captions(micro_clip, held_out):
    acc = zero_shot_accuracy(micro_clip, *held_out)
    assert acc["joint_colour"] >= 0.9 and acc["colour"] >= 0.9, acc
    assert acc["joint_pattern"] >= 0.8 and acc["pattern"] >= 0.8, acc


def test_zero_shot_templated_prompts(micro_clip, held_out):
    """Prompts through the 79 ImageNet templates (averaged), as the stylization encodes them."""
    acc = zero_shot_accuracy(micro_clip, *held_out, templates=IMAGENET_TEMPLATES)
    assert acc["joint_colour"] >= 0.9 and acc["colour"] >= 0.9, acc
    assert acc["joint_pattern"] >= 0.7, acc


def test_texture_over_clutter_and_photo_direction(micro_clip):
    """Textures blended over photo-like clutter are still recognised, and the direction
    E_I(texture over clutter) - E_I(clutter) agrees with E_T("red stripes") - E_T("a Photo")."""
    rng = np.random.default_rng(HELD_OUT_SEED + 1)
    images, _, labels = make_batch(96, 96, rng, blend_fraction=1.0)
    acc = zero_shot_accuracy(micro_clip, images, labels)
    assert acc["joint_colour"] >= 0.8 and acc["joint_pattern"] >= 0.6, acc

    clutter = torch.from_numpy(np.stack([render_clutter(96, rng) for _ in range(16)])).permute(0, 3, 1, 2)
    stripes = torch.from_numpy(np.stack([render_texture("red", "stripes", 96, rng) for _ in range(16)]))
    styled = 0.7 * stripes.permute(0, 3, 1, 2) + 0.3 * clutter
    image_dir = encode_images(micro_clip, styled) - encode_images(micro_clip, clutter)
    text = encode_texts(micro_clip, ["red stripes", "a Photo"], IMAGENET_TEMPLATES)
    text_dir = text[0] - text[1]
    cosine = torch.nn.functional.cosine_similarity(image_dir, text_dir[None], dim=-1)
    assert float(cosine.mean()) > 0.2 and bool((cosine > 0).all()), cosine
    # and the styled images are closer to "red stripes" than the clutter is
    gain = encode_images(micro_clip, styled) @ text[0] - encode_images(micro_clip, clutter) @ text[0]
    assert bool((gain > 0).all()), gain


def test_project_encoder_feeds_the_model_as_trained(micro_clip):
    """The project's ClipEncoder (resize + OpenAI mean/std, templates averaged) sees what the helpers see."""
    from clipstyle_opt.encoders.clip import load_clip

    encoder = load_clip(str(CHECKPOINT), "cpu")
    images, _, _ = make_batch(6, 96, np.random.default_rng(HELD_OUT_SEED + 2))
    torch.testing.assert_close(encoder.encode_image(images), encode_images(micro_clip, images),
                               atol=1e-4, rtol=1e-4)
    expected = encode_texts(micro_clip, ["red stripes"], IMAGENET_TEMPLATES)[0]
    torch.testing.assert_close(encoder.encode_prompt("red stripes"), expected, atol=1e-4, rtol=1e-4)
