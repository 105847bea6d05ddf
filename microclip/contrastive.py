"""What the micro models are trained to minimize, and the adversarial part of their batches.

The contrastive losses with multi-positive targets (a batch repeats classes, and
captions naming only the colour or the pattern describe many images), and the
perturbations that make part of each batch adversarial: one signed-gradient
step from a random start (``--adversarial-mode fgsm``) or the step before's own
input gradient (``free``), within an L-infinity ball in pixel units, with its
radius schedule. SigLIP's sigmoid loss is with the SigLIP parts
(`microclip.micro_siglip.sigmoid_loss`). Used by `microclip.train_micro_clip`.
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Callable, Optional

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

#: loss(image_features, text_features, positives) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def clip_logits(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """(N images, M captions) scaled cosine similarities, as CLIP computes them."""
    return logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T


def _multi_positive_nll(logits: torch.Tensor, positives: torch.Tensor, dim: int) -> torch.Tensor:
    """Cross-entropy of the softmax over ``dim`` against a uniform target over the positives there."""
    target = positives.float()
    return -(target / target.sum(dim, keepdim=True) * logits.log_softmax(dim=dim)).sum(dim).mean()


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                     positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets (uniform over each row's/column's positives)."""
    logits = clip_logits(image_features, text_features, logit_scale)
    return (_multi_positive_nll(logits, positives, 1) + _multi_positive_nll(logits, positives, 0)) / 2


def image_to_text_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                       positives: torch.Tensor) -> torch.Tensor:
    """The image-to-text half of `contrastive_loss`; defined for any subset of the images, since
    each image's own caption is among its positives."""
    return _multi_positive_nll(clip_logits(image_features, text_features, logit_scale), positives, 1)


def encoder_precision(bf16: bool, device_type: str = "cpu") -> contextlib.ExitStack:
    """bf16 autocast (when asked) and the math attention kernel, for every encoder pass:
    the CPU flash-attention backward is slow in bf16."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16))
    stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def adversarial_images(model: torch.nn.Module, images: torch.Tensor, text_features: torch.Tensor,
                       positives: torch.Tensor, eps: float, std: torch.Tensor, generator: torch.Generator,
                       bf16: bool, loss_fn: Optional[LossFn] = None) -> torch.Tensor:
    """Normalized images pushed, within an L-infinity ball of ``eps`` pixel units, to raise the loss.

    Fast adversarial training (one signed-gradient step of 1.25 eps from a
    uniform random start, Wong et al. 2020), with the text side fixed. Why:
    a CLIP trained on clean images alone is steered by the stylization into
    faint streaks that score as "stripes" without looking like them; a model
    that small perturbations cannot move has input gradients that look like
    the concept, which is what the U-Net then draws.

    loss_fn(image_features, text_features, positives): the loss attacked;
    default `image_to_text_loss` with the model's logit scale (CLIP).
    """
    if loss_fn is None:
        def loss_fn(features: torch.Tensor, texts: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            return image_to_text_loss(features, texts, model.logit_scale.detach(), pos)
    scale = (eps / std).to(images.device).expand_as(images[:1])
    # drawn on the CPU from the trainer's generator whatever the device, so a seed gives the same noise
    noise = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images.device) * scale
    delta = noise.requires_grad_(True)
    with encoder_precision(bf16, images.device.type):
        features = model.encode_image(images + delta)
    loss = loss_fn(features.float(), text_features.detach(), positives)
    (grad,) = torch.autograd.grad(loss, delta)
    step = 1.25 * scale * grad.sign()
    delta = torch.maximum(torch.minimum(delta.detach() + step, scale), -scale)
    return images + delta


def carry_perturbed(images: torch.Tensor, grad: torch.Tensor, eps: float, std: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """Normalized ``images`` moved, within an L-infinity ball of ``eps`` pixel units, along the sign of
    ``grad`` (the loss's gradient at them, from the training step's own backward) from a uniform random
    start: --adversarial-mode free's perturbed part for the next step. The gradient is one step stale
    and taken at the clean image rather than at the random start, so the attack is weaker than
    `adversarial_images`, but it costs no extra forward and backward."""
    scale = (eps / std).to(images.device).expand_as(images[:1])
    start = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images.device) * scale
    delta = torch.maximum(torch.minimum(start + 1.25 * scale * grad.sign(), scale), -scale)
    return images + delta


def adversarial_radius(step: int, args: argparse.Namespace) -> float:
    """The L-infinity radius (pixel units, [0, 1]) of the adversarial part at ``step`` (0-based); 0: clean.

    Clean for the first --adversarial-start share of the steps, then ramped linearly from 0 to
    --adversarial-eps over --adversarial-warmup of all the steps."""
    adversarial_step = step - round(args.adversarial_start * args.steps)
    if adversarial_step < 0:
        return 0.0
    return args.adversarial_eps * min(1.0, (adversarial_step + 1) / max(1.0, args.adversarial_warmup * args.steps))
