"""Captions of the texture images, and which captions describe which image.

A caption names a colour and a pattern ("red stripes", "a pattern of blue
dots"), only one of them ("red", "a dots pattern"), or neither ("a photo",
for pure clutter). A share of them is wrapped in the ImageNet prompt
templates the stylization itself uses, so the micro models learn the texts
they will be asked about. The words come from `microclip.textures`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES

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


def partial_caption(colour: Optional[str], pattern: Optional[str], rng: np.random.Generator,
                    templated_fraction: float) -> str:
    """A caption naming what is not None of ``colour`` and ``pattern``: both (`caption_for`), one
    ("red", "a dots pattern") or neither (`PHOTO_CAPTION`); templated with ``templated_fraction``."""
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


#: What an image shows or a caption names: (colour, pattern), either of them None when absent.
Attributes = tuple[Optional[str], Optional[str]]


def caption_matches(image_label: Attributes, caption_label: Attributes) -> bool:
    """Whether a caption naming ``caption_label`` describes an image with ``image_label``."""
    if caption_label == (None, None) or image_label == (None, None):
        return caption_label == image_label
    colour, pattern = caption_label
    return (colour is None or colour == image_label[0]) and (pattern is None or pattern == image_label[1])
