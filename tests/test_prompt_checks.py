"""Each prompt is checked by the encoder that reads it: its own tokenizer and context length.

The micro SigLIP (tests/data/micro_siglip) reads a 16-token context with its own sentencepiece
tokenizer (1 end mark; the longest template adds 7 tokens): at most 8 tokens fit. The micro CLIP
reads OpenAI's 77 tokens with OpenAI's BPE: 66 fit. Before a model loads only the model-free
checks run, plus OpenAI's length check for OpenAI models (their tokenizer ships with clip-anytorch).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipstyle_opt.encoders import prompts
from clipstyle_opt.encoders.registry import load_encoder
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.objective.style_objective import StyleObjective

ROOT = Path(__file__).resolve().parent.parent
MICRO_CLIP = str(ROOT / "tests" / "data" / "micro_clip.pt")
MICRO_SIGLIP = f"local-dir:{ROOT / 'tests' / 'data' / 'micro_siglip'}"
PROMPT = "red stripes and blue dots on green waves with yellow checks"
"""Fits OpenAI's 66 tokens easily; too long for the micro SigLIP's 16-token context."""


@pytest.fixture(scope="module")
def encoders():
    return {"clip": load_encoder(MICRO_CLIP, "cpu"), "siglip": load_encoder(MICRO_SIGLIP, "cpu")}


def test_the_micro_siglip_refuses_a_prompt_with_its_own_numbers(encoders):
    siglip = encoders["siglip"]
    assert siglip.context_length == 16
    limit = prompts.max_prompt_tokens(16, count=siglip.count_tokens)
    tokens = siglip.count_tokens(PROMPT) - siglip.count_tokens("")
    assert prompts.token_count(PROMPT) <= prompts.max_prompt_tokens() and tokens > limit  # OpenAI's would take it
    with pytest.raises(ConfigError) as refused:
        siglip.encode_prompt(PROMPT)
    line = str(refused.value)
    assert "\n" not in line
    assert f"is too long for {MICRO_SIGLIP}: {tokens} tokens, but at most {limit} fit in its 16-token context" in line


def test_the_micro_clip_accepts_the_same_prompt(encoders):
    assert encoders["clip"].encode_prompt(PROMPT).shape == (encoders["clip"].embedding_width,)


def test_a_prompt_that_fits_the_siglip_is_encoded(encoders):
    assert encoders["siglip"].encode_prompt("red stripes").shape == (encoders["siglip"].embedding_width,)


@pytest.mark.parametrize("order", [("clip", "siglip"), ("siglip", "clip")])
def test_an_ensemble_checks_with_every_member(encoders, vgg16, tiny_config, order):
    content = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    members = [(encoders[name], 0.5) for name in order]
    with pytest.raises(ConfigError, match=f"too long for {MICRO_SIGLIP}"):
        StyleObjective(members, vgg16, tiny_config, content, PROMPT)
    StyleObjective(members, vgg16, tiny_config, content, "red stripes")  # fits both


def test_before_loading_only_openai_models_get_a_length_check():
    long = " ".join(["word"] * 70)
    with pytest.raises(ConfigError, match="too long for CLIP: 70 tokens, but at most 66 fit"):
        prompts.check_text(long, clip_model="ViT-B/32")
    with pytest.raises(ConfigError, match="too long for CLIP"):
        prompts.check_text(long, clip_model=[MICRO_SIGLIP, "openai:ViT-B/32@0.5"])  # the OpenAI member
    assert prompts.check_text(long, clip_model=MICRO_SIGLIP) == long  # its tokenizer comes with the model
    assert prompts.check_text(long, clip_model="open_clip:ViT-B-16-SigLIP:webli") == long
    assert prompts.check_text(long) == long  # no model named: the model-free checks only


@pytest.mark.parametrize("clip_model", [None, "ViT-B/32", MICRO_SIGLIP])
def test_the_model_free_checks_run_whatever_the_encoder(clip_model):
    with pytest.raises(ConfigError, match="the prompt is empty"):
        prompts.check_text("  ", clip_model=clip_model)
    with pytest.raises(ConfigError, match="must be a text, got int"):
        prompts.check_text(3, clip_model=clip_model)
    assert prompts.check_text("", allow_empty=True, clip_model=clip_model) == ""


def test_check_prompts_names_each_prompt():
    long = " ".join(["word"] * 70)
    with pytest.raises(ConfigError, match="^prompt 2 is too long for CLIP"):
        prompts.check_prompts(["fire", long], "ViT-B/32")
    with pytest.raises(ConfigError, match="^--focus is too long for CLIP"):
        prompts.check_prompts(["fire"], "ViT-B/32", focus=long)
    prompts.check_prompts(["fire", long], MICRO_SIGLIP)
