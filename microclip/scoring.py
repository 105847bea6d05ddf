"""The model side of the kit: feeding texture images and captions to a micro model, and scoring it.

Shared by the trainer (`microclip.train_micro_clip`) and the tests: OpenAI
CLIP's normalization, tokens trimmed to the longest caption, unit
embeddings, and held-out zero-shot accuracy for a CLIP or a SigLIP.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from microclip.textures import COLOURS, PATTERNS

#: OpenAI CLIP's input normalization (RGB mean and std of [0, 1] images); the micro CLIP uses it too.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def preprocess_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> resized (bicubic, as the project's ClipEncoder) and CLIP-normalized."""
    if images.shape[-2:] != (resolution, resolution):
        images = torch.nn.functional.interpolate(images, size=(resolution, resolution), mode="bicubic",
                                                 align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def tokenize_trimmed(texts: Sequence[str], context_length: int = 77) -> torch.Tensor:
    """``clip.tokenize`` then cut the padding columns after the longest text.

    CLIP's text transformer is causal and reads the end-of-text position, so
    `CLIP.encode_text` on the trimmed tokens equals the full-length result (up
    to float rounding) at a fraction of the cost.
    """
    import clip  # local import: clip-anytorch warns about pkg_resources on import

    tokens = clip.tokenize(list(texts), context_length=context_length, truncate=True)
    length = int(tokens.argmax(dim=-1).max()) + 1
    return tokens[:, :length]


def encode_texts(model: torch.nn.Module, texts: Sequence[str], templates: Optional[Sequence[str]] = None,
                 chunk: int = 1024) -> torch.Tensor:
    """Unit text embeddings (N, D) float32.

    templates: if given, each text is inserted into every template, the raw
    embeddings are averaged and the mean normalized (how the stylization
    encodes prompts).
    """
    prompts = [t.format(text) for text in texts for t in templates] if templates else list(texts)
    context_length = int(model.context_length)
    outs = []
    with torch.no_grad():
        for start in range(0, len(prompts), chunk):
            tokens = tokenize_trimmed(prompts[start:start + chunk], context_length)
            outs.append(model.encode_text(tokens).float())
    features = torch.cat(outs)
    if templates:
        features = features.view(len(texts), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(features, dim=-1)


def encode_images(model: torch.nn.Module, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Unit image embeddings (N, D) float32 of (N, 3, H, W) images in [0, 1]."""
    resolution = int(model.visual.input_resolution)
    outs = []
    with torch.no_grad():
        for start in range(0, images.shape[0], chunk):
            x = preprocess_images(images[start:start + chunk].float(), resolution)
            outs.append(model.encode_image(x).float())
    return torch.nn.functional.normalize(torch.cat(outs), dim=-1)


def _encoder_features(encoder: Any, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encoder.encode_image(images[i:i + chunk].float())
                          for i in range(0, images.shape[0], chunk)])


def _encoder_texts(encoder: Any, texts: Sequence[str], templates: Optional[Sequence[str]]) -> torch.Tensor:
    if not templates:
        return encoder.encode_text(list(texts))
    return torch.stack([encoder.encode_prompt(text, tuple(templates)) for text in texts])


def zero_shot_accuracy(model: Any, images: torch.Tensor, labels: Sequence[tuple[str, str]],
                       templates: Optional[Sequence[str]] = None) -> dict[str, float]:
    """Held-out zero-shot accuracies (fractions in [0, 1]) of a CLIP or SigLIP on texture images.

    model: an OpenAI ``clip.model.CLIP``, or one of the project's encoders (anything with
    ``encode_prompt``, e.g. `clipstyle_opt.encoders.openclip.OpenClipEncoder`), which then
    resizes and normalizes the images itself, as in a stylization.
    joint_colour / joint_pattern: probabilities over all "colour pattern" captions (CLIP's
    softmax; SigLIP's per-pair sigmoid when the model has a logit bias), summed over the
    other attribute.
    colour / pattern: nearest colour-only ("red") / pattern-only ("dots") text.
    templates: encode each text through these templates (averaged) instead of bare.
    """
    colours, patterns = list(COLOURS), list(PATTERNS)
    joint_texts = [f"{c} {p}" for c in colours for p in patterns]
    if hasattr(model, "encode_prompt"):
        network = model.model
        image_features = _encoder_features(model, images)
        joint, colour_only, pattern_only = (_encoder_texts(model, texts, templates)
                                            for texts in (joint_texts, colours, patterns))
    else:
        network = model
        image_features = encode_images(model, images)
        joint, colour_only, pattern_only = (encode_texts(model, texts, templates)
                                            for texts in (joint_texts, colours, patterns))
    colour_index = torch.tensor([colours.index(c) for c, _ in labels])
    pattern_index = torch.tensor([patterns.index(p) for _, p in labels])
    return {
        **joint_accuracy(network, image_features, joint, labels),
        "colour": _accuracy((image_features @ colour_only.T).argmax(dim=1), colour_index),
        "pattern": _accuracy((image_features @ pattern_only.T).argmax(dim=1), pattern_index),
    }


def _accuracy(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float((pred == truth).float().mean())


def joint_accuracy(network: torch.nn.Module, image_features: torch.Tensor, joint_features: torch.Tensor,
                   labels: Sequence[tuple[str, str]]) -> dict[str, float]:
    """``joint_colour`` / ``joint_pattern`` accuracy (fractions) from unit image features (N, D) and
    the unit features of the 64 "colour pattern" captions (COLOURS-major order): CLIP's softmax, or
    SigLIP's per-pair sigmoid when ``network`` has a ``logit_bias``, summed over the other attribute."""
    logits = float(network.logit_scale.detach().exp()) * image_features @ joint_features.T
    bias = getattr(network, "logit_bias", None)
    probs = (logits + float(bias.detach())).sigmoid() if bias is not None else logits.softmax(dim=-1)
    probs = probs.view(-1, len(COLOURS), len(PATTERNS))
    colour_index = torch.tensor([list(COLOURS).index(c) for c, _ in labels])
    pattern_index = torch.tensor([list(PATTERNS).index(p) for _, p in labels])
    return {"joint_colour": _accuracy(probs.sum(dim=2).argmax(dim=1), colour_index),
            "joint_pattern": _accuracy(probs.sum(dim=1).argmax(dim=1), pattern_index)}
