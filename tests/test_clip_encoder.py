"""CLIP loading and encoding (random-init weights: arithmetic and plumbing only)."""
import urllib.error

import pytest
import torch
from torch.nn import functional as F

from clipstyle_opt import ModelUnavailableError
from clipstyle_opt.encoders import weights
from clipstyle_opt.encoders.clip import load_clip, openai_clip
from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES
from clipstyle_opt.testing import tolerances


def test_uses_the_models_own_input_resolution(tiny_clip):
    assert tiny_clip.input_resolution == 64  # not a hard-coded 224
    seen = {}
    original = tiny_clip.model.encode_image

    def spy(x):
        seen["shape"] = tuple(x.shape)
        return original(x)

    tiny_clip.model.encode_image = spy
    try:
        out = tiny_clip.encode_image(torch.rand(2, 3, 100, 80))
    finally:
        tiny_clip.model.encode_image = original
    assert seen["shape"] == (2, 3, 64, 64)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_image_normalization_uses_clip_mean_and_std(tiny_clip):
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    assert torch.allclose(tiny_clip.preprocess(x), (x - mean) / std)


def test_prompt_is_mean_of_79_template_embeddings_then_normalized(tiny_clip):
    assert len(IMAGENET_TEMPLATES) == 79
    texts = [t.format("fire") for t in IMAGENET_TEMPLATES]
    with torch.no_grad():
        raw = tiny_clip.model.encode_text(openai_clip.tokenize(texts)).float()
    expected = F.normalize(raw.mean(0), dim=-1)
    assert torch.allclose(tiny_clip.encode_prompt("fire"), expected, atol=1e-5)
    assert not torch.allclose(tiny_clip.encode_prompt("fire"), tiny_clip.encode_prompt("water"))


def test_speed_rewrites_compute_what_the_untouched_model_computes(tiny_clip, tiny_clip_path):
    """ClipEncoder swaps the patch-embedding conv for a matmul and QuickGELU for a SiLU form;
    embeddings and input gradients must match clip's own modules to float noise (fp32)."""
    from clip.model import QuickGELU

    from clipstyle_opt.encoders.clip import PatchEmbedding, QuickGELUViaSiLU

    untouched, _ = openai_clip.load(str(tiny_clip_path), device="cpu", jit=False)
    untouched = untouched.float().eval()
    assert isinstance(untouched.visual.conv1, torch.nn.Conv2d)  # the comparison is against the original modules
    assert any(isinstance(m, QuickGELU) for m in untouched.modules())
    assert isinstance(tiny_clip.model.visual.conv1, PatchEmbedding)
    assert not any(isinstance(m, QuickGELU) for m in tiny_clip.model.modules())
    assert any(isinstance(m, QuickGELUViaSiLU) for m in tiny_clip.model.modules())
    assert tiny_clip.model.state_dict().keys() == untouched.state_dict().keys()

    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ours = tiny_clip.encode_image(x)
    grad_ours, = torch.autograd.grad((ours * torch.arange(1.0, ours.shape[1] + 1)).sum(), x)
    theirs = F.normalize(untouched.encode_image(tiny_clip.preprocess(x)).float(), dim=-1)
    grad_theirs, = torch.autograd.grad((theirs * torch.arange(1.0, theirs.shape[1] + 1)).sum(), x)
    # Unit vectors, so an absolute bound is a relative one.
    assert torch.allclose(ours, theirs, rtol=0, atol=tolerances.reordered())
    assert float((grad_ours - grad_theirs).norm() / grad_theirs.norm()) < tolerances.reordered_gradient()
    with torch.no_grad():
        expected = F.normalize(untouched.encode_text(openai_clip.tokenize(["red stripes"])).float(), dim=-1)
    assert torch.allclose(tiny_clip.encode_text(["red stripes"]), expected, rtol=0, atol=tolerances.reordered())


def test_encoders_are_frozen(tiny_clip):
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    tiny_clip.encode_image(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in tiny_clip.parameters())


def test_offline_named_model_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path))

    timeouts = []

    def no_network(*args, timeout=None, **kwargs):
        timeouts.append(timeout)
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    with pytest.raises(ModelUnavailableError) as info:
        load_clip("ViT-B/32")
    # Fails fast: one attempt, with a time limit of seconds (clip's own downloader has none). Checked on the
    # call, not on a stopwatch: wall time on a shared machine says nothing here.
    assert timeouts == [weights.DOWNLOAD_TIMEOUT_S] and 0 < weights.DOWNLOAD_TIMEOUT_S <= 10
    message = str(info.value)
    assert "ViT-B/32" in message and str(tmp_path / "clip") in message and "--clip-model" in message
    assert "\n" not in message
    assert not list((tmp_path / "clip").glob("*.part")), "no partial download left behind"


def test_bad_names_and_files(tmp_path):
    with pytest.raises(ModelUnavailableError, match="neither an existing checkpoint file nor a known name"):
        load_clip("ViT-X/99")
    with pytest.raises(ModelUnavailableError, match="neither an existing checkpoint file"):
        load_clip(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailableError, match="cannot load CLIP checkpoint"):
        load_clip(str(junk))
