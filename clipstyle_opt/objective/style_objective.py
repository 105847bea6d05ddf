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

Guidance (`clipstyle_opt.objective.guidance`): each member may hold several
directions, per region: the prompts (fused by loss, or one direction from
their weighted mean embedding), and, with ``style_image_clip`` > 0, image
directions norm(E_I(style image) - E_I(content)). The directional loss and
each crop's patch score are then weighted sums over the directions of the
crop's region (the global view sums over all regions, equally weighted).
With a mask, CLIP sees the output composited over the photo with it (what
the final image will show), and the content loss is weighted by 1 - mask.
One prompt without image guidance keeps the single-direction code path.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Sequence, Union

import torch
from torch.nn import functional as F

from . import augment, losses
from ..config import StyleConfig
from ..devices import autocast
from ..encoders.base import ImageTextEncoder
from ..encoders.vgg import VGGFeatures
from .guidance import Guidance, WeightedText, make_guidance

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
    regions: tuple[tuple[tuple[torch.Tensor, float], ...], ...] = ()
    """Several directions: per region, (unit direction (D,), weight) pairs whose weights sum to 1.
    () = ``direction`` alone with weight 1 (one prompt, one region: the reference path)."""


Direction = tuple[torch.Tensor, float]


def _text_guides(encoder: ImageTextEncoder, texts: Sequence[WeightedText], source: torch.Tensor,
                 fusion: str) -> list[Direction]:
    """The prompts' (direction, weight) pairs: one per prompt (``loss`` fusion), or one direction from
    the weighted mean of the prompts' embeddings (``embedding`` fusion; see `clipstyle_opt.objective.guidance`)."""
    embeddings = [encoder.encode_prompt(t.text) for t in texts]
    if fusion == "embedding" and len(texts) > 1:
        mean = F.normalize(sum(t.weight * e for t, e in zip(texts, embeddings)), dim=-1)
        return [(losses.text_direction(mean, source), 1.0)]
    return [(losses.text_direction(e, source), t.weight) for t, e in zip(texts, embeddings)]


def _member(encoder: ImageTextEncoder, weight: float, config: StyleConfig, content: torch.Tensor,
            guidance: Guidance, style_images: Sequence[tuple[torch.Tensor, float]]) -> EncoderMember:
    """One encoder's fixed targets for ``guidance`` (computed once, without gradients)."""
    source_embedding = encoder.encode_image(content)[0]
    image_share = config.style_image_clip if style_images else 0.0
    if not guidance.regions and len(guidance.texts) == 1 and not image_share:  # the reference path
        direction = losses.text_direction(encoder.encode_prompt(guidance.prompt),
                                          encoder.encode_prompt(config.source_text))
        return EncoderMember(encoder, weight, direction, source_embedding)
    source_text = encoder.encode_prompt(config.source_text)
    image_guides = [(F.normalize(encoder.encode_image(image)[0] - source_embedding, dim=-1), w)
                    for image, w in style_images] if image_share else []
    regions = []
    for texts in ([r.texts for r in guidance.regions] or [guidance.texts]):
        guides = [(d, (1.0 - image_share) * w) for d, w in _text_guides(encoder, texts, source_text, guidance.fusion)]
        guides += [(d, image_share * w) for d, w in image_guides]
        regions.append(tuple((d, w) for d, w in guides if w > 0))
    return EncoderMember(encoder, weight, regions[0][0][0], source_embedding, tuple(regions))


Encoders = Union[ImageTextEncoder, Sequence[tuple[ImageTextEncoder, float]]]

Crops = Union[augment.CropParams, augment.StaticCrops]
"""One step's crops: drawn parameters, or the fixed device buffers of a captured step."""
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
                 prompt: str | Sequence[Any] | Guidance,
                 style_image: torch.Tensor | Sequence[tuple[torch.Tensor, float]] | None = None, *,
                 batched: bool = True, mask: torch.Tensor | None = None,
                 relevance: torch.Tensor | None = None) -> None:
        """prompt: a text, texts, (text, weight) pairs or a `Guidance` (its images and masks are not read
        here: pass them as tensors). style_image: one (1, 3, h, w) image, or (image, normalized weight)
        pairs whose Gram targets are mixed by weight. mask: (1, 1, H, W) in [0, 1] at the content's size.
        relevance: (1, 1, H, W) in [0, 1], the prompt's or focus's relevance map; with
        ``attention_patch`` each crop's patch score is weighted by its window's mean relevance."""
        pairs = [(clip, 1.0)] if not isinstance(clip, (list, tuple)) else list(clip)
        guidance = make_guidance(prompt, fusion=config.fusion)
        styles = [] if style_image is None else (
            [(style_image, 1.0)] if isinstance(style_image, torch.Tensor) else list(style_image))
        self.vgg, self.config = vgg, config
        self.weights = LossWeights.from_config(config)
        self.batched = batched
        self.content_layers = config.content_layers
        self.style_layers = config.style_layers if styles else ()
        self.content = content
        self.mask = mask
        self.relevance = relevance if config.attention_patch else None
        with torch.no_grad():
            self.members = [_member(encoder, float(weight), config, content, guidance, styles)
                            for encoder, weight in pairs]
            self.clip = self.members[0].encoder  # its precision is the VGG's too
            self.content_features = {k: v.float() for k, v in self._vgg(content).items() if k in self.content_layers}
            self.target_grams = {}
            for image, weight in styles:
                style_features = self._vgg(image)
                for layer in self.style_layers:
                    gram = losses.gram_matrix(style_features[layer])
                    if len(styles) > 1:
                        gram = weight * gram + self.target_grams.get(layer, 0)
                    self.target_grams[layer] = gram

    def _vgg(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(image.device, self.clip.autocast_dtype):
            return self.vgg(image)

    def _clip_source(self, image: torch.Tensor) -> torch.Tensor:
        """What CLIP sees of an output: itself, or with a mask, the output composited over the photo."""
        if self.mask is None:
            return image
        return self.mask * image + (1.0 - self.mask) * self.content

    def _clip_views(self, image: torch.Tensor, params: Crops, with_whole: bool,
                    size: int) -> torch.Tensor:
        """The crops of ``params`` at ``size`` px (an encoder's input), led by the whole image if ``with_whole``."""
        image = self._clip_source(image)
        if isinstance(params, augment.StaticCrops):
            views = [augment.apply_static(image, params, size)]
        else:
            views = [augment.apply_batched(image, params, size)]
        if with_whole:
            views.insert(0, F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False))
        return torch.cat(views, dim=0)

    def _pixel_terms(self, image: torch.Tensor,
                     section: Callable[[str], ContextManager]) -> dict[str, torch.Tensor]:
        """The VGG content and style terms and TV of an output (style only with a style image)."""
        with section("vgg"):
            features = self._vgg(image)
        if self.mask is None:
            content = losses.content_loss(features, self.content_features, self.content_layers)
        else:
            content = losses.masked_content_loss(features, self.content_features, self.content_layers, 1 - self.mask)
        out = {"content": content, "tv": losses.total_variation(image)}
        if self.style_layers:
            out["style"] = losses.style_loss(features, self.target_grams, self.style_layers)
        return out

    def clip_embeddings(self, image: torch.Tensor, params: Crops,
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
            source = self._clip_source(image)
            crops = augment.apply_per_crop(source, params, size)
        with section("clip"):
            return encoder.encode_image(source), encoder.encode_image(crops)

    @staticmethod
    def _by_region(member: EncoderMember, regions: torch.Tensor | None):
        """(selector of the region's crops or None for all of them, its directions) per region."""
        for index, guides in enumerate(member.regions):
            yield (None if regions is None or len(member.regions) == 1 else regions == index), guides

    def crop_weights(self, params: Crops) -> torch.Tensor | None:
        """Attention weighting (``attention_patch``): each crop's mean relevance over its window,
        normalized to mean 1 over the step's crops; None when off."""
        if self.relevance is None:
            return None
        size = params.size
        window = torch.nn.functional.avg_pool2d(self.relevance.float(), size, stride=1)[0, 0].to(params.tops.device)
        weights = window[params.tops, params.lefts] + 1e-3  # never exactly 0: a crop still counts a little
        return weights / weights.mean()

    def _kept(self, crop_embeddings: torch.Tensor, member: EncoderMember,
              regions: torch.Tensor | None = None) -> torch.Tensor:
        """Share of these crops the patch rejection keeps (score >= threshold), a () tensor in [0, 1]
        (with several directions: weighted over each crop's region's directions). Not read back to
        the host here, so that a captured step (`clipstyle_opt.training.captured`) can compute it."""
        threshold = self.config.threshold
        if not member.regions:
            scores = losses.direction_scores(crop_embeddings, member.source_embedding, member.direction)
            return (scores >= threshold).float().mean()
        kept: Any = 0.0
        for selector, guides in self._by_region(member, regions):
            chosen = crop_embeddings if selector is None else crop_embeddings[selector]
            for direction, weight in guides:
                scores = losses.direction_scores(chosen, member.source_embedding, direction)
                kept = kept + weight * (scores >= threshold).float().sum()
        return kept / len(crop_embeddings)

    def _direction_loss(self, member: EncoderMember, global_embedding: torch.Tensor) -> torch.Tensor:
        """Global directional loss; with several directions their weighted sum (regions equally weighted)."""
        if not member.regions:
            return losses.directional_loss(global_embedding, member.source_embedding, member.direction)
        share = 1.0 / len(member.regions)
        return sum(share * weight * losses.directional_loss(global_embedding, member.source_embedding, direction)
                   for guides in member.regions for direction, weight in guides)

    def _patch_loss(self, member: EncoderMember, crop_embeddings: torch.Tensor,
                    regions: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Patch loss (mean over all these crops); with several directions each crop's score is the
        weighted sum of its thresholded scores against its region's directions. weights: per-crop
        attention weights (`crop_weights`) or None."""
        threshold = self.config.threshold
        if not member.regions:
            return losses.patch_loss(crop_embeddings, member.source_embedding, member.direction, threshold, weights)
        total: Any = 0
        for selector, guides in self._by_region(member, regions):
            chosen = crop_embeddings if selector is None else crop_embeddings[selector]
            chosen_weights = weights if selector is None or weights is None else weights[selector]
            if not len(chosen):
                continue
            for direction, weight in guides:
                total = total + weight * len(chosen) * losses.patch_loss(chosen, member.source_embedding, direction,
                                                                         threshold, chosen_weights)
        return total / len(crop_embeddings)

    def _member_losses(self, member: EncoderMember, global_embedding: torch.Tensor,
                       crop_embeddings: torch.Tensor, params: augment.CropParams,
                       weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return (self._direction_loss(member, global_embedding),
                self._patch_loss(member, crop_embeddings, params.regions, weights))

    def terms(self, image: torch.Tensor, params: Crops,
              section: Callable[[str], ContextManager] = _no_section) -> dict[str, torch.Tensor]:
        """Unweighted loss terms and the weighted ``total`` for a (1, 3, H, W) output in [0, 1].

        ``dir`` and ``patch`` are the members' weighted sums; with several members each member's
        own values are added as ``dir[i]``, ``patch[i]`` and ``patch_kept[i]``. ``patch_kept`` is
        the share of crops the rejection keeps, in [0, 1] (weighted over members; not a loss).
        ``section(name)`` wraps each stage (augment, clip, vgg) for profiling.
        """
        w = self.weights
        zero = image.new_zeros(())
        out: dict[str, torch.Tensor] = {}
        if w.dir or w.patch:
            crop_weights = self.crop_weights(params)
            direction_sum: Any = 0
            patch_sum: Any = 0
            kept: Any = 0.0
            for index, member in enumerate(self.members):
                global_embedding, crop_embeddings = self.clip_embeddings(image, params, section, member)
                direction, patch = self._member_losses(member, global_embedding, crop_embeddings, params,
                                                       crop_weights)
                direction_sum = direction_sum + member.weight * direction
                patch_sum = patch_sum + member.weight * patch
                member_kept = self._kept(crop_embeddings.detach(), member, params.regions)
                kept = kept + member.weight * member_kept
                if len(self.members) > 1:
                    out[f"dir[{index}]"], out[f"patch[{index}]"] = direction, patch
                    out[f"patch_kept[{index}]"] = member_kept
            out["dir"], out["patch"] = direction_sum, patch_sum
            out["patch_kept"] = kept
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
            crop_weights = self.crop_weights(params)
            # Members one after the other, so peak memory is that of the largest one alone
            # (the crops are re-gathered and re-warped per member: ~0.05 s a step at 512 px).
            for index, member in enumerate(self.members):
                size = member.encoder.input_resolution
                member_values = {"dir": 0.0, "patch": 0.0, "patch_kept": 0.0}
                for start, stop in zip(bounds[:-1], bounds[1:]):
                    first_crop, last_crop = max(start, 1) - 1, stop - 1
                    chunk = params.subset(first_crop, last_crop)
                    with section("augment"):
                        batch = self._clip_views(leaf, chunk, start == 0, size)
                    with section("clip"):
                        embeddings = member.encoder.encode_image(batch)
                    loss = leaf.new_zeros(())
                    if start == 0:
                        direction_loss = self._direction_loss(member, embeddings[:1])
                        member_values["dir"] = float(direction_loss.detach())
                        loss = loss + w.dir * (member.weight * direction_loss)
                        embeddings = embeddings[1:]
                    if len(embeddings):
                        share = len(embeddings) / n_crops  # the patch loss is a mean over all crops
                        chunk_weights = None if crop_weights is None else crop_weights[first_crop:last_crop]
                        patch = self._patch_loss(member, embeddings, chunk.regions, chunk_weights) * share
                        member_values["patch"] += float(patch.detach())
                        member_values["patch_kept"] += float(self._kept(embeddings.detach(), member,
                                                                        chunk.regions)) * share
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
