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

The terms themselves, their weights and their functions are the table in
`clipstyle_opt.objective.terms`; this module embeds the views, builds the
fixed targets and sums the terms, on one graph (`StyleObjective.terms`) or
chunk by chunk (`StyleObjective.backward`), both through the same code.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence, Union

import torch
from torch.nn import functional as F

from ..config import StyleConfig
from ..devices import autocast
from ..encoders.base import ImageTextEncoder
from ..encoders.vgg import VGGFeatures
from . import augment, losses
from .guidance import Guidance, WeightedText, make_guidance
from .terms import (CLIP_TERMS, PIXEL_TERMS, TERM_NAMES, TERMS, ClipInputs, Direction, EncoderMember, PixelInputs,
                    kept_share, term_weights, weighted_total)


def _no_section(name: str) -> ContextManager:
    return contextlib.nullcontext()


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
"""One encoder (weight 1), or (encoder, weight) pairs whose weights sum to 1."""

Crops = Union[augment.CropParams, augment.StaticCrops]
"""One step's crops: drawn parameters, or the fixed device buffers of a captured step."""

CLIP_DIAGNOSTICS = ("patch_kept",)
"""Values reported with the CLIP terms that are not losses: the share of crops the patch rejection keeps."""


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
        self.weights = term_weights(config)
        """{term name: lambda} (`clipstyle_opt.objective.terms.TERMS`)."""
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

    @property
    def uses_clip(self) -> bool:
        """Whether any CLIP term has a nonzero weight; when none has, the CLIP calls are skipped entirely."""
        return any(self.weights[term.name] for term in CLIP_TERMS)

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
        """The pixel terms of `TERMS` that apply to an output (the style term only with a style image),
        in table order; VGG runs once for all of them."""
        features: dict[str, torch.Tensor] = {}
        if any(term.needs == "vgg" for term in PIXEL_TERMS):
            with section("vgg"):
                features = self._vgg(image)
        inputs = PixelInputs(image, features, self.content_features, self.content_layers,
                             None if self.mask is None else 1 - self.mask, self.target_grams, self.style_layers)
        out = {}
        for term in PIXEL_TERMS:
            value = term.compute(inputs)
            if value is not None:
                out[term.name] = value
        return out

    def clip_embeddings(self, image: torch.Tensor, params: Crops,
                        section: Callable[[str], ContextManager] = _no_section,
                        member: EncoderMember | None = None, *, whole: bool = True,
                        batched: bool | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(whole (1, D) or None, crops (N, D)) unit embeddings of a (1, 3, H, W) output under ``member``
        (default: the first). whole: whether to embed the whole image too; batched: one CLIP call on all
        views (default: the objective's ``batched``), else the reference's structure."""
        encoder = (member or self.members[0]).encoder
        size = encoder.input_resolution
        if self.batched if batched is None else batched:
            with section("augment"):
                views = self._clip_views(image, params, whole, size)
            with section("clip"):
                embeddings = encoder.encode_image(views)
            return (embeddings[:1], embeddings[1:]) if whole else (None, embeddings)
        with section("augment"):
            source = self._clip_source(image)
            crops = augment.apply_per_crop(source, params, size)
        with section("clip"):
            return encoder.encode_image(source) if whole else None, encoder.encode_image(crops)

    def crop_weights(self, params: Crops) -> torch.Tensor | None:
        """Attention weighting (``attention_patch``): each crop's mean relevance over its window,
        normalized to mean 1 over the step's crops; None when off."""
        if self.relevance is None:
            return None
        size = params.size
        window = torch.nn.functional.avg_pool2d(self.relevance.float(), size, stride=1)[0, 0].to(params.tops.device)
        weights = window[params.tops, params.lefts] + 1e-3  # never exactly 0: a crop still counts a little
        return weights / weights.mean()

    def clip_inputs(self, image: torch.Tensor, params: Crops, member: EncoderMember,
                    crop_weights: torch.Tensor | None, *, whole: bool = True, share: float = 1.0,
                    batched: bool | None = None,
                    section: Callable[[str], ContextManager] = _no_section) -> ClipInputs:
        """Embed one batch of views (``params``' crops, led by the whole image if ``whole``) under
        ``member``: what the CLIP terms of `TERMS` read. share: these crops' part of the step's crops.
        Both `terms` (all views at once) and `backward` (chunk by chunk) go through here."""
        whole_embedding, crop_embeddings = self.clip_embeddings(image, params, section, member, whole=whole,
                                                                batched=batched)
        return ClipInputs(member, whole_embedding, crop_embeddings, params.regions, crop_weights, share,
                          self.config.threshold)

    def _add_member(self, totals: dict[str, Any], per_member: dict[str, Any], index: int,
                    member: EncoderMember, values: dict[str, Any]) -> None:
        """Add one member's CLIP values (tensors or floats) into ``totals`` with the member's weight
        (sum_m w_m * L_m, weights summing to 1); with several members also keep each as ``key[index]``."""
        for key, value in values.items():
            totals[key] = totals.get(key, 0) + member.weight * value
            if len(self.members) > 1:
                per_member[f"{key}[{index}]"] = value

    @staticmethod
    def _in_table_order(values: dict[str, Any], per_member: dict[str, Any], absent: Any) -> dict[str, Any]:
        """Every term of `TERMS` in table order (``absent`` for those not computed), then
        ``patch_kept`` and the members' own values."""
        out = {term.name: values.get(term.name, absent) for term in TERMS}
        out.update((key, value) for key, value in values.items() if key not in out)
        out.update(per_member)
        return out

    def terms(self, image: torch.Tensor, params: Crops,
              section: Callable[[str], ContextManager] = _no_section) -> dict[str, torch.Tensor]:
        """Unweighted loss terms and the weighted ``total`` for a (1, 3, H, W) output in [0, 1], on one graph.

        Keys: every name in `TERM_NAMES` (a () zero for a term that does not apply), ``total``;
        ``dir`` and ``patch`` are the members' weighted sums; with several members each member's
        own values are added as ``dir[i]``, ``patch[i]`` and ``patch_kept[i]``. ``patch_kept`` is
        the share of crops the rejection keeps, in [0, 1] (weighted over members; not a loss).
        ``section(name)`` wraps each stage (augment, clip, vgg) for profiling.
        """
        values: dict[str, torch.Tensor] = {}
        per_member: dict[str, torch.Tensor] = {}
        if self.uses_clip:  # else both CLIP terms are off: skip the CLIP calls entirely
            crop_weights = self.crop_weights(params)
            for index, member in enumerate(self.members):
                inputs = self.clip_inputs(image, params, member, crop_weights, section=section)
                member_values = {term.name: term.compute(inputs) for term in CLIP_TERMS}
                member_values["patch_kept"] = kept_share(member, inputs.crops.detach(), inputs.threshold,
                                                         inputs.regions)
                self._add_member(values, per_member, index, member, member_values)
        values.update(self._pixel_terms(image, section))
        out = self._in_table_order(values, per_member, image.new_zeros(()))
        out["total"] = weighted_total(self.weights, out)
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
        weights = self.weights
        leaf = image.detach().requires_grad_(True)
        values: dict[str, float] = {}
        per_member: dict[str, float] = {}
        if self.uses_clip:
            n_crops = len(params)
            n_images = n_crops + 1  # index 0 is the whole image, 1.. the crops
            n_chunks = -(-n_images // clip_batch) if clip_batch > 0 else 1
            bounds = [round(i * n_images / n_chunks) for i in range(n_chunks + 1)]
            crop_weights = self.crop_weights(params)
            # Members one after the other, so peak memory is that of the largest one alone
            # (the crops are re-gathered and re-warped per member: ~0.05 s a step at 512 px).
            for index, member in enumerate(self.members):
                member_values = dict.fromkeys((*(term.name for term in CLIP_TERMS), *CLIP_DIAGNOSTICS), 0.0)
                for start, stop in zip(bounds[:-1], bounds[1:]):
                    first_crop, last_crop = max(start, 1) - 1, stop - 1
                    chunk = params.subset(first_crop, last_crop)
                    share = (last_crop - first_crop) / n_crops  # the patch loss is a mean over all crops
                    inputs = self.clip_inputs(
                        leaf, chunk, member, None if crop_weights is None else crop_weights[first_crop:last_crop],
                        whole=start == 0, share=share, batched=True, section=section)
                    loss = leaf.new_zeros(())
                    for term in CLIP_TERMS:  # each added to the loss as soon as computed, as before the table
                        value = term.compute(inputs)
                        if value is None:
                            continue
                        member_values[term.name] += float(value.detach())
                        loss = loss + weights[term.name] * (member.weight * value)
                    if len(inputs.crops):
                        member_values["patch_kept"] += float(kept_share(member, inputs.crops.detach(),
                                                                        inputs.threshold, inputs.regions)) * share
                    with section("clip_backward"):
                        loss.backward()
                self._add_member(values, per_member, index, member, member_values)
        pixel_terms = self._pixel_terms(leaf, section)
        loss = sum(weights[name] * term for name, term in pixel_terms.items())
        values.update({name: float(term.detach()) for name, term in pixel_terms.items()})
        with section("vgg_backward"):
            loss.backward()
        with section("unet_backward"):
            image.backward(leaf.grad)
        out = self._in_table_order(values, per_member, 0.0)
        out["total"] = weighted_total(weights, out)
        return out


__all__ = ["StyleObjective", "EncoderMember", "TERM_NAMES", "TERMS"]
