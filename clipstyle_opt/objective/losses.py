"""The CLIPstyler losses as pure functions on tensors.

Embeddings are (N, D) or (D,) float tensors; images are NCHW; feature dicts
map VGG layer names to (N, C, H, W) activations.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch.nn import functional as F


def text_direction(style_embedding: torch.Tensor, source_embedding: torch.Tensor) -> torch.Tensor:
    """dT = normalize(E_T(style) - E_T(source)), shape (D,)."""
    return F.normalize(style_embedding - source_embedding, dim=-1)


def direction_scores(image_embeddings: torch.Tensor, source_embedding: torch.Tensor,
                     direction: torch.Tensor) -> torch.Tensor:
    """Per image: 1 - cos(E_I(image) - E_I(content), dT), in [0, 2], shape (N,)."""
    image_direction = image_embeddings - source_embedding.reshape(1, -1)
    return 1.0 - F.cosine_similarity(image_direction, direction.reshape(1, -1), dim=-1)


def directional_loss(image_embeddings: torch.Tensor, source_embedding: torch.Tensor,
                     direction: torch.Tensor) -> torch.Tensor:
    """Global CLIP directional loss: mean of `direction_scores`."""
    return direction_scores(image_embeddings, source_embedding, direction).mean()


def patch_loss(crop_embeddings: torch.Tensor, source_embedding: torch.Tensor, direction: torch.Tensor,
               threshold: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """PatchCLIP loss: scores below ``threshold`` are rejected (set to 0), then averaged.

    Rejection keeps only patches that do not yet follow the text direction.
    The mean is over all N crops, rejected ones included, as the reference.
    weights: optional (N,) per-crop weights (attention weighting), multiplied in before the mean.
    """
    scores = direction_scores(crop_embeddings, source_embedding, direction)
    kept = torch.where(scores < threshold, torch.zeros_like(scores), scores)
    if weights is not None:
        kept = kept * weights.to(kept)
    return kept.mean()


def content_loss(features: Mapping[str, torch.Tensor], target_features: Mapping[str, torch.Tensor],
                 layers: Sequence[str]) -> torch.Tensor:
    """Sum over ``layers`` of the mean squared error between activations."""
    return sum(F.mse_loss(features[layer].float(), target_features[layer].float()) for layer in layers)


def masked_content_loss(features: Mapping[str, torch.Tensor], target_features: Mapping[str, torch.Tensor],
                        layers: Sequence[str], keep: torch.Tensor) -> torch.Tensor:
    """`content_loss` with each position weighted by ``keep`` (1, 1, H, W) in [0, 1] (1 = keep the photo here).

    Per layer: mean over (N, C, h, w) of keep_l * (F - F_target)^2, where keep_l is
    ``keep`` area-averaged to the layer's h x w. keep = 1 everywhere gives `content_loss`.
    """
    total = 0.0
    for layer in layers:
        diff = (features[layer].float() - target_features[layer].float()).pow(2)
        weight = F.adaptive_avg_pool2d(keep.to(diff.dtype), diff.shape[-2:])
        total = total + (diff * weight).mean()
    return total


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices normalized by C * H * W."""
    n, c, h, w = features.shape
    flat = features.float().reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(features: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
               layers: Sequence[str]) -> torch.Tensor:
    """Sum over ``layers`` of the squared Frobenius distance between Gram matrices (mean over the batch)."""
    total = 0.0
    for layer in layers:
        diff = gram_matrix(features[layer]) - target_grams[layer]
        total = total + diff.pow(2).sum(dim=(1, 2)).mean()
    return total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Sum of the L2 norms of horizontal, vertical and both diagonal neighbour differences."""
    horizontal = images[..., :, :-1] - images[..., :, 1:]
    vertical = images[..., :-1, :] - images[..., 1:, :]
    diagonal = images[..., 1:, :-1] - images[..., :-1, 1:]
    anti_diagonal = images[..., :-1, :-1] - images[..., 1:, 1:]
    return sum(torch.linalg.vector_norm(d) for d in (horizontal, vertical, diagonal, anti_diagonal))
