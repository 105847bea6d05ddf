"""Objective measures of a stylized image: text match (CLIP) and content preservation.

Images are NCHW RGB float in [0, 1]. Every function returns plain tensors or
floats; `clipstyle_opt.evaluate` strings them together for files on disk.

Text match, with whatever CLIP `load_clip` loaded. Whole images are resized
(bicubic squash, as the training's global view) to the model's input size.

- ``clip_score``: cos(E_I(output), E_T(prompt)); [-1, 1], higher is better.
- ``patch_clip_score``: the paper's patch-wise score (appendix B.3), see
  `patch_clip_score`; [-1, 1], higher is better (CLIPstyler: 0.2515).
- ``clip_direction``: cos(E_I(output) - E_I(content), E_T(prompt) -
  E_T(source text)); [-1, 1], higher is better.

Text embeddings: ``clip_score`` and ``patch_clip_score`` use the plain
prompt (one text, no templates): as far as we know that is how the paper
scored its patches, and it is what "CLIP score" usually means.
``clip_direction`` uses the 79-template averages, the training's own text
direction dT, so that clip_direction = 1 - the global directional loss. All
three are raw cosines, not the x100, clipped "CLIPScore" of some libraries.

Content preservation, output against content at the same size (the
content is resized to the output's size):

- ``lpips_vgg`` / ``lpips_alex``: LPIPS v0.1 with the VGG16 / AlexNet
  backbone; >= 0 (0 = identical, typically below 1), lower is better.
- ``dists``: DISTS; about [0, 1], lower is better.
- ``ssim``: SSIM with an 11 px Gaussian window (sigma 1.5), RGB channels
  averaged, reflect padding (kornia; agrees with torchmetrics); [-1, 1],
  higher is better.
- ``content_loss``: the training's content loss with its default layers
  (``StyleConfig.content_layers``: relu4_2 and relu5_2) on VGG16, the sum of
  their MSEs; >= 0, lower is better.
"""
from __future__ import annotations

from typing import Sequence, Union

import kornia
import torch
from torch.nn import functional as F

from ..config import StyleConfig
from ..encoders.clip import ClipEncoder
from ..encoders.vgg import VGGFeatures
from ..imageio import resize
from .perceptual import DISTS, LPIPS

TextOrEmbedding = Union[str, torch.Tensor]

PATCH_COUNT = 64
PATCH_MIN = 64
PATCH_MAX = 224
PATCH_LONG_SIDE = 512
"""The paper scores 512 px outputs: images are resized to this long side (aspect kept) before cropping."""
SOURCE_TEXT = StyleConfig.source_text
SSIM_WINDOW = 11
CONTENT_LAYERS = StyleConfig.content_layers
"""The training's default content layers: the metric measures what the default run optimizes."""


def _text_embedding(clip: ClipEncoder, text: TextOrEmbedding, templates: bool) -> torch.Tensor:
    """(D,) unit vector for ``text``: plain, or through the prompt templates; tensors pass through."""
    if isinstance(text, torch.Tensor):
        return F.normalize(text.reshape(-1).float(), dim=-1).to(clip.device)
    return clip.encode_prompt(text) if templates else clip.encode_text([text])[0]


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    """Resize an NCHW image so its long side is ``long_side`` px (aspect kept, bicubic, antialiased when shrinking)."""
    height, width = image.shape[-2:]
    if max(height, width) == long_side:
        return image
    scale = long_side / max(height, width)
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def match_size(content: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The content resized to the output's exact (H, W): the full-reference metrics compare same-size images.

    If the aspect ratios differ (e.g. outputs of a method that squashes), the content is squashed likewise.
    """
    return resize(content, tuple(output.shape[-2:]))


# --- CLIP -----------------------------------------------------------------

@torch.no_grad()
def clip_score(clip: ClipEncoder, images: torch.Tensor, text: TextOrEmbedding, *,
               templates: bool = False) -> torch.Tensor:
    """cos(E_I(image), E_T(text)) per image, shape (N,), in [-1, 1] (higher = closer to the text).

    images: NCHW in [0, 1], resized whole to the model's input size.
    text: the prompt (plain unless ``templates``) or a precomputed (D,) embedding.
    """
    target = _text_embedding(clip, text, templates)
    return clip.encode_image(images.to(clip.device)) @ target


def patch_boxes(height: int, width: int, generator: torch.Generator, *, n: int = PATCH_COUNT,
                min_size: int = PATCH_MIN, max_size: int = PATCH_MAX) -> list[tuple[int, int, int]]:
    """``n`` random square crops ``(top, left, side)`` for an image of ``height`` x ``width`` px.

    Draw order (so anyone can redo it): ``sides = torch.randint(min_size, max_size + 1, (n,))``,
    then ``tops = floor(torch.rand(n) * (height - sides + 1))``, then ``lefts`` likewise with
    ``width``, all from ``generator``. Sides are clamped to the image's short side first.
    """
    cap = min(height, width)
    lo, hi = min(min_size, cap), min(max_size, cap)
    sides = torch.randint(lo, hi + 1, (n,), generator=generator)
    tops = (torch.rand(n, generator=generator) * (height - sides + 1)).floor().long()
    lefts = (torch.rand(n, generator=generator) * (width - sides + 1)).floor().long()
    return [(int(top), int(left), int(side)) for top, left, side in zip(tops, lefts, sides)]


def _to_square(crop: torch.Tensor, size: int) -> torch.Tensor:
    if crop.shape[-2:] == (size, size):
        return crop
    return F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False)


@torch.no_grad()
def patch_clip_scores(clip: ClipEncoder, image: torch.Tensor, text: TextOrEmbedding, *,
                      seed: int | torch.Generator = 0, n: int = PATCH_COUNT, min_size: int = PATCH_MIN,
                      max_size: int = PATCH_MAX, long_side: int | None = PATCH_LONG_SIDE,
                      templates: bool = False, batch_size: int = 32) -> torch.Tensor:
    """Per-crop cosines of `patch_clip_score`, shape (n,)."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.shape[0] != 1:
        raise ValueError("patch_clip_score scores one image at a time")
    if long_side:
        image = resize_long_side(image, long_side)
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    boxes = patch_boxes(*image.shape[-2:], generator, n=n, min_size=min_size, max_size=max_size)
    target = _text_embedding(clip, text, templates)
    size = clip.input_resolution
    image = image.to(clip.device)
    scores = []
    for start in range(0, len(boxes), batch_size):
        # Same bicubic resize as ClipEncoder.preprocess, done per crop so crops of any size share one batch.
        crops = [_to_square(image[..., top:top + side, left:left + side], size)
                 for top, left, side in boxes[start:start + batch_size]]
        scores.append(clip.encode_image(torch.cat(crops)) @ target)
    return torch.cat(scores)


def patch_clip_score(clip: ClipEncoder, image: torch.Tensor, text: TextOrEmbedding, *,
                     seed: int | torch.Generator = 0, n: int = PATCH_COUNT, min_size: int = PATCH_MIN,
                     max_size: int = PATCH_MAX, long_side: int | None = PATCH_LONG_SIDE,
                     templates: bool = False) -> float:
    """The paper's patch-wise CLIP score (appendix B.3), in [-1, 1]; CLIPstyler scored 0.2515 with ViT-B/32.

    image: (1, 3, H, W) in [0, 1], first resized to ``long_side`` px on its
    long side (the paper evaluates 512 px outputs; None keeps the size).
    Then ``n`` = 64 random square crops with sides uniform in 64..224 px
    (`patch_boxes`), each resized (bicubic) to the model's input size,
    cosine of each with the plain prompt's embedding, averaged. ``seed``
    (an int or a torch.Generator) makes it repeatable; the global RNG is
    not touched.
    """
    return float(patch_clip_scores(clip, image, text, seed=seed, n=n, min_size=min_size, max_size=max_size,
                                   long_side=long_side, templates=templates).mean())


@torch.no_grad()
def clip_directional_similarity(clip: ClipEncoder, output: torch.Tensor, content: torch.Tensor,
                                prompt: TextOrEmbedding, source_text: TextOrEmbedding = SOURCE_TEXT, *,
                                templates: bool = True) -> torch.Tensor:
    """cos(E_I(output) - E_I(content), E_T(prompt) - E_T(source_text)) per image, (N,), in [-1, 1].

    Higher = the change from content to output follows the change from
    source text to prompt. Swapping output and content flips the sign. Text
    embeddings go through the 79 templates (as the training's dT) unless
    ``templates`` is False. Content and output may differ in size: each is
    resized whole to the model's input size.
    """
    text_direction = _text_embedding(clip, prompt, templates) - _text_embedding(clip, source_text, templates)
    return directional_similarity(clip.encode_image(output.to(clip.device)),
                                  clip.encode_image(content.to(clip.device)), text_direction)


def directional_similarity(output_embeddings: torch.Tensor, content_embeddings: torch.Tensor,
                           text_direction: torch.Tensor) -> torch.Tensor:
    """cos(output - content, text_direction) for (N, D) or (D,) image embeddings and a (D,) direction -> (N,)."""
    image_direction = output_embeddings.reshape(-1, text_direction.numel()) - \
        content_embeddings.reshape(-1, text_direction.numel())
    return F.cosine_similarity(image_direction, text_direction.reshape(1, -1), dim=-1)


# --- content preservation ------------------------------------------------

@torch.no_grad()
def lpips(net: LPIPS, output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """LPIPS distance per image, (N,), >= 0; the content is resized to the output's size."""
    device = net.shift.device
    return net(output.to(device), match_size(content, output).to(device))


@torch.no_grad()
def dists(net: DISTS, output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """DISTS distance per image, (N,), about [0, 1]; the content is resized to the output's size."""
    device = net.alpha.device
    return net(output.to(device), match_size(content, output).to(device))


@torch.no_grad()
def ssim(output: torch.Tensor, content: torch.Tensor, *, window: int = SSIM_WINDOW) -> torch.Tensor:
    """Mean SSIM per image, (N,), in [-1, 1] (1 = identical); the content is resized to the output's size.

    kornia's SSIM: Gaussian window ``window`` px (sigma 1.5), constants for
    data range 1, reflect padding, mean over pixels and RGB channels (agrees
    with torchmetrics' default SSIM).
    """
    target = match_size(content, output).to(output.device)
    return kornia.metrics.ssim(output.float(), target.float(), window, max_val=1.0, padding="same").mean(dim=(1, 2, 3))


@torch.no_grad()
def content_loss(vgg: VGGFeatures, output: torch.Tensor, content: torch.Tensor,
                 layers: Sequence[str] = CONTENT_LAYERS) -> torch.Tensor:
    """The training's content loss as a metric: sum over ``layers`` of the MSE of VGG activations, >= 0.

    Per image, (N,). Uses the given `VGGFeatures` (the bundled VGG16 by
    default in `evaluate`); the content is resized to the output's size.
    """
    device = vgg.mean.device
    out_features = vgg(output.to(device))
    content_features = vgg(match_size(content, output).to(device))
    # Per image, the same as losses.content_loss (F.mse_loss per layer, summed) for a batch of one.
    return sum((out_features[layer].float() - content_features[layer].float()).pow(2).mean(dim=(1, 2, 3))
               for layer in layers)
