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
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ConfigError
from .base import ImageTextEncoder

@dataclass(frozen=True)
class ModelSpec:
    """One parsed ``--clip-model`` string.

    family: "openai" or "open_clip"; name: what that family's loader takes;
    weight: the ``@WEIGHT`` suffix (None when absent); text: the string without it.
    """

    family: str
    name: str
    weight: float | None
    text: str


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
    if sep and scheme == "openai":
        family, name = "openai", rest
    elif sep and scheme == "open_clip":
        family, name = "open_clip", rest
    elif sep and scheme == "local-dir":
        family, name = "open_clip", body
    else:  # a bare OpenAI name or a checkpoint file, as before backends existed
        family, name = "openai", body
    if not name or name.endswith(":"):
        raise ConfigError(f"clip_model {text!r}: nothing after {scheme + ':'!r}", "clip_model")
    return ModelSpec(family, name, weight, body)


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
    if parsed.family == "openai":
        from .clip import load_clip

        return load_clip(parsed.name, device)
    from .openclip import load_open_clip

    return load_open_clip(parsed.name, device)


# --- `clipstyle models` ---------------------------------------------------------

_OPENAI_TO_OPEN_CLIP = {"ViT-L/14@336px": "ViT-L-14-336"}


def _open_clip_config(open_clip: Any, arch: str) -> dict:
    return open_clip.get_model_config(arch) or {}


def _size_and_width(cfg: dict) -> tuple[int | None, int | None]:
    size = cfg.get("vision_cfg", {}).get("image_size")
    if isinstance(size, (tuple, list)):
        size = size[0]
    return size, cfg.get("embed_dim")


def known_models() -> list[dict[str, Any]]:
    """Every model name the backends know: string, family, input px, embedding width, cached or not.

    Input size and width come from open_clip's model configs when open_clip is installed
    (OpenAI's architectures are among them); without it they are left blank.
    """
    from .clip import openai_clip
    from .weights import cache_dir

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import open_clip
    except ImportError:
        open_clip = None
    rows = []
    clip_cache = cache_dir("clip")
    for name, url in getattr(openai_clip.clip, "_MODELS", {}).items():
        cfg = _open_clip_config(open_clip, _OPENAI_TO_OPEN_CLIP.get(name, name.replace("/", "-"))) if open_clip else {}
        size, width = _size_and_width(cfg)
        rows.append({"model": f"openai:{name}", "family": "openai", "input_px": size, "width": width,
                     "cached": (clip_cache / os.path.basename(url)).is_file()})
    if open_clip is not None:
        from .openclip import pretrained_is_cached

        for arch, tag in open_clip.list_pretrained():
            size, width = _size_and_width(_open_clip_config(open_clip, arch))
            rows.append({"model": f"open_clip:{arch}:{tag}", "family": "open_clip", "input_px": size,
                         "width": width, "cached": pretrained_is_cached(open_clip, arch, tag)})
    return rows


__all__ = ["ModelSpec", "parse_model_spec", "ensemble", "load_encoder", "known_models", "encoder_list"]
