"""The CLIPstyler objective for one content image and one prompt.

Everything that does not depend on the U-Net's output (text direction, the
content image's CLIP embedding and VGG features, Gram targets) is computed
once here; `StyleObjective.terms` then costs one batched augmentation, one
CLIP call on all crops plus the global view, and one VGG call.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping

import torch
from torch.nn import functional as F

from . import augment, losses
from .config import StyleConfig
from .devices import autocast
from .encoders.clip import ClipEncoder
from .encoders.vgg import VGGFeatures

TERM_NAMES = ("dir", "patch", "content", "tv", "style")


def _no_section(name: str) -> ContextManager:
    return contextlib.nullcontext()


@dataclass
class LossWeights:
    """The lambdas of the total loss (see REFERENCE.md)."""

    dir: float
    patch: float
    content: float
    tv: float
    style: float

    @classmethod
    def from_config(cls, config: StyleConfig) -> "LossWeights":
        return cls(config.lambda_dir, config.lambda_patch, config.lambda_c, config.lambda_tv, config.lambda_style)

    def total(self, terms: Mapping[str, Any]) -> Any:
        """The weighted sum of the terms (tensors or floats)."""
        return (self.patch * terms["patch"] + self.content * terms["content"] + self.tv * terms["tv"]
                + self.dir * terms["dir"] + self.style * terms["style"])


class StyleObjective:
    """Loss terms of a stylized image against fixed targets.

    ``batched=False`` computes the same terms the way the reference code is
    structured (crops warped one by one, the global view in its own CLIP
    call): it exists to check the fast path and as the benchmark baseline.
    """

    def __init__(self, clip: ClipEncoder, vgg: VGGFeatures, config: StyleConfig, content: torch.Tensor,
                 prompt: str, style_image: torch.Tensor | None = None, *, batched: bool = True) -> None:
        self.clip, self.vgg, self.config = clip, vgg, config
        self.weights = LossWeights.from_config(config)
        self.batched = batched
        self.content_layers = config.content_layers
        self.style_layers = config.style_layers if style_image is not None else ()
        with torch.no_grad():
            self.direction = losses.text_direction(clip.encode_prompt(prompt), clip.encode_prompt(config.source_text))
            self.source_embedding = clip.encode_image(content)[0]
            self.content_features = {k: v.float() for k, v in self._vgg(content).items() if k in self.content_layers}
            self.target_grams = {}
            if style_image is not None:
                style_features = self._vgg(style_image)
                self.target_grams = {layer: losses.gram_matrix(style_features[layer]) for layer in self.style_layers}

    def _vgg(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(image.device, self.clip.autocast_dtype):
            return self.vgg(image)

    def _clip_views(self, image: torch.Tensor, params: augment.CropParams, with_whole: bool) -> torch.Tensor:
        """The crops of ``params`` at CLIP's input size, led by the whole image if ``with_whole``."""
        size = self.clip.input_resolution
        views = [augment.apply_batched(image, params, size)]
        if with_whole:
            views.insert(0, F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False))
        return torch.cat(views, dim=0)

    def _pixel_terms(self, image: torch.Tensor,
                     section: Callable[[str], ContextManager]) -> dict[str, torch.Tensor]:
        """The VGG content and style terms and TV of an output (style only with a style image)."""
        with section("vgg"):
            features = self._vgg(image)
        out = {"content": losses.content_loss(features, self.content_features, self.content_layers),
               "tv": losses.total_variation(image)}
        if self.style_layers:
            out["style"] = losses.style_loss(features, self.target_grams, self.style_layers)
        return out

    def clip_embeddings(self, image: torch.Tensor, params: augment.CropParams,
                        section: Callable[[str], ContextManager] = _no_section) -> tuple[torch.Tensor, torch.Tensor]:
        """(global (1, D), crops (N, D)) CLIP embeddings of a (1, 3, H, W) output."""
        if self.batched:
            with section("augment"):
                batch = self._clip_views(image, params, with_whole=True)
            with section("clip"):
                embeddings = self.clip.encode_image(batch)
            return embeddings[:1], embeddings[1:]
        size = self.clip.input_resolution
        with section("augment"):
            crops = augment.apply_per_crop(image, params, size)
        with section("clip"):
            return self.clip.encode_image(image), self.clip.encode_image(crops)

    def terms(self, image: torch.Tensor, params: augment.CropParams,
              section: Callable[[str], ContextManager] = _no_section) -> dict[str, torch.Tensor]:
        """Unweighted loss terms and the weighted ``total`` for a (1, 3, H, W) output in [0, 1].

        ``section(name)`` wraps each stage (augment, clip, vgg) for profiling.
        """
        w = self.weights
        zero = image.new_zeros(())
        out: dict[str, torch.Tensor] = {}
        if w.dir or w.patch:
            global_embedding, crop_embeddings = self.clip_embeddings(image, params, section)
            out["dir"] = losses.directional_loss(global_embedding, self.source_embedding, self.direction)
            out["patch"] = losses.patch_loss(crop_embeddings, self.source_embedding, self.direction,
                                             self.config.threshold)
        else:  # both CLIP terms off: skip the CLIP call entirely
            out["dir"] = out["patch"] = zero
        out["style"] = zero
        out.update(self._pixel_terms(image, section))
        out["total"] = w.total(out)
        return out

    def backward(self, image: torch.Tensor, params: augment.CropParams, clip_batch: int = 0,
                 section: Callable[[str], ContextManager] = _no_section) -> dict[str, float]:
        """Backpropagate the weighted total of `terms` into ``image``'s graph; return the terms' values.

        The CLIP losses are sums over images (the global view and each crop),
        so their gradient with respect to the image is accumulated over chunks
        of ``clip_batch`` images (0: all in one), each chunk's activations freed
        before the next. The gradient equals the one-batch gradient up to float
        rounding; peak memory falls by roughly the number of chunks.
        """
        w = self.weights
        leaf = image.detach().requires_grad_(True)
        values = {"dir": 0.0, "patch": 0.0, "style": 0.0}
        if w.dir or w.patch:
            n_crops = len(params)
            n_images = n_crops + 1  # index 0 is the whole image, 1.. the crops
            n_chunks = -(-n_images // clip_batch) if clip_batch > 0 else 1
            bounds = [round(i * n_images / n_chunks) for i in range(n_chunks + 1)]
            for start, stop in zip(bounds[:-1], bounds[1:]):
                first_crop, last_crop = max(start, 1) - 1, stop - 1
                with section("augment"):
                    batch = self._clip_views(leaf, params.subset(first_crop, last_crop), with_whole=start == 0)
                with section("clip"):
                    embeddings = self.clip.encode_image(batch)
                loss = leaf.new_zeros(())
                if start == 0:
                    direction_loss = losses.directional_loss(embeddings[:1], self.source_embedding, self.direction)
                    values["dir"] = float(direction_loss.detach())
                    loss = loss + w.dir * direction_loss
                    embeddings = embeddings[1:]
                if len(embeddings):
                    share = len(embeddings) / n_crops  # the patch loss is a mean over all crops
                    patch = losses.patch_loss(embeddings, self.source_embedding, self.direction,
                                              self.config.threshold) * share
                    values["patch"] += float(patch.detach())
                    loss = loss + w.patch * patch
                with section("clip_backward"):
                    loss.backward()
        pixel_terms = self._pixel_terms(leaf, section)
        loss = sum(getattr(w, name) * term for name, term in pixel_terms.items())
        values.update({name: float(term.detach()) for name, term in pixel_terms.items()})
        with section("vgg_backward"):
            loss.backward()
        with section("unet_backward"):
            image.backward(leaf.grad)
        values["total"] = w.total(values)
        return values
