"""CLIP through clip-anytorch: load by name or local file, encode texts through
the prompt templates, encode images at the model's own input size and
normalization."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..devices import autocast
from ..errors import ModelUnavailableError
from .templates import IMAGENET_TEMPLATES, fill_templates
from .weights import cache_dir, download

with warnings.catch_warnings():  # clip-anytorch imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import clip as openai_clip
    from clip.model import CLIP

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _local_file_hint() -> str:
    return "Pass a local checkpoint with --clip-model /path/to/ViT-B-32.pt (or clip_model=... in Python)."


def resolve_clip_checkpoint(name_or_path: str) -> Path:
    """Local path of a CLIP checkpoint: the file itself, or the cached/downloaded named model."""
    if os.path.isfile(name_or_path):
        return Path(name_or_path)
    urls = getattr(openai_clip.clip, "_MODELS", {})
    if name_or_path not in urls:
        raise ModelUnavailableError(
            f"CLIP model {name_or_path!r} is neither an existing checkpoint file nor a known name "
            f"({', '.join(urls)})")
    url = urls[name_or_path]
    target = cache_dir("clip") / Path(url).name
    return download(url, target, what=f"CLIP model {name_or_path}", hint=_local_file_hint(),
                    sha256_prefix=url.split("/")[-2])


class ClipEncoder(nn.Module):
    """A frozen CLIP model with the encoding steps the losses and metrics need.

    Images: NCHW RGB float in [0, 1], any size; they are resized (bicubic) to
    the model's input resolution and normalized with CLIP's mean and std.
    All returned embeddings are float32 and L2-normalized.
    """

    def __init__(self, model: CLIP, name: str = "", mean: Sequence[float] = OPENAI_MEAN,
                 std: Sequence[float] = OPENAI_STD) -> None:
        super().__init__()
        self.model = model.float().eval().requires_grad_(False)
        self.name = name
        self.input_resolution = int(model.visual.input_resolution)
        self.context_length = int(model.context_length)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.autocast_dtype: torch.dtype | None = None

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to the input resolution (bicubic, as the reference) and normalize."""
        size = self.input_resolution
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
        return (images - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D) unit vectors. Differentiable w.r.t. ``images``."""
        with autocast(self.device, self.autocast_dtype):
            features = self.model.encode_image(self.preprocess(images))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, D) unit vectors (no templates)."""
        tokens = openai_clip.tokenize(list(texts), context_length=self.context_length, truncate=True)
        with autocast(self.device, self.autocast_dtype):
            features = self.model.encode_text(tokens.to(self.device))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_prompt(self, text: str, templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
        """One text through every template: mean of the raw template embeddings, then normalized -> (D,).

        Averaging before normalizing follows the reference code.
        """
        tokens = openai_clip.tokenize(fill_templates(text, tuple(templates)),
                                      context_length=self.context_length, truncate=True)
        with autocast(self.device, self.autocast_dtype):
            features = self.model.encode_text(tokens.to(self.device))
        return F.normalize(features.float().mean(dim=0), dim=-1)


def load_clip(name_or_path: str, device: torch.device | str = "cpu") -> ClipEncoder:
    """Load a frozen `ClipEncoder` from a model name (downloaded and cached) or a local file.

    Raises `ModelUnavailableError` with one clear line when the weights cannot be had.
    """
    path = resolve_clip_checkpoint(name_or_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, _ = openai_clip.load(str(path), device="cpu", jit=False)
    except Exception as exc:  # clip raises many kinds of errors for a bad file
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelUnavailableError(f"cannot load CLIP checkpoint {path}: {first_line}") from None
    return ClipEncoder(model, name=name_or_path).to(device)
