"""What the losses and metrics need from a vision-language encoder, whatever its family.

Every backend (OpenAI CLIP through clip-anytorch, OpenCLIP and SigLIP through
open_clip) is an ``nn.Module`` with these members. Images enter as NCHW RGB
float in [0, 1] at any size; each encoder resizes and normalizes them its own
way. Every returned embedding is a float32 unit vector: the directional and
patch losses only take cosines, so a SigLIP model's logit scale and bias
never enter them.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from torch.nn import functional as F

from .templates import IMAGENET_TEMPLATES


class WeightsCastOnce(torch.nn.Module):
    """An encoder whose reduced precision is set by casting its frozen weights once.

    Rather than autocast, which re-casts every frozen weight on every call (five
    CLIP calls a step with chunked backward), setting `autocast_dtype` casts the
    weights once through `_cast_weights`; each backend decides which tensors. Casting
    back to fp32 keeps the rounded values.
    """

    _dtype: torch.dtype | None = None

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The reduced precision the towers compute in (bf16/fp16), or None for fp32."""
        return self._dtype

    @autocast_dtype.setter
    def autocast_dtype(self, dtype: torch.dtype | None) -> None:
        if dtype == self._dtype:
            return
        self._cast_weights(dtype or torch.float32)
        self._dtype = dtype

    def _cast_weights(self, dtype: torch.dtype) -> None:
        raise NotImplementedError


def resize_and_normalize(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """NCHW images in [0, 1] squashed to ``size`` x ``size`` px (bicubic, as the reference resizes
    the whole image; skipped at that size already), then ``(x - mean) / std``."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
    return (images - mean) / std


@runtime_checkable
class ImageTextEncoder(Protocol):
    """A frozen image/text encoder pair sharing one embedding space.

    name: the ``--clip-model`` string it was loaded from.
    family: "openai", "open_clip" (SigLIP models included).
    input_resolution: side in px of the square images the image tower takes.
    embedding_width: D, the length of every embedding.
    context_length: tokens the text tower reads, start/end marks included.
    mean, std: (1, 3, 1, 1) normalization applied after resizing.
    autocast_dtype: reduced precision the towers compute in (None: fp32); settable.
    """

    name: str
    family: str
    input_resolution: int
    embedding_width: int
    context_length: int
    mean: torch.Tensor
    std: torch.Tensor
    autocast_dtype: torch.dtype | None

    @property
    def device(self) -> torch.device:
        """The device the encoder's weights are on."""
        ...

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D) unit vectors; differentiable w.r.t. ``images``."""

    def check_prompt(self, text: str, what: str = "the prompt",
                     templates: Sequence[str] = IMAGENET_TEMPLATES) -> str:
        """``text`` if it fits the context through every template with this encoder's own tokenizer;
        else one-line `ConfigError` naming the encoder (`clipstyle_opt.encoders.prompts.check_fits`).
        `encode_text` and `encode_prompt` call it on every text: never truncated."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts, no templates -> (N, D) unit vectors."""

    def encode_prompt(self, text: str, templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
        """One text through every template; the raw template embeddings averaged, then normalized -> (D,)."""

    def compile_image_tower(self) -> None:
        """Replace the image tower by its torch.compile'd version."""


__all__ = ["ImageTextEncoder", "WeightsCastOnce", "resize_and_normalize"]
