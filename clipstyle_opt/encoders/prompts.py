"""Checking texts: a prompt must say something and fit the context of every encoder that reads it.

Policy (the same for ``stylize``, ``eval`` and the Python API): a text
longer than an encoder's context is refused, never silently truncated. Every
text is also encoded inside each of the 79 prompt templates, so a prompt may
have at most

    context length - marks - the longest template's overhead

tokens of that encoder's own tokenizer. For OpenAI CLIP: 77 tokens, two of
which mark the start and the end, and "a jpeg corrupted photo of the {}."
adds 9, so 66 tokens (roughly 50 English words). A SigLIP reads its own
(often much shorter) context with its own tokenizer. The error names the
encoder and the words that would not fit.

When each check runs:

- `check_text` without ``clip_model``: only what needs no model (a string,
  not empty); guidance and spec files call it.
- `check_text` with ``clip_model`` (before any model loads): also the length
  check of each member whose tokenizer needs no model (OpenAI's, which ships
  with clip-anytorch; `clipstyle_opt.encoders.registry.BACKENDS`).
- Once loaded, each encoder checks every text it encodes with its own
  tokenizer and context (`check_fits`), so an ensemble checks with every member.
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..errors import ConfigError
from .openai_tokens import count_tokens
from .templates import IMAGENET_TEMPLATES

CONTEXT_LENGTH = 77
"""Tokens OpenAI CLIP's text encoder reads (all OpenAI CLIP models), start and end marks included."""

TokenCounter = Callable[[str], int]
"""Tokens a text takes in one tokenizer's context, its start/end marks included (no template)."""


def token_count(text: str) -> int:
    """OpenAI CLIP BPE tokens of ``text`` alone (no start/end marks, no template)."""
    return count_tokens(text) - count_tokens("")


def max_prompt_tokens(context_length: int = CONTEXT_LENGTH, templates: tuple[str, ...] = IMAGENET_TEMPLATES,
                      count: TokenCounter | None = None) -> int:
    """The most tokens a text may have (marks excluded) so that every template filled with it fits
    ``context_length``. count: the tokenizer's `TokenCounter` (default OpenAI CLIP's)."""
    if count is None:
        count = count_tokens
    overhead = max(count(t.format("x")) - count("x") for t in templates) if templates else 0
    return context_length - count("") - overhead


def _check_type_and_empty(text: object, what: str, allow_empty: bool) -> str:
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a text, got {type(text).__name__}")
    if not text.strip() and not allow_empty:
        raise ConfigError(f"{what} is empty; give a text such as \"a watercolor painting\"")
    return text


def check_fits(text: str, what: str, *, label: str, count: TokenCounter, context_length: int,
               templates: Sequence[str] = IMAGENET_TEMPLATES, limit: int | None = None) -> str:
    """Return ``text`` if it fits ``label``'s ``context_length``-token context through every template; else
    one-line `ConfigError` naming the encoder, the counts and the words that would not fit.

    count: the encoder's tokenizer (`TokenCounter`); limit: `max_prompt_tokens` when the caller
    has it already (computing it tokenizes every template).
    """
    _check_type_and_empty(text, what, allow_empty=True)
    templates = tuple(templates)
    if limit is None:
        limit = max_prompt_tokens(context_length, templates, count)
    marks = count("")
    tokens = count(text) - marks
    if tokens <= limit:
        return text
    words = text.split()
    kept = 0
    while kept < len(words) and count(" ".join(words[:kept + 1])) - marks <= limit:
        kept += 1
    lost = words[kept:]
    shown = " ".join(lost[:6]) + (" ..." if len(lost) > 6 else "")
    templated = " with the prompt templates" if templates else ""
    raise ConfigError(f"{what} is too long for {label}: {tokens} tokens, but at most {limit} fit in its "
                      f"{context_length}-token context{templated}; shorten it (\"{shown}\" would not fit)")


def check_text(text: object, what: str = "the prompt", *, allow_empty: bool = False,
               clip_model: str | Sequence[str] | None = None,
               templates: tuple[str, ...] = IMAGENET_TEMPLATES) -> str:
    """Return ``text`` unchanged if it passes the checks that need no loaded model; else one-line `ConfigError`.

    Refused: a non-string; an empty or whitespace-only text (unless ``allow_empty``). With
    ``clip_model`` (a ``--clip-model`` string or an ensemble's strings), also a text longer than
    the context of a member whose tokenizer is known without loading it (OpenAI CLIP's:
    `max_prompt_tokens`); other members check it once loaded, with their own tokenizer. Any
    Unicode, emoji included, is accepted. ``what`` names the text ("the prompt", "--source-text").
    """
    from .registry import parse_model_spec

    text = _check_type_and_empty(text, what, allow_empty)
    models = [clip_model] if isinstance(clip_model, str) else list(clip_model or ())
    checked: set[tuple[str, int]] = set()
    for model in models:
        backend = parse_model_spec(model).backend
        counter = backend.preload_counter()
        if counter is None or backend.context_length is None:
            continue  # its tokenizer comes with the model: checked once loaded
        if (backend.token_counter, backend.context_length) in checked:
            continue  # every OpenAI CLIP reads the same context with the same tokenizer: once is enough
        checked.add((backend.token_counter, backend.context_length))
        check_fits(text, what, label=backend.label or model, count=counter,
                   context_length=backend.context_length, templates=templates)
    return text


def check_prompts(texts: Sequence[str], clip_model: str | Sequence[str] | None, *,
                  focus: str | None = None) -> None:
    """`check_text` for a run's prompts (named "the prompt" alone, else "prompt 1", "prompt 2", ...)
    and its ``--focus`` text, before ``clip_model`` loads."""
    for index, text in enumerate(texts):
        check_text(text, "the prompt" if len(texts) == 1 else f"prompt {index + 1}", clip_model=clip_model)
    if focus is not None:
        check_text(focus, "--focus", clip_model=clip_model)


__all__ = ["CONTEXT_LENGTH", "TokenCounter", "check_fits", "check_prompts", "check_text", "max_prompt_tokens",
           "token_count"]
