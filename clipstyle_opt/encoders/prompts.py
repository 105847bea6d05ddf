"""Checking texts before any model loads: a prompt must say something and fit CLIP's context.

Policy (the same for ``stylize``, ``eval`` and the Python API): a text
longer than CLIP's context is refused, never silently truncated. CLIP reads
77 tokens, two of which mark the start and the end; every text is also
encoded inside each of the 79 prompt templates ("a jpeg corrupted photo of
the {}." adds 9 tokens), so a prompt may have at most 66 tokens (roughly 50
English words). The error names the words that would not fit.
"""
from __future__ import annotations

import warnings

from .templates import IMAGENET_TEMPLATES
from ..errors import ConfigError

CONTEXT_LENGTH = 77
"""Tokens CLIP's text encoder reads (all OpenAI CLIP models), start and end marks included."""


def _encode(text: str) -> list[int]:
    with warnings.catch_warnings():  # clip-anytorch imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from clip.clip import _tokenizer
    return _tokenizer.encode(text)


def token_count(text: str) -> int:
    """CLIP BPE tokens of ``text`` alone (no start/end marks, no template)."""
    return len(_encode(text))


def max_prompt_tokens(context_length: int = CONTEXT_LENGTH,
                      templates: tuple[str, ...] = IMAGENET_TEMPLATES) -> int:
    """The most tokens a text may have so that every template filled with it fits ``context_length``."""
    overhead = max(len(_encode(t.format("x"))) - len(_encode("x")) for t in templates) if templates else 0
    return context_length - 2 - overhead


def check_text(text: object, what: str = "the prompt", *, allow_empty: bool = False,
               context_length: int = CONTEXT_LENGTH, templates: tuple[str, ...] = IMAGENET_TEMPLATES) -> str:
    """Return ``text`` unchanged if CLIP can encode it whole through ``templates``; else one-line `ConfigError`.

    Refused: a non-string; an empty or whitespace-only text (unless
    ``allow_empty``); a text longer than `max_prompt_tokens`. Any Unicode,
    emoji included, is accepted (CLIP's tokenizer works on UTF-8 bytes).
    ``what`` names the text in the message ("the prompt", "--source-text").
    """
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a text, got {type(text).__name__}")
    if not text.strip() and not allow_empty:
        raise ConfigError(f"{what} is empty; give a text such as \"a watercolor painting\"")
    tokens = token_count(text)
    limit = max_prompt_tokens(context_length, templates)
    if tokens <= limit:
        return text
    words = text.split()
    kept = 0
    while kept < len(words) and token_count(" ".join(words[:kept + 1])) <= limit:
        kept += 1
    lost = words[kept:]
    shown = " ".join(lost[:6]) + (" ..." if len(lost) > 6 else "")
    raise ConfigError(f"{what} is too long for CLIP: {tokens} tokens, but at most {limit} fit in its "
                      f"{context_length}-token context with the prompt templates; shorten it "
                      f"(\"{shown}\" would not fit)")


__all__ = ["CONTEXT_LENGTH", "check_text", "max_prompt_tokens", "token_count"]
