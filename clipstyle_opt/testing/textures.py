"""Procedural texture images with captions, for training and testing a micro CLIP.

Every image shows one *pattern* (stripes, dots, ...) drawn in one named
*colour* (the foreground) over a desaturated random background, so the
caption "red stripes" has one right reading. Optional photo-like clutter
(smooth colour fields and blobs) can be blended under the texture, and pure
clutter images stand for the caption "a photo" (the source text that the
stylization loss encodes).

Everything is deterministic given a ``numpy.random.Generator`` and is
vectorized over the pixel grid with numpy, so one image of 96 px costs well
under a millisecond.

Units: images are float32 RGB in [0, 1]; sizes are in pixels; colours in
`COLOURS` are 8-bit RGB triples (0..255).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..encoders.templates import IMAGENET_TEMPLATES

#: Named foreground colours, 8-bit RGB (0..255). Each render adds a small random jitter.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (30, 165, 50),
    "blue": (35, 65, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 40, 175),
    "orange": (245, 135, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}

#: Pattern names; each is also the word the captions use.
PATTERNS: tuple[str, ...] = (
    "stripes", "dots", "checkerboard", "waves", "rings", "grid", "noise", "gradient",
)

#: The caption of a pure photo-like clutter image (the stylization's source text, lower-cased).
PHOTO_CAPTION = "a photo"

#: Plain caption templates; ``{c}`` is the colour word and ``{p}`` the pattern word.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{c} {p}",
    "{c} {p}",
    "a pattern of {c} {p}",
    "{c} {p} pattern",
    "a {c} {p} texture",
    "{p} in {c}",
    "a picture of {c} {p}",
    "{c} {p} style",
)

#: Templates that name only the colour or only the pattern.
COLOUR_ONLY_TEMPLATES: tuple[str, ...] = ("{c}", "something {c}", "a {c} texture", "the colour {c}")
PATTERN_ONLY_TEMPLATES: tuple[str, ...] = ("{p}", "a {p} pattern", "a texture of {p}", "{p} texture")

_COLOUR_JITTER = 22  # +- 8-bit units, drawn per channel and once more as a shared brightness shift
_NEUTRAL_JITTER = 12  # the same for white and black
_MIN_BG_DISTANCE = 0.4  # minimum Euclidean RGB distance (in [0, 1] units) of background from foreground


@lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1): (x, y), each (size, size) float32."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x, y


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed (384, 384, 3) standard-normal float32 tile; random windows of it serve as pixel noise."""
    return np.random.default_rng(12345).standard_normal((384, 384, 3), dtype=np.float32)


def _pixel_noise(size: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 Gaussian-like noise of std ``sigma`` (a random window of a fixed tile)."""
    bank = _noise_bank()
    if size > bank.shape[0]:
        return rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)
    top, left = rng.integers(0, bank.shape[0] - size + 1, size=2)
    return bank[top:top + size, left:left + size] * np.float32(sigma * rng.choice([-1.0, 1.0]))


def _soft(signed_distance_px: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a signed distance in pixels (> 0 inside)."""
    return np.clip(0.5 + signed_distance_px, 0.0, 1.0)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates rotated by ``angle`` radians about the image centre."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    xc, yc = x - 0.5, y - 0.5
    return xc * c - yc * s + 0.5, xc * s + yc * c + 0.5


def _upsample(field: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of an (m, m[, C]) field to (size, size[, C])."""
    m = field.shape[0]
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * m - 0.5
    lo = np.clip(np.floor(pos).astype(np.int64), 0, m - 1)
    hi = np.clip(lo + 1, 0, m - 1)
    w = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)
    w_rows = w.reshape((size, 1) + (1,) * (field.ndim - 2))
    rows = field[lo] * (1 - w_rows) + field[hi] * w_rows
    w_cols = w.reshape((1, size) + (1,) * (field.ndim - 2))
    return rows[:, lo] * (1 - w_cols) + rows[:, hi] * w_cols


def _jittered_colour(colour: str, rng: np.random.Generator) -> np.ndarray:
    base = np.asarray(COLOURS[colour], dtype=np.float32)
    jitter = _NEUTRAL_JITTER if colour in ("white", "black") else _COLOUR_JITTER
    rgb = base + rng.integers(-jitter, jitter + 1, size=3) + rng.integers(-jitter, jitter + 1)
    return np.clip(rgb, 0, 255).astype(np.float32) / 255.0


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def _background(foreground: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A desaturated random colour at least `_MIN_BG_DISTANCE` from ``foreground``."""
    for _ in range(64):
        bg = _hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.9))
        if np.linalg.norm(bg - foreground) >= _MIN_BG_DISTANCE:
            return bg
    # Fall back to the grey farthest from the foreground.
    return np.full(3, 0.2 if foreground.mean() > 0.5 else 0.8, dtype=np.float32)


def _mask(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Foreground coverage in [0, 1], (size, size) float32, for one random instance of ``pattern``."""
    x, y = _grid(size)
    cycles = rng.uniform(2.5, 7.0)  # repeats across the image
    period_px = size / cycles
    if pattern == "stripes":
        angle = rng.choice([0.0, 0.5, 0.25, 0.75]) * np.pi + rng.normal(0.0, 0.06)
        u, _ = _rotate(x, y, angle)
        t = np.abs((u * cycles + rng.random()) % 1.0 - 0.5)
        duty = rng.uniform(0.35, 0.55)
        return _soft((duty / 2 - t) * period_px)
    if pattern == "dots":
        xr, yr = _rotate(x, y, rng.uniform(-0.35, 0.35))
        gu, gv = xr * cycles + rng.random(), yr * cycles + rng.random()
        if rng.random() < 0.5:  # hexagonal packing
            gu = gu + 0.5 * (np.floor(gv) % 2)
        fu, fv = gu % 1.0 - 0.5, gv % 1.0 - 0.5
        radius = rng.uniform(0.2, 0.38)
        return _soft((radius - np.sqrt(fu * fu + fv * fv)) * period_px)
    if pattern == "checkerboard":
        xr, yr = _rotate(x, y, rng.uniform(-0.3, 0.3))
        gu, gv = xr * cycles + rng.random(), yr * cycles + rng.random()
        fu, fv = gu % 1.0, gv % 1.0
        edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) * period_px
        parity = (np.floor(gu) + np.floor(gv)) % 2
        return _soft(np.where(parity == 0, edge, -edge))
    if pattern == "waves":
        angle = rng.choice([0.0, 0.5]) * np.pi + rng.normal(0.0, 0.1)
        u, v = _rotate(x, y, angle)
        amplitude = rng.uniform(0.25, 0.6) / cycles
        wave_cycles = rng.uniform(1.0, 3.5)
        u = u + amplitude * np.sin(2 * np.pi * (v * wave_cycles + rng.random()))
        t = np.abs((u * cycles + rng.random()) % 1.0 - 0.5)
        duty = rng.uniform(0.35, 0.55)
        return _soft((duty / 2 - t) * period_px)
    if pattern == "rings":
        cx, cy = rng.uniform(-0.1, 1.1, size=2).astype(np.float32)
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        t = np.abs((r * cycles + rng.random()) % 1.0 - 0.5)
        duty = rng.uniform(0.35, 0.55)
        return _soft((duty / 2 - t) * period_px)
    if pattern == "grid":
        xr, yr = _rotate(x, y, rng.uniform(-0.3, 0.3))
        width = rng.uniform(0.12, 0.25)
        tu = np.abs((xr * cycles + rng.random()) % 1.0 - 0.5)
        tv = np.abs((yr * cycles + rng.random()) % 1.0 - 0.5)
        return _soft((width / 2 - np.minimum(0.5 - tu, 0.5 - tv)) * period_px)
    if pattern == "noise":
        cells = int(rng.integers(8, 22))
        field = _upsample(rng.random((cells, cells)).astype(np.float32), size)
        threshold = rng.uniform(0.42, 0.55)
        return np.clip((field - threshold) * 8.0 + 0.5, 0.0, 1.0)
    if pattern == "gradient":
        if rng.random() < 0.7:
            u, _ = _rotate(x, y, rng.uniform(0, 2 * np.pi))
            t = (u - 0.5) * rng.uniform(0.8, 1.4) + 0.5
        else:
            cx, cy = rng.uniform(0.2, 0.8, size=2).astype(np.float32)
            t = 1.0 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2) * rng.uniform(1.0, 1.6)
        return np.clip(t, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")


def render_texture(colour: str, pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random instance of ``pattern`` drawn in ``colour`` over a random background.

    colour: a key of `COLOURS` (the foreground); pattern: one of `PATTERNS`;
    size: side in pixels (>= 8). Scale (2.5..7 repeats per side), phase,
    orientation, background and a mild shading/noise are random from ``rng``.
    Returns (size, size, 3) float32 RGB in [0, 1].
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose from {', '.join(COLOURS)}")
    fg = _jittered_colour(colour, rng)
    bg = _background(fg, rng)
    mask = _mask(pattern, size, rng)[..., None]
    image = bg + (fg - bg) * mask
    # Mild illumination gradient and sensor noise, so flat colours are not exact.
    x, y = _grid(size)
    shade = 1.0 + rng.uniform(-0.08, 0.08) * (x - 0.5) + rng.uniform(-0.08, 0.08) * (y - 0.5)
    image = image * shade[..., None].astype(np.float32)
    image += _pixel_noise(size, 0.015, rng)
    return np.clip(image, 0.0, 1.0, out=image)


def render_clutter(size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo-like clutter image: smooth colour fields, a few soft blobs and boxes, noise.

    Returns (size, size, 3) float32 RGB in [0, 1].
    """
    x, y = _grid(size)
    coarse = int(rng.integers(2, 6))
    image = _upsample(rng.random((coarse, coarse, 3)).astype(np.float32), size)
    fine = int(rng.integers(6, 16))
    image = image + 0.15 * (_upsample(rng.random((fine, fine, 3)).astype(np.float32), size) - 0.5)
    for _ in range(int(rng.integers(1, 5))):
        colour = rng.random(3).astype(np.float32)
        cx, cy = (float(v) for v in rng.random(2))
        if rng.random() < 0.5:  # ellipse
            rx, ry = (float(v) for v in rng.uniform(0.05, 0.35, size=2))
            d = 1.0 - np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
            cover = _soft(d * min(rx, ry) * size)
        else:  # box
            hx, hy = (float(v) for v in rng.uniform(0.05, 0.3, size=2))
            d = np.minimum(hx - np.abs(x - cx), hy - np.abs(y - cy))
            cover = _soft(d * size)
        image = image + (colour - image) * (cover[..., None] * np.float32(rng.uniform(0.6, 1.0)))
    grey = image.mean(axis=-1, keepdims=True)
    image = grey + (image - grey) * np.float32(rng.uniform(0.3, 0.9))  # photos are rarely saturated
    contrast = rng.uniform(0.6, 1.1)
    image = (image - 0.5) * np.float32(contrast) + np.float32(0.5 + rng.uniform(-0.15, 0.15))
    image += _pixel_noise(size, 0.02, rng)
    return np.clip(image, 0.0, 1.0, out=image).astype(np.float32, copy=False)


def caption_for(colour: str, pattern: str, rng: np.random.Generator,
                templated_fraction: float = 0.0) -> str:
    """A caption naming ``colour`` and ``pattern``, e.g. "red stripes" or "a pattern of blue dots".

    templated_fraction in [0, 1]: the chance that the plain "colour pattern"
    text is instead wrapped in one of the ImageNet prompt templates
    ("a bad photo of a red stripes."), as the stylization encodes prompts.
    The result always contains both words.
    """
    if rng.random() < templated_fraction:
        template = IMAGENET_TEMPLATES[int(rng.integers(len(IMAGENET_TEMPLATES)))]
        return template.format(f"{colour} {pattern}")
    return CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))].format(c=colour, p=pattern)


def _partial_caption(colour: Optional[str], pattern: Optional[str], rng: np.random.Generator,
                     templated_fraction: float) -> str:
    if colour is not None and pattern is not None:
        return caption_for(colour, pattern, rng, templated_fraction)
    if colour is None and pattern is None:
        text = PHOTO_CAPTION
    elif pattern is None:
        text = COLOUR_ONLY_TEMPLATES[int(rng.integers(len(COLOUR_ONLY_TEMPLATES)))].format(c=colour)
    else:
        text = PATTERN_ONLY_TEMPLATES[int(rng.integers(len(PATTERN_ONLY_TEMPLATES)))].format(p=pattern)
    if rng.random() < templated_fraction:
        # The stylization wraps the bare text ("a Photo", "red") in the templates.
        bare = text if colour is None and pattern is None else (colour or pattern)
        return IMAGENET_TEMPLATES[int(rng.integers(len(IMAGENET_TEMPLATES)))].format(bare)
    return text


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _random_texture(size: int, rng: np.random.Generator, blend_fraction: float,
                    colours: Optional[Sequence[str]] = None) -> tuple[np.ndarray, str, str]:
    """One random colour x pattern texture, blended over clutter with probability ``blend_fraction``.

    colours: the colours to draw from (default all of `COLOURS`)."""
    choices = list(COLOURS) if colours is None else list(colours)
    colour = choices[int(rng.integers(len(choices)))]
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    image = render_texture(colour, pattern, size, rng)
    if rng.random() < blend_fraction:
        alpha = rng.uniform(0.45, 0.9)
        image = alpha * image + (1 - alpha) * render_clutter(size, rng)
    return image, colour, pattern


def make_batch(n: int, size: int, rng: np.random.Generator, *, templated_fraction: float = 0.0,
               blend_fraction: float = 0.0) -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
    """``n`` random textures (uniform colour and pattern) with captions and labels.

    size: side in px. templated_fraction: see `caption_for`. blend_fraction in
    [0, 1]: the share of images blended over photo-like clutter (texture
    opacity 0.45..0.9). Returns images (N, 3, size, size) float32 in [0, 1],
    captions, and (colour, pattern) labels.
    """
    images, captions, labels = [], [], []
    for _ in range(n):
        image, colour, pattern = _random_texture(size, rng, blend_fraction)
        images.append(image)
        captions.append(caption_for(colour, pattern, rng, templated_fraction))
        labels.append((colour, pattern))
    return _to_tensor(images), captions, labels


Attributes = tuple[Optional[str], Optional[str]]


@dataclass
class TrainingBatch:
    """Image-caption pairs with the attributes needed for multi-positive contrastive targets.

    images: (N, 3, S, S) float32 in [0, 1]. image_labels[i]: (colour, pattern)
    of image i, (None, None) for pure clutter ("a photo"). caption_labels[j]:
    what caption j names: (colour, pattern), (colour, None), (None, pattern),
    or (None, None) for the photo caption.
    """

    images: torch.Tensor
    captions: list[str]
    image_labels: list[Attributes]
    caption_labels: list[Attributes]

    def positives(self) -> torch.Tensor:
        """(N images, N captions) bool: caption j truly describes image i."""
        return torch.tensor([[caption_matches(img, cap) for cap in self.caption_labels]
                             for img in self.image_labels], dtype=torch.bool)


def caption_matches(image_label: Attributes, caption_label: Attributes) -> bool:
    """Whether a caption naming ``caption_label`` describes an image with ``image_label``."""
    if caption_label == (None, None) or image_label == (None, None):
        return caption_label == image_label
    colour, pattern = caption_label
    return (colour is None or colour == image_label[0]) and (pattern is None or pattern == image_label[1])


def make_training_batch(n: int, size: int, rng: np.random.Generator, *, templated_fraction: float = 0.4,
                        blend_fraction: float = 0.3, photo_fraction: float = 0.05,
                        partial_fraction: float = 0.2, colours: Optional[Sequence[str]] = None) -> TrainingBatch:
    """A training batch: textures (some blended over clutter), some pure clutter, mixed captions.

    photo_fraction: share of pure clutter images captioned "a photo".
    partial_fraction: share of texture captions naming only the colour or
    only the pattern. templated_fraction, blend_fraction: see `make_batch`.
    colours: draw the textures from these colours only (default all of `COLOURS`).
    """
    images, captions, image_labels, caption_labels = [], [], [], []
    for _ in range(n):
        if rng.random() < photo_fraction:
            images.append(render_clutter(size, rng))
            image_labels.append((None, None))
            caption_labels.append((None, None))
            captions.append(_partial_caption(None, None, rng, templated_fraction))
            continue
        image, colour, pattern = _random_texture(size, rng, blend_fraction, colours)
        images.append(image)
        image_labels.append((colour, pattern))
        named: Attributes = (colour, pattern)
        if rng.random() < partial_fraction:
            named = (colour, None) if rng.random() < 0.5 else (None, pattern)
        caption_labels.append(named)
        captions.append(_partial_caption(*named, rng, templated_fraction))
    return TrainingBatch(_to_tensor(images), captions, image_labels, caption_labels)


# --------------------------------------------------------------------------------------------
# Model-side helpers shared by the trainer (tools/train_micro_clip.py) and the tests.

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
