"""``--clip-model`` strings: which backend loads a model, ensemble weights, and the list of known models.

Accepted forms (each may end in ``@WEIGHT`` inside an ensemble, e.g. ``ViT-B/32@0.5``):

==========================================  =============================================
``ViT-B/32`` or ``openai:ViT-B/32``          OpenAI CLIP by name (clip-anytorch; downloaded, cached)
``/path/to/checkpoint.pt``                   an OpenAI-layout CLIP checkpoint file
``open_clip:ViT-B-32:laion2b_s34b_b79k``     open_clip architecture and pretrained tag
``open_clip:ViT-B-16-SigLIP:webli``          SigLIP / SigLIP2, the same way
``local-dir:/path``                          a folder in open_clip's hub layout (offline)
``open_clip:ARCH``                           random weights (benchmarks, tests)
==========================================  =============================================

Each scheme is one row of `BACKENDS` (its loader, tokenizer, context length and
catalogue); parsing, loading, the early prompt check and `known_models` read the table.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..errors import ConfigError
from .base import ImageTextEncoder


@dataclass(frozen=True)
class Backend:
    """One row of `BACKENDS`: a ``--clip-model`` scheme and how its models load and read text.

    scheme: the prefix before ``:`` ("" for a bare name or a checkpoint file, the fallback);
    family: the `ImageTextEncoder.family` of what it loads; loader: "module:function" in this
    package taking (name, device) and returning an encoder, imported on first use;
    keeps_scheme: whether the loader's name keeps ``scheme:`` (``local-dir:/path``);
    tokenizer: what reads the model's texts; context_length: tokens its text tower reads,
    marks included, when known before the model loads (None: the model's own, known once
    loaded); token_counter: "module:function", a `clipstyle_opt.encoders.prompts.TokenCounter`
    that needs no loaded model, or None; label: how length errors name the encoder before it
    loads ("": the ``--clip-model`` string); lister: "module:function" returning the rows of
    `known_models` for this scheme, or None; example, summary: for the documentation.
    """

    scheme: str
    family: str
    loader: str
    keeps_scheme: bool
    tokenizer: str
    context_length: int | None
    token_counter: str | None
    label: str
    lister: str | None
    example: str
    summary: str

    def preload_counter(self) -> Callable[[str], int] | None:
        """The token counter usable before the model loads, imported now, or None."""
        return None if self.token_counter is None else _resolve(self.token_counter)


_OPENAI_TEXT = dict(tokenizer="OpenAI's CLIP BPE (clip-anytorch)", context_length=77,
                    token_counter=".openai_tokens:count_tokens", label="CLIP")
_OPEN_CLIP_TEXT = dict(tokenizer="the model's own (open_clip.get_tokenizer)", context_length=None,
                       token_counter=None, label="")

BACKENDS: tuple[Backend, ...] = (
    Backend(scheme="openai", family="openai", loader=".clip:load_clip", keeps_scheme=False, **_OPENAI_TEXT,
            lister=".clip:known_openai_models", example="openai:ViT-B/32",
            summary="OpenAI CLIP by name (clip-anytorch; downloaded, cached)"),
    Backend(scheme="open_clip", family="open_clip", loader=".openclip:load_open_clip", keeps_scheme=False,
            **_OPEN_CLIP_TEXT, lister=".openclip:known_open_clip_models",
            example="open_clip:ViT-B-32:laion2b_s34b_b79k",
            summary="open_clip ARCH:TAG (SigLIP / SigLIP2 the same way; ARCH alone: random weights)"),
    Backend(scheme="local-dir", family="open_clip", loader=".openclip:load_open_clip", keeps_scheme=True,
            **_OPEN_CLIP_TEXT, lister=None, example="local-dir:/path",
            summary="a folder in open_clip's hub layout (offline)"),
    Backend(scheme="", family="openai", loader=".clip:load_clip", keeps_scheme=False, **_OPENAI_TEXT,
            lister=None, example="ViT-B/32 or /path/to/checkpoint.pt",
            summary="a bare OpenAI name or an OpenAI-layout CLIP checkpoint file"),
)
"""Every ``--clip-model`` scheme. The row with scheme "" takes any string no other row claims
(as before backends existed). Adding a backend: its module (loader, and lister if it has a
catalogue) and one row here."""


def _resolve(target: str) -> Any:
    """The function named by "module:function" (module relative to this package), imported now."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module, __package__), function)


def backend_for(scheme_or_spec: str | ModelSpec) -> Backend:
    """The row of `BACKENDS` for a scheme ("openai", "local-dir", ...; "" or unknown: the fallback) or a
    parsed `ModelSpec`."""
    if isinstance(scheme_or_spec, ModelSpec):
        return backend_for(scheme_or_spec.scheme)
    for backend in BACKENDS:
        if backend.scheme and backend.scheme == scheme_or_spec:
            return backend
    return next(backend for backend in BACKENDS if not backend.scheme)


@dataclass(frozen=True)
class ModelSpec:
    """One parsed ``--clip-model`` string.

    family: "openai" or "open_clip"; name: what that family's loader takes;
    weight: the ``@WEIGHT`` suffix (None when absent); text: the string without it;
    scheme: the `BACKENDS` row that parsed it ("" for a bare name or checkpoint file).
    """

    family: str
    name: str
    weight: float | None
    text: str
    scheme: str = ""

    @property
    def backend(self) -> Backend:
        """This spec's row of `BACKENDS`."""
        return backend_for(self.scheme)


def _split_weight(text: str) -> tuple[str, float | None]:
    head, sep, tail = text.rpartition("@")
    if not sep or not head:
        return text, None
    try:
        weight = float(tail)
    except ValueError:  # "ViT-L/14@336px" is a name, not a weight
        return text, None
    return head, weight


def parse_model_spec(text: str) -> ModelSpec:
    """Parse ``NAME[@WEIGHT]`` without loading anything; one-line `ConfigError` if malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("clip_model: give a model name, a checkpoint file or a local-dir: folder", "clip_model")
    body, weight = _split_weight(text.strip())
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
        raise ConfigError(f"clip_model {text!r}: the weight must be a finite number >= 0", "clip_model")
    scheme, sep, rest = body.partition(":")
    backend = backend_for(scheme if sep else "")
    if backend.scheme:
        name = body if backend.keeps_scheme else rest
    else:  # a bare OpenAI name or a checkpoint file, as before backends existed
        name = body
    if not name or name.endswith(":"):
        raise ConfigError(f"clip_model {text!r}: nothing after {scheme + ':'!r}", "clip_model")
    return ModelSpec(backend.family, name, weight, body, backend.scheme)


def ensemble(models: str | Sequence[str], weights: Sequence[float] = ()) -> list[tuple[ModelSpec, float]]:
    """Members and their normalized weights (summing to 1) from ``clip_model`` and ``clip_weights``.

    Weights come from ``weights`` (one per model) or from ``@WEIGHT`` suffixes,
    not both; models without either weigh the same. They must be finite, >= 0
    and have a positive sum. A single model gets weight exactly 1.0.
    """
    texts = [models] if isinstance(models, str) else list(models)
    if not texts:
        raise ConfigError("clip_model: give at least one model", "clip_model")
    specs = [parse_model_spec(text) for text in texts]
    suffixed = [spec.weight for spec in specs if spec.weight is not None]
    if weights and suffixed:
        raise ConfigError("clip_weights: give ensemble weights either as NAME@WEIGHT or as clip_weights, not both", "clip_weights")
    if weights:
        if len(weights) != len(specs):
            raise ConfigError(f"clip_weights has {len(weights)} value(s) for {len(specs)} clip_model(s)", "clip_weights")
        raw = [float(w) for w in weights]
    elif suffixed and len(suffixed) != len(specs):
        raise ConfigError("clip_model: give every model a @WEIGHT, or none", "clip_model")
    else:
        raw = [spec.weight if spec.weight is not None else 1.0 for spec in specs]
    for value in raw:
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"clip_weights: each weight must be a finite number >= 0, got {value}", "clip_weights")
    total = sum(raw)
    if total <= 0:
        raise ConfigError("clip_weights: the weights must not all be 0", "clip_weights")
    if len(specs) == 1:
        return [(specs[0], 1.0)]
    return [(spec, value / total) for spec, value in zip(specs, raw)]


def encoder_list(encoders: ImageTextEncoder | Sequence[ImageTextEncoder] | None) -> list[ImageTextEncoder]:
    """Already loaded encoder(s) as a list: None gives [], one encoder [it], a sequence its items."""
    if encoders is None:
        return []
    return list(encoders) if isinstance(encoders, (list, tuple)) else [encoders]


def load_encoder(spec: str | ModelSpec, device: torch.device | str = "cpu") -> ImageTextEncoder:
    """Load one frozen encoder from a ``--clip-model`` string (any ``@WEIGHT`` is ignored here)."""
    parsed = parse_model_spec(spec) if isinstance(spec, str) else spec
    backend = parsed.backend
    if backend.family != parsed.family:  # a spec built by hand may name only its family
        backend = next((row for row in BACKENDS if row.family == parsed.family), backend_for("open_clip"))
    return _resolve(backend.loader)(parsed.name, device)


# --- `clipstyle models` ---------------------------------------------------------

def known_models() -> list[dict[str, Any]]:
    """Every model name the backends know: string, family, input px, embedding width, cached or not.

    One list per `BACKENDS` row with a lister, in table order. Input size and width come from
    open_clip's model configs when open_clip is installed (OpenAI's architectures are among
    them); without it they are left blank, and open_clip's own models are not listed.
    """
    rows: list[dict[str, Any]] = []
    for backend in BACKENDS:
        if backend.lister is not None:
            rows.extend(_resolve(backend.lister)())
    return rows


__all__ = ["Backend", "BACKENDS", "ModelSpec", "backend_for", "parse_model_spec", "ensemble", "load_encoder",
           "known_models", "encoder_list"]
