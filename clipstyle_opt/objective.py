"""The CLIPstyler objective for one content image and one prompt, under one encoder or an ensemble.

Everything that does not depend on the U-Net's output (each encoder's text
direction and content embedding, VGG features, Gram targets) is computed
once here; `StyleObjective.terms` then costs one batched augmentation, one
CLIP call per encoder on all crops plus the global view, and one VGG call.

Ensembles (StyleGAN-NADA's weighted CLIP models): each member keeps its own
text direction, content embedding, input size and normalization; the crops
are drawn once and resized per member, and the directional and patch losses
are the weighted sums of the members' losses (weights summing to 1). The
embeddings of different members are never mixed: their widths differ.
A single encoder has weight 1.0 and computes exactly what it did alone.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Sequence, Union

import torch
from torch.nn import functional as F

from . import augment, losses
from .config import StyleConfig
from .devices import autocast
from .encoders.base import ImageTextEncoder
from .encoders.vgg import VGGFeatures

TERM_NAMES = ("dir", "patch", "content", "tv", "style")


def _no_section(name: str) -> ContextManager:
    return contextlib.nullcontext()


@dataclass
class EncoderMember:
    """One encoder of the objective with its weight and its fixed targets.

    direction: (D,) unit text direction (prompt minus source text) in this encoder's space;
    source_embedding: (D,) unit embedding of the whole content image.
    """

    encoder: ImageTextEncoder
    weight: float
    direction: torch.Tensor
    source_embedding: torch.Tensor


Encoders = Union[ImageTextEncoder, Sequence[tuple[ImageTextEncoder, float]]]
"""One encoder (weight 1), or (encoder, weight) pairs whose weights sum to 1."""


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

    def __init__(self, clip: Encoders, vgg: VGGFeatures, config: StyleConfig, content: torch.Tensor,
                 prompt: str, style_image: torch.Tensor | None = None, *, batched: bool = True) -> None:
        pairs = [(clip, 1.0)] if not isinstance(clip, (list, tuple)) else list(clip)
        self.vgg, self.config = vgg, config
        self.weights = LossWeights.from_config(config)
        self.batched = batched
        self.content_layers = config.content_layers
        self.style_layers = config.style_layers if style_image is not None else ()
        with torch.no_grad():
            self.members = [
                EncoderMember(encoder, float(weight),
                              losses.text_direction(encoder.encode_prompt(prompt),
                                                    encoder.encode_prompt(config.source_text)),
                              encoder.encode_image(content)[0])
                for encoder, weight in pairs]
            self.clip = self.members[0].encoder  # its precision is the VGG's too
            self.content_features = {k: v.float() for k, v in self._vgg(content).items() if k in self.content_layers}
            self.target_grams = {}
            if style_image is not None:
                style_features = self._vgg(style_image)
                self.target_grams = {layer: losses.gram_matrix(style_features[layer]) for layer in self.style_layers}

    def _vgg(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(image.device, self.clip.autocast_dtype):
            return self.vgg(image)

    def _clip_views(self, image: torch.Tensor, params: augment.CropParams, with_whole: bool,
                    size: int) -> torch.Tensor:
        """The crops of ``params`` at ``size`` px (an encoder's input), led by the whole image if ``with_whole``."""
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
                        section: Callable[[str], ContextManager] = _no_section,
                        member: EncoderMember | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(global (1, D), crops (N, D)) embeddings of a (1, 3, H, W) output under ``member`` (default: the first)."""
        encoder = (member or self.members[0]).encoder
        size = encoder.input_resolution
        if self.batched:
            with section("augment"):
                batch = self._clip_views(image, params, True, size)
            with section("clip"):
                embeddings = encoder.encode_image(batch)
            return embeddings[:1], embeddings[1:]
        with section("augment"):
            crops = augment.apply_per_crop(image, params, size)
        with section("clip"):
            return encoder.encode_image(image), encoder.encode_image(crops)

    def _kept(self, crop_embeddings: torch.Tensor, member: EncoderMember) -> float:
        """Share of these crops the patch rejection keeps (score >= threshold), in [0, 1]."""
        scores = losses.direction_scores(crop_embeddings, member.source_embedding, member.direction)
        return float((scores >= self.config.threshold).float().mean())

    def _member_losses(self, member: EncoderMember, global_embedding: torch.Tensor,
                       crop_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        direction = losses.directional_loss(global_embedding, member.source_embedding, member.direction)
        patch = losses.patch_loss(crop_embeddings, member.source_embedding, member.direction, self.config.threshold)
        return direction, patch

    def terms(self, image: torch.Tensor, params: augment.CropParams,
              section: Callable[[str], ContextManager] = _no_section) -> dict[str, torch.Tensor]:
        """Unweighted loss terms and the weighted ``total`` for a (1, 3, H, W) output in [0, 1].

        ``dir`` and ``patch`` are the members' weighted sums; with several members each
        member's own values are added as ``dir[i]`` and ``patch[i]``. ``patch_kept`` is the
        share of crops the rejection keeps, in [0, 1] (weighted over members; not a loss).
        ``section(name)`` wraps each stage (augment, clip, vgg) for profiling.
        """
        w = self.weights
        zero = image.new_zeros(())
        out: dict[str, torch.Tensor] = {}
        if w.dir or w.patch:
            direction_sum: Any = 0
            patch_sum: Any = 0
            kept = 0.0
            for index, member in enumerate(self.members):
                global_embedding, crop_embeddings = self.clip_embeddings(image, params, section, member)
                direction, patch = self._member_losses(member, global_embedding, crop_embeddings)
                direction_sum = direction_sum + member.weight * direction
                patch_sum = patch_sum + member.weight * patch
                kept += member.weight * self._kept(crop_embeddings.detach(), member)
                if len(self.members) > 1:
                    out[f"dir[{index}]"], out[f"patch[{index}]"] = direction, patch
            out["dir"], out["patch"] = direction_sum, patch_sum
            out["patch_kept"] = image.new_tensor(kept)
        else:  # both CLIP terms off: skip the CLIP calls entirely
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
            # Members one after the other, so peak memory is that of the largest one alone
            # (the crops are re-gathered and re-warped per member: ~0.05 s a step at 512 px).
            for index, member in enumerate(self.members):
                size = member.encoder.input_resolution
                member_values = {"dir": 0.0, "patch": 0.0, "patch_kept": 0.0}
                for start, stop in zip(bounds[:-1], bounds[1:]):
                    first_crop, last_crop = max(start, 1) - 1, stop - 1
                    with section("augment"):
                        batch = self._clip_views(leaf, params.subset(first_crop, last_crop), start == 0, size)
                    with section("clip"):
                        embeddings = member.encoder.encode_image(batch)
                    loss = leaf.new_zeros(())
                    if start == 0:
                        direction_loss = losses.directional_loss(embeddings[:1], member.source_embedding,
                                                                 member.direction)
                        member_values["dir"] = float(direction_loss.detach())
                        loss = loss + w.dir * (member.weight * direction_loss)
                        embeddings = embeddings[1:]
                    if len(embeddings):
                        share = len(embeddings) / n_crops  # the patch loss is a mean over all crops
                        patch = losses.patch_loss(embeddings, member.source_embedding, member.direction,
                                                  self.config.threshold) * share
                        member_values["patch"] += float(patch.detach())
                        member_values["patch_kept"] += self._kept(embeddings.detach(), member) * share
                        loss = loss + w.patch * (member.weight * patch)
                    with section("clip_backward"):
                        loss.backward()
                for key in ("dir", "patch", "patch_kept"):
                    values[key] = values.get(key, 0.0) + member.weight * member_values[key]
                    if len(self.members) > 1:
                        values[f"{key}[{index}]"] = member_values[key]
        pixel_terms = self._pixel_terms(leaf, section)
        loss = sum(getattr(w, name) * term for name, term in pixel_terms.items())
        values.update({name: float(term.detach()) for name, term in pixel_terms.items()})
        with section("vgg_backward"):
            loss.backward()
        with section("unet_backward"):
            image.backward(leaf.grad)
        values["total"] = w.total(values)
        return values
