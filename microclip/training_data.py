"""The trainer's data: a seeded stream of texture batches, and the augmentation applied to them.

The stream holds all of its randomness, so rendering it in a DataLoader worker
(``--data-workers 1``) gives the same batches in the same order as rendering it
between steps. Used by `microclip.train_micro_clip`.
"""
from __future__ import annotations

import argparse
import math
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from microclip.batches import TrainingBatch, make_training_batch
from microclip.contrastive import adversarial_radius
from microclip.textures import COLOURS


def augment(images: torch.Tensor, out_size: int, min_crop: float, generator: torch.Generator) -> torch.Tensor:
    """Random resized crops (side min_crop..1 of the image), rotation +-15 deg, shear/aspect +-10 %,
    flips; one batched bicubic ``grid_sample`` to ``out_size`` px. (N, 3, H, W) -> (N, 3, out, out)."""
    n = images.shape[0]
    u = torch.rand(n, 7, generator=generator)
    side = min_crop + (1 - min_crop) * u[:, 0]
    angle = (u[:, 1] - 0.5) * (math.pi / 6)
    aspect = 1 + (u[:, 2] - 0.5) * 0.2
    shear = (u[:, 3] - 0.5) * 0.2
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    # Centre of the crop so that its (unrotated) square stays inside the image.
    cx = (u[:, 5] * 2 - 1) * (1 - side)
    cy = (u[:, 6] * 2 - 1) * (1 - side)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = side * aspect * flip, side / aspect
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin * sy + shear * sy
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = cos * sy
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="reflection", align_corners=False)


class TrainingBatches(torch.utils.data.IterableDataset):
    """The trainer's stream of texture batches: ``steps`` of them, drawn from one generator seeded with ``seed``.

    Iterating yields a `TrainingBatch` per step. It holds all of the stream's randomness (the
    per-batch colour subset and the batch itself), so rendering it in a DataLoader worker gives
    the same batches, in the same order, as rendering it in the training process.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args

    def __iter__(self):  # type: ignore[no-untyped-def]
        args = self.args
        rng = np.random.default_rng(args.seed)
        for carried in carried_counts(args):
            colours = None
            if args.colours_per_batch:
                colours = list(rng.choice(list(COLOURS), size=args.colours_per_batch, replace=False))
            yield make_training_batch(args.batch_size - carried, args.render_size, rng,
                                      templated_fraction=args.templated_fraction,
                                      blend_fraction=args.blend_fraction, photo_fraction=args.photo_fraction,
                                      partial_fraction=args.partial_fraction, colours=colours)


def carried_counts(args: argparse.Namespace) -> list[int]:
    """How many of each step's ``batch_size`` images are carried over from the step before
    (--adversarial-mode free: last step's fresh images, perturbed); the stream renders only the rest.
    0 at every step in fgsm mode and in the clean steps."""
    counts, carried = [], 0
    perturbed = round(args.adversarial_fraction * args.batch_size)
    for step in range(args.steps):
        counts.append(carried)
        free = args.adversarial_mode == "free" and adversarial_radius(step, args) > 0
        carried = min(perturbed, args.batch_size - carried) if free else 0
    return counts


def training_batches(args: argparse.Namespace) -> Iterator[TrainingBatch]:
    """`TrainingBatches`, rendered in this process (--data-workers 0) or one step ahead in a worker
    process (--data-workers 1). Why a worker: rendering is single-threaded numpy, about 0.14 s a
    batch on the 2-core Intel Xeon, a fifth of a micro SigLIP step; in a worker it
    overlaps with the model's step instead of adding to it."""
    stream = TrainingBatches(args)
    if args.data_workers == 0:
        return iter(stream)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.data_workers,
                                         prefetch_factor=2)
    return iter(loader)
