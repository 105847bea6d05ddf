"""The loss terms of the CLIPstyler objective, in one table (`TERMS`).

Each row names a term (its key in `StyleObjective.terms`, in the history and
in sweep columns), the `StyleConfig` field holding its weight lambda, what it
needs (the CLIP encoders, VGG features, or only the pixels), and the function
computing it. The total loss is the weighted sum

    L = sum over terms t of lambda_t * L_t

(the method and its deviations: docs/method.md). `StyleObjective`, the
history's `TERM_NAMES` and the step benchmark read this table; adding a term
means its function here (or in `losses`), one row, and its weight field in
`StyleConfig`.

Two kinds of term functions:

- CLIP terms take `ClipInputs`: one encoder member's unit embeddings of one
  batch of views of the output (the whole image and/or some of the step's
  crops). They return that batch's contribution to the term, or None when the
  batch holds nothing the term reads. The one-graph path (`StyleObjective.terms`)
  calls them once on all views; the chunked path (`StyleObjective.backward`)
  once per chunk of views, and the contributions add up to the whole term.
- Pixel terms take `PixelInputs`: the output, its VGG features and the
  fixed targets. They return the term, or None when it does not apply
  (the style term without a style image).

Guidance (`clipstyle_opt.objective.guidance`): a member may hold several
directions per region; the CLIP terms are then weighted sums over the
directions of each crop's region (see `guided_directional_loss`,
`guided_patch_loss`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch

from ..config import StyleConfig
from ..encoders.base import ImageTextEncoder
from . import losses

Direction = tuple[torch.Tensor, float]
"""A unit direction (D,) in one encoder's space and its weight."""


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
    regions: tuple[tuple[Direction, ...], ...] = ()
    """Several directions: per region, (unit direction (D,), weight) pairs whose weights sum to 1.
    () = ``direction`` alone with weight 1 (one prompt, one region: the reference path)."""


# --- the CLIP terms' arithmetic over directions and regions -----------------------------------

def _by_region(member: EncoderMember,
               regions: torch.Tensor | None) -> Iterator[tuple[torch.Tensor | None, tuple[Direction, ...]]]:
    """(boolean selector (n,) of the region's crops, or None for all of them; its directions) per region."""
    for index, guides in enumerate(member.regions):
        yield (None if regions is None or len(member.regions) == 1 else regions == index), guides


def guided_directional_loss(member: EncoderMember, whole_embedding: torch.Tensor) -> torch.Tensor:
    """Global directional loss of the whole view (1, D), a () tensor in [0, 2].

    One direction: 1 - cos(E_I(output) - E_I(content), dT). Several: sum over regions r
    and their directions (d, w) of (1 / R) * w * (1 - cos(..., d)) (regions equally weighted).
    """
    if not member.regions:
        return losses.directional_loss(whole_embedding, member.source_embedding, member.direction)
    share = 1.0 / len(member.regions)
    return sum(share * weight * losses.directional_loss(whole_embedding, member.source_embedding, direction)
               for guides in member.regions for direction, weight in guides)


def guided_patch_loss(member: EncoderMember, crop_embeddings: torch.Tensor, threshold: float,
                      regions: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Patch loss, the mean over these n crops (n, D), a () tensor.

    One direction: `losses.patch_loss` (scores 1 - cos below ``threshold`` rejected as 0).
    Several: each crop's score is the weighted sum of its thresholded scores against its
    region's directions. regions: (n,) region index of each crop, or None; weights: (n,)
    per-crop attention weights (``attention_patch``) or None.
    """
    if not member.regions:
        return losses.patch_loss(crop_embeddings, member.source_embedding, member.direction, threshold, weights)
    total: Any = 0
    for selector, guides in _by_region(member, regions):
        chosen = crop_embeddings if selector is None else crop_embeddings[selector]
        chosen_weights = weights if selector is None or weights is None else weights[selector]
        if not len(chosen):
            continue
        for direction, weight in guides:
            total = total + weight * len(chosen) * losses.patch_loss(chosen, member.source_embedding, direction,
                                                                     threshold, chosen_weights)
    return total / len(crop_embeddings)


def kept_share(member: EncoderMember, crop_embeddings: torch.Tensor, threshold: float,
               regions: torch.Tensor | None = None) -> torch.Tensor:
    """Share of these crops (n, D) the patch rejection keeps (score >= threshold), a () tensor in [0, 1]
    (with several directions: weighted over each crop's region's directions). Not read back to
    the host here, so that a captured step (`clipstyle_opt.training.captured`) can compute it."""
    if not member.regions:
        scores = losses.direction_scores(crop_embeddings, member.source_embedding, member.direction)
        return (scores >= threshold).float().mean()
    kept: Any = 0.0
    for selector, guides in _by_region(member, regions):
        chosen = crop_embeddings if selector is None else crop_embeddings[selector]
        for direction, weight in guides:
            scores = losses.direction_scores(chosen, member.source_embedding, direction)
            kept = kept + weight * (scores >= threshold).float().sum()
    return kept / len(crop_embeddings)


# --- what the term functions read --------------------------------------------------------------

@dataclass(frozen=True)
class ClipInputs:
    """One encoder member's embeddings of one batch of views of the output.

    whole: (1, D) unit embedding of the whole output (composited over the photo with a mask),
    or None when this batch does not hold it; crops: (n, D) unit embeddings of n of the step's
    N crops (n may be 0); regions: (n,) region index of each crop or None; crop_weights: (n,)
    attention weights or None; share: n / N, the part of the crop mean these crops carry
    (1.0 when the batch holds every crop); threshold: the patch rejection's, in [0, 2].
    """

    member: EncoderMember
    whole: torch.Tensor | None
    crops: torch.Tensor
    regions: torch.Tensor | None
    crop_weights: torch.Tensor | None
    share: float
    threshold: float


@dataclass(frozen=True)
class PixelInputs:
    """An output, its VGG features and the fixed targets of the pixel terms.

    image: (1, 3, H, W) in [0, 1]; features: VGG layer name -> (1, C, h, w) activations of it
    (empty when no term needs them); content_features: the photo's, same layout; keep: (1, 1, H, W)
    in [0, 1], where the photo is kept (1 - mask), or None without a mask; target_grams: style
    layer name -> (1, C, C) Gram targets; style_layers: () without a style image.
    """

    image: torch.Tensor
    features: Mapping[str, torch.Tensor]
    content_features: Mapping[str, torch.Tensor]
    content_layers: Sequence[str]
    keep: torch.Tensor | None
    target_grams: Mapping[str, torch.Tensor]
    style_layers: Sequence[str]


# --- the term functions ------------------------------------------------------------------------

def directional_term(x: ClipInputs) -> torch.Tensor | None:
    """L_dir = 1 - cos(E_I(output) - E_I(content), dT) on the whole view (`guided_directional_loss`);
    None for a batch without the whole view."""
    if x.whole is None:
        return None
    return guided_directional_loss(x.member, x.whole)


def patch_term(x: ClipInputs) -> torch.Tensor | None:
    """L_patch = mean over the N crops of the thresholded 1 - cos(E_I(crop) - E_I(content), dT)
    (`guided_patch_loss`); for a batch of n < N crops, its part: the mean over them times n / N.
    None for a batch without crops."""
    if not len(x.crops):
        return None
    loss = guided_patch_loss(x.member, x.crops, x.threshold, x.regions, x.crop_weights)
    return loss if x.share == 1.0 else loss * x.share  # x * 1.0 == x: the same value and gradient either way


def content_term(x: PixelInputs) -> torch.Tensor:
    """L_content = sum over content layers of mean (F(output) - F(photo))^2; with a mask, each
    position weighted by 1 - mask (`losses.masked_content_loss`)."""
    if x.keep is None:
        return losses.content_loss(x.features, x.content_features, x.content_layers)
    return losses.masked_content_loss(x.features, x.content_features, x.content_layers, x.keep)


def tv_term(x: PixelInputs) -> torch.Tensor:
    """L_tv: the L2 norms of the output's neighbour differences, summed (`losses.total_variation`)."""
    return losses.total_variation(x.image)


def style_term(x: PixelInputs) -> torch.Tensor | None:
    """L_style = sum over style layers of ||G(F(output)) - G_target||_F^2 (`losses.style_loss`);
    None without a style image."""
    if not x.style_layers:
        return None
    return losses.style_loss(x.features, x.target_grams, x.style_layers)


# --- the table -------------------------------------------------------------------------------------

Needs = Literal["clip", "vgg", "none"]


@dataclass(frozen=True)
class LossTerm:
    """One row of `TERMS`.

    name: key in the loss dicts and the history; weight_field: the `StyleConfig` field holding
    lambda_t; needs: "clip" (the CLIP encoders; compute takes `ClipInputs`), "vgg" (VGG features;
    compute takes `PixelInputs`) or "none" (only the output's pixels; `PixelInputs` too);
    compute: the function computing the term (None: not applicable to this input).
    """

    name: str
    weight_field: str
    needs: Needs
    compute: Callable[[Any], torch.Tensor | None]


TERMS: tuple[LossTerm, ...] = (
    LossTerm("dir", "lambda_dir", "clip", directional_term),
    LossTerm("patch", "lambda_patch", "clip", patch_term),
    LossTerm("content", "lambda_c", "vgg", content_term),
    LossTerm("tv", "lambda_tv", "none", tv_term),
    LossTerm("style", "lambda_style", "vgg", style_term),
)
"""Every loss term, in the order of the history's keys (`TERM_NAMES`)."""

TERM_NAMES: tuple[str, ...] = tuple(term.name for term in TERMS)
"""The loss terms' names, in the order results, sweeps and summaries list them."""

#: The loss terms computed through the vision-language encoders (directional, patch).
CLIP_TERMS: tuple[LossTerm, ...] = tuple(term for term in TERMS if term.needs == "clip")
#: The loss terms computed without CLIP (content, total variation, style Gram).
PIXEL_TERMS: tuple[LossTerm, ...] = tuple(term for term in TERMS if term.needs != "clip")

_REFERENCE_SUM = ("patch", "content", "tv", "dir")
SUM_ORDER: tuple[str, ...] = (*_REFERENCE_SUM, *(name for name in TERM_NAMES if name not in _REFERENCE_SUM))
"""The order in which `weighted_total` adds the terms: the reference code's sum
(patch, content, tv, dir), then the others in table order. Kept because float addition is not
associative: another order moves the total's last bits (the behaviour lock checks them)."""


def term_weights(config: StyleConfig) -> dict[str, float]:
    """{term name: lambda_t} from ``config``'s weight fields."""
    return {term.name: getattr(config, term.weight_field) for term in TERMS}


def weighted_total(weights: Mapping[str, float], values: Mapping[str, Any]) -> Any:
    """sum_t lambda_t * L_t over every term in `SUM_ORDER` (tensors or floats; each term must be present)."""
    first, *rest = SUM_ORDER
    total = weights[first] * values[first]
    for name in rest:
        total = total + weights[name] * values[name]
    return total


__all__ = ["TERMS", "TERM_NAMES", "CLIP_TERMS", "PIXEL_TERMS", "SUM_ORDER", "LossTerm", "ClipInputs", "PixelInputs",
           "EncoderMember", "Direction", "term_weights", "weighted_total", "guided_directional_loss",
           "guided_patch_loss", "kept_share", "directional_term", "patch_term", "content_term", "tv_term",
           "style_term"]
