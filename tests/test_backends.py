"""Encoder backends and ensembles: `--clip-model` strings, open_clip models from local folders,
weighted ensembles in the objective, the offline failure, `clipstyle models`.

The open_clip models here are random-init and tiny (`make_random_open_clip`): they check loading,
preprocessing taken from the model, shapes, gradients and the ensemble arithmetic, never quality.
"""
from __future__ import annotations

import sys
import time

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from clipstyle_opt import ConfigError, ModelUnavailableError, StyleConfig, Stylizer
from clipstyle_opt.cli import cli
from clipstyle_opt.encoders import openclip
from clipstyle_opt.encoders.base import ImageTextEncoder
from clipstyle_opt.encoders.registry import ensemble, load_encoder, parse_model_spec
from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES, fill_templates
from clipstyle_opt.testing import make_random_open_clip, tolerances


@pytest.fixture(scope="session")
def open_clip_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    return {kind: make_random_open_clip(root / kind, kind, seed=1) for kind in ("clip", "siglip")}


@pytest.fixture(scope="session")
def siglip_like(open_clip_dirs):
    return load_encoder(f"local-dir:{open_clip_dirs['siglip']}")


@pytest.mark.parametrize("text, family, name, weight", [
    ("ViT-B/32", "openai", "ViT-B/32", None),
    ("openai:ViT-B/16@0.25", "openai", "ViT-B/16", 0.25),
    ("ViT-L/14@336px", "openai", "ViT-L/14@336px", None),  # '@336px' is part of the name
    ("/models/clip.pt@2", "openai", "/models/clip.pt", 2.0),
    ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip", "ViT-B-32:laion2b_s34b_b79k", None),
    ("open_clip:ViT-B-16-SigLIP:webli@0.5", "open_clip", "ViT-B-16-SigLIP:webli", 0.5),
    ("local-dir:/m/siglip@1e-1", "open_clip", "local-dir:/m/siglip", 0.1),
])
def test_model_strings_name_their_backend_and_weight(text, family, name, weight):
    spec = parse_model_spec(text)
    assert (spec.family, spec.name, spec.weight) == (family, name, weight)


@pytest.mark.parametrize("models, weights, message", [
    (["a", "b"], (1.0, 2.0, 3.0), "3 value"),
    (["a", "b"], (0.0, 0.0), "not all be 0"),
    (["a", "b"], (-1.0, 2.0), ">= 0"),
    (["a@0.5", "b"], (), "every model a @WEIGHT"),
    (["a@0.5", "b@0.5"], (1.0, 1.0), "not both"),
    (["a@nan"], (), "finite"),
    (["open_clip:"], (), "nothing after"),
])
def test_bad_ensembles_are_refused_in_one_line(models, weights, message):
    with pytest.raises(ConfigError, match=message):
        StyleConfig(clip_model=models, clip_weights=weights)


def test_ensemble_weights_are_normalized_and_one_model_weighs_exactly_one():
    assert [w for _, w in ensemble(["a@1", "b@3"])] == [0.25, 0.75]
    assert [w for _, w in ensemble(["a", "b"], (2.0, 2.0))] == [0.5, 0.5]
    assert [w for _, w in ensemble("a@7")] == [1.0]
    config = StyleConfig(clip_model=["only.pt"])
    assert config.clip_model == "only.pt"  # a one-member list is the plain single model
    assert StyleConfig.from_json(StyleConfig(clip_model=["a", "b"], clip_weights=(1, 3)).to_json()).clip_weights == (1, 3)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_open_clip_folder_loads_with_its_own_preprocessing(open_clip_dirs, kind):
    encoder = load_encoder(f"local-dir:{open_clip_dirs[kind]}")
    assert isinstance(encoder, ImageTextEncoder) and encoder.family == "open_clip"
    assert encoder.input_resolution == 32 and encoder.embedding_width == 32
    # mean = std = 0.5 from the folder's preprocess_cfg, not OpenAI's defaults
    assert encoder.mean.flatten().tolist() == [0.5] * 3 and encoder.std.flatten().tolist() == [0.5] * 3
    images = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    embeddings = encoder.encode_image(images)
    assert embeddings.shape == (3, 32) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=tolerances.reordered())
    grad, = torch.autograd.grad(embeddings[:, 0].sum(), images)
    assert float(grad.abs().sum()) > 0
    # The image path is: squash to 32 px (bicubic), (x - 0.5) / 0.5, the model's own encode_image.
    with torch.no_grad():
        by_hand = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False)
        expected = F.normalize(encoder.model.encode_image((by_hand - 0.5) / 0.5).float(), dim=-1)
    assert torch.allclose(embeddings.detach(), expected, atol=tolerances.reordered())
    # A prompt: the raw embeddings of the 79 templates averaged, then normalized.
    with torch.no_grad():
        raw = encoder.model.encode_text(encoder.tokenizer(fill_templates("red stripes", IMAGENET_TEMPLATES)))
    prompt = encoder.encode_prompt("red stripes")
    assert torch.allclose(prompt, F.normalize(raw.float().mean(0), dim=-1), atol=tolerances.reordered())
    assert not torch.allclose(prompt, encoder.encode_prompt("green dots"))


def test_open_clip_towers_run_sequence_first_with_the_same_outputs(open_clip_dirs):
    """`attention_sequence_first` changes the memory layout of open_clip's own transformers, not
    their function: the batch-first original gives the same embeddings and image gradients."""
    import copy

    encoder = load_encoder(f"local-dir:{open_clip_dirs['clip']}")
    blocks = [*encoder.model.visual.transformer.resblocks, *encoder.model.transformer.resblocks]
    assert blocks and all(not block.attn.batch_first for block in blocks)
    original = copy.deepcopy(encoder.model)
    for module in original.modules():
        if hasattr(module, "batch_first"):
            module.batch_first = True
    assert openclip.attention_sequence_first(copy.deepcopy(original)) == len(blocks)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pixels = (images - 0.5) / 0.5
    ours, theirs = encoder.model.encode_image(pixels), original.encode_image(pixels)
    assert torch.allclose(ours, theirs, atol=tolerances.reordered())
    grad_ours, = torch.autograd.grad(ours.square().sum(), images, retain_graph=True)
    grad_theirs, = torch.autograd.grad(theirs.square().sum(), images)
    assert torch.allclose(grad_ours, grad_theirs, atol=tolerances.reordered())
    tokens = encoder.tokenizer(["red stripes", "a photo"])
    with torch.no_grad():
        assert torch.allclose(encoder.model.encode_text(tokens), original.encode_text(tokens),
                              atol=tolerances.reordered())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_timm_towers_attend_explicitly_on_the_cpu_with_the_same_outputs(open_clip_dirs, dtype):
    """On the CPU the encoder switches timm's attention layers (SigLIP's blocks and attention-pool
    head) from scaled_dot_product_attention to timm's explicit form, a faster kernel choice, not
    another function: the fused original gives the same embeddings and image gradients."""
    import copy

    from torch.nn.attention import SDPBackend, sdpa_kernel

    encoder = load_encoder(f"local-dir:{open_clip_dirs['siglip']}")
    encoder.autocast_dtype = None if dtype == torch.float32 else dtype
    original = copy.deepcopy(encoder.model)
    layers = openclip.timm_attention_layers(encoder.model)
    assert len(layers) == len(encoder.model.visual.trunk.blocks) + 1  # the blocks and the pool head
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ours = encoder.encode_image(images)
    assert not any(layer.fused_attn for layer in layers)
    assert all(layer.fused_attn for layer in openclip.timm_attention_layers(original))
    with sdpa_kernel(SDPBackend.MATH):  # the kernel the encoder used before on the CPU
        theirs = F.normalize(original.encode_image(encoder.preprocess(images).to(dtype)).float(), dim=-1)
    # fp32: the same sums in another order. bf16: the math kernel takes the softmax in fp32, timm's
    # explicit form in bf16, so a few more half-eps roundings reach the output (measured 0.4 eps on
    # the embeddings, 1.1 eps on the gradient's relative norm); 4 and 16 eps leave room for other CPUs.
    if dtype == torch.float32:
        atol, gradient_rtol = tolerances.reordered(), tolerances.reordered_gradient()
    else:
        atol, gradient_rtol = 4 * tolerances.eps(dtype), 16 * tolerances.eps(dtype)
    assert torch.allclose(ours, theirs, atol=atol)
    direction = torch.linspace(-1, 1, ours.shape[1])  # the embeddings are unit vectors: project them
    grad_ours, = torch.autograd.grad((ours * direction).sum(), images)
    grad_theirs, = torch.autograd.grad((theirs * direction).sum(), images)
    assert (grad_ours - grad_theirs).norm() <= gradient_rtol * grad_theirs.norm()


def test_open_clip_refuses_a_text_it_would_cut(siglip_like):
    with pytest.raises(ConfigError, match="too long"):
        siglip_like.encode_text(["word " * 40])  # the SigLIP-like test model reads 32 tokens


def test_one_member_ensemble_is_the_single_model_bit_for_bit(tiny_config, tiny_clip, vgg16, photo):
    single = Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16).stylize(photo, "fire", steps=3)
    for models in ([tiny_config.clip_model], [tiny_config.clip_model + "@1"]):
        member = Stylizer(tiny_config.replace(clip_model=models), clip=[tiny_clip], vgg=vgg16)
        again = member.stylize(photo, "fire", steps=3)
        assert torch.equal(single.tensor, again.tensor)
        assert [h["total"] for h in single.history] == [h["total"] for h in again.history]


def test_a_model_twice_at_half_weight_gives_the_single_model_losses(tiny_config, tiny_clip, vgg16, photo):
    """0.5 x + 0.5 x = x: the weighted sum over members is the single model's loss (float-exact
    for the values; the gradient is accumulated in another order, hence one step, see
    test_fast_path_equivalence for why later steps drift)."""
    single = Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16).stylize(photo, "fire", steps=1)
    twice = Stylizer(tiny_config.replace(clip_model=[tiny_config.clip_model] * 2), clip=[tiny_clip, tiny_clip],
                     vgg=vgg16).stylize(photo, "fire", steps=1)
    for key in ("dir", "patch", "total"):
        assert twice.history[0][key] == pytest.approx(single.history[0][key], rel=tolerances.reordered())
    assert twice.history[0]["dir[0]"] == twice.history[0]["dir[1]"]
    assert float((twice.tensor - single.tensor).abs().max()) <= tolerances.reordered()


def test_two_backends_make_one_weighted_objective(tiny_config, tiny_clip, siglip_like, vgg16, photo):
    """Members of different families and input sizes (64 px CLIP, 32 px SigLIP-like, 32-d and 64-d
    embeddings are never mixed): dir and patch are the weighted sums of each member's own."""
    config = tiny_config.replace(clip_model=[tiny_config.clip_model, str(siglip_like.name)], clip_weights=(3, 1))
    result = Stylizer(config, clip=[tiny_clip, siglip_like], vgg=vgg16).stylize(photo, "fire", steps=2)
    assert tiny_clip.embedding_width != siglip_like.embedding_width
    for row in result.history:
        for key in ("dir", "patch"):
            expected = 0.75 * row[f"{key}[0]"] + 0.25 * row[f"{key}[1]"]
            assert row[key] == pytest.approx(expected, rel=tolerances.reordered())
        assert row["dir[0]"] != row["dir[1]"]


def test_offline_open_clip_name_fails_fast_in_one_line(monkeypatch, tmp_path):
    openclip.import_open_clip()  # import cost aside: what is bounded is the wait for the network
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(openclip, "HUB_HOST", ("127.0.0.1", 9))  # nothing listens: as without network
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as caught:
        load_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k")
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "ViT-B-32:laion2b_s34b_b79k" in message
    assert "local-dir:" in message and "open_clip" in message  # where it looked and what to pass instead
    photo_dir = tmp_path / "out"
    photo_dir.mkdir()
    result = CliRunner().invoke(cli, ["stylize", "examples/chelsea.png", "fire", "-o", str(photo_dir / "x.png"),
                                      "--clip-model", "open_clip:ViT-B-32:laion2b_s34b_b79k", "-q"])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "error: cannot download open_clip model ViT-B-32:laion2b_s34b_b79k" in result.output
    assert list(photo_dir.iterdir()) == []


def test_cached_weights_without_their_tokenizer_fail_fast_offline(monkeypatch, open_clip_dirs):
    """SigLIP weights in the cache but not the hub tokenizer they name: without network the hub
    client is put in offline mode while loading, so the run stops at once (not after ~50 s of
    retries), in one line that says the tokenizer is missing; the flag is restored afterwards."""
    from huggingface_hub import constants

    open_clip = openclip.import_open_clip()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(openclip, "HUB_HOST", ("127.0.0.1", 9))  # nothing listens: as without network
    monkeypatch.setattr(openclip, "pretrained_is_cached", lambda *args: True)
    tiny = open_clip.create_model(f"local-dir:{open_clip_dirs['siglip']}", device="cpu")
    monkeypatch.setattr(open_clip, "create_model", lambda *args, **kwargs: tiny)  # "the cached weights"
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as caught:
        load_encoder("open_clip:ViT-B-16-SigLIP:webli")
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "ViT-B-16-SigLIP:webli" in message and "tokenizer" in message
    assert constants.HF_HUB_OFFLINE is False


def test_unknown_open_clip_names_and_tags_are_named():
    with pytest.raises(ModelUnavailableError, match="no architecture 'ViT-Q-99'"):
        load_encoder("open_clip:ViT-Q-99:x")
    with pytest.raises(ModelUnavailableError, match="no pretrained tag 'nope' for ViT-B-32 .known: .*laion2b"):
        load_encoder("open_clip:ViT-B-32:nope")


def test_without_open_clip_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip now raises ImportError
    with pytest.raises(ModelUnavailableError, match=r"pip install 'clipstyle_opt\[open_clip\]'"):
        load_encoder("open_clip:ViT-B-32:openai")


def test_cli_ensemble_flags_are_checked_before_any_model_loads(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["stylize", "examples/chelsea.png", "fire", "-o", str(tmp_path / "x.png"),
                                 "--clip-model", "missing-a.pt", "--clip-model", "missing-b.pt",
                                 "--clip-weights", "1,2,3"])
    assert result.exit_code == 2
    assert "--clip-weights has 3 value(s) for 2 clip_model(s)" in result.output
    assert list(tmp_path.iterdir()) == []


def test_models_lists_names_sizes_and_widths():
    result = CliRunner().invoke(cli, ["models", "SigLIP"])
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if line.startswith("open_clip:ViT-B-16-SigLIP:webli "))
    assert row.split()[1:3] == ["224", "768"]
    everything = CliRunner().invoke(cli, ["models"]).output
    row = next(line for line in everything.splitlines() if line.startswith("openai:ViT-B/32 "))
    assert row.split()[1:3] == ["224", "512"]


def test_eval_scores_under_each_encoder_with_suffixed_columns(tiny_stylizer, tiny_clip, siglip_like, photo, tmp_path):
    from clipstyle_opt.evaluate import Evaluator, evaluate, resolve_job

    output = tiny_stylizer.stylize(photo, "fire", steps=1).save(tmp_path / "out.png")
    metrics = ["clip_score", "clip_direction", "ssim"]
    both = evaluate([output], clip=[tiny_clip, siglip_like], clip_model=[tiny_clip.name, siglip_like.name],
                    metrics=metrics, device="cpu")
    row = both[0]
    clip_columns = [key for key in row if key.startswith(("clip_score", "clip_direction"))]
    assert clip_columns == [f"clip_score[{tiny_clip.name}]", f"clip_score[{siglip_like.name}]",
                            f"clip_direction[{tiny_clip.name}]", f"clip_direction[{siglip_like.name}]"]
    # Each column is what that encoder alone gives, under the unsuffixed name.
    for encoder in (tiny_clip, siglip_like):
        alone = Evaluator(clip=encoder, metrics=metrics, device="cpu").score_job(resolve_job(output))
        for metric in ("clip_score", "clip_direction"):
            assert row[f"{metric}[{encoder.name}]"] == pytest.approx(alone[metric], abs=tolerances.reordered())
    assert "ssim" in row and f"clip_score[{tiny_clip.name}](+)" in both.table().splitlines()[0]
    assert f"clip_score[{tiny_clip.name}]" in both.mean()


def test_a_threshold_that_rejects_every_crop_is_reported(tiny_stylizer, photo):
    """0.7 was tuned on CLIP ViT-B/32 distances; when a threshold rejects everything from the
    start (here 1.99: only a crop pointing straight against the direction would pass), the patch
    loss is dead and the user is told, once, with the encoder and what to change."""
    from clipstyle_opt.errors import ClipstyleWarning

    with pytest.warns(ClipstyleWarning, match=r"--threshold 1.99 rejected 100 % of the crops in the first 3 step"):
        result = tiny_stylizer.stylize(photo, "fire", steps=3, threshold=1.99)
    assert all(row["patch_kept"] == 0 for row in result.history)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ClipstyleWarning)
        kept = tiny_stylizer.stylize(photo, "fire", steps=3)  # 0.7: at the start nothing matches, all kept
    assert all(row["patch_kept"] > 0.5 for row in kept.history)
