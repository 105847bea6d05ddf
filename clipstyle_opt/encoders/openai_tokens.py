"""OpenAI CLIP's token count, without a model: its BPE tokenizer ships with clip-anytorch.

Its own module so that the prompt checks (`clipstyle_opt.encoders.prompts`, which run before any
model loads) and the OpenAI backend (`clipstyle_opt.encoders.clip`) share it without importing
each other.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    with warnings.catch_warnings():  # clip-anytorch imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from clip.clip import _tokenizer as tokenizer
    return tokenizer


def count_tokens(text: str) -> int:
    """Tokens ``text`` takes in OpenAI CLIP's context: its BPE tokens plus the start and end marks."""
    return len(_tokenizer().encode(text)) + 2
